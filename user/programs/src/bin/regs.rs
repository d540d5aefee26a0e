//! `regs ROUNDS SEED [SPIN]`: loads distinct values into every general register it may (x9-x17,
//! x19-x30), every FP/SIMD register (q0-q31) and FPCR/FPSR-independent state, then yields and
//! spins ROUNDS times for SPIN iterations each (default 200 000; so that the kernel switches to
//! other tasks and takes interrupts; a spin longer than a time slice gets preempted), and
//! checks every register still holds its value, and that the condition flags (NZCV) set before
//! each spin are still set after it. Run several at once: each other's values would show up in a
//! register the kernel failed to save. Prints `regs ok` or the first difference.
#![no_std]
#![no_main]

use usys::println;

usys::main!(main);

const GP: usize = 21;

#[repr(C, align(16))]
struct Registers {
    gp: [u64; GP],
    /// SP when the registers were loaded (written by `hold` into `seen`).
    sp_before: u64,
    q: [u128; 32],
    /// SP after the rounds.
    sp: u64,
    /// NZCV set before a spin and found after it, recorded when they differ (else 0, 0).
    flags_set: u64,
    flags_found: u64,
}

/// Loads `values`, runs `rounds` of (yield, spin of `spin` iterations), stores the registers
/// into `seen`.
fn hold(values: &Registers, seen: &mut Registers, rounds: u64, spin: u64) {
    // SAFETY: the asm saves and restores x19..x30 and SP itself (Rust cannot hand those to
    // asm), declares every other register it changes, and only touches the two arrays.
    unsafe {
        core::arch::asm!(
            "sub sp, sp, #112",
            "stp x19, x20, [sp, #0]",
            "stp x21, x22, [sp, #16]",
            "stp x23, x24, [sp, #32]",
            "stp x25, x26, [sp, #48]",
            "stp x27, x28, [sp, #64]",
            "stp x29, x30, [sp, #80]",
            "str x1, [sp, #96]",
            "str x3, [sp, #104]",
            "add x4, sp, #112",
            "str x4, [x1, #168]",
            "ldp x9, x10, [x0, #0]",
            "ldp x11, x12, [x0, #16]",
            "ldp x13, x14, [x0, #32]",
            "ldp x15, x16, [x0, #48]",
            "ldp x17, x19, [x0, #64]",
            "ldp x20, x21, [x0, #80]",
            "ldp x22, x23, [x0, #96]",
            "ldp x24, x25, [x0, #112]",
            "ldp x26, x27, [x0, #128]",
            "ldp x28, x29, [x0, #144]",
            "ldr x30, [x0, #160]",
            "add x3, x0, #176",
            "ldp q0, q1, [x3, #0]",
            "ldp q2, q3, [x3, #32]",
            "ldp q4, q5, [x3, #64]",
            "ldp q6, q7, [x3, #96]",
            "ldp q8, q9, [x3, #128]",
            "ldp q10, q11, [x3, #160]",
            "ldp q12, q13, [x3, #192]",
            "ldp q14, q15, [x3, #224]",
            "ldp q16, q17, [x3, #256]",
            "ldp q18, q19, [x3, #288]",
            "ldp q20, q21, [x3, #320]",
            "ldp q22, q23, [x3, #352]",
            "ldp q24, q25, [x3, #384]",
            "ldp q26, q27, [x3, #416]",
            "ldp q28, q29, [x3, #448]",
            "ldp q30, q31, [x3, #480]",
            "mov x6, x2",
            "2:",
            "mov x8, #1",
            "svc #0",
            // Z and C set; the spin below never writes the flags.
            "cmp x9, x9",
            "mrs x5, nzcv",
            "ldr x7, [sp, #104]",
            "3:",
            "sub x7, x7, #1",
            "cbnz x7, 3b",
            "mrs x4, nzcv",
            "cmp x4, x5",
            "b.eq 4f",
            "ldr x3, [sp, #96]",
            "add x3, x3, #696",
            "stp x5, x4, [x3]",
            "4:",
            "subs x6, x6, #1",
            "b.ne 2b",
            "ldr x0, [sp, #96]",
            "stp x9, x10, [x0, #0]",
            "stp x11, x12, [x0, #16]",
            "stp x13, x14, [x0, #32]",
            "stp x15, x16, [x0, #48]",
            "stp x17, x19, [x0, #64]",
            "stp x20, x21, [x0, #80]",
            "stp x22, x23, [x0, #96]",
            "stp x24, x25, [x0, #112]",
            "stp x26, x27, [x0, #128]",
            "stp x28, x29, [x0, #144]",
            "str x30, [x0, #160]",
            "add x3, x0, #176",
            "stp q0, q1, [x3, #0]",
            "stp q2, q3, [x3, #32]",
            "stp q4, q5, [x3, #64]",
            "stp q6, q7, [x3, #96]",
            "stp q8, q9, [x3, #128]",
            "stp q10, q11, [x3, #160]",
            "stp q12, q13, [x3, #192]",
            "stp q14, q15, [x3, #224]",
            "stp q16, q17, [x3, #256]",
            "stp q18, q19, [x3, #288]",
            "stp q20, q21, [x3, #320]",
            "stp q22, q23, [x3, #352]",
            "stp q24, q25, [x3, #384]",
            "stp q26, q27, [x3, #416]",
            "stp q28, q29, [x3, #448]",
            "stp q30, q31, [x3, #480]",
            "mov x4, sp",
            "add x4, x4, #112",
            "str x4, [x0, #688]",
            "ldp x19, x20, [sp, #0]",
            "ldp x21, x22, [sp, #16]",
            "ldp x23, x24, [sp, #32]",
            "ldp x25, x26, [sp, #48]",
            "ldp x27, x28, [sp, #64]",
            "ldp x29, x30, [sp, #80]",
            "add sp, sp, #112",
            inout("x0") values as *const Registers => _,
            inout("x1") seen as *mut Registers => _,
            inout("x2") rounds => _,
            inout("x3") spin => _, out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _,
            out("x9") _, out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _,
            out("v0") _, out("v1") _, out("v2") _, out("v3") _, out("v4") _, out("v5") _,
            out("v6") _, out("v7") _, out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _, out("v16") _, out("v17") _,
            out("v18") _, out("v19") _, out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _, out("v27") _, out("v28") _, out("v29") _,
            out("v30") _, out("v31") _,
        );
    }
}

