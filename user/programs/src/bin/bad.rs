//! `bad WHAT`: misbehaves on purpose, so that tests can check the kernel kills only the offender
//! and reports it: `kernel` reads kernel memory, `null` dereferences null, `exec` jumps into its
//! stack, `stack` overflows its stack, `undef` executes an undefined instruction.
#![no_std]
#![no_main]

use usys::println;

usys::main!(main);

#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    recurse(depth + 1) + frame[0]
}

fn main(args: &str) -> i32 {
    println!("bad {args}: misbehaving now");
    match args.trim() {
        // SAFETY: none: the access faults and the kernel kills this task, which is the point.
        "kernel" => unsafe { core::ptr::read_volatile(0xffff_0000_4008_0000 as *const u64) as i32 },
        // SAFETY: as above.
        "null" => unsafe {
            core::ptr::read_volatile(core::hint::black_box(0usize) as *const u64) as i32
        },
        "exec" => {
            let code = [0xd65f_03c0u32; 4];
            // SAFETY: as above: the stack is never executable.
            let function: extern "C" fn() = unsafe { core::mem::transmute(code.as_ptr()) };
            function();
            0
        }
        "stack" => recurse(0) as i32,
        // SAFETY: as above.
        "undef" => unsafe {
            core::arch::asm!("udf #0");
            0
        },
        _ => {
            println!("usage: bad kernel|null|exec|stack|undef");
            2
        }
    }
}
