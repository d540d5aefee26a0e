//! Test doubles: simulated physical memory for table frames and a TLB that records what it is
//! asked to do.

use crate::addr::{PAGE_SIZE, PhysAddr, PhysFrame};
use crate::interface::{Asid, PhysMemory, TableEntries, TlbFlush};
use crate::{Half, VirtAddr};
use std::cell::{Cell, RefCell};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

/// Physical address of the first simulated frame.
pub const SIM_BASE: u64 = 0x4000_0000;

/// `frames` simulated 4 KiB frames at `SIM_BASE + index * 4096`. Panics (failing the test) on
/// any misuse: access to a frame that is not allocated, double free, freeing a foreign frame.
pub struct SimMemory {
    frames: Vec<Box<TableEntries>>,
    /// Free frame indices, lowest on top.
    free: RefCell<Vec<usize>>,
    live: RefCell<Vec<bool>>,
    /// Allocation fails once this many frames are in use.
    limit: Cell<usize>,
}

impl SimMemory {
    pub fn new(frames: usize) -> Self {
        Self {
            frames: (0..frames)
                .map(|_| Box::new(std::array::from_fn(|_| AtomicU64::new(0))))
                .collect(),
            free: RefCell::new((0..frames).rev().collect()),
            live: RefCell::new(vec![false; frames]),
            limit: Cell::new(frames),
        }
    }

    /// Frames in use.
    pub fn allocated(&self) -> usize {
        self.live.borrow().iter().filter(|&&live| live).count()
    }

    /// Lets at most `limit` frames be in use at once.
    pub fn set_limit(&self, limit: usize) {
        self.limit.set(limit);
    }

    fn index(&self, frame: PhysFrame) -> usize {
        let index = (frame.start().as_u64() - SIM_BASE) / PAGE_SIZE;
        assert!(
            index < self.frames.len() as u64,
            "{frame:?} is not simulated memory"
        );
        index as usize
    }

    fn live_frame(&self, frame: PhysFrame) -> &TableEntries {
        let index = self.index(frame);
        assert!(self.live.borrow()[index], "access to unallocated {frame:?}");
        &self.frames[index]
    }

    /// Raw value of entry `index` of `frame`.
    pub fn read(&self, frame: PhysFrame, index: usize) -> u64 {
        self.live_frame(frame)[index].load(Ordering::SeqCst)
    }

    /// Overwrites entry `index` of `frame` (to plant descriptors the API would never write, or
    /// to play the hardware setting AF/dirty).
    pub fn write(&self, frame: PhysFrame, index: usize, raw: u64) {
        self.live_frame(frame)[index].store(raw, Ordering::SeqCst);
    }

    /// An independent walker: the raw entry that decides how `va` translates under `root` and
    /// where it is (table, index). Stops at level 3 or at the first entry that is not a table.
    pub fn lookup(&self, root: PhysFrame, va: VirtAddr) -> (PhysFrame, usize, u64) {
        let offset = va.as_u64() - Half::start(va.half()).as_u64();
        let mut table = root;
        for shift in [39, 30, 21, 12] {
            let index = ((offset >> shift) & 0x1ff) as usize;
            let raw = self.read(table, index);
            if shift == 12 || raw & 0b11 != 0b11 {
                return (table, index, raw);
            }
            table = PhysFrame::containing(PhysAddr::new(raw & 0x0000_ffff_ffff_f000).unwrap());
        }
        unreachable!("the level-3 iteration returns")
    }
}

// SAFETY: frames are boxed arrays of atomics that live as long as `self`, handed out once each
// until freed, zeroed on free (and initially); pointers are derived from those boxes, so they are
// aligned and valid for 4 KiB, and `table_entries` refuses frames that are not allocated.
unsafe impl PhysMemory for SimMemory {
    fn allocate_table(&self) -> Option<PhysFrame> {
        if self.allocated() >= self.limit.get() {
            return None;
        }
        let index = self.free.borrow_mut().pop()?;
        assert!(
            self.frames[index]
                .iter()
                .all(|entry| entry.load(Ordering::SeqCst) == 0)
        );
        self.live.borrow_mut()[index] = true;
        Some(
            PhysFrame::from_start(PhysAddr::new(SIM_BASE + index as u64 * PAGE_SIZE).unwrap())
                .unwrap(),
        )
    }

