//! What the kernel provides to an address space: table frames (and a way to reach them) and TLB
//! maintenance.

use crate::addr::{PhysFrame, VirtAddr};
use core::ptr::NonNull;
use core::sync::atomic::AtomicU64;

/// Entries in one translation table (4 KiB / 8 bytes).
pub const ENTRIES_PER_TABLE: usize = 512;

/// One translation table seen as atomics: the hardware walker (and, with FEAT_HAFDBS, its AF and
/// dirty updates) runs concurrently with software, so every access is atomic.
pub type TableEntries = [AtomicU64; ENTRIES_PER_TABLE];

/// Source of translation table frames and the kernel's view of them.
///
/// # Safety
///
/// Implementors promise, for every frame returned by [`allocate_table`](Self::allocate_table)
/// and not yet passed to [`free_table`](Self::free_table):
/// - the frame was zero-filled when it was returned and is used by nothing but the caller;
/// - [`table_entries`](Self::table_entries) returns a pointer, 8-byte aligned, valid for reads
///   and writes of 4 KiB, through which the frame's memory is reached (e.g. the linear map), and
///   nothing else accesses that memory except the MMU's table walker;
/// - the same frame always yields the same pointer.
pub unsafe trait PhysMemory {
    /// A zeroed 4 KiB frame for a translation table, `None` when memory is exhausted.
    fn allocate_table(&self) -> Option<PhysFrame>;

    /// Gives back a table frame. The address space calls it only after the frame is unlinked from
    /// the tables and the TLB has been invalidated, so the walker can no longer reach it.
    fn free_table(&self, frame: PhysFrame);

    /// Where the kernel can access `frame` (a frame this source allocated).
    fn table_entries(&self, frame: PhysFrame) -> NonNull<TableEntries>;
}

// SAFETY: forwards to `P`, which upholds the contract.
unsafe impl<P: PhysMemory + ?Sized> PhysMemory for &P {
    fn allocate_table(&self) -> Option<PhysFrame> {
        (**self).allocate_table()
    }

    fn free_table(&self, frame: PhysFrame) {
        (**self).free_table(frame);
    }

    fn table_entries(&self, frame: PhysFrame) -> NonNull<TableEntries> {
        (**self).table_entries(frame)
    }
}

/// An address space identifier (16 bits with TCR_EL1.AS = 1, else only the low 8 are used).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Asid(pub u16);

/// TLB maintenance, implemented by the kernel with TLBI instructions (Inner Shareable) and
/// barriers, and by tests with a recorder.
///
/// Every invalidation must complete before it returns (`DSB ISHST` before the TLBI so the
/// descriptor writes are visible to walkers, `DSB ISH` and `ISB` after). Invalidation by VA must
/// use the forms that also remove cached intermediate (walk-cache) entries, `TLBI VAE1IS` and
/// `TLBI VAAE1IS`, not the last-level-only `VALE1IS`/`VAALE1IS`: the address space relies on
/// them before freeing a table.
pub trait TlbFlush {
    /// Entries for `va` tagged with `asid` (and global ones): `TLBI VAE1IS`.
    fn flush_va(&self, va: VirtAddr, asid: Asid);
    /// Entries for `va` under every ASID: `TLBI VAAE1IS` (kernel mappings).
    fn flush_va_all_asids(&self, va: VirtAddr);
    /// Every non-global entry tagged with `asid`: `TLBI ASIDE1IS`.
    fn flush_asid(&self, asid: Asid);
    /// Everything at EL1&0: `TLBI VMALLE1IS`.
    fn flush_all(&self);
    /// Makes descriptor writes that turned invalid entries valid visible to the walker before
    /// the next access (`DSB ISHST; ISB`). No invalidation is needed for those: invalid entries
    /// are never cached.
    fn publish(&self);
}

impl<T: TlbFlush + ?Sized> TlbFlush for &T {
    fn flush_va(&self, va: VirtAddr, asid: Asid) {
        (**self).flush_va(va, asid);
    }

    fn flush_va_all_asids(&self, va: VirtAddr) {
        (**self).flush_va_all_asids(va);
    }

    fn flush_asid(&self, asid: Asid) {
        (**self).flush_asid(asid);
    }

    fn flush_all(&self) {
        (**self).flush_all();
    }

    fn publish(&self) {
        (**self).publish();
    }
}
