//! What the driver needs from the kernel: DMA memory, address translation and a clock.

use core::ptr::NonNull;

use crate::error::Error;

/// Size of a DMA page. Rings and request slots are allocated in whole pages.
pub const PAGE_SIZE: usize = 4096;

/// A physical (bus) address: what the device is given, never dereferenced by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

impl PhysAddr {
    /// The address `bytes` further on.
    pub const fn add(self, bytes: u64) -> Self {
        Self(self.0 + bytes)
    }
}

/// Memory services the kernel provides.
///
/// # Safety
///
/// The implementation promises what each method's contract says; the driver hands these
/// addresses to a device that reads and writes them behind the compiler's back, so a wrong
/// answer is memory corruption, not an error.
pub unsafe trait Hal: Clone {
    /// Allocates `pages` pages of zeroed, physically contiguous memory aligned to
    /// [`PAGE_SIZE`], or returns `None` when out of memory.
    ///
    /// Contract: the returned pointer is valid for reads and writes of `pages * PAGE_SIZE`
    /// bytes, aliases nothing else until [`Hal::dma_free`], is aligned to [`PAGE_SIZE`], and
    /// the device sees the same bytes at the returned physical address (cache-coherent DMA).
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)>;

    /// Returns memory from [`Hal::dma_alloc`].
    ///
    /// # Safety
    ///
    /// `phys`, `virt` and `pages` are exactly what one `dma_alloc` call returned and was
    /// given, that memory has not been freed since, and the device no longer accesses it.
    unsafe fn dma_free(&self, phys: PhysAddr, virt: NonNull<u8>, pages: usize);

    /// Translates the address of a byte of a caller's buffer to the physical address the
    /// device must use.
    ///
    /// Contract: correct for every byte of a buffer the driver is given (the driver calls it
    /// once per page), and the mapping stays put while the request is in flight.
    fn virt_to_phys(&self, virt: NonNull<u8>) -> PhysAddr;
}

/// Monotonic time for the driver's bounded waits.
pub trait Clock {
    /// Nanoseconds since an arbitrary fixed point; never goes backwards.
    fn now_ns(&self) -> u64;

    /// Called between two polls of a bounded busy-wait (device reset, queue reset). The
    /// default spins; a kernel may yield to a hypervisor or just spin.
    fn relax(&self) {
        core::hint::spin_loop();
    }
}

/// Spins until `done()` holds or `timeout_ns` has passed; `Err(Timeout(what))` on expiry.
pub(crate) fn wait_until<C: Clock>(
    clock: &C,
    timeout_ns: u64,
    what: &'static str,
    mut done: impl FnMut() -> bool,
) -> Result<(), Error> {
    let deadline = clock.now_ns().saturating_add(timeout_ns);
    loop {
        if done() {
            return Ok(());
        }
        if clock.now_ns() >= deadline {
            return Err(Error::Timeout(what));
        }
        clock.relax();
    }
}

/// A physically contiguous DMA allocation, returned to the HAL when dropped (unless leaked
/// because the device might still write to it).
pub(crate) struct Dma<H: Hal> {
    phys: PhysAddr,
    virt: NonNull<u8>,
    pages: usize,
    leaked: bool,
    hal: H,
}

// SAFETY: the allocation is owned exclusively by this value; moving it to another CPU moves
// that ownership with it.
unsafe impl<H: Hal + Send> Send for Dma<H> {}

impl<H: Hal> Dma<H> {
    /// Allocates at least `bytes` bytes (whole pages), zeroed.
    pub(crate) fn new(hal: &H, bytes: usize) -> Result<Self, Error> {
        let pages = bytes.div_ceil(PAGE_SIZE).max(1);
        let (phys, virt) = hal.dma_alloc(pages).ok_or(Error::NoMemory)?;
        Ok(Self {
            phys,
            virt,
            pages,
            leaked: false,
            hal: hal.clone(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    pub(crate) fn phys(&self, offset: usize) -> PhysAddr {
        self.phys.add(offset as u64)
    }

    /// Pointer to `offset`, checked so that an access of `size` bytes stays inside.
    fn at(&self, offset: usize, size: usize) -> *mut u8 {
        assert!(
            offset
                .checked_add(size)
                .is_some_and(|end| end <= self.len()),
            "DMA access at {offset}+{size} outside {} bytes",
            self.len()
        );
        self.virt.as_ptr().wrapping_add(offset)
    }

    pub(crate) fn read_u8(&self, offset: usize) -> u8 {
        let ptr = self.at(offset, 1);
        // SAFETY: `at` checked the byte lies inside our live allocation.
        unsafe { ptr.read_volatile() }
    }

    pub(crate) fn write_u8(&self, offset: usize, value: u8) {
        let ptr = self.at(offset, 1);
        // SAFETY: `at` checked the byte lies inside our live allocation.
        unsafe { ptr.write_volatile(value) }
    }

    pub(crate) fn read_u16(&self, offset: usize) -> u16 {
        let ptr = self.at(offset, 2).cast::<u16>();
        debug_assert!(ptr.is_aligned());
        // SAFETY: in bounds (checked by `at`), aligned (page-aligned base, even offset).
        u16::from_le(unsafe { ptr.read_volatile() })
    }

    pub(crate) fn write_u16(&self, offset: usize, value: u16) {
        let ptr = self.at(offset, 2).cast::<u16>();
        debug_assert!(ptr.is_aligned());
        // SAFETY: in bounds (checked by `at`), aligned (page-aligned base, even offset).
        unsafe { ptr.write_volatile(value.to_le()) }
    }

    pub(crate) fn read_u32(&self, offset: usize) -> u32 {
        let ptr = self.at(offset, 4).cast::<u32>();
        debug_assert!(ptr.is_aligned());
        // SAFETY: in bounds (checked by `at`), aligned (page-aligned base, offset % 4 == 0).
        u32::from_le(unsafe { ptr.read_volatile() })
    }

    pub(crate) fn write_u32(&self, offset: usize, value: u32) {
        let ptr = self.at(offset, 4).cast::<u32>();
        debug_assert!(ptr.is_aligned());
        // SAFETY: in bounds (checked by `at`), aligned (page-aligned base, offset % 4 == 0).
        unsafe { ptr.write_volatile(value.to_le()) }
    }

    pub(crate) fn write_u64(&self, offset: usize, value: u64) {
        let ptr = self.at(offset, 8).cast::<u64>();
        debug_assert!(ptr.is_aligned());
        // SAFETY: in bounds (checked by `at`), aligned (page-aligned base, offset % 8 == 0).
        unsafe { ptr.write_volatile(value.to_le()) }
    }

    /// Copies `out.len()` bytes starting at `offset` out of the allocation.
    pub(crate) fn read_bytes(&self, offset: usize, out: &mut [u8]) {
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self.read_u8(offset + i);
        }
    }

    /// Zeroes the whole allocation (a ring being reused from scratch).
    pub(crate) fn zero(&self) {
        let ptr = self.at(0, self.len());
        // SAFETY: the whole allocation is ours and live; the device is not using it (callers
        // zero only a ring whose queue was reset).
        unsafe { ptr.write_bytes(0, self.len()) }
    }

    /// Never return this memory: the device may still write to it.
    pub(crate) fn leak(&mut self) {
        self.leaked = true;
    }
}

impl<H: Hal> Drop for Dma<H> {
    fn drop(&mut self) {
        if !self.leaked {
            // SAFETY: exactly what `dma_alloc` returned, freed once; owners drop rings only
            // after the device stopped using them (otherwise they called `leak`).
            unsafe { self.hal.dma_free(self.phys, self.virt, self.pages) }
        }
    }
}