    fn free_table(&self, frame: PhysFrame) {
        let index = self.index(frame);
        assert!(self.live.borrow()[index], "double free of {frame:?}");
        for entry in self.frames[index].iter() {
            entry.store(0, Ordering::SeqCst);
        }
        self.live.borrow_mut()[index] = false;
        self.free.borrow_mut().push(index);
    }

    fn table_entries(&self, frame: PhysFrame) -> NonNull<TableEntries> {
        NonNull::from(self.live_frame(frame))
    }
}

/// One request to the TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlbOp {
    Va { va: u64, asid: u16 },
    VaAllAsids { va: u64 },
    Asid(u16),
    All,
    Publish,
}

impl TlbOp {
    /// Whether the op invalidates anything.
    pub fn is_invalidation(self) -> bool {
        self != Self::Publish
    }
}

/// Records TLB requests; with `observe`, also the entry deciding each flushed VA at the moment
/// of the flush (to check break-before-make order).
pub struct RecordingTlb<'m> {
    ops: RefCell<Vec<TlbOp>>,
    observed: Option<&'m SimMemory>,
    root: Cell<Option<PhysFrame>>,
    entries_at_flush: RefCell<Vec<(u64, u64)>>,
}

impl<'m> RecordingTlb<'m> {
    pub fn new() -> Self {
        Self {
            ops: RefCell::new(Vec::new()),
            observed: None,
            root: Cell::new(None),
            entries_at_flush: RefCell::default(),
        }
    }

    /// A recorder that snapshots, at each by-VA flush, the entry deciding that VA under `root`
    /// (set with `set_root` once the address space exists).
    pub fn observing(memory: &'m SimMemory) -> Self {
        Self {
            observed: Some(memory),
            ..Self::new()
        }
    }

    pub fn set_root(&self, root: PhysFrame) {
        self.root.set(Some(root));
    }

    pub fn ops(&self) -> Vec<TlbOp> {
        self.ops.borrow().clone()
    }

    /// Invalidations only (no `Publish`).
    pub fn invalidations(&self) -> Vec<TlbOp> {
        self.ops
            .borrow()
            .iter()
            .copied()
            .filter(|op| op.is_invalidation())
            .collect()
    }

    /// `(va, raw entry)` at each observed by-VA flush.
    pub fn entries_at_flush(&self) -> Vec<(u64, u64)> {
        self.entries_at_flush.borrow().clone()
    }

    pub fn clear(&self) {
        self.ops.borrow_mut().clear();
        self.entries_at_flush.borrow_mut().clear();
    }

    fn observe(&self, va: VirtAddr) {
        if let (Some(memory), Some(root)) = (self.observed, self.root.get()) {
            let (_, _, raw) = memory.lookup(root, va);
            self.entries_at_flush.borrow_mut().push((va.as_u64(), raw));
        }
    }
}

impl TlbFlush for RecordingTlb<'_> {
    fn flush_va(&self, va: VirtAddr, asid: Asid) {
        self.observe(va);
        self.ops.borrow_mut().push(TlbOp::Va {
            va: va.as_u64(),
            asid: asid.0,
        });
    }

    fn flush_va_all_asids(&self, va: VirtAddr) {
        self.observe(va);
        self.ops
            .borrow_mut()
            .push(TlbOp::VaAllAsids { va: va.as_u64() });
    }

    fn flush_asid(&self, asid: Asid) {
        self.ops.borrow_mut().push(TlbOp::Asid(asid.0));
    }

    fn flush_all(&self) {
        self.ops.borrow_mut().push(TlbOp::All);
    }

    fn publish(&self) {
        self.ops.borrow_mut().push(TlbOp::Publish);
    }
}
