//! A simulated virtio-mmio block device over a RAM disk, with fault injection.

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::FakeHal;
use crate::features::Features;
use crate::mmio::{INT_CONFIG_CHANGE, INT_USED_BUFFER, MAGIC_VALUE, RegisterAccess, reg, status};
use crate::queue::need_event;

const SECTOR: u64 = 512;
const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const AVAIL_F_NO_INTERRUPT: u16 = 1;

/// What the device does with a write of 1 to QueueReset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueResetBehaviour {
    /// Resets the queue as the spec says: QueueReset and QueueReady then read 0.
    Works,
    /// Ignores it: QueueReset reads 0 and QueueReady stays 1 (QEMU 7.2 virtio-mmio).
    Ignored,
    /// Starts a reset that never finishes: QueueReset keeps reading 1, the queue stalls.
    NeverClears,
}

/// A way for the device to botch one request's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFault {
    /// Write this status byte instead of doing the request.
    Status(u8),
    /// Return the request without touching the status byte.
    NotWritten,
}

/// In which order a batch of requests is returned in the used ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionOrder {
    /// As taken from the available ring.
    InOrder,
    /// Last taken first.
    Reverse,
    /// A permutation drawn from this seed.
    Shuffled(u64),
}

/// What the simulated device looks like.
#[derive(Clone, Debug)]
pub struct FakeDeviceConfig {
    /// MagicValue register.
    pub magic: u32,
    /// 1 = legacy, 2 = modern.
    pub version: u32,
    /// DeviceID register.
    pub device_id: u32,
    /// Offered features.
    pub features: Features,
    /// QueueNumMax of queue 0.
    pub queue_num_max: u32,
    /// Disk size in sectors.
    pub capacity: u64,
    /// `size_max` config field.
    pub size_max: u32,
    /// `seg_max` config field.
    pub seg_max: u32,
    /// `max_discard_sectors` and `max_write_zeroes_sectors`.
    pub max_range_sectors: u32,
    /// The serial returned by GET_ID.
    pub serial: [u8; 20],
}

impl FakeDeviceConfig {
    /// What QEMU 7.2 offers for a modern virtio-blk-device (features 0x0000010130006e54,
    /// QueueNumMax 1024, seg_max 126).
    pub fn modern(capacity: u64) -> Self {
        Self {
            magic: MAGIC_VALUE,
            version: 2,
            device_id: 2,
            features: Features(0x0000_0101_3000_6e54),
            queue_num_max: 1024,
            capacity,
            size_max: 0,
            seg_max: 126,
            max_range_sectors: 1 << 22,
            serial: *b"fake-virtio-blk-0001",
        }
    }

    /// A legacy (version 1) device: the low 32 feature bits of the modern offer plus the
    /// legacy-only NOTIFY_ON_EMPTY and ANY_LAYOUT, which the driver must ignore.
    pub fn legacy(capacity: u64) -> Self {
        Self {
            version: 1,
            features: Features(0x3000_6e54 | 1 << 24 | 1 << 27),
            ..Self::modern(capacity)
        }
    }
}

#[derive(Default)]
struct QueueState {
    num: u32,
    ready: bool,
    pfn: u32,
    align: u32,
    desc: u64,
    driver: u64,
    device: u64,
    last_avail: u16,
    used_idx: u16,
    reset_pending: bool,
}

struct DeviceState {
    config: FakeDeviceConfig,
    memory: Memory,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    guest_page_size: u32,
    queue_sel: u32,
    queue: QueueState,
    interrupt_status: u32,
    config_generation: u32,
    disk: Vec<u8>,
    read_only: bool,
    // Fault injection.
    features_ok_sticks: bool,
    queue_reset: QueueResetBehaviour,
    reset_stuck: bool,
    /// Queue 0 reads as live even after a reset (a device left running, or broken).
    queue_stuck_live: bool,
    /// Queue stopped: DEVICE_NEEDS_RESET or a queue reset that never finishes.
    stalled: bool,
    status_faults: VecDeque<StatusFault>,
    bad_sectors: Vec<u64>,
    used_id_override: Option<u32>,
    used_idx_jump: u16,
    complete_on_notify: bool,
    // Observations.
    notifications: u64,
    interrupts_raised: u64,
    acks: Vec<u32>,
    device_resets: u64,
    queue_resets: u64,
    flushes: u64,
    indirect_chains: u64,
    direct_chains: u64,
    longest_chain: usize,
}

