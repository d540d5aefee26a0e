//! Small CPU primitives: interrupt masking, waiting, the generic counter, CPU identity.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTVCT_EL0, CurrentEL, DAIF, ID_AA64MMFR1_EL1, MIDR_EL1, MPIDR_EL1, Readable,
    TPIDR_EL1, Writeable,
};

/// Most CPUs the kernel brings up (QEMU virt with GICv2 supports 8).
pub const MAX_CPUS: usize = 8;

/// Index of the running CPU (0 = boot CPU), kept in TPIDR_EL1 by the boot code and `set_cpu_index`.
#[inline]
pub fn cpu_index() -> usize {
    TPIDR_EL1.get() as usize
}

/// Record which CPU this is; called once per CPU before anything uses `cpu_index`.
pub fn set_cpu_index(index: usize) {
    TPIDR_EL1.set(index as u64);
}

/// Masks IRQs (and FIQs) and returns the previous DAIF value for [`restore_interrupts`].
#[inline]
pub fn disable_interrupts() -> u64 {
    let daif = DAIF.get();
    // SAFETY: masking interrupts at EL1 has no memory effects; `daifset` takes an immediate.
    unsafe { core::arch::asm!("msr daifset, #3", options(nomem, nostack, preserves_flags)) };
    daif
}

/// Restores a DAIF value saved by [`disable_interrupts`].
#[inline]
pub fn restore_interrupts(daif: u64) {
    DAIF.set(daif);
}

/// Unmasks IRQs and FIQs.
#[inline]
pub fn enable_interrupts() {
    // SAFETY: unmasking interrupts at EL1; handlers are installed before anyone calls this.
    unsafe { core::arch::asm!("msr daifclr, #3", options(nomem, nostack, preserves_flags)) };
}

/// True when IRQs are unmasked.
pub fn interrupts_enabled() -> bool {
    !DAIF.is_set(DAIF::I)
}

/// Sleeps until an interrupt (or event) arrives.
#[inline]
pub fn wait_for_interrupt() {
    // SAFETY: WFI only pauses the CPU.
    unsafe { core::arch::asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// Switches to the stack whose top is `top` and calls `f` there (a fresh frame-pointer chain).
///
/// # Safety
/// `top` must be the 16-byte aligned top of a mapped stack that nothing else uses. The current
/// stack is abandoned.
pub unsafe fn run_on_stack(top: u64, f: fn() -> !) -> ! {
    // SAFETY: per the contract; `f` never returns, so nothing uses the old stack again.
    unsafe {
        core::arch::asm!(
            "mov sp, {top}",
            "mov x29, xzr",
            "mov x30, xzr",
            "br {f}",
            top = in(reg) top,
            f = in(reg) f,
            options(noreturn)
        )
    }
}

/// Stops this CPU for good (interrupts masked).
pub fn halt() -> ! {
    disable_interrupts();
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// The virtual counter (CNTVCT_EL0), ordered after preceding instructions.
#[inline]
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

/// Counter frequency in Hz (CNTFRQ_EL0, set by QEMU).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Exception level the kernel runs at (always 1 after boot).
pub fn current_el() -> u8 {
    CurrentEL.read(CurrentEL::EL) as u8
}

/// MIDR_EL1, identifying the CPU model.
pub fn midr() -> u64 {
    MIDR_EL1.get()
}

/// MPIDR_EL1 affinity fields Aff3..Aff0.
pub fn mpidr_affinity() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// A human name for the CPU model (QEMU's `-cpu` choices), from MIDR_EL1.
pub fn model_name() -> &'static str {
    let midr = midr();
    let implementer = (midr >> 24) & 0xff;
    let part = (midr >> 4) & 0xfff;
    match (implementer, part) {
        (0x41, 0xd03) => "cortex-a53",
        (0x41, 0xd07) => "cortex-a57",
        (0x41, 0xd08) => "cortex-a72",
        (0x41, 0xd0b) => "cortex-a76",
        (0x41, 0xd0c) => "neoverse-n1",
        (0x41, 0xd40) => "neoverse-v1",
        (0x41, 0xd4f) => "neoverse-v2",
        (0x41, 0xd49) => "neoverse-n2",
        (0, _) => "max (QEMU)",
        _ => "unknown",
    }
}

/// Hardware management of the Access flag and dirty state (FEAT_HAFDBS), ID_AA64MMFR1_EL1.HAFDBS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HardwareAccessFlags {
    /// Access flag faults must be handled in software.
    None,
    /// Hardware sets the Access flag.
    AccessFlag,
    /// Hardware sets the Access flag and tracks dirty state with DBM.
    AccessFlagAndDirty,
}

pub fn hardware_access_flags() -> HardwareAccessFlags {
    match ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::HAFDBS) {
        0 => HardwareAccessFlags::None,
        1 => HardwareAccessFlags::AccessFlag,
        _ => HardwareAccessFlags::AccessFlagAndDirty,
    }
}
