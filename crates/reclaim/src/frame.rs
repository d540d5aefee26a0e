//! Per-frame metadata shared by every policy: [`FrameMeta`] records in a [`FrameTable`].
//!
//! The kernel allocates one [`FrameMeta`] per 4 KiB physical frame at boot and owns the table.
//! It writes the owner back-reference and the [`FrameFlags`] it is responsible for (anonymous,
//! dirty, pinned, under I/O); the policy in force writes the rest (list links, list/generation
//! id, access count) through the crate-private accessors.

use alloc::boxed::Box;
use alloc::vec;

use crate::list::{Chain, Links, NIL};

/// Index of a physical 4 KiB frame (frame number relative to the managed range).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FrameId(pub u32);

impl FrameId {
    /// The frame number as a table index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// Identifier of an address space (16 bits, as an ARM ASID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AddressSpaceId(pub u16);

/// Owner back-reference of a mapped page: address-space id (bits 48..64) and virtual page
/// number (bits 0..48). Each reclaimable page has exactly one mapping, so this names its PTE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageKey(pub u64);

/// Number of PTEs in one leaf page table (4 KiB granule, 8-byte descriptors).
pub const PTES_PER_TABLE: u64 = 512;

impl PageKey {
    /// Largest virtual page number a key can hold (48 bits).
    pub const MAX_VPN: u64 = (1 << 48) - 1;

    /// Key of page `vpn` in address space `asid`; `vpn` is truncated to 48 bits.
    pub const fn new(asid: AddressSpaceId, vpn: u64) -> Self {
        Self(((asid.0 as u64) << 48) | (vpn & Self::MAX_VPN))
    }

    /// The owning address space.
    pub const fn asid(self) -> AddressSpaceId {
        AddressSpaceId((self.0 >> 48) as u16)
    }

    /// The virtual page number inside the address space.
    pub const fn vpn(self) -> u64 {
        self.0 & Self::MAX_VPN
    }

    /// The leaf page table holding this page's PTE: one table maps 512 consecutive pages.
    pub const fn leaf_table(self) -> LeafTableId {
        LeafTableId(self.0 / PTES_PER_TABLE)
    }
}

/// Identity of a leaf page table (the Bloom filters hash it). [`PageKey::leaf_table`] gives the
/// canonical value (address space and `vpn / 512`); a kernel may use any stable unique number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeafTableId(pub u64);

/// Flag bits the kernel sets on a frame; policies only read them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FrameFlags(pub u16);

impl FrameFlags {
    /// No flags.
    pub const EMPTY: Self = Self(0);
    /// Anonymous memory (swap-backed). Pages without it are file pages.
    pub const ANON: Self = Self(1 << 0);
    /// Written since it was last read from or written to swap.
    pub const DIRTY: Self = Self(1 << 1);
    /// Pinned (DMA, kernel use): a policy never isolates it.
    pub const PINNED: Self = Self(1 << 2);
    /// I/O in flight on the frame: a policy never isolates it.
    pub const UNDER_IO: Self = Self(1 << 3);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// Both sets of bits.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These bits without those of `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

/// Policy-private flag bits in [`FrameMeta`] (not visible to the kernel).
pub(crate) mod pflags {
    /// The policy tracks this frame (on one of its lists or isolated for eviction).
    pub const TRACKED: u8 = 1 << 0;
    /// Isolated: handed to the kernel for eviction, waiting for `evicted`/`putback`.
    pub const ISOLATED: u8 = 1 << 1;
    /// MGLRU: the young bit still comes from the instantiating fault.
    pub const FRESH: u8 = 1 << 2;
    /// LRU2: `PG_referenced` (young seen once on the inactive list).
    pub const REFERENCED: u8 = 1 << 3;
    /// CLOCK-Pro: hot page.
    pub const HOT: u8 = 1 << 4;
    /// CLOCK-Pro: cold page in its test period.
    pub const TEST: u8 = 1 << 5;
    /// MGLRU: the generation index of the list the frame is physically on (bits 6..8); it can
    /// lag the generation in the list id, since promotion only updates the list id.
    pub const LIST_GEN_SHIFT: u8 = 6;
}

/// Reclaim metadata of one physical frame (24 bytes).
///
/// Owned by the kernel's [`FrameTable`]; the kernel sets the owner and [`FrameFlags`], the policy
/// keeps its list links, its list or generation id (`0` = on no list), an access count and a
/// few private bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameMeta {
    owner: u64,
    prev: u32,
    next: u32,
    flags: u16,
    /// Policy list id (MGLRU: generation `seq % 4 + 1`); 0 = not on a list.
    state: u8,
    /// Policy access count (MGLRU: refs that select the tier).
    refs: u8,
    /// [`pflags`] bits.
    pflags: u8,
}

const _: () = assert!(core::mem::size_of::<FrameMeta>() <= 24);

impl FrameMeta {
    /// A frame no policy tracks.
    pub const EMPTY: Self = Self {
        owner: 0,
        prev: NIL,
        next: NIL,
        flags: 0,
        state: 0,
        refs: 0,
        pflags: 0,
    };

