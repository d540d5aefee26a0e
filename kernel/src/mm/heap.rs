//! The kernel heap: linked_list_allocator heaps over chunks of frames from the frame allocator.
//!
//! The heap starts empty and grows by whole chunks (at least [`MIN_CHUNK_ORDER`] frames, more for
//! a large allocation) taken from the buddy allocator and used through the linear map; a chunk
//! that becomes entirely free goes back to the buddy allocator, except the last one kept for
//! reuse. Allocation that cannot grow prints an out-of-memory report and returns null, which
//! becomes an error for fallible APIs (`try_reserve`, `Box::try_new`) and a panic otherwise.

use super::frame::{self, FrameError};
use super::{PhysFrame, phys_ptr, ptr_to_phys};

const PAGE_SIZE: usize = super::PAGE_SIZE as usize;
use crate::sync::IrqSpinLock;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

/// Smallest chunk: 2^9 frames = 2 MiB.
const MIN_CHUNK_ORDER: usize = 9;
const MAX_CHUNKS: usize = 64;

struct Chunk {
    heap: linked_list_allocator::Heap,
    order: usize,
}

/// The frame block a chunk was made from.
fn chunk_frame(chunk: &Chunk) -> PhysFrame {
    PhysFrame::from_start(ptr_to_phys(chunk.heap.bottom())).expect("chunks start on a frame")
}

impl Chunk {
    fn contains(&self, ptr: *mut u8) -> bool {
        (self.heap.bottom()..self.heap.top()).contains(&ptr)
    }
}

struct KernelHeap {
    chunks: [Option<Chunk>; MAX_CHUNKS],
    /// Allocations that failed for lack of memory.
    failures: u64,
}

// SAFETY: the raw pointers inside the linked-list heaps point into chunks this heap owns; the
// heap is only used under its lock.
unsafe impl Send for KernelHeap {}

pub struct LockedKernelHeap(IrqSpinLock<KernelHeap>);

#[global_allocator]
static HEAP: LockedKernelHeap = LockedKernelHeap(IrqSpinLock::new(KernelHeap {
    chunks: [const { None }; MAX_CHUNKS],
    failures: 0,
}));

impl KernelHeap {
    fn alloc(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        for chunk in self.chunks.iter_mut().flatten() {
            if let Ok(ptr) = chunk.heap.allocate_first_fit(layout) {
                return Some(ptr);
            }
        }
        let index = self.grow(layout).ok()?;
        let chunk = self.chunks[index].as_mut()?;
        chunk.heap.allocate_first_fit(layout).ok()
    }

    /// Adds a chunk big enough for `layout`; returns its slot.
    fn grow(&mut self, layout: Layout) -> Result<usize, FrameError> {
        let slot = self
            .chunks
            .iter()
            .position(Option::is_none)
            .ok_or(FrameError::OutOfMemory { order: 0 })?;
        // Room for the allocation, its alignment padding and the allocator's bookkeeping.
        let needed = layout.size() + layout.align() + PAGE_SIZE;
        let frames = needed.div_ceil(PAGE_SIZE).next_power_of_two();
        let order = (frames.trailing_zeros() as usize).max(MIN_CHUNK_ORDER);
        let base = frame::alloc(order)?;
        let mut heap = linked_list_allocator::Heap::empty();
        // SAFETY: the block is ours, mapped read-write through the linear map, and is used by
        // this heap alone until the chunk is released.
        unsafe { heap.init(phys_ptr(base.start()), PAGE_SIZE << order) };
        self.chunks[slot] = Some(Chunk { heap, order });
        Ok(slot)
    }

    fn dealloc(&mut self, ptr: NonNull<u8>, layout: Layout) {
        let Some(index) = self
            .chunks
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.contains(ptr.as_ptr())))
        else {
            panic!("kernel heap: freeing {ptr:p}, which no heap chunk contains");
        };
        let Some(chunk) = self.chunks[index].as_mut() else {
            return;
        };
        // SAFETY: GlobalAlloc's contract: `ptr` was allocated by this heap with `layout`; it lies
        // in this chunk, whose heap made it.
        unsafe { chunk.heap.deallocate(ptr, layout) };
        let empty = chunk.heap.used() == 0;
        let other_empty = self
            .chunks
            .iter()
            .enumerate()
            .any(|(i, c)| i != index && c.as_ref().is_some_and(|c| c.heap.used() == 0));
        if empty
            && other_empty
            && let Some(chunk) = self.chunks[index].take()
        {
            // SAFETY: the chunk's block came from `frame::alloc(chunk.order)` in `grow` and
            // nothing in it is allocated any more.
            unsafe { frame::free(chunk_frame(&chunk), chunk.order) };
        }
    }
}

// SAFETY: allocations come from chunks owned by the heap, never overlap (each linked-list heap
// guarantees that within its chunk, chunks are disjoint frame blocks), and are aligned per layout.
unsafe impl GlobalAlloc for LockedKernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.0.lock();
        match heap.alloc(layout) {
            Some(ptr) => ptr.as_ptr(),
            None => {
                heap.failures += 1;
                let (chunks, used, size) = heap.usage();
                drop(heap);
                let frames = frame::stats();
                log::error!(
                    "out of memory: kernel heap cannot grow for {} bytes (align {}): heap {chunks} chunks, {used}/{size} bytes used; frames {}/{} free",
                    layout.size(),
                    layout.align(),
                    frames.free,
                    frames.total
                );
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            self.0.lock().dealloc(ptr, layout);
        }
    }
}

impl KernelHeap {
    /// (chunks, bytes in use, bytes in chunks)
    fn usage(&self) -> (usize, usize, usize) {
        self.chunks
            .iter()
            .flatten()
            .fold((0, 0, 0), |(n, used, size), c| {
                (n + 1, used + c.heap.used(), size + c.heap.size())
            })
    }
}

/// Heap figures for `mem`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapStats {
    pub chunks: usize,
    pub used: usize,
    pub size: usize,
    pub failures: u64,
}

pub fn stats() -> HeapStats {
    let heap = HEAP.0.lock();
    let (chunks, used, size) = heap.usage();
    HeapStats {
        chunks,
        used,
        size,
        failures: heap.failures,
    }
}