/// A handle on the simulated device; clones share it.
#[derive(Clone)]
pub struct FakeDevice(Rc<RefCell<DeviceState>>);

/// The device's register window, given to the driver as its [`RegisterAccess`].
pub struct FakeMmio(FakeDevice);

/// One descriptor as the device sees it.
#[derive(Clone, Copy, Debug)]
struct Buffer {
    addr: u64,
    len: u32,
    device_writes: bool,
}

/// The device's view of guest memory, through the HAL's address translation.
struct Memory(FakeHal);

impl Memory {
    fn at(&self, addr: u64, len: usize) -> usize {
        self.0.host_address(addr, len)
    }

    fn read_u16(&self, addr: u64) -> u16 {
        let host = self.at(addr, 2);
        // SAFETY: `host_address` checked the bytes lie in a live DMA allocation (rings are
        // only ever there) made by the HAL the driver under test uses.
        unsafe { (host as *const u16).read_volatile() }
    }

    fn write_u16(&self, addr: u64, value: u16) {
        let host = self.at(addr, 2);
        // SAFETY: as for `read_u16`.
        unsafe { (host as *mut u16).write_volatile(value) }
    }

    fn read_u32(&self, addr: u64) -> u32 {
        let host = self.at(addr, 4);
        // SAFETY: as for `read_u16`.
        unsafe { (host as *const u32).read_volatile() }
    }

    fn write_u32(&self, addr: u64, value: u32) {
        let host = self.at(addr, 4);
        // SAFETY: as for `read_u16`.
        unsafe { (host as *mut u32).write_volatile(value) }
    }

    fn read_u64(&self, addr: u64) -> u64 {
        let host = self.at(addr, 8);
        // SAFETY: as for `read_u16`; descriptors and headers are 8-byte aligned.
        unsafe { (host as *const u64).read_volatile() }
    }

    fn read_bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let host = self.at(addr, len);
        let mut out = vec![0u8; len];
        // SAFETY: `addr..addr+len` is a buffer the driver described in a descriptor: DMA
        // memory (bounds checked by `at`) or a live caller buffer, identity-mapped.
        unsafe { core::ptr::copy_nonoverlapping(host as *const u8, out.as_mut_ptr(), len) };
        out
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) {
        let host = self.at(addr, data.len());
        // SAFETY: as for `read_bytes`; the descriptor was marked device-writable.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), host as *mut u8, data.len()) };
    }
}

impl FakeDevice {
    /// A device with an all-zero disk of `config.capacity` sectors, seeing the memory of a
    /// fresh [`FakeHal`] (see [`hal`](Self::hal)).
    pub fn new(config: FakeDeviceConfig) -> Self {
        let disk = vec![0u8; (config.capacity * SECTOR) as usize];
        Self(Rc::new(RefCell::new(DeviceState {
            config,
            memory: Memory(FakeHal::new()),
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            guest_page_size: 0,
            queue_sel: 0,
            queue: QueueState::default(),
            interrupt_status: 0,
            config_generation: 0,
            disk,
            read_only: false,
            features_ok_sticks: true,
            queue_reset: QueueResetBehaviour::Works,
            reset_stuck: false,
            queue_stuck_live: false,
            stalled: false,
            status_faults: VecDeque::new(),
            bad_sectors: Vec::new(),
            used_id_override: None,
            used_idx_jump: 0,
            complete_on_notify: false,
            notifications: 0,
            interrupts_raised: 0,
            acks: Vec::new(),
            device_resets: 0,
            queue_resets: 0,
            flushes: 0,
            indirect_chains: 0,
            direct_chains: 0,
            longest_chain: 0,
        })))
    }

    /// The DMA allocator whose memory this device can reach: give it to the driver.
    pub fn hal(&self) -> FakeHal {
        self.0.borrow().memory.0.clone()
    }

    /// The register window to hand to [`probe`](crate::probe).
    pub fn mmio(&self) -> FakeMmio {
        FakeMmio(self.clone())
    }

    /// Completes up to `count` requests in order; returns how many.
    pub fn process(&self, count: usize) -> usize {
        self.process_in(count, CompletionOrder::InOrder)
    }

