//! The program heap, so that `alloc` works in user programs: one 16 MiB region mapped on the
//! first allocation. The kernel fills its pages on first touch, so only what is used costs
//! memory. An allocation that does not fit returns null (the `alloc` error handler reports it).

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};
use linked_list_allocator::Heap;
use spin::Mutex;

const HEAP_SIZE: usize = 16 << 20;

struct UserHeap {
    heap: Mutex<Option<Heap>>,
}

#[global_allocator]
static HEAP: UserHeap = UserHeap {
    heap: Mutex::new(None),
};

// SAFETY: the linked-list heap hands out disjoint blocks of a region this program owns, each at
// least as large and aligned as asked; the mutex serialises access.
unsafe impl GlobalAlloc for UserHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.heap.lock();
        if heap.is_none() {
            let Ok(region) = crate::map(HEAP_SIZE as u64) else {
                return null_mut();
            };
            // SAFETY: `map` returned a fresh region of HEAP_SIZE bytes that nothing else uses.
            *heap = Some(unsafe { Heap::new(region, HEAP_SIZE) });
        }
        heap.as_mut()
            .and_then(|heap| heap.allocate_first_fit(layout).ok())
            .map_or(null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let (Some(heap), Some(ptr)) = (self.heap.lock().as_mut(), NonNull::new(ptr)) {
            // SAFETY: per the GlobalAlloc contract `ptr` came from `alloc` with this layout.
            unsafe { heap.deallocate(ptr, layout) };
        }
    }
}
