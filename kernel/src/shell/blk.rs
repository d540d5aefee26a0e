//! The `blk` command: virtio block devices (see docs/virtio-blk.md).

use alloc::format;
use alloc::string::String;
use alloc::vec;
use core::fmt::Write;

use virtio::{Features, SECTOR_SIZE};

use super::{CommandError, CommandResult};
use crate::console::Stdout;
use crate::drivers::virtio::{self as blk, Disk, bench};
use crate::println;

pub const USAGE: &str = "[read|write|sum|flush|resize|stats|bench] ...";
pub const HELP: &str = "virtio block devices; `blk help` for the subcommands";

const SUBCOMMANDS: &str = "\
  blk                          list devices (transport, capacity, features, queue size)
  blk stats DEV                driver counters, key=value
  blk read DEV SECTOR [COUNT]  hexdump COUNT sectors (default 1, at most 64)
  blk write DEV SECTOR PATTERN [COUNT]
                               fill COUNT sectors (default 1) with PATTERN repeated;
                               0xHH means the byte HH
  blk sum DEV START COUNT      CRC-32 (IEEE) of COUNT sectors from START
  blk flush DEV                flush the device's write cache
  blk resize DEV N|auto        set the queue size, or let the resize policy decide
  blk bench DEV [polled]       benchmark (overwrites random blocks!)";

/// Most sectors `blk read` dumps.
const MAX_DUMP_SECTORS: u64 = 64;
/// Bytes `blk sum` and `blk write` move per request.
const CHUNK_BYTES: usize = 1 << 20;

pub fn run(args: &[&str]) -> CommandResult {
    match args {
        [] => list(),
        ["help"] => {
            println!("{SUBCOMMANDS}");
            Ok(())
        }
        ["stats", dev] => stats(disk(dev)?),
        ["read", dev, sector] => read(disk(dev)?, number(sector, "SECTOR")?, 1),
        ["read", dev, sector, count] => read(
            disk(dev)?,
            number(sector, "SECTOR")?,
            number(count, "COUNT")?,
        ),
        ["write", dev, sector, pattern] => write(disk(dev)?, number(sector, "SECTOR")?, pattern, 1),
        ["write", dev, sector, pattern, count] => write(
            disk(dev)?,
            number(sector, "SECTOR")?,
            pattern,
            number(count, "COUNT")?,
        ),
        ["sum", dev, start, count] => {
            sum(disk(dev)?, number(start, "START")?, number(count, "COUNT")?)
        }
        ["flush", dev] => disk(dev)?.flush().map_err(device_error),
        ["resize", dev, size] => resize(disk(dev)?, size),
        ["bench", dev] => bench_disk(disk(dev)?, false),
        ["bench", dev, "polled"] => bench_disk(disk(dev)?, true),
        _ => Err(CommandError::new(format!(
            "bad arguments `{}`; usage:\n{SUBCOMMANDS}",
            args.join(" ")
        ))),
    }
}

fn disk(name: &str) -> Result<&'static Disk, CommandError> {
    blk::disk(name).ok_or_else(|| {
        let names: alloc::vec::Vec<&str> = blk::disks().iter().map(Disk::name).collect();
        CommandError::new(format!(
            "no device `{name}` (devices: {})",
            if names.is_empty() {
                String::from("none")
            } else {
                names.join(" ")
            }
        ))
    })
}

/// A decimal or `0x` hexadecimal number.
fn number(text: &str, what: &str) -> Result<u64, CommandError> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| CommandError::new(format!("{what} `{text}` is not a number")))
}

fn device_error(error: virtio::Error) -> CommandError {
    CommandError::new(format!("{error}"))
}

const FEATURE_NAMES: &[(Features, &str)] = &[
    (Features::BLK_SIZE_MAX, "size_max"),
    (Features::BLK_SEG_MAX, "seg_max"),
    (Features::BLK_RO, "ro"),
    (Features::BLK_BLK_SIZE, "blk_size"),
    (Features::BLK_FLUSH, "flush"),
    (Features::BLK_TOPOLOGY, "topology"),
    (Features::BLK_CONFIG_WCE, "config_wce"),
    (Features::BLK_DISCARD, "discard"),
    (Features::BLK_WRITE_ZEROES, "write_zeroes"),
    (Features::INDIRECT_DESC, "indirect_desc"),
    (Features::EVENT_IDX, "event_idx"),
    (Features::VERSION_1, "version_1"),
    (Features::RING_RESET, "ring_reset"),
];

fn list() -> CommandResult {
    let disks = blk::disks();
    if disks.is_empty() {
        println!("devices=0");
    }
    for disk in disks {
        let info = disk.info();
        let names: alloc::vec::Vec<&str> = FEATURE_NAMES
            .iter()
            .filter(|(feature, _)| info.features.contains(*feature))
            .map(|(_, name)| *name)
            .collect();
        println!(
            "{} transport={} base={:#x} irq={} capacity={} bytes={} queue={} queue_max={} mode={} resize={} serial={} features={:#x} {}",
            disk.name(),
            blk::transport_name(info.transport),
            disk.base(),
            disk.irq().0,
            info.capacity,
            info.capacity * u64::from(SECTOR_SIZE),
            disk.queue_size(),
            info.queue_num_max,
            if disk.is_polled() { "polled" } else { "irq" },
            if disk.is_auto_resize() {
                "auto"
            } else {
                "fixed"
            },
            disk.serial().unwrap_or("-"),
            info.features.0,
            names.join(",")
        );
    }
    Ok(())
}

