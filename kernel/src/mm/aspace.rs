//! User address spaces (TTBR0): their own tables and ASID, anonymous regions filled on demand,
//! and the page-fault handling that makes that work (demand-zero pages, swap-in, software
//! Access flag, software dirty tracking).
//!
//! Faults are resolved in two steps. [`handle_fault`] runs in the exception handler and never
//! sleeps: it fixes Access-flag and dirty-tracking faults and fills demand-zero pages while
//! memory is above the reserve. A fault that needs to sleep (reading a page back from swap,
//! reclaiming memory first) goes back to the faulting thread, which calls [`fault_in`].

use super::kernel_space::KernelMemory;
use super::{PAGE_SIZE, Page, PhysFrame, VirtAddr, frame, swap, vmscan};
use crate::arch::cpu::{HardwareAccessFlags, hardware_access_flags};
use crate::arch::esr::{Esr, FaultStatus};
use crate::arch::mmu::{self, Tlb};
use crate::sync::IrqSpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use pagetable::{
    AddressSpace, Asid, DirtyTracking, FaultOutcome, MapError, MemoryAttributes, Space, SwapEntry,
    Unmapped,
};
use reclaim::{AddressSpaceId, PageKey};

/// A range of user memory: anonymous pages allocated, zeroed, on first touch; or pages lent by
/// another address space (`borrowed`: mapped for a while, never freed from here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub attributes: MemoryAttributes,
    pub borrowed: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SpaceError {
    /// Every ASID is in use.
    NoAsid,
    /// Not page aligned, empty, or outside the user half.
    BadRange {
        start: u64,
        len: u64,
    },
    /// The range overlaps an existing region.
    Overlap {
        start: u64,
    },
    /// No region covers the range.
    NoRegion {
        start: u64,
    },
    /// The attributes allow no user access.
    NotUserAccessible,
    Map(MapError),
}

impl fmt::Display for SpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAsid => f.write_str("every address space identifier is in use"),
            Self::BadRange { start, len } => write!(f, "bad user range {start:#x}+{len:#x}"),
            Self::Overlap { start } => write!(f, "range at {start:#x} overlaps an existing region"),
            Self::NoRegion { start } => write!(f, "no region at {start:#x}"),
            Self::NotUserAccessible => f.write_str("user regions must be accessible to user code"),
            Self::Map(err) => write!(f, "{err}"),
        }
    }
}

impl From<MapError> for SpaceError {
    fn from(err: MapError) -> Self {
        Self::Map(err)
    }
}

/// Hands out ASIDs (0 is never used: it tags nothing but the empty user tables).
struct AsidAllocator {
    used: Vec<u64>,
}

static ASIDS: IrqSpinLock<AsidAllocator> = IrqSpinLock::new(AsidAllocator { used: Vec::new() });

impl AsidAllocator {
    fn allocate(&mut self) -> Option<Asid> {
        if self.used.is_empty() {
            self.used.resize((1usize << mmu::asid_bits()) / 64, 0);
            self.used[0] = 1;
        }
        let (word, bits) = self
            .used
            .iter_mut()
            .enumerate()
            .find(|(_, bits)| **bits != u64::MAX)?;
        let bit = bits.trailing_ones();
        *bits |= 1 << bit;
        Some(Asid((word * 64 + bit as usize) as u16))
    }

    fn free(&mut self, asid: Asid) {
        if let Some(bits) = self.used.get_mut(usize::from(asid.0) / 64) {
            *bits &= !(1 << (asid.0 % 64));
        }
    }
}

/// Page-fault counters over all user address spaces (for `vmstat`).
pub struct FaultCounters {
    pub demand_zero: AtomicU64,
    pub access_flag: AtomicU64,
    pub write: AtomicU64,
    pub spurious: AtomicU64,
    pub unresolved: AtomicU64,
}

pub static FAULTS: FaultCounters = FaultCounters {
    demand_zero: AtomicU64::new(0),
    access_flag: AtomicU64::new(0),
    write: AtomicU64::new(0),
    spurious: AtomicU64::new(0),
    unresolved: AtomicU64::new(0),
};

