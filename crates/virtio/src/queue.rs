//! The split virtqueue (spec 2.7): descriptor table, available ring and used ring in one DMA
//! allocation, plus the driver's shadow state.
//!
//! The free list and chain lengths live in ordinary memory, never read back from the shared
//! ring, so a device that scribbles on the rings cannot corrupt the driver's bookkeeping; every
//! index the device writes is checked before use.

use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use crate::error::{Error, RingFault};
use crate::hal::{Dma, Hal, PAGE_SIZE, PhysAddr};

/// Bytes of one descriptor (`le64 addr; le32 len; le16 flags; le16 next`).
pub(crate) const DESC_SIZE: usize = 16;
/// Descriptor flag: the chain continues at `next`.
const DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer (otherwise it reads it).
pub(crate) const DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of descriptors.
pub(crate) const DESC_F_INDIRECT: u16 = 4;
/// avail.flags: the driver does not want used-buffer interrupts (without EVENT_IDX).
const AVAIL_F_NO_INTERRUPT: u16 = 1;
/// used.flags: the device does not want available-buffer notifications (without EVENT_IDX).
const USED_F_NO_NOTIFY: u16 = 1;

/// Where the three parts of a ring of `size` entries sit inside its allocation.
///
/// The used ring starts on the next page boundary: that is the legacy layout (QueueAlign =
/// page size, spec 2.7.2 legacy note), and modern devices accept it since they take the three
/// addresses separately. Alignments: descriptors 16, avail 2, used 4 (spec 2.7) all hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingLayout {
    size: u16,
}

impl RingLayout {
    /// The layout of a ring with `size` entries.
    pub const fn new(size: u16) -> Self {
        Self { size }
    }

    const fn entries(self) -> usize {
        self.size as usize
    }

    /// Offset of the available ring (`flags, idx, ring[size], used_event`).
    pub const fn avail_offset(self) -> usize {
        DESC_SIZE * self.entries()
    }

    const fn used_event_offset(self) -> usize {
        self.avail_offset() + 4 + 2 * self.entries()
    }

    /// Offset of the used ring (`flags, idx, ring[size] of {id, len}, avail_event`).
    pub const fn used_offset(self) -> usize {
        (self.avail_offset() + 6 + 2 * self.entries()).next_multiple_of(PAGE_SIZE)
    }

    const fn avail_event_offset(self) -> usize {
        self.used_offset() + 4 + 8 * self.entries()
    }

    /// Bytes the whole ring needs.
    pub const fn total_bytes(self) -> usize {
        self.used_offset() + 6 + 8 * self.entries()
    }
}

/// A descriptor as the driver describes it; the queue adds the chaining.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Descriptor {
    pub(crate) addr: PhysAddr,
    pub(crate) len: u32,
    /// `DESC_F_WRITE` and/or `DESC_F_INDIRECT`.
    pub(crate) flags: u16,
}

/// Writes one descriptor at byte `offset` of `mem` (a ring's table or an indirect table).
fn write_descriptor<H: Hal>(mem: &Dma<H>, offset: usize, desc: Descriptor, next: u16) {
    mem.write_u64(offset, desc.addr.0);
    mem.write_u32(offset + 8, desc.len);
    mem.write_u16(offset + 12, desc.flags);
    mem.write_u16(offset + 14, next);
}

/// Writes `descs` as an indirect descriptor table at byte `offset` of `mem` (spec 2.7.5.3):
/// entries chained by table-local indices.
pub(crate) fn write_indirect_table<H: Hal>(mem: &Dma<H>, offset: usize, descs: &[Descriptor]) {
    for (i, desc) in descs.iter().enumerate() {
        let mut desc = *desc;
        let next = if i + 1 < descs.len() {
            desc.flags |= DESC_F_NEXT;
            (i + 1) as u16
        } else {
            0
        };
        write_descriptor(mem, offset + DESC_SIZE * i, desc, next);
    }
}

/// The "has the other side's event index been crossed" test of spec 2.7.10 / 2.7.7.2:
/// true when `event` lies in the half-open window `[old, new)` modulo 2^16.
pub(crate) const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// One split virtqueue.
pub(crate) struct SplitQueue<H: Hal> {
    mem: Dma<H>,
    layout: RingLayout,
    size: u16,
    event_idx: bool,
    /// Shadow `next` links: the free list and every chain in flight.
    next: Vec<u16>,
    /// Per head descriptor: length of its chain while in flight, 0 otherwise.
    chain_len: Vec<u16>,
    free_head: u16,
    num_free: u16,
    /// The avail.idx value the driver last published.
    avail_idx: u16,
    /// avail.idx at the last notification decision.
    decided_avail_idx: u16,
    /// The next used-ring entry the driver will consume.
    last_used: u16,
    heads_in_flight: u16,
}

