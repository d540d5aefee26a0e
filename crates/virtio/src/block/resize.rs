//! Resizing the request queue while requests are in flight, and the device resets that share
//! its machinery (DEVICE_NEEDS_RESET, ring faults, explicit `reset`).
//!
//! Path A (VIRTIO_F_RING_RESET negotiated and shown to work): reap, reset just this queue,
//! reap what finished meanwhile, take back every unit the device did not return, install a
//! ring of the new size (or the old one, zeroed, if allocation fails), re-enable, resubmit.
//! All in one call.
//!
//! Path B (legacy transport, or no working queue reset, e.g. QEMU 7.2 whose virtio-mmio
//! ignores QueueReset): allocate the new ring first (failure changes nothing), hold new
//! submissions in software, let in-flight requests drain (bounded), flush if writes completed
//! and FLUSH is negotiated, reset the whole device, renegotiate the same features, re-read the
//! configuration, set the queue up with the new ring, DRIVER_OK, and resubmit what did not
//! drain. It runs as a state machine moved on by `poll`/`handle_interrupt`, so nothing waits
//! for the device inside an interrupt handler except the bounded reset.

use core::mem;

use crate::error::Error;
use crate::features::Features;
use crate::hal::{Clock, Hal, wait_until};
use crate::request::{Operation, Owner, RecordState};
use crate::transport::Transport;

use super::info::{self, MIN_QUEUE_SIZE};
use super::{
    BlockDevice, Completion, Phase, REQUEST_QUEUE, Ring, driver_status, negotiate, reset_device,
};

/// How a resize was carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizePath {
    /// Path A: only the queue was reset.
    QueueReset,
    /// Path B: the device was drained and fully reset.
    DeviceReset,
}

/// What `resize` achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeStatus {
    /// The queue already had that size.
    Unchanged,
    /// The queue has the new size.
    Done(ResizePath),
    /// Path B is draining; `poll`/`handle_interrupt` finish it (see `is_resizing`).
    InProgress,
}

/// What the driver knows about the device's per-queue reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RingResetSupport {
    /// Not negotiated (or legacy).
    Unavailable,
    /// Negotiated, never tried.
    Untested,
    /// A queue reset completed as the spec says.
    Works,
    /// A queue reset did not complete, or left QueueReady set: use path B from now on.
    Broken,
}

/// A path-B resize in progress.
pub(super) struct ResizeJob<H: Hal> {
    /// The ring of the new size, allocated before anything changed.
    ring: Ring<H>,
    step: ResizeStep,
    /// When the current step stops waiting.
    deadline_ns: u64,
}

