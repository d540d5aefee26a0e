//! virtio-mmio block devices: discovery from the devicetree, the device table, interrupt
//! routing. The protocol itself (transports, virtqueue, requests, resizing) is the
//! arch-neutral `virtio` crate; [`hal`] adapts it to this kernel and [`block`] is the API the
//! rest of the kernel uses.
//!
//! Disks are named `blk0`, `blk1`, ... in descending order of their slot's address: QEMU
//! attaches the first `-drive` to the highest virtio-mmio slot, so `blk0` is the first disk on
//! the command line. Devices whose serial starts with `user` are not the kernel's: [`user`]
//! keeps them for drivers in user mode.

pub mod bench;
mod block;
mod hal;
pub mod user;

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

use devicetree::{MachineInfo, VirtioMmioSlot};
use spin::Once;
use virtio::{DEVICE_ID_LEN, DriverConfig, Error, TransportVersion};

pub use block::{
    Batch, Device, Disk, DmaBuffer, Finished, MAX_REQUESTS, POLICY_GROW_AFTER, POLICY_MIN_SIZE,
    POLICY_PERIOD_US, POLICY_WINDOW, Pending, Refused, Request,
};
use hal::{CounterClock, FrameDma, MmioWindow};
use user::is_user_serial;
pub use user::{UserDevice, first_free_user_device, release_devices, user_device, user_devices};

use crate::drivers::gic::IrqId;
use crate::{irq, mm};

/// DeviceID of a block device.
const BLOCK_DEVICE: u32 = 2;

static DISKS: Once<Vec<Disk>> = Once::new();

/// Every block device found at boot, `blk0` first.
pub fn disks() -> &'static [Disk] {
    DISKS.get().map_or(&[], Vec::as_slice)
}

/// The disk called `name` (`blk0`, ...).
pub fn disk(name: &str) -> Option<&'static Disk> {
    disks().iter().find(|disk| disk.name() == name)
}

/// Driver settings: the core's defaults with the request table sized to the disk's slots.
fn driver_config() -> DriverConfig {
    DriverConfig {
        max_requests: MAX_REQUESTS,
        ..DriverConfig::default()
    }
}

/// A device discovery found.
enum Found {
    /// Driven by the kernel.
    Disk(Box<Disk>),
    /// Left to a user-mode driver.
    User(UserDevice),
}

/// The serial a get-id request returned, as text (up to the first NUL).
fn serial_text(id: &[u8; DEVICE_ID_LEN]) -> Option<&str> {
    let len = id.iter().position(|&b| b == 0).unwrap_or(id.len());
    core::str::from_utf8(&id[..len]).ok()
}

/// Brings up the block device behind `slot`, if there is one; a device with a `user` serial
/// is reset again and handed over.
fn probe_slot(slot: &VirtioMmioSlot, index: usize) -> Result<Option<Found>, Error> {
    let base = mm::kernel_space::map_device(slot.base, slot.size)
        .map_err(|_| Error::InvalidArgument("the register window cannot be mapped"))?;
    // SAFETY: `map_device` just mapped the slot's window as device memory, for good.
    let window = unsafe { MmioWindow::new(base.as_u64() as usize, slot.size as usize) };
    let transport = match virtio::probe(window) {
        Ok(transport) => transport,
        Err(Error::NoDevice) => return Ok(None),
        Err(error) => return Err(error),
    };
    let device_type = virtio::Transport::device_type(&transport);
    if device_type != BLOCK_DEVICE {
        log::info!(target: "virtio", "{:#x}: device type {device_type} (no driver)", slot.base);
        return Ok(None);
    }
    let mut device = Device::new(transport, FrameDma, CounterClock, driver_config())?;
    // Busy-polled: the interrupt is not routed yet.
    let serial = device.get_id_blocking().ok();
    let irq = IrqId(slot.irq.intid());
    let trigger = irq::trigger_of(&slot.irq);
    if let Some(serial) = serial.as_ref().and_then(serial_text)
        && is_user_serial(serial)
    {
        // Dropping the driver resets the device.
        drop(device);
        return Ok(Some(Found::User(UserDevice::new(
            serial, slot.base, slot.size, irq, trigger, window,
        ))));
    }
    Ok(Some(Found::Disk(Box::new(Disk::new(
        format!("blk{index}"),
        slot.base,
        irq,
        trigger,
        device,
        serial,
    )))))
}

/// Finds and initialises every virtio-blk device, routes their interrupts and logs one line
/// each. Called once at boot, with interrupts on.
pub fn init(machine: &MachineInfo<'_>) {
    let mut slots = machine.virtio_mmio.clone();
    slots.sort_unstable_by_key(|slot| core::cmp::Reverse(slot.base));
    let mut found = Vec::new();
    let mut left_to_user = Vec::new();
    for slot in &slots {
        match probe_slot(slot, found.len()) {
            Ok(Some(Found::Disk(disk))) => found.push(*disk),
            Ok(Some(Found::User(device))) => left_to_user.push(device),
            Ok(None) => {}
            Err(error) => log::warn!(target: "virtio", "{:#x}: {error}", slot.base),
        }
    }
    user::init(left_to_user);
    for disk in DISKS.call_once(|| found) {
        if let Err(error) = irq::register(disk.irq(), disk.trigger(), disk.name(), on_interrupt) {
            log::warn!(target: "virtio", "{}: completions polled: {error}", disk.name());
            disk.set_polled(true);
        }
        disk.acknowledge_stale_interrupt();
        let info = disk.info();
        log::info!(
            target: "virtio",
            "{} at {:#x} ({}), {} sectors, queue {}, features {:#x}, serial {:?}",
            disk.name(),
            disk.base(),
            transport_name(info.transport),
            info.capacity,
            disk.queue_size(),
            info.features.0,
            disk.serial().unwrap_or("")
        );
    }
}

/// `legacy` (virtio-mmio version 1) or `modern` (version 2).
pub fn transport_name(version: TransportVersion) -> &'static str {
    match version {
        TransportVersion::Legacy => "legacy",
        TransportVersion::Modern => "modern",
    }
}

fn on_interrupt(irq: IrqId) {
    for disk in disks().iter().filter(|disk| disk.irq() == irq) {
        disk.handle_interrupt();
    }
}

/// Whether the policy sampler's deadline is pending.
static SAMPLER_ARMED: AtomicBool = AtomicBool::new(false);

/// Starts sampling disks in auto-resize mode every [`POLICY_PERIOD_US`] (if not already).
fn arm_policy_sampler() -> Result<(), Error> {
    if SAMPLER_ARMED.swap(true, Ordering::AcqRel) {
        return Ok(());
    }
    if crate::time::add_deadline_after_us(POLICY_PERIOD_US, sample_policies, 0).is_err() {
        SAMPLER_ARMED.store(false, Ordering::Release);
        // Every timer deadline slot is taken.
        return Err(Error::NoMemory);
    }
    Ok(())
}

/// Timer deadline: one sample per auto-mode disk; re-arms while any disk is in auto mode.
fn sample_policies(_: usize) {
    let any = disks()
        .iter()
        .fold(false, |any, disk| disk.sample_policy() | any);
    SAMPLER_ARMED.store(false, Ordering::Release);
    if any {
        // A full deadline table only delays sampling until the next `set_auto_resize`.
        let _ = arm_policy_sampler();
    }
}
