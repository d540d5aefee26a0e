//! The physical frame allocator: a buddy allocator (buddy_system_allocator's intrusive `Heap`)
//! over the linear map of RAM, handing out blocks of 2^order 4 KiB frames.
//!
//! Free blocks keep their list links inside themselves, so the allocator needs no memory of its
//! own and never calls the kernel heap (which grows from here).

use super::PhysAddr;
use super::{PAGE_SIZE, phys_to_virt, virt_to_phys};
use crate::sync::IrqSpinLock;
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

/// Largest block: 2^(MAX_ORDER) frames... the buddy keeps orders 0..=MAX_ORDER.
pub const MAX_ORDER: usize = 20;
/// The buddy allocator's size classes are byte sizes 2^0 .. 2^(BUDDY_CLASSES-1).
const BUDDY_CLASSES: usize = 12 + MAX_ORDER + 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// No free block of the requested order.
    OutOfMemory { order: usize },
    /// Order above [`MAX_ORDER`].
    OrderTooLarge { order: usize },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { order } => write!(
                f,
                "out of physical memory (no free block of {} KiB)",
                (PAGE_SIZE << order) / 1024
            ),
            Self::OrderTooLarge { order } => {
                write!(f, "block order {order} is above the maximum {MAX_ORDER}")
            }
        }
    }
}

struct FrameAllocator {
    buddy: buddy_system_allocator::Heap<BUDDY_CLASSES>,
    /// Frames ever added.
    total_frames: usize,
    /// Frames handed out now.
    used_frames: usize,
}

static FRAMES: IrqSpinLock<FrameAllocator> = IrqSpinLock::new(FrameAllocator {
    buddy: buddy_system_allocator::Heap::new(),
    total_frames: 0,
    used_frames: 0,
});

fn layout(order: usize) -> Layout {
    Layout::from_size_align(PAGE_SIZE << order, PAGE_SIZE << order)
        .expect("orders up to MAX_ORDER give valid layouts")
}

/// Hands the frames of `[start, end)` (physical, page aligned) to the allocator.
///
/// # Safety
/// The range must be RAM that nothing else uses, mapped read-write in the linear map, and not
/// added before.
pub unsafe fn add_range(start: PhysAddr, end: PhysAddr) {
    let start = start.align_up(PAGE_SIZE as u64);
    let end = end.align_down(PAGE_SIZE as u64);
    if start >= end {
        return;
    }
    let mut frames = FRAMES.lock();
    // SAFETY: forwarded from the caller; the linear map makes the range writable at these VAs.
    unsafe {
        frames
            .buddy
            .add_to_heap(phys_to_virt(start), phys_to_virt(end))
    };
    frames.total_frames += ((end.as_u64() - start.as_u64()) / PAGE_SIZE as u64) as usize;
}

/// Allocates 2^`order` contiguous frames (aligned to their size). Contents are undefined.
pub fn alloc(order: usize) -> Result<PhysAddr, FrameError> {
    if order > MAX_ORDER {
        return Err(FrameError::OrderTooLarge { order });
    }
    let mut frames = FRAMES.lock();
    let block = frames
        .buddy
        .alloc(layout(order))
        .map_err(|()| FrameError::OutOfMemory { order })?;
    frames.used_frames += 1 << order;
    Ok(virt_to_phys(block.as_ptr() as usize))
}

/// Allocates 2^`order` contiguous frames filled with zeros.
pub fn alloc_zeroed(order: usize) -> Result<PhysAddr, FrameError> {
    let frame = alloc(order)?;
    // SAFETY: the block was just allocated for us and is mapped in the linear map.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame) as *mut u8, 0, PAGE_SIZE << order) };
    Ok(frame)
}

/// Returns a block to the allocator.
///
/// # Safety
/// `frame` must come from [`alloc`]/[`alloc_zeroed`] with the same `order`, not freed since, and
/// no longer used by anyone.
pub unsafe fn free(frame: PhysAddr, order: usize) {
    let mut frames = FRAMES.lock();
    let block =
        NonNull::new(phys_to_virt(frame) as *mut u8).expect("linear-map addresses are never null");
    // SAFETY: forwarded from the caller.
    unsafe { frames.buddy.dealloc(block, layout(order)) };
    frames.used_frames -= 1 << order;
}

/// Frame counts for `mem` and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameStats {
    pub total: usize,
    pub free: usize,
}

pub fn stats() -> FrameStats {
    let frames = FRAMES.lock();
    FrameStats {
        total: frames.total_frames,
        free: frames.total_frames - frames.used_frames,
    }
}
