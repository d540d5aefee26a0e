//! The virtio-blk driver (spec 5.2) over one split virtqueue.
//!
//! Life of a request: `submit_*` checks it and records it in a preallocated table; `dispatch`
//! cuts it into virtio requests ("units") that fit the device's segment limits and places
//! them in the ring, one per free head descriptor (whose preallocated DMA slot holds the
//! header, status byte and indirect table); `kick` notifies the device once per batch;
//! `reap` takes used entries and settles units; a request whose units are all done is
//! reported once by `poll`/`handle_interrupt`. Units the device did not complete before a
//! queue or device reset go to a retry queue and are placed again: block reads, writes,
//! flushes and discards are idempotent, and the caller only ever sees one completion.

mod info;
mod resize;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

pub use info::{DeviceInfo, MIN_QUEUE_SIZE, RangeLimits, Topology};
pub use resize::{ResizePath, ResizeStatus};

use crate::error::Error;
use crate::features::Features;
use crate::hal::{Clock, Dma, Hal, PAGE_SIZE, wait_until};
use crate::mmio::{INT_CONFIG_CHANGE, INT_USED_BUFFER, status};
use crate::queue::{
    DESC_F_INDIRECT, DESC_F_WRITE, DESC_SIZE, Descriptor, SplitQueue, write_indirect_table,
};
use crate::request::{
    DEVICE_ID_LEN, Limits, MAX_DATA_DESCRIPTORS, MAX_SEGMENTS, Operation, OwnedBuffer, Owner,
    Record, RecordState, RequestId, SECTOR_SIZE, Segment, Unit, cut_data, piece_count, pieces,
};
use crate::transport::{Transport, TransportVersion};

use resize::{ResizeJob, RingResetSupport};

/// DeviceID of a block device.
const BLOCK_DEVICE_TYPE: u32 = 2;
/// The request queue (multiqueue is not negotiated).
const REQUEST_QUEUE: u16 = 0;

/// Status byte values (spec 5.2.6).
const BLK_S_OK: u8 = 0;
const BLK_S_IOERR: u8 = 1;
const BLK_S_UNSUPP: u8 = 2;
/// What the driver writes into the status byte before submitting: no valid status has this
/// value, so finding it on completion means the device never wrote one.
const STATUS_UNWRITTEN: u8 = 0xff;

/// Layout of a request slot (one per head descriptor) in DMA memory.
const SLOT_HEADER: usize = 0;
const SLOT_STATUS: usize = 16;
/// `struct virtio_blk_discard_write_zeroes` of a discard / write-zeroes request.
const SLOT_RANGE: usize = 32;
const SLOT_DEVICE_ID: usize = 48;
/// End of the fixed part; also the start of the indirect table, 16-aligned.
const SLOT_FIXED_BYTES: usize = 80;
/// Header, data descriptors, status.
const MAX_CHAIN: usize = MAX_DATA_DESCRIPTORS + 2;

/// Tunables of the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// Wished queue size; the driver uses the largest power of two within this and
    /// QueueNumMax (at least [`MIN_QUEUE_SIZE`]).
    pub queue_size: u16,
    /// Capacity of the request table: requests submitted and not yet reported. Fixed at
    /// initialisation so the hot path never allocates.
    pub max_requests: usize,
    /// Accept VIRTIO_F_INDIRECT_DESC when offered (one ring slot per request).
    pub use_indirect: bool,
    /// Accept VIRTIO_F_EVENT_IDX when offered.
    pub use_event_idx: bool,
    /// Accept VIRTIO_F_RING_RESET when offered (resize path A).
    pub use_ring_reset: bool,
    /// Longest wait for a device reset or queue reset to complete.
    pub reset_timeout_ns: u64,
    /// Longest wait for in-flight requests to drain before a full-reset resize (and for the
    /// flush after it); requests still in flight then are resubmitted after the reset.
    pub drain_timeout_ns: u64,
    /// Longest wait of the blocking convenience calls.
    pub request_timeout_ns: u64,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            queue_size: 256,
            max_requests: 512,
            use_indirect: true,
            use_event_idx: true,
            use_ring_reset: true,
            reset_timeout_ns: 100_000_000,
            drain_timeout_ns: 1_000_000_000,
            request_timeout_ns: 5_000_000_000,
        }
    }
}

/// Counters for benchmarks (`notifies / requests`, `interrupts / requests`) and the resize
/// policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests accepted by a `submit_*` call.
    pub requests: u64,
    /// Requests completed (reported or waiting to be).
    pub completions: u64,
    /// Virtio requests placed in the ring (a request cut in pieces counts each piece; a
    /// resubmission counts again).
    pub virtio_requests: u64,
    /// Virtio requests put back for resubmission after a queue or device reset.
    pub resubmissions: u64,
    /// QueueNotify writes.
    pub notifies: u64,
    /// Interrupts with a used-buffer or configuration-change cause.
    pub interrupts: u64,
    /// Interrupts with no cause this driver handles.
    pub spurious_interrupts: u64,
    /// Used-ring entries consumed.
    pub used_entries: u64,
    /// Submissions that found the ring full and had to wait in software.
    pub ring_full: u64,
    /// Configuration-change interrupts.
    pub config_changes: u64,
    /// Full device resets (resize path B, DEVICE_NEEDS_RESET, `reset`).
    pub device_resets: u64,
    /// Resizes done by a queue reset (path A).
    pub resizes_by_queue_reset: u64,
    /// Resizes done by a full device reset (path B).
    pub resizes_by_device_reset: u64,
}

