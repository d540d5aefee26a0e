//! The virtio-blk cases both transport images run (tests/virtio_legacy.rs,
//! tests/virtio_modern.rs). The including file defines `TRANSPORT`, the version QEMU is
//! expected to present, and declares its machine with [`virtio_disks!`].
//!
//! Disks (in `-drive` order): `data` (blk0, 16 MiB), `second` (blk1, 16 MiB) and `faulty`
//! (blk2, 16 MiB, every read touching sector 2048 fails with EIO through QEMU's blkdebug).
//! All start with `fill=lba`: sector i holds i as a little-endian u64, 64 times.

use alloc::vec;
use alloc::vec::Vec;

use ::virtio::{Error, Features, ResizePath, ResizeStatus};
use kernel::drivers::virtio::{self, Disk, DmaBuffer, Pending, Request};
use kernel::ktest::prelude::*;

use super::TRANSPORT;

/// The `.qemu_config` disks both images declare.
#[macro_export]
macro_rules! virtio_disks {
    () => {
        "memory 256M\n\
         disk data size=16M fill=lba\n\
         disk second size=16M fill=lba\n\
         disk faulty size=16M fill=lba blkdebug=event=read_aio,errno=5,sector=2048\n"
    };
}

const DISK_SECTORS: u64 = 16 * 1024 * 1024 / 512;
/// The sector blkdebug fails reads of.
const BAD_SECTOR: u64 = 2048;

fn blk(name: &str) -> Result<&'static Disk, Failure> {
    virtio::disk(name).ok_or_else(|| Failure::new(file!(), line!(), alloc::format!("no {name}")))
}

/// Whether `data` (whole sectors from `first`) holds the `fill=lba` content.
fn holds_lba_content(data: &[u8], first: u64) -> bool {
    data.chunks(512).enumerate().all(|(i, sector)| {
        sector
            .chunks(8)
            .all(|word| u64::from_le_bytes(word.try_into().unwrap_or_default()) == first + i as u64)
    })
}

/// Recognisable content for `sectors` sectors at `sector`, varied by `seed`.
fn pattern(sector: u64, sectors: usize, seed: u8) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| (sector as usize * 131 + i * 7 + usize::from(seed) * 29) as u8)
        .collect()
}

/// Waits for every request, checking each succeeded; returns the buffers in order.
fn wait_all(pending: Vec<Pending>) -> Result<Vec<Option<DmaBuffer>>, Failure> {
    let mut buffers = Vec::new();
    for request in pending {
        let finished = request.wait();
        check_ok!(finished.result);
        buffers.push(finished.buffer);
    }
    Ok(buffers)
}