    /// Takes up to `count` requests from the available ring, performs them, and returns
    /// them in the used ring in `order`, raising an interrupt as the suppression state asks.
    pub fn process_in(&self, count: usize, order: CompletionOrder) -> usize {
        self.0.borrow_mut().process(count, order)
    }

    /// Requests in the available ring not yet taken.
    pub fn pending(&self) -> usize {
        let state = self.0.borrow();
        match state.rings() {
            Some((_, avail, _)) => usize::from(
                state
                    .memory
                    .read_u16(avail + 2)
                    .wrapping_sub(state.queue.last_avail),
            ),
            None => 0,
        }
    }

    /// Writes `data` to the disk at `sector` (test setup).
    pub fn write_disk(&self, sector: u64, data: &[u8]) {
        let mut state = self.0.borrow_mut();
        let start = (sector * SECTOR) as usize;
        state.disk[start..start + data.len()].copy_from_slice(data);
    }

    /// Reads `len` bytes of the disk at `sector`.
    pub fn read_disk(&self, sector: u64, len: usize) -> Vec<u8> {
        let state = self.0.borrow();
        let start = (sector * SECTOR) as usize;
        state.disk[start..start + len].to_vec()
    }

    /// Makes writes fail with IOERR (and offers VIRTIO_BLK_F_RO).
    pub fn set_read_only(&self) {
        let mut state = self.0.borrow_mut();
        state.read_only = true;
        state.config.features = state.config.features | Features::BLK_RO;
    }

    /// Whether FEATURES_OK sticks when the driver sets it.
    pub fn set_features_ok_sticks(&self, sticks: bool) {
        self.0.borrow_mut().features_ok_sticks = sticks;
    }

    /// Makes queue 0 read as live (QueueReady / QueuePFN non-zero), even after resets.
    pub fn preset_queue_live(&self) {
        let mut state = self.0.borrow_mut();
        state.queue_stuck_live = true;
        state.mark_queue_live();
    }

    /// Chooses what a QueueReset write does.
    pub fn set_queue_reset(&self, behaviour: QueueResetBehaviour) {
        self.0.borrow_mut().queue_reset = behaviour;
    }

    /// Makes a device reset (Status = 0) never complete.
    pub fn set_reset_stuck(&self, stuck: bool) {
        self.0.borrow_mut().reset_stuck = stuck;
    }

    /// Sets DEVICE_NEEDS_RESET, stops the queue and raises a configuration interrupt.
    pub fn inject_needs_reset(&self) {
        let mut state = self.0.borrow_mut();
        state.status |= status::DEVICE_NEEDS_RESET;
        state.stalled = true;
        state.raise(INT_CONFIG_CHANGE);
    }

    /// Changes the capacity (growing or shrinking the disk) and raises a configuration
    /// interrupt.
    pub fn set_capacity(&self, sectors: u64) {
        let mut state = self.0.borrow_mut();
        state.config.capacity = sectors;
        state.disk.resize((sectors * SECTOR) as usize, 0);
        state.config_generation += 1;
        state.raise(INT_CONFIG_CHANGE);
    }

    /// The next requests taken get these statuses, in order.
    pub fn inject_status(&self, fault: StatusFault) {
        self.0.borrow_mut().status_faults.push_back(fault);
    }

    /// Requests touching `sector` fail with IOERR (a failing disk backend).
    pub fn add_bad_sector(&self, sector: u64) {
        self.0.borrow_mut().bad_sectors.push(sector);
    }

    /// The next used entry carries `id` instead of the real head.
    pub fn inject_used_id(&self, id: u32) {
        self.0.borrow_mut().used_id_override = Some(id);
    }

    /// The next used.idx update moves `extra` entries further than it wrote.
    pub fn inject_used_idx_jump(&self, extra: u16) {
        self.0.borrow_mut().used_idx_jump = extra;
    }

    /// Sets InterruptStatus bits without cause (spurious or undefined bits).
    pub fn raise_interrupt_bits(&self, bits: u32) {
        self.0.borrow_mut().interrupt_status |= bits;
    }

    /// Completes everything available on each notification (as QEMU does synchronously).
    pub fn set_complete_on_notify(&self, enabled: bool) {
        self.0.borrow_mut().complete_on_notify = enabled;
    }