impl<H: Hal> SplitQueue<H> {
    /// Allocates a zeroed ring of `size` entries (a power of two).
    pub(crate) fn new(hal: &H, size: u16, event_idx: bool) -> Result<Self, Error> {
        debug_assert!(size.is_power_of_two());
        let layout = RingLayout::new(size);
        let mem = Dma::new(hal, layout.total_bytes())?;
        let mut next = Vec::new();
        let mut chain_len = Vec::new();
        next.try_reserve_exact(usize::from(size))
            .map_err(|_| Error::NoMemory)?;
        chain_len
            .try_reserve_exact(usize::from(size))
            .map_err(|_| Error::NoMemory)?;
        next.resize(usize::from(size), 0);
        chain_len.resize(usize::from(size), 0);
        let mut queue = Self {
            mem,
            layout,
            size,
            event_idx,
            next,
            chain_len,
            free_head: 0,
            num_free: 0,
            avail_idx: 0,
            decided_avail_idx: 0,
            last_used: 0,
            heads_in_flight: 0,
        };
        queue.reset_shadow();
        Ok(queue)
    }

    fn reset_shadow(&mut self) {
        for (i, link) in self.next.iter_mut().enumerate() {
            *link = (i as u16).wrapping_add(1);
        }
        self.chain_len.fill(0);
        self.free_head = 0;
        self.num_free = self.size;
        self.avail_idx = 0;
        self.decided_avail_idx = 0;
        self.last_used = 0;
        self.heads_in_flight = 0;
    }

    /// Makes the ring as good as new (zeroed, everything free) for reuse after its queue or
    /// the whole device was reset.
    pub(crate) fn reset_zeroed(&mut self) {
        self.mem.zero();
        self.reset_shadow();
    }

    pub(crate) fn size(&self) -> u16 {
        self.size
    }

    pub(crate) fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Descriptors in use by chains in flight.
    pub(crate) fn descriptors_in_use(&self) -> u16 {
        self.size - self.num_free
    }

    pub(crate) fn heads_in_flight(&self) -> u16 {
        self.heads_in_flight
    }

    /// Physical address of the ring (descriptor table first).
    pub(crate) fn phys(&self) -> PhysAddr {
        self.mem.phys(0)
    }

    /// The head descriptor the next [`add`](Self::add) will use, if any is free.
    pub(crate) fn next_head(&self) -> Option<u16> {
        (self.num_free > 0).then_some(self.free_head)
    }

    /// Never return the ring memory: the device could not be stopped.
    pub(crate) fn leak(&mut self) {
        self.mem.leak();
    }

    /// Places `descs` as one chain and publishes it in the available ring. The caller checked
    /// `1 <= descs.len() <= num_free()`. Returns the head (equal to `next_head()` before).
    pub(crate) fn add(&mut self, descs: &[Descriptor]) -> u16 {
        let count = descs.len() as u16;
        assert!(count >= 1 && count <= self.num_free, "chain does not fit");
        let head = self.free_head;
        let mut index = head;
        for (i, desc) in descs.iter().enumerate() {
            let next = self.next[usize::from(index)];
            let mut desc = *desc;
            if i + 1 < descs.len() {
                desc.flags |= DESC_F_NEXT;
            }
            write_descriptor(&self.mem, DESC_SIZE * usize::from(index), desc, next);
            if i + 1 < descs.len() {
                index = next;
            } else {
                self.free_head = next;
            }
        }
        self.num_free -= count;
        self.chain_len[usize::from(head)] = count;
        self.heads_in_flight += 1;

        let slot = usize::from(self.avail_idx & (self.size - 1));
        self.mem
            .write_u16(self.layout.avail_offset() + 4 + 2 * slot, head);
        // Spec 2.7.13.3.1: the descriptors and ring entry must be visible to the device
        // before the idx update that exposes them.
        fence(Ordering::Release);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.mem
            .write_u16(self.layout.avail_offset() + 2, self.avail_idx);
        head
    }

