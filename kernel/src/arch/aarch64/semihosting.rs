//! Arm semihosting (QEMU `-semihosting`): the host runner learns the kernel's exit status this
//! way. PSCI SYSTEM_OFF would always make QEMU exit 0 and hide failures.

use super::recover;

/// SYS_EXIT: the parameter block is {reason, subcode} on AArch64.
const SYS_EXIT: u64 = 0x18;
/// ADP_Stopped_ApplicationExit: a normal application exit whose subcode is the exit status.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Exits QEMU with `code` as its process exit status. Returns only if semihosting is not
/// enabled (the `hlt` then traps as an undefined instruction, caught here).
pub fn exit(code: u32) {
    let block = [ADP_STOPPED_APPLICATION_EXIT, u64::from(code)];
    let _ = recover::catch(|| {
        // SAFETY: the semihosting call reads the two-word block, which lives across the call.
        // Without semihosting the instruction traps and `catch` returns an error.
        unsafe {
            core::arch::asm!("hlt #0xf000", in("x0") SYS_EXIT, in("x1") block.as_ptr(), options(nostack, readonly));
        }
    });
}
