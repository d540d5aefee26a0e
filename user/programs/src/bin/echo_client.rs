//! `echo-client N`: calls the echo server in capability slot 0 N times and checks every reply,
//! then lends it a buffer (grant) and checks the sum it computes. Prints `echo ok calls=N
//! ns_per_call=T`. A failed call ends the client with the error's code as exit status.
#![no_std]
#![no_main]

use usys::{Message, println};

usys::main!(main);

/// The label of a grant call (see echo-server).
const GRANT: u64 = 0x0067_7261_6e74;

fn main(args: &str) -> i32 {
    let calls = usys::parse_u64(args).unwrap_or(100).max(1);
    let start = usys::time_ns();
    for i in 1..=calls {
        let message = Message {
            label: i,
            words: [i, i * 3, !i, 0x0102_0304_0506_0708],
        };
        match usys::call(0, &message) {
            Ok(reply)
                if reply.label == i + 1 && reply.words == message.words.map(u64::swap_bytes) => {}
            Ok(reply) => {
                println!("echo-client: call {i}: wrong reply {reply:?}");
                return 1;
            }
            Err(err) => {
                println!("echo-client: call {i}: {err}");
                return err.code() as i32;
            }
        }
    }
    let elapsed = usys::time_ns() - start;
    let pages = 3u64;
    let buffer = match usys::map(pages * 4096) {
        Ok(buffer) => buffer,
        Err(err) => {
            println!("echo-client: map: {err}");
            return 1;
        }
    };
    let mut expected = 0u64;
    for i in 0..pages * 4096 {
        let byte = (i * 7 % 251) as u8;
        // SAFETY: inside the mapped buffer.
        unsafe { buffer.wrapping_add(i as usize).write_volatile(byte) };
        expected += u64::from(byte);
    }
    match usys::grant_call(
        0,
        &Message {
            label: GRANT,
            words: [0; 4],
        },
        buffer,
        pages,
    ) {
        Ok(reply) if reply.words[0] == expected => {}
        Ok(reply) => {
            println!(
                "echo-client: grant: sum {} instead of {expected}",
                reply.words[0]
            );
            return 1;
        }
        Err(err) => {
            println!("echo-client: grant: {err}");
            return 1;
        }
    }
    println!("echo ok calls={calls} ns_per_call={}", elapsed / calls);
    0
}
