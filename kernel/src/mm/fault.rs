//! Page faults taken by the kernel itself (EL1).

use super::{aspace, stack};
use crate::arch::esr::Esr;
use crate::arch::exception::{TrapFrame, write_report};
use crate::arch::recover;

/// Tries to resolve a kernel-mode abort; false means it is an error for the caller to report
/// (or for a recovery point to catch).
///
/// - Addresses in the user half belong to the active user address space, which resolves
///   demand-zero, access-flag and write (dirty tracking) faults.
/// - A fault in a kernel stack's guard region is a stack overflow: reported by the stack's
///   name, fatally, unless a recovery point is armed (tests probe guards on purpose).
pub fn handle_kernel_fault(frame: &mut TrapFrame, esr: Esr, far: u64) -> bool {
    if !esr.far_valid() {
        return false;
    }
    if far < pagetable::HALF_SIZE {
        return aspace::handle_fault(far, esr) == aspace::FaultResolution::Resolved;
    }
    if let Some(name) = stack::guarded_stack_name(far)
        && !recover::armed()
    {
        let sp = frame.el1_sp();
        crate::panic::fatal(
            format_args!("kernel stack overflow in {name} (guard page {far:#x} touched)"),
            |out| write_report(out, frame, esr, far, sp),
        );
    }
    false
}
