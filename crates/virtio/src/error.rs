//! The driver's error type: every failure a caller can see, each printable.

use core::fmt;

use crate::request::Operation;

/// How a device broke the split-ring protocol (spec 2.7.8 / 2.7.14). Any of these marks the
/// queue broken: the driver stops trusting the ring rather than index out of bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFault {
    /// A used-ring entry named a descriptor index at or past the queue size.
    UsedIdOutOfRange {
        /// The id the device wrote.
        id: u32,
        /// The queue size.
        size: u16,
    },
    /// A used-ring entry named a descriptor that is not the head of a chain in flight.
    UsedIdNotInFlight {
        /// The id the device wrote.
        id: u32,
    },
    /// `used.idx` advanced by more entries than there are chains in flight.
    UsedIndexJump {
        /// How far `used.idx` moved past the last entry the driver consumed.
        advanced: u16,
        /// Chains in flight at that moment.
        in_flight: u16,
    },
}

/// Everything that can go wrong, from probing to completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The MMIO window does not start with the virtio magic value.
    BadMagic(u32),
    /// The device reports a transport version other than 1 (legacy) or 2 (modern).
    UnsupportedVersion(u32),
    /// DeviceID 0: a placeholder slot with no device behind it (skip it silently).
    NoDevice,
    /// The device is not a block device (DeviceID 2).
    WrongDeviceType(u32),
    /// A modern (version 2) device that does not offer VIRTIO_F_VERSION_1.
    MissingVersion1,
    /// The device cleared FEATURES_OK: it refused the feature set the driver chose.
    FeaturesRejected,
    /// QueueNumMax is 0 or too small to carry a block request (needs at least 4 descriptors).
    QueueUnavailable {
        /// The queue index.
        queue: u16,
        /// What QueueNumMax read.
        max: u32,
    },
    /// The queue was already live (QueueReady or QueuePFN non-zero) before the driver set it up.
    QueueAlreadyInUse(u16),
    /// The ring lies above what the legacy 32-bit page-frame register can address.
    AddressTooHigh,
    /// The device completed the request with VIRTIO_BLK_S_IOERR.
    IoError,
    /// The device completed the request with VIRTIO_BLK_S_UNSUPP.
    Unsupported,
    /// The device wrote a status byte the specification does not define.
    UnknownStatus(u8),
    /// The device returned the request without writing its status byte.
    StatusNotWritten,
    /// The request reaches past the device's capacity, or its sector arithmetic overflows.
    OutOfRange,
    /// A write, discard or write-zeroes on a read-only device.
    ReadOnly,
    /// The operation needs a feature the device did not offer.
    NotSupportedByDevice(Operation),
    /// The device broke the ring protocol; the queue is stopped until [`reset`] is called.
    ///
    /// [`reset`]: crate::BlockDevice::reset
    DeviceBroken(RingFault),
    /// The software request table is full: wait for completions and submit again.
    QueueFull,
    /// A resize is already running on this queue.
    Busy,
    /// A parameter is malformed; the text says which.
    InvalidArgument(&'static str),
    /// DMA or heap memory could not be allocated.
    NoMemory,
    /// A bounded wait expired; the text says what was awaited.
    Timeout(&'static str),
}

impl fmt::Display for RingFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UsedIdOutOfRange { id, size } => {
                write!(f, "used ring id {id} is outside the queue of {size}")
            }
            Self::UsedIdNotInFlight { id } => {
                write!(f, "used ring id {id} is not a request in flight")
            }
            Self::UsedIndexJump {
                advanced,
                in_flight,
            } => write!(
                f,
                "used index advanced by {advanced} with only {in_flight} requests in flight"
            ),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic(value) => write!(f, "not a virtio-mmio device (magic {value:#010x})"),
            Self::UnsupportedVersion(version) => {
                write!(f, "unsupported virtio-mmio version {version}")
            }
            Self::NoDevice => f.write_str("no device in this virtio-mmio slot"),
            Self::WrongDeviceType(id) => write!(f, "device type {id} is not a block device"),
            Self::MissingVersion1 => f.write_str("modern device does not offer VIRTIO_F_VERSION_1"),
            Self::FeaturesRejected => f.write_str("device rejected the negotiated features"),
            Self::QueueUnavailable { queue, max } => {
                write!(f, "queue {queue} unusable (QueueNumMax {max})")
            }
            Self::QueueAlreadyInUse(queue) => write!(f, "queue {queue} is already in use"),
            Self::AddressTooHigh => f.write_str("ring address too high for the legacy transport"),
            Self::IoError => f.write_str("device reported an I/O error"),
            Self::Unsupported => f.write_str("device does not support this request"),
            Self::UnknownStatus(status) => write!(f, "device wrote unknown status {status}"),
            Self::StatusNotWritten => f.write_str("device returned the request without a status"),
            Self::OutOfRange => f.write_str("request reaches past the end of the device"),
            Self::ReadOnly => f.write_str("device is read-only"),
            Self::NotSupportedByDevice(op) => write!(f, "device does not offer {op}"),
            Self::DeviceBroken(fault) => write!(f, "device broke the ring protocol: {fault}"),
            Self::QueueFull => f.write_str("request table is full"),
            Self::Busy => f.write_str("a queue resize is already running"),
            Self::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Self::NoMemory => f.write_str("out of memory"),
            Self::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

impl core::error::Error for Error {}