    /// QueueNotify writes seen.
    pub fn notifications(&self) -> u64 {
        self.0.borrow().notifications
    }

    /// Used-buffer interrupts raised (configuration interrupts not counted).
    pub fn interrupts_raised(&self) -> u64 {
        self.0.borrow().interrupts_raised
    }

    /// Every value written to InterruptACK, in order.
    pub fn acks(&self) -> Vec<u32> {
        self.0.borrow().acks.clone()
    }

    /// InterruptStatus now.
    pub fn interrupt_status(&self) -> u32 {
        self.0.borrow().interrupt_status
    }

    /// The Status register now.
    pub fn status(&self) -> u32 {
        self.0.borrow().status
    }

    /// Completed device resets.
    pub fn device_resets(&self) -> u64 {
        self.0.borrow().device_resets
    }

    /// Completed queue resets.
    pub fn queue_resets(&self) -> u64 {
        self.0.borrow().queue_resets
    }

    /// FLUSH requests performed.
    pub fn flushes(&self) -> u64 {
        self.0.borrow().flushes
    }

    /// QueueNum of queue 0 as the driver set it.
    pub fn queue_size(&self) -> u32 {
        self.0.borrow().queue.num
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> Features {
        Features(self.0.borrow().driver_features)
    }

    /// Chains taken that used an indirect table, and that did not.
    pub fn chains_seen(&self) -> (u64, u64) {
        let state = self.0.borrow();
        (state.indirect_chains, state.direct_chains)
    }

    /// Most descriptors in one request (counting those in an indirect table).
    pub fn longest_chain(&self) -> usize {
        self.0.borrow().longest_chain
    }
}

impl DeviceState {
    fn modern(&self) -> bool {
        self.config.version == 2
    }

    fn negotiated(&self, feature: Features) -> bool {
        Features(self.driver_features).contains(feature)
    }

    fn raise(&mut self, bits: u32) {
        self.interrupt_status |= bits;
        if bits & INT_USED_BUFFER != 0 {
            self.interrupts_raised += 1;
        }
    }

    fn mark_queue_live(&mut self) {
        self.queue.ready = true;
        self.queue.pfn = 1;
    }

    fn reset(&mut self) {
        self.status = 0;
        self.driver_features = 0;
        self.queue = QueueState::default();
        if self.queue_stuck_live {
            self.mark_queue_live();
        }
        self.interrupt_status = 0;
        self.stalled = false;
        self.device_resets += 1;
    }

    /// Descriptor table, available ring and used ring addresses of a live queue.
    fn rings(&self) -> Option<(u64, u64, u64)> {
        let queue = &self.queue;
        if self.modern() {
            queue
                .ready
                .then_some((queue.desc, queue.driver, queue.device))
        } else if queue.pfn != 0 && queue.num != 0 {
            let desc = u64::from(queue.pfn) * u64::from(self.guest_page_size);
            let avail = desc + 16 * u64::from(queue.num);
            let used =
                (avail + 6 + 2 * u64::from(queue.num)).next_multiple_of(u64::from(queue.align));
            Some((desc, avail, used))
        } else {
            None
        }
    }

    fn running(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && !self.stalled && self.rings().is_some()
    }

