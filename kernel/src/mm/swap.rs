//! The swap area: 4 KiB slots on a virtio block device, where reclaim writes anonymous pages.
//!
//! The device is the disk named by the `swap=` kernel parameter (`swap=blk1`, or `swap=none`
//! for no swap), else the disk whose virtio serial is `swap` (the runner attaches one). Slot
//! `s` is sectors `8s .. 8s + 8`. Slots are handed out from a bitmap, next-fit, so consecutive
//! evictions land on neighbouring sectors.
//!
//! A slot belongs either to a swap PTE (the page is out) or to a resident frame whose page it
//! still holds a valid copy of (the page came back in and was not written since, so evicting it
//! again costs no I/O). The reclaim code keeps that ownership straight; this module only
//! allocates, frees and moves data.

use super::{PAGE_SIZE, PhysFrame, phys_ptr};
use crate::drivers::virtio::{self as blk, Disk, Pending};
use crate::sync::IrqSpinLock;
use ::virtio::{Error, Operation, SECTOR_SIZE};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;

/// Sectors per slot.
const SECTORS_PER_SLOT: u64 = PAGE_SIZE / SECTOR_SIZE as u64;

/// Serial of the disk used when `swap=` is not given.
pub const SWAP_SERIAL: &str = "swap";

struct SlotMap {
    /// One bit per slot, set when in use.
    words: Vec<u64>,
    total: u32,
    used: u32,
    /// Where the next search starts.
    cursor: u32,
}

impl SlotMap {
    fn allocate(&mut self) -> Option<u32> {
        if self.used == self.total {
            return None;
        }
        let words = self.words.len();
        let start = self.cursor as usize / 64;
        for step in 0..=words {
            let index = (start + step) % words;
            let word = self.words[index];
            if word == u64::MAX {
                continue;
            }
            let bit = (!word).trailing_zeros();
            let slot = index as u32 * 64 + bit;
            if slot >= self.total {
                continue;
            }
            self.words[index] |= 1 << bit;
            self.used += 1;
            self.cursor = slot + 1;
            return Some(slot);
        }
        None
    }

    fn free(&mut self, slot: u32) -> bool {
        let Some(word) = self.words.get_mut(slot as usize / 64) else {
            return false;
        };
        let mask = 1 << (slot % 64);
        if slot >= self.total || *word & mask == 0 {
            return false;
        }
        *word &= !mask;
        self.used -= 1;
        true
    }
}

/// The swap device and its slots.
pub struct SwapArea {
    disk: &'static Disk,
    slots: IrqSpinLock<SlotMap>,
}

/// Counters for the `swap` command.
pub struct SwapCounters {
    /// Pages written to swap.
    pub pages_out: AtomicU64,
    /// Pages read back.
    pub pages_in: AtomicU64,
    /// Reads or writes that failed (the page concerned stayed where it was).
    pub io_errors: AtomicU64,
    /// Write batches submitted (one device notification each).
    pub write_batches: AtomicU64,
}

pub static COUNTERS: SwapCounters = SwapCounters {
    pages_out: AtomicU64::new(0),
    pages_in: AtomicU64::new(0),
    io_errors: AtomicU64::new(0),
    write_batches: AtomicU64::new(0),
};

static AREA: Once<Option<SwapArea>> = Once::new();

/// A snapshot for `swap` and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SwapStats {
    pub slots_total: u32,
    pub slots_used: u32,
    pub pages_out: u64,
    pub pages_in: u64,
    pub io_errors: u64,
    pub write_batches: u64,
}

/// Picks the swap disk (after the virtio disks are up). Logs what it chose.
pub fn init() {
    AREA.call_once(|| {
        let disk = match crate::cmdline::param("swap") {
            Some("none") => {
                log::info!(target: "swap", "swap=none: anonymous memory stays resident");
                return None;
            }
            Some(name) => match blk::disk(name) {
                Some(disk) => disk,
                None => {
                    log::warn!(target: "swap", "swap={name}: no such disk; running without swap");
                    return None;
                }
            },
            None => match blk::disks()
                .iter()
                .find(|disk| disk.serial() == Some(SWAP_SERIAL))
            {
                Some(disk) => disk,
                None => {
                    log::info!(target: "swap", "no disk with serial \"{SWAP_SERIAL}\": running without swap");
                    return None;
                }
            },
        };
        let total = u32::try_from(disk.capacity() / SECTORS_PER_SLOT)
            .unwrap_or(u32::MAX)
            .min(pagetable::SwapEntry::MAX_SLOT + 1);
        log::info!(target: "swap", "{}: {} slots ({} MiB)", disk.name(), total, (u64::from(total) * PAGE_SIZE) >> 20);
        Some(SwapArea {
            disk,
            slots: IrqSpinLock::new(SlotMap {
                words: vec![0; (total as usize).div_ceil(64)],
                total,
                used: 0,
                cursor: 0,
            }),
        })
    });
}

