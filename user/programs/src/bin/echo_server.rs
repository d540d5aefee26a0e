//! `echo-server`: serves the endpoint in capability slot 0: each call's label comes back plus
//! one, each word reversed in byte order; a call with label 0 ends the server (the reply's label
//! says how many calls it served). A grant call gets the sum of the lent pages' bytes in word 0
//! of the reply and the caller's task id in word 1.
#![no_std]
#![no_main]

use usys::{Message, println};

usys::main!(main);

fn main(_: &str) -> i32 {
    let mut served = 0u64;
    loop {
        let (sender, message) = match usys::receive(0) {
            Ok(received) => received,
            Err(err) => {
                println!("echo-server: receive: {err}");
                return 1;
            }
        };
        let granted = message.label & Message::GRANTED != 0;
        let label = message.label & !Message::GRANTED;
        if label == 0 {
            let _ = usys::reply(&Message {
                label: served,
                words: [0; 4],
            });
            return 0;
        }
        let mut reply = Message {
            label: label + 1,
            words: message.words.map(u64::swap_bytes),
        };
        if granted {
            // A grant: words[3] is where the kernel mapped the caller's pages, words[2] how many.
            let lent = message.words[3] as *const u8;
            let bytes = message.words[2] * 4096;
            let sum = (0..bytes).fold(0u64, |sum, i| {
                // SAFETY: the kernel mapped `bytes` readable bytes there for this call.
                sum + u64::from(unsafe { lent.wrapping_add(i as usize).read_volatile() })
            });
            reply.words = [sum, sender, 0, 0];
        }
        served += 1;
        if let Err(err) = usys::reply(&reply) {
            println!("echo-server: reply: {err}");
            return 1;
        }
    }
}
