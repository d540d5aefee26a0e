//! Initialisation, every request type, both submission APIs and the checks before submit.

use alloc::vec;
use alloc::vec::Vec;

use super::{both_transports, only, pattern, rig, rig_with};
use crate::fake::{FakeClock, FakeDevice, FakeDeviceConfig};
use crate::mmio::status;
use crate::{
    DriverConfig, Error, Features, MAX_SEGMENTS, Operation, PhysAddr, Segment, TransportVersion,
};

#[test]
fn modern_init_negotiates_and_reads_config() {
    let rig = rig(FakeDeviceConfig::modern(2048));
    let accepted = rig.device.driver_features();
    for wanted in [
        Features::VERSION_1,
        Features::INDIRECT_DESC,
        Features::EVENT_IDX,
        Features::RING_RESET,
        Features::BLK_FLUSH,
        Features::BLK_SEG_MAX,
        Features::BLK_DISCARD,
        Features::BLK_WRITE_ZEROES,
        Features::BLK_TOPOLOGY,
        Features::BLK_CONFIG_WCE,
        Features::BLK_BLK_SIZE,
    ] {
        assert!(accepted.contains(wanted), "{wanted:?} not accepted");
    }
    // GEOMETRY (bit 4) is offered by QEMU but not used by this driver.
    assert!(!accepted.contains(Features(1 << 4)));
    assert_eq!(
        rig.device.status(),
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK
    );
    let info = rig.driver.info();
    assert_eq!(info.transport, TransportVersion::Modern);
    assert_eq!(info.capacity, 2048);
    assert_eq!(info.block_size, 4096);
    assert_eq!(info.seg_max, Some(126));
    assert_eq!(info.writeback, Some(true));
    assert_eq!(
        info.topology.map(|t| (t.physical_block_exp, t.min_io_size)),
        Some((3, 8))
    );
    assert_eq!(info.queue_num_max, 1024);
    assert_eq!(rig.driver.queue_size(), 256);
    assert_eq!(rig.device.queue_size(), 256);
}

#[test]
fn legacy_init_skips_features_ok_and_transport_bits() {
    let rig = rig(FakeDeviceConfig::legacy(2048));
    let accepted = rig.device.driver_features();
    assert!(!accepted.contains(Features::VERSION_1));
    assert!(!accepted.contains(Features(1 << 27)), "ANY_LAYOUT accepted");
    assert!(accepted.contains(Features::INDIRECT_DESC | Features::EVENT_IDX));
    assert_eq!(
        rig.device.status(),
        status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK
    );
    assert_eq!(rig.driver.info().transport, TransportVersion::Legacy);
    assert_eq!(rig.device.queue_size(), 256);
}

#[test]
fn owned_write_then_read_round_trips_on_both_transports() {
    for config in both_transports() {
        let mut rig = rig(config);
        let data = pattern(10, 8, 1);
        rig.write(10, &data, 1);
        rig.driver.kick();
        assert_eq!(rig.device.process(usize::MAX), 1);
        let done = rig.poll();
        let write = only(&done, 1);
        assert_eq!(write.result, Ok(()));
        assert_eq!(write.operation, Operation::Write);
        assert_eq!(rig.device.read_disk(10, 4096), data);

        rig.read(10, 8, 2);
        let done = rig.drain();
        let read = only(&done, 2);
        assert_eq!(read.result, Ok(()));
        assert_eq!(read.buffer.as_deref(), Some(&data[..]));
        rig.driver.check_invariants();
    }
}

#[test]
fn zero_copy_segments_scatter_and_gather() {
    let mut rig = rig(FakeDeviceConfig::modern(2048));
    let data = pattern(100, 3, 2);
    rig.device.write_disk(100, &data);
    // Three pieces of one buffer, out of address order: [1024..1536], [0..512], [512..1024].
    let mut buffer = vec![0u8; 1536];
    let base = buffer.as_mut_ptr() as u64;
    let segments = [
        Segment {
            phys: PhysAddr(base + 1024),
            len: 512,
        },
        Segment {
            phys: PhysAddr(base),
            len: 512,
        },
        Segment {
            phys: PhysAddr(base + 512),
            len: 512,
        },
    ];
    // SAFETY: `buffer` outlives the request and is not touched until its completion.
    let id = unsafe {
        rig.driver
            .submit_segments(Operation::Read, 100, &segments, 77)
    }
    .unwrap();
    let done = rig.drain();
    let read = only(&done, 77);
    assert_eq!(read.id, id);
    assert_eq!(read.result, Ok(()));
    assert!(read.buffer.is_none());
    assert_eq!(&buffer[1024..], &data[..512]);
    assert_eq!(&buffer[..512], &data[512..1024]);
    assert_eq!(&buffer[512..1024], &data[1024..]);
}

