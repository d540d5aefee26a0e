//! Access and dirty tracking for page reclaim: harvesting the access flag (with batched TLB
//! invalidation), MGLRU look-around, dirty test-and-clean, and the access-flag and write
//! permission fault fix-ups.
//!
//! Clearing AF needs a TLB invalidation before the hardware (or an access-flag fault) can set it
//! again, since a cached translation is used without looking at the descriptor. Setting AF needs
//! none: the architecture never caches a translation whose AF is 0.

use crate::addr::{PhysFrame, VirtAddr};
use crate::attributes::DirtyTracking;
use crate::descriptor::{Descriptor, DescriptorKind, Level};
use crate::error::MapError;
use crate::interface::{ENTRIES_PER_TABLE, PhysMemory, TlbFlush};
use crate::space::{AddressSpace, FlushPlan, Leaf, RangeVisitor, Slot, TableId};
use core::convert::Infallible;
use core::ops::ControlFlow;

/// What reclaim's aging walk is told, and may decide, while harvesting access flags.
pub trait AgingVisitor {
    /// Called before each level-3 table is scanned; `false` skips it (e.g. a Bloom filter of
    /// tables that had young entries says it had none). Blocks are always scanned.
    fn scan_leaf_table(&mut self, _table: TableId) -> bool {
        true
    }

    /// A leaf that was young; its AF is now clear. `leaf.descriptor` is the value before
    /// clearing, `leaf.table` the table holding it.
    fn young(&mut self, leaf: &Leaf);

    /// A scanned level-3 table is finished: `scanned` present pages examined, `young` of them
    /// were young (MGLRU feeds its Bloom filter from this).
    fn leaf_table_done(&mut self, _table: TableId, _scanned: usize, _young: usize) {}
}

impl<F: FnMut(&Leaf)> AgingVisitor for F {
    fn young(&mut self, leaf: &Leaf) {
        self(leaf);
    }
}

/// Counts from an access-flag harvest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgingSummary {
    /// Present leaves examined.
    pub scanned: usize,
    /// Of those, how many were young (and were cleared).
    pub young: usize,
    /// Level-3 tables the visitor skipped.
    pub skipped_tables: usize,
}

/// What a fault fix-up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultOutcome {
    /// The descriptor was updated; retry the access.
    Resolved,
    /// The descriptor already allowed the access (another CPU fixed it, or a stale TLB entry
    /// faulted); retry the access.
    Spurious,
    /// The mapping does not allow the access (a real protection fault, e.g. copy-on-write).
    PermissionDenied,
}

/// Clears AF on the present leaves it is shown, reports the young ones and batches the TLB
/// invalidation into one flush at the end.
struct Harvest<'s, 'v, M: PhysMemory, T: TlbFlush, V: ?Sized> {
    space: &'s AddressSpace<M, T>,
    visitor: &'v mut V,
    plan: FlushPlan,
    summary: AgingSummary,
    /// Counts of the level-3 table being scanned: (present, young).
    table: (usize, usize),
}

impl<'s, 'v, M: PhysMemory, T: TlbFlush, V: AgingVisitor + ?Sized> Harvest<'s, 'v, M, T, V> {
    fn new(space: &'s AddressSpace<M, T>, visitor: &'v mut V) -> Self {
        Self {
            space,
            visitor,
            plan: FlushPlan::new(),
            summary: AgingSummary::default(),
            table: (0, 0),
        }
    }

    /// Test-and-clear AF on a present leaf, as one atomic RMW so a concurrent hardware update
    /// (AF or dirty) is never lost.
    fn harvest(&mut self, slot: &Slot<'_>) {
        self.summary.scanned += 1;
        self.table.0 += 1;
        let old = slot.fetch_and(!Descriptor::access_flag_mask());
        if old.accessed() {
            self.summary.young += 1;
            self.table.1 += 1;
            self.plan.add(slot.offset);
            self.visitor.young(&self.space.leaf_from(slot, old));
        }
    }

    fn finish(mut self) -> AgingSummary {
        self.plan.execute(self.space);
        self.summary
    }
}

impl<M: PhysMemory, T: TlbFlush, V: AgingVisitor + ?Sized> RangeVisitor
    for Harvest<'_, '_, M, T, V>
{
    type Break = Infallible;

    fn leaf(&mut self, slot: &Slot<'_>, _descriptor: Descriptor) -> ControlFlow<Infallible> {
        self.harvest(slot);
        ControlFlow::Continue(())
    }

    fn enter_leaf_table(&mut self, table: PhysFrame) -> bool {
        let scan = self.visitor.scan_leaf_table(TableId(table));
        if !scan {
            self.summary.skipped_tables += 1;
        }
        self.table = (0, 0);
        scan
    }

    fn leave_table(&mut self, parent: &Slot<'_>, child: PhysFrame) {
        if parent.level == Level::L2 {
            let (scanned, young) = self.table;
            self.visitor.leaf_table_done(TableId(child), scanned, young);
        }
    }
}

