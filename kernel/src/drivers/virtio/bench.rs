//! `blk bench`: what the driver achieves for six request shapes over the whole disk, as one
//! line per shape:
//! `bench=NAME iops=N mib_s=N insns_per_req=N notifies_per_req=N irqs_per_req=N`.
//!
//! Time is guest time (the generic counter), measured with the timer stopped
//! ([`time::pause_timer`]) so that nothing but the benchmark runs. Without `-icount` guest time
//! follows the host clock: that run gives `iops` and `mib_s`. Under `-icount shift=0,sleep=off`
//! one instruction is one nanosecond and, with no timer armed, an idle CPU does not advance
//! guest time, so elapsed guest nanoseconds per request are the instructions the guest executed
//! per request (driver, interrupt handling, benchmark loop): that run gives `insns_per_req`.
//! The counters come from the driver: QueueNotify writes and device interrupts handled, per
//! request.
//!
//! The write shape overwrites random 4 KiB blocks: run it on a scratch disk.

use alloc::vec::Vec;
use core::fmt::{self, Write};

use virtio::{Error, SECTOR_SIZE};

use super::block::{Disk, DmaBuffer, Pending, Request};
use crate::arch::cpu;
use crate::time;

/// One request shape.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub name: &'static str,
    pub write: bool,
    /// Bytes per request.
    pub block: usize,
    /// Requests kept in flight.
    pub depth: usize,
    /// Random block-aligned offsets, else sequential from sector 0, wrapping.
    pub random: bool,
    /// Requests for random shapes; sequential shapes read the disk this many times over.
    pub amount: usize,
}

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// The shapes, in output order.
pub const SHAPES: [Shape; 6] = [
    Shape {
        name: "rand4k_qd1_read",
        write: false,
        block: 4 * KIB,
        depth: 1,
        random: true,
        amount: 8192,
    },
    Shape {
        name: "rand4k_qd32_read",
        write: false,
        block: 4 * KIB,
        depth: 32,
        random: true,
        amount: 32768,
    },
    Shape {
        name: "seq4k_read",
        write: false,
        block: 4 * KIB,
        depth: 1,
        random: false,
        amount: 1,
    },
    Shape {
        name: "seq64k_read",
        write: false,
        block: 64 * KIB,
        depth: 1,
        random: false,
        amount: 4,
    },
    Shape {
        name: "seq1m_read",
        write: false,
        block: MIB,
        depth: 1,
        random: false,
        amount: 4,
    },
    Shape {
        name: "rand4k_qd1_write",
        write: true,
        block: 4 * KIB,
        depth: 1,
        random: true,
        amount: 4096,
    },
];

/// What one shape measured.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    pub shape: Shape,
    pub requests: u64,
    pub elapsed_ns: u64,
    pub notifies: u64,
    pub interrupts: u64,
}

/// `value` per request with three decimals (`x1000`, printed as `a.bcd`).
struct PerRequest(u64, u64);

impl fmt::Display for PerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let milli = u128::from(self.0) * 1000 / u128::from(self.1.max(1));
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

impl Measurement {
    /// The `bench=...` line.
    pub fn write_line(&self, out: &mut dyn Write) -> fmt::Result {
        let ns = u128::from(self.elapsed_ns.max(1));
        let requests = u128::from(self.requests);
        let iops = requests * 1_000_000_000 / ns;
        // MiB/s with one decimal.
        let bytes = requests * self.shape.block as u128;
        let tenth_mib_s = bytes * 10_000_000_000 / ns / MIB as u128;
        writeln!(
            out,
            "bench={} iops={iops} mib_s={}.{} insns_per_req={} notifies_per_req={} irqs_per_req={}",
            self.shape.name,
            tenth_mib_s / 10,
            tenth_mib_s % 10,
            self.elapsed_ns / self.requests.max(1),
            PerRequest(self.notifies, self.requests),
            PerRequest(self.interrupts, self.requests),
        )
    }
}