#[test]
fn flush_get_id_discard_and_write_zeroes() {
    let mut rig = rig(FakeDeviceConfig::modern(2048));
    rig.device.write_disk(0, &pattern(0, 16, 3));
    rig.driver.submit_flush(1).unwrap();
    rig.driver.submit_get_id(2).unwrap();
    rig.driver.submit_discard(2, 3, 3).unwrap();
    rig.driver.submit_write_zeroes(8, 2, true, 4).unwrap();
    let done = rig.drain();
    assert_eq!(done.len(), 4);
    assert!(done.iter().all(|c| c.result.is_ok()));
    assert_eq!(rig.device.flushes(), 1);
    assert_eq!(&only(&done, 2).device_id.unwrap(), b"fake-virtio-blk-0001");
    let disk = rig.device.read_disk(0, 16 * 512);
    let expected = pattern(0, 16, 3);
    assert_eq!(&disk[..1024], &expected[..1024]);
    assert!(
        disk[1024..2560].iter().all(|&b| b == 0),
        "discarded sectors 2..5"
    );
    assert_eq!(&disk[2560..4096], &expected[2560..4096]);
    assert!(
        disk[4096..5120].iter().all(|&b| b == 0),
        "zeroed sectors 8..10"
    );
    assert_eq!(&disk[5120..], &expected[5120..]);
}

#[test]
fn discard_is_cut_by_max_discard_sectors() {
    let mut config = FakeDeviceConfig::modern(2048);
    config.max_range_sectors = 4;
    let mut rig = rig(config);
    rig.device.write_disk(0, &pattern(0, 16, 4));
    rig.driver.submit_discard(1, 10, 9).unwrap();
    let done = rig.drain();
    assert_eq!(only(&done, 9).result, Ok(()));
    assert_eq!(rig.driver.stats().virtio_requests, 3);
    let disk = rig.device.read_disk(0, 16 * 512);
    assert!(disk[512..11 * 512].iter().all(|&b| b == 0));
    assert_eq!(&disk[11 * 512..], &pattern(0, 16, 4)[11 * 512..]);
}