    /// Decides whether chains published since the last decision need a notification
    /// (spec 2.7.13.4), and records the decision point.
    pub(crate) fn should_notify(&mut self) -> bool {
        if self.avail_idx == self.decided_avail_idx {
            return false;
        }
        // Spec 2.7.13.4: the idx write must be visible before reading the device's
        // suppression state, or a device going idle could be missed.
        fence(Ordering::SeqCst);
        let old = self.decided_avail_idx;
        self.decided_avail_idx = self.avail_idx;
        if self.event_idx {
            let avail_event = self.mem.read_u16(self.layout.avail_event_offset());
            need_event(avail_event, self.avail_idx, old)
        } else {
            self.mem.read_u16(self.layout.used_offset()) & USED_F_NO_NOTIFY == 0
        }
    }

    /// Takes the next used-ring entry, validating it (spec 2.7.8); frees its chain.
    pub(crate) fn pop_used(&mut self) -> Result<Option<u16>, RingFault> {
        let used_idx = self.mem.read_u16(self.layout.used_offset() + 2);
        if used_idx == self.last_used {
            return Ok(None);
        }
        let advanced = used_idx.wrapping_sub(self.last_used);
        if advanced > self.heads_in_flight {
            return Err(RingFault::UsedIndexJump {
                advanced,
                in_flight: self.heads_in_flight,
            });
        }
        // Spec 2.7.14: read used.idx, then a read barrier, then the entries and buffers.
        fence(Ordering::Acquire);
        let slot = usize::from(self.last_used & (self.size - 1));
        let id = self.mem.read_u32(self.layout.used_offset() + 4 + 8 * slot);
        if id >= u32::from(self.size) {
            return Err(RingFault::UsedIdOutOfRange {
                id,
                size: self.size,
            });
        }
        let head = id as u16;
        let count = self.chain_len[usize::from(head)];
        if count == 0 {
            return Err(RingFault::UsedIdNotInFlight { id });
        }
        let mut last = head;
        for _ in 1..count {
            last = self.next[usize::from(last)];
        }
        self.next[usize::from(last)] = self.free_head;
        self.free_head = head;
        self.num_free += count;
        self.chain_len[usize::from(head)] = 0;
        self.heads_in_flight -= 1;
        self.last_used = self.last_used.wrapping_add(1);
        Ok(Some(head))
    }

    /// Asks the device not to interrupt while the driver is reaping. With EVENT_IDX nothing
    /// is needed: `used_event` is behind the device, so it does not fire until re-armed.
    pub(crate) fn suppress_interrupts(&mut self) {
        if !self.event_idx {
            self.mem
                .write_u16(self.layout.avail_offset(), AVAIL_F_NO_INTERRUPT);
        }
    }

    /// Re-arms used-buffer interrupts for the next completion; returns true when entries
    /// arrived meanwhile (the caller must reap again, or it would wait for an interrupt that
    /// was already suppressed).
    pub(crate) fn rearm_interrupts(&mut self) -> bool {
        if self.event_idx {
            self.mem
                .write_u16(self.layout.used_event_offset(), self.last_used);
        } else {
            self.mem.write_u16(self.layout.avail_offset(), 0);
        }
        // Spec 2.7.10: the re-arm must be visible before re-reading used.idx.
        fence(Ordering::SeqCst);
        self.mem.read_u16(self.layout.used_offset() + 2) != self.last_used
    }

    /// Checks the shadow bookkeeping: every descriptor is either free exactly once or part of
    /// exactly one chain in flight.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) {
        let mut seen = alloc::vec![false; usize::from(self.size)];
        let mut index = self.free_head;
        for _ in 0..self.num_free {
            assert!(
                !seen[usize::from(index)],
                "descriptor {index} twice in free list"
            );
            seen[usize::from(index)] = true;
            index = self.next[usize::from(index)];
        }
        let mut heads = 0;
        for head in 0..self.size {
            let count = self.chain_len[usize::from(head)];
            if count == 0 {
                continue;
            }
            heads += 1;
            let mut index = head;
            for step in 0..count {
                assert!(
                    !seen[usize::from(index)],
                    "descriptor {index} in two places"
                );
                seen[usize::from(index)] = true;
                if step + 1 < count {
                    index = self.next[usize::from(index)];
                }
            }
        }
        assert_eq!(heads, self.heads_in_flight);
        assert!(seen.iter().all(|&s| s), "descriptor leaked");
    }
}