/// A finished request, reported exactly once.
#[derive(Debug)]
pub struct Completion {
    /// What `submit_*` returned.
    pub id: RequestId,
    /// The caller's token.
    pub token: u64,
    /// The operation.
    pub operation: Operation,
    /// Success, or the first error of any of its pieces.
    pub result: Result<(), Error>,
    /// The buffer of a `submit_buffer` request, handed back (read data is in it).
    pub buffer: Option<Box<[u8]>>,
    /// The device serial, for a successful get-id.
    pub device_id: Option<[u8; DEVICE_ID_LEN]>,
}

/// A refused `submit_buffer`: the error and the caller's buffer, untouched.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: Error,
    /// The buffer, given back.
    pub buffer: Box<[u8]>,
}

/// What one `handle_interrupt` call found and did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptReport {
    /// InterruptStatus as read.
    pub status: u32,
    /// The bits written to InterruptACK (only the causes handled; 0 when spurious).
    pub acknowledged: u32,
    /// Completions delivered to the sink.
    pub completions: usize,
    /// The new capacity after a configuration change.
    pub capacity: Option<u64>,
    /// The device asked for a reset (DEVICE_NEEDS_RESET) and was reset; requests in flight
    /// were resubmitted.
    pub device_reset: bool,
}

/// Occupancy figures for the resize policy, since the previous sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSample {
    /// Current queue size.
    pub size: u16,
    /// Most descriptors in use at once since the previous sample.
    pub peak_in_use: u16,
    /// Submissions that found the ring full since the previous sample.
    pub ring_full: u64,
}

/// Where the device is.
enum Phase<H: Hal> {
    Running,
    /// A full-reset resize (path B) is draining; submissions wait in software.
    Resizing(ResizeJob<H>),
    /// The device failed; everything is refused with this error until `reset`.
    Broken(Error),
}

/// A ring with its per-head request slots.
struct Ring<H: Hal> {
    queue: SplitQueue<H>,
    slots: Dma<H>,
    slot_bytes: usize,
    /// The unit each head descriptor carries while in flight.
    in_flight: Vec<Option<Unit>>,
}

impl<H: Hal> Ring<H> {
    fn new(hal: &H, size: u16, event_idx: bool, indirect: bool) -> Result<Self, Error> {
        let slot_bytes = if indirect {
            SLOT_FIXED_BYTES + MAX_CHAIN * DESC_SIZE
        } else {
            SLOT_FIXED_BYTES
        };
        let queue = SplitQueue::new(hal, size, event_idx)?;
        let slots = Dma::new(hal, slot_bytes * usize::from(size))?;
        let mut in_flight = Vec::new();
        in_flight
            .try_reserve_exact(usize::from(size))
            .map_err(|_| Error::NoMemory)?;
        in_flight.resize(usize::from(size), None);
        Ok(Self {
            queue,
            slots,
            slot_bytes,
            in_flight,
        })
    }

    fn size(&self) -> u16 {
        self.queue.size()
    }

    fn slot(&self, head: u16) -> usize {
        usize::from(head) * self.slot_bytes
    }

    /// Never free this ring's memory: the device could not be stopped.
    fn leak(&mut self) {
        self.queue.leak();
        self.slots.leak();
    }
}

/// A virtio-blk device.
///
/// `H` supplies DMA memory, `T` is the transport (usually [`MmioTransport`]) and `C` the
/// clock for bounded waits. Nothing blocks except the `*_blocking` calls and the bounded
/// waits of reset handling, so the kernel can drive it from interrupt context under a lock.
///
/// [`MmioTransport`]: crate::MmioTransport
pub struct BlockDevice<H: Hal, T: Transport, C: Clock> {
    transport: T,
    hal: H,
    clock: C,
    config: DriverConfig,
    info: DeviceInfo,
    ring: Ring<H>,
    records: Vec<Record>,
    free_records: Vec<u32>,
    /// Requests with parts not yet cut, in submission order.
    pending: VecDeque<u32>,
    /// Units to place again (collected from a reset queue), before anything pending.
    retry: VecDeque<Unit>,
    /// Requests finished and not yet reported.
    finished: VecDeque<u32>,
    phase: Phase<H>,
    ring_reset: RingResetSupport,
    stats: Stats,
    peak_in_use: u16,
    ring_full_at_sample: u64,
    /// A write completed since the last completed flush.
    unflushed_writes: bool,
}

