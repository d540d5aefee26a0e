//! A strict, allocation-free reader for Flattened Devicetree blobs (DTB, devicetree
//! specification v0.4, format version 17), and the description of a QEMU `virt` machine that
//! the kernel extracts from one at early boot, before any heap exists.
//!
//! [`Fdt::new`] (or [`Fdt::from_ptr`] for the pointer the boot loader passes) checks the whole
//! blob once; after that, walking nodes and properties cannot meet a malformed token. Nothing
//! in the crate panics, indexes out of bounds or loops without bound on any input: every
//! problem is an [`Error`] whose `Display` names what is wrong and where.
//!
//! - Generic access: [`Fdt::nodes`], [`Fdt::find_node`], [`Fdt::find_compatible`],
//!   [`Fdt::find_phandle`]; [`Node::property`], [`Node::reg`], [`Node::interrupts`],
//!   [`Node::irq`]; typed [`Property`] values.
//! - The machine: [`MachineInfo::from_fdt`] (RAM, reserved ranges, bootargs, UART, GIC,
//!   timer, virtio-mmio slots, PSCI, CPUs).
//! - Output for the shell: [`write_tree`] (a dtc-like dump) and [`write_summary`]
//!   (`key=value` lines).
//!
//! At boot, with the DTB address the boot loader left in `x0`:
//!
//! ```no_run
//! use devicetree::{Fdt, MachineInfo};
//!
//! fn describe_machine(dtb_address: usize) -> Result<MachineInfo<'static>, devicetree::Error> {
//!     // SAFETY: the boot loader put a DTB there, and the kernel keeps its pages reserved and
//!     // unwritten for good.
//!     let fdt = unsafe { Fdt::from_ptr(dtb_address as *const u8) }?;
//!     // The frame allocator must keep dtb_address .. dtb_address + fdt.total_size().
//!     MachineInfo::from_fdt(&fdt)
//! }
//! ```
#![cfg_attr(not(test), no_std)]
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

mod cursor;
mod error;
mod fdt;
mod header;
mod irq;
mod machine;
mod node;
mod print;
mod property;

pub use error::{Block, Error, Name};
pub use fdt::{Fdt, MAX_TOTAL_SIZE_FROM_PTR, MemRegion, MemoryReservations, Nodes};
pub use header::{FDT_MAGIC, HEADER_SIZE, Header};
pub use irq::{GICV2_COMPATIBLES, GICV3_COMPATIBLES, IrqKind, IrqSpec, Trigger};
pub use machine::{
    CpuInfo, EnableMethod, GicInfo, GicKind, MAX_CPUS, MAX_RAM_REGIONS, MAX_REDISTRIBUTOR_REGIONS,
    MAX_RESERVED_REGIONS, MAX_VIRTIO_MMIO, MachineInfo, PsciFunctions, PsciInfo, PsciMethod,
    PsciVersion, TimerInfo, UartInfo, VirtioMmioSlot,
};
pub use node::{Children, Interrupts, Node, NodePath, Properties, Reg};
pub use print::{write_summary, write_tree};
pub use property::{Cells, Property, StrList};

/// Deepest nesting accepted, counting the root: a node may have at most `MAX_DEPTH - 1`
/// ancestors. Real trees use 4 to 6 levels; the bound keeps per-node state fixed-size.
pub const MAX_DEPTH: usize = 16;