fn main(args: &str) -> i32 {
    let mut words = args.split_whitespace();
    let rounds = words.next().and_then(usys::parse_u64).unwrap_or(50).max(1);
    let seed = words
        .next()
        .and_then(usys::parse_u64)
        .unwrap_or_else(usys::task_id);
    let spin = words
        .next()
        .and_then(usys::parse_u64)
        .unwrap_or(200_000)
        .max(1);
    let mut random = usys::Random::new(seed.wrapping_mul(0x9e37_79b9) + 1);
    let mut values = Registers {
        gp: [0; GP],
        sp_before: 0,
        q: [0; 32],
        sp: 0,
        flags_set: 0,
        flags_found: 0,
    };
    for value in values.gp.iter_mut() {
        *value = random.next_u64();
    }
    for value in values.q.iter_mut() {
        *value = (u128::from(random.next_u64()) << 64) | u128::from(random.next_u64());
    }
    let mut seen = Registers {
        gp: [0; GP],
        sp_before: 0,
        q: [0; 32],
        sp: 0,
        flags_set: 0,
        flags_found: 0,
    };
    hold(&values, &mut seen, rounds, spin);
    let names = [
        "x9", "x10", "x11", "x12", "x13", "x14", "x15", "x16", "x17", "x19", "x20", "x21", "x22",
        "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30",
    ];
    for (index, (want, got)) in values.gp.iter().zip(seen.gp.iter()).enumerate() {
        if want != got {
            println!("regs: {} changed from {want:#x} to {got:#x}", names[index]);
            return 1;
        }
    }
    for (index, (want, got)) in values.q.iter().zip(seen.q.iter()).enumerate() {
        if want != got {
            println!("regs: q{index} changed from {want:#x} to {got:#x}");
            return 1;
        }
    }
    if seen.flags_set != seen.flags_found {
        println!(
            "regs: flags changed from {:#x} to {:#x}",
            seen.flags_set, seen.flags_found
        );
        return 1;
    }
    if seen.sp != seen.sp_before {
        println!(
            "regs: sp changed from {:#x} to {:#x}",
            seen.sp_before, seen.sp
        );
        return 1;
    }
    println!("regs ok after {rounds} rounds");
    0
}
