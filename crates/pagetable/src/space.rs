//! An address space: a root table in simulated or real physical memory and the operations that
//! keep it consistent with the TLB.
//!
//! Concurrency model: structural changes take `&mut self`, so software writers are serialized by
//! whoever owns the address space (the kernel's lock). The hardware walker reads the tables at
//! any time and, with FEAT_HAFDBS, sets AF and clears `AP[2]` on its own, so every descriptor access
//! is atomic and every read-modify-write of a live leaf is an atomic RMW (no hardware update is
//! lost). Loads are Acquire and stores Release so a concurrent lock-free software reader (e.g.
//! `translate` on another CPU) sees a new table's contents before the descriptor linking it; the
//! walker is ordered by the barriers in [`TlbFlush`].
//!
//! Empty tables: apart from the root, no table is ever left with all entries zero. Operations
//! that remove entries check each table they touched (a scan of its 512 entries) and free it
//! once it is empty, after the TLB invalidation that follows unlinking it. Swap entries count as
//! occupying their table.

use crate::addr::{HALF_SIZE, Half, PAGE_SIZE, Page, PhysAddr, PhysFrame, VirtAddr};
use crate::attributes::{DirtyTracking, MemoryAttributes, Scope};
use crate::descriptor::{Descriptor, DescriptorFields, DescriptorKind, Level};
use crate::error::MapError;
use crate::interface::{Asid, PhysMemory, TableEntries, TlbFlush};
use crate::swap::SwapEntry;
use arrayvec::ArrayVec;
use core::convert::Infallible;
use core::fmt;
use core::ops::ControlFlow;
use core::sync::atomic::{AtomicU64, Ordering};

/// Up to this many pages are invalidated one by one after a batched operation (unmap chunk,
/// protect, test-and-clear-young); beyond it, one ASID-wide invalidation (`TLBI ASIDE1IS`, or
/// `VMALLE1IS` for the kernel) is cheaper than that many broadcast TLBIs and refills.
pub const FLUSH_BY_PAGE_LIMIT: usize = 16;

/// Removed leaves and tables are handed back in chunks of this many, each after one flush, so
/// `unmap` needs no allocation (2 KiB of stack).
pub const UNMAP_BATCH: usize = 64;

/// Which TTBR the address space is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// TTBR1: the kernel half; global mappings only, no EL0 access.
    Kernel,
    /// TTBR0: a user half tagged with its ASID; per-ASID (nG) mappings only.
    User(Asid),
}

impl Space {
    /// The half of the virtual address space this TTBR translates.
    pub const fn half(self) -> Half {
        match self {
            Self::Kernel => Half::Kernel,
            Self::User(_) => Half::User,
        }
    }
}

/// Whether `map` may use block descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// 4 KiB pages only (fine-grained permissions and reclaim).
    Pages,
    /// 1 GiB and 2 MiB blocks wherever the virtual and physical addresses are both aligned and
    /// enough of the range remains; pages elsewhere.
    AllowBlocks,
}

/// Identity of a translation table: its frame. Stable while the table exists (tables are only
/// freed when empty), so a reclaim Bloom filter can remember it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableId(pub PhysFrame);

/// A block or page mapping as found in the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First virtual address the leaf maps.
    pub va: VirtAddr,
    /// First physical address it maps to.
    pub pa: PhysAddr,
    /// Level of the descriptor (1 = 1 GiB block, 2 = 2 MiB block, 3 = 4 KiB page).
    pub level: Level,
    /// The descriptor's value when it was read (or removed).
    pub descriptor: Descriptor,
    /// The table holding the descriptor.
    pub table: TableId,
    tracking: DirtyTracking,
}

impl Leaf {
    /// Bytes mapped.
    pub const fn size(&self) -> u64 {
        self.level.entry_size()
    }

    /// Decoded attributes; an error only if the descriptor was not written by this crate.
    pub fn attributes(&self) -> Result<MemoryAttributes, crate::attributes::AttributeError> {
        MemoryAttributes::from_descriptor(self.descriptor, self.tracking)
    }

    /// Access flag.
    pub fn is_young(&self) -> bool {
        self.descriptor.accessed()
    }

    /// Written since last cleaned (always true for writable pages of an untracked space).
    pub fn is_dirty(&self) -> bool {
        self.tracking.is_dirty(self.descriptor)
    }

    /// Whether the leaf could be both written and executed (see
    /// [`Descriptor::violates_wxorx`]).
    pub fn violates_wxorx(&self) -> bool {
        self.descriptor.violates_wxorx()
    }
}

/// Result of [`AddressSpace::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address the virtual address translates to.
    pub pa: PhysAddr,
    /// The mapping that translates it.
    pub leaf: Leaf,
}