impl<H: Hal, T: Transport, C: Clock> BlockDevice<H, T, C> {
    /// Initialises the device (spec 3.1.1): reset, ACKNOWLEDGE, DRIVER, feature negotiation,
    /// FEATURES_OK (modern), configuration, request queue, DRIVER_OK.
    ///
    /// On failure after the handshake started the device is left with FAILED set.
    pub fn new(mut transport: T, hal: H, clock: C, config: DriverConfig) -> Result<Self, Error> {
        if transport.device_type() != BLOCK_DEVICE_TYPE {
            return Err(Error::WrongDeviceType(transport.device_type()));
        }
        if config.queue_size < MIN_QUEUE_SIZE {
            return Err(Error::InvalidArgument("queue size below 4"));
        }
        if config.max_requests == 0 || config.max_requests > u32::MAX as usize {
            return Err(Error::InvalidArgument("max_requests must be 1..=u32::MAX"));
        }
        reset_device(&mut transport, &clock, config.reset_timeout_ns)?;
        let result = Self::bring_up_first(&mut transport, &hal, &config);
        match result {
            Ok((features, info, ring)) => {
                let mut records = Vec::new();
                let mut free_records = Vec::new();
                let mut pending = VecDeque::new();
                let mut finished = VecDeque::new();
                let mut retry = VecDeque::new();
                let reserved = records
                    .try_reserve_exact(config.max_requests)
                    .and(free_records.try_reserve_exact(config.max_requests))
                    .and(pending.try_reserve_exact(config.max_requests))
                    .and(finished.try_reserve_exact(config.max_requests))
                    .and(retry.try_reserve_exact(usize::from(ring.size())));
                if reserved.is_err() {
                    fail_device(&mut transport);
                    return Err(Error::NoMemory);
                }
                records.resize_with(config.max_requests, Record::empty);
                free_records.extend((0..config.max_requests as u32).rev());
                let ring_reset = if features.contains(Features::RING_RESET) {
                    RingResetSupport::Untested
                } else {
                    RingResetSupport::Unavailable
                };
                Ok(Self {
                    transport,
                    hal,
                    clock,
                    config,
                    info,
                    ring,
                    records,
                    free_records,
                    pending,
                    retry,
                    finished,
                    phase: Phase::Running,
                    ring_reset,
                    stats: Stats::default(),
                    peak_in_use: 0,
                    ring_full_at_sample: 0,
                    unflushed_writes: false,
                })
            }
            Err(error) => {
                fail_device(&mut transport);
                Err(error)
            }
        }
    }

    /// Steps 2 to 8 of the first initialisation: returns the negotiated features, the
    /// configuration and the live ring (DRIVER_OK set).
    fn bring_up_first(
        transport: &mut T,
        hal: &H,
        config: &DriverConfig,
    ) -> Result<(Features, DeviceInfo, Ring<H>), Error> {
        let version = transport.version();
        let features = negotiate(transport, |offered| {
            info::choose_features(offered, version, config)
        })?;
        // Spec 4.2.3.2: check the queue is not live before reading QueueNumMax.
        if transport.queue_in_use(REQUEST_QUEUE) {
            return Err(Error::QueueAlreadyInUse(REQUEST_QUEUE));
        }
        let max = transport.max_queue_size(REQUEST_QUEUE);
        let info = info::read_config(transport, features, max)?;
        let size = info::choose_queue_size(REQUEST_QUEUE, config.queue_size, max)?;
        let ring = Ring::new(
            hal,
            size,
            features.contains(Features::EVENT_IDX),
            features.contains(Features::INDIRECT_DESC),
        )?;
        transport.setup_queue(REQUEST_QUEUE, size, ring.queue.phys())?;
        transport.set_status(driver_status(version) | status::DRIVER_OK);
        Ok((features, info, ring))
    }

    /// What the driver knows about the device.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Current size of the request queue.
    pub fn queue_size(&self) -> u16 {
        self.ring.size()
    }

    /// Entries of the request table in use: requests submitted and not yet reported, plus
    /// the driver's own flush during a resize and requests a timed-out blocking call left.
    pub fn outstanding_requests(&self) -> usize {
        self.records.len() - self.free_records.len()
    }

    /// The error that stopped the device (a ring fault, a reset or re-initialisation that
    /// failed), until a successful [`reset`](Self::reset); `None` while it works.
    pub fn failure(&self) -> Option<Error> {
        match self.phase {
            Phase::Broken(error) => Some(error),
            Phase::Running | Phase::Resizing(_) => None,
        }
    }

    /// Whether a full-reset resize is still draining.
    pub fn is_resizing(&self) -> bool {
        matches!(self.phase, Phase::Resizing(_))
    }

    /// Occupancy since the previous call, for [`ResizePolicy`](crate::ResizePolicy).
    pub fn sample_occupancy(&mut self) -> QueueSample {
        let sample = QueueSample {
            size: self.ring.size(),
            peak_in_use: self.peak_in_use,
            ring_full: self.stats.ring_full - self.ring_full_at_sample,
        };
        self.peak_in_use = self.ring.queue.descriptors_in_use();
        self.ring_full_at_sample = self.stats.ring_full;
        sample
    }

    /// Submits a read or write of caller memory given by physical segments (zero-copy).
    /// Nothing is sent until [`kick`](Self::kick). The completion carries `token`.
    ///
    /// Errors (nothing submitted): `InvalidArgument` (not a read/write, no or too many
    /// segments, an empty segment, length not a multiple of 512, segments that cannot be cut
    /// within the device's limits), `OutOfRange`, `ReadOnly`, `QueueFull`, `DeviceBroken`.
    ///
    /// # Safety
    ///
    /// Each segment is memory the device may access as the operation says (a read writes
    /// it, a write reads it) from this call until the request's completion is reported, or
    /// forever if it never is (a device that cannot be stopped). The caller must not free or
    /// reuse it, nor access it for a read, before the completion arrives.
    pub unsafe fn submit_segments(
        &mut self,
        op: Operation,
        sector: u64,
        segments: &[Segment],
        token: u64,
    ) -> Result<RequestId, Error> {
        let total = self.check_data_request(op, sector, segments)?;
        let index = self.take_record()?;
        let record = &mut self.records[index as usize];
        record.segments[..segments.len()].copy_from_slice(segments);
        record.segment_count = segments.len();
        Ok(self.enqueue(index, op, sector, total, token))
    }