    fn process(&mut self, count: usize, order: CompletionOrder) -> usize {
        if !self.running() {
            return 0;
        }
        let Some((desc, avail, used)) = self.rings() else {
            return 0;
        };
        let num = self.queue.num as u16;
        let mut done = Vec::new();
        while done.len() < count {
            let avail_idx = self.memory.read_u16(avail + 2);
            if avail_idx == self.queue.last_avail {
                break;
            }
            let slot = u64::from(self.queue.last_avail % num);
            let head = self.memory.read_u16(avail + 4 + 2 * slot);
            self.queue.last_avail = self.queue.last_avail.wrapping_add(1);
            let chain = self.walk(desc, num, head);
            let written = self.execute(&chain);
            done.push((head, written));
        }
        if self.negotiated(Features::EVENT_IDX) {
            // Like QEMU: ask to be notified when the driver adds past what was taken.
            self.memory
                .write_u16(used + 4 + 8 * u64::from(num), self.queue.last_avail);
        }
        if done.is_empty() {
            return 0;
        }
        match order {
            CompletionOrder::InOrder => {}
            CompletionOrder::Reverse => done.reverse(),
            CompletionOrder::Shuffled(seed) => shuffle(&mut done, seed),
        }
        let old = self.queue.used_idx;
        for (i, &(head, written)) in done.iter().enumerate() {
            let slot = u64::from(old.wrapping_add(i as u16) % num);
            let id = self.used_id_override.take().unwrap_or(u32::from(head));
            self.memory.write_u32(used + 4 + 8 * slot, id);
            self.memory.write_u32(used + 8 + 8 * slot, written);
        }
        let new = old
            .wrapping_add(done.len() as u16)
            .wrapping_add(core::mem::take(&mut self.used_idx_jump));
        self.queue.used_idx = new;
        self.memory.write_u16(used + 2, new);
        let interrupt = if self.negotiated(Features::EVENT_IDX) {
            let used_event = self.memory.read_u16(avail + 4 + 2 * u64::from(num));
            need_event(used_event, new, old)
        } else {
            self.memory.read_u16(avail) & AVAIL_F_NO_INTERRUPT == 0
        };
        if interrupt {
            self.raise(INT_USED_BUFFER);
        }
        done.len()
    }

    /// Follows a chain from `head`, checking every rule of spec 2.7.5 a device relies on.
    fn walk(&mut self, desc: u64, num: u16, head: u16) -> Vec<Buffer> {
        assert!(head < num, "driver bug: head {head} outside queue of {num}");
        let read = |table: u64, index: u16| {
            let at = table + 16 * u64::from(index);
            (
                self.memory.read_u64(at),
                self.memory.read_u32(at + 8),
                self.memory.read_u16(at + 12),
                self.memory.read_u16(at + 14),
            )
        };
        let mut buffers = Vec::new();
        let (addr, len, flags, _) = read(desc, head);
        if flags & DESC_F_INDIRECT != 0 {
            assert!(
                self.negotiated(Features::INDIRECT_DESC),
                "driver bug: indirect descriptor without VIRTIO_F_INDIRECT_DESC"
            );
            assert_eq!(
                flags & (DESC_F_NEXT | DESC_F_WRITE),
                0,
                "driver bug: indirect with NEXT/WRITE"
            );
            assert!(
                len > 0 && len % 16 == 0,
                "driver bug: indirect table length {len}"
            );
            let entries = (len / 16) as u16;
            assert!(
                entries <= num,
                "driver bug: indirect chain longer than the queue"
            );
            let mut index = 0u16;
            loop {
                let (addr, len, flags, next) = read(addr, index);
                assert_eq!(
                    flags & DESC_F_INDIRECT,
                    0,
                    "driver bug: nested indirect table"
                );
                buffers.push(Buffer {
                    addr,
                    len,
                    device_writes: flags & DESC_F_WRITE != 0,
                });
                if flags & DESC_F_NEXT == 0 {
                    break;
                }
                assert!(
                    next < entries,
                    "driver bug: indirect next {next} outside the table"
                );
                assert!(
                    buffers.len() < usize::from(entries),
                    "driver bug: loop in indirect table"
                );
                index = next;
            }
            self.indirect_chains += 1;
        } else {
            let mut index = head;
            loop {
                let (addr, len, flags, next) = read(desc, index);
                assert_eq!(
                    flags & DESC_F_INDIRECT,
                    0,
                    "driver bug: indirect inside a chain"
                );
                buffers.push(Buffer {
                    addr,
                    len,
                    device_writes: flags & DESC_F_WRITE != 0,
                });
                if flags & DESC_F_NEXT == 0 {
                    break;
                }
                assert!(next < num, "driver bug: next {next} outside queue");
                assert!(
                    buffers.len() < usize::from(num),
                    "driver bug: chain loops or exceeds queue"
                );
                index = next;
            }
            self.direct_chains += 1;
        }
        self.longest_chain = self.longest_chain.max(buffers.len());
        buffers
    }

