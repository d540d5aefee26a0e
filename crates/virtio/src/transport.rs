//! virtio-mmio transports: legacy (version 1) and modern (version 2), behind one trait.
//!
//! The transport only moves values to and from registers; the order of the initialisation
//! handshake, the bounded waits and all policy live in the block driver.

use crate::error::Error;
use crate::features::Features;
use crate::hal::{PAGE_SIZE, PhysAddr};
use crate::mmio::{MAGIC_VALUE, RegisterAccess, reg};
use crate::queue::RingLayout;

/// Which register layout a device speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportVersion {
    /// Version 1: page-frame queue addresses, no FEATURES_OK, guest-endian config.
    Legacy,
    /// Version 2: 64-bit queue addresses, QueueReady, FEATURES_OK, ConfigGeneration.
    Modern,
}

/// Register-level operations of a virtio transport, as the block driver uses them.
pub trait Transport {
    /// Which layout this is.
    fn version(&self) -> TransportVersion;
    /// DeviceID (2 = block).
    fn device_type(&self) -> u32;
    /// The 64 feature bits the device offers.
    fn device_features(&mut self) -> Features;
    /// Tells the device which features the driver accepted.
    fn set_driver_features(&mut self, features: Features);
    /// The Status register.
    fn status(&self) -> u32;
    /// Writes the Status register (0 starts a device reset).
    fn set_status(&mut self, status: u32);
    /// QueueNumMax of `queue` (0 = no such queue).
    fn max_queue_size(&mut self, queue: u16) -> u32;
    /// Whether `queue` is live (modern: QueueReady != 0; legacy: QueuePFN != 0).
    fn queue_in_use(&mut self, queue: u16) -> bool;
    /// Programs `queue` with a ring of `size` entries laid out by [`RingLayout`] at `ring`
    /// and makes it live.
    fn setup_queue(&mut self, queue: u16, size: u16, ring: PhysAddr) -> Result<(), Error>;
    /// Writes 1 to QueueReset of `queue`; returns false (writing nothing) when the transport
    /// has no such register.
    fn request_queue_reset(&mut self, queue: u16) -> bool;
    /// Whether QueueReset of `queue` still reads 1.
    fn queue_reset_pending(&mut self, queue: u16) -> bool;
    /// Available-buffer notification for `queue`.
    fn notify(&mut self, queue: u16);
    /// InterruptStatus.
    fn interrupt_status(&self) -> u32;
    /// InterruptACK: acknowledges exactly `bits`.
    fn ack_interrupt(&mut self, bits: u32);
    /// ConfigGeneration (legacy devices have none: always 0).
    fn config_generation(&self) -> u32;
    /// Reads a byte of device configuration space at `offset` from its start.
    fn config_read8(&self, offset: usize) -> u8;
    /// Reads a 16-bit configuration field.
    fn config_read16(&self, offset: usize) -> u16;
    /// Reads a 32-bit configuration field.
    fn config_read32(&self, offset: usize) -> u32;
}

fn read_features<R: RegisterAccess>(regs: &mut R, words: u32) -> Features {
    let mut bits = 0u64;
    for word in 0..words {
        regs.write32(reg::DEVICE_FEATURES_SEL, word);
        bits |= u64::from(regs.read32(reg::DEVICE_FEATURES)) << (32 * word);
    }
    Features(bits)
}

fn write_features<R: RegisterAccess>(regs: &mut R, features: Features, words: u32) {
    for word in 0..words {
        regs.write32(reg::DRIVER_FEATURES_SEL, word);
        regs.write32(reg::DRIVER_FEATURES, (features.0 >> (32 * word)) as u32);
    }
}

/// Version 1 (legacy) virtio-mmio, the QEMU default.
pub struct LegacyTransport<R> {
    regs: R,
    device_type: u32,
}

/// Version 2 (modern) virtio-mmio (QEMU with `-global virtio-mmio.force-legacy=false`).
pub struct ModernTransport<R> {
    regs: R,
    device_type: u32,
}

/// Either transport, chosen by [`probe`] from the Version register.
pub enum MmioTransport<R> {
    /// Version 1.
    Legacy(LegacyTransport<R>),
    /// Version 2.
    Modern(ModernTransport<R>),
}

