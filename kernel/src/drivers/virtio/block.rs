//! The kernel's block-device API over the virtio core: one [`Disk`] per virtio-blk device.
//!
//! * Blocking calls ([`Disk::read`], [`Disk::write`], [`Disk::flush`], ...) submit, notify the
//!   device once, and sleep (WFI) until the completion interrupt has settled their request; a
//!   read or write goes straight between the caller's buffer and the device (zero-copy, the
//!   buffer's physical pages from the kernel's page tables).
//! * Asynchronous calls ([`Disk::submit`], [`Disk::batch`]) take [`Request`]s whose data lives in
//!   a [`DmaBuffer`] (contiguous frames: one descriptor whatever the size) and return a
//!   [`Pending`] handle; the buffer comes back in the [`Finished`] result. A batch notifies the
//!   device once for all its requests.
//! * Completions are settled by the interrupt handler, or by the waiting caller itself in polled
//!   mode ([`Disk::set_polled`], and always while interrupts are masked, e.g. early in boot).
//! * [`Disk::resize`] changes the request queue's size at run time, with requests in flight;
//!   [`Disk::set_auto_resize`] lets a [`ResizePolicy`] decide, sampled every
//!   [`POLICY_PERIOD_US`].

use alloc::string::String;
use alloc::vec::Vec;
use core::mem::ManuallyDrop;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arrayvec::ArrayVec;
use virtio::{
    BlockDevice, Completion, DEVICE_ID_LEN, DeviceInfo, Error, MAX_SEGMENTS, MmioTransport,
    Operation, ResizePath, ResizePolicy, ResizeStatus, SECTOR_SIZE, Segment, Stats,
};

use super::hal::{CounterClock, FrameDma, MmioWindow, order_for};
use crate::arch::cpu;
use crate::drivers::gic::{IrqId, Trigger};
use crate::mm::{self, PAGE_SIZE, PhysFrame, frame};
use crate::sync::IrqSpinLock;
use crate::task::WaitQueue;

/// The virtio core specialised for this kernel.
pub type Device = BlockDevice<FrameDma, MmioTransport<MmioWindow>, CounterClock>;

/// Requests one disk can have outstanding: its slot table and the core's request table.
pub const MAX_REQUESTS: usize = 512;
/// Largest single virtio request a blocking call makes; longer transfers are cut.
const MAX_REQUEST_BYTES: usize = 1 << 30;
/// Sub-requests a blocking call has in flight at once.
const TRANSFER_BATCH: usize = 32;

/// How often the resize policy samples a disk in auto mode.
pub const POLICY_PERIOD_US: u64 = 20_000;
/// Policy: grow after this many submissions found the ring full within one window.
pub const POLICY_GROW_AFTER: u64 = 4;
/// Policy: samples per window (25 x 20 ms = 0.5 s); a quiet window shrinks the queue.
pub const POLICY_WINDOW: u32 = 25;
/// Policy: the smallest queue it shrinks to.
pub const POLICY_MIN_SIZE: u16 = 16;

/// Memory for asynchronous requests: zeroed, physically contiguous frames from the frame
/// allocator, so a request of any size needs a single descriptor.
pub struct DmaBuffer {
    block: PhysFrame,
    order: usize,
    len: usize,
}