/// What an attempt at path A came to.
enum QueueResetOutcome {
    /// The queue was reset; the resize is over, with this result.
    Finished(Result<(), Error>),
    /// The queue was not reset: use path B. `stalled` when QueueReset never cleared, so the
    /// queue may no longer be processed until the device is reset.
    NotReset { stalled: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ResizeStep {
    /// Waiting for in-flight requests to complete.
    Draining,
    /// Waiting for the driver's flush (record index).
    Flushing(u32),
    /// The flush completed.
    Flushed,
}

impl<H: Hal, T: Transport, C: Clock> BlockDevice<H, T, C> {
    /// Changes the size of `queue` (only 0 exists) to `new_size` while requests keep
    /// flowing; no request is lost or completed twice.
    ///
    /// Errors: `InvalidArgument` for another queue, a size of 0, not a power of two, below
    /// 4 or above QueueNumMax; `Busy` while a resize runs; `NoMemory` when the new ring cannot
    /// be allocated (path A keeps the old size; path B changes nothing); `DeviceBroken` or
    /// `Timeout` if the device fails meanwhile.
    pub fn resize(&mut self, queue: u16, new_size: u16) -> Result<ResizeStatus, Error> {
        if queue != REQUEST_QUEUE {
            return Err(Error::InvalidArgument("no such queue"));
        }
        if let Phase::Broken(error) = self.phase {
            return Err(error);
        }
        if new_size == 0 {
            return Err(Error::InvalidArgument("queue size 0"));
        }
        if !new_size.is_power_of_two() {
            return Err(Error::InvalidArgument("queue size must be a power of two"));
        }
        if new_size < MIN_QUEUE_SIZE {
            return Err(Error::InvalidArgument("queue size below 4"));
        }
        if u32::from(new_size) > self.info.queue_num_max {
            return Err(Error::InvalidArgument("queue size above QueueNumMax"));
        }
        if self.is_resizing() {
            return Err(Error::Busy);
        }
        if new_size == self.ring.size() {
            return Ok(ResizeStatus::Unchanged);
        }
        let mut queue_stalled = false;
        if matches!(
            self.ring_reset,
            RingResetSupport::Untested | RingResetSupport::Works
        ) {
            match self.resize_by_queue_reset(new_size) {
                QueueResetOutcome::Finished(result) => {
                    return result.map(|()| ResizeStatus::Done(ResizePath::QueueReset));
                }
                QueueResetOutcome::NotReset { stalled } => queue_stalled = stalled,
            }
        }
        // Path B. The new ring first: if this fails nothing has changed (unless a queue reset
        // hung and left the queue stalled: then the device is reset with the old ring).
        let ring = match self.new_ring(new_size) {
            Ok(ring) => ring,
            Err(error) => {
                if queue_stalled {
                    self.recover();
                    self.progress();
                }
                return Err(error);
            }
        };
        let deadline_ns = self.deadline(self.config.drain_timeout_ns);
        self.phase = Phase::Resizing(ResizeJob {
            ring,
            step: ResizeStep::Draining,
            deadline_ns,
        });
        self.progress();
        match self.phase {
            Phase::Resizing(_) => Ok(ResizeStatus::InProgress),
            Phase::Running => Ok(ResizeStatus::Done(ResizePath::DeviceReset)),
            Phase::Broken(error) => Err(error),
        }
    }

    /// [`resize`](Self::resize), then polls until a path-B resize has finished (bounded by
    /// the drain timeouts), reporting completions that arrive meanwhile to `sink`.
    pub fn resize_blocking(
        &mut self,
        queue: u16,
        new_size: u16,
        sink: &mut dyn FnMut(Completion),
    ) -> Result<ResizeStatus, Error> {
        let status = self.resize(queue, new_size)?;
        if status != ResizeStatus::InProgress {
            return Ok(status);
        }
        while self.is_resizing() {
            self.poll(sink);
            self.clock.relax();
        }
        match self.phase {
            Phase::Broken(error) => Err(error),
            _ => Ok(ResizeStatus::Done(ResizePath::DeviceReset)),
        }
    }

    /// Resets the device and resubmits whatever was in flight: recovers a device broken by
    /// a ring fault or a failed reset. Completes a running path-B resize.
    pub fn reset(&mut self) -> Result<(), Error> {
        self.recover();
        self.progress();
        match self.phase {
            Phase::Broken(error) => Err(error),
            _ => Ok(()),
        }
    }

    fn deadline(&self, timeout_ns: u64) -> u64 {
        self.clock.now_ns().saturating_add(timeout_ns)
    }

    /// A ring of `size` for this device, with room in the retry queue for all its units.
    fn new_ring(&mut self, size: u16) -> Result<Ring<H>, Error> {
        let ring = Ring::new(
            &self.hal,
            size,
            self.info.features.contains(Features::EVENT_IDX),
            self.info.features.contains(Features::INDIRECT_DESC),
        )?;
        let spare = self.retry.capacity() - self.retry.len();
        let needed = usize::from(size.max(self.ring.size()));
        if spare < needed {
            self.retry
                .try_reserve(needed)
                .map_err(|_| Error::NoMemory)?;
        }
        Ok(ring)
    }

    /// Path A.
    fn resize_by_queue_reset(&mut self, new_size: u16) -> QueueResetOutcome {
        self.reap();
        if let Phase::Broken(error) = self.phase {
            return QueueResetOutcome::Finished(Err(error));
        }
        if !self.transport.request_queue_reset(REQUEST_QUEUE) {
            self.ring_reset = RingResetSupport::Broken;
            return QueueResetOutcome::NotReset { stalled: false };
        }
        let transport = &mut self.transport;
        let cleared = wait_until(
            &self.clock,
            self.config.reset_timeout_ns,
            "queue reset",
            || !transport.queue_reset_pending(REQUEST_QUEUE),
        )
        .is_ok();
        // Spec 4.2.2.1: a completed queue reset reads 0 in both QueueReset and QueueReady.
        // QEMU 7.2 ignores the write (0 and 1): the queue was never reset.
        if !cleared || self.transport.queue_in_use(REQUEST_QUEUE) {
            self.ring_reset = RingResetSupport::Broken;
            return QueueResetOutcome::NotReset { stalled: !cleared };
        }
        self.ring_reset = RingResetSupport::Works;
        // Entries the device used before the reset took effect are genuine completions.
        self.reap();
        if let Phase::Broken(error) = self.phase {
            return QueueResetOutcome::Finished(Err(error));
        }
        self.requeue_in_flight();
        let outcome = match self.new_ring(new_size) {
            Ok(ring) => {
                self.ring = ring;
                Ok(())
            }
            Err(error) => {
                self.ring.queue.reset_zeroed();
                Err(error)
            }
        };
        if let Err(error) =
            self.transport
                .setup_queue(REQUEST_QUEUE, self.ring.size(), self.ring.queue.phys())
        {
            self.break_device(error);
            return QueueResetOutcome::Finished(Err(error));
        }
        if outcome.is_ok() {
            self.stats.resizes_by_queue_reset += 1;
        }
        self.progress();
        QueueResetOutcome::Finished(outcome)
    }

    /// Moves a path-B resize on: drained (or timed out) -> flush if needed -> reset.
    pub(super) fn advance_resize(&mut self) {
        let now = self.clock.now_ns();
        let drained = self.ring.queue.heads_in_flight() == 0;
        let Phase::Resizing(job) = &self.phase else {
            return;
        };
        let (step, deadline_ns) = (job.step, job.deadline_ns);
        match step {
            ResizeStep::Draining if drained || now >= deadline_ns => {
                let flush_wanted = drained
                    && self.unflushed_writes
                    && self.info.features.contains(Features::BLK_FLUSH);
                if !(flush_wanted && self.start_driver_flush()) {
                    self.finish_resize();
                }
            }
            ResizeStep::Flushing(_) if now >= deadline_ns => self.finish_resize(),
            ResizeStep::Flushed => self.finish_resize(),
            ResizeStep::Draining | ResizeStep::Flushing(_) => {}
        }
    }

    /// Places a driver-owned flush in the drained ring. False if no record is free.
    fn start_driver_flush(&mut self) -> bool {
        let Some(index) = self.free_records.pop() else {
            return false;
        };
        let record = &mut self.records[index as usize];
        record.state = RecordState::Active;
        record.owner = Owner::Driver;
        record.op = Operation::Flush;
        record.sector = 0;
        record.total = 1;
        record.cursor = 1;
        record.outstanding = 1;
        record.error = None;
        let unit = crate::request::Unit {
            record: index,
            start: 0,
            end: 1,
        };
        let placed = self
            .ring
            .queue
            .next_head()
            .is_some_and(|head| self.place(head, unit));
        if !placed {
            self.free_record(index);
            return false;
        }
        let deadline_ns = self.deadline(self.config.drain_timeout_ns);
        if let Phase::Resizing(job) = &mut self.phase {
            job.step = ResizeStep::Flushing(index);
            job.deadline_ns = deadline_ns;
        }
        self.kick();
        true
    }

    /// A driver-owned request (the resize flush) finished.
    pub(super) fn driver_request_finished(&mut self, index: u32) {
        if let Phase::Resizing(job) = &mut self.phase
            && job.step == ResizeStep::Flushing(index)
        {
            job.step = ResizeStep::Flushed;
        }
    }

    fn finish_resize(&mut self) {
        let Phase::Resizing(job) = mem::replace(&mut self.phase, Phase::Running) else {
            return;
        };
        if self.reinitialize(Some(job.ring)).is_ok() {
            self.stats.resizes_by_device_reset += 1;
        }
    }

    /// Resets the device (DEVICE_NEEDS_RESET, `reset`), finishing a path-B resize if one
    /// runs (its ring is ready).
    pub(super) fn recover(&mut self) {
        let ring = match mem::replace(&mut self.phase, Phase::Running) {
            Phase::Resizing(job) => Some(job.ring),
            Phase::Running | Phase::Broken(_) => None,
        };
        // The result is recorded in `phase`.
        let _ = self.reinitialize(ring);
    }

    /// Full reset and re-initialisation with the same features: every unit the device did
    /// not complete is resubmitted afterwards. On failure the device is broken and every
    /// request fails.
    fn reinitialize(&mut self, new_ring: Option<Ring<H>>) -> Result<(), Error> {
        self.stats.device_resets += 1;
        if let Err(error) = reset_device(
            &mut self.transport,
            &self.clock,
            self.config.reset_timeout_ns,
        ) {
            // The device may still be using the rings and buffers: never free them.
            self.fail_everything(error, true);
            return Err(error);
        }
        self.requeue_in_flight();
        match new_ring {
            Some(ring) => self.ring = ring,
            None => self.ring.queue.reset_zeroed(),
        }
        match self.bring_up_again() {
            Ok(()) => {
                self.phase = Phase::Running;
                Ok(())
            }
            Err(error) => {
                super::fail_device(&mut self.transport);
                self.fail_everything(error, false);
                Err(error)
            }
        }
    }

    /// Steps 2 to 8 of spec 3.1.1 after a reset, with the features negotiated first.
    fn bring_up_again(&mut self) -> Result<(), Error> {
        let features = self.info.features;
        negotiate(&mut self.transport, |offered| {
            if offered.contains(features) {
                Ok(features)
            } else {
                Err(Error::FeaturesRejected)
            }
        })?;
        if self.transport.queue_in_use(REQUEST_QUEUE) {
            return Err(Error::QueueAlreadyInUse(REQUEST_QUEUE));
        }
        let max = self.transport.max_queue_size(REQUEST_QUEUE);
        self.info = info::read_config(&mut self.transport, features, max)?;
        if u32::from(self.ring.size()) > max {
            let size = info::choose_queue_size(REQUEST_QUEUE, self.ring.size(), max)?;
            self.ring = self.new_ring(size)?;
        }
        self.transport
            .setup_queue(REQUEST_QUEUE, self.ring.size(), self.ring.queue.phys())?;
        self.transport
            .set_status(driver_status(self.info.transport) | crate::mmio::status::DRIVER_OK);
        Ok(())
    }

    /// Moves every unit in the ring to the front of the retry queue, in head order. Only
    /// after the device stopped using the ring.
    fn requeue_in_flight(&mut self) {
        for head in (0..self.ring.in_flight.len()).rev() {
            if let Some(unit) = self.ring.in_flight[head].take() {
                self.retry.push_front(unit);
                self.stats.resubmissions += 1;
            }
        }
    }

    /// The device broke the protocol: stop it, then fail every request.
    pub(super) fn break_device(&mut self, error: Error) {
        let stopped = reset_device(
            &mut self.transport,
            &self.clock,
            self.config.reset_timeout_ns,
        )
        .is_ok();
        self.fail_everything(error, !stopped);
    }

    /// Marks the device broken and finishes every request with `error`. When the device
    /// might still be doing DMA, the ring and the buffers of requests in it are leaked, and
    /// requests in it on caller memory are never reported.
    fn fail_everything(&mut self, error: Error, device_may_run: bool) {
        self.phase = Phase::Broken(error);
        if device_may_run {
            // Caller memory in the ring stays the device's: those requests are never reported.
            for unit in self.ring.in_flight.iter().flatten() {
                let record = &mut self.records[unit.record as usize];
                if record.op.carries_data() && record.buffer.is_none() {
                    record.owner = Owner::Stranded;
                }
            }
            self.leak_device_memory();
        }
        for unit in self.ring.in_flight.iter_mut() {
            *unit = None;
        }
        self.retry.clear();
        self.pending.clear();
        for index in 0..self.records.len() {
            let record = &mut self.records[index];
            if record.state != RecordState::Active {
                continue;
            }
            record.error.get_or_insert(error);
            record.cursor = record.total;
            record.outstanding = 0;
            self.finish(index as u32);
        }
        self.ring.queue.reset_zeroed();
    }

    /// Never free memory the device may write: the rings and the owned buffers of requests
    /// in them.
    pub(super) fn leak_device_memory(&mut self) {
        self.ring.leak();
        for unit in self.ring.in_flight.iter().flatten() {
            if let Some(buffer) = self.records[unit.record as usize].buffer.take() {
                buffer.leak();
            }
        }
    }
}
