//! AArch64 support: exception entry and reporting, CPU primitives, backtraces, recovery points,
//! firmware interfaces (PSCI, semihosting).

pub mod backtrace;
pub mod cpu;
pub mod esr;
pub mod exception;
pub mod mmu;
pub mod psci;
pub mod recover;
pub mod semihosting;
pub mod timer;
pub mod user;