    /// Submits a read into, or write from, an owned buffer; the buffer comes back in the
    /// completion (holding the data, for a read). Nothing is sent until
    /// [`kick`](Self::kick).
    ///
    /// Errors as for [`submit_segments`](Self::submit_segments), with the buffer returned.
    pub fn submit_buffer(
        &mut self,
        op: Operation,
        sector: u64,
        buffer: Box<[u8]>,
        token: u64,
    ) -> Result<RequestId, Rejected> {
        let buffer = OwnedBuffer::new(buffer);
        let mut segments = [Segment::default(); MAX_SEGMENTS];
        let prepared = self
            .buffer_segments(&buffer, &mut segments)
            .and_then(|count| {
                let total = self.check_data_request(op, sector, &segments[..count])?;
                Ok((count, total))
            })
            .and_then(|(count, total)| Ok((count, total, self.take_record()?)));
        let (count, total, index) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                return Err(Rejected {
                    error,
                    buffer: buffer.into_box(),
                });
            }
        };
        let record = &mut self.records[index as usize];
        record.segments = segments;
        record.segment_count = count;
        record.buffer = Some(buffer);
        Ok(self.enqueue(index, op, sector, total, token))
    }

    /// Submits a cache flush (VIRTIO_BLK_T_FLUSH). Errors: `NotSupportedByDevice` without
    /// VIRTIO_BLK_F_FLUSH, `QueueFull`, `DeviceBroken`.
    pub fn submit_flush(&mut self, token: u64) -> Result<RequestId, Error> {
        self.check_operation(Operation::Flush)?;
        let index = self.take_record()?;
        Ok(self.enqueue(index, Operation::Flush, 0, 1, token))
    }

    /// Submits a request for the device's 20-byte serial (in the completion).
    pub fn submit_get_id(&mut self, token: u64) -> Result<RequestId, Error> {
        self.check_operation(Operation::GetId)?;
        let index = self.take_record()?;
        Ok(self.enqueue(index, Operation::GetId, 0, 1, token))
    }

    /// Submits a discard of `sectors` sectors from `sector` (cut by `max_discard_sectors`).
    pub fn submit_discard(
        &mut self,
        sector: u64,
        sectors: u64,
        token: u64,
    ) -> Result<RequestId, Error> {
        self.submit_range(Operation::Discard, sector, sectors, false, token)
    }

    /// Submits a write-zeroes of `sectors` sectors from `sector`; `unmap` lets the device
    /// deallocate the range.
    pub fn submit_write_zeroes(
        &mut self,
        sector: u64,
        sectors: u64,
        unmap: bool,
        token: u64,
    ) -> Result<RequestId, Error> {
        self.submit_range(Operation::WriteZeroes, sector, sectors, unmap, token)
    }

    fn submit_range(
        &mut self,
        op: Operation,
        sector: u64,
        sectors: u64,
        unmap: bool,
        token: u64,
    ) -> Result<RequestId, Error> {
        self.check_operation(op)?;
        if sectors == 0 {
            return Err(Error::InvalidArgument("empty range"));
        }
        let total = u32::try_from(sectors)
            .map_err(|_| Error::InvalidArgument("range longer than 2^32 sectors"))?;
        self.check_range(sector, sectors)?;
        let index = self.take_record()?;
        self.records[index as usize].unmap = unmap;
        Ok(self.enqueue(index, op, sector, total, token))
    }

    /// Checks that apply to every request.
    fn check_operation(&self, op: Operation) -> Result<(), Error> {
        if let Phase::Broken(error) = self.phase {
            return Err(error);
        }
        if op.modifies() && self.info.read_only {
            return Err(Error::ReadOnly);
        }
        let needed = match op {
            Operation::Flush => Some(Features::BLK_FLUSH),
            Operation::Discard => Some(Features::BLK_DISCARD),
            Operation::WriteZeroes => Some(Features::BLK_WRITE_ZEROES),
            Operation::Read | Operation::Write | Operation::GetId => None,
        };
        match needed {
            Some(feature) if !self.info.features.contains(feature) => {
                Err(Error::NotSupportedByDevice(op))
            }
            _ => Ok(()),
        }
    }

    /// `[sector, sector + sectors)` lies within the capacity (spec 5.2.6.1).
    fn check_range(&self, sector: u64, sectors: u64) -> Result<(), Error> {
        match sector.checked_add(sectors) {
            Some(end) if end <= self.info.capacity => Ok(()),
            _ => Err(Error::OutOfRange),
        }
    }

    /// Validates a read or write; returns its length in bytes.
    fn check_data_request(
        &self,
        op: Operation,
        sector: u64,
        segments: &[Segment],
    ) -> Result<u32, Error> {
        if !op.carries_data() {
            return Err(Error::InvalidArgument(
                "segments carry only reads and writes",
            ));
        }
        self.check_operation(op)?;
        if segments.is_empty() || segments.len() > MAX_SEGMENTS {
            return Err(Error::InvalidArgument("segment count must be 1..=32"));
        }
        if segments.iter().any(|segment| segment.len == 0) {
            return Err(Error::InvalidArgument("empty segment"));
        }
        let total: u64 = segments.iter().map(|segment| u64::from(segment.len)).sum();
        if !total.is_multiple_of(u64::from(SECTOR_SIZE)) {
            return Err(Error::InvalidArgument(
                "length is not a multiple of 512 bytes",
            ));
        }
        let total = u32::try_from(total)
            .map_err(|_| Error::InvalidArgument("request longer than 4 GiB"))?;
        self.check_range(sector, u64::from(total / SECTOR_SIZE))?;
        let limits = self.limits();
        if piece_count(segments, 0, total, limits.max_descriptor_bytes)
            > limits.max_data_descriptors
        {
            // It will be cut: make sure every cut lands on a sector boundary.
            let mut pos = 0;
            while pos < total {
                pos = cut_data(segments, pos, total, limits)?;
            }
        }
        Ok(total)
    }

    /// Physical segments of an owned buffer, page by page, merging contiguous pages.
    fn buffer_segments(
        &self,
        buffer: &OwnedBuffer,
        segments: &mut [Segment; MAX_SEGMENTS],
    ) -> Result<usize, Error> {
        let len = buffer.len();
        if len == 0 {
            return Err(Error::InvalidArgument("empty buffer"));
        }
        if u32::try_from(len).is_err() {
            return Err(Error::InvalidArgument("request longer than 4 GiB"));
        }
        let start = buffer.start();
        let mut count = 0;
        let mut offset = 0;
        while offset < len {
            let addr = start.as_ptr() as usize + offset;
            let chunk = (PAGE_SIZE - addr % PAGE_SIZE).min(len - offset);
            // SAFETY: `offset < len`, so the pointer stays inside the buffer.
            let virt = unsafe { start.add(offset) };
            let phys = self.hal.virt_to_phys(virt);
            match segments[..count].last_mut() {
                Some(last) if last.phys.add(u64::from(last.len)) == phys => {
                    last.len += chunk as u32;
                }
                _ => {
                    let slot = segments.get_mut(count).ok_or(Error::InvalidArgument(
                        "buffer spans more than 32 discontiguous pieces",
                    ))?;
                    *slot = Segment {
                        phys,
                        len: chunk as u32,
                    };
                    count += 1;
                }
            }
            offset += chunk;
        }
        Ok(count)
    }

    fn take_record(&mut self) -> Result<u32, Error> {
        self.free_records.pop().ok_or(Error::QueueFull)
    }

    /// Fills in a taken record, queues it and places what fits in the ring.
    fn enqueue(
        &mut self,
        index: u32,
        op: Operation,
        sector: u64,
        total: u32,
        token: u64,
    ) -> RequestId {
        let record = &mut self.records[index as usize];
        record.state = RecordState::Active;
        record.owner = Owner::Caller;
        record.token = token;
        record.op = op;
        record.sector = sector;
        record.total = total;
        record.cursor = 0;
        record.outstanding = 0;
        record.error = None;
        record.device_id = None;
        let id = RequestId::new(index, record.generation);
        self.stats.requests += 1;
        self.pending.push_back(index);
        self.dispatch();
        let record = &self.records[index as usize];
        if record.cursor < record.total && matches!(self.phase, Phase::Running) {
            self.stats.ring_full += 1;
        }
        id
    }

    /// The limits that decide how data requests are cut for the current ring.
    fn limits(&self) -> Limits {
        let mut max_data_descriptors = MAX_DATA_DESCRIPTORS;
        if let Some(seg_max) = self.info.seg_max {
            max_data_descriptors = max_data_descriptors.min(seg_max.max(1) as usize);
        }
        // A chain, direct or inside an indirect table, may not be longer than the queue
        // (spec 2.7.5.3.1 and 2.7.13.3.1).
        max_data_descriptors = max_data_descriptors.min(usize::from(self.ring.size()) - 2);
        Limits {
            max_data_descriptors,
            max_descriptor_bytes: self
                .info
                .size_max
                .filter(|&max| max > 0)
                .unwrap_or(u32::MAX),
        }
    }

    /// Where the unit starting at `start` (at most up to `end`) of `record` must stop.
    fn cut(&self, record: &Record, start: u32, end: u32) -> Result<u32, Error> {
        match record.op {
            Operation::Read | Operation::Write => {
                cut_data(record.segments(), start, end, self.limits())
            }
            Operation::Discard | Operation::WriteZeroes => {
                let limit = if record.op == Operation::Discard {
                    self.info.discard
                } else {
                    self.info.write_zeroes
                };
                let max = limit
                    .map(|limit| limit.max_sectors)
                    .filter(|&max| max > 0)
                    .unwrap_or(u32::MAX);
                Ok(end.min(start.saturating_add(max)))
            }
            Operation::Flush | Operation::GetId => Ok(end),
        }
    }

    /// Places waiting units in the ring until it is full or nothing waits. Retry units go
    /// first, then pending requests in submission order.
    fn dispatch(&mut self) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        loop {
            let (unit, from_retry) = if let Some(&unit) = self.retry.front() {
                (unit, true)
            } else if let Some(&index) = self.pending.front() {
                let record = &self.records[index as usize];
                if record.cursor >= record.total {
                    self.pending.pop_front();
                    continue;
                }
                let unit = Unit {
                    record: index,
                    start: record.cursor,
                    end: record.total,
                };
                (unit, false)
            } else {
                return;
            };
            let Some(head) = self.ring.queue.next_head() else {
                return;
            };
            let record = &self.records[unit.record as usize];
            let cut = self.cut(record, unit.start, unit.end).and_then(|end| {
                // The capacity may have shrunk since the request was checked.
                let first = record.sector_at(unit.start);
                let sectors = record.sector_at(end) - first;
                if record.op == Operation::Flush || record.op == Operation::GetId {
                    Ok(end)
                } else {
                    self.check_range(first, sectors).map(|()| end)
                }
            });
            let end = match cut {
                Ok(end) => end,
                Err(error) => {
                    self.fail_unit(unit, from_retry, error);
                    continue;
                }
            };
            let placed = Unit { end, ..unit };
            if !self.place(head, placed) {
                return;
            }
            let record = &mut self.records[unit.record as usize];
            if from_retry {
                if end == unit.end {
                    self.retry.pop_front();
                } else {
                    record.outstanding += 1;
                    if let Some(front) = self.retry.front_mut() {
                        front.start = end;
                    }
                }
            } else {
                record.cursor = end;
                record.outstanding += 1;
                if end == record.total {
                    self.pending.pop_front();
                }
            }
        }
    }

    /// A unit that cannot be sent: its request fails with `error`.
    fn fail_unit(&mut self, unit: Unit, from_retry: bool, error: Error) {
        let record = &mut self.records[unit.record as usize];
        record.error.get_or_insert(error);
        record.cursor = record.total;
        if from_retry {
            self.retry.pop_front();
            record.outstanding -= 1;
        }
        if record.is_done() {
            self.finish(unit.record);
        }
    }

    /// Writes `unit` into the slot of `head` and publishes it. Returns false (placing
    /// nothing) when the ring lacks descriptors for it.
    fn place(&mut self, head: u16, unit: Unit) -> bool {
        let indirect = self.info.features.contains(Features::INDIRECT_DESC);
        let record = &self.records[unit.record as usize];
        let ring = &self.ring;
        let slot = ring.slot(head);
        let slot_phys = ring.slots.phys(slot);

        let mut chain = [Descriptor::default(); MAX_CHAIN];
        chain[0] = Descriptor {
            addr: slot_phys.add(SLOT_HEADER as u64),
            len: 16,
            flags: 0,
        };
        let mut count = 1;
        match record.op {
            Operation::Read | Operation::Write => {
                let flags = if record.op == Operation::Read {
                    DESC_F_WRITE
                } else {
                    0
                };
                let max_bytes = self.limits().max_descriptor_bytes;
                for piece in pieces(record.segments(), unit.start, unit.end, max_bytes) {
                    chain[count] = Descriptor {
                        addr: piece.phys,
                        len: piece.len,
                        flags,
                    };
                    count += 1;
                }
            }
            Operation::GetId => {
                chain[count] = Descriptor {
                    addr: slot_phys.add(SLOT_DEVICE_ID as u64),
                    len: DEVICE_ID_LEN as u32,
                    flags: DESC_F_WRITE,
                };
                count += 1;
            }
            Operation::Discard | Operation::WriteZeroes => {
                chain[count] = Descriptor {
                    addr: slot_phys.add(SLOT_RANGE as u64),
                    len: 16,
                    flags: 0,
                };
                count += 1;
            }
            Operation::Flush => {}
        }
        chain[count] = Descriptor {
            addr: slot_phys.add(SLOT_STATUS as u64),
            len: 1,
            flags: DESC_F_WRITE,
        };
        count += 1;
        let needed = if indirect { 1 } else { count as u16 };
        if needed > ring.queue.num_free() {
            return false;
        }

        // The slot is filled in before the chain is published (`add` fences before idx).
        let header_sector = if record.op.carries_data() {
            record.sector_at(unit.start)
        } else {
            0
        };
        let slots = &ring.slots;
        slots.write_u32(slot + SLOT_HEADER, record.op.request_type());
        slots.write_u32(slot + SLOT_HEADER + 4, 0);
        slots.write_u64(slot + SLOT_HEADER + 8, header_sector);
        slots.write_u8(slot + SLOT_STATUS, STATUS_UNWRITTEN);
        if matches!(record.op, Operation::Discard | Operation::WriteZeroes) {
            slots.write_u64(slot + SLOT_RANGE, record.sector_at(unit.start));
            slots.write_u32(slot + SLOT_RANGE + 8, unit.end - unit.start);
            slots.write_u32(slot + SLOT_RANGE + 12, u32::from(record.unmap));
        }
        let added = if indirect {
            write_indirect_table(slots, slot + SLOT_FIXED_BYTES, &chain[..count]);
            self.ring.queue.add(&[Descriptor {
                addr: slot_phys.add(SLOT_FIXED_BYTES as u64),
                len: (count * DESC_SIZE) as u32,
                flags: DESC_F_INDIRECT,
            }])
        } else {
            self.ring.queue.add(&chain[..count])
        };
        debug_assert_eq!(added, head);
        self.ring.in_flight[usize::from(head)] = Some(unit);
        self.stats.virtio_requests += 1;
        self.peak_in_use = self.peak_in_use.max(self.ring.queue.descriptors_in_use());
        true
    }

    /// Notifies the device of everything placed since the last notification, if its
    /// suppression state asks for it (spec 2.7.13.4). Call after a batch of submissions.
    pub fn kick(&mut self) {
        if matches!(self.phase, Phase::Broken(_)) {
            return;
        }
        if self.ring.queue.should_notify() {
            self.transport.notify(REQUEST_QUEUE);
            self.stats.notifies += 1;
        }
    }

    /// Consumes used entries, settling their units; a ring fault breaks the device.
    fn reap(&mut self) {
        if matches!(self.phase, Phase::Broken(_)) {
            return;
        }
        self.ring.queue.suppress_interrupts();
        loop {
            match self.ring.queue.pop_used() {
                Ok(Some(head)) => {
                    self.stats.used_entries += 1;
                    self.complete_unit(head);
                }
                Ok(None) => {
                    if !self.ring.queue.rearm_interrupts() {
                        return;
                    }
                }
                Err(fault) => {
                    self.break_device(Error::DeviceBroken(fault));
                    return;
                }
            }
        }
    }

    /// Settles the unit the device returned in `head`'s chain.
    fn complete_unit(&mut self, head: u16) {
        let Some(unit) = self.ring.in_flight[usize::from(head)].take() else {
            // The queue only returns heads it has in flight, and every one carries a unit.
            self.break_device(Error::DeviceBroken(
                crate::error::RingFault::UsedIdNotInFlight {
                    id: u32::from(head),
                },
            ));
            return;
        };
        let slot = self.ring.slot(head);
        let result = match self.ring.slots.read_u8(slot + SLOT_STATUS) {
            BLK_S_OK => Ok(()),
            BLK_S_IOERR => Err(Error::IoError),
            BLK_S_UNSUPP => Err(Error::Unsupported),
            STATUS_UNWRITTEN => Err(Error::StatusNotWritten),
            other => Err(Error::UnknownStatus(other)),
        };
        let record = &mut self.records[unit.record as usize];
        record.outstanding -= 1;
        match result {
            Ok(()) => match record.op {
                Operation::GetId => {
                    let mut id = [0; DEVICE_ID_LEN];
                    self.ring.slots.read_bytes(slot + SLOT_DEVICE_ID, &mut id);
                    record.device_id = Some(id);
                }
                Operation::Flush => self.unflushed_writes = false,
                op if op.modifies() => self.unflushed_writes = true,
                _ => {}
            },
            Err(error) => {
                record.error.get_or_insert(error);
                record.cursor = record.total;
            }
        }
        if record.is_done() {
            self.finish(unit.record);
        }
    }

    /// A request is complete: queue its report, or free it if nobody waits for one.
    fn finish(&mut self, index: u32) {
        let record = &mut self.records[index as usize];
        record.state = RecordState::Finished;
        match record.owner {
            Owner::Caller => {
                self.stats.completions += 1;
                self.finished.push_back(index);
            }
            Owner::Abandoned => self.free_record(index),
            Owner::Stranded => {}
            Owner::Driver => {
                self.free_record(index);
                self.driver_request_finished(index);
            }
        }
    }

    fn free_record(&mut self, index: u32) {
        let record = &mut self.records[index as usize];
        record.state = RecordState::Free;
        record.buffer = None;
        record.generation = record.generation.wrapping_add(1);
        self.free_records.push(index);
    }

    /// Turns a finished record into its completion and frees the record.
    fn take_completion(&mut self, index: u32) -> Completion {
        let record = &mut self.records[index as usize];
        let completion = Completion {
            id: RequestId::new(index, record.generation),
            token: record.token,
            operation: record.op,
            result: record.error.map_or(Ok(()), Err),
            buffer: record.buffer.take().map(OwnedBuffer::into_box),
            device_id: record.device_id.take(),
        };
        self.free_record(index);
        completion
    }

    fn deliver(&mut self, sink: &mut dyn FnMut(Completion)) -> usize {
        let mut delivered = 0;
        while let Some(index) = self.finished.pop_front() {
            sink(self.take_completion(index));
            delivered += 1;
        }
        delivered
    }

    /// Reaps the used ring, moves a running resize on, places waiting requests, notifies,
    /// and reports every finished request to `sink`. Returns how many were reported.
    pub fn poll(&mut self, sink: &mut dyn FnMut(Completion)) -> usize {
        self.reap();
        self.progress();
        self.deliver(sink)
    }

    /// Everything after reaping: resize progress, dispatch, notification.
    fn progress(&mut self) {
        self.advance_resize();
        self.dispatch();
        self.kick();
    }

    /// The interrupt handler (spec 4.2.3.4): reads InterruptStatus, acknowledges exactly the
    /// causes it handles, reaps the used ring, re-reads the configuration on a change
    /// (resetting the device if it set DEVICE_NEEDS_RESET), and reports completions.
    pub fn handle_interrupt(&mut self, sink: &mut dyn FnMut(Completion)) -> InterruptReport {
        let status = self.transport.interrupt_status();
        let handled = status & (INT_USED_BUFFER | INT_CONFIG_CHANGE);
        let mut report = InterruptReport {
            status,
            ..InterruptReport::default()
        };
        if handled == 0 {
            self.stats.spurious_interrupts += 1;
            return report;
        }
        self.stats.interrupts += 1;
        // Acknowledge before reaping: a completion arriving while we reap raises a new
        // interrupt instead of being acknowledged unseen.
        self.transport.ack_interrupt(handled);
        report.acknowledged = handled;
        if handled & INT_CONFIG_CHANGE != 0 {
            self.config_changed(&mut report);
        }
        if handled & INT_USED_BUFFER != 0 {
            self.reap();
        }
        self.progress();
        report.completions = self.deliver(sink);
        report
    }

    /// A configuration-change interrupt: either the device needs a reset, or the
    /// configuration (capacity) changed.
    fn config_changed(&mut self, report: &mut InterruptReport) {
        self.stats.config_changes += 1;
        if matches!(self.phase, Phase::Broken(_)) {
            return;
        }
        if self.transport.status() & status::DEVICE_NEEDS_RESET != 0 {
            report.device_reset = true;
            self.recover();
            return;
        }
        if let Ok(info) = info::read_config(
            &mut self.transport,
            self.info.features,
            self.info.queue_num_max,
        ) {
            self.info = info;
            report.capacity = Some(info.capacity);
        }
    }

    /// Waits (bounded by `request_timeout_ns`) for request `id`, driving the device by
    /// polling; other completions stay queued for the next `poll`.
    fn wait_for(&mut self, id: RequestId) -> Result<Completion, Error> {
        let index = id.index() as u32;
        let deadline = self
            .clock
            .now_ns()
            .saturating_add(self.config.request_timeout_ns);
        self.kick();
        loop {
            self.reap();
            self.progress();
            let record = &self.records[index as usize];
            if record.state == RecordState::Finished {
                if let Some(position) = self.finished.iter().position(|&i| i == index) {
                    self.finished.remove(position);
                }
                return Ok(self.take_completion(index));
            }
            if self.clock.now_ns() >= deadline {
                self.records[index as usize].owner = Owner::Abandoned;
                return Err(Error::Timeout("request completion"));
            }
            self.clock.relax();
        }
    }

    /// Reads `buf.len()` bytes (a multiple of 512) from `sector`, waiting for the result.
    /// Uses a bounce buffer; for zero-copy use [`submit_segments`](Self::submit_segments).
    pub fn read_blocking(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        let bounce = zeroed_buffer(buf.len())?;
        let id = self
            .submit_buffer(Operation::Read, sector, bounce, 0)
            .map_err(|rejected| rejected.error)?;
        let completion = self.wait_for(id)?;
        completion.result?;
        if let Some(data) = completion.buffer {
            buf.copy_from_slice(&data);
        }
        Ok(())
    }

    /// Writes `buf` (a multiple of 512 bytes) at `sector`, waiting for the result.
    pub fn write_blocking(&mut self, sector: u64, buf: &[u8]) -> Result<(), Error> {
        let mut bounce = zeroed_buffer(buf.len())?;
        bounce.copy_from_slice(buf);
        let id = self
            .submit_buffer(Operation::Write, sector, bounce, 0)
            .map_err(|rejected| rejected.error)?;
        self.wait_for(id)?.result
    }

    /// Flushes the device's write cache, waiting for the result.
    pub fn flush_blocking(&mut self) -> Result<(), Error> {
        let id = self.submit_flush(0)?;
        self.wait_for(id)?.result
    }

    /// Reads the device's 20-byte serial, waiting for the result.
    pub fn get_id_blocking(&mut self) -> Result<[u8; DEVICE_ID_LEN], Error> {
        let id = self.submit_get_id(0)?;
        let completion = self.wait_for(id)?;
        completion.result?;
        completion.device_id.ok_or(Error::StatusNotWritten)
    }

    /// Checks the ring and request bookkeeping (tests).
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        self.ring.queue.check_invariants();
        let in_flight = self.ring.in_flight.iter().filter(|u| u.is_some()).count();
        assert_eq!(in_flight, usize::from(self.ring.queue.heads_in_flight()));
        let mut outstanding = alloc::vec![0u32; self.records.len()];
        for unit in self
            .ring
            .in_flight
            .iter()
            .flatten()
            .chain(self.retry.iter())
        {
            outstanding[unit.record as usize] += 1;
        }
        for (index, record) in self.records.iter().enumerate() {
            if record.state == RecordState::Active {
                assert_eq!(record.outstanding, outstanding[index], "record {index}");
            } else {
                assert_eq!(
                    outstanding[index], 0,
                    "finished record {index} still in flight"
                );
            }
        }
        let free = self
            .records
            .iter()
            .filter(|r| r.state == RecordState::Free)
            .count();
        assert_eq!(free, self.free_records.len());
    }
}