/// Something [`AddressSpace::unmap`] removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmapped {
    /// A mapping; its frame(s) may be reused (the TLB has been invalidated).
    Leaf(Leaf),
    /// A swap entry; its swap slot may be freed.
    Swap {
        /// The page it belonged to.
        page: Page,
        /// The entry.
        entry: SwapEntry,
    },
}

/// One level of a [`Walk`]: the entry consulted in one table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkStep {
    /// The table's level.
    pub level: Level,
    /// Index of the entry in the table.
    pub index: usize,
    /// The table.
    pub table: PhysFrame,
    /// The entry's value.
    pub descriptor: Descriptor,
}

impl fmt::Display for WalkStep {
    /// `L2[  5] table 0x40003000: 0x0060000040200711 block -> 0x40200000 AttrIndx=1(Normal WB) ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "L{}[{:3}] table {:#x}: {:#018x} {}",
            self.level.number(),
            self.index,
            self.table.start().as_u64(),
            self.descriptor.raw(),
            DescriptorFields {
                descriptor: self.descriptor,
                level: self.level
            }
        )
    }
}

/// The entries a hardware walk of one address reads, root first (for the shell's `pt VA`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Walk {
    /// The address walked.
    pub va: VirtAddr,
    /// One step per level read; empty if the address is in the other half.
    pub steps: ArrayVec<WalkStep, 4>,
}

impl fmt::Display for Walk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return write!(f, "{} is not in this address space's half", self.va);
        }
        write!(f, "walk of {}:", self.va)?;
        for step in &self.steps {
            write!(f, "\n  {step}")?;
        }
        Ok(())
    }
}

/// One entry of a table, located during a walk.
pub(crate) struct Slot<'a> {
    entry: &'a AtomicU64,
    pub(crate) level: Level,
    pub(crate) table: PhysFrame,
    pub(crate) index: usize,
    /// Offset within the half of the first address the entry maps.
    pub(crate) offset: u64,
}

impl Slot<'_> {
    pub(crate) fn load(&self) -> Descriptor {
        Descriptor::from_raw(self.entry.load(Ordering::Acquire))
    }

    fn store(&self, descriptor: Descriptor) {
        self.entry.store(descriptor.raw(), Ordering::Release);
    }

    /// Atomically replaces the entry, returning the value it had (with any hardware AF/dirty
    /// update up to that instant).
    pub(crate) fn replace(&self, descriptor: Descriptor) -> Descriptor {
        Descriptor::from_raw(self.entry.swap(descriptor.raw(), Ordering::AcqRel))
    }

    /// Atomic read-modify-write: `change` returns the new value or `None` to leave the entry.
    /// `Ok(old)` if it was changed, `Err(current)` if not.
    pub(crate) fn update(
        &self,
        mut change: impl FnMut(Descriptor) -> Option<Descriptor>,
    ) -> Result<Descriptor, Descriptor> {
        self.entry
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |raw| {
                change(Descriptor::from_raw(raw)).map(Descriptor::raw)
            })
            .map(Descriptor::from_raw)
            .map_err(Descriptor::from_raw)
    }

    pub(crate) fn fetch_and(&self, mask: u64) -> Descriptor {
        Descriptor::from_raw(self.entry.fetch_and(mask, Ordering::AcqRel))
    }

    pub(crate) fn fetch_or(&self, bits: u64) -> Descriptor {
        Descriptor::from_raw(self.entry.fetch_or(bits, Ordering::AcqRel))
    }
}

/// Callbacks of [`AddressSpace::walk_range`], in address order.
pub(crate) trait RangeVisitor {
    /// Why a walk stops early.
    type Break;

