//! The physical frame allocator: a buddy allocator (buddy_system_allocator's intrusive `Heap`)
//! over the linear map of RAM, handing out blocks of 2^order 4 KiB frames.
//!
//! Free blocks keep their list links inside themselves, so the allocator needs no memory of its
//! own and never calls the kernel heap (which grows from here).

use super::{PAGE_SIZE, PhysAddr, PhysFrame, phys_ptr, ptr_to_phys};
use crate::sync::IrqSpinLock;
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

/// Largest block: 2^MAX_ORDER frames (4 GiB).
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
            Self::OutOfMemory { order } => {
                write!(
                    f,
                    "out of physical memory (no free block of {} KiB)",
                    (PAGE_SIZE << order) / 1024
                )
            }
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
    let size = (PAGE_SIZE as usize) << order;
    Layout::from_size_align(size, size).expect("orders up to MAX_ORDER give valid layouts")
}

fn frame_of(block: NonNull<u8>) -> PhysFrame {
    PhysFrame::from_start(ptr_to_phys(block.as_ptr())).expect("buddy blocks are page aligned")
}

/// Hands the frames of `[start, end)` (physical; rounded inwards to pages) to the allocator.
///
/// # Safety
/// The range must be RAM that nothing else uses, mapped read-write in the linear map, and not
/// added before.
pub unsafe fn add_range(start: PhysAddr, end: PhysAddr) {
    let (Some(start), Some(end)) = (start.align_up(PAGE_SIZE), end.align_down(PAGE_SIZE)) else {
        return;
    };
    if start >= end {
        return;
    }
    let mut frames = FRAMES.lock();
    // SAFETY: forwarded from the caller; the linear map makes the range writable at these
    // addresses.
    unsafe {
        frames
            .buddy
            .add_to_heap(phys_ptr::<u8>(start) as usize, phys_ptr::<u8>(end) as usize)
    };
    frames.total_frames += ((end.as_u64() - start.as_u64()) / PAGE_SIZE) as usize;
}

/// Allocates 2^`order` contiguous frames (aligned to their size). Contents are undefined.
pub fn alloc(order: usize) -> Result<PhysFrame, FrameError> {
    if order > MAX_ORDER {
        return Err(FrameError::OrderTooLarge { order });
    }
    let mut frames = FRAMES.lock();
    let block = frames
        .buddy
        .alloc(layout(order))
        .map_err(|()| FrameError::OutOfMemory { order })?;
    frames.used_frames += 1 << order;
    Ok(frame_of(block))
}

/// Allocates 2^`order` contiguous frames filled with zeros.
pub fn alloc_zeroed(order: usize) -> Result<PhysFrame, FrameError> {
    let frame = alloc(order)?;
    // SAFETY: the block was just allocated for us and is mapped in the linear map.
    unsafe {
        core::ptr::write_bytes(
            phys_ptr::<u8>(frame.start()),
            0,
            (PAGE_SIZE as usize) << order,
        )
    };
    Ok(frame)
}

/// Returns a block to the allocator.
///
/// # Safety
/// `frame` must come from [`alloc`]/[`alloc_zeroed`] with the same `order`, not freed since, and
/// no longer used by anyone.
pub unsafe fn free(frame: PhysFrame, order: usize) {
    let mut frames = FRAMES.lock();
    let block =
        NonNull::new(phys_ptr::<u8>(frame.start())).expect("linear-map addresses are never null");
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::prelude::*;
    use alloc::vec::Vec;

    ktest! {
        timeout_secs = 120;

        fn exhaustion_fails_cleanly_and_free_count_returns_exactly() -> TestResult {
            let before = stats();
            // Hold the blocks in a list threaded through the frames themselves: a heap vector
            // would need frames too.
            let mut chain: Option<PhysFrame> = None;
            let mut taken = 0usize;
            let error = loop {
                match alloc(0) {
                    Ok(frame) => {
                        // SAFETY: the frame is ours; its first word links to the previous one.
                        unsafe { *phys_ptr::<u64>(frame.start()) = chain.map_or(0, |f| f.start().as_u64()) };
                        chain = Some(frame);
                        taken += 1;
                    }
                    Err(err) => break err,
                }
            };
            let exhausted = stats();
            while let Some(frame) = chain {
                // SAFETY: each frame's first word holds the link written above.
                let next = unsafe { *phys_ptr::<u64>(frame.start()) };
                // SAFETY: allocated above with order 0, referenced by nothing else.
                unsafe { free(frame, 0) };
                chain = (next != 0).then(|| PhysFrame::from_start(PhysAddr::new(next).expect("valid")).expect("aligned"));
            }
            check_eq!(error, FrameError::OutOfMemory { order: 0 });
            check_eq!(exhausted.free, 0, "every frame was handed out");
            check_eq!(taken, before.free);
            check_eq!(stats(), before, "freeing everything restores the exact count");
            // Buddies merged back: a large block is available again.
            let big = check_ok!(alloc(8));
            // SAFETY: just allocated with order 8.
            unsafe { free(big, 8) };
            check_eq!(alloc(MAX_ORDER + 1), Err(FrameError::OrderTooLarge { order: MAX_ORDER + 1 }));
            Ok(())
        }

        fn blocks_are_aligned_to_their_size_and_zeroed_on_request() -> TestResult {
            let before = stats();
            let mut blocks = Vec::new();
            for order in 0..6 {
                let block = check_ok!(alloc_zeroed(order));
                check_eq!(block.start().as_u64() % (PAGE_SIZE << order), 0, "order {order}");
                // SAFETY: the block is ours and mapped.
                let bytes = unsafe { core::slice::from_raw_parts(phys_ptr::<u8>(block.start()), (PAGE_SIZE as usize) << order) };
                check!(bytes.iter().all(|&b| b == 0), "order {order} block is not zeroed");
                blocks.push((block, order));
            }
            check_eq!(stats().free, before.free - (0..6).map(|o| 1usize << o).sum::<usize>());
            for (block, order) in blocks {
                // SAFETY: allocated above with this order.
                unsafe { free(block, order) };
            }
            check_eq!(stats().free, before.free);
            Ok(())
        }
    }
}