    /// Owner back-reference (meaningful while the policy tracks the frame).
    pub const fn owner(&self) -> PageKey {
        PageKey(self.owner)
    }

    /// Kernel flag bits.
    pub const fn flags(&self) -> FrameFlags {
        FrameFlags(self.flags)
    }

    /// Whether a policy tracks this frame (listed or isolated).
    pub const fn is_tracked(&self) -> bool {
        self.pflags & pflags::TRACKED != 0
    }

    /// Whether the frame is isolated for eviction.
    pub const fn is_isolated(&self) -> bool {
        self.pflags & pflags::ISOLATED != 0
    }

    /// The policy's list id (MGLRU: generation + 1), 0 when on no list.
    pub const fn list_id(&self) -> u8 {
        self.state
    }

    pub(crate) fn set_list_id(&mut self, id: u8) {
        self.state = id;
    }

    pub(crate) const fn refs(&self) -> u8 {
        self.refs
    }

    pub(crate) fn set_refs(&mut self, refs: u8) {
        self.refs = refs;
    }

    pub(crate) const fn has(&self, bits: u8) -> bool {
        self.pflags & bits != 0
    }

    pub(crate) fn set(&mut self, bits: u8) {
        self.pflags |= bits;
    }

    pub(crate) fn clear(&mut self, bits: u8) {
        self.pflags &= !bits;
    }

    /// MGLRU: generation index of the list the frame is on.
    pub(crate) const fn list_gen(&self) -> usize {
        (self.pflags >> pflags::LIST_GEN_SHIFT) as usize
    }

    /// MGLRU: record the generation index of the list the frame is put on (0..4).
    pub(crate) fn set_list_gen(&mut self, generation: usize) {
        self.pflags = (self.pflags & !(3 << pflags::LIST_GEN_SHIFT))
            | (((generation & 3) as u8) << pflags::LIST_GEN_SHIFT);
    }

    /// Whether the policy must leave the frame alone (pinned or under I/O).
    pub(crate) const fn is_busy(&self) -> bool {
        self.flags()
            .intersects(FrameFlags::PINNED.union(FrameFlags::UNDER_IO))
    }

    /// Whether the page is anonymous (policy type 0) rather than file-backed (type 1).
    pub(crate) const fn is_anon(&self) -> bool {
        self.flags().contains(FrameFlags::ANON)
    }

    /// Start tracking: owner set, policy state reset, kernel flags kept.
    pub(crate) fn track(&mut self, owner: PageKey) {
        self.owner = owner.0;
        self.prev = NIL;
        self.next = NIL;
        self.state = 0;
        self.refs = 0;
        self.pflags = pflags::TRACKED;
    }

    /// Stop tracking: policy state cleared, kernel flags kept.
    pub(crate) fn untrack(&mut self) {
        let flags = self.flags;
        *self = Self::EMPTY;
        self.flags = flags;
    }
}

/// One [`FrameMeta`] per physical frame, indexed by [`FrameId`]; the kernel embeds it and lends
/// it to the policy on every call.
#[derive(Clone, Debug)]
pub struct FrameTable {
    metas: Box<[FrameMeta]>,
}

impl FrameTable {
    /// A table for frames `0..frames`, all untracked with no flags.
    pub fn new(frames: u32) -> Self {
        Self {
            metas: vec![FrameMeta::EMPTY; frames as usize].into_boxed_slice(),
        }
    }

    /// Number of frames.
    pub fn len(&self) -> u32 {
        // The constructor takes a u32 count, so the length fits.
        self.metas.len() as u32
    }

    /// Whether the table has no frames.
    pub fn is_empty(&self) -> bool {
        self.metas.is_empty()
    }