ktest! {
    fn disks_are_named_in_command_line_order_with_their_transport() -> TestResult {
        let disks = virtio::disks();
        check_eq!(disks.len(), 3);
        let serials: Vec<Option<&str>> = disks.iter().map(Disk::serial).collect();
        check_eq!(serials, [Some("data"), Some("second"), Some("faulty")]);
        let names: Vec<&str> = disks.iter().map(Disk::name).collect();
        check_eq!(names, ["blk0", "blk1", "blk2"]);
        check!(disks.windows(2).all(|pair| pair[0].base() > pair[1].base()), "blk0 sits at the highest slot");
        for disk in disks {
            let info = disk.info();
            check_eq!(info.transport, TRANSPORT);
            check_eq!(info.capacity, DISK_SECTORS);
            check_eq!(disk.queue_size(), 256);
            check!(info.features.contains(Features::INDIRECT_DESC | Features::EVENT_IDX | Features::BLK_FLUSH));
            check_eq!(info.features.contains(Features::VERSION_1), TRANSPORT == ::virtio::TransportVersion::Modern);
        }
        Ok(())
    }

    fn reads_see_the_host_image_through_stack_heap_and_unaligned_buffers() -> TestResult {
        let disk = blk("blk0")?;
        // A kernel stack buffer: translated by a page-table walk.
        let mut stack = [0u8; 2048];
        check_ok!(disk.read(12, &mut stack));
        check!(holds_lba_content(&stack, 12));
        // Heap, starting one byte into an allocation: segments cross pages off sector alignment.
        let mut heap = vec![0u8; 64 * 512 + 1];
        check_ok!(disk.read(DISK_SECTORS - 64, &mut heap[1..]));
        check!(holds_lba_content(&heap[1..], DISK_SECTORS - 64));
        check_eq!(heap[0], 0);
        Ok(())
    }

    fn writes_land_exactly_where_asked() -> TestResult {
        let disk = blk("blk0")?;
        let data = pattern(100, 8, 1);
        check_ok!(disk.write(100, &data));
        let mut around = vec![0u8; 10 * 512];
        check_ok!(disk.read(99, &mut around));
        check!(holds_lba_content(&around[..512], 99), "sector 99 untouched");
        check_eq!(&around[512..9 * 512], &data[..]);
        check!(holds_lba_content(&around[9 * 512..], 108), "sector 108 untouched");
        Ok(())
    }

    fn large_transfers_round_trip() -> TestResult {
        let disk = blk("blk0")?;
        let data = pattern(4096, 4096, 2);
        check_ok!(disk.write(4096, &data));
        let mut back = vec![0u8; data.len()];
        check_ok!(disk.read(4096, &mut back));
        check!(back == data, "2 MiB read back differs");
        Ok(())
    }

    fn a_batch_of_async_reads_notifies_once_and_returns_every_buffer() -> TestResult {
        let disk = blk("blk0")?;
        let before = disk.stats();
        let sectors: Vec<u64> = (0..64).map(|i| 10_000 + i * 37).collect();
        let pending = check_ok!(disk.batch(|batch| {
            let mut pending = Vec::new();
            for &sector in &sectors {
                let buffer = DmaBuffer::new(1024).map_err(|error| Failure::new(file!(), line!(), alloc::format!("{error}")))?;
                let request = batch.submit(Request::Read { sector, buffer })
                    .map_err(|refused| Failure::new(file!(), line!(), alloc::format!("{}", refused.error)))?;
                pending.push(request);
            }
            Ok::<_, Failure>(pending)
        }));
        let buffers = wait_all(pending)?;
        for (buffer, sector) in buffers.iter().zip(&sectors) {
            let buffer = check_ok!(buffer.as_ref().ok_or("no buffer"));
            check!(holds_lba_content(buffer.as_slice(), *sector), "sector {sector}");
        }
        let after = disk.stats();
        check_eq!(after.requests - before.requests, 64);
        check_eq!(after.notifies - before.notifies, 1, "one notification for the batch");
        Ok(())
    }

    fn flush_get_id_discard_and_write_zeroes() -> TestResult {
        let disk = blk("blk0")?;
        let id = check_ok!(disk.get_id());
        check_eq!(&id[..5], b"data\0");
        check_ok!(disk.flush());
        check_ok!(disk.write_zeroes(200, 8, false));
        let mut zeroed = vec![0xffu8; 9 * 512];
        check_ok!(disk.read(200, &mut zeroed));
        check!(zeroed[..8 * 512].iter().all(|&b| b == 0), "write-zeroes zeroed");
        check!(holds_lba_content(&zeroed[8 * 512..], 208));
        check_ok!(disk.discard(300, 8));
        check_eq!(disk.discard(DISK_SECTORS - 4, 8), Err(Error::OutOfRange));
        check_eq!(disk.write_zeroes(0, 0, false), Err(Error::InvalidArgument("empty range")));
        Ok(())
    }

    fn bad_requests_are_refused_with_typed_errors() -> TestResult {
        let disk = blk("blk0")?;
        let mut buf = vec![0u8; 1024];
        check_eq!(disk.read(DISK_SECTORS - 1, &mut buf), Err(Error::OutOfRange));
        check_eq!(disk.read(u64::MAX, &mut buf), Err(Error::OutOfRange));
        check!(matches!(disk.read(0, &mut buf[..100]), Err(Error::InvalidArgument(_))));
        check!(matches!(disk.write(0, &[]), Err(Error::InvalidArgument(_))));
        check!(matches!(DmaBuffer::new(0), Err(Error::InvalidArgument(_))));
        let odd = check_ok!(DmaBuffer::new(100));
        let refused = disk.submit(Request::Read { sector: 0, buffer: odd }).err();
        check!(refused.is_some_and(|r| matches!(r.error, Error::InvalidArgument(_)) && r.buffer.is_some()), "odd-sized buffer refused and returned");
        for size in [0, 3, 100, 2048] {
            check!(matches!(disk.resize(size), Err(Error::InvalidArgument(_))), "size {size}");
        }
        check_eq!(disk.resize(256), Ok(ResizeStatus::Unchanged));
        check!(disk.failure().is_none());
        Ok(())
    }

    fn injected_io_errors_reach_the_caller_and_the_disk_keeps_working() -> TestResult {
        let disk = blk("blk2")?;
        let mut buf = vec![0u8; 512];
        check_eq!(disk.read(BAD_SECTOR, &mut buf), Err(Error::IoError));
        check_ok!(disk.read(BAD_SECTOR + 1, &mut buf));
        check!(holds_lba_content(&buf, BAD_SECTOR + 1));
        let mut span = vec![0u8; 16 * 512];
        check_eq!(disk.read(BAD_SECTOR - 8, &mut span), Err(Error::IoError));
        // The asynchronous path reports it too, and hands the buffer back.
        let buffer = check_ok!(DmaBuffer::new(512));
        let pending = check_ok!(disk.submit(Request::Read { sector: BAD_SECTOR, buffer }).map_err(|r| r.error));
        let finished = pending.wait();
        check_eq!(finished.result, Err(Error::IoError));
        check!(finished.buffer.is_some());
        // Later requests elsewhere work.
        check_ok!(disk.write(BAD_SECTOR + 1, &pattern(BAD_SECTOR + 1, 1, 3)));
        check_ok!(disk.read(BAD_SECTOR + 1, &mut buf));
        check_eq!(buf, pattern(BAD_SECTOR + 1, 1, 3));
        check_ok!(disk.read(0, &mut buf));
        check!(holds_lba_content(&buf, 0));
        check!(disk.failure().is_none(), "an I/O error does not break the device");
        Ok(())
    }

    fn two_devices_work_at_once() -> TestResult {
        let (first, second) = (blk("blk0")?, blk("blk1")?);
        let mut pending = Vec::new();
        for (disk, seed) in [(first, 5u8), (second, 6u8)] {
            for i in 0..16u64 {
                let sector = 6000 + i * 8;
                let mut buffer = check_ok!(DmaBuffer::new(4096));
                buffer.as_mut_slice().copy_from_slice(&pattern(sector, 8, seed));
                pending.push(check_ok!(disk.submit(Request::Write { sector, buffer }).map_err(|r| r.error)));
            }
        }
        wait_all(pending)?;
        for (disk, seed) in [(first, 5u8), (second, 6u8)] {
            let mut back = vec![0u8; 16 * 4096];
            check_ok!(disk.read(6000, &mut back));
            for i in 0..16 {
                check!(back[i * 4096..(i + 1) * 4096] == pattern(6000 + i as u64 * 8, 8, seed)[..], "{} block {i}", disk.name());
            }
        }
        Ok(())
    }

    fn resizing_during_a_stream_of_writes_loses_nothing() -> TestResult {
        let disk = blk("blk1")?;
        const WRITES: u64 = 512;
        const DEPTH: usize = 32;
        let resize_at: [(u64, u16); 4] = [(64, 16), (160, 512), (288, 8), (400, 256)];
        let before = disk.stats();
        let mut in_flight: Vec<Pending> = Vec::new();
        let (mut issued, mut completed) = (0u64, 0u64);
        let mut next_resize = 0;
        while completed < WRITES {
            let submitted = disk.batch(|batch| {
                while issued < WRITES && in_flight.len() < DEPTH {
                    let sector = issued * 8;
                    let mut buffer = DmaBuffer::new(4096)?;
                    buffer.as_mut_slice().copy_from_slice(&pattern(sector, 8, 7));
                    in_flight.push(batch.submit(Request::Write { sector, buffer }).map_err(|r| r.error)?);
                    issued += 1;
                }
                Ok::<(), Error>(())
            });
            check_ok!(submitted);
            if let Some(&(at, size)) = resize_at.get(next_resize) && completed >= at {
                // With writes in flight; the stream goes on submitting while it drains.
                check!(!in_flight.is_empty());
                check_ok!(disk.start_resize(size));
                next_resize += 1;
            }
            disk.wait_any(&in_flight);
            let mut i = 0;
            while i < in_flight.len() {
                if in_flight[i].is_done() {
                    check_ok!(in_flight.swap_remove(i).wait().result);
                    completed += 1;
                } else {
                    i += 1;
                }
            }
        }
        check_eq!(next_resize, resize_at.len());
        while disk.is_resizing() {
            kernel::time::delay_us(1000);
        }
        check_eq!(disk.queue_size(), 256);
        let after = disk.stats();
        // QEMU 7.2 offers RING_RESET on modern devices but ignores QueueReset: every resize
        // takes the device-reset path on both transports.
        check_eq!(after.resizes_by_device_reset - before.resizes_by_device_reset, 4);
        check_eq!(after.resizes_by_queue_reset, 0);
        check_eq!(after.completions - before.completions, WRITES);
        let mut back = vec![0u8; (WRITES * 4096) as usize];
        check_ok!(disk.read(0, &mut back));
        for i in 0..WRITES {
            let range = (i * 4096) as usize..((i + 1) * 4096) as usize;
            check!(back[range] == pattern(i * 8, 8, 7)[..], "write {i} lost or misplaced");
        }
        Ok(())
    }

    fn resize_waits_for_the_device_reset_and_reports_the_path() -> TestResult {
        let disk = blk("blk1")?;
        check_eq!(disk.resize(64), Ok(ResizeStatus::Done(ResizePath::DeviceReset)));
        check_eq!(disk.queue_size(), 64);
        let mut buf = vec![0u8; 512];
        check_ok!(disk.read(BAD_SECTOR, &mut buf));
        check!(holds_lba_content(&buf, BAD_SECTOR));
        check_eq!(disk.resize(256), Ok(ResizeStatus::Done(ResizePath::DeviceReset)));
        Ok(())
    }

    fn auto_resize_grows_under_load_and_shrinks_when_idle() -> TestResult {
        let disk = blk("blk1")?;
        check_ok!(disk.resize(16));
        check_ok!(disk.set_auto_resize());
        check!(disk.is_auto_resize());
        // 64 reads in flight against a 16-entry ring until the policy grows it.
        let mut in_flight: Vec<Pending> = Vec::new();
        let mut issued = 0u64;
        while disk.queue_size() <= 16 && issued < 50_000 {
            let submitted = disk.batch(|batch| {
                while in_flight.len() < 64 {
                    let buffer = DmaBuffer::new(4096)?;
                    let sector = (issued * 8) % DISK_SECTORS;
                    in_flight.push(batch.submit(Request::Read { sector, buffer }).map_err(|r| r.error)?);
                    issued += 1;
                }
                Ok::<(), Error>(())
            });
            check_ok!(submitted);
            disk.wait_any(&in_flight);
            in_flight.retain(|request| !request.is_done());
        }
        wait_all(in_flight)?;
        let grown = disk.queue_size();
        check!(grown > 16, "still {grown} after {issued} reads");
        // Idle: a quiet window of the policy halves the queue.
        let window_us = kernel::drivers::virtio::POLICY_PERIOD_US * u64::from(kernel::drivers::virtio::POLICY_WINDOW);
        kernel::time::delay_us(3 * window_us);
        let shrunk = disk.queue_size();
        check!(shrunk < grown, "{shrunk} after idling, grown to {grown}");
        check_eq!(disk.resize(256), Ok(ResizeStatus::Done(ResizePath::DeviceReset)));
        check!(!disk.is_auto_resize(), "a fixed size leaves auto mode");
        Ok(())
    }

    fn polled_mode_completes_without_interrupts_and_interrupts_resume_after() -> TestResult {
        let disk = blk("blk1")?;
        let mut buf = vec![0u8; 4096];
        disk.set_polled(true);
        let before = disk.stats();
        let polled = disk.read(64, &mut buf);
        let during = disk.stats();
        disk.set_polled(false);
        check_ok!(polled);
        check!(holds_lba_content(&buf, 64));
        check_eq!(during.interrupts, before.interrupts, "no interrupt taken while polled");
        // The device raised its (edge-triggered) line while polled: interrupts must still come.
        let irqs = kernel::irq::count(disk.irq());
        check_ok!(disk.read(72, &mut buf));
        check!(holds_lba_content(&buf, 72));
        check!(kernel::irq::count(disk.irq()) > irqs, "the completion interrupt arrived");
        Ok(())
    }

    fn an_abandoned_request_frees_its_buffer_when_it_completes() -> TestResult {
        let disk = blk("blk1")?;
        let mut buf = vec![0u8; 512];
        let free_before = kernel::mm::frame::stats().free;
        let buffer = check_ok!(DmaBuffer::new(64 * 1024));
        let pending = check_ok!(disk.submit(Request::Read { sector: 0, buffer }).map_err(|r| r.error));
        drop(pending);
        // A later request waits behind it in the same queue; then the slot is settled.
        check_ok!(disk.read(0, &mut buf));
        let mut waited = 0;
        while kernel::mm::frame::stats().free != free_before && waited < 100 {
            kernel::time::delay_us(1000);
            waited += 1;
        }
        check_eq!(kernel::mm::frame::stats().free, free_before);
        Ok(())
    }
}