    /// A valid block or page overlapping the range.
    fn leaf(&mut self, slot: &Slot<'_>, descriptor: Descriptor) -> ControlFlow<Self::Break>;

    /// A swap entry in the range.
    fn swap(&mut self, _slot: &Slot<'_>, _entry: SwapEntry) -> ControlFlow<Self::Break> {
        ControlFlow::Continue(())
    }

    /// Before descending into a level-3 table: `false` skips it.
    fn enter_leaf_table(&mut self, _table: PhysFrame) -> bool {
        true
    }

    /// After the part of `child` (linked from `parent`) that overlaps the range was visited.
    fn leave_table(&mut self, _parent: &Slot<'_>, _child: PhysFrame) {}
}

/// Pending TLB invalidations of one operation.
pub(crate) struct FlushPlan {
    offsets: ArrayVec<u64, FLUSH_BY_PAGE_LIMIT>,
    whole_space: bool,
}

impl FlushPlan {
    pub(crate) const fn new() -> Self {
        Self {
            offsets: ArrayVec::new_const(),
            whole_space: false,
        }
    }

    /// Notes that the entry mapping `offset` changed.
    pub(crate) fn add(&mut self, offset: u64) {
        if !self.whole_space && self.offsets.try_push(offset).is_err() {
            self.whole_space = true;
            self.offsets.clear();
        }
    }

    /// Issues the invalidations and empties the plan.
    pub(crate) fn execute<M: PhysMemory, T: TlbFlush>(&mut self, space: &AddressSpace<M, T>) {
        if self.whole_space {
            space.flush_everything();
        }
        for &offset in &self.offsets {
            space.flush_one(offset);
        }
        *self = Self::new();
    }
}

/// An entry removed by `unmap`, handed back after the next flush.
struct Removed {
    offset: u64,
    level: Level,
    table: PhysFrame,
    descriptor: Descriptor,
}

/// The `unmap` walk: clears leaves and swap entries, frees tables that become empty, and hands
/// removed frames back only after the TLB invalidation that covers them.
struct Clearer<'s, 'f, M: PhysMemory, T: TlbFlush> {
    space: &'s AddressSpace<M, T>,
    plan: FlushPlan,
    removed: ArrayVec<Removed, UNMAP_BATCH>,
    on_unmapped: &'f mut dyn FnMut(Unmapped),
}

impl<M: PhysMemory, T: TlbFlush> Clearer<'_, '_, M, T> {
    fn remove(&mut self, removed: Removed) {
        if self.removed.is_full() {
            self.release();
        }
        self.plan.add(removed.offset);
        // Not full: `release` empties a full batch.
        self.removed.push(removed);
    }

    /// Flushes, then returns the removed leaves to the caller and the removed tables to memory.
    fn release(&mut self) {
        self.plan.execute(self.space);
        for removed in self.removed.drain(..) {
            if removed.descriptor.kind(removed.level) == DescriptorKind::Table {
                self.space
                    .memory
                    .free_table(removed.descriptor.next_table());
            } else {
                let leaf = self.space.leaf_at(
                    removed.offset,
                    removed.level,
                    removed.table,
                    removed.descriptor,
                );
                (self.on_unmapped)(Unmapped::Leaf(leaf));
            }
        }
    }
}

impl<M: PhysMemory, T: TlbFlush> RangeVisitor for Clearer<'_, '_, M, T> {
    type Break = Infallible;

    fn leaf(&mut self, slot: &Slot<'_>, _descriptor: Descriptor) -> ControlFlow<Infallible> {
        let descriptor = slot.replace(Descriptor::EMPTY);
        self.remove(Removed {
            offset: slot.offset,
            level: slot.level,
            table: slot.table,
            descriptor,
        });
        ControlFlow::Continue(())
    }

    fn swap(&mut self, slot: &Slot<'_>, _entry: SwapEntry) -> ControlFlow<Infallible> {
        // Invalid entries are never cached in a TLB: no invalidation needed.
        if let Some(entry) = SwapEntry::from_descriptor(slot.replace(Descriptor::EMPTY)) {
            let page = Page::containing(self.space.va(slot.offset));
            (self.on_unmapped)(Unmapped::Swap { page, entry });
        }
        ControlFlow::Continue(())
    }

    fn leave_table(&mut self, parent: &Slot<'_>, child: PhysFrame) {
        let empty = self
            .space
            .entries(child)
            .iter()
            .all(|entry| entry.load(Ordering::Acquire) == 0);
        if empty {
            let descriptor = parent.replace(Descriptor::EMPTY);
            self.remove(Removed {
                offset: parent.offset,
                level: parent.level,
                table: parent.table,
                descriptor,
            });
        }
    }
}

/// The `protect` walk.
struct Protector<'s, M: PhysMemory, T: TlbFlush> {
    space: &'s AddressSpace<M, T>,
    attributes: MemoryAttributes,
    plan: FlushPlan,
    changed: usize,
}

impl<M: PhysMemory, T: TlbFlush> RangeVisitor for Protector<'_, M, T> {
    type Break = Infallible;

    fn leaf(&mut self, slot: &Slot<'_>, current: Descriptor) -> ControlFlow<Infallible> {
        let space = self.space;
        let fresh = space.leaf_descriptor(
            slot.level,
            current.output_address(slot.level),
            &self.attributes,
        );
        if current.attr_index() != fresh.attr_index()
            || current.shareability() != fresh.shareability()
        {
            // A memory type change needs break-before-make.
            let old = slot.replace(Descriptor::EMPTY);
            space.flush_one(slot.offset);
            slot.store(space.carry_state(old, fresh));
            self.changed += 1;
        } else if slot
            .update(|old| {
                let new = space.carry_state(old, fresh);
                (new != old).then_some(new)
            })
            .is_ok()
        {
            // Permission-only change: written in place, invalidated afterwards.
            self.plan.add(slot.offset);
            self.changed += 1;
        }
        ControlFlow::Continue(())
    }
}

/// The `for_each_leaf` walk.
struct LeafVisitor<'s, M: PhysMemory, T: TlbFlush, F> {
    space: &'s AddressSpace<M, T>,
    visit: F,
}