fn stats(disk: &Disk) -> CommandResult {
    let stats = disk.stats();
    let mut out = Stdout;
    writeln!(out, "queue_size={}", disk.queue_size())?;
    writeln!(
        out,
        "resize_mode={}",
        if disk.is_auto_resize() {
            "auto"
        } else {
            "fixed"
        }
    )?;
    writeln!(out, "requests={}", stats.requests)?;
    writeln!(out, "completions={}", stats.completions)?;
    writeln!(out, "virtio_requests={}", stats.virtio_requests)?;
    writeln!(out, "resubmissions={}", stats.resubmissions)?;
    writeln!(out, "notifies={}", stats.notifies)?;
    writeln!(out, "interrupts={}", stats.interrupts)?;
    writeln!(out, "spurious_interrupts={}", stats.spurious_interrupts)?;
    writeln!(out, "used_entries={}", stats.used_entries)?;
    writeln!(out, "ring_full={}", stats.ring_full)?;
    writeln!(out, "config_changes={}", stats.config_changes)?;
    writeln!(out, "device_resets={}", stats.device_resets)?;
    writeln!(
        out,
        "resizes_by_queue_reset={}",
        stats.resizes_by_queue_reset
    )?;
    writeln!(
        out,
        "resizes_by_device_reset={}",
        stats.resizes_by_device_reset
    )?;
    match disk.failure() {
        Some(error) => writeln!(out, "failure={error}")?,
        None => writeln!(out, "failure=none")?,
    }
    Ok(())
}

/// Bytes of `count` sectors, refusing what does not fit in memory sizes.
fn sector_bytes(count: u64) -> Result<usize, CommandError> {
    count
        .checked_mul(u64::from(SECTOR_SIZE))
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(|| CommandError::new("COUNT is too large"))
}

fn read(disk: &Disk, sector: u64, count: u64) -> CommandResult {
    if count == 0 || count > MAX_DUMP_SECTORS {
        return Err(CommandError::new(format!(
            "COUNT must be 1 to {MAX_DUMP_SECTORS}"
        )));
    }
    let mut data = vec![0u8; sector_bytes(count)?];
    disk.read(sector, &mut data).map_err(device_error)?;
    let base = sector * u64::from(SECTOR_SIZE);
    let mut out = Stdout;
    for (row, bytes) in data.chunks(16).enumerate() {
        let mut line = format!("{:08x} ", base + row as u64 * 16);
        for byte in bytes {
            write!(line, " {byte:02x}")?;
        }
        line.push_str("  |");
        line.extend(bytes.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        line.push('|');
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// The bytes PATTERN stands for: `0xHH` is one byte, anything else its own text.
fn pattern_bytes(pattern: &str) -> alloc::vec::Vec<u8> {
    match pattern.strip_prefix("0x").filter(|hex| hex.len() == 2) {
        Some(hex) => match u8::from_str_radix(hex, 16) {
            Ok(byte) => vec![byte],
            Err(_) => pattern.as_bytes().to_vec(),
        },
        None => pattern.as_bytes().to_vec(),
    }
}

/// Refuses a range past the end of the disk before any of it is touched.
fn check_range(disk: &Disk, sector: u64, count: u64) -> CommandResult {
    match sector.checked_add(count) {
        Some(end) if end <= disk.capacity() => Ok(()),
        _ => Err(device_error(virtio::Error::OutOfRange)),
    }
}

fn write(disk: &Disk, sector: u64, pattern: &str, count: u64) -> CommandResult {
    if count == 0 {
        return Err(CommandError::new("COUNT must be at least 1"));
    }
    check_range(disk, sector, count)?;
    let unit = pattern_bytes(pattern);
    let total = sector_bytes(count)?;
    let mut data = vec![0u8; total.min(CHUNK_BYTES)];
    let mut done = 0;
    while done < total {
        let len = (total - done).min(CHUNK_BYTES);
        // The pattern continues across chunks as if the whole range were one buffer.
        for (i, byte) in data[..len].iter_mut().enumerate() {
            *byte = unit[(done + i) % unit.len()];
        }
        let at = sector + (done / SECTOR_SIZE as usize) as u64;
        disk.write(at, &data[..len]).map_err(device_error)?;
        done += len;
    }
    println!("written_sectors={count}");
    Ok(())
}

fn sum(disk: &Disk, start: u64, count: u64) -> CommandResult {
    check_range(disk, start, count)?;
    let total = sector_bytes(count)?;
    let mut data = vec![0u8; total.min(CHUNK_BYTES)];
    let mut hasher = crc32fast::Hasher::new();
    let mut done = 0;
    while done < total {
        let len = (total - done).min(CHUNK_BYTES);
        let at = start + (done / SECTOR_SIZE as usize) as u64;
        disk.read(at, &mut data[..len]).map_err(device_error)?;
        hasher.update(&data[..len]);
        done += len;
    }
    println!("sectors={count}");
    println!("crc32={:#010x}", hasher.finalize());
    Ok(())
}

fn resize(disk: &Disk, size: &str) -> CommandResult {
    if size == "auto" {
        disk.set_auto_resize().map_err(device_error)?;
        println!("resize_mode=auto");
        return Ok(());
    }
    let size = number(size, "N")?;
    let size = u16::try_from(size)
        .map_err(|_| CommandError::new(format!("queue size {size} is above 32768")))?;
    let status = disk.resize(size).map_err(device_error)?;
    println!("queue_size={}", disk.queue_size());
    println!(
        "resize={}",
        match status {
            virtio::ResizeStatus::Unchanged => "unchanged",
            virtio::ResizeStatus::Done(virtio::ResizePath::QueueReset) => "queue_reset",
            virtio::ResizeStatus::Done(virtio::ResizePath::DeviceReset) => "device_reset",
            virtio::ResizeStatus::InProgress => "in_progress",
        }
    );
    Ok(())
}

fn bench_disk(disk: &'static Disk, polled: bool) -> CommandResult {
    bench::run(disk, polled, &mut Stdout).map_err(device_error)
}