/// What a page fault came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultResolution {
    /// Fixed: retry the access.
    Resolved,
    /// No region covers the address, or the access is not allowed: a real fault.
    Denied,
    /// A page was needed and there was no memory, even after reclaim.
    OutOfMemory,
    /// No user address space is active on this CPU.
    NoSpace,
    /// Memory is at the kernel's reserve: the thread must reclaim, then retry.
    NeedsMemory,
    /// The page is in swap: the thread must read it back, then retry.
    NeedsSwapIn,
    /// Reading the page back from swap failed (the page stays in swap).
    SwapIoError,
}

impl FaultResolution {
    /// Whether the faulting thread can resolve it by sleeping ([`fault_in`]).
    pub fn needs_thread(self) -> bool {
        matches!(self, Self::NeedsMemory | Self::NeedsSwapIn)
    }
}

/// Faults one address space took (for `ps` and `stress`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpaceFaults {
    /// Pages filled with zeros on first touch.
    pub demand_zero: u64,
    /// Pages read back from swap (major faults).
    pub swap_in: u64,
    /// Access-flag faults (software young bit).
    pub access_flag: u64,
}

pub struct UserSpace {
    tables: AddressSpace<KernelMemory, Tlb>,
    asid: Asid,
    regions: Vec<Region>,
    faults: SpaceFaults,
}

pub type SharedSpace = Arc<IrqSpinLock<UserSpace>>;

impl UserSpace {
    /// An empty address space with its own ASID. Dirty state is tracked by hardware where the
    /// CPU can (FEAT_HAFDBS with DBM), in software otherwise.
    pub fn new() -> Result<SharedSpace, SpaceError> {
        let asid = ASIDS.lock().allocate().ok_or(SpaceError::NoAsid)?;
        let tracking = match hardware_access_flags() {
            HardwareAccessFlags::AccessFlagAndDirty => DirtyTracking::Hardware,
            _ => DirtyTracking::Software,
        };
        match AddressSpace::new(KernelMemory, Tlb, Space::User(asid), tracking) {
            Ok(tables) => {
                let space = Arc::new(IrqSpinLock::new(Self {
                    tables,
                    asid,
                    regions: Vec::new(),
                    faults: SpaceFaults::default(),
                }));
                vmscan::register(asid.0, &space);
                Ok(space)
            }
            Err(err) => {
                ASIDS.lock().free(asid);
                Err(err.into())
            }
        }
    }

    pub fn asid(&self) -> Asid {
        self.asid
    }

    /// The reclaim back-reference of the page holding `address`.
    fn key(&self, address: VirtAddr) -> PageKey {
        PageKey::new(AddressSpaceId(self.asid.0), address.as_u64() / PAGE_SIZE)
    }