#[test]
fn blocking_calls_drive_the_device_through_the_clock() {
    for config in both_transports() {
        let device = FakeDevice::new(config);
        let hal = device.hal();
        let clock = FakeClock::driving(&device, 4);
        let transport = crate::probe(device.mmio()).unwrap();
        let mut driver =
            crate::BlockDevice::new(transport, hal, clock, DriverConfig::default()).unwrap();
        let data = pattern(5, 2, 5);
        driver.write_blocking(5, &data).unwrap();
        let mut back = vec![0u8; 1024];
        driver.read_blocking(5, &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(driver.get_id_blocking().unwrap(), *b"fake-virtio-blk-0001");
        driver.flush_blocking().unwrap();
        assert_eq!(device.flushes(), 1);
        assert_eq!(driver.outstanding_requests(), 0);
    }
}

#[test]
fn blocking_call_times_out_when_the_device_never_answers() {
    let config = DriverConfig {
        request_timeout_ns: 50_000,
        ..DriverConfig::default()
    };
    let mut rig = rig_with(FakeDeviceConfig::modern(64), config);
    let mut buf = vec![0u8; 512];
    assert_eq!(
        rig.driver.read_blocking(0, &mut buf),
        Err(Error::Timeout("request completion"))
    );
    // The abandoned request finishes later without a completion report.
    assert_eq!(rig.driver.outstanding_requests(), 1);
    rig.device.process(usize::MAX);
    assert!(rig.poll().is_empty());
    assert_eq!(rig.driver.outstanding_requests(), 0);
}

#[test]
fn requests_are_checked_before_submission() {
    let mut rig = rig(FakeDeviceConfig::modern(100));
    let buf = |len: usize| vec![0u8; len].into_boxed_slice();
    let reject = |rig: &mut super::Rig, op, sector, len| {
        let rejected = rig
            .driver
            .submit_buffer(op, sector, buf(len), 0)
            .unwrap_err();
        assert_eq!(rejected.buffer.len(), len, "buffer handed back");
        rejected.error
    };
    assert_eq!(
        reject(&mut rig, Operation::Read, 99, 1024),
        Error::OutOfRange
    );
    assert_eq!(
        reject(&mut rig, Operation::Read, 100, 512),
        Error::OutOfRange
    );
    assert_eq!(
        reject(&mut rig, Operation::Read, u64::MAX, 512),
        Error::OutOfRange
    );
    assert!(matches!(
        reject(&mut rig, Operation::Write, 0, 513),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        reject(&mut rig, Operation::Read, 0, 0),
        Error::InvalidArgument(_)
    ));
    assert!(matches!(
        reject(&mut rig, Operation::Flush, 0, 512),
        Error::InvalidArgument(_)
    ));
    assert_eq!(rig.driver.submit_discard(99, 2, 0), Err(Error::OutOfRange));
    assert!(matches!(
        rig.driver.submit_discard(0, 0, 0),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        rig.driver.submit_write_zeroes(u64::MAX, 1, false, 0),
        Err(Error::OutOfRange)
    );

    let no_segments: [Segment; 0] = [];
    let too_many = [Segment {
        phys: PhysAddr(0x1000),
        len: 512,
    }; MAX_SEGMENTS + 1];
    let empty_segment = [Segment {
        phys: PhysAddr(0x1000),
        len: 0,
    }];
    for segments in [&no_segments[..], &too_many[..], &empty_segment[..]] {
        // SAFETY: every call is refused before any address is used.
        let result = unsafe { rig.driver.submit_segments(Operation::Read, 0, segments, 0) };
        assert!(matches!(result, Err(Error::InvalidArgument(_))));
    }
    assert_eq!(rig.driver.stats().requests, 0);
    assert_eq!(rig.driver.outstanding_requests(), 0);
}

#[test]
fn read_only_device_refuses_modifications() {
    let device = FakeDevice::new(FakeDeviceConfig::modern(64));
    device.set_read_only();
    let mut rig = super::start(&device, DriverConfig::default()).unwrap();
    assert!(rig.driver.info().read_only);
    let err = rig
        .driver
        .submit_buffer(Operation::Write, 0, vec![0u8; 512].into_boxed_slice(), 0)
        .unwrap_err();
    assert_eq!(err.error, Error::ReadOnly);
    assert_eq!(rig.driver.submit_discard(0, 1, 0), Err(Error::ReadOnly));
    assert_eq!(
        rig.driver.submit_write_zeroes(0, 1, false, 0),
        Err(Error::ReadOnly)
    );
    rig.read(0, 1, 5);
    assert_eq!(only(&rig.drain(), 5).result, Ok(()));
}

#[test]
fn operations_the_device_lacks_are_refused() {
    let mut config = FakeDeviceConfig::modern(64);
    config.features = config
        .features
        .without(Features::BLK_FLUSH | Features::BLK_DISCARD | Features::BLK_WRITE_ZEROES);
    let mut rig = rig(config);
    assert_eq!(
        rig.driver.submit_flush(0),
        Err(Error::NotSupportedByDevice(Operation::Flush))
    );
    assert_eq!(
        rig.driver.submit_discard(0, 1, 0),
        Err(Error::NotSupportedByDevice(Operation::Discard))
    );
    assert_eq!(
        rig.driver.submit_write_zeroes(0, 1, false, 0),
        Err(Error::NotSupportedByDevice(Operation::WriteZeroes))
    );
}

#[test]
fn request_table_full_is_reported() {
    let config = DriverConfig {
        max_requests: 2,
        ..DriverConfig::default()
    };
    let mut rig = rig_with(FakeDeviceConfig::modern(64), config);
    rig.driver.submit_flush(1).unwrap();
    rig.driver.submit_flush(2).unwrap();
    assert_eq!(rig.driver.submit_flush(3), Err(Error::QueueFull));
    assert_eq!(rig.drain().len(), 2);
    rig.driver.submit_flush(4).unwrap();
}

#[test]
fn more_segments_than_seg_max_are_split_into_several_requests() {
    for indirect in [true, false] {
        let mut config = FakeDeviceConfig::modern(2048);
        config.seg_max = 2;
        let driver_config = DriverConfig {
            use_indirect: indirect,
            ..DriverConfig::default()
        };
        let mut rig = rig_with(config, driver_config);
        let data = pattern(40, 5, 6);
        let mut target = vec![0u8; 5 * 512];
        let segments: Vec<Segment> = (0..5)
            .map(|i| Segment {
                phys: PhysAddr(target.as_mut_ptr() as u64 + 512 * i),
                len: 512,
            })
            .collect();
        rig.device.write_disk(40, &data);
        // SAFETY: `target` lives until the completion below.
        unsafe {
            rig.driver
                .submit_segments(Operation::Read, 40, &segments, 1)
        }
        .unwrap();
        let done = rig.drain();
        assert_eq!(only(&done, 1).result, Ok(()));
        assert_eq!(target, data);
        assert_eq!(rig.driver.stats().virtio_requests, 3);
        assert_eq!(rig.device.longest_chain(), 4, "header + 2 data + status");
    }
}

#[test]
fn segments_longer_than_size_max_are_cut() {
    let mut config = FakeDeviceConfig::modern(2048);
    config.features = config.features | Features::BLK_SIZE_MAX;
    config.size_max = 1024;
    let mut rig = rig(config);
    let data = pattern(0, 8, 7);
    rig.write(0, &data, 1);
    let done = rig.drain();
    assert_eq!(only(&done, 1).result, Ok(()));
    assert_eq!(rig.device.read_disk(0, 4096), data);
    // One request of 4 KiB as 4 descriptors of 1 KiB (the fake checks the limit).
    assert_eq!(rig.driver.stats().virtio_requests, 1);
    assert_eq!(rig.device.longest_chain(), 6);
}

#[test]
fn segments_that_cannot_be_cut_on_sector_boundaries_are_refused() {
    let mut config = FakeDeviceConfig::modern(2048);
    config.seg_max = 1;
    let mut rig = rig(config);
    let mut buffer = vec![0u8; 1024];
    let base = buffer.as_mut_ptr() as u64;
    let segments = [
        Segment {
            phys: PhysAddr(base),
            len: 100,
        },
        Segment {
            phys: PhysAddr(base + 100),
            len: 924,
        },
    ];
    // SAFETY: refused before any address is used.
    let result = unsafe { rig.driver.submit_segments(Operation::Read, 0, &segments, 0) };
    assert!(matches!(result, Err(Error::InvalidArgument(_))));
    drop(buffer);
}

#[test]
fn dropping_the_driver_resets_the_device_and_frees_all_dma_memory() {
    let mut rig = rig(FakeDeviceConfig::modern(64));
    assert!(rig.hal.outstanding_pages() > 0);
    rig.read(0, 1, 1);
    rig.driver.kick();
    let hal = rig.hal.clone();
    let device = rig.device.clone();
    drop(rig);
    assert_eq!(hal.outstanding_pages(), 0);
    assert_eq!(device.status(), 0);
}

#[test]
fn init_out_of_memory_is_reported_and_fails_the_device() {
    let device = FakeDevice::new(FakeDeviceConfig::modern(64));
    let hal = device.hal();
    hal.fail_allocations_after(1);
    let transport = crate::probe(device.mmio()).unwrap();
    let result = crate::BlockDevice::new(
        transport,
        hal.clone(),
        FakeClock::new(),
        DriverConfig::default(),
    );
    assert_eq!(result.err(), Some(Error::NoMemory));
    assert_ne!(device.status() & status::FAILED, 0);
    assert_eq!(hal.outstanding_pages(), 0);
}

#[test]
fn errors_print_clearly() {
    assert_eq!(
        alloc::format!("{}", Error::NotSupportedByDevice(Operation::Flush)),
        "device does not offer flush"
    );
    assert_eq!(
        alloc::format!(
            "{}",
            Error::DeviceBroken(crate::RingFault::UsedIdOutOfRange { id: 9, size: 8 })
        ),
        "device broke the ring protocol: used ring id 9 is outside the queue of 8"
    );
    assert_eq!(
        alloc::format!("{}", Error::BadMagic(0x1234)),
        "not a virtio-mmio device (magic 0x00001234)"
    );
}
