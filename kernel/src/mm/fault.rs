//! Page faults taken by the kernel.

use crate::arch::esr::Esr;
use crate::arch::exception::TrapFrame;

/// Tries to resolve a kernel-mode abort; false means it is a bug to report.
pub fn handle_kernel_fault(_frame: &mut TrapFrame, _esr: Esr, _far: u64) -> bool {
    false
}