impl DmaBuffer {
    /// A zeroed buffer of `len` bytes (rounded up to a power-of-two number of pages).
    pub fn new(len: usize) -> Result<Self, Error> {
        if len == 0 || u32::try_from(len).is_err() {
            return Err(Error::InvalidArgument(
                "buffer length must be 1 byte to 4 GiB",
            ));
        }
        let order = order_for(len.div_ceil(PAGE_SIZE as usize));
        let block = frame::alloc_zeroed(order).map_err(|_| Error::NoMemory)?;
        Ok(Self { block, order, len })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the block is ours, mapped in the linear map and at least `len` bytes long; the
        // device does not access it while the caller holds the buffer (it is moved into the
        // disk for the duration of a request).
        unsafe { core::slice::from_raw_parts(mm::phys_ptr(self.block.start()), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`, and `&mut self` makes the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(mm::phys_ptr(self.block.start()), self.len) }
    }

    fn segment(&self) -> Segment {
        Segment {
            phys: virtio::PhysAddr(self.block.start().as_u64()),
            len: self.len as u32,
        }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this order, freed once; the device is done with it
        // (a buffer is only handed back, and so dropped, after its request completed).
        unsafe { frame::free(self.block, self.order) };
    }
}

/// An asynchronous request. Reads and writes move a whole [`DmaBuffer`] (a multiple of 512
/// bytes); the buffer comes back in [`Finished`].
pub enum Request {
    Read {
        sector: u64,
        buffer: DmaBuffer,
    },
    Write {
        sector: u64,
        buffer: DmaBuffer,
    },
    Flush,
    /// The device's 20-byte serial.
    GetId,
    Discard {
        sector: u64,
        sectors: u64,
    },
    WriteZeroes {
        sector: u64,
        sectors: u64,
        unmap: bool,
    },
}

/// For trace records: `Read of 4096 bytes at sector 8`.
impl core::fmt::Display for Request {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Read { sector, buffer } => {
                write!(f, "Read of {} bytes at sector {sector}", buffer.len())
            }
            Self::Write { sector, buffer } => {
                write!(f, "Write of {} bytes at sector {sector}", buffer.len())
            }
            Self::Flush => f.write_str("Flush"),
            Self::GetId => f.write_str("GetId"),
            Self::Discard { sector, sectors } => {
                write!(f, "Discard of {sectors} sectors at sector {sector}")
            }
            Self::WriteZeroes {
                sector,
                sectors,
                unmap,
            } => write!(
                f,
                "WriteZeroes of {sectors} sectors at sector {sector} (unmap: {unmap})"
            ),
        }
    }
}

impl Request {
    fn into_buffer(self) -> Option<DmaBuffer> {
        match self {
            Self::Read { buffer, .. } | Self::Write { buffer, .. } => Some(buffer),
            _ => None,
        }
    }
}

/// A refused submission: nothing was sent; the buffer is handed back.
pub struct Refused {
    pub error: Error,
    pub buffer: Option<DmaBuffer>,
}

/// The outcome of a request.
pub struct Finished {
    pub result: Result<(), Error>,
    /// The buffer of a read or write (holding the data, for a read).
    pub buffer: Option<DmaBuffer>,
    /// The serial, for a successful get-id.
    pub device_id: Option<[u8; DEVICE_ID_LEN]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    /// Submitted; someone waits for it.
    InFlight,
    /// Completed, result not yet taken.
    Done,
    /// Its [`Pending`] was dropped: freed on completion.
    Abandoned,
}

/// A request's place in the disk's table; its index is the token the core carries.
struct Slot {
    state: SlotState,
    result: Result<(), Error>,
    buffer: Option<DmaBuffer>,
    device_id: Option<[u8; DEVICE_ID_LEN]>,
}

struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slots {
    fn new() -> Self {
        let slots = (0..MAX_REQUESTS)
            .map(|_| Slot {
                state: SlotState::Free,
                result: Ok(()),
                buffer: None,
                device_id: None,
            })
            .collect();
        Self {
            slots,
            free: (0..MAX_REQUESTS as u32).rev().collect(),
        }
    }

    fn take(&mut self) -> Result<u32, Error> {
        let token = self.free.pop().ok_or(Error::QueueFull)?;
        self.slots[token as usize].state = SlotState::InFlight;
        Ok(token)
    }

    fn release(&mut self, token: u32) {
        let slot = &mut self.slots[token as usize];
        slot.state = SlotState::Free;
        slot.buffer = None;
        slot.device_id = None;
        self.free.push(token);
    }

    /// The core reports a completion: record it for its waiter (or free an abandoned slot).
    fn settle(&mut self, completion: Completion) {
        let token = completion.token as u32;
        log::trace!(target: "virtio", "request {token}: {:?} completed: {:?}", completion.operation, completion.result);
        let Some(slot) = self.slots.get_mut(token as usize) else {
            return;
        };
        match slot.state {
            SlotState::InFlight => {
                slot.state = SlotState::Done;
                slot.result = completion.result;
                slot.device_id = completion.device_id;
            }
            SlotState::Abandoned => self.release(token),
            SlotState::Free | SlotState::Done => {}
        }
    }

    fn is_done(&self, token: u32) -> bool {
        self.slots
            .get(token as usize)
            .is_some_and(|slot| slot.state == SlotState::Done)
    }

    /// The result of a completed request, freeing its slot.
    fn finish(&mut self, token: u32) -> Option<Finished> {
        if !self.is_done(token) {
            return None;
        }
        let slot = &mut self.slots[token as usize];
        let finished = Finished {
            result: slot.result,
            buffer: slot.buffer.take(),
            device_id: slot.device_id.take(),
        };
        self.release(token);
        Some(finished)
    }

    /// Nobody will take the result: free the slot now or on completion.
    fn abandon(&mut self, token: u32) {
        match self.slots.get(token as usize).map(|slot| slot.state) {
            Some(SlotState::Done) => self.release(token),
            Some(SlotState::InFlight) => self.slots[token as usize].state = SlotState::Abandoned,
            _ => {}
        }
    }
}

/// What the disk's lock protects.
pub(super) struct DiskState {
    device: Device,
    slots: Slots,
    /// Auto-resize mode.
    policy: Option<ResizePolicy>,
}

impl DiskState {
    /// Reaps completions without waiting for the interrupt (polled mode, and every wake-up).
    fn poll(&mut self) -> usize {
        let Self { device, slots, .. } = self;
        device.poll(&mut |completion| slots.settle(completion))
    }
}

/// A virtio block device: `blk0`, `blk1`, ... in discovery order.
pub struct Disk {
    name: String,
    base: u64,
    irq: IrqId,
    trigger: Trigger,
    serial: Option<[u8; DEVICE_ID_LEN]>,
    state: IrqSpinLock<DiskState>,
    /// Counts interrupts handled: sleepers compare it before and after going to sleep.
    events: AtomicU64,
    /// Threads blocked until the next interrupt (when the CPU has other work).
    waiters: WaitQueue,
    polled: AtomicBool,
}

impl Disk {
    /// Wraps an initialised device whose serial discovery read.
    pub(super) fn new(
        name: String,
        base: u64,
        irq: IrqId,
        trigger: Trigger,
        device: Device,
        serial: Option<[u8; DEVICE_ID_LEN]>,
    ) -> Self {
        Self {
            name,
            base,
            irq,
            trigger,
            serial,
            state: IrqSpinLock::new(DiskState {
                device,
                slots: Slots::new(),
                policy: None,
            }),
            events: AtomicU64::new(0),
            waiters: WaitQueue::new(),
            polled: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Physical address of the register window.
    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn irq(&self) -> IrqId {
        self.irq
    }

    pub(super) fn trigger(&self) -> Trigger {
        self.trigger
    }

    /// The virtio-blk serial (QEMU: `serial=` of the device), read at discovery.
    pub fn serial(&self) -> Option<&str> {
        self.serial.as_ref().and_then(super::serial_text)
    }

    pub fn info(&self) -> DeviceInfo {
        *self.state.lock().device.info()
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.info().capacity
    }

    pub fn stats(&self) -> Stats {
        self.state.lock().device.stats()
    }

    pub fn queue_size(&self) -> u16 {
        self.state.lock().device.queue_size()
    }

    /// Whether a full-reset resize is still draining.
    pub fn is_resizing(&self) -> bool {
        self.state.lock().device.is_resizing()
    }

    /// The error that stopped the device, if it broke.
    pub fn failure(&self) -> Option<Error> {
        self.state.lock().device.failure()
    }

    /// The interrupt handler's work: settle completions, move a resize on.
    pub(super) fn handle_interrupt(&self) {
        let mut state = self.state.lock();
        let DiskState { device, slots, .. } = &mut *state;
        device.handle_interrupt(&mut |completion| slots.settle(completion));
        self.events.fetch_add(1, Ordering::Release);
        self.waiters.wake_all();
    }

    /// Polled mode: completions are reaped by whoever waits, and the device's interrupt is
    /// masked at the interrupt controller (the device still raises it; nobody takes it).
    pub fn set_polled(&self, polled: bool) {
        self.polled.store(polled, Ordering::Release);
        if let Some(gic) = crate::irq::controller() {
            if polled {
                gic.disable(self.irq);
            } else {
                gic.unmask(self.irq);
                self.acknowledge_stale_interrupt();
            }
        }
    }

    /// Acknowledges an interrupt the device raised while nobody took it (polled mode, the
    /// polled serial read at discovery). QEMU's virtio-mmio interrupts are edge-triggered: a
    /// line left high by an unacknowledged status would never produce another edge.
    pub(super) fn acknowledge_stale_interrupt(&self) {
        self.handle_interrupt();
    }

    pub fn is_polled(&self) -> bool {
        self.polled.load(Ordering::Acquire)
    }

    /// Runs `check` on the disk's state until it returns a value. Between checks the caller
    /// sleeps until an interrupt (interrupt mode) or reaps the device itself (polled mode, or
    /// interrupts masked); it reaps on every wake-up either way, so a lost interrupt costs
    /// a tick, not a hang. Sleeping blocks the thread when other threads wait for this CPU, and
    /// waits in WFI otherwise (no switch to and from the idle thread for nothing).
    fn sleep_until<R>(&self, mut check: impl FnMut(&mut DiskState) -> Option<R>) -> R {
        loop {
            let sleeps = cpu::interrupts_enabled() && !self.is_polled();
            let seen = self.events.load(Ordering::Acquire);
            {
                let mut state = self.state.lock();
                if let Some(result) = check(&mut state) {
                    return result;
                }
                state.poll();
                if let Some(result) = check(&mut state) {
                    return result;
                }
            }
            if sleeps && crate::task::sched::others_waiting() {
                self.waiters
                    .wait_until(|| self.events.load(Ordering::Acquire) != seen);
            } else if sleeps {
                // Interrupts masked between the last check and WFI: an interrupt arriving in
                // between stays pending and ends the WFI at once.
                let daif = cpu::disable_interrupts();
                if self.events.load(Ordering::Acquire) == seen {
                    cpu::wait_for_interrupt();
                }
                cpu::restore_interrupts(daif);
            } else {
                core::hint::spin_loop();
            }
        }
    }

    /// Reads `buf.len()` bytes (a positive multiple of 512) from `sector` into `buf`, directly
    /// (no bounce buffer), sleeping until done.
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), Error> {
        // SAFETY: `buf` is borrowed exclusively until `transfer` returns, and it returns only
        // after every request it made has completed.
        unsafe { self.transfer(Operation::Read, sector, buf.as_mut_ptr(), buf.len()) }
    }

    /// Writes `buf` (a positive multiple of 512 bytes) at `sector`, directly, sleeping until
    /// done. Durable only after [`flush`](Self::flush) when the device caches writes.
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), Error> {
        // SAFETY: `buf` is borrowed until `transfer` returns (after every request completed);
        // a write only reads it.
        unsafe { self.transfer(Operation::Write, sector, buf.as_ptr().cast_mut(), buf.len()) }
    }

    /// # Safety
    /// `[ptr, ptr + len)` is mapped kernel memory that the device may access as `op` says until
    /// this returns, and nothing else accesses meanwhile (reads).
    unsafe fn transfer(
        &self,
        op: Operation,
        sector: u64,
        ptr: *mut u8,
        len: usize,
    ) -> Result<(), Error> {
        if len == 0 || !len.is_multiple_of(SECTOR_SIZE as usize) {
            return Err(Error::InvalidArgument(
                "length must be a positive multiple of 512 bytes",
            ));
        }
        let sectors = (len / SECTOR_SIZE as usize) as u64;
        match sector.checked_add(sectors) {
            Some(end) if end <= self.capacity() => {}
            _ => return Err(Error::OutOfRange),
        }
        let mut first_error = None;
        let mut offset = 0;
        while offset < len && first_error.is_none() {
            let mut tokens = ArrayVec::<u32, TRANSFER_BATCH>::new();
            {
                let mut state = self.state.lock();
                while offset < len && !tokens.is_full() {
                    let submitted = physical_segments(ptr.wrapping_add(offset), len - offset)
                        .and_then(|(segments, bytes)| {
                            let token = state.slots.take()?;
                            let at = sector + (offset / SECTOR_SIZE as usize) as u64;
                            // SAFETY: the segments are the caller's buffer, which the contract
                            // lends to the device until we return, after its completion.
                            let result = unsafe {
                                state
                                    .device
                                    .submit_segments(op, at, &segments, u64::from(token))
                            };
                            match result {
                                Ok(_) => {
                                    log::trace!(target: "virtio", "{}: request {token}: {op:?} of {bytes} bytes at sector {at}", self.name);
                                    Ok((token, bytes))
                                }
                                Err(error) => {
                                    state.slots.release(token);
                                    Err(error)
                                }
                            }
                        });
                    match submitted {
                        Ok((token, bytes)) => {
                            tokens.push(token);
                            offset += bytes;
                        }
                        Err(error) => {
                            first_error = Some(error);
                            break;
                        }
                    }
                }
                state.device.kick();
            }
            for token in tokens {
                let finished = self.sleep_until(|state| state.slots.finish(token));
                if let Err(error) = finished.result {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Submits one request and notifies the device.
    pub fn submit(&'static self, request: Request) -> Result<Pending, Refused> {
        self.batch(|batch| batch.submit(request))
    }

    /// Submits several requests with one notification: `f` submits through the [`Batch`];
    /// the device is notified (if it wants to be) when `f` returns.
    pub fn batch<R>(&'static self, f: impl FnOnce(&mut Batch<'_>) -> R) -> R {
        let mut state = self.state.lock();
        let mut batch = Batch {
            disk: self,
            state: &mut state,
        };
        let result = f(&mut batch);
        state.device.kick();
        result
    }

    /// Sleeps until at least one of `pending` (requests of this disk) has completed.
    pub fn wait_any(&self, pending: &[Pending]) {
        self.sleep_until(|state| {
            pending
                .iter()
                .any(|request| state.slots.is_done(request.token))
                .then_some(())
        });
    }

    fn run(&'static self, request: Request) -> Result<Finished, Error> {
        Ok(self
            .submit(request)
            .map_err(|refused| refused.error)?
            .wait())
    }

    /// Flushes the device's write cache, sleeping until done.
    pub fn flush(&'static self) -> Result<(), Error> {
        self.run(Request::Flush)?.result
    }

    /// Asks the device for its 20-byte serial.
    pub fn get_id(&'static self) -> Result<[u8; DEVICE_ID_LEN], Error> {
        let finished = self.run(Request::GetId)?;
        finished.result?;
        finished.device_id.ok_or(Error::StatusNotWritten)
    }

    /// Discards `sectors` sectors from `sector` (when the device offers discard).
    pub fn discard(&'static self, sector: u64, sectors: u64) -> Result<(), Error> {
        self.run(Request::Discard { sector, sectors })?.result
    }

    /// Zeroes `sectors` sectors from `sector` (when the device offers write-zeroes).
    pub fn write_zeroes(
        &'static self,
        sector: u64,
        sectors: u64,
        unmap: bool,
    ) -> Result<(), Error> {
        self.run(Request::WriteZeroes {
            sector,
            sectors,
            unmap,
        })?
        .result
    }

    /// Resizes the request queue to `size` entries while requests keep flowing, and leaves
    /// auto mode. Sleeps until a full-reset resize has drained and finished.
    pub fn resize(&self, size: u16) -> Result<ResizeStatus, Error> {
        let status = self.start_resize(size)?;
        if status != ResizeStatus::InProgress {
            return Ok(status);
        }
        self.sleep_until(|state| {
            if state.device.is_resizing() {
                return None;
            }
            Some(match state.device.failure() {
                Some(error) => Err(error),
                None => Ok(ResizeStatus::Done(ResizePath::DeviceReset)),
            })
        })
    }

    /// Starts resizing the request queue to `size` entries and leaves auto mode, without
    /// waiting: `InProgress` means a full-reset resize is draining the queue, and interrupts
    /// finish it; requests submitted meanwhile wait in the driver and go to the new ring.
    pub fn start_resize(&self, size: u16) -> Result<ResizeStatus, Error> {
        let mut state = self.state.lock();
        state.policy = None;
        let status = state.device.resize(0, size);
        log::debug!(target: "virtio", "{}: resize to {size}: {status:?}", self.name);
        status
    }

    /// Auto mode: the resize policy grows the queue when submissions find it full and shrinks
    /// it when it stays mostly idle (see docs/virtio-blk.md).
    pub fn set_auto_resize(&self) -> Result<(), Error> {
        // The largest power of two the device accepts.
        let max = self.info().queue_num_max.clamp(1, 1 << 15);
        let max = 1u16 << max.ilog2();
        let policy = ResizePolicy::new(
            POLICY_GROW_AFTER,
            POLICY_WINDOW,
            POLICY_MIN_SIZE.min(max),
            max,
        )?;
        self.state.lock().policy = Some(policy);
        super::arm_policy_sampler()
    }

    pub fn is_auto_resize(&self) -> bool {
        self.state.lock().policy.is_some()
    }

    /// One policy sample (timer interrupt); false when the disk is not in auto mode.
    pub(super) fn sample_policy(&self) -> bool {
        let mut state = self.state.lock();
        let DiskState { device, policy, .. } = &mut *state;
        let Some(policy) = policy.as_mut() else {
            return false;
        };
        if !device.is_resizing() {
            let sample = device.sample_occupancy();
            if let Some(size) = policy.observe(sample) {
                // A failed resize (out of memory) leaves the size; the next window retries.
                let status = device.resize(0, size);
                log::debug!(target: "virtio", "{}: policy resize to {size}: {status:?}", self.name);
            }
        }
        true
    }
}

/// Submissions sharing one notification (see [`Disk::batch`]).
pub struct Batch<'a> {
    disk: &'static Disk,
    state: &'a mut DiskState,
}

impl Batch<'_> {
    /// Places a request in the ring (or the driver's wait list when the ring is full).
    pub fn submit(&mut self, request: Request) -> Result<Pending, Refused> {
        let token = match self.state.slots.take() {
            Ok(token) => token,
            Err(error) => {
                return Err(Refused {
                    error,
                    buffer: request.into_buffer(),
                });
            }
        };
        let device = &mut self.state.device;
        let token_value = u64::from(token);
        let submitted = match &request {
            Request::Read { sector, buffer } | Request::Write { sector, buffer } => {
                let op = if matches!(request, Request::Read { .. }) {
                    Operation::Read
                } else {
                    Operation::Write
                };
                // SAFETY: the buffer moves into the slot below and stays there, untouched and
                // not freed, until its completion is settled.
                unsafe { device.submit_segments(op, *sector, &[buffer.segment()], token_value) }
            }
            Request::Flush => device.submit_flush(token_value),
            Request::GetId => device.submit_get_id(token_value),
            Request::Discard { sector, sectors } => {
                device.submit_discard(*sector, *sectors, token_value)
            }
            Request::WriteZeroes {
                sector,
                sectors,
                unmap,
            } => device.submit_write_zeroes(*sector, *sectors, *unmap, token_value),
        };
        match submitted {
            Ok(_) => {
                log::trace!(target: "virtio", "{}: request {token}: {}", self.disk.name, request);
                self.state.slots.slots[token as usize].buffer = request.into_buffer();
                Ok(Pending {
                    disk: self.disk,
                    token,
                })
            }
            Err(error) => {
                self.state.slots.release(token);
                Err(Refused {
                    error,
                    buffer: request.into_buffer(),
                })
            }
        }
    }
}

impl Batch<'_> {
    /// Places a read or write of one 4 KiB frame the caller keeps owning: swap I/O moves a
    /// page's own frame, without a copy.
    ///
    /// # Safety
    /// Until the request has completed, the frame stays allocated and nothing else writes it
    /// (nor reads it, for a read): the caller waits for the returned [`Pending`] and never
    /// drops it unfinished.
    pub unsafe fn submit_frame(
        &mut self,
        op: Operation,
        sector: u64,
        frame: PhysFrame,
    ) -> Result<Pending, Error> {
        let token = self.state.slots.take()?;
        let segment = Segment {
            phys: virtio::PhysAddr(frame.start().as_u64()),
            len: PAGE_SIZE as u32,
        };
        // SAFETY: the caller lends the frame to the device until the request completes.
        let submitted = unsafe {
            self.state
                .device
                .submit_segments(op, sector, &[segment], u64::from(token))
        };
        match submitted {
            Ok(_) => Ok(Pending {
                disk: self.disk,
                token,
            }),
            Err(error) => {
                self.state.slots.release(token);
                Err(error)
            }
        }
    }
}

/// A submitted request. [`wait`](Self::wait) for it; dropping it abandons the result (the
/// buffer is freed when the device is done with it).
pub struct Pending {
    disk: &'static Disk,
    token: u32,
}

impl Pending {
    pub fn is_done(&self) -> bool {
        self.disk.state.lock().slots.is_done(self.token)
    }

    /// Sleeps until the request completes.
    pub fn wait(self) -> Finished {
        let this = ManuallyDrop::new(self);
        this.disk
            .sleep_until(|state| state.slots.finish(this.token))
    }

    /// The result if the request has completed, else the handle back.
    pub fn try_finish(self) -> Result<Finished, Self> {
        let finished = self.disk.state.lock().slots.finish(self.token);
        match finished {
            Some(finished) => {
                core::mem::forget(self);
                Ok(finished)
            }
            None => Err(self),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.disk.state.lock().slots.abandon(self.token);
    }
}

/// The physical segments of the longest prefix of `[start, start + len)` that fits one request:
/// at most [`MAX_SEGMENTS`] physically contiguous runs, ending on a sector boundary. Returns
/// the segments and the bytes they cover (a positive multiple of 512 when `len` is one).
fn physical_segments(
    start: *const u8,
    len: usize,
) -> Result<(ArrayVec<Segment, MAX_SEGMENTS>, usize), Error> {
    let page = PAGE_SIZE as usize;
    let mut segments = ArrayVec::<Segment, MAX_SEGMENTS>::new();
    let mut covered = 0;
    while covered < len.min(MAX_REQUEST_BYTES) {
        let addr = start.wrapping_add(covered);
        let chunk = (page - addr as usize % page).min(len - covered);
        let pa = mm::kernel_ptr_to_phys(addr)
            .ok_or(Error::InvalidArgument("buffer is not mapped"))?
            .as_u64();
        match segments.last_mut() {
            Some(last) if last.phys.0 + u64::from(last.len) == pa => last.len += chunk as u32,
            _ => {
                let segment = Segment {
                    phys: virtio::PhysAddr(pa),
                    len: chunk as u32,
                };
                if segments.try_push(segment).is_err() {
                    break;
                }
            }
        }
        covered += chunk;
    }
    let bytes = covered.min(MAX_REQUEST_BYTES) / SECTOR_SIZE as usize * SECTOR_SIZE as usize;
    if bytes == 0 {
        return Err(Error::InvalidArgument(
            "buffer too fragmented for one sector per request",
        ));
    }
    // Trim the runs to whole sectors.
    let mut excess = covered - bytes;
    while excess > 0 {
        let Some(last) = segments.last_mut() else {
            break;
        };
        let cut = excess.min(last.len as usize);
        last.len -= cut as u32;
        excess -= cut;
        if last.len == 0 {
            segments.pop();
        }
    }
    Ok((segments, bytes))
}