    /// Performs one block request; returns the bytes it wrote into device-writable buffers.
    fn execute(&mut self, chain: &[Buffer]) -> u32 {
        assert!(
            chain.len() >= 2,
            "driver bug: block request without header and status"
        );
        let header = chain[0];
        let status_buffer = chain[chain.len() - 1];
        assert!(
            !header.device_writes && header.len == 16,
            "driver bug: bad request header"
        );
        assert!(
            status_buffer.device_writes && status_buffer.len == 1,
            "driver bug: bad status descriptor"
        );
        let data = &chain[1..chain.len() - 1];
        let request_type = self.memory.read_u32(header.addr);
        let sector = self.memory.read_u64(header.addr + 8);
        let fault = self.status_faults.pop_front();
        let (status, written) = match fault {
            Some(StatusFault::NotWritten) => return 0,
            Some(StatusFault::Status(byte)) => (byte, 0),
            None => self.perform(request_type, sector, data),
        };
        self.memory.write_bytes(status_buffer.addr, &[status]);
        written + 1
    }

    fn range_ok(&self, sector: u64, sectors: u64) -> bool {
        sector
            .checked_add(sectors)
            .is_some_and(|end| end <= self.config.capacity)
            && !self
                .bad_sectors
                .iter()
                .any(|&bad| bad >= sector && bad < sector + sectors)
    }

    fn perform(&mut self, request_type: u32, sector: u64, data: &[Buffer]) -> (u8, u32) {
        const OK: u8 = 0;
        const IOERR: u8 = 1;
        const UNSUPP: u8 = 2;
        match request_type {
            0 | 1 => {
                let reading = request_type == 0;
                assert!(
                    data.iter().all(|b| b.device_writes == reading),
                    "driver bug: data descriptor direction"
                );
                assert!(!data.is_empty(), "driver bug: read/write without data");
                if let Some(size_max) = (self.negotiated(Features::BLK_SIZE_MAX)
                    && self.config.size_max > 0)
                    .then_some(self.config.size_max)
                {
                    assert!(
                        data.iter().all(|b| b.len <= size_max),
                        "driver bug: segment above size_max"
                    );
                }
                if self.negotiated(Features::BLK_SEG_MAX) {
                    assert!(
                        data.len() <= self.config.seg_max as usize,
                        "driver bug: more than seg_max segments"
                    );
                }
                let total: u64 = data.iter().map(|b| u64::from(b.len)).sum();
                assert_eq!(
                    total % SECTOR,
                    0,
                    "driver bug: length not a multiple of 512"
                );
                if !self.range_ok(sector, total / SECTOR) || (!reading && self.read_only) {
                    return (IOERR, 0);
                }
                let mut offset = (sector * SECTOR) as usize;
                for buffer in data {
                    let len = buffer.len as usize;
                    if reading {
                        self.memory
                            .write_bytes(buffer.addr, &self.disk[offset..offset + len]);
                    } else {
                        let bytes = self.memory.read_bytes(buffer.addr, len);
                        self.disk[offset..offset + len].copy_from_slice(&bytes);
                    }
                    offset += len;
                }
                (OK, if reading { total as u32 } else { 0 })
            }
            4 => {
                if !self.negotiated(Features::BLK_FLUSH) {
                    return (UNSUPP, 0);
                }
                assert!(data.is_empty(), "driver bug: flush with data");
                assert_eq!(sector, 0, "driver bug: flush sector must be 0");
                self.flushes += 1;
                (OK, 0)
            }
            8 => {
                assert!(
                    data.len() == 1 && data[0].device_writes && data[0].len == 20,
                    "driver bug: get-id buffer"
                );
                self.memory.write_bytes(data[0].addr, &self.config.serial);
                (OK, 20)
            }
            11 | 13 => {
                let feature = if request_type == 11 {
                    Features::BLK_DISCARD
                } else {
                    Features::BLK_WRITE_ZEROES
                };
                if !self.negotiated(feature) {
                    return (UNSUPP, 0);
                }
                assert!(
                    data.len() == 1 && !data[0].device_writes && data[0].len == 16,
                    "driver bug: discard/write-zeroes segment"
                );
                let start = self.memory.read_u64(data[0].addr);
                let sectors = u64::from(self.memory.read_u32(data[0].addr + 8));
                assert!(
                    sectors <= u64::from(self.config.max_range_sectors),
                    "driver bug: range above the device's maximum"
                );
                if !self.range_ok(start, sectors) || self.read_only {
                    return (IOERR, 0);
                }
                let from = (start * SECTOR) as usize;
                self.disk[from..from + (sectors * SECTOR) as usize].fill(0);
                (OK, 0)
            }
            _ => (UNSUPP, 0),
        }
    }