    /// The page tables (for aging walks, tests and `pt`).
    pub fn tables(&mut self) -> &mut AddressSpace<KernelMemory, Tlb> {
        &mut self.tables
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    pub fn faults(&self) -> SpaceFaults {
        self.faults
    }

    /// Pages mapped in the user half (resident set).
    pub fn resident_pages(&self) -> usize {
        self.regions.iter().map(|r| self.resident_in(r)).sum()
    }

    /// Pages of `region` that are mapped.
    pub fn resident_in(&self, region: &Region) -> usize {
        let mut count = 0;
        if let Ok(start) = VirtAddr::new(region.start) {
            let _ = self
                .tables
                .for_each_leaf(start, region.end - region.start, |_| {
                    count += 1;
                    core::ops::ControlFlow::Continue(())
                });
        }
        count
    }

    fn check_range(start: u64, len: u64) -> Result<u64, SpaceError> {
        let end = start
            .checked_add(len)
            .filter(|&end| end <= pagetable::HALF_SIZE);
        match end {
            Some(end)
                if len > 0 && start.is_multiple_of(PAGE_SIZE) && len.is_multiple_of(PAGE_SIZE) =>
            {
                Ok(end)
            }
            _ => Err(SpaceError::BadRange { start, len }),
        }
    }

    /// Reserves `[start, start + len)` for anonymous memory; pages appear on first touch.
    pub fn add_region(
        &mut self,
        start: u64,
        len: u64,
        attributes: MemoryAttributes,
    ) -> Result<(), SpaceError> {
        let end = Self::check_range(start, len)?;
        if !attributes.user_accessible() {
            return Err(SpaceError::NotUserAccessible);
        }
        if self.regions.iter().any(|r| r.start < end && start < r.end) {
            return Err(SpaceError::Overlap { start });
        }
        self.regions.push(Region {
            start,
            end,
            attributes,
            borrowed: false,
        });
        Ok(())
    }

    /// Reserves `[start, start + len)` and fills it right away with `data` (zero-padded), e.g. a
    /// program segment. On error nothing stays mapped.
    pub fn add_region_with_data(
        &mut self,
        start: u64,
        len: u64,
        attributes: MemoryAttributes,
        data: &[u8],
    ) -> Result<(), SpaceError> {
        if data.len() as u64 > len {
            return Err(SpaceError::BadRange { start, len });
        }
        self.add_region(start, len, attributes)?;
        let mut offset = 0;
        while offset < len {
            let filled = frame::alloc_zeroed(0)
                .map_err(|_| SpaceError::Map(MapError::OutOfMemory))
                .and_then(|frame| {
                    let chunk = data.get(offset as usize..).unwrap_or(&[]);
                    let chunk = &chunk[..chunk.len().min(PAGE_SIZE as usize)];
                    // SAFETY: the frame is ours and mapped in the linear map; `chunk` fits a page.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            chunk.as_ptr(),
                            super::phys_ptr(frame.start()),
                            chunk.len(),
                        )
                    };
                    let page = Page::containing(
                        VirtAddr::new(start + offset)
                            .map_err(|_| SpaceError::BadRange { start, len })?,
                    );
                    match self.tables.map_page(page, frame, attributes) {
                        Ok(()) => {
                            vmscan::track(frame, self.key(page.start()), None);
                            Ok(())
                        }
                        Err(err) => {
                            // SAFETY: never mapped.
                            unsafe { frame::free(frame, 0) };
                            Err(SpaceError::Map(err))
                        }
                    }
                });
            if let Err(err) = filled {
                let _ = self.remove_region(start);
                return Err(err);
            }
            offset += PAGE_SIZE;
        }
        Ok(())
    }

    /// Maps frames another address space owns at `start` (a lent buffer); they are unmapped
    /// but not freed when the region goes.
    pub fn map_borrowed(
        &mut self,
        start: u64,
        frames: &[PhysFrame],
        attributes: MemoryAttributes,
    ) -> Result<(), SpaceError> {
        let len = frames.len() as u64 * PAGE_SIZE;
        self.add_region(start, len, attributes)?;
        if let Some(region) = self.regions.last_mut() {
            region.borrowed = true;
        }
        for (index, frame) in frames.iter().enumerate() {
            let page = Page::containing(
                VirtAddr::new(start + index as u64 * PAGE_SIZE)
                    .map_err(|_| SpaceError::BadRange { start, len })?,
            );
            if let Err(err) = self.tables.map_page(page, *frame, attributes) {
                let _ = self.remove_region(start);
                return Err(err.into());
            }
        }
        Ok(())
    }

    /// A free range of `len` bytes in `[low, high)`, page aligned, above the regions there.
    pub fn find_free(&self, low: u64, high: u64, len: u64) -> Option<u64> {
        let mut candidate = low;
        let mut regions: Vec<Region> = self
            .regions
            .iter()
            .copied()
            .filter(|r| r.end > low && r.start < high)
            .collect();
        regions.sort_unstable_by_key(|r| r.start);
        for region in regions {
            if region.start >= candidate.checked_add(len)? {
                break;
            }
            candidate = candidate.max(region.end);
        }
        (candidate.checked_add(len)? <= high).then_some(candidate)
    }

    /// Whether `[address, address + len)` lies in regions the user may read (and write).
    pub fn user_may_access(&self, address: u64, len: u64, write: bool) -> bool {
        let Some(end) = address.checked_add(len) else {
            return false;
        };
        let mut cursor = address;
        while cursor < end {
            let Some(region) = self.region_of(cursor) else {
                return false;
            };
            let access = region.attributes.user();
            if !access.read || (write && !access.write) {
                return false;
            }
            cursor = region.end;
        }
        true
    }

    /// Removes the region starting at `start`, unmapping and freeing its pages.
    pub fn remove_region(&mut self, start: u64) -> Result<(), SpaceError> {
        let index = self
            .regions
            .iter()
            .position(|r| r.start == start)
            .ok_or(SpaceError::NoRegion { start })?;
        let region = self.regions[index];
        if region.borrowed {
            let va =
                VirtAddr::new(region.start).map_err(|_| SpaceError::BadRange { start, len: 0 })?;
            self.tables.unmap(va, region.end - region.start, |_| {})?;
        } else {
            self.unmap_range(region.start, region.end - region.start)?;
        }
        self.regions.swap_remove(index);
        Ok(())
    }

    fn unmap_range(&mut self, start: u64, len: u64) -> Result<(), SpaceError> {
        let va = VirtAddr::new(start).map_err(|_| SpaceError::BadRange { start, len })?;
        self.tables.unmap(va, len, |unmapped| match unmapped {
            Unmapped::Leaf(leaf) => {
                if let Ok(frame) = PhysFrame::from_start(leaf.pa)
                    && vmscan::release(frame)
                {
                    // SAFETY: every user page is a frame this space allocated; the address
                    // space calls us after the TLB invalidation, so nothing maps it any more,
                    // and reclaim has let go of it.
                    unsafe { frame::free(frame, 0) };
                }
            }
            Unmapped::Swap { entry, .. } => swap::free_slot(entry.slot()),
        })?;
        Ok(())
    }

    fn region_of(&self, va: u64) -> Option<Region> {
        self.regions
            .iter()
            .copied()
            .find(|r| (r.start..r.end).contains(&va))
    }

    /// Resolves a fault at `va` (the syndrome says which kind).
    pub fn resolve_fault(&mut self, va: u64, esr: Esr) -> FaultResolution {
        let Ok(address) = VirtAddr::new(va) else {
            return FaultResolution::Denied;
        };
        let Some(region) = self.region_of(va) else {
            return FaultResolution::Denied;
        };
        let outcome = match esr.fault_status() {
            Some(FaultStatus::Translation { .. }) => {
                if self.tables.swap_entry(Page::containing(address)).is_some() {
                    return FaultResolution::NeedsSwapIn;
                }
                return self.fill_page(address, region, esr.is_write());
            }
            Some(FaultStatus::AccessFlag { .. }) => {
                FAULTS.access_flag.fetch_add(1, Ordering::Relaxed);
                self.faults.access_flag += 1;
                self.tables.resolve_access_fault(address)
            }
            Some(FaultStatus::Permission { .. })
                if esr.is_write() && region.attributes.writable() =>
            {
                FAULTS.write.fetch_add(1, Ordering::Relaxed);
                self.tables.resolve_write_fault(address)
            }
            _ => return FaultResolution::Denied,
        };
        match outcome {
            Ok(FaultOutcome::Resolved) => FaultResolution::Resolved,
            Ok(FaultOutcome::Spurious) => {
                FAULTS.spurious.fetch_add(1, Ordering::Relaxed);
                FaultResolution::Resolved
            }
            Ok(FaultOutcome::PermissionDenied) | Err(_) => FaultResolution::Denied,
        }
    }

    /// The first step of [`fault_in`]: present already, or filled now, or what the thread must
    /// do first.
    fn ensure_present(&mut self, va: u64, write: bool) -> FaultResolution {
        let Ok(address) = VirtAddr::new(va) else {
            return FaultResolution::Denied;
        };
        let Some(region) = self.region_of(va) else {
            return FaultResolution::Denied;
        };
        let access = region.attributes.user();
        if !access.read || (write && !access.write) {
            return FaultResolution::Denied;
        }
        if self.tables.translate(address).is_some() {
            return FaultResolution::Resolved;
        }
        if self.tables.swap_entry(Page::containing(address)).is_some() {
            return FaultResolution::NeedsSwapIn;
        }
        self.fill_page(address, region, write)
    }

    /// Maps `frame`, just read from `entry`'s slot, where `page` holds that swap entry. False
    /// (the caller frees the frame) if the entry changed meanwhile: the retry sees the new
    /// state. An error if the page's region went away.
    fn map_swapped_in(
        &mut self,
        page: Page,
        frame: PhysFrame,
        entry: SwapEntry,
    ) -> Result<bool, FaultResolution> {
        let region = self
            .region_of(page.start().as_u64())
            .ok_or(FaultResolution::Denied)?;
        if self.tables.swap_entry(page) != Some(entry)
            || self.tables.swap_in(page, frame, region.attributes).is_err()
        {
            return Ok(false);
        }
        vmscan::track(frame, self.key(page.start()), Some(entry));
        vmscan::note_swap_in();
        self.faults.swap_in += 1;

        Ok(true)
    }

    /// Demand-zero fill of the page holding `address`.
    fn fill_page(&mut self, address: VirtAddr, region: Region, write: bool) -> FaultResolution {
        let page = Page::containing(address);
        let Some(frame) = vmscan::alloc_user_frame() else {
            return FaultResolution::NeedsMemory;
        };
        match self.tables.map_page(page, frame, region.attributes) {
            Ok(()) => {}
            // Another CPU filled it first.
            Err(MapError::AlreadyMapped { .. }) => {
                // SAFETY: the frame was never mapped.
                unsafe { frame::free(frame, 0) };
                return FaultResolution::Resolved;
            }
            Err(_) => {
                // SAFETY: as above.
                unsafe { frame::free(frame, 0) };
                return FaultResolution::OutOfMemory;
            }
        }
        vmscan::track(frame, self.key(address), None);
        FAULTS.demand_zero.fetch_add(1, Ordering::Relaxed);
        self.faults.demand_zero += 1;
        if write {
            // Save the second (dirty-tracking) fault the write would take on the clean page.
            let _ = self.tables.resolve_write_fault(page.start());
        }
        FaultResolution::Resolved
    }
}