    /// The record of `frame`, or `None` past the end.
    pub fn get(&self, frame: FrameId) -> Option<&FrameMeta> {
        self.metas.get(frame.index())
    }

    /// Kernel flags of `frame` (empty past the end).
    pub fn flags(&self, frame: FrameId) -> FrameFlags {
        self.get(frame).map_or(FrameFlags::EMPTY, FrameMeta::flags)
    }

    /// Replace the kernel flags of `frame`; returns false past the end.
    pub fn set_flags(&mut self, frame: FrameId, flags: FrameFlags) -> bool {
        match self.metas.get_mut(frame.index()) {
            Some(meta) => {
                meta.flags = flags.0;
                true
            }
            None => false,
        }
    }

    /// Set `flags` on `frame` in addition to those already set; returns false past the end.
    pub fn insert_flags(&mut self, frame: FrameId, flags: FrameFlags) -> bool {
        let current = self.flags(frame);
        self.set_flags(frame, current.union(flags))
    }

    /// Clear `flags` on `frame`; returns false past the end.
    pub fn remove_flags(&mut self, frame: FrameId, flags: FrameFlags) -> bool {
        let current = self.flags(frame);
        self.set_flags(frame, current.difference(flags))
    }

    /// Iterate over `(frame, meta)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (FrameId, &FrameMeta)> {
        self.metas
            .iter()
            .enumerate()
            .map(|(i, m)| (FrameId(i as u32), m))
    }

    /// Record of a frame the caller has range-checked.
    pub(crate) fn meta(&self, frame: u32) -> &FrameMeta {
        &self.metas[frame as usize]
    }

    /// Mutable record of a frame the caller has range-checked.
    pub(crate) fn meta_mut(&mut self, frame: u32) -> &mut FrameMeta {
        &mut self.metas[frame as usize]
    }
}

impl Chain for FrameTable {
    fn prev(&self, node: u32) -> u32 {
        self.meta(node).prev
    }

    fn next(&self, node: u32) -> u32 {
        self.meta(node).next
    }
}

impl Links for FrameTable {
    fn set_prev(&mut self, node: u32, prev: u32) {
        self.meta_mut(node).prev = prev;
    }

    fn set_next(&mut self, node: u32, next: u32) {
        self.meta_mut(node).next = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_fits_in_24_bytes() {
        assert!(core::mem::size_of::<FrameMeta>() <= 24);
    }

    #[test]
    fn page_key_round_trips_asid_and_vpn() {
        let key = PageKey::new(AddressSpaceId(0xBEEF), 0x1234_5678_9ABC);
        assert_eq!(key.asid(), AddressSpaceId(0xBEEF));
        assert_eq!(key.vpn(), 0x1234_5678_9ABC);
        assert_eq!(key.leaf_table(), LeafTableId(key.0 >> 9));
        // Two pages 512 apart are in different tables, neighbours share one.
        assert_eq!(
            PageKey::new(AddressSpaceId(1), 512).leaf_table(),
            PageKey::new(AddressSpaceId(1), 1023).leaf_table()
        );
        assert_ne!(
            PageKey::new(AddressSpaceId(1), 511).leaf_table(),
            PageKey::new(AddressSpaceId(1), 512).leaf_table()
        );
    }

    #[test]
    fn flags_are_set_and_cleared_per_frame() {
        let mut table = FrameTable::new(4);
        assert!(table.insert_flags(FrameId(2), FrameFlags::ANON.union(FrameFlags::PINNED)));
        assert!(table.flags(FrameId(2)).contains(FrameFlags::PINNED));
        assert!(table.remove_flags(FrameId(2), FrameFlags::PINNED));
        assert_eq!(table.flags(FrameId(2)), FrameFlags::ANON);
        assert_eq!(table.flags(FrameId(1)), FrameFlags::EMPTY);
        assert!(!table.set_flags(FrameId(4), FrameFlags::ANON));
        assert_eq!(table.flags(FrameId(9)), FrameFlags::EMPTY);
    }

    #[test]
    fn untrack_keeps_kernel_flags() {
        let mut table = FrameTable::new(1);
        table.set_flags(FrameId(0), FrameFlags::DIRTY);
        let meta = table.meta_mut(0);
        meta.track(PageKey(7));
        meta.set_list_id(3);
        meta.untrack();
        assert_eq!(meta.flags(), FrameFlags::DIRTY);
        assert!(!meta.is_tracked());
        assert_eq!(meta.list_id(), 0);
    }
}
