//! Block requests as the driver tracks them, and how one request is cut into virtio requests
//! that respect the device's segment limits.

use alloc::boxed::Box;
use core::fmt;
use core::ptr::NonNull;

use crate::error::Error;
use crate::hal::PhysAddr;

/// Bytes per sector in the virtio-blk protocol, whatever the device's block size.
pub const SECTOR_SIZE: u32 = 512;
/// Most caller segments one request may carry; more are refused with `InvalidArgument`.
pub const MAX_SEGMENTS: usize = 32;
/// Most data descriptors one virtio request uses, direct or in an indirect table. Requests
/// needing more (after `size_max` splitting) are cut into several virtio requests.
pub(crate) const MAX_DATA_DESCRIPTORS: usize = MAX_SEGMENTS;
/// Bytes of the answer to VIRTIO_BLK_T_GET_ID.
pub const DEVICE_ID_LEN: usize = 20;

/// What a request asks the device to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// VIRTIO_BLK_T_IN.
    Read,
    /// VIRTIO_BLK_T_OUT.
    Write,
    /// VIRTIO_BLK_T_FLUSH (needs VIRTIO_BLK_F_FLUSH).
    Flush,
    /// VIRTIO_BLK_T_GET_ID: the device's 20-byte serial.
    GetId,
    /// VIRTIO_BLK_T_DISCARD (needs VIRTIO_BLK_F_DISCARD).
    Discard,
    /// VIRTIO_BLK_T_WRITE_ZEROES (needs VIRTIO_BLK_F_WRITE_ZEROES).
    WriteZeroes,
}

impl Operation {
    /// The request type field of the virtio-blk header.
    pub(crate) const fn request_type(self) -> u32 {
        match self {
            Self::Read => 0,
            Self::Write => 1,
            Self::Flush => 4,
            Self::GetId => 8,
            Self::Discard => 11,
            Self::WriteZeroes => 13,
        }
    }

    /// Whether the operation changes the disk (refused on read-only devices).
    pub(crate) const fn modifies(self) -> bool {
        matches!(self, Self::Write | Self::Discard | Self::WriteZeroes)
    }

    /// Whether the operation moves caller data (its range is in bytes over segments);
    /// discard and write-zeroes ranges are in sectors, flush and get-id are a single unit.
    pub(crate) const fn carries_data(self) -> bool {
        matches!(self, Self::Read | Self::Write)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Flush => "flush",
            Self::GetId => "get-id",
            Self::Discard => "discard",
            Self::WriteZeroes => "write-zeroes",
        })
    }
}

/// A piece of caller memory, by physical address, that a request reads into or writes from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Where the device finds the bytes.
    pub phys: PhysAddr,
    /// How many bytes (not zero).
    pub len: u32,
}

/// Handle of a submitted request, unique among requests the driver has not yet completed
/// (and unlikely to repeat soon after: it carries a generation count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId(pub(crate) u64);

impl RequestId {
    pub(crate) fn new(index: u32, generation: u32) -> Self {
        Self(u64::from(generation) << 32 | u64::from(index))
    }

    pub(crate) fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
}

/// The device limits that decide how requests are cut.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Most data descriptors in one virtio request.
    pub(crate) max_data_descriptors: usize,
    /// Most bytes in one data descriptor.
    pub(crate) max_descriptor_bytes: u32,
}

/// The data-descriptor pieces of the byte range `[start, end)` of `segments`, each at most
/// `max_bytes` long, in order.
pub(crate) fn pieces(
    segments: &[Segment],
    start: u32,
    end: u32,
    max_bytes: u32,
) -> impl Iterator<Item = Segment> + '_ {
    let mut offset = 0u32;
    segments.iter().flat_map(move |segment| {
        let seg_start = offset;
        offset += segment.len;
        let from = start.max(seg_start);
        let to = end.min(offset);
        let mut pos = from;
        core::iter::from_fn(move || {
            if pos >= to {
                return None;
            }
            let len = (to - pos).min(max_bytes);
            let piece = Segment {
                phys: segment.phys.add(u64::from(pos - seg_start)),
                len,
            };
            pos += len;
            Some(piece)
        })
    })
}

/// Where the next virtio request covering bytes from `start` (towards `end`) must stop: as
/// far as `limits` allow, cut back to a whole number of sectors.
///
/// Errors with `InvalidArgument` when no sector boundary is reachable within the limits (the
/// segments are too fragmented for this device).
pub(crate) fn cut_data(
    segments: &[Segment],
    start: u32,
    end: u32,
    limits: Limits,
) -> Result<u32, Error> {
    let mut pos = start;
    let mut best = None;
    for (count, piece) in pieces(segments, start, end, limits.max_descriptor_bytes).enumerate() {
        if count == limits.max_data_descriptors {
            break;
        }
        pos += piece.len;
        if (pos - start).is_multiple_of(SECTOR_SIZE) {
            best = Some(pos);
        }
    }
    best.ok_or(Error::InvalidArgument(
        "segments cannot be cut on sector boundaries within the device's segment limits",
    ))
}

/// Number of data descriptors `[start, end)` needs.
pub(crate) fn piece_count(segments: &[Segment], start: u32, end: u32, max_bytes: u32) -> usize {
    pieces(segments, start, end, max_bytes).count()
}

/// A caller's buffer while the device may write into it: held as a raw pointer so that no
/// Rust reference to the bytes exists during the DMA.
pub(crate) struct OwnedBuffer(NonNull<[u8]>);

// SAFETY: the buffer is exclusively owned (it came from a `Box`), like the `Box` itself.
unsafe impl Send for OwnedBuffer {}