    fn config_bytes(&self) -> [u8; 64] {
        let mut bytes = [0u8; 64];
        let config = &self.config;
        bytes[0..8].copy_from_slice(&config.capacity.to_le_bytes());
        bytes[8..12].copy_from_slice(&config.size_max.to_le_bytes());
        bytes[12..16].copy_from_slice(&config.seg_max.to_le_bytes());
        bytes[20..24].copy_from_slice(&4096u32.to_le_bytes());
        bytes[24] = 3; // physical_block_exp: 4 KiB physical blocks
        bytes[26..28].copy_from_slice(&8u16.to_le_bytes());
        bytes[32] = 1; // writeback cache
        for offset in [36, 48] {
            bytes[offset..offset + 4].copy_from_slice(&config.max_range_sectors.to_le_bytes());
            bytes[offset + 4..offset + 8].copy_from_slice(&1u32.to_le_bytes());
        }
        bytes[56] = 1;
        bytes
    }

    fn read_register(&mut self, offset: usize) -> u32 {
        let modern = self.modern();
        match offset {
            reg::MAGIC => self.config.magic,
            reg::VERSION => self.config.version,
            reg::DEVICE_ID => self.config.device_id,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.config.features.0 as u32,
                1 if modern => (self.config.features.0 >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => {
                assert!(
                    modern || self.queue.pfn == 0,
                    "driver bug: QueueNumMax read on a live legacy queue"
                );
                if self.queue_sel == 0 {
                    self.config.queue_num_max
                } else {
                    0
                }
            }
            reg::QUEUE_PFN if !modern => self.queue.pfn,
            reg::QUEUE_READY if modern => u32::from(self.queue.ready),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::QUEUE_RESET if modern => u32::from(self.queue.reset_pending),
            reg::CONFIG_GENERATION if modern => self.config_generation,
            _ if offset >= reg::CONFIG && offset + 4 <= reg::CONFIG + 64 => {
                let bytes = self.config_bytes();
                let at = offset - reg::CONFIG;
                u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
            }
            _ => panic!(
                "driver bug: read of register {offset:#x} (version {})",
                self.config.version
            ),
        }
    }

    fn assert_queue_not_live(&self, what: &str) {
        assert!(
            !self.queue.ready,
            "driver bug: {what} changed while QueueReady is set"
        );
    }

    fn write_register(&mut self, offset: usize, value: u32) {
        let modern = self.modern();
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => {
                assert_eq!(
                    self.status & status::FEATURES_OK,
                    0,
                    "driver bug: features after FEATURES_OK"
                );
                let shift = 32 * u64::from(self.driver_features_sel.min(1));
                let mask = 0xffff_ffffu64 << shift;
                self.driver_features = (self.driver_features & !mask) | (u64::from(value) << shift);
            }
            reg::GUEST_PAGE_SIZE if !modern => self.guest_page_size = value,
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM => {
                self.assert_queue_not_live("QueueNum");
                assert!(
                    value <= self.config.queue_num_max,
                    "driver bug: QueueNum above QueueNumMax"
                );
                self.queue.num = value;
            }
            reg::QUEUE_ALIGN if !modern => self.queue.align = value,
            reg::QUEUE_PFN if !modern => {
                if value == 0 {
                    // QEMU resets the whole device when a legacy queue is deactivated.
                    self.reset();
                } else {
                    self.queue.pfn = value;
                }
            }
            reg::QUEUE_READY if modern => {
                if value == 1 {
                    assert!(
                        self.queue.num.is_power_of_two(),
                        "driver bug: queue enabled without a size"
                    );
                }
                self.queue.ready = value == 1;
            }
            reg::QUEUE_NOTIFY => {
                assert_eq!(value, 0, "driver bug: notify of queue {value}");
                self.notifications += 1;
                if self.complete_on_notify {
                    self.process(usize::MAX, CompletionOrder::InOrder);
                }
            }
            reg::INTERRUPT_ACK => {
                self.acks.push(value);
                self.interrupt_status &= !value;
            }
            reg::STATUS => self.write_status(value),
            reg::QUEUE_DESC_LOW | reg::QUEUE_DESC_HIGH if modern => {
                self.assert_queue_not_live("QueueDesc");
                set_half(&mut self.queue.desc, offset == reg::QUEUE_DESC_HIGH, value);
            }
            reg::QUEUE_DRIVER_LOW | reg::QUEUE_DRIVER_HIGH if modern => {
                self.assert_queue_not_live("QueueDriver");
                set_half(
                    &mut self.queue.driver,
                    offset == reg::QUEUE_DRIVER_HIGH,
                    value,
                );
            }
            reg::QUEUE_DEVICE_LOW | reg::QUEUE_DEVICE_HIGH if modern => {
                self.assert_queue_not_live("QueueDevice");
                set_half(
                    &mut self.queue.device,
                    offset == reg::QUEUE_DEVICE_HIGH,
                    value,
                );
            }
            reg::QUEUE_RESET if modern => {
                assert_eq!(value, 1, "driver bug: QueueReset takes only 1");
                match self.queue_reset {
                    QueueResetBehaviour::Works => {
                        self.queue = QueueState::default();
                        self.queue_resets += 1;
                    }
                    QueueResetBehaviour::Ignored => {}
                    QueueResetBehaviour::NeverClears => {
                        self.queue.reset_pending = true;
                        self.stalled = true;
                    }
                }
            }
            _ => panic!(
                "driver bug: write {value:#x} to register {offset:#x} (version {})",
                self.config.version
            ),
        }
    }