impl<M: PhysMemory, T: TlbFlush, F: FnMut(&Leaf) -> ControlFlow<()>> RangeVisitor
    for LeafVisitor<'_, M, T, F>
{
    type Break = ();

    fn leaf(&mut self, slot: &Slot<'_>, descriptor: Descriptor) -> ControlFlow<()> {
        (self.visit)(&self.space.leaf_from(slot, descriptor))
    }
}

/// A stage-1 translation regime half: root table, ASID and the operations on it.
///
/// `M` provides table frames, `T` TLB maintenance; both are usually zero-sized handles to kernel
/// globals, or references (`&P` and `&T` implement the traits too).
pub struct AddressSpace<M: PhysMemory, T: TlbFlush> {
    memory: M,
    tlb: T,
    root: PhysFrame,
    space: Space,
    tracking: DirtyTracking,
}

impl<M: PhysMemory, T: TlbFlush> AddressSpace<M, T> {
    /// An empty address space (one zeroed root table).
    pub fn new(memory: M, tlb: T, space: Space, tracking: DirtyTracking) -> Result<Self, MapError> {
        let root = memory.allocate_table().ok_or(MapError::OutOfMemory)?;
        Ok(Self {
            memory,
            tlb,
            root,
            space,
            tracking,
        })
    }

    /// The root table.
    pub fn root(&self) -> PhysFrame {
        self.root
    }

    /// Kernel or user (with ASID).
    pub fn space(&self) -> Space {
        self.space
    }

    /// The dirty tracking chosen at creation.
    pub fn dirty_tracking(&self) -> DirtyTracking {
        self.tracking
    }

    /// The value to load into TTBR0_EL1 (`root | ASID << 48`) or TTBR1_EL1 (`root`).
    pub fn ttbr(&self) -> u64 {
        let asid = match self.space {
            Space::Kernel => 0,
            Space::User(asid) => u64::from(asid.0),
        };
        self.root.start().as_u64() | asid << 48
    }

    /// Maps `[va, va + len)` to `[pa, pa + len)`.
    ///
    /// All of `va`, `pa` and `len` must be 4 KiB aligned and the range must be empty (no
    /// mapping and no swap entry). On error nothing stays mapped and no table allocated by this
    /// call remains: mappings made so far are removed again (with TLB invalidation) and tables
    /// that became empty are freed.
    pub fn map(
        &mut self,
        va: VirtAddr,
        pa: PhysAddr,
        len: u64,
        attributes: MemoryAttributes,
        granularity: Granularity,
    ) -> Result<(), MapError> {
        self.check_attributes(&attributes)?;
        let (start, end) = self.range(va, len)?;
        if !pa.is_aligned(PAGE_SIZE) {
            return Err(MapError::Misaligned { value: pa.as_u64() });
        }
        if pa
            .as_u64()
            .checked_add(len)
            .is_none_or(|pa_end| pa_end > 1 << crate::addr::PA_BITS)
        {
            return Err(MapError::PhysicalOutOfRange {
                start: pa.as_u64(),
                len,
            });
        }
        let mut offset = start;
        while offset < end {
            let output = pa.as_u64() + (offset - start);
            let level = leaf_level(offset, output, end - offset, granularity);
            if let Err(error) =
                self.map_leaf(offset, PhysAddr::truncated(output), level, &attributes)
            {
                // After running out of memory the failed entry's region holds only tables this
                // call created (allocation happens below empty entries only): free them too.
                let undo_end = if error == MapError::OutOfMemory {
                    offset + level.entry_size()
                } else {
                    offset
                };
                self.clear_range(start, undo_end, &mut |_| {});
                return Err(error);
            }
            offset += level.entry_size();
        }
        self.tlb.publish();
        Ok(())
    }

    /// Maps one 4 KiB page. Errors as [`map`](Self::map).
    pub fn map_page(
        &mut self,
        page: Page,
        frame: PhysFrame,
        attributes: MemoryAttributes,
    ) -> Result<(), MapError> {
        self.map(
            page.start(),
            frame.start(),
            PAGE_SIZE,
            attributes,
            Granularity::Pages,
        )
    }

    /// Removes every mapping and swap entry in `[va, va + len)`, handing each to `on_unmapped`
    /// after the TLB invalidation covering it (so frames may be freed right away). Holes are
    /// skipped. Tables left empty are freed.
    ///
    /// Fails with [`MapError::BlockInTheWay`], changing nothing, if the range covers part of a
    /// block.
    pub fn unmap(
        &mut self,
        va: VirtAddr,
        len: u64,
        mut on_unmapped: impl FnMut(Unmapped),
    ) -> Result<(), MapError> {
        let (start, end) = self.range(va, len)?;
        self.check_whole_blocks(start, end)?;
        self.clear_range(start, end, &mut on_unmapped);
        Ok(())
    }