/// xorshift64*: reproducible random offsets.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Runs every shape on `disk`, printing each line as it finishes. `polled`: completions by
/// polling instead of interrupts (the `irqs_per_req` column shows which).
pub fn run(disk: &'static Disk, polled: bool, out: &mut dyn Write) -> Result<(), Error> {
    let was_polled = disk.is_polled();
    disk.set_polled(polled);
    let mut result = Ok(());
    for shape in SHAPES {
        match measure(disk, shape) {
            Ok(measurement) => {
                if measurement.write_line(out).is_err() {
                    break;
                }
            }
            Err(error) => {
                result = Err(error);
                break;
            }
        }
    }
    disk.set_polled(was_polled);
    result
}

/// Requests each shape runs untimed first (warming QEMU's and the host's caches and thread pool).
const WARM_UP_REQUESTS: u64 = 256;

/// Runs one shape: a warm-up, then the measured requests.
pub fn measure(disk: &'static Disk, shape: Shape) -> Result<Measurement, Error> {
    let block_sectors = (shape.block / SECTOR_SIZE as usize) as u64;
    let blocks = disk.capacity() / block_sectors;
    if blocks == 0 {
        return Err(Error::InvalidArgument(
            "the disk is smaller than one request",
        ));
    }
    let count = if shape.random {
        shape.amount as u64
    } else {
        blocks * shape.amount as u64
    };
    let mut load = Load {
        disk,
        shape,
        blocks,
        block_sectors,
        free: Vec::with_capacity(shape.depth),
        random: Random(0x9e37_79b9_7f4a_7c15),
    };
    for _ in 0..shape.depth {
        let mut buffer = DmaBuffer::new(shape.block)?;
        if shape.write {
            for (i, byte) in buffer.as_mut_slice().iter_mut().enumerate() {
                *byte = i as u8;
            }
        }
        load.free.push(buffer);
    }
    let _quiet = time::pause_timer();
    load.run(WARM_UP_REQUESTS.min(count))?;
    let before = disk.stats();
    let start = cpu::counter();
    load.run(count)?;
    let elapsed_ns = time::ticks_to_ns(cpu::counter() - start);
    let after = disk.stats();
    Ok(Measurement {
        shape,
        requests: count,
        elapsed_ns,
        notifies: after.notifies - before.notifies,
        interrupts: after.interrupts - before.interrupts,
    })
}

/// A shape's requests in motion: buffers not in flight, the offset sequence.
struct Load {
    disk: &'static Disk,
    shape: Shape,
    blocks: u64,
    block_sectors: u64,
    free: Vec<DmaBuffer>,
    random: Random,
}

impl Load {
    /// Issues `count` requests, keeping up to `depth` in flight, and waits for all of them.
    fn run(&mut self, count: u64) -> Result<(), Error> {
        let mut in_flight: Vec<Pending> = Vec::with_capacity(self.shape.depth);
        let mut issued = 0u64;
        let mut completed = 0u64;
        while completed < count {
            if !self.free.is_empty() && issued < count {
                self.disk.batch(|batch| {
                    while issued < count {
                        let Some(buffer) = self.free.pop() else { break };
                        let index = if self.shape.random {
                            self.random.next() % self.blocks
                        } else {
                            issued % self.blocks
                        };
                        let sector = index * self.block_sectors;
                        let request = if self.shape.write {
                            Request::Write { sector, buffer }
                        } else {
                            Request::Read { sector, buffer }
                        };
                        in_flight.push(batch.submit(request).map_err(|refused| refused.error)?);
                        issued += 1;
                    }
                    Ok::<(), Error>(())
                })?;
            }
            self.disk.wait_any(&in_flight);
            let mut i = 0;
            while i < in_flight.len() {
                if !in_flight[i].is_done() {
                    i += 1;
                    continue;
                }
                let finished = in_flight.swap_remove(i).wait();
                finished.result?;
                self.free.extend(finished.buffer);
                completed += 1;
            }
        }
        Ok(())
    }
}