/// The swap area, if there is one.
pub fn area() -> Option<&'static SwapArea> {
    AREA.get().and_then(Option::as_ref)
}

/// Counters and slot use (zero slots without swap).
pub fn stats() -> SwapStats {
    let (slots_total, slots_used) = area().map_or((0, 0), |area| {
        let slots = area.slots.lock();
        (slots.total, slots.used)
    });
    SwapStats {
        slots_total,
        slots_used,
        pages_out: COUNTERS.pages_out.load(Ordering::Relaxed),
        pages_in: COUNTERS.pages_in.load(Ordering::Relaxed),
        io_errors: COUNTERS.io_errors.load(Ordering::Relaxed),
        write_batches: COUNTERS.write_batches.load(Ordering::Relaxed),
    }
}

/// Whether more than half of the swap slots are in use: resident pages then stop keeping
/// their swap copies.
pub fn mostly_full() -> bool {
    area().is_some_and(|area| {
        let slots = area.slots.lock();
        slots.used > slots.total / 2
    })
}

/// Frees `slot` of the swap area (no-op without swap; a slot freed twice is logged).
pub fn free_slot(slot: u32) {
    if let Some(area) = area()
        && !area.slots.lock().free(slot)
    {
        log::error!(target: "swap", "slot {slot} freed but not in use");
    }
}

impl SwapArea {
    /// The device.
    pub fn disk(&self) -> &'static Disk {
        self.disk
    }

    /// A free slot, or `None` when swap is full.
    pub fn allocate(&self) -> Option<u32> {
        self.slots.lock().allocate()
    }

    /// Reads `slot` into `frame`, sleeping until done.
    pub fn read(&self, slot: u32, frame: PhysFrame) -> Result<(), Error> {
        // SAFETY: the caller owns the frame (just allocated for the page coming in); the slice
        // lives until `read` returns, after the device is done with it.
        let buffer = unsafe {
            core::slice::from_raw_parts_mut(phys_ptr::<u8>(frame.start()), PAGE_SIZE as usize)
        };
        let result = self.disk.read(u64::from(slot) * SECTORS_PER_SLOT, buffer);
        match result {
            Ok(()) => COUNTERS.pages_in.fetch_add(1, Ordering::Relaxed),
            Err(_) => COUNTERS.io_errors.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    /// Writes each `(slot, frame)` pair with one device notification and waits for all of
    /// them; `results[i]` is the outcome of `pages[i]`.
    ///
    /// # Safety
    /// Every frame stays allocated and unwritten until this returns.
    pub unsafe fn write_batch(
        &self,
        pages: &[(u32, PhysFrame)],
        results: &mut [Result<(), Error>],
    ) {
        let submitted: Vec<Result<Pending, Error>> = self.disk.batch(|batch| {
            pages
                .iter()
                .map(|&(slot, frame)| {
                    // SAFETY: per this function's contract the frame is stable until we return,
                    // and we wait for every request below.
                    unsafe {
                        batch.submit_frame(
                            Operation::Write,
                            u64::from(slot) * SECTORS_PER_SLOT,
                            frame,
                        )
                    }
                })
                .collect()
        });
        COUNTERS.write_batches.fetch_add(1, Ordering::Relaxed);
        for (submitted, result) in submitted.into_iter().zip(results.iter_mut()) {
            *result = submitted.and_then(|pending| pending.wait().result);
            match result {
                Ok(()) => COUNTERS.pages_out.fetch_add(1, Ordering::Relaxed),
                Err(_) => COUNTERS.io_errors.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
}
