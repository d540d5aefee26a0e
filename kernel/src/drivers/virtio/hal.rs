//! What the arch-neutral virtio core (crates/virtio) needs from this kernel: DMA memory from
//! the frame allocator, register access to a mapped virtio-mmio window, and the generic
//! counter as its clock.
//!
//! DMA memory is ordinary cacheable RAM in the linear map: QEMU's virtio devices read and write
//! guest RAM coherently with the CPU's caches (as PCIe devices on a coherent interconnect do),
//! so no cache maintenance is needed, only ordering: the core fences between ring writes, and
//! register writes here come after a `dmb oshst` so that a QueueNotify never overtakes the
//! descriptors it announces (Linux `writel`).

use core::ptr::NonNull;

use virtio::{Clock, Hal, RegisterAccess};

use crate::mm::{self, PhysFrame, frame};

/// DMA allocations come from the frame allocator in power-of-two blocks.
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameDma;

/// The buddy order that holds `pages` frames.
pub(super) fn order_for(pages: usize) -> usize {
    pages.max(1).next_power_of_two().trailing_zeros() as usize
}

// SAFETY: frames are zeroed, page-aligned, physically contiguous blocks owned by the caller until
// `dma_free`; they are reached through the linear map, where the device (coherent) sees the same
// bytes at the physical address. `virt_to_phys` reads the kernel's translation of the address.
unsafe impl Hal for FrameDma {
    fn dma_alloc(&self, pages: usize) -> Option<(virtio::PhysAddr, NonNull<u8>)> {
        let block = frame::alloc_zeroed(order_for(pages)).ok()?;
        let virt = NonNull::new(mm::phys_ptr::<u8>(block.start()))?;
        Some((virtio::PhysAddr(block.start().as_u64()), virt))
    }

    unsafe fn dma_free(&self, phys: virtio::PhysAddr, _virt: NonNull<u8>, pages: usize) {
        let block = mm::PhysAddr::new(phys.0)
            .ok()
            .and_then(|pa| PhysFrame::from_start(pa).ok());
        if let Some(block) = block {
            // SAFETY: the caller returns exactly what `dma_alloc` gave for `pages` pages (the
            // same order), once, after the device stopped using it.
            unsafe { frame::free(block, order_for(pages)) };
        }
    }

    fn virt_to_phys(&self, virt: NonNull<u8>) -> virtio::PhysAddr {
        // The core only translates buffers it was given as owned heap boxes, which live in the
        // linear map: an untranslatable address is a kernel bug, not bad input.
        let pa = mm::kernel_ptr_to_phys(virt.as_ptr())
            .expect("the virtio core translates only mapped kernel memory");
        virtio::PhysAddr(pa.as_u64())
    }
}

/// One device's virtio-mmio register window, mapped as device memory.
#[derive(Clone, Copy, Debug)]
pub struct MmioWindow {
    base: usize,
    size: usize,
}

impl MmioWindow {
    /// # Safety
    /// `base` is the kernel virtual address of a virtio-mmio register window of `size` bytes,
    /// mapped as device memory for as long as this value (and its copies) are used.
    pub unsafe fn new(base: usize, size: usize) -> Self {
        Self { base, size }
    }

    /// The address of the register at `offset`, `width` bytes wide and aligned to it.
    fn register(&self, offset: usize, width: usize) -> usize {
        debug_assert!(
            offset.is_multiple_of(width) && offset + width <= self.size,
            "virtio-mmio access at {offset:#x} of width {width}"
        );
        self.base + offset
    }
}

/// Orders a register read before the loads that follow it (Linux `readl`'s `__iormb`): data the
/// device wrote before raising an interrupt is read after the interrupt status.
fn read_barrier() {
    // SAFETY: a barrier has no effect but ordering.
    unsafe { core::arch::asm!("dmb oshld", options(nostack, preserves_flags)) };
}

/// Orders earlier stores to normal memory (rings) before a register write.
fn write_barrier() {
    // SAFETY: a barrier has no effect but ordering.
    unsafe { core::arch::asm!("dmb oshst", options(nostack, preserves_flags)) };
}

impl RegisterAccess for MmioWindow {
    fn read32(&self, offset: usize) -> u32 {
        let register = self.register(offset, 4) as *const u32;
        // SAFETY: `new`'s contract: the window is mapped device memory; the offset is inside it
        // and aligned (the core only uses register offsets and config fields of this width).
        let value = unsafe { register.read_volatile() };
        read_barrier();
        value
    }

    fn write32(&mut self, offset: usize, value: u32) {
        let register = self.register(offset, 4) as *mut u32;
        write_barrier();
        // SAFETY: as for `read32`.
        unsafe { register.write_volatile(value) };
    }

    fn read8(&self, offset: usize) -> u8 {
        let register = self.register(offset, 1) as *const u8;
        // SAFETY: as for `read32`; configuration space allows byte accesses.
        let value = unsafe { register.read_volatile() };
        read_barrier();
        value
    }

    fn read16(&self, offset: usize) -> u16 {
        let register = self.register(offset, 2) as *const u16;
        // SAFETY: as for `read32`; 16-bit configuration fields are read at their width.
        let value = unsafe { register.read_volatile() };
        read_barrier();
        value
    }
}

/// The generic counter, in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct CounterClock;

impl Clock for CounterClock {
    fn now_ns(&self) -> u64 {
        crate::time::ticks_to_ns(crate::arch::cpu::counter())
    }
}
