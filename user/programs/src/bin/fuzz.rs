//! `fuzz N [SEED]`: makes N system calls with random numbers and random arguments (including
//! numbers that are not system calls, and pointers into nowhere, into the kernel and into its
//! own memory) and checks the kernel answered each with a result or an error code. Calls that
//! would end the task or wait for something that never comes (exit, receive without a sender,
//! waiting for a task that runs forever, long sleeps) get their dangerous arguments defused.
//! Prints `fuzz calls=N kernel_ok=1` at the end.
#![no_std]
#![no_main]

use usys::{call, println, syscall};

usys::main!(main);

/// Interesting argument values: zero, small, page boundaries, the user/kernel boundary, kernel
/// addresses, huge lengths, all ones.
const EDGES: [u64; 12] = [
    0,
    1,
    4096,
    0x40_0000,
    0x7f_0000_0000 - 8,
    0x0000_ffff_ffff_f000,
    0x0001_0000_0000_0000,
    0xffff_0000_4008_0000,
    0xffff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    1 << 40,
    0x7fff_ffff,
];

fn argument(random: &mut usys::Random, own: u64) -> u64 {
    match random.next_u64() % 4 {
        0 => EDGES[(random.next_u64() % EDGES.len() as u64) as usize],
        1 => own + random.next_u64() % 8192,
        2 => random.next_u64() % 4096,
        _ => random.next_u64(),
    }
}

fn main(args: &str) -> i32 {
    let mut words = args.split_whitespace();
    let Some(calls) = words.next().and_then(usys::parse_u64) else {
        println!("usage: fuzz N [SEED]");
        return 2;
    };
    let seed = words.next().and_then(usys::parse_u64).unwrap_or(1);
    let mut random = usys::Random::new(seed);
    let scratch = [0u8; 64];
    let own = scratch.as_ptr() as u64;
    let mut errors = 0u64;
    for _ in 0..calls {
        let number = random.next_u64() % (call::COUNT + 4);
        let mut args = [0u64; 6];
        for slot in args.iter_mut() {
            *slot = argument(&mut random, own);
        }
        match number {
            call::EXIT => continue,
            // A receive on a valid endpoint would wait forever: only slots that cannot exist.
            call::RECEIVE | call::SEND | call::CALL | call::GRANT_CALL => args[0] |= 1 << 32,
            call::WAIT => args[0] |= 1 << 40,
            // Short sleeps: each still blocks and wakes through a timer deadline.
            call::SLEEP => args[0] %= 4,
            call::SPAWN => args[4] = u64::MAX,
            // Writing its own memory (code, stack) is legitimate and would print noise: only
            // pointers outside the user half keep their length (and must fail).
            call::WRITE if args[0] < 1 << 48 => args[1] = 0,
            // Keep memory use bounded: map at most 1 MiB at a time, and give it back.
            call::MAP => args[0] %= 1 << 20,
            _ => {}
        }
        let (result, _) = syscall(number, args);
        if number == call::MAP && result > 0 {
            let _ = usys::unmap(result as *mut u8);
        }
        if result < 0 {
            if usys::Error::from_code(result).is_none() {
                println!("fuzz: call {number} returned the unknown error code {result}");
                return 1;
            }
            errors += 1;
        }
    }
    println!("fuzz calls={calls} errors={errors} kernel_ok=1");
    0
}
