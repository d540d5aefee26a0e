//! Leaving the kernel: exit QEMU with a status, or power off.

use crate::arch::{cpu, psci, semihosting};

/// Exits QEMU with `code` as its exit status (semihosting), falling back to PSCI power-off
/// (which QEMU reports as status 0) when semihosting is not enabled.
pub fn exit(code: u32) -> ! {
    crate::console::flush();
    semihosting::exit(code);
    if code != 0 {
        crate::println!("(semihosting is off: QEMU will report exit status 0, not {code})");
        crate::console::flush();
    }
    psci::system_off();
    cpu::halt()
}
