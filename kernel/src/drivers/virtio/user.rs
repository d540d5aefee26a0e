//! virtio-mmio devices the kernel leaves to drivers in user mode: every device whose virtio
//! serial starts with `user` (QEMU `-device virtio-blk-device,serial=user0`). Discovery
//! initialises it only to read that serial, then resets it and keeps its slot here.
//!
//! A task reaches such a device only through a [`Capability::Device`]; its first device call
//! claims the device for it until it ends (another task's calls get [`Error::Busy`]). The
//! claimant gets:
//!
//! * its registers, one checked access per system call ([`UserDevice::read`],
//!   [`UserDevice::write`]): virtio-mmio windows are 512 bytes, eight to a 4 KiB page, so
//!   mapping the page would also hand the task its neighbours' registers (the swap disk's, say);
//! * DMA memory ([`UserDevice::alloc_dma`]): zeroed, physically contiguous frames mapped in the
//!   task's DMA area, at most [`DMA_LIMIT`] bytes per device;
//! * its interrupt ([`UserDevice::wait_interrupt`]): unmasked at the GIC while the task waits,
//!   masked again by the handler on delivery, so the task handles the device's interrupt status
//!   before the line can fire again.
//!
//! When the task ends, [`release_devices`] resets the device (it stops all DMA), masks its
//! interrupt, unmaps and frees its DMA memory and drops the claim: a new driver can take it.
//! There is no IOMMU on `virt`: a driver can point the device at any physical memory, so the
//! capability is given only to trusted servers. What user mode buys is that a driver's bugs
//! and crashes end the driver, not the kernel, and that a restarted driver finds the device
//! in a clean state.
//!
//! [`Capability::Device`]: crate::ipc::Capability::Device

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::{Error, layout};
use pagetable::MemoryAttributes;
use spin::Once;
use virtio::{RegisterAccess, Transport};

use super::hal::{MmioWindow, order_for};
use crate::drivers::gic::{IrqId, Trigger};
use crate::mm::aspace::SharedSpace;
use crate::mm::{PAGE_SIZE, PhysFrame, frame};
use crate::sync::IrqSpinLock;
use crate::task::{ThreadId, WaitQueue};
use crate::{arch::cpu, irq, time};

/// Serials of devices left to user mode start with this.
const USER_SERIAL_PREFIX: &str = "user";
/// DMA memory one device's driver may hold.
pub const DMA_LIMIT: u64 = 4 << 20;
/// DMA allocations one device's driver may hold (bounds the claim's table).
const DMA_BLOCKS: usize = 64;
/// Longest wait for the device reset when a driver ends.
const RESET_TIMEOUT_US: u64 = 100_000;

/// One block of DMA memory, mapped at `address` in the claimant's DMA area.
struct DmaBlock {
    address: u64,
    block: PhysFrame,
    order: usize,
}

/// The task driving a device, and the DMA memory it was given.
struct Claim {
    owner: ThreadId,
    space: SharedSpace,
    dma: Vec<DmaBlock>,
    dma_bytes: u64,
}

/// A virtio-mmio slot whose device a user-mode driver runs.
pub struct UserDevice {
    serial: String,
    base: u64,
    size: u64,
    irq: IrqId,
    trigger: Trigger,
    /// The register window in the kernel's address space.
    window: MmioWindow,
    claim: IrqSpinLock<Option<Claim>>,
    /// The interrupt is routed to [`on_interrupt`].
    routed: AtomicBool,
    /// Set by the interrupt handler, taken by the waiting driver.
    interrupted: AtomicBool,
    waiters: WaitQueue,
}

static USER_DEVICES: Once<Vec<UserDevice>> = Once::new();

/// Every device left to user mode, in discovery order (`user0` of the first `-drive` first).
pub fn user_devices() -> &'static [UserDevice] {
    USER_DEVICES.get().map_or(&[], Vec::as_slice)
}

/// The user-mode device with this serial.
pub fn user_device(serial: &str) -> Option<&'static UserDevice> {
    user_devices().iter().find(|device| device.serial == serial)
}

/// The first user-mode device no task drives.
pub fn first_free_user_device() -> Option<&'static UserDevice> {
    user_devices()
        .iter()
        .find(|device| device.owner().is_none())
}

/// Whether the kernel leaves the device with this serial to user mode.
pub(super) fn is_user_serial(serial: &str) -> bool {
    serial.starts_with(USER_SERIAL_PREFIX)
}

