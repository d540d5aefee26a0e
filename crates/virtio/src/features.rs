//! Feature bits (spec 6 and 5.2.3) and the set the block driver is willing to accept.

use core::ops::{BitAnd, BitOr};

/// A set of virtio feature bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Features(pub u64);

impl Features {
    /// Block: `size_max` limits the bytes of one segment.
    pub const BLK_SIZE_MAX: Self = Self(1 << 1);
    /// Block: `seg_max` limits the segments of one request.
    pub const BLK_SEG_MAX: Self = Self(1 << 2);
    /// Block: the device is read-only.
    pub const BLK_RO: Self = Self(1 << 5);
    /// Block: `blk_size` gives the optimal block size.
    pub const BLK_BLK_SIZE: Self = Self(1 << 6);
    /// Block: VIRTIO_BLK_T_FLUSH is supported.
    pub const BLK_FLUSH: Self = Self(1 << 9);
    /// Block: `topology` gives alignment hints.
    pub const BLK_TOPOLOGY: Self = Self(1 << 10);
    /// Block: `writeback` shows the cache mode.
    pub const BLK_CONFIG_WCE: Self = Self(1 << 11);
    /// Block: several request queues (not implemented, never accepted).
    pub const BLK_MQ: Self = Self(1 << 12);
    /// Block: VIRTIO_BLK_T_DISCARD is supported.
    pub const BLK_DISCARD: Self = Self(1 << 13);
    /// Block: VIRTIO_BLK_T_WRITE_ZEROES is supported.
    pub const BLK_WRITE_ZEROES: Self = Self(1 << 14);
    /// Descriptors may point at indirect descriptor tables.
    pub const INDIRECT_DESC: Self = Self(1 << 28);
    /// `used_event` / `avail_event` notification suppression.
    pub const EVENT_IDX: Self = Self(1 << 29);
    /// The device follows virtio 1.x (required of modern devices).
    pub const VERSION_1: Self = Self(1 << 32);
    /// Packed rings (not implemented, never accepted).
    pub const RING_PACKED: Self = Self(1 << 34);
    /// Single queues can be reset (QueueReset).
    pub const RING_RESET: Self = Self(1 << 40);

    /// Every feature the block driver knows how to use. Transport-only bits (VERSION_1,
    /// RING_RESET) are further masked per transport.
    pub const BLOCK_DRIVER: Self = Self(
        Self::BLK_SIZE_MAX.0
            | Self::BLK_SEG_MAX.0
            | Self::BLK_RO.0
            | Self::BLK_BLK_SIZE.0
            | Self::BLK_FLUSH.0
            | Self::BLK_TOPOLOGY.0
            | Self::BLK_CONFIG_WCE.0
            | Self::BLK_DISCARD.0
            | Self::BLK_WRITE_ZEROES.0
            | Self::INDIRECT_DESC.0
            | Self::EVENT_IDX.0
            | Self::VERSION_1.0
            | Self::RING_RESET.0,
    );

    /// True when every bit of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

impl BitAnd for Features {
    type Output = Self;
    fn bitand(self, rhs: Self) -> Self {
        Self(self.0 & rhs.0)
    }
}

impl BitOr for Features {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}