impl Drop for UserSpace {
    fn drop(&mut self) {
        vmscan::unregister(self.asid.0);
        while let Some(region) = self.regions.last().copied() {
            if let Err(err) = self.remove_region(region.start) {
                self.regions.pop();
                log::error!(
                    "address space {}: cannot unmap {:#x}: {err}; its pages leak",
                    self.asid.0,
                    region.start
                );
            }
        }
        ASIDS.lock().free(self.asid);
    }
}

/// A thread's user address space, with what installing it needs (fixed for the space's life),
/// so that the scheduler installs it on every switch without taking the space's lock.
pub struct ThreadSpace {
    space: SharedSpace,
    ttbr: u64,
}

/// Installs a thread's user half (TTBR0) on this CPU, or the empty one: the scheduler calls it
/// with interrupts masked when it switches to the thread, so that a thread finds its own user
/// memory at the same addresses whichever CPU it resumes on, also inside a system call that slept.
pub fn install(space: Option<&ThreadSpace>) {
    mmu::set_user_tables(
        space.map_or_else(super::kernel_space::empty_user_ttbr, |space| space.ttbr),
    );
}

/// Makes `space` the calling thread's user half, from now on and on every CPU it runs on.
pub fn activate(space: &SharedSpace) {
    let ttbr = space.lock().tables.ttbr();
    let Some(thread) = crate::task::sched::current_opt() else {
        return;
    };
    let mut slot = thread.space.lock();
    let previous = slot.replace(ThreadSpace {
        space: space.clone(),
        ttbr,
    });
    install(slot.as_ref());
    drop(slot);
    // Dropped with the new tables installed (it may be the last reference).
    drop(previous);
}

