//! Early boot for QEMU `virt`: the arm64 Image header QEMU needs to pass the DTB, the drop from
//! EL3 or EL2 to EL1, `.bss` clearing, boot page tables, MMU on, and the jump to the kernel's
//! high virtual addresses (see `entry.s`).
//!
//! The kernel crate provides the continuation:
//!
//! ```ignore
//! #[unsafe(no_mangle)]
//! extern "C" fn kernel_entry(dtb_pa: u64, entry_el: u64) -> !
//! ```
//!
//! Entered at EL2 it continues in non-secure EL1. Entered at EL3 (a firmware-style boot with no
//! firmware) it continues in Secure EL1, so that the kernel sees the secure view of the GIC and
//! can route interrupts to itself; `entry_el` tells the kernel which case it is in.
//!
//! It starts at EL1 on the boot stack (`__boot_stack_top`, see `linker.ld`) with the MMU on, all
//! interrupts masked and boot page tables that map, at `KERNEL_VIRT_OFFSET + PA`, the GiB of RAM
//! holding the image, the GiB holding the DTB, and GiB 0 (the MMIO region) as device memory.
#![no_std]

/// Kernel virtual addresses are physical addresses plus this offset (linear map, TTBR1 half).
/// `linker.ld` links the image at `KERNEL_VIRT_OFFSET + 0x4008_0000`.
pub const KERNEL_VIRT_OFFSET: u64 = 0xffff_0000_0000_0000;

/// Memory attribute index of Device-nGnRE memory in [`MAIR_EL1`].
pub const MAIR_IDX_DEVICE: u64 = 0;
/// Memory attribute index of Normal write-back (read/write-allocate) memory in [`MAIR_EL1`].
pub const MAIR_IDX_NORMAL: u64 = 1;
/// Memory attribute index of Normal non-cacheable memory in [`MAIR_EL1`].
pub const MAIR_IDX_NORMAL_NC: u64 = 2;

/// MAIR_EL1 as programmed at boot: attr0 = Device-nGnRE (0x04), attr1 = Normal inner/outer
/// write-back RW-allocate (0xff), attr2 = Normal non-cacheable (0x44).
pub const MAIR_EL1: u64 = (0x04 << (8 * MAIR_IDX_DEVICE))
    | (0xff << (8 * MAIR_IDX_NORMAL))
    | (0x44 << (8 * MAIR_IDX_NORMAL_NC));

core::arch::global_asm!(include_str!("entry.s"), mair = const MAIR_EL1);

unsafe extern "C" {
    fn secondary_entry();
    static boot_l0_ttbr0: u8;
}

/// Where a secondary CPU starts (kernel virtual address of `secondary_entry`; PSCI CPU_ON wants
/// the physical one: subtract [`KERNEL_VIRT_OFFSET`]). It expects x0 = the physical address of
/// a start block, see `entry.s`.
pub fn secondary_entry_address() -> u64 {
    secondary_entry as *const () as u64
}

/// The boot identity map's root table (kernel virtual address). Secondary CPUs run from it
/// while they turn their MMU on.
pub fn identity_map_root() -> u64 {
    (&raw const boot_l0_ttbr0) as u64
}