impl<M: PhysMemory, T: TlbFlush> AddressSpace<M, T> {
    /// Clears the access flag of the leaf mapping `va`; returns whether it was set. A set flag
    /// is followed by a TLB invalidation of that page, so the next access is seen again.
    pub fn test_and_clear_young(&mut self, va: VirtAddr) -> Result<bool, MapError> {
        let (slot, _) = self.present_leaf(va)?;
        let old = slot.fetch_and(!Descriptor::access_flag_mask());
        if old.accessed() {
            self.flush_one(slot.offset);
        }
        Ok(old.accessed())
    }

    /// Clears the access flag of every leaf overlapping `[va, va + len)` (level-3 tables the
    /// visitor declines are skipped) and reports each one that was young. The TLB is invalidated
    /// once at the end: page by page for up to [`FLUSH_BY_PAGE_LIMIT`](crate::FLUSH_BY_PAGE_LIMIT)
    /// young leaves, else by ASID (everything for the kernel space).
    pub fn test_and_clear_young_range<V: AgingVisitor + ?Sized>(
        &mut self,
        va: VirtAddr,
        len: u64,
        visitor: &mut V,
    ) -> Result<AgingSummary, MapError> {
        let (start, end) = self.range(va, len)?;
        let mut harvest = Harvest::new(self, visitor);
        let ControlFlow::Continue(()) =
            self.walk_range(self.root(), Level::L0, start, end, &mut harvest);
        Ok(harvest.finish())
    }

    /// MGLRU look-around: test-and-clear AF on up to `max_neighbours` present pages around `va`
    /// in the same level-3 table (a window centred on `va`, shifted to stay inside the table;
    /// `va`'s own entry is not touched), reporting the young ones; one batched flush at the end
    /// as in [`test_and_clear_young_range`](Self::test_and_clear_young_range).
    /// [`MapError::NotMapped`] if no level-3 table translates `va`.
    pub fn look_around<V: AgingVisitor + ?Sized>(
        &mut self,
        va: VirtAddr,
        max_neighbours: usize,
        visitor: &mut V,
    ) -> Result<AgingSummary, MapError> {
        let slot = self.locate(self.offset_of(va)?, Level::L3);
        if slot.level != Level::L3 {
            return Err(MapError::NotMapped { va });
        }
        let window = max_neighbours.min(ENTRIES_PER_TABLE - 1) + 1;
        let end = (slot.index.saturating_sub(window / 2) + window).min(ENTRIES_PER_TABLE);
        let start = end - window;
        let table_offset = slot.offset - slot.index as u64 * Level::L3.entry_size();
        let mut harvest = Harvest::new(self, visitor);
        for index in (start..end).filter(|&index| index != slot.index) {
            let neighbour = self.slot(
                slot.table,
                Level::L3,
                table_offset + index as u64 * Level::L3.entry_size(),
            );
            if neighbour.load().kind(Level::L3) == DescriptorKind::Page {
                harvest.harvest(&neighbour);
            }
        }
        Ok(harvest.finish())
    }

    /// Makes the page (or block) mapping `va` clean again and returns whether it was dirty. A
    /// mapping that was writable is invalidated in the TLB, which may hold its write permission.
    pub fn test_and_clear_dirty(&mut self, va: VirtAddr) -> Result<bool, MapError> {
        let tracking = self.dirty_tracking();
        if tracking == DirtyTracking::Untracked {
            return Err(MapError::NoDirtyTracking);
        }
        let (slot, _) = self.present_leaf(va)?;
        match slot.update(|current| {
            if tracking.is_dirty(current) {
                tracking.mark_clean(current)
            } else {
                None
            }
        }) {
            Ok(old) => {
                if !old.read_only() {
                    self.flush_one(slot.offset);
                }
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Access-flag fault fix-up (no FEAT_HAFDBS, or TCR_EL1.HA = 0): sets AF on the leaf mapping
    /// `va`. No TLB invalidation: entries with AF = 0 are never cached.
    pub fn resolve_access_fault(&mut self, va: VirtAddr) -> Result<FaultOutcome, MapError> {
        let (slot, _) = self.present_leaf(va)?;
        let old = slot.fetch_or(Descriptor::access_flag_mask());
        self.publish();
        Ok(if old.accessed() {
            FaultOutcome::Spurious
        } else {
            FaultOutcome::Resolved
        })
    }

    /// Write permission fault fix-up for dirty tracking: a writable-clean mapping becomes
    /// writable and dirty (and young). Also usable right after mapping a page for a write fault,
    /// to save the second fault. Relaxing permission needs no invalidation; a CPU still holding
    /// the read-only entry faults once more and gets [`FaultOutcome::Spurious`].
    pub fn resolve_write_fault(&mut self, va: VirtAddr) -> Result<FaultOutcome, MapError> {
        let tracking = self.dirty_tracking();
        let (slot, _) = self.present_leaf(va)?;
        let updated = slot.update(|current| {
            let dirty = tracking.mark_dirty(current)?.with_accessed(true);
            (dirty != current).then_some(dirty)
        });
        match updated {
            Ok(_) => {
                self.publish();
                Ok(FaultOutcome::Resolved)
            }
            Err(current) if tracking.write_intended(current) => Ok(FaultOutcome::Spurious),
            Err(_) => Ok(FaultOutcome::PermissionDenied),
        }
    }
}
