//! Feature choice, queue-size choice and the block configuration space (spec 5.2.4).

use crate::error::Error;
use crate::features::Features;
use crate::transport::{Transport, TransportVersion};

use super::DriverConfig;

/// The smallest queue that carries a block request (header, one data descriptor, status,
/// rounded to a power of two).
pub const MIN_QUEUE_SIZE: u16 = 4;
/// The largest split-ring size (spec 2.7).
const MAX_QUEUE_SIZE: u32 = 32768;
/// Attempts at reading the configuration space between two equal ConfigGeneration values.
const CONFIG_READ_ATTEMPTS: usize = 16;

/// Optimal-I/O hints (VIRTIO_BLK_F_TOPOLOGY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Topology {
    /// log2 of logical blocks per physical block.
    pub physical_block_exp: u8,
    /// Offset of the first aligned logical block.
    pub alignment_offset: u8,
    /// Suggested minimum I/O size, in blocks.
    pub min_io_size: u16,
    /// Suggested maximum I/O size, in blocks.
    pub opt_io_size: u32,
}

/// Limits of discard or write-zeroes requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeLimits {
    /// Most sectors in one request (0 read from the device means no stated limit).
    pub max_sectors: u32,
    /// Most segments in one request.
    pub max_segments: u32,
}

/// What the driver learned about the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Which transport the device speaks.
    pub transport: TransportVersion,
    /// Features in use (the intersection of offer and driver support).
    pub features: Features,
    /// Size in 512-byte sectors; changes on a configuration-change interrupt.
    pub capacity: u64,
    /// VIRTIO_BLK_F_RO: writes are refused.
    pub read_only: bool,
    /// Optimal block size in bytes (512 when not offered).
    pub block_size: u32,
    /// Most bytes in one segment, when the device states it.
    pub size_max: Option<u32>,
    /// Most segments in one request, when the device states it.
    pub seg_max: Option<u32>,
    /// Alignment hints.
    pub topology: Option<Topology>,
    /// Cache mode (VIRTIO_BLK_F_CONFIG_WCE): true = writeback.
    pub writeback: Option<bool>,
    /// Discard limits, when discard is supported.
    pub discard: Option<RangeLimits>,
    /// Write-zeroes limits, when supported.
    pub write_zeroes: Option<RangeLimits>,
    /// Whether write-zeroes may deallocate (unmap) the range.
    pub write_zeroes_may_unmap: bool,
    /// QueueNumMax of the request queue.
    pub queue_num_max: u32,
}

/// The features the driver accepts from `offered` (spec 3.1.1 step 4): what it can use,
/// limited by the transport and the configuration; never packed rings or multiqueue.
pub(super) fn choose_features(
    offered: Features,
    version: TransportVersion,
    config: &DriverConfig,
) -> Result<Features, Error> {
    let mut wanted = Features::BLOCK_DRIVER;
    if version == TransportVersion::Legacy {
        wanted = wanted.without(Features::VERSION_1 | Features::RING_RESET);
    } else if !offered.contains(Features::VERSION_1) {
        return Err(Error::MissingVersion1);
    }
    if !config.use_indirect {
        wanted = wanted.without(Features::INDIRECT_DESC);
    }
    if !config.use_event_idx {
        wanted = wanted.without(Features::EVENT_IDX);
    }
    if !config.use_ring_reset {
        wanted = wanted.without(Features::RING_RESET);
    }
    Ok(offered & wanted)
}

/// The ring size to use: the largest power of two within both the wish and QueueNumMax.
pub(super) fn choose_queue_size(queue: u16, wanted: u16, max: u32) -> Result<u16, Error> {
    let cap = u32::from(wanted).min(max).min(MAX_QUEUE_SIZE);
    if cap < u32::from(MIN_QUEUE_SIZE) {
        return Err(Error::QueueUnavailable { queue, max });
    }
    // Largest power of two <= cap (cap >= 4, so this fits in u16).
    Ok(1u16 << (31 - cap.leading_zeros()))
}