    /// Gives every mapping in `[va, va + len)` the attributes `attributes`, keeping output
    /// addresses, the access flag and dirty state (a dirty page that loses write permission
    /// keeps SW_DIRTY). Holes and swap entries are skipped. Returns how many leaves changed.
    ///
    /// Permission changes are written in place and invalidated afterwards (batched, see
    /// [`FLUSH_BY_PAGE_LIMIT`]), as the architecture allows for AP/PXN/UXN/DBM and software bits;
    /// a memory-type change uses break-before-make. Fails with [`MapError::BlockInTheWay`],
    /// changing nothing, if the range covers part of a block.
    pub fn protect(
        &mut self,
        va: VirtAddr,
        len: u64,
        attributes: MemoryAttributes,
    ) -> Result<usize, MapError> {
        self.check_attributes(&attributes)?;
        let (start, end) = self.range(va, len)?;
        self.check_whole_blocks(start, end)?;
        let mut protector = Protector {
            space: self,
            attributes,
            plan: FlushPlan::new(),
            changed: 0,
        };
        let ControlFlow::Continue(()) =
            self.walk_range(self.root, Level::L0, start, end, &mut protector);
        protector.plan.execute(self);
        self.tlb.publish();
        Ok(protector.changed)
    }

    /// The mapping of `va`, if any (`None` too for an address of the other half).
    pub fn translate(&self, va: VirtAddr) -> Option<Translation> {
        if va.half() != self.space.half() {
            return None;
        }
        let offset = va.half_offset();
        let slot = self.locate(offset, Level::L3);
        let descriptor = slot.load();
        if !descriptor.is_leaf(slot.level) {
            return None;
        }
        let leaf = self.leaf_from(&slot, descriptor);
        let pa = leaf.pa.checked_add(offset - slot.offset)?;
        Some(Translation { pa, leaf })
    }

    /// The descriptors a hardware walk of `va` reads, level by level.
    pub fn walk(&self, va: VirtAddr) -> Walk {
        let mut steps = ArrayVec::new();
        if va.half() == self.space.half() {
            let offset = va.half_offset();
            let mut table = self.root;
            for level in Level::ALL {
                let slot = self.slot(table, level, offset);
                let descriptor = slot.load();
                steps.push(WalkStep {
                    level,
                    index: slot.index,
                    table,
                    descriptor,
                });
                if descriptor.kind(level) != DescriptorKind::Table {
                    break;
                }
                table = descriptor.next_table();
            }
        }
        Walk { va, steps }
    }

    /// Calls `visit` for every block and page overlapping `[va, va + len)`, in address order,
    /// until it returns `Break`.
    pub fn for_each_leaf(
        &self,
        va: VirtAddr,
        len: u64,
        visit: impl FnMut(&Leaf) -> ControlFlow<()>,
    ) -> Result<(), MapError> {
        let (start, end) = self.range(va, len)?;
        // Early stop is the caller's choice, not an error.
        let _ = self.walk_range(
            self.root,
            Level::L0,
            start,
            end,
            &mut LeafVisitor { space: self, visit },
        );
        Ok(())
    }

