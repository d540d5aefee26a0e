//! The six shapes of the kernel's `blk bench`, driven through Linux's block layer with O_DIRECT:
//! depth 1 with `pread64`/`pwrite64`, deeper queues with Linux native AIO.

use crate::sys::{self, AioContext, AioOp, Errno, Fd, IoEvent, Iocb};

/// Requests in one run of a random shape (16 MiB at 4 KiB).
const RANDOM_REQUESTS: u64 = 4096;
/// Deepest queue a shape uses.
const MAX_DEPTH: usize = 32;
/// Largest request a shape makes.
const MAX_BLOCK: usize = 1 << 20;
/// Bytes of I/O buffer the shapes need: one largest request, or one 4 KiB slot per request in
/// flight, whichever is more.
pub const BUFFER_BYTES: usize = if MAX_BLOCK > MAX_DEPTH * 4096 {
    MAX_BLOCK
} else {
    MAX_DEPTH * 4096
};
/// `EIO`, reported for a transfer shorter than asked.
const EIO: i32 = 5;
/// `EAGAIN`, reported if `io_submit` takes nothing.
const EAGAIN: i32 = 11;

/// Where a shape's requests go.
#[derive(Clone, Copy)]
enum Pattern {
    /// `RANDOM_REQUESTS` block-aligned offsets anywhere on the disk, from a fixed seed.
    Random { seed: u64 },
    /// Every block of the disk once, in order.
    Sequential,
}

/// One benchmark shape.
pub struct Shape {
    /// The name the kernel's bench uses.
    pub name: &'static str,
    block: usize,
    depth: usize,
    op: AioOp,
    pattern: Pattern,
}

/// The shapes, in the order they run.
pub const SHAPES: [Shape; 6] = [
    Shape {
        name: "rand4k_qd1_read",
        block: 4096,
        depth: 1,
        op: AioOp::Read,
        pattern: Pattern::Random { seed: 0x5eed_0001 },
    },
    Shape {
        name: "rand4k_qd32_read",
        block: 4096,
        depth: 32,
        op: AioOp::Read,
        pattern: Pattern::Random { seed: 0x5eed_0002 },
    },
    Shape {
        name: "seq4k_read",
        block: 4096,
        depth: 1,
        op: AioOp::Read,
        pattern: Pattern::Sequential,
    },
    Shape {
        name: "seq64k_read",
        block: 64 << 10,
        depth: 1,
        op: AioOp::Read,
        pattern: Pattern::Sequential,
    },
    Shape {
        name: "seq1m_read",
        block: 1 << 20,
        depth: 1,
        op: AioOp::Read,
        pattern: Pattern::Sequential,
    },
    Shape {
        name: "rand4k_qd1_write",
        block: 4096,
        depth: 1,
        op: AioOp::Write,
        pattern: Pattern::Random { seed: 0x5eed_0006 },
    },
];

/// One run's figures; the host turns them into IOPS and MiB/s.
pub struct Measurement {
    pub requests: u64,
    pub bytes: u64,
    /// Guest CLOCK_MONOTONIC nanoseconds from the first submission to the last completion.
    pub ns: u64,
}

/// Byte offsets of a shape's requests.
struct Offsets {
    pattern: Pattern,
    state: u64,
    blocks: u64,
    block: u64,
    next_index: u64,
    count: u64,
}

impl Offsets {
    fn new(pattern: Pattern, block: usize, disk_bytes: u64) -> Self {
        let blocks = disk_bytes / block as u64;
        let (state, count) = match pattern {
            Pattern::Random { seed } => (seed, RANDOM_REQUESTS),
            Pattern::Sequential => (0, blocks),
        };
        Self {
            pattern,
            state,
            blocks,
            block: block as u64,
            next_index: 0,
            count,
        }
    }
}

impl Iterator for Offsets {
    type Item = u64;

    fn next(&mut self) -> Option<u64> {
        if self.next_index == self.count || self.blocks == 0 {
            return None;
        }
        let block_index = match self.pattern {
            Pattern::Random { .. } => {
                // xorshift64*: cheap, and the same sequence on every run.
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                self.state.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.blocks
            }
            Pattern::Sequential => self.next_index,
        };
        self.next_index += 1;
        Some(block_index * self.block)
    }
}

