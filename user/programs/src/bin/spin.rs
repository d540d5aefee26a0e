//! `spin MS [LABEL]`: burns CPU for MS milliseconds of wall (guest) time without ever yielding,
//! then prints how much work it got done. Only preemption lets others run meanwhile.
#![no_std]
#![no_main]

use usys::println;

usys::main!(main);

fn main(args: &str) -> i32 {
    let mut words = args.split_whitespace();
    let Some(ms) = words.next().and_then(usys::parse_u64) else {
        println!("usage: spin MS [LABEL]");
        return 2;
    };
    let label = words.next().unwrap_or("spin");
    let end = usys::time_ns() + ms * 1_000_000;
    let mut rounds = 0u64;
    while usys::time_ns() < end {
        for _ in 0..1000 {
            core::hint::black_box(rounds);
        }
        rounds += 1;
    }
    println!("{label} rounds={rounds}");
    0
}