impl UserDevice {
    /// A device (already reset) in the slot at `base`, mapped for the kernel at `window`.
    pub(super) fn new(
        serial: &str,
        base: u64,
        size: u64,
        irq: IrqId,
        trigger: Trigger,
        window: MmioWindow,
    ) -> Self {
        Self {
            serial: String::from(serial),
            base,
            size,
            irq,
            trigger,
            window,
            claim: IrqSpinLock::new(None),
            routed: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            waiters: WaitQueue::new(),
        }
    }

    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Physical address of the register window.
    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn irq(&self) -> IrqId {
        self.irq
    }

    /// The task driving the device, if any.
    pub fn owner(&self) -> Option<ThreadId> {
        self.claim.lock().as_ref().map(|claim| claim.owner)
    }

    /// Runs `f` on `owner`'s claim, claiming the device first if nobody holds it.
    fn with_claim<R>(
        &self,
        owner: ThreadId,
        space: &SharedSpace,
        f: impl FnOnce(&mut Claim) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let mut claim = self.claim.lock();
        if claim.as_ref().is_some_and(|held| held.owner != owner) {
            return Err(Error::Busy);
        }
        let held = claim.get_or_insert_with(|| {
            log::debug!(target: "virtio", "{} claimed by task {owner}", self.serial);
            self.interrupted.store(false, Ordering::Release);
            Claim {
                owner,
                space: space.clone(),
                dma: Vec::new(),
                dma_bytes: 0,
            }
        });
        f(held)
    }

    /// Checks a register access: 4 bytes anywhere in the window, 1 or 2 bytes only in the
    /// configuration space (spec 4.2.2.2), always aligned to its width.
    fn check_access(&self, offset: u64, width: u64) -> Result<usize, Error> {
        let width_allowed = match width {
            4 => true,
            1 | 2 => offset >= virtio::mmio::reg::CONFIG as u64,
            _ => false,
        };
        let inside = offset
            .checked_add(width)
            .is_some_and(|end| end <= self.size);
        if !width_allowed || !inside || !offset.is_multiple_of(width) {
            return Err(Error::InvalidArgument);
        }
        Ok(offset as usize)
    }

    /// `device_read`: the `width`-byte register at `offset`.
    pub fn read(
        &self,
        owner: ThreadId,
        space: &SharedSpace,
        offset: u64,
        width: u64,
    ) -> Result<u64, Error> {
        let offset = self.check_access(offset, width)?;
        self.with_claim(owner, space, |_| {
            Ok(match width {
                1 => u64::from(self.window.read8(offset)),
                2 => u64::from(self.window.read16(offset)),
                _ => u64::from(self.window.read32(offset)),
            })
        })
    }

    /// `device_write`: the 32-bit register at `offset`.
    pub fn write(
        &self,
        owner: ThreadId,
        space: &SharedSpace,
        offset: u64,
        value: u64,
    ) -> Result<(), Error> {
        let offset = self.check_access(offset, 4)?;
        let value = u32::try_from(value).map_err(|_| Error::InvalidArgument)?;
        self.with_claim(owner, space, |_| {
            let mut window = self.window;
            window.write32(offset, value);
            Ok(())
        })
    }

    /// `dma_alloc`: `len` bytes of zeroed, physically contiguous memory mapped in the owner's
    /// DMA area. Returns its address there and its physical address.
    pub fn alloc_dma(
        &self,
        owner: ThreadId,
        space: &SharedSpace,
        len: u64,
    ) -> Result<(u64, u64), Error> {
        if len == 0 || len > DMA_LIMIT {
            return Err(Error::InvalidArgument);
        }
        let pages = len.div_ceil(PAGE_SIZE);
        let order = order_for(pages as usize);
        // Zeroed before the claim's lock is taken (it masks interrupts).
        let block = frame::alloc_zeroed(order).map_err(|_| Error::NoMemory)?;
        let mapped = self.with_claim(owner, space, |claim| {
            let bytes = PAGE_SIZE << order;
            if claim.dma.len() >= DMA_BLOCKS || claim.dma_bytes + bytes > DMA_LIMIT {
                return Err(Error::Exhausted);
            }
            let frames: Vec<PhysFrame> = (0..pages)
                .map_while(|page| block.checked_add(page))
                .collect();
            let mut space = claim.space.lock();
            let address = space
                .find_free(layout::DMA_BASE, layout::DMA_END, pages * PAGE_SIZE)
                .ok_or(Error::NoMemory)?;
            space
                .map_borrowed(address, &frames, MemoryAttributes::USER_DATA)
                .map_err(|_| Error::NoMemory)?;
            drop(space);
            claim.dma.push(DmaBlock {
                address,
                block,
                order,
            });
            claim.dma_bytes += bytes;
            Ok(address)
        });
        match mapped {
            Ok(address) => Ok((address, block.start().as_u64())),
            Err(error) => {
                // SAFETY: allocated above with this order and never mapped or given out.
                unsafe { frame::free(block, order) };
                Err(error)
            }
        }
    }

