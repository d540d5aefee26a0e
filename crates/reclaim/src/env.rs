//! What the kernel (or the simulator) offers a policy: access-bit operations on page tables and
//! a clock. This is the only access information a policy ever gets: there is no callback per
//! access, only "test and clear young" on PTEs.

use crate::frame::{AddressSpaceId, FrameId, LeafTableId, PageKey};

/// Result of a look-around: the leaf table, the PTE neighbours examined and how many of them
/// were young.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LookAround {
    /// The leaf table examined (the same id walks report for it).
    pub table: LeafTableId,
    /// Present PTEs examined (the centre excluded).
    pub present: u32,
    /// Of those, how many were young (their young bit is now clear).
    pub young: u32,
}

/// Receives the results of one page-table walk ([`AccessEnv::walk_page_tables`]).
pub trait PageTableVisitor {
    /// Asked once per leaf table that has present PTEs, in virtual-address order: scan it?
    fn wants_table(&mut self, table: LeafTableId) -> bool;
    /// A present PTE in a scanned table was young (already cleared) and maps `frame`.
    fn young(&mut self, frame: FrameId);
    /// A scanned table is finished: `present` PTEs examined, `young` of them young.
    fn table_done(&mut self, table: LeafTableId, present: u32, young: u32);
}

/// Access-bit operations the kernel implements for the policies.
///
/// All of them may be called with reclaim in progress and must not allocate.
pub trait AccessEnv {
    /// Monotonic time in milliseconds.
    fn now_ms(&self) -> u64;

    /// Test and clear the young (Access flag) bit of the single PTE that maps `frame`, found
    /// through its back-reference `owner`; true if it was set. The kernel invalidates the TLB
    /// entry when the bit was set.
    fn test_and_clear_young(&mut self, frame: FrameId, owner: PageKey) -> bool;

    /// Test and clear the young bits of the present PTE neighbours of `owner` (which `frame`
    /// maps) in a 64-entry window around it, clipped to its leaf table, calling `young` for
    /// every frame whose bit was set. The PTE of `owner` itself is not touched.
    fn look_around(
        &mut self,
        frame: FrameId,
        owner: PageKey,
        young: &mut dyn FnMut(FrameId),
    ) -> LookAround;

    /// Address spaces in a stable order: the first with `after = None`, then the one after
    /// `after`; `None` at the end.
    fn next_address_space(&self, after: Option<AddressSpaceId>) -> Option<AddressSpaceId>;

    /// Whether `space` has run since the previous call for it (clears the indication). A space
    /// that has not run cannot have set any young bit since the last walk.
    fn take_ran_since_walk(&mut self, space: AddressSpaceId) -> bool;

    /// Walk the leaf page tables of `space` in virtual-address order. For each table with present
    /// PTEs ask [`PageTableVisitor::wants_table`]; if so, test and clear the young bit of every
    /// present PTE, report each young one, then report the table done. Finish with one batched
    /// TLB invalidate for the space.
    fn walk_page_tables(&mut self, space: AddressSpaceId, visitor: &mut dyn PageTableVisitor);
}