/// Reads the block configuration, retrying until ConfigGeneration is the same before and
/// after (spec 4.2.2.2; legacy devices always read 0 and so pass at once).
pub(super) fn read_config<T: Transport>(
    transport: &mut T,
    features: Features,
    queue_num_max: u32,
) -> Result<DeviceInfo, Error> {
    for _ in 0..CONFIG_READ_ATTEMPTS {
        let before = transport.config_generation();
        let info = read_config_once(transport, features, queue_num_max);
        if transport.config_generation() == before {
            return Ok(info);
        }
    }
    Err(Error::Timeout("a stable configuration space"))
}

fn read_config_once<T: Transport>(
    transport: &T,
    features: Features,
    queue_num_max: u32,
) -> DeviceInfo {
    let has = |feature| features.contains(feature);
    let capacity =
        u64::from(transport.config_read32(0)) | u64::from(transport.config_read32(4)) << 32;
    let range_limits = |sectors_offset, segments_offset| RangeLimits {
        max_sectors: transport.config_read32(sectors_offset),
        max_segments: transport.config_read32(segments_offset),
    };
    DeviceInfo {
        transport: transport.version(),
        features,
        capacity,
        read_only: has(Features::BLK_RO),
        block_size: if has(Features::BLK_BLK_SIZE) {
            transport.config_read32(20)
        } else {
            512
        },
        size_max: has(Features::BLK_SIZE_MAX).then(|| transport.config_read32(8)),
        seg_max: has(Features::BLK_SEG_MAX).then(|| transport.config_read32(12)),
        topology: has(Features::BLK_TOPOLOGY).then(|| Topology {
            physical_block_exp: transport.config_read8(24),
            alignment_offset: transport.config_read8(25),
            min_io_size: transport.config_read16(26),
            opt_io_size: transport.config_read32(28),
        }),
        writeback: has(Features::BLK_CONFIG_WCE).then(|| transport.config_read8(32) != 0),
        discard: has(Features::BLK_DISCARD).then(|| range_limits(36, 40)),
        write_zeroes: has(Features::BLK_WRITE_ZEROES).then(|| range_limits(48, 52)),
        write_zeroes_may_unmap: has(Features::BLK_WRITE_ZEROES) && transport.config_read8(56) != 0,
        queue_num_max,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_size_is_largest_power_of_two_within_limits() {
        assert_eq!(choose_queue_size(0, 256, 1024), Ok(256));
        assert_eq!(choose_queue_size(0, 256, 100), Ok(64));
        assert_eq!(choose_queue_size(0, 1024, 1000), Ok(512));
        assert_eq!(choose_queue_size(0, 8, 5), Ok(4));
        assert_eq!(
            choose_queue_size(0, 256, 3),
            Err(Error::QueueUnavailable { queue: 0, max: 3 })
        );
        assert_eq!(
            choose_queue_size(0, 256, 0),
            Err(Error::QueueUnavailable { queue: 0, max: 0 })
        );
        assert_eq!(choose_queue_size(0, u16::MAX, u32::MAX), Ok(32768));
    }

    #[test]
    fn features_exclude_packed_mq_and_transport_bits_on_legacy() {
        let offered = Features(u64::MAX);
        let config = DriverConfig::default();
        let modern = choose_features(offered, TransportVersion::Modern, &config).unwrap();
        assert!(!modern.contains(Features::RING_PACKED));
        assert!(!modern.contains(Features::BLK_MQ));
        assert!(modern.contains(Features::VERSION_1 | Features::RING_RESET));
        let legacy = choose_features(offered, TransportVersion::Legacy, &config).unwrap();
        assert!(!legacy.contains(Features::VERSION_1));
        assert!(!legacy.contains(Features::RING_RESET));
        assert!(legacy.contains(Features::INDIRECT_DESC | Features::EVENT_IDX));
        let no_version = Features(u64::MAX).without(Features::VERSION_1);
        assert_eq!(
            choose_features(no_version, TransportVersion::Modern, &config),
            Err(Error::MissingVersion1)
        );
    }
}