    /// `device_wait`: unmasks the interrupt and waits until it fires (or `cancelled()`).
    pub fn wait_interrupt(
        &self,
        owner: ThreadId,
        space: &SharedSpace,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), Error> {
        if !self.routed.load(Ordering::Acquire) {
            return Err(Error::NotFound);
        }
        self.with_claim(owner, space, |_| Ok(()))?;
        if let Some(gic) = irq::controller() {
            // Not `enable`: that would route it to this CPU and strand an edge pending for the
            // CPU it was routed to.
            gic.unmask(self.irq);
        }
        self.waiters
            .wait_until(|| self.interrupted.swap(false, Ordering::AcqRel) || cancelled());
        Ok(())
    }

    /// Writes 0 to Status and waits (bounded) until it reads 0: the device has dropped its
    /// queues and does no more DMA. False if it did not.
    fn reset(&self) -> bool {
        let Ok(mut transport) = virtio::probe(self.window) else {
            return false;
        };
        transport.set_status(0);
        let deadline = cpu::counter() + time::us_to_ticks(RESET_TIMEOUT_US);
        while transport.status() != 0 {
            if cpu::counter() >= deadline {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    /// Stops the device and takes back what `owner` was given, if `owner` drives it.
    fn release(&self, owner: ThreadId) {
        if self.owner() != Some(owner) {
            return;
        }
        // The claim stays held while the device resets, so no new driver starts meanwhile.
        let stopped = self.reset();
        if let Some(gic) = irq::controller() {
            gic.disable(self.irq);
        }
        let Some(claim) = self.claim.lock().take() else {
            return;
        };
        let mut space = claim.space.lock();
        for dma in &claim.dma {
            // The region was mapped by `alloc_dma` and is still there: the task cannot unmap
            // the DMA area.
            let _ = space.remove_region(dma.address);
        }
        drop(space);
        if stopped {
            for dma in claim.dma {
                // SAFETY: allocated by `alloc_dma` with this order, unmapped above, and the
                // device was reset: nothing reads or writes it any more.
                unsafe { frame::free(dma.block, dma.order) };
            }
        } else {
            log::warn!(
                target: "virtio",
                "{}: no reset after task {owner} ended: {} bytes of DMA memory kept from reuse",
                self.serial,
                claim.dma_bytes
            );
        }
        log::debug!(target: "virtio", "{} released by task {owner}", self.serial);
    }
}

/// Routes the interrupts of the devices found at discovery, masked until a driver waits, and
/// makes the table public. Called once at boot.
pub(super) fn init(found: Vec<UserDevice>) {
    for device in USER_DEVICES.call_once(|| found) {
        match irq::register(device.irq, device.trigger, &device.serial, on_interrupt) {
            Ok(()) => {
                if let Some(gic) = irq::controller() {
                    gic.disable(device.irq);
                }
                device.routed.store(true, Ordering::Release);
            }
            Err(error) => {
                log::warn!(target: "virtio", "{}: device_wait unavailable: {error}", device.serial)
            }
        }
        log::info!(
            target: "virtio",
            "{} at {:#x} left to user mode, irq {}",
            device.serial,
            device.base,
            device.irq.0
        );
    }
}

/// Masks the interrupt (the driver unmasks it by waiting again, after acknowledging the
/// device's interrupt status) and wakes the driver.
fn on_interrupt(irq: IrqId) {
    if let Some(gic) = irq::controller() {
        gic.disable(irq);
    }
    for device in user_devices().iter().filter(|device| device.irq == irq) {
        device.interrupted.store(true, Ordering::Release);
        device.waiters.wake_all();
    }
}

/// Stops every device `owner` drove and frees what it was given. Called when a task ends,
/// before its pending call is answered.
pub fn release_devices(owner: ThreadId) {
    for device in user_devices() {
        device.release(owner);
    }
}