/// Leaves the calling thread with an empty user half.
pub fn deactivate() {
    install(None);
    let previous = crate::task::sched::current_opt().and_then(|thread| thread.space.lock().take());
    drop(previous);
}

/// The calling thread's user address space.
pub fn active() -> Option<SharedSpace> {
    let thread = crate::task::sched::current_opt()?;
    let slot = thread.space.lock();
    slot.as_ref().map(|space| space.space.clone())
}

/// Attempts a user copy makes: each one makes the range present, then copies; a page evicted
/// again in between (heavy memory pressure) costs one more attempt.
const COPY_ATTEMPTS: usize = 4;

/// Runs `copy` over `[address, address + len)` of the active user address space once every page
/// there is present; the range must lie in regions the user may access (`write`: for writing).
fn with_user_range<R>(
    address: u64,
    len: usize,
    write: bool,
    mut copy: impl FnMut() -> R,
) -> Result<R, abi::Error> {
    let space = active().ok_or(abi::Error::BadAddress)?;
    if !space.lock().user_may_access(address, len as u64, write) {
        return Err(abi::Error::BadAddress);
    }
    for _ in 0..COPY_ATTEMPTS {
        let mut page = address & !(PAGE_SIZE - 1);
        while page < address + len as u64 {
            match fault_in(&space, page, write) {
                FaultResolution::Resolved => {}
                FaultResolution::OutOfMemory => return Err(abi::Error::NoMemory),
                _ => return Err(abi::Error::BadAddress),
            }
            page += PAGE_SIZE;
        }
        // A fault nothing resolves without sleeping (the page went out again) is caught.
        if let Ok(result) = crate::arch::recover::catch(&mut copy) {
            return Ok(result);
        }
    }
    Err(abi::Error::NoMemory)
}