/// Identifies the device in a virtio-mmio window (spec 4.2.3.1.1): checks MagicValue and
/// Version, then reads DeviceID and touches nothing else when it is 0.
///
/// Errors: [`Error::BadMagic`], [`Error::UnsupportedVersion`], [`Error::NoDevice`] (an empty
/// slot: skip it without complaint).
pub fn probe<R: RegisterAccess>(regs: R) -> Result<MmioTransport<R>, Error> {
    let magic = regs.read32(reg::MAGIC);
    if magic != MAGIC_VALUE {
        return Err(Error::BadMagic(magic));
    }
    let version = regs.read32(reg::VERSION);
    if version != 1 && version != 2 {
        return Err(Error::UnsupportedVersion(version));
    }
    let device_type = regs.read32(reg::DEVICE_ID);
    if device_type == 0 {
        return Err(Error::NoDevice);
    }
    Ok(if version == 1 {
        MmioTransport::Legacy(LegacyTransport { regs, device_type })
    } else {
        MmioTransport::Modern(ModernTransport { regs, device_type })
    })
}

/// The register operations both layouts share, written once for both `Transport` impls.
/// Config space is little-endian on modern devices and guest-endian on legacy ones; this
/// driver only runs on little-endian CPUs, where the two agree.
macro_rules! shared_registers {
    () => {
        fn device_type(&self) -> u32 {
            self.device_type
        }
        fn status(&self) -> u32 {
            self.regs.read32(reg::STATUS)
        }
        fn set_status(&mut self, status: u32) {
            self.regs.write32(reg::STATUS, status);
        }
        fn max_queue_size(&mut self, queue: u16) -> u32 {
            self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
            self.regs.read32(reg::QUEUE_NUM_MAX)
        }
        fn notify(&mut self, queue: u16) {
            self.regs.write32(reg::QUEUE_NOTIFY, u32::from(queue));
        }
        fn interrupt_status(&self) -> u32 {
            self.regs.read32(reg::INTERRUPT_STATUS)
        }
        fn ack_interrupt(&mut self, bits: u32) {
            self.regs.write32(reg::INTERRUPT_ACK, bits);
        }
        fn config_read8(&self, offset: usize) -> u8 {
            self.regs.read8(reg::CONFIG + offset)
        }
        fn config_read16(&self, offset: usize) -> u16 {
            self.regs.read16(reg::CONFIG + offset)
        }
        fn config_read32(&self, offset: usize) -> u32 {
            self.regs.read32(reg::CONFIG + offset)
        }
    };
}

impl<R: RegisterAccess> Transport for LegacyTransport<R> {
    shared_registers!();
    fn version(&self) -> TransportVersion {
        TransportVersion::Legacy
    }
    fn device_features(&mut self) -> Features {
        // Legacy devices have 32 feature bits.
        read_features(&mut self.regs, 1)
    }
    fn set_driver_features(&mut self, features: Features) {
        write_features(&mut self.regs, features, 1);
    }
    fn queue_in_use(&mut self, queue: u16) -> bool {
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.read32(reg::QUEUE_PFN) != 0
    }
    fn setup_queue(&mut self, queue: u16, size: u16, ring: PhysAddr) -> Result<(), Error> {
        // The legacy layout is what RingLayout produces: used ring on the next page boundary.
        let pfn = u32::try_from(ring.0 / PAGE_SIZE as u64).map_err(|_| Error::AddressTooHigh)?;
        if !ring.0.is_multiple_of(PAGE_SIZE as u64) || pfn == 0 {
            return Err(Error::InvalidArgument(
                "legacy ring must be page-aligned and non-zero",
            ));
        }
        self.regs.write32(reg::GUEST_PAGE_SIZE, PAGE_SIZE as u32);
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.write32(reg::QUEUE_NUM, u32::from(size));
        self.regs.write32(reg::QUEUE_ALIGN, PAGE_SIZE as u32);
        self.regs.write32(reg::QUEUE_PFN, pfn);
        Ok(())
    }
    fn request_queue_reset(&mut self, _queue: u16) -> bool {
        // Legacy has no QueueReset (and QueuePFN = 0 would reset the whole device in QEMU).
        false
    }
    fn queue_reset_pending(&mut self, _queue: u16) -> bool {
        false
    }
    fn config_generation(&self) -> u32 {
        0
    }
}

