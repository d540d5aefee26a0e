//! One metadata record per physical frame of RAM, allocated at boot: the frame's flags
//! (anonymous, dirty, pinned, under I/O), its reclaim state (list links, generation, access
//! count) and the back-reference to the one page-table entry that maps it. The record type is
//! the reclaim crate's [`reclaim::FrameMeta`], so every reclaim policy works on the same data.

use super::PAGE_SIZE;
use super::PhysAddr;
use crate::sync::IrqSpinLock;
use devicetree::MachineInfo;
use reclaim::{FrameId, FrameTable};
use spin::Once;

/// The frame table and the physical range it covers.
pub struct FrameMetadata {
    /// Physical address of frame 0 (the lowest RAM address).
    base: u64,
    pub table: FrameTable,
}

static METADATA: Once<IrqSpinLock<FrameMetadata>> = Once::new();

impl FrameMetadata {
    /// The id of the frame holding `pa`, if it is RAM the table covers.
    pub fn frame_id(&self, pa: PhysAddr) -> Option<FrameId> {
        let index = pa.as_u64().checked_sub(self.base)? / PAGE_SIZE;
        (index < u64::from(self.table.len())).then_some(FrameId(index as u32))
    }

    /// The physical address of frame `id`.
    pub fn frame_address(&self, id: FrameId) -> PhysAddr {
        PhysAddr::new(self.base + u64::from(id.0) * PAGE_SIZE)
            .expect("frame ids cover RAM below 2^48")
    }
}

/// Allocates the table for every frame from the lowest to the highest RAM address.
pub fn init(machine: &MachineInfo<'_>) {
    let base = machine.ram.iter().map(|r| r.base).min().unwrap_or(0);
    let end = machine
        .ram
        .iter()
        .map(|r| r.base.saturating_add(r.size))
        .max()
        .unwrap_or(0);
    let frames = u32::try_from((end - base) / PAGE_SIZE).expect("RAM spans fewer than 2^32 frames");
    METADATA.call_once(|| {
        IrqSpinLock::new(FrameMetadata {
            base,
            table: FrameTable::new(frames),
        })
    });
}

/// The frame metadata (after `mm::init`).
pub fn get() -> &'static IrqSpinLock<FrameMetadata> {
    METADATA
        .get()
        .expect("frame metadata is allocated during mm::init")
}

/// Bytes the table takes.
pub fn size_bytes() -> usize {
    METADATA.get().map_or(0, |m| {
        m.lock().table.len() as usize * core::mem::size_of::<reclaim::FrameMeta>()
    })
}
