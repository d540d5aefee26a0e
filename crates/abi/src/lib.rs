//! The system call interface between the kernel and user programs, shared by both sides.
//!
//! A system call is `svc #0` with the call number in x8 and arguments in x0..x5. The result
//! comes back in x0: non-negative on success, a negative [`Error`] code on failure. IPC calls
//! also return a message in x1..x5 (see [`Message`]).
#![cfg_attr(not(test), no_std)]

use core::fmt;

/// System call numbers (x8).
pub mod call {
    /// `exit(code)`: ends the calling task. Does not return.
    pub const EXIT: u64 = 0;
    /// `yield()`: gives the CPU to another runnable task.
    pub const YIELD: u64 = 1;
    /// `sleep(microseconds)`.
    pub const SLEEP: u64 = 2;
    /// `write(buffer, length) -> bytes written`: to the console.
    pub const WRITE: u64 = 3;
    /// `map(length) -> address`: a new region of anonymous memory, zero-filled on first touch,
    /// readable and writable.
    pub const MAP: u64 = 4;
    /// `unmap(address)`: removes the region `map` returned at `address`, freeing its pages.
    pub const UNMAP: u64 = 5;
    /// `spawn(name, name_length, arguments, arguments_length, capability) -> task id`: starts
    /// an embedded program. `capability` (a slot of the caller's, or -1 for none) is copied
    /// into slot 0 of the child.
    pub const SPAWN: u64 = 6;
    /// `wait(task id) -> exit code`: waits for a child started with `spawn` to end.
    pub const WAIT: u64 = 7;
    /// `time() -> nanoseconds since boot`.
    pub const TIME: u64 = 8;
    /// `task_id() -> the caller's task id`.
    pub const TASK_ID: u64 = 9;
    /// `endpoint_create() -> capability slot` holding a new IPC endpoint (send and receive).
    pub const ENDPOINT_CREATE: u64 = 10;
    /// `send(slot, label, w0, w1, w2, w3)`: waits for a receiver on the endpoint and hands it
    /// the message.
    pub const SEND: u64 = 11;
    /// `receive(slot) -> sender task id`, message in x1..x5: waits for a sender.
    pub const RECEIVE: u64 = 12;
    /// `call(slot, label, w0, w1, w2, w3) -> 0`, reply message in x1..x5: sends and waits for
    /// the receiver's reply.
    pub const CALL: u64 = 13;
    /// `reply(label, w0, w1, w2, w3)`: answers the last `call` this task received.
    pub const REPLY: u64 = 14;
    /// `capability_drop(slot)`: empties a capability slot.
    pub const CAPABILITY_DROP: u64 = 15;
    /// `grant_call(slot, label, w0, w1, address, pages)`: like `call` with words w0 and w1,
    /// but also maps the caller's pages `[address, address + pages * 4096)` into the receiver
    /// for the duration of the call; the receiver's label has [`Message::GRANTED`] set and its
    /// words 2 and 3 hold the page count and the mapping's address. Only memory the caller
    /// owns can be lent (not pages lent to it, not DMA memory).
    ///
    /// [`Message::GRANTED`]: crate::Message::GRANTED
    pub const GRANT_CALL: u64 = 16;
    /// `device_read(slot, offset, width) -> value`: reads the register of `width` bytes (1, 2
    /// or 4, aligned to it) at `offset` in the register window of the device in capability
    /// `slot`. The first device call claims the device for the calling task until it ends.
    pub const DEVICE_READ: u64 = 17;
    /// `device_write(slot, offset, value)`: writes the 32-bit register at `offset` (a multiple
    /// of 4) of the device in capability `slot`.
    pub const DEVICE_WRITE: u64 = 18;
    /// `dma_alloc(slot, length) -> address`, physical address in x1: zeroed, physically
    /// contiguous memory the device in capability `slot` may access, mapped readable and
    /// writable in the DMA area ([`layout::DMA_BASE`](crate::layout::DMA_BASE)). Freed by
    /// `unmap(address)` or when the task ends.
    pub const DMA_ALLOC: u64 = 19;
    /// `device_wait(slot)`: unmasks the interrupt of the device in capability `slot` and waits
    /// until it fires; the kernel masks it again on delivery, so the line stays quiet until
    /// the next `device_wait`.
    pub const DEVICE_WAIT: u64 = 20;

    /// One past the largest call number.
    pub const COUNT: u64 = 21;
}