impl Shape {
    /// Runs the shape once against `disk` (`disk_bytes` long), using `buffers`.
    pub fn run(
        &self,
        disk: &Fd,
        disk_bytes: u64,
        buffers: &mut [u8],
    ) -> Result<Measurement, Errno> {
        let offsets = Offsets::new(self.pattern, self.block, disk_bytes);
        let start = sys::clock_ns(sys::CLOCK_MONOTONIC);
        let requests = if self.depth == 1 {
            self.run_synchronous(disk, offsets, &mut buffers[..self.block])?
        } else {
            self.run_queued(disk, offsets, buffers)?
        };
        let ns = sys::clock_ns(sys::CLOCK_MONOTONIC) - start;
        Ok(Measurement {
            requests,
            bytes: requests * self.block as u64,
            ns,
        })
    }

    /// One request at a time with `pread64`/`pwrite64`.
    fn run_synchronous(
        &self,
        disk: &Fd,
        offsets: Offsets,
        buffer: &mut [u8],
    ) -> Result<u64, Errno> {
        let mut requests = 0;
        for offset in offsets {
            let done = match self.op {
                AioOp::Read => sys::pread(disk, buffer, offset)?,
                AioOp::Write => sys::pwrite(disk, buffer, offset)?,
            };
            if done != buffer.len() {
                return Err(Errno(EIO));
            }
            requests += 1;
        }
        Ok(requests)
    }

    /// `self.depth` requests in flight through Linux AIO; each completion is replaced at once
    /// by the next request, using the completed request's buffer slot.
    fn run_queued(
        &self,
        disk: &Fd,
        mut offsets: Offsets,
        buffers: &mut [u8],
    ) -> Result<u64, Errno> {
        let depth = self.depth.min(MAX_DEPTH);
        let context = AioContext::new(depth)?;
        let slot_base = buffers.as_mut_ptr();
        let request = |slot: usize, offset: u64| {
            // Slot `slot` is bytes [slot * block, (slot + 1) * block) of `buffers`.
            let buffer = slot_base.wrapping_add(slot * self.block);
            Iocb::new(self.op, disk, buffer, self.block, offset, slot as u64)
        };
        let mut batch = [Iocb::default(); MAX_DEPTH];
        let mut batched = 0;
        for (slot, offset) in (0..depth).zip(offsets.by_ref()) {
            batch[slot] = request(slot, offset);
            batched += 1;
        }
        let mut in_flight = 0;
        let mut completed = 0;
        let mut events = [IoEvent::default(); MAX_DEPTH];
        loop {
            // SAFETY: every slot's buffer lies inside `buffers` (depth * block <= BUFFER_BYTES),
            // which this function borrows exclusively and does not touch while requests are in
            // flight; each slot has at most one request at a time, and `context` is dropped
            // (waiting for stragglers) before `buffers` is released, even on an error return.
            in_flight += unsafe { submit_all(&context, &batch[..batched]) }?;
            batched = 0;
            if in_flight == 0 {
                return Ok(completed);
            }
            let reaped = context.reap(&mut events)?;
            for event in &events[..reaped] {
                in_flight -= 1;
                if event.res < 0 {
                    return Err(Errno(-event.res as i32));
                }
                if event.res as usize != self.block {
                    return Err(Errno(EIO));
                }
                completed += 1;
                if let Some(offset) = offsets.next() {
                    batch[batched] = request(event.data as usize, offset);
                    batched += 1;
                }
            }
        }
    }
}

/// Submits every request in `batch`, however many calls that takes.
///
/// # Safety
/// As [`AioContext::submit`].
unsafe fn submit_all(context: &AioContext, mut batch: &[Iocb]) -> Result<usize, Errno> {
    let total = batch.len();
    while !batch.is_empty() {
        // SAFETY: the caller's promise, passed on.
        let taken = unsafe { context.submit(batch) }?;
        if taken == 0 {
            return Err(Errno(EAGAIN));
        }
        batch = &batch[taken..];
    }
    Ok(total)
}
