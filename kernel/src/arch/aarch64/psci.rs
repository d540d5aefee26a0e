//! PSCI calls (power off, reset, CPU on) through the conduit the devicetree names.

use core::sync::atomic::{AtomicBool, Ordering};

const SYSTEM_OFF: u32 = 0x8400_0008;
const SYSTEM_RESET: u32 = 0x8400_0009;
const CPU_ON_64: u32 = 0xc400_0003;

/// True when PSCI is reached with SMC instead of HVC (`/psci method = "smc"`).
static USE_SMC: AtomicBool = AtomicBool::new(false);

/// Selects the conduit from the devicetree.
pub fn set_conduit_smc(smc: bool) {
    USE_SMC.store(smc, Ordering::Relaxed);
}

/// PSCI's NOT_SUPPORTED, also returned when the conduit instruction itself is undefined (the
/// kernel runs in the secure state with no firmware at EL3 to answer).
const NOT_SUPPORTED: i64 = -1;

fn call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    super::recover::catch(|| raw_call(function, a1, a2, a3)).unwrap_or(NOT_SUPPORTED)
}

fn raw_call(function: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = u64::from(function);
    if USE_SMC.load(Ordering::Relaxed) {
        // SAFETY: a PSCI call per the SMC calling convention; x0-x3 are arguments/results and the
        // firmware (QEMU) preserves the other registers.
        unsafe {
            core::arch::asm!("smc #0", inout("x0") x0, in("x1") a1, in("x2") a2, in("x3") a3, options(nostack))
        };
    } else {
        // SAFETY: as above, through the hypervisor conduit.
        unsafe {
            core::arch::asm!("hvc #0", inout("x0") x0, in("x1") a1, in("x2") a2, in("x3") a3, options(nostack))
        };
    }
    x0 as i64
}

/// Powers the machine off (QEMU exits with status 0). Returns only if PSCI refused.
pub fn system_off() -> i64 {
    call(SYSTEM_OFF, 0, 0, 0)
}

/// Resets the machine. Returns only if PSCI refused.
pub fn system_reset() -> i64 {
    call(SYSTEM_RESET, 0, 0, 0)
}

/// Starts the CPU with affinity `mpidr` at physical address `entry` with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match call(CPU_ON_64, mpidr, entry, context) {
        0 => Ok(()),
        err => Err(err),
    }
}
