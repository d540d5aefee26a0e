//! Host stand-ins for everything the driver touches: a DMA allocator ([`FakeHal`]), a clock
//! ([`FakeClock`]) and a simulated virtio-mmio block device ([`FakeDevice`]) reached through
//! [`FakeMmio`]. Built for this crate's tests and behind the `fake` feature; the kernel never
//! links it.
//!
//! "Physical" addresses: caller buffers are identity-mapped (their host address is their
//! physical address), while DMA allocations get addresses in a low window starting at
//! 1 GiB, because the legacy transport's 32-bit QueuePFN cannot reach host heap addresses.
//! The device translates through the shared [`FakeHal`]. The device is strict: a driver that breaks the virtio protocol (touches a
//! write-only register, changes a live queue, builds a malformed chain) makes it panic with
//! the rule that was broken.

mod device;

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::ptr::NonNull;

pub use device::{
    CompletionOrder, FakeDevice, FakeDeviceConfig, FakeMmio, QueueResetBehaviour, StatusFault,
};

use crate::hal::{Clock, Hal, PAGE_SIZE, PhysAddr};

/// Where the fake's DMA "physical" addresses start (QEMU virt's RAM base, as it happens).
const DMA_WINDOW: u64 = 0x4000_0000;

struct HalState {
    /// Live DMA allocations: physical start -> (host address, bytes).
    regions: BTreeMap<u64, (usize, usize)>,
    /// Next physical address to hand out; never reused, so stale addresses stay invalid.
    next_phys: u64,
    outstanding_pages: usize,
    /// Allocations still allowed before every further one fails; `None` = unlimited.
    allocations_left: Option<usize>,
    failed_allocations: usize,
}

/// A DMA allocator on the host heap, with allocation-failure injection and accounting.
#[derive(Clone)]
pub struct FakeHal(Rc<RefCell<HalState>>);

impl Default for FakeHal {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeHal {
    /// An allocator that never fails until told to.
    pub fn new() -> Self {
        Self(Rc::new(RefCell::new(HalState {
            regions: BTreeMap::new(),
            next_phys: DMA_WINDOW,
            outstanding_pages: 0,
            allocations_left: None,
            failed_allocations: 0,
        })))
    }

    /// The host address of `len` bytes at physical `phys`: inside a live DMA allocation, or
    /// the identity for caller buffers. Panics on a stale or overrunning DMA address.
    pub(crate) fn host_address(&self, phys: u64, len: usize) -> usize {
        let state = self.0.borrow();
        if (DMA_WINDOW..state.next_phys).contains(&phys) {
            let (&start, &(host, bytes)) = state
                .regions
                .range(..=phys)
                .next_back()
                .expect("driver bug: DMA address of freed memory");
            let offset = (phys - start) as usize;
            assert!(
                offset + len <= bytes,
                "driver bug: access past a DMA allocation"
            );
            host + offset
        } else {
            phys as usize
        }
    }

    /// Pages allocated and not yet freed.
    pub fn outstanding_pages(&self) -> usize {
        self.0.borrow().outstanding_pages
    }

    /// Lets the next `count` allocations succeed and fails every one after them.
    pub fn fail_allocations_after(&self, count: usize) {
        self.0.borrow_mut().allocations_left = Some(count);
    }

    /// Ends failure injection.
    pub fn allow_allocations(&self) {
        self.0.borrow_mut().allocations_left = None;
    }

    /// Allocations refused so far.
    pub fn failed_allocations(&self) -> usize {
        self.0.borrow().failed_allocations
    }

    fn layout(pages: usize) -> Layout {
        Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
    }
}

// SAFETY: `dma_alloc` returns fresh, zeroed, page-aligned heap memory that nothing else
// aliases, under a physical address the fake device translates back to it; `virt_to_phys`
// inverts that translation (identity outside DMA memory), matching the device.
unsafe impl Hal for FakeHal {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let mut state = self.0.borrow_mut();
        if let Some(left) = state.allocations_left.as_mut() {
            if *left == 0 {
                state.failed_allocations += 1;
                return None;
            }
            *left -= 1;
        }
        // SAFETY: the layout has a non-zero size (pages >= 1 is asserted by the driver's
        // `Dma::new`, which allocates at least one page).
        let ptr = NonNull::new(unsafe { alloc_zeroed(Self::layout(pages)) })?;
        state.outstanding_pages += pages;
        let phys = state.next_phys;
        state.next_phys += (pages * PAGE_SIZE) as u64;
        state
            .regions
            .insert(phys, (ptr.as_ptr() as usize, pages * PAGE_SIZE));
        Some((PhysAddr(phys), ptr))
    }

    unsafe fn dma_free(&self, phys: PhysAddr, virt: NonNull<u8>, pages: usize) {
        let mut state = self.0.borrow_mut();
        let region = state.regions.remove(&phys.0);
        assert_eq!(
            region,
            Some((virt.as_ptr() as usize, pages * PAGE_SIZE)),
            "freed something dma_alloc did not return"
        );
        state.outstanding_pages -= pages;
        // SAFETY: the caller guarantees `virt` came from `dma_alloc(pages)`, which used this
        // layout, and is freed once.
        unsafe { dealloc(virt.as_ptr(), Self::layout(pages)) }
    }

    fn virt_to_phys(&self, virt: NonNull<u8>) -> PhysAddr {
        let addr = virt.as_ptr() as usize;
        let state = self.0.borrow();
        let dma = state
            .regions
            .iter()
            .find(|&(_, &(host, bytes))| (host..host + bytes).contains(&addr));
        match dma {
            Some((&phys, &(host, _))) => PhysAddr(phys + (addr - host) as u64),
            None => PhysAddr(addr as u64),
        }
    }
}

/// A clock that moves only when told to, or by `step_ns` on each `relax` (so every bounded
/// wait ends). Optionally lets a device complete requests on each `relax`, as a real device
/// would while the driver waits.
#[derive(Clone)]
pub struct FakeClock {
    now: Rc<Cell<u64>>,
    step_ns: u64,
    device: Option<(FakeDevice, usize)>,
}

impl FakeClock {
    /// A clock at 0 that advances 1 µs per `relax`.
    pub fn new() -> Self {
        Self {
            now: Rc::new(Cell::new(0)),
            step_ns: 1_000,
            device: None,
        }
    }

    /// Also completes up to `per_relax` requests of `device` on each `relax`.
    pub fn driving(device: &FakeDevice, per_relax: usize) -> Self {
        Self {
            device: Some((device.clone(), per_relax)),
            ..Self::new()
        }
    }

    /// Moves time forward.
    pub fn advance(&self, ns: u64) {
        self.now.set(self.now.get() + ns);
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.get()
    }

    fn relax(&self) {
        self.advance(self.step_ns);
        if let Some((device, per_relax)) = &self.device {
            device.process(*per_relax);
        }
    }
}
