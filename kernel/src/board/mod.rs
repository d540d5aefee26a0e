//! Board support: what the kernel knows about the machine before (or beyond) the devicetree.

pub mod qemu_virt;
pub use qemu_virt as current;
