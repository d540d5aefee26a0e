//! The kernel crate: everything after the early boot code (`boot` crate) hands over at EL1.
//!
//! Layout: `arch` (AArch64: exceptions, CPU, firmware calls), `board` (QEMU virt facts),
//! `drivers` (PL011, GIC), `mm` (frames, heap, page tables, faults), `irq` and `time`
//! (interrupt dispatch, timer), `console`, `trace` (which log records print, per subsystem),
//! `shell`, `ktest` (the in-QEMU test runner).
#![no_std]
#![cfg_attr(test, no_main)]

extern crate alloc;

pub mod arch;
pub mod bench;
pub mod board;
pub mod cmdline;
pub mod console;
pub mod drivers;
pub mod init;
pub mod ipc;
pub mod irq;
pub mod ktest;
pub mod mm;
pub mod panic;
pub mod power;
pub mod shell;
pub mod smp;
pub mod sync;
pub mod syscall;
pub mod task;
pub mod time;
pub mod trace;

#[cfg(test)]
entry_point!(ktest::main);
