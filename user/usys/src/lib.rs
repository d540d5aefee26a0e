//! The runtime of user programs: the entry point, system call wrappers, console output and the
//! panic handler. Programs are `#![no_std] #![no_main]` binaries that name their main function
//! with [`main!`]. `alloc` works too (see [`heap`]).
#![no_std]

pub mod heap;

pub use abi::{Error, Message, block, call, layout};
use core::fmt::{self, Write};

core::arch::global_asm!(
    r#"
.section .text._start, "ax"
// The kernel starts a program here with SP at the top of its stack and the argument string in
// x0 (address) and x1 (length).
.global _start
_start:
    mov     x29, xzr
    mov     x30, xzr
    bl      usys_start
    brk     #0
"#
);

unsafe extern "Rust" {
    /// The program's main function, defined with [`main!`].
    fn user_main(args: &str) -> i32;
}

/// Names the program's main function: `usys::main!(main)` with `fn main(args: &str) -> i32`.
#[macro_export]
macro_rules! main {
    ($main:path) => {
        #[unsafe(export_name = "user_main")]
        fn __user_main(args: &str) -> i32 {
            let main: fn(&str) -> i32 = $main;
            main(args)
        }
    };
}

#[unsafe(no_mangle)]
extern "C" fn usys_start(args: *const u8, len: usize) -> ! {
    // SAFETY: the kernel passes `len` bytes it copied onto our stack.
    let bytes = unsafe { core::slice::from_raw_parts(args, len) };
    let args = core::str::from_utf8(bytes).unwrap_or("");
    // SAFETY: `user_main` is defined by the program through `main!`.
    let code = unsafe { user_main(args) };
    exit(code)
}

/// A raw system call: number `n`, six arguments; returns x0 and the message registers x1..x5.
#[inline(always)]
pub fn syscall(n: u64, args: [u64; 6]) -> (i64, [u64; 5]) {
    let (x0, x1, x2, x3, x4, x5): (u64, u64, u64, u64, u64, u64);
    // SAFETY: `svc` enters the kernel, which reads x0..x5 and x8 and writes x0..x5; every other
    // register is preserved.
    unsafe {
        core::arch::asm!(
            "svc #0",
            inlateout("x0") args[0] => x0,
            inlateout("x1") args[1] => x1,
            inlateout("x2") args[2] => x2,
            inlateout("x3") args[3] => x3,
            inlateout("x4") args[4] => x4,
            inlateout("x5") args[5] => x5,
            in("x8") n,
            options(nostack)
        );
    }
    (x0 as i64, [x1, x2, x3, x4, x5])
}

fn result(value: i64) -> Result<u64, Error> {
    if value < 0 {
        Err(Error::from_code(value).unwrap_or(Error::InvalidArgument))
    } else {
        Ok(value as u64)
    }
}

fn call0(n: u64, args: [u64; 6]) -> Result<u64, Error> {
    result(syscall(n, args).0)
}

pub fn exit(code: i32) -> ! {
    syscall(call::EXIT, [code as i64 as u64, 0, 0, 0, 0, 0]);
    unreachable!("exit returned");
}

pub fn yield_now() {
    syscall(call::YIELD, [0; 6]);
}

pub fn sleep_us(us: u64) {
    syscall(call::SLEEP, [us, 0, 0, 0, 0, 0]);
}

pub fn write(bytes: &[u8]) -> Result<u64, Error> {
    call0(
        call::WRITE,
        [bytes.as_ptr() as u64, bytes.len() as u64, 0, 0, 0, 0],
    )
}

/// A region of `len` bytes of zero-filled memory (pages appear on first touch).
pub fn map(len: u64) -> Result<*mut u8, Error> {
    call0(call::MAP, [len, 0, 0, 0, 0, 0]).map(|address| address as *mut u8)
}

pub fn unmap(address: *mut u8) -> Result<(), Error> {
    call0(call::UNMAP, [address as u64, 0, 0, 0, 0, 0]).map(drop)
}

/// Starts program `name` with `args`, giving it a copy of capability `capability` in its slot 0.
pub fn spawn(name: &str, args: &str, capability: Option<u64>) -> Result<u64, Error> {
    let cap = capability.map_or(u64::MAX, |slot| slot);
    call0(
        call::SPAWN,
        [
            name.as_ptr() as u64,
            name.len() as u64,
            args.as_ptr() as u64,
            args.len() as u64,
            cap,
            0,
        ],
    )
}

pub fn wait(task: u64) -> Result<i64, Error> {
    let (value, _) = syscall(call::WAIT, [task, 0, 0, 0, 0, 0]);
    // Exit codes are any i64; errors are distinguished by the task id check in the kernel.
    if value < 0
        && let Some(error) = Error::from_code(value)
    {
        Err(error)
    } else {
        Ok(value)
    }
}