impl<H: Hal, T: Transport, C: Clock> Drop for BlockDevice<H, T, C> {
    fn drop(&mut self) {
        // Stop the device before its rings and the callers' buffers are freed; if it will
        // not stop, leak them rather than let it write into freed memory.
        if reset_device(
            &mut self.transport,
            &self.clock,
            self.config.reset_timeout_ns,
        )
        .is_err()
        {
            self.leak_device_memory();
        }
    }
}

fn zeroed_buffer(len: usize) -> Result<Box<[u8]>, Error> {
    let mut buffer = Vec::new();
    buffer.try_reserve_exact(len).map_err(|_| Error::NoMemory)?;
    buffer.resize(len, 0);
    Ok(buffer.into_boxed_slice())
}

/// Status bits that stay set once the features are agreed.
fn driver_status(version: TransportVersion) -> u32 {
    let base = status::ACKNOWLEDGE | status::DRIVER;
    match version {
        TransportVersion::Modern => base | status::FEATURES_OK,
        TransportVersion::Legacy => base,
    }
}

/// Writes 0 to Status and waits (bounded) until it reads 0 (spec 4.2.3.1 / 2.4).
fn reset_device<T: Transport, C: Clock>(
    transport: &mut T,
    clock: &C,
    timeout_ns: u64,
) -> Result<(), Error> {
    transport.set_status(0);
    wait_until(clock, timeout_ns, "device reset", || {
        transport.status() == 0
    })
}

/// Steps 2 to 6 of spec 3.1.1 on a freshly reset device: ACKNOWLEDGE, DRIVER, read the
/// offer, let `choose` pick, write it, and (modern) set FEATURES_OK and check it stuck.
fn negotiate<T: Transport>(
    transport: &mut T,
    choose: impl FnOnce(Features) -> Result<Features, Error>,
) -> Result<Features, Error> {
    transport.set_status(status::ACKNOWLEDGE);
    transport.set_status(status::ACKNOWLEDGE | status::DRIVER);
    let offered = transport.device_features();
    let features = choose(offered)?;
    transport.set_driver_features(features);
    if transport.version() == TransportVersion::Modern {
        transport.set_status(driver_status(TransportVersion::Modern));
        if transport.status() & status::FEATURES_OK == 0 {
            return Err(Error::FeaturesRejected);
        }
    }
    Ok(features)
}

/// Gives up on the device (spec 3.1.1: set FAILED when initialisation goes wrong).
fn fail_device<T: Transport>(transport: &mut T) {
    let current = transport.status();
    transport.set_status(current | status::FAILED);
}