impl<R: RegisterAccess> Transport for ModernTransport<R> {
    shared_registers!();
    fn version(&self) -> TransportVersion {
        TransportVersion::Modern
    }
    fn device_features(&mut self) -> Features {
        read_features(&mut self.regs, 2)
    }
    fn set_driver_features(&mut self, features: Features) {
        write_features(&mut self.regs, features, 2);
    }
    fn queue_in_use(&mut self, queue: u16) -> bool {
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.read32(reg::QUEUE_READY) != 0
    }
    fn setup_queue(&mut self, queue: u16, size: u16, ring: PhysAddr) -> Result<(), Error> {
        let layout = RingLayout::new(size);
        let areas = [
            (reg::QUEUE_DESC_LOW, reg::QUEUE_DESC_HIGH, ring),
            (
                reg::QUEUE_DRIVER_LOW,
                reg::QUEUE_DRIVER_HIGH,
                ring.add(layout.avail_offset() as u64),
            ),
            (
                reg::QUEUE_DEVICE_LOW,
                reg::QUEUE_DEVICE_HIGH,
                ring.add(layout.used_offset() as u64),
            ),
        ];
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.write32(reg::QUEUE_NUM, u32::from(size));
        for (low, high, addr) in areas {
            self.regs.write32(low, addr.0 as u32);
            self.regs.write32(high, (addr.0 >> 32) as u32);
        }
        self.regs.write32(reg::QUEUE_READY, 1);
        Ok(())
    }
    fn request_queue_reset(&mut self, queue: u16) -> bool {
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.write32(reg::QUEUE_RESET, 1);
        true
    }
    fn queue_reset_pending(&mut self, queue: u16) -> bool {
        self.regs.write32(reg::QUEUE_SEL, u32::from(queue));
        self.regs.read32(reg::QUEUE_RESET) != 0
    }
    fn config_generation(&self) -> u32 {
        self.regs.read32(reg::CONFIG_GENERATION)
    }
}

/// Forwards each call to whichever transport the device turned out to speak.
macro_rules! dispatch {
    ($self:ident, $t:ident => $call:expr) => {
        match $self {
            MmioTransport::Legacy($t) => $call,
            MmioTransport::Modern($t) => $call,
        }
    };
}

impl<R: RegisterAccess> Transport for MmioTransport<R> {
    fn version(&self) -> TransportVersion {
        dispatch!(self, t => t.version())
    }
    fn device_type(&self) -> u32 {
        dispatch!(self, t => t.device_type())
    }
    fn device_features(&mut self) -> Features {
        dispatch!(self, t => t.device_features())
    }
    fn set_driver_features(&mut self, features: Features) {
        dispatch!(self, t => t.set_driver_features(features))
    }
    fn status(&self) -> u32 {
        dispatch!(self, t => t.status())
    }
    fn set_status(&mut self, status: u32) {
        dispatch!(self, t => t.set_status(status))
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        dispatch!(self, t => t.max_queue_size(queue))
    }
    fn queue_in_use(&mut self, queue: u16) -> bool {
        dispatch!(self, t => t.queue_in_use(queue))
    }
    fn setup_queue(&mut self, queue: u16, size: u16, ring: PhysAddr) -> Result<(), Error> {
        dispatch!(self, t => t.setup_queue(queue, size, ring))
    }
    fn request_queue_reset(&mut self, queue: u16) -> bool {
        dispatch!(self, t => t.request_queue_reset(queue))
    }
    fn queue_reset_pending(&mut self, queue: u16) -> bool {
        dispatch!(self, t => t.queue_reset_pending(queue))
    }
    fn notify(&mut self, queue: u16) {
        dispatch!(self, t => t.notify(queue))
    }
    fn interrupt_status(&self) -> u32 {
        dispatch!(self, t => t.interrupt_status())
    }
    fn ack_interrupt(&mut self, bits: u32) {
        dispatch!(self, t => t.ack_interrupt(bits))
    }
    fn config_generation(&self) -> u32 {
        dispatch!(self, t => t.config_generation())
    }
    fn config_read8(&self, offset: usize) -> u8 {
        dispatch!(self, t => t.config_read8(offset))
    }
    fn config_read16(&self, offset: usize) -> u16 {
        dispatch!(self, t => t.config_read16(offset))
    }
    fn config_read32(&self, offset: usize) -> u32 {
        dispatch!(self, t => t.config_read32(offset))
    }
}