    fn write_status(&mut self, value: u32) {
        if value == 0 {
            if !self.reset_stuck {
                self.reset();
            }
            return;
        }
        assert_eq!(
            value & self.status,
            self.status,
            "driver bug: status bits cleared without reset"
        );
        let mut value = value;
        let newly_features_ok = value & !self.status & status::FEATURES_OK != 0;
        if newly_features_ok {
            assert!(self.modern(), "driver bug: FEATURES_OK on a legacy device");
            let offered = self.config.features;
            let accepted = Features(self.driver_features);
            let valid = offered.contains(accepted) && accepted.contains(Features::VERSION_1);
            if !(valid && self.features_ok_sticks) {
                value &= !status::FEATURES_OK;
            }
        }
        if value & status::DRIVER_OK != 0 && self.modern() {
            assert!(
                value & status::FEATURES_OK != 0 || value & status::FAILED != 0,
                "driver bug: DRIVER_OK without FEATURES_OK"
            );
        }
        self.status = value;
    }
}

fn set_half(target: &mut u64, high: bool, value: u32) {
    if high {
        *target = (*target & 0xffff_ffff) | (u64::from(value) << 32);
    } else {
        *target = (*target & !0xffff_ffff) | u64::from(value);
    }
}

/// Fisher-Yates with xorshift64 (no dependency, deterministic per seed).
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed | 1;
    for i in (1..items.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        items.swap(i, (state % (i as u64 + 1)) as usize);
    }
}

impl RegisterAccess for FakeMmio {
    fn read32(&self, offset: usize) -> u32 {
        assert_eq!(offset % 4, 0, "driver bug: unaligned register read");
        self.0.0.borrow_mut().read_register(offset)
    }

    fn write32(&mut self, offset: usize, value: u32) {
        assert_eq!(offset % 4, 0, "driver bug: unaligned register write");
        self.0.0.borrow_mut().write_register(offset, value);
    }

    fn read8(&self, offset: usize) -> u8 {
        let state = self.0.0.borrow();
        assert!(
            (reg::CONFIG..reg::CONFIG + 64).contains(&offset),
            "driver bug: byte read of {offset:#x}"
        );
        state.config_bytes()[offset - reg::CONFIG]
    }

    fn read16(&self, offset: usize) -> u16 {
        let state = self.0.0.borrow();
        assert!(
            offset >= reg::CONFIG && offset + 2 <= reg::CONFIG + 64 && offset.is_multiple_of(2),
            "driver bug: 16-bit read of {offset:#x}"
        );
        let at = offset - reg::CONFIG;
        let bytes = state.config_bytes();
        u16::from_le_bytes([bytes[at], bytes[at + 1]])
    }
}
