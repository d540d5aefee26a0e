//! Architecture support. Only AArch64 exists; the rest of the kernel reaches it through `arch::`.

pub mod aarch64;
pub use aarch64::*;