/// Copies `len` bytes from the active user address space at `address`: the range must lie in
/// regions the user may read; its pages are made present (read back from swap if need be).
pub fn copy_from_user(address: u64, len: usize) -> Result<Vec<u8>, abi::Error> {
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(len)
        .map_err(|_| abi::Error::NoMemory)?;
    with_user_range(address, len, false, || {
        bytes.clear();
        for offset in 0..len {
            // SAFETY: the range lies in the user's regions of the active address space; faults
            // are resolved by the fault handler or caught by `catch`.
            bytes.push(unsafe { core::ptr::read_volatile((address + offset as u64) as *const u8) });
        }
    })?;
    Ok(bytes)
}

/// Copies `bytes` into the active user address space at `address` (which must be writable for
/// the user).
pub fn copy_to_user(address: u64, bytes: &[u8]) -> Result<(), abi::Error> {
    with_user_range(address, bytes.len(), true, || {
        for (offset, byte) in bytes.iter().enumerate() {
            // SAFETY: as in `copy_from_user`, for writing.
            unsafe { core::ptr::write_volatile((address + offset as u64) as *mut u8, *byte) };
        }
    })
}

/// Tries to make the page at `va` of `space` present, reading it back from swap and reclaiming
/// memory as needed (thread context only: it sleeps). Present pages need nothing more: their
/// Access-flag and dirty-tracking faults never sleep.
pub fn fault_in(space: &SharedSpace, va: u64, write: bool) -> FaultResolution {
    for _ in 0..COPY_ATTEMPTS * 4 {
        let resolution = space.lock().ensure_present(va, write);
        match resolution {
            FaultResolution::NeedsMemory => {
                if let Err(failure) = vmscan::direct_reclaim() {
                    log::debug!(target: "reclaim", "fault at {va:#x}: {failure}");
                    return FaultResolution::OutOfMemory;
                }
            }
            FaultResolution::NeedsSwapIn => {
                if let Err(resolution) = swap_in(space, va) {
                    return resolution;
                }
            }
            other => return other,
        }
    }
    FaultResolution::OutOfMemory
}

/// Reads the swapped-out page at `va` back into a new frame and maps it.
fn swap_in(space: &SharedSpace, va: u64) -> Result<(), FaultResolution> {
    let page = Page::containing(VirtAddr::new(va).map_err(|_| FaultResolution::Denied)?);
    let Some(entry) = space.lock().tables.swap_entry(page) else {
        return Ok(());
    };
    let area = swap::area().ok_or(FaultResolution::SwapIoError)?;
    let frame = loop {
        if let Some(frame) = vmscan::alloc_user_frame() {
            break frame;
        }
        vmscan::direct_reclaim().map_err(|_| FaultResolution::OutOfMemory)?;
    };
    let mapped = area
        .read(entry.slot(), frame)
        .map_err(|err| {
            log::warn!(target: "swap", "reading slot {} for {va:#x}: {err}", entry.slot());
            FaultResolution::SwapIoError
        })
        .and_then(|()| space.lock().map_swapped_in(page, frame, entry));
    if mapped != Ok(true) {
        // SAFETY: the frame was not mapped.
        unsafe { frame::free(frame, 0) };
    }
    mapped.map(drop)
}

/// Resolves a fault on a user-half address in the active address space (from EL0, or from the
/// kernel touching user memory).
pub fn handle_fault(va: u64, esr: Esr) -> FaultResolution {
    let Some(space) = active() else {
        return FaultResolution::NoSpace;
    };
    let resolution = space.lock().resolve_fault(va, esr);
    log::trace!(target: "mm", "fault at {va:#x} ({esr}): {resolution:?}");
    if resolution != FaultResolution::Resolved {
        FAULTS.unresolved.fetch_add(1, Ordering::Relaxed);
    }
    resolution
}
