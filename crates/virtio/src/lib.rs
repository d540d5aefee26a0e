//! VirtIO-mmio block driver core, architecture-neutral and host-testable.
//!
//! * [`probe`] identifies a virtio-mmio window and picks the [`LegacyTransport`] (version 1)
//!   or [`ModernTransport`] (version 2).
//! * [`BlockDevice`] initialises the device (spec 3.1.1), runs a split virtqueue with
//!   indirect descriptors and event-index suppression when offered, and exposes an
//!   asynchronous submit / [`kick`](BlockDevice::kick) / [`poll`](BlockDevice::poll) or
//!   [`handle_interrupt`](BlockDevice::handle_interrupt) API plus blocking conveniences.
//! * [`BlockDevice::resize`] changes the queue size with requests in flight, by queue reset
//!   when the device really supports it and by a drained full reset otherwise.
//! * [`ResizePolicy`] decides when to grow or shrink.
//!
//! The kernel supplies [`Hal`] (DMA memory, address translation), [`RegisterAccess`]
//! (the MMIO window) and [`Clock`] (bounded waits). With the `fake` feature (and in this
//! crate's tests) [`fake`] provides a simulated device and host implementations of all three.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

#[cfg(target_endian = "big")]
compile_error!("the virtio driver assumes a little-endian CPU (legacy config is guest-endian)");

mod block;
mod error;
mod features;
mod hal;
pub mod mmio;
mod policy;
mod queue;
mod request;
mod transport;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

#[cfg(test)]
mod tests;

pub use block::{
    BlockDevice, Completion, DeviceInfo, DriverConfig, InterruptReport, MIN_QUEUE_SIZE,
    QueueSample, RangeLimits, Rejected, ResizePath, ResizeStatus, Stats, Topology,
};
pub use error::{Error, RingFault};
pub use features::Features;
pub use hal::{Clock, Hal, PAGE_SIZE, PhysAddr};
pub use mmio::RegisterAccess;
pub use policy::ResizePolicy;
pub use queue::RingLayout;
pub use request::{DEVICE_ID_LEN, MAX_SEGMENTS, Operation, RequestId, SECTOR_SIZE, Segment};
pub use transport::{
    LegacyTransport, MmioTransport, ModernTransport, Transport, TransportVersion, probe,
};