/// The protocol of the block service (`blkd`): each request is an IPC call on its endpoint
/// whose label says the operation. Reads and writes are grant calls (`grant_call`) with the
/// sector in word 0 and the number of sectors in word 1; the data moves through the lent
/// pages. The reply's label is 0 on success or an [`Error`] code; word 0 of a read or write
/// reply is the number of bytes moved.
pub mod block {
    /// Bytes in a sector.
    pub const SECTOR_SIZE: u64 = 512;
    /// Reads `count` sectors from `sector` into the lent pages.
    pub const READ: u64 = 1;
    /// Writes `count` sectors from the lent pages to `sector`.
    pub const WRITE: u64 = 2;
    /// Waits until everything written is on stable storage (a plain `call`).
    pub const FLUSH: u64 = 3;
    /// A plain `call`; the reply's words: capacity in sectors, most sectors per request,
    /// 1 if the device is read-only.
    pub const INFO: u64 = 4;
}

/// Why a system call failed (returned negated in x0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Error {
    /// An argument is out of range or malformed.
    InvalidArgument = -1,
    /// A pointer does not point into the caller's memory with the needed access.
    BadAddress = -2,
    /// Not enough memory.
    NoMemory = -3,
    /// No such program, task or device.
    NotFound = -4,
    /// The capability slot is empty or lacks the right for this operation.
    NoCapability = -5,
    /// No such system call.
    NoSuchCall = -6,
    /// Too many tasks, regions or capabilities.
    Exhausted = -7,
    /// Nothing to reply to.
    NotWaiting = -8,
    /// The device reported an I/O error.
    Io = -9,
    /// The peer went away while the operation was under way.
    PeerGone = -10,
    /// Another task is using the device.
    Busy = -11,
}

impl Error {
    pub const ALL: [Error; 11] = [
        Self::InvalidArgument,
        Self::BadAddress,
        Self::NoMemory,
        Self::NotFound,
        Self::NoCapability,
        Self::NoSuchCall,
        Self::Exhausted,
        Self::NotWaiting,
        Self::Io,
        Self::PeerGone,
        Self::Busy,
    ];

    /// The error a negative return value stands for.
    pub fn from_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|error| *error as i64 == code)
    }

    /// The return value for this error.
    pub const fn code(self) -> i64 {
        self as i64
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidArgument => "invalid argument",
            Self::BadAddress => "bad address",
            Self::NoMemory => "out of memory",
            Self::NotFound => "not found",
            Self::NoCapability => "no capability",
            Self::NoSuchCall => "no such system call",
            Self::Exhausted => "resource exhausted",
            Self::NotWaiting => "no caller is waiting for a reply",
            Self::Io => "I/O error",
            Self::PeerGone => "the peer went away",
            Self::Busy => "in use by another task",
        })
    }
}

/// The register payload of an IPC message: a label (what the message means) and four words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub label: u64,
    pub words: [u64; 4],
}

impl Message {
    /// Set by the kernel in the label a receiver gets when pages were lent with the call
    /// (words 2 and 3 then say how many and where they are mapped), and cleared otherwise,
    /// whatever the sender wrote: a receiver can trust it before touching the grant window.
    pub const GRANTED: u64 = 1 << 63;
}

/// Where a program's memory lives.
pub mod layout {
    /// Programs are linked to start here (user/user.ld).
    pub const PROGRAM_BASE: u64 = 0x40_0000;
    /// Top of the initial stack (exclusive); the stack grows down from here.
    pub const STACK_TOP: u64 = 0x7f_0000_0000;
    /// Size of the initial stack; the page below it stays unmapped as a guard.
    pub const STACK_SIZE: u64 = 256 * 1024;
    /// `map` places regions from here up.
    pub const MAP_BASE: u64 = 0x10_0000_0000;
    /// Where the receiver of a grant finds the granted pages.
    pub const GRANT_WINDOW: u64 = 0x60_0000_0000;
    /// The largest grant, in pages.
    pub const GRANT_MAX_PAGES: u64 = 256;
    /// `dma_alloc` places device memory in `[DMA_BASE, DMA_END)`.
    pub const DMA_BASE: u64 = 0x70_0000_0000;
    pub const DMA_END: u64 = 0x78_0000_0000;

    // The areas do not overlap, and the stack keeps a guard page below it.
    const _: () = assert!(PROGRAM_BASE + (1 << 30) < MAP_BASE);
    const _: () = assert!(MAP_BASE < GRANT_WINDOW);
    const _: () = assert!(GRANT_WINDOW + GRANT_MAX_PAGES * 4096 < DMA_BASE);
    const _: () = assert!(DMA_BASE < DMA_END && DMA_END < STACK_TOP - STACK_SIZE - 4096);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_are_distinct() {
        for error in Error::ALL {
            assert_eq!(Error::from_code(error.code()), Some(error));
            assert!(error.code() < 0);
            assert!(!error.to_string().is_empty());
        }
        let mut codes: Vec<i64> = Error::ALL.iter().map(|e| e.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Error::ALL.len());
        assert_eq!(Error::from_code(0), None);
        assert_eq!(Error::from_code(-100), None);
    }
}