pub fn time_ns() -> u64 {
    syscall(call::TIME, [0; 6]).0 as u64
}

pub fn task_id() -> u64 {
    syscall(call::TASK_ID, [0; 6]).0 as u64
}

pub fn endpoint_create() -> Result<u64, Error> {
    call0(call::ENDPOINT_CREATE, [0; 6])
}

fn message_args(slot: u64, message: &Message) -> [u64; 6] {
    [
        slot,
        message.label,
        message.words[0],
        message.words[1],
        message.words[2],
        message.words[3],
    ]
}

fn message_of(registers: [u64; 5]) -> Message {
    Message {
        label: registers[0],
        words: [registers[1], registers[2], registers[3], registers[4]],
    }
}

pub fn send(slot: u64, message: &Message) -> Result<(), Error> {
    call0(call::SEND, message_args(slot, message)).map(drop)
}

/// Waits for a message on the endpoint in `slot`; returns the sender's task id and the message.
pub fn receive(slot: u64) -> Result<(u64, Message), Error> {
    let (value, registers) = syscall(call::RECEIVE, [slot, 0, 0, 0, 0, 0]);
    result(value).map(|sender| (sender, message_of(registers)))
}

/// Sends `message` and waits for the reply.
pub fn call(slot: u64, message: &Message) -> Result<Message, Error> {
    let (value, registers) = syscall(call::CALL, message_args(slot, message));
    result(value).map(|_| message_of(registers))
}

pub fn reply(message: &Message) -> Result<(), Error> {
    let [label, w0, w1, w2, w3] = [
        message.label,
        message.words[0],
        message.words[1],
        message.words[2],
        message.words[3],
    ];
    call0(call::REPLY, [label, w0, w1, w2, w3, 0]).map(drop)
}

/// Calls with `message` while lending the receiver `pages` pages starting at `address`.
pub fn grant_call(
    slot: u64,
    message: &Message,
    address: *const u8,
    pages: u64,
) -> Result<Message, Error> {
    let (value, registers) = syscall(
        call::GRANT_CALL,
        [
            slot,
            message.label,
            message.words[0],
            message.words[1],
            address as u64,
            pages,
        ],
    );
    result(value).map(|_| message_of(registers))
}

pub fn capability_drop(slot: u64) -> Result<(), Error> {
    call0(call::CAPABILITY_DROP, [slot, 0, 0, 0, 0, 0]).map(drop)
}

/// Reads the `width`-byte register (1, 2 or 4) at `offset` of the device in capability `slot`.
pub fn device_read(slot: u64, offset: u64, width: u64) -> Result<u64, Error> {
    call0(call::DEVICE_READ, [slot, offset, width, 0, 0, 0])
}

/// Writes the 32-bit register at `offset` of the device in capability `slot`.
pub fn device_write(slot: u64, offset: u64, value: u32) -> Result<(), Error> {
    call0(
        call::DEVICE_WRITE,
        [slot, offset, u64::from(value), 0, 0, 0],
    )
    .map(drop)
}

/// Zeroed, physically contiguous memory for the device in capability `slot`: its address and
/// its physical address (what the device is given). `unmap` frees it.
pub fn dma_alloc(slot: u64, len: u64) -> Result<(*mut u8, u64), Error> {
    let (value, registers) = syscall(call::DMA_ALLOC, [slot, len, 0, 0, 0, 0]);
    result(value).map(|address| (address as *mut u8, registers[0]))
}

/// Unmasks the interrupt of the device in capability `slot` and waits until it fires.
pub fn device_wait(slot: u64) -> Result<(), Error> {
    call0(call::DEVICE_WAIT, [slot, 0, 0, 0, 0, 0]).map(drop)
}

/// Console output for `print!`.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write(s.as_bytes()).map(drop).map_err(|_| fmt::Error)
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Format into a buffer so that one line is one system call (lines from different tasks do
    // not interleave mid-line).
    struct Buffer {
        bytes: [u8; 256],
        len: usize,
    }
    impl Write for Buffer {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            for &byte in s.as_bytes() {
                if self.len == self.bytes.len() {
                    let _ = write(&self.bytes);
                    self.len = 0;
                }
                self.bytes[self.len] = byte;
                self.len += 1;
            }
            Ok(())
        }
    }
    let mut buffer = Buffer {
        bytes: [0; 256],
        len: 0,
    };
    let _ = buffer.write_fmt(args);
    let _ = write(&buffer.bytes[..buffer.len]);
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::_print(format_args!("{}\n", format_args!($($arg)*))));
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    println!("task {} panicked: {}", task_id(), info);
    exit(101)
}

/// A small deterministic random number generator (xorshift64*) for programs that need noise.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Parses a decimal number from the start of `text` (for program arguments).
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}