impl OwnedBuffer {
    pub(crate) fn new(buffer: Box<[u8]>) -> Self {
        Self(NonNull::from(Box::leak(buffer)))
    }

    pub(crate) fn start(&self) -> NonNull<u8> {
        self.0.cast()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Gives the buffer back once the device is done with it.
    pub(crate) fn into_box(self) -> Box<[u8]> {
        let ptr = self.0;
        core::mem::forget(self);
        // SAFETY: `ptr` came from `Box::leak` in `new` and ownership was never given away.
        unsafe { Box::from_raw(ptr.as_ptr()) }
    }

    /// Never frees the buffer: the device may still write to it.
    pub(crate) fn leak(self) {
        core::mem::forget(self);
    }
}

impl Drop for OwnedBuffer {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from `Box::leak` and is freed exactly once, here.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// Where a request is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RecordState {
    /// Slot unused.
    Free,
    /// Submitted, not yet finished.
    Active,
    /// Finished; waiting to be reported.
    Finished,
}

/// Who learns about a request's completion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A caller, through a completion.
    Caller,
    /// A caller who stopped waiting (blocking call timed out): freed silently.
    Abandoned,
    /// The driver itself (the flush before a full reset).
    Driver,
    /// Nobody, ever: the request reads into or writes from caller memory and the device, which
    /// could not be stopped, may still access it. Reporting it would let the caller reuse that
    /// memory (`submit_segments`' contract), so its record is never reported nor reused.
    Stranded,
}

/// One caller request and its progress.
pub(crate) struct Record {
    pub(crate) state: RecordState,
    pub(crate) owner: Owner,
    pub(crate) generation: u32,
    pub(crate) token: u64,
    pub(crate) op: Operation,
    pub(crate) sector: u64,
    /// Caller segments (data operations only).
    pub(crate) segments: [Segment; MAX_SEGMENTS],
    pub(crate) segment_count: usize,
    /// Bytes (data), sectors (discard, write-zeroes) or 1 (flush, get-id).
    pub(crate) total: u32,
    /// How far virtio requests have been cut from `total`.
    pub(crate) cursor: u32,
    /// Virtio requests cut but not completed (in the ring or waiting to be resubmitted).
    pub(crate) outstanding: u32,
    pub(crate) error: Option<Error>,
    /// Write-zeroes may deallocate.
    pub(crate) unmap: bool,
    /// The owned buffer of the safe API, handed back on completion.
    pub(crate) buffer: Option<OwnedBuffer>,
    pub(crate) device_id: Option<[u8; DEVICE_ID_LEN]>,
}

impl Record {
    pub(crate) const fn empty() -> Self {
        Self {
            state: RecordState::Free,
            owner: Owner::Caller,
            generation: 0,
            token: 0,
            op: Operation::Flush,
            sector: 0,
            segments: [Segment {
                phys: PhysAddr(0),
                len: 0,
            }; MAX_SEGMENTS],
            segment_count: 0,
            total: 0,
            cursor: 0,
            outstanding: 0,
            error: None,
            unmap: false,
            buffer: None,
            device_id: None,
        }
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments[..self.segment_count]
    }

    /// Sector where the part of the request starting at `offset` begins.
    pub(crate) fn sector_at(&self, offset: u32) -> u64 {
        if self.op.carries_data() {
            self.sector + u64::from(offset / SECTOR_SIZE)
        } else {
            self.sector + u64::from(offset)
        }
    }

    /// Everything has been cut and completed.
    pub(crate) fn is_done(&self) -> bool {
        self.cursor == self.total && self.outstanding == 0
    }
}

/// A piece of a request on its way to the device: `[start, end)` of the record's range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Unit {
    pub(crate) record: u32,
    pub(crate) start: u32,
    pub(crate) end: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            phys: PhysAddr(addr),
            len,
        }
    }

    #[test]
    fn pieces_split_by_max_bytes_and_range() {
        let segs = [seg(0x1000, 1024), seg(0x9000, 512)];
        let got: Vec<_> = pieces(&segs, 256, 1536, 512).collect();
        assert_eq!(got, [seg(0x1100, 512), seg(0x1300, 256), seg(0x9000, 512)]);
    }

    #[test]
    fn cut_respects_descriptor_limit_and_sector_boundaries() {
        let segs = [
            seg(0x1000, 100),
            seg(0x2000, 412),
            seg(0x3000, 512),
            seg(0x4000, 512),
        ];
        let limits = Limits {
            max_data_descriptors: 3,
            max_descriptor_bytes: u32::MAX,
        };
        // Three pieces reach 1024 bytes, a sector boundary.
        assert_eq!(cut_data(&segs, 0, 1536, limits), Ok(1024));
        assert_eq!(cut_data(&segs, 1024, 1536, limits), Ok(1536));
        let two = Limits {
            max_data_descriptors: 2,
            ..limits
        };
        assert_eq!(cut_data(&segs, 0, 1536, two), Ok(512));
        let one = Limits {
            max_data_descriptors: 1,
            ..limits
        };
        assert!(matches!(
            cut_data(&segs, 0, 1536, one),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn cut_splits_one_big_segment_by_size_max() {
        let segs = [seg(0x10000, 8192)];
        let limits = Limits {
            max_data_descriptors: 2,
            max_descriptor_bytes: 1536,
        };
        assert_eq!(cut_data(&segs, 0, 8192, limits), Ok(3072));
        assert_eq!(piece_count(&segs, 0, 3072, 1536), 2);
    }

    #[test]
    fn request_id_keeps_index_and_generation() {
        let id = RequestId::new(7, 3);
        assert_eq!(id.index(), 7);
        assert_ne!(id, RequestId::new(7, 4));
    }
}
