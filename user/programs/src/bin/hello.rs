//! Greets from EL0 with its arguments and task id.
#![no_std]
#![no_main]

use usys::println;

usys::main!(main);

fn main(args: &str) -> i32 {
    println!("hello from EL0: task {} args {:?}", usys::task_id(), args);
    0
}
