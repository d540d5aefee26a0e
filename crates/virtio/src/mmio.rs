//! The virtio-mmio register window (spec 4.2.2 and 4.2.4): offsets, bits, and the access trait
//! the kernel implements with volatile loads and stores.

/// Access to one device's MMIO register window.
///
/// The kernel implements it with volatile accesses to the mapped window (Device memory); the
/// fake device implements the register semantics on the host.
///
/// Contract for implementations: every call is exactly one access of the stated width at
/// `base + offset` (no merging, splitting or reordering with other register accesses), and
/// [`write32`](Self::write32) is ordered after the CPU's earlier writes to normal memory (as
/// Linux `writel` is), because a QueueNotify must not overtake the ring writes it announces.
/// Values are little-endian on the bus; the driver only runs on little-endian CPUs.
pub trait RegisterAccess {
    /// Reads the 32-bit register at `offset` (a multiple of 4).
    fn read32(&self, offset: usize) -> u32;
    /// Writes the 32-bit register at `offset` (a multiple of 4).
    fn write32(&mut self, offset: usize, value: u32);
    /// Reads one byte of device configuration space (`offset >= 0x100`); 8-bit fields must
    /// be read at their own width (spec 4.2.2.2).
    fn read8(&self, offset: usize) -> u8;
    /// Reads a 16-bit, 2-aligned field of device configuration space (`offset >= 0x100`).
    fn read16(&self, offset: usize) -> u16;
}

/// Register offsets from the window base (modern names; legacy-only registers say so).
pub mod reg {
    /// 0x74726976, "virt" in little-endian.
    pub const MAGIC: usize = 0x000;
    /// 1 = legacy, 2 = modern.
    pub const VERSION: usize = 0x004;
    /// Device type; 0 = empty slot, 2 = block.
    pub const DEVICE_ID: usize = 0x008;
    /// 32 feature bits selected by `DEVICE_FEATURES_SEL`.
    pub const DEVICE_FEATURES: usize = 0x010;
    /// Selects which 32 bits `DEVICE_FEATURES` shows.
    pub const DEVICE_FEATURES_SEL: usize = 0x014;
    /// 32 accepted feature bits selected by `DRIVER_FEATURES_SEL`.
    pub const DRIVER_FEATURES: usize = 0x020;
    /// Selects which 32 bits `DRIVER_FEATURES` sets.
    pub const DRIVER_FEATURES_SEL: usize = 0x024;
    /// Legacy only: the guest page size used by `QUEUE_PFN`.
    pub const GUEST_PAGE_SIZE: usize = 0x028;
    /// Selects the queue the queue registers refer to.
    pub const QUEUE_SEL: usize = 0x030;
    /// Largest size the selected queue accepts; 0 = no such queue.
    pub const QUEUE_NUM_MAX: usize = 0x034;
    /// Size the driver chose for the selected queue.
    pub const QUEUE_NUM: usize = 0x038;
    /// Legacy only: alignment of the used ring in bytes.
    pub const QUEUE_ALIGN: usize = 0x03c;
    /// Legacy only: page number of the ring; 0 = queue inactive.
    pub const QUEUE_PFN: usize = 0x040;
    /// Modern only: 1 = the device may use the selected queue.
    pub const QUEUE_READY: usize = 0x044;
    /// Write a queue index: new buffers are available.
    pub const QUEUE_NOTIFY: usize = 0x050;
    /// Why the interrupt line is asserted (`INT_*` bits).
    pub const INTERRUPT_STATUS: usize = 0x060;
    /// Write the `INT_*` bits that were handled.
    pub const INTERRUPT_ACK: usize = 0x064;
    /// Device status (`status::*` bits); writing 0 resets the device.
    pub const STATUS: usize = 0x070;
    /// Modern only: descriptor table address, low and high halves.
    pub const QUEUE_DESC_LOW: usize = 0x080;
    /// See `QUEUE_DESC_LOW`.
    pub const QUEUE_DESC_HIGH: usize = 0x084;
    /// Modern only: available ring (driver area) address.
    pub const QUEUE_DRIVER_LOW: usize = 0x090;
    /// See `QUEUE_DRIVER_LOW`.
    pub const QUEUE_DRIVER_HIGH: usize = 0x094;
    /// Modern only: used ring (device area) address.
    pub const QUEUE_DEVICE_LOW: usize = 0x0a0;
    /// See `QUEUE_DEVICE_LOW`.
    pub const QUEUE_DEVICE_HIGH: usize = 0x0a4;
    /// Modern with VIRTIO_F_RING_RESET: write 1 to reset the selected queue; reads 1 while
    /// the reset is in progress.
    pub const QUEUE_RESET: usize = 0x0c0;
    /// Modern only: changes whenever the configuration space may have changed.
    pub const CONFIG_GENERATION: usize = 0x0fc;
    /// Start of the device-specific configuration space.
    pub const CONFIG: usize = 0x100;
}

/// Device status bits (spec 2.1).
pub mod status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready: queues are live.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is complete (modern only).
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// The magic value at offset 0.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// InterruptStatus bit: the device used buffers in at least one queue.
pub const INT_USED_BUFFER: u32 = 1;
/// InterruptStatus bit: the configuration space changed.
pub const INT_CONFIG_CHANGE: u32 = 2;
