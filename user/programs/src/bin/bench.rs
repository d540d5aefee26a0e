//! `bench WHAT N`: measures one kernel operation N times and prints
//! `bench=NAME ops=N ns_per_op=T` (guest nanoseconds: with QEMU_ICOUNT=1, instructions).
//! - `syscall`: a null system call (task id);
//! - `yield`: a yield (a context switch when another task is runnable on the CPU);
//! - `fault`: a demand-zero page fault (first touch of a fresh page);
//! - `swapin`: a major fault: N pages are written once, then read in the same order; when they
//!   do not fit in memory (the kernel runs this under a user-memory limit smaller than N pages)
//!   every read brings a page back from swap, and evicts another;
//! - `ipc`: a call to the echo server in capability slot 0 and its reply.
#![no_std]
#![no_main]

use usys::{Message, println};

usys::main!(main);

fn measure(name: &str, ops: u64, mut op: impl FnMut(u64)) -> i32 {
    op(0);
    let start = usys::time_ns();
    for i in 0..ops {
        op(i);
    }
    let elapsed = usys::time_ns() - start;
    println!("bench={name} ops={ops} ns_per_op={}", elapsed / ops);
    0
}

fn main(args: &str) -> i32 {
    let mut words = args.split_whitespace();
    let what = words.next().unwrap_or("");
    let ops = words
        .next()
        .and_then(usys::parse_u64)
        .unwrap_or(1000)
        .max(1);
    match what {
        "syscall" => measure("null_syscall", ops, |_| {
            core::hint::black_box(usys::task_id());
        }),
        "yield" => measure("yield", ops, |_| usys::yield_now()),
        "fault" => {
            let Ok(base) = usys::map((ops + 1) * 4096) else {
                println!("bench: no memory for {ops} pages");
                return 1;
            };
            measure("demand_zero_fault", ops, |i| {
                // SAFETY: inside the region `map` returned; each page is touched once.
                unsafe {
                    base.wrapping_add(i as usize * 4096 + 4096)
                        .write_volatile(1)
                };
            })
        }
        "swapin" => {
            let Ok(base) = usys::map(ops * 4096) else {
                println!("bench: no memory for {ops} pages");
                return 1;
            };
            for i in 0..ops as usize {
                // SAFETY: inside the region `map` returned.
                unsafe { base.wrapping_add(i * 4096).write_volatile(i as u8) };
            }
            // The warm-up call of `measure` reads page 0 and the loop reads it again: fine, it
            // is a cost per page of a pass over more pages than memory holds.
            measure("swap_in_fault", ops, |i| {
                // SAFETY: as above.
                core::hint::black_box(unsafe {
                    base.wrapping_add(i as usize * 4096).read_volatile()
                });
            })
        }
        "ipc" => measure("ipc_round_trip", ops, |i| {
            let _ = usys::call(
                0,
                &Message {
                    label: i + 1,
                    words: [i; 4],
                },
            );
        }),
        _ => {
            println!("usage: bench syscall|yield|fault|swapin|ipc N");
            2
        }
    }
}
