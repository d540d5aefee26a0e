//! AArch64 stage-1 translation tables for the EL1&0 regime: 4 KiB granule, four levels (0-3),
//! 48-bit virtual addresses in each half (T0SZ = T1SZ = 16), 48-bit output addresses.
//!
//! - [`addr`]: typed [`PhysAddr`], [`VirtAddr`], [`PhysFrame`], [`Page`].
//! - [`descriptor`]: descriptor bit layout (tock-registers) and typed field access.
//! - [`attributes`]: [`MemoryAttributes`] (W^X enforced at construction), MAIR layout and the
//!   three [`DirtyTracking`] encodings.
//! - [`swap`]: the swap-entry payload of invalid descriptors.
//! - [`interface`]: what the kernel implements: [`PhysMemory`] (table frames) and [`TlbFlush`].
//! - [`AddressSpace`]: map, unmap, protect, translate, walk, leaf iteration, break-before-make
//!   replacement and block splitting, swap in/out, and the reclaim helpers (access-flag harvest,
//!   look-around, dirty tracking, fault fix-ups).
//!
//! Nothing here touches system registers: the kernel loads [`AddressSpace::ttbr`] into
//! TTBR0_EL1/TTBR1_EL1, programs MAIR_EL1 = [`MAIR_EL1_VALUE`] and implements the TLB
//! maintenance. Everything is therefore testable on the host against simulated memory.
#![cfg_attr(not(test), no_std)]

pub mod addr;
pub mod attributes;
pub mod descriptor;
mod error;
pub mod interface;
mod reclaim;
mod space;
pub mod swap;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use addr::{AddressError, HALF_SIZE, Half, PAGE_SIZE, Page, PhysAddr, PhysFrame, VirtAddr};
pub use attributes::{
    Access, AttributeError, DirtyTracking, MAIR_EL1_VALUE, MemoryAttributes, MemoryType, Scope,
};
pub use descriptor::{Descriptor, DescriptorKind, Level};
pub use error::MapError;
pub use interface::{Asid, PhysMemory, TlbFlush};
pub use reclaim::{AgingSummary, AgingVisitor, FaultOutcome};
pub use space::{
    AddressSpace, FLUSH_BY_PAGE_LIMIT, Granularity, Leaf, Space, TableId, Translation, UNMAP_BATCH,
    Unmapped, Walk, WalkStep,
};
pub use swap::SwapEntry;