    /// Reports every leaf in `[va, va + len)` that could be both written and executed (a W^X
    /// audit; this crate never creates one). Returns how many were found.
    pub fn wxorx_violations(
        &self,
        va: VirtAddr,
        len: u64,
        mut report: impl FnMut(&Leaf),
    ) -> Result<usize, MapError> {
        let mut found = 0;
        self.for_each_leaf(va, len, |leaf| {
            if leaf.violates_wxorx() {
                found += 1;
                report(leaf);
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// Points the page at a new frame with new attributes using break-before-make (invalidate,
    /// flush, write): copy-on-write and migration. Returns the old mapping; its frame may be
    /// freed.
    pub fn replace_page(
        &mut self,
        page: Page,
        frame: PhysFrame,
        attributes: MemoryAttributes,
    ) -> Result<Leaf, MapError> {
        self.check_attributes(&attributes)?;
        let (slot, _) = self.present_page(page)?;
        let fresh = self.leaf_descriptor(Level::L3, frame.start(), &attributes);
        let old = slot.replace(Descriptor::EMPTY);
        self.flush_one(slot.offset);
        slot.store(fresh);
        self.tlb.publish();
        Ok(self.leaf_from(&slot, old))
    }

    /// Replaces the block mapping `va` by a table of 512 leaves one level down (2 MiB blocks or
    /// 4 KiB pages) mapping the same memory with the same attributes, access and dirty state,
    /// using break-before-make. Returns the new leaves' level. The table is allocated first, so
    /// on [`MapError::OutOfMemory`] the block is untouched.
    pub fn split_block(&mut self, va: VirtAddr) -> Result<Level, MapError> {
        let offset = self.offset_of(va)?;
        let slot = self.locate(offset, Level::L3);
        let child_level = match (slot.load().kind(slot.level), slot.level.next()) {
            (DescriptorKind::Block, Some(next)) => next,
            (DescriptorKind::Page, _) => return Err(MapError::NotABlock { va }),
            _ => return Err(MapError::NotMapped { va }),
        };
        let table = self.memory.allocate_table().ok_or(MapError::OutOfMemory)?;
        let old = slot.replace(Descriptor::EMPTY);
        self.flush_one(slot.offset);
        let base = old.output_address(slot.level);
        for (entry, step) in self.entries(table).iter().zip(0u64..) {
            let output = PhysAddr::truncated(base.as_u64() + step * child_level.entry_size());
            entry.store(
                old.with_output_address(output)
                    .as_leaf_at(child_level)
                    .raw(),
                Ordering::Release,
            );
        }
        slot.store(Descriptor::table(table));
        self.tlb.publish();
        Ok(child_level)
    }

    /// Replaces a present page's mapping by `entry` (invalid, so no later access can use the
    /// frame once this returns: the TLB is invalidated). Returns the removed mapping, with its
    /// final access and dirty state, so the caller can write the frame out and free it.
    pub fn swap_out(&mut self, page: Page, entry: SwapEntry) -> Result<Leaf, MapError> {
        let (slot, _) = self.present_page(page)?;
        let old = slot.replace(entry.descriptor());
        self.flush_one(slot.offset);
        Ok(self.leaf_from(&slot, old))
    }

    /// Maps `frame` where `page` holds a swap entry (a swapped-in page starts young and clean)
    /// and returns the entry.
    pub fn swap_in(
        &mut self,
        page: Page,
        frame: PhysFrame,
        attributes: MemoryAttributes,
    ) -> Result<SwapEntry, MapError> {
        self.check_attributes(&attributes)?;
        let va = page.start();
        let slot = self.locate(self.offset_of(va)?, Level::L3);
        let current = slot.load();
        let entry = match SwapEntry::from_descriptor(current) {
            Some(entry) if slot.level == Level::L3 => entry,
            _ if current.is_leaf(slot.level) => return Err(MapError::AlreadyMapped { va }),
            _ => return Err(MapError::NotSwapped { va }),
        };
        slot.store(self.leaf_descriptor(Level::L3, frame.start(), &attributes));
        self.tlb.publish();
        Ok(entry)
    }

    /// Replaces the swap entry stored for `page` by `entry` (e.g. to add the reclaim policy's
    /// shadow token once the eviction is final); false, with nothing changed, if `page` holds
    /// no swap entry.
    pub fn set_swap_entry(&mut self, page: Page, entry: SwapEntry) -> bool {
        let Ok(offset) = self.offset_of(page.start()) else {
            return false;
        };
        let slot = self.locate(offset, Level::L3);
        if slot.level != Level::L3 || SwapEntry::from_descriptor(slot.load()).is_none() {
            return false;
        }
        slot.store(entry.descriptor());
        true
    }

    /// The swap entry stored for `page`, if any.
    pub fn swap_entry(&self, page: Page) -> Option<SwapEntry> {
        let slot = self.locate(self.offset_of(page.start()).ok()?, Level::L3);
        if slot.level != Level::L3 {
            return None;
        }
        SwapEntry::from_descriptor(slot.load())
    }

    // ---- internals shared with the reclaim helpers ----

    /// The table's entries.
    pub(crate) fn entries(&self, frame: PhysFrame) -> &TableEntries {
        // SAFETY: only frames allocated by `self.memory` and not yet freed are passed here (the
        // root, and tables reached through descriptors this address space wrote, which it frees
        // only after unlinking them). The `PhysMemory` contract makes the pointer valid and
        // aligned for 4 KiB of atomics for as long as the frame is allocated, which outlives
        // `&self`'s use of it.
        unsafe { self.memory.table_entries(frame).as_ref() }
    }

    pub(crate) fn slot(&self, table: PhysFrame, level: Level, offset: u64) -> Slot<'_> {
        let index = level.index_of(offset);
        Slot {
            entry: &self.entries(table)[index],
            level,
            table,
            index,
            offset: offset & !(level.entry_size() - 1),
        }
    }

    /// The entry that decides how `offset` translates: the first one on the path from the root
    /// that is not a table descriptor, or the `stop`-level one.
    pub(crate) fn locate(&self, offset: u64, stop: Level) -> Slot<'_> {
        let mut table = self.root;
        let mut level = Level::L0;
        loop {
            let slot = self.slot(table, level, offset);
            let descriptor = slot.load();
            match level.next() {
                Some(next) if level != stop && descriptor.kind(level) == DescriptorKind::Table => {
                    table = descriptor.next_table();
                    level = next;
                }
                _ => return slot,
            }
        }
    }

    /// The entry for `offset` at `target`, creating missing tables on the way.
    fn ensure_slot(&self, offset: u64, target: Level) -> Result<Slot<'_>, MapError> {
        let mut table = self.root;
        let mut level = Level::L0;
        loop {
            let slot = self.slot(table, level, offset);
            let Some(next) = level.next().filter(|_| level != target) else {
                return Ok(slot);
            };
            let descriptor = slot.load();
            table = match descriptor.kind(level) {
                DescriptorKind::Table => descriptor.next_table(),
                DescriptorKind::Invalid if descriptor == Descriptor::EMPTY => {
                    let frame = self.memory.allocate_table().ok_or(MapError::OutOfMemory)?;
                    slot.store(Descriptor::table(frame));
                    frame
                }
                _ => {
                    return Err(MapError::AlreadyMapped {
                        va: self.va(offset),
                    });
                }
            };
            level = next;
        }
    }

    fn map_leaf(
        &self,
        offset: u64,
        output: PhysAddr,
        level: Level,
        attributes: &MemoryAttributes,
    ) -> Result<(), MapError> {
        let slot = self.ensure_slot(offset, level)?;
        if slot.load() != Descriptor::EMPTY {
            return Err(MapError::AlreadyMapped {
                va: self.va(offset),
            });
        }
        slot.store(self.leaf_descriptor(level, output, attributes));
        Ok(())
    }

    /// Walks the tables below `table` (at `level`) over `[start, end)`, a range inside the
    /// table's region, calling `visitor` in address order.
    pub(crate) fn walk_range<V: RangeVisitor>(
        &self,
        table: PhysFrame,
        level: Level,
        start: u64,
        end: u64,
        visitor: &mut V,
    ) -> ControlFlow<V::Break> {
        let mut offset = start;
        while offset < end {
            let slot = self.slot(table, level, offset);
            let next = slot.offset + level.entry_size();
            let descriptor = slot.load();
            match (descriptor.kind(level), level.next()) {
                (DescriptorKind::Table, Some(child_level)) => {
                    let child = descriptor.next_table();
                    if child_level != Level::L3 || visitor.enter_leaf_table(child) {
                        self.walk_range(child, child_level, offset, end.min(next), visitor)?;
                        visitor.leave_table(&slot, child);
                    }
                }
                (DescriptorKind::Block | DescriptorKind::Page, _) => {
                    visitor.leaf(&slot, descriptor)?
                }
                (DescriptorKind::Invalid, None) => {
                    if let Some(entry) = SwapEntry::from_descriptor(descriptor) {
                        visitor.swap(&slot, entry)?;
                    }
                }
                _ => {}
            }
            offset = next;
        }
        ControlFlow::Continue(())
    }

    /// Removes every leaf and swap entry overlapping `[start, end)`. Callers make sure no block
    /// lies partly outside (`check_whole_blocks`, or a rollback of blocks just made).
    fn clear_range(&self, start: u64, end: u64, on_unmapped: &mut dyn FnMut(Unmapped)) {
        let mut clearer = Clearer {
            space: self,
            plan: FlushPlan::new(),
            removed: ArrayVec::new(),
            on_unmapped,
        };
        let ControlFlow::Continue(()) =
            self.walk_range(self.root, Level::L0, start, end, &mut clearer);
        clearer.release();
    }

    /// Fails if a block overlaps `[start, end)` without lying inside it. Only the blocks holding
    /// the first and last page can.
    fn check_whole_blocks(&self, start: u64, end: u64) -> Result<(), MapError> {
        if start >= end {
            return Ok(());
        }
        for offset in [start, end - PAGE_SIZE] {
            let slot = self.locate(offset, Level::L3);
            let inside = slot.offset >= start && slot.offset + slot.level.entry_size() <= end;
            if slot.load().kind(slot.level) == DescriptorKind::Block && !inside {
                return Err(self.block_in_the_way(&slot));
            }
        }
        Ok(())
    }

    fn block_in_the_way(&self, slot: &Slot<'_>) -> MapError {
        MapError::BlockInTheWay {
            va: self.va(slot.offset),
            level: slot.level,
        }
    }

    /// The 4 KiB page mapping `page`: `NotMapped` if none, `BlockInTheWay` if a block maps it.
    fn present_page(&self, page: Page) -> Result<(Slot<'_>, Descriptor), MapError> {
        let (slot, descriptor) = self.present_leaf(page.start())?;
        if slot.level != Level::L3 {
            return Err(self.block_in_the_way(&slot));
        }
        Ok((slot, descriptor))
    }

    /// The leaf mapping `va`, `NotMapped` if none.
    pub(crate) fn present_leaf(&self, va: VirtAddr) -> Result<(Slot<'_>, Descriptor), MapError> {
        let slot = self.locate(self.offset_of(va)?, Level::L3);
        let descriptor = slot.load();
        if descriptor.is_leaf(slot.level) {
            Ok((slot, descriptor))
        } else {
            Err(MapError::NotMapped { va })
        }
    }

    /// `[va, va + len)` as offsets within the half, checked for alignment and bounds.
    pub(crate) fn range(&self, va: VirtAddr, len: u64) -> Result<(u64, u64), MapError> {
        let start = self.offset_of(va)?;
        if !va.is_aligned(PAGE_SIZE) {
            return Err(MapError::Misaligned { value: va.as_u64() });
        }
        if !len.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned { value: len });
        }
        match start.checked_add(len) {
            Some(end) if end <= HALF_SIZE => Ok((start, end)),
            _ => Err(MapError::NotCanonical {
                addr: va.as_u64().wrapping_add(len),
            }),
        }
    }

    pub(crate) fn offset_of(&self, va: VirtAddr) -> Result<u64, MapError> {
        if va.half() == self.space.half() {
            Ok(va.half_offset())
        } else {
            Err(MapError::NotCanonical { addr: va.as_u64() })
        }
    }

    pub(crate) fn va(&self, offset: u64) -> VirtAddr {
        VirtAddr::in_half(self.space.half(), offset)
    }

    fn check_attributes(&self, attributes: &MemoryAttributes) -> Result<(), MapError> {
        let required = match self.space {
            Space::Kernel if attributes.user_accessible() => {
                return Err(MapError::UserAccessInKernelSpace);
            }
            Space::Kernel => Scope::Global,
            Space::User(_) => Scope::PerAsid,
        };
        if attributes.scope() == required {
            Ok(())
        } else {
            Err(MapError::ScopeMismatch { required })
        }
    }

    /// A leaf for `level` (1-3) mapping `output` (aligned to the level by the caller).
    fn leaf_descriptor(
        &self,
        level: Level,
        output: PhysAddr,
        attributes: &MemoryAttributes,
    ) -> Descriptor {
        attributes.apply(Descriptor::leaf_truncating(level, output), self.tracking)
    }

    /// `fresh` with the access flag, dirty state and kernel-owned software bits of `old`.
    fn carry_state(&self, old: Descriptor, fresh: Descriptor) -> Descriptor {
        self.tracking
            .carry_dirty(old, fresh)
            .with_accessed(old.accessed())
            .with_sw_available(old.sw_available())
    }

    pub(crate) fn leaf_from(&self, slot: &Slot<'_>, descriptor: Descriptor) -> Leaf {
        self.leaf_at(slot.offset, slot.level, slot.table, descriptor)
    }

    fn leaf_at(&self, offset: u64, level: Level, table: PhysFrame, descriptor: Descriptor) -> Leaf {
        Leaf {
            va: self.va(offset),
            pa: descriptor.output_address(level),
            level,
            descriptor,
            table: TableId(table),
            tracking: self.tracking,
        }
    }

    /// Invalidates the TLB entries (and cached walks) for the entry mapping `offset`.
    pub(crate) fn flush_one(&self, offset: u64) {
        let va = self.va(offset);
        match self.space {
            Space::Kernel => self.tlb.flush_va_all_asids(va),
            Space::User(asid) => self.tlb.flush_va(va, asid),
        }
    }

    /// Invalidates everything this address space may have in the TLB.
    pub(crate) fn flush_everything(&self) {
        match self.space {
            Space::Kernel => self.tlb.flush_all(),
            Space::User(asid) => self.tlb.flush_asid(asid),
        }
    }

    pub(crate) fn publish(&self) {
        self.tlb.publish();
    }

    fn free_tables_below(&self, table: PhysFrame, level: Level) {
        let Some(child_level) = level.next() else {
            return;
        };
        for entry in self.entries(table) {
            let descriptor = Descriptor::from_raw(entry.load(Ordering::Acquire));
            if descriptor.kind(level) == DescriptorKind::Table {
                self.free_tables_below(descriptor.next_table(), child_level);
                self.memory.free_table(descriptor.next_table());
            }
        }
    }
}

impl<M: PhysMemory, T: TlbFlush> Drop for AddressSpace<M, T> {
    /// Frees every table. Leaf frames and swap slots belong to the caller and are not reported:
    /// `unmap` the whole half first to get them back. The address space must no longer be in
    /// any TTBR; its ASID (or, for the kernel, everything) is invalidated before tables are
    /// freed.
    fn drop(&mut self) {
        self.flush_everything();
        self.free_tables_below(self.root, Level::L0);
        self.memory.free_table(self.root);
    }
}

/// The largest leaf that fits at `offset` → `output` with `remaining` bytes left.
fn leaf_level(offset: u64, output: u64, remaining: u64, granularity: Granularity) -> Level {
    if granularity == Granularity::AllowBlocks {
        for level in [Level::L1, Level::L2] {
            let size = level.entry_size();
            if offset.is_multiple_of(size) && output.is_multiple_of(size) && remaining >= size {
                return level;
            }
        }
    }
    Level::L3
}
