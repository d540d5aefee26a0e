//! Every fault of the brief's list, each checked for its exact error and for what the driver
//! does afterwards.

use alloc::vec;

use super::{both_transports, only, pattern, rig, rig_with, start};
use crate::fake::{FakeDevice, FakeDeviceConfig, QueueResetBehaviour, StatusFault};
use crate::mmio::{INT_CONFIG_CHANGE, INT_USED_BUFFER, status};
use crate::{DriverConfig, Error, Features, Operation, PhysAddr, RingFault, Segment, probe};

fn start_err(config: FakeDeviceConfig) -> (FakeDevice, Error) {
    let device = FakeDevice::new(config);
    let error = start(&device, DriverConfig::default())
        .err()
        .expect("start must fail");
    (device, error)
}

#[test]
fn bad_magic_unknown_version_and_empty_slot_are_skipped() {
    let mut config = FakeDeviceConfig::modern(64);
    config.magic = 0x1234;
    assert_eq!(
        probe(FakeDevice::new(config).mmio()).err(),
        Some(Error::BadMagic(0x1234))
    );
    let mut config = FakeDeviceConfig::modern(64);
    config.version = 3;
    assert_eq!(
        probe(FakeDevice::new(config).mmio()).err(),
        Some(Error::UnsupportedVersion(3))
    );
    let mut config = FakeDeviceConfig::modern(64);
    config.device_id = 0;
    let device = FakeDevice::new(config);
    assert_eq!(probe(device.mmio()).err(), Some(Error::NoDevice));
    assert_eq!(device.status(), 0, "empty slot untouched");
}

#[test]
fn non_block_device_is_refused() {
    let mut config = FakeDeviceConfig::modern(64);
    config.device_id = 1;
    let (device, error) = start_err(config);
    assert_eq!(error, Error::WrongDeviceType(1));
    assert_eq!(device.status(), 0);
}

#[test]
fn modern_device_without_version_1_fails() {
    let mut config = FakeDeviceConfig::modern(64);
    config.features = config.features.without(Features::VERSION_1);
    let (device, error) = start_err(config);
    assert_eq!(error, Error::MissingVersion1);
    assert_ne!(device.status() & status::FAILED, 0);
}

#[test]
fn features_ok_that_does_not_stick_fails() {
    let device = FakeDevice::new(FakeDeviceConfig::modern(64));
    device.set_features_ok_sticks(false);
    let error = start(&device, DriverConfig::default()).err().unwrap();
    assert_eq!(error, Error::FeaturesRejected);
    assert_ne!(device.status() & status::FAILED, 0);
    assert_eq!(device.status() & status::FEATURES_OK, 0);
    assert_eq!(device.status() & status::DRIVER_OK, 0);
}

#[test]
fn queue_num_max_zero_or_tiny_is_unusable_and_odd_sizes_are_clamped() {
    for config in both_transports() {
        for max in [0, 2, 3] {
            let mut config = config.clone();
            config.queue_num_max = max;
            let (device, error) = start_err(config);
            assert_eq!(error, Error::QueueUnavailable { queue: 0, max });
            assert_ne!(device.status() & status::FAILED, 0);
        }
        for (max, size) in [(16, 16), (100, 64), (1000, 256), (5, 4)] {
            let mut config = config.clone();
            config.queue_num_max = max;
            let mut rig = rig(config);
            assert_eq!(rig.driver.queue_size(), size);
            assert_eq!(rig.device.queue_size(), u32::from(size));
            rig.read(0, 1, 1);
            assert_eq!(only(&rig.drain(), 1).result, Ok(()));
        }
    }
}

#[test]
fn queue_already_live_aborts() {
    for config in both_transports() {
        let device = FakeDevice::new(config);
        device.preset_queue_live();
        let error = start(&device, DriverConfig::default()).err().unwrap();
        assert_eq!(error, Error::QueueAlreadyInUse(0));
        assert_ne!(device.status() & status::FAILED, 0);
    }
}

#[test]
fn reset_that_never_completes_times_out_at_init() {
    let device = FakeDevice::new(FakeDeviceConfig::modern(64));
    // A device left running by someone else, which then refuses to reset.
    let first = start(&device, DriverConfig::default()).unwrap();
    first.device.set_reset_stuck(true);
    let error = start(&device, DriverConfig::default()).err().unwrap();
    assert_eq!(error, Error::Timeout("device reset"));
    // The first driver cannot stop it either: it leaks its DMA memory instead of freeing
    // memory the device may still write.
    let hal = first.hal.clone();
    drop(first);
    assert!(hal.outstanding_pages() > 0);
}

#[test]
fn device_needs_reset_resets_and_resubmits_in_flight_requests() {
    for config in both_transports() {
        let mut rig = rig(config);
        let data = pattern(0, 4, 11);
        rig.device.write_disk(0, &data);
        rig.read(0, 4, 1);
        rig.write(8, &pattern(8, 2, 12), 2);
        rig.driver.kick();
        rig.device.inject_needs_reset();
        let resets_before = rig.device.device_resets();
        let (report, done) = rig.interrupt();
        assert!(report.device_reset);
        assert_eq!(report.acknowledged, INT_CONFIG_CHANGE);
        assert!(done.is_empty());
        assert_eq!(rig.device.device_resets(), resets_before + 1);
        assert_eq!(rig.driver.stats().resubmissions, 2);
        let done = rig.drain();
        assert_eq!(done.len(), 2);
        assert_eq!(only(&done, 1).buffer.as_deref(), Some(&data[..]));
        assert_eq!(only(&done, 2).result, Ok(()));
        assert_eq!(rig.device.read_disk(8, 1024), pattern(8, 2, 12));
        rig.driver.check_invariants();
    }
}

#[test]
fn config_change_updates_capacity_and_later_checks() {
    let mut rig = rig(FakeDeviceConfig::modern(2048));
    rig.device.set_capacity(100);
    let (report, _) = rig.interrupt();
    assert_eq!(report.capacity, Some(100));
    assert!(!report.device_reset);
    assert_eq!(rig.driver.info().capacity, 100);
    let err = rig
        .driver
        .submit_buffer(Operation::Read, 100, vec![0u8; 512].into_boxed_slice(), 0)
        .unwrap_err();
    assert_eq!(err.error, Error::OutOfRange);
    rig.device.set_capacity(4096);
    let (report, _) = rig.interrupt();
    assert_eq!(report.capacity, Some(4096));
    rig.read(4000, 1, 3);
    assert_eq!(only(&rig.drain(), 3).result, Ok(()));
}

#[test]
fn requests_waiting_when_capacity_shrinks_fail_out_of_range() {
    let config = DriverConfig {
        queue_size: 4,
        use_indirect: false,
        ..DriverConfig::default()
    };
    let mut rig = rig_with(FakeDeviceConfig::modern(2048), config);
    rig.read(0, 1, 1); // in the ring
    rig.read(1000, 1, 2); // waits: the ring holds one direct request
    rig.driver.kick();
    rig.device.set_capacity(500);
    let (_, mut done) = rig.interrupt();
    done.extend(rig.drain());
    assert_eq!(only(&done, 1).result, Ok(()));
    assert_eq!(only(&done, 2).result, Err(Error::OutOfRange));
}

fn broken_ring(inject: impl Fn(&FakeDevice), expected: RingFault) {
    let mut rig = rig_with(
        FakeDeviceConfig::modern(256),
        DriverConfig {
            queue_size: 8,
            ..DriverConfig::default()
        },
    );
    for i in 0..4 {
        rig.read(i, 1, i);
    }
    rig.driver.kick();
    inject(&rig.device);
    rig.device.process(1);
    let (_, done) = rig.interrupt();
    assert_eq!(done.len(), 4, "every request fails, once");
    for completion in &done {
        assert_eq!(completion.result, Err(Error::DeviceBroken(expected)));
        assert!(
            completion.buffer.is_some(),
            "device was stopped: buffers returned"
        );
    }
    assert_eq!(rig.device.status(), 0, "device stopped by a reset");
    assert_eq!(
        rig.driver.submit_flush(9),
        Err(Error::DeviceBroken(expected))
    );
    assert_eq!(rig.driver.resize(0, 16), Err(Error::DeviceBroken(expected)));
    assert_eq!(rig.driver.failure(), Some(Error::DeviceBroken(expected)));
    rig.driver.check_invariants();
    // Recovery.
    rig.driver.reset().unwrap();
    assert_eq!(rig.driver.failure(), None);
    rig.device.write_disk(3, &pattern(3, 1, 13));
    rig.read(3, 1, 10);
    let done = rig.drain();
    assert_eq!(
        only(&done, 10).buffer.as_deref(),
        Some(&pattern(3, 1, 13)[..])
    );
}

#[test]
fn used_id_out_of_range_breaks_the_queue() {
    broken_ring(
        |device| device.inject_used_id(999),
        RingFault::UsedIdOutOfRange { id: 999, size: 8 },
    );
}

#[test]
fn used_id_not_in_flight_breaks_the_queue() {
    // Heads 0..3 carry the four requests; 6 is free.
    broken_ring(
        |device| device.inject_used_id(6),
        RingFault::UsedIdNotInFlight { id: 6 },
    );
}

#[test]
fn used_index_jumping_past_in_flight_breaks_the_queue() {
    broken_ring(
        |device| device.inject_used_idx_jump(10),
        RingFault::UsedIndexJump {
            advanced: 11,
            in_flight: 4,
        },
    );
}

#[test]
fn bad_status_bytes_become_typed_errors() {
    for (fault, expected) in [
        (StatusFault::Status(1), Error::IoError),
        (StatusFault::Status(2), Error::Unsupported),
        (StatusFault::Status(7), Error::UnknownStatus(7)),
        (StatusFault::NotWritten, Error::StatusNotWritten),
    ] {
        let mut rig = rig(FakeDeviceConfig::modern(64));
        rig.device.inject_status(fault);
        rig.read(0, 1, 1);
        rig.read(1, 1, 2);
        let done = rig.drain();
        assert_eq!(only(&done, 1).result, Err(expected));
        assert_eq!(
            only(&done, 2).result,
            Ok(()),
            "the next request is unaffected"
        );
    }
}

#[test]
fn backend_io_errors_reach_the_caller() {
    for config in both_transports() {
        let mut rig = rig(config);
        rig.device.add_bad_sector(20);
        rig.read(16, 8, 1);
        rig.write(20, &pattern(20, 1, 1), 2);
        rig.read(24, 8, 3);
        let done = rig.drain();
        assert_eq!(only(&done, 1).result, Err(Error::IoError));
        assert_eq!(only(&done, 2).result, Err(Error::IoError));
        assert_eq!(only(&done, 3).result, Ok(()));
    }
}

#[test]
fn spurious_interrupts_are_not_acknowledged() {
    let mut rig = rig(FakeDeviceConfig::modern(64));
    let (report, done) = rig.interrupt();
    assert_eq!((report.status, report.acknowledged), (0, 0));
    assert!(done.is_empty());
    assert!(rig.device.acks().is_empty());
    // An undefined bit alongside a real completion: only the real cause is acknowledged.
    rig.read(0, 1, 1);
    rig.driver.kick();
    rig.device.process(1);
    rig.device.raise_interrupt_bits(0x4);
    let (report, done) = rig.interrupt();
    assert_eq!(report.status, 0x4 | INT_USED_BUFFER);
    assert_eq!(report.acknowledged, INT_USED_BUFFER);
    assert_eq!(done.len(), 1);
    assert_eq!(rig.device.acks(), [INT_USED_BUFFER]);
    assert_eq!(rig.device.interrupt_status(), 0x4);
    // Only the undefined bit left: spurious.
    let (report, _) = rig.interrupt();
    assert_eq!(report.acknowledged, 0);
    let stats = rig.driver.stats();
    assert_eq!((stats.interrupts, stats.spurious_interrupts), (1, 2));
}

#[test]
fn queue_reset_that_never_clears_falls_back_to_a_device_reset() {
    let mut rig = rig(FakeDeviceConfig::modern(2048));
    rig.device.set_queue_reset(QueueResetBehaviour::NeverClears);
    let data = pattern(0, 2, 14);
    rig.device.write_disk(0, &data);
    rig.read(0, 2, 1);
    rig.driver.kick();
    // The stalled device never completes: the drain times out, the device is reset and the
    // read resubmitted.
    assert_eq!(
        rig.driver.resize(0, 64),
        Ok(crate::ResizeStatus::InProgress)
    );
    rig.clock.advance(DriverConfig::default().drain_timeout_ns);
    rig.poll();
    assert!(!rig.driver.is_resizing());
    assert_eq!(rig.driver.queue_size(), 64);
    assert_eq!(rig.device.queue_size(), 64);
    let done = rig.drain();
    assert_eq!(only(&done, 1).buffer.as_deref(), Some(&data[..]));
}

#[test]
fn hung_queue_reset_then_out_of_memory_still_recovers_the_queue() {
    let mut rig = rig(FakeDeviceConfig::modern(2048));
    rig.device.set_queue_reset(QueueResetBehaviour::NeverClears);
    let data = pattern(0, 1, 15);
    rig.device.write_disk(0, &data);
    rig.read(0, 1, 1);
    rig.driver.kick();
    rig.hal.fail_allocations_after(0);
    assert_eq!(rig.driver.resize(0, 64), Err(Error::NoMemory));
    rig.hal.allow_allocations();
    // The stalled queue was brought back by a device reset at the old size.
    assert!(!rig.driver.is_resizing());
    assert_eq!(rig.device.queue_size(), 256);
    let done = rig.drain();
    assert_eq!(only(&done, 1).buffer.as_deref(), Some(&data[..]));
}

#[test]
fn caller_memory_is_never_handed_back_while_the_device_may_still_write_it() {
    let mut rig = rig_with(
        FakeDeviceConfig::modern(256),
        DriverConfig {
            queue_size: 8,
            ..DriverConfig::default()
        },
    );
    // The caller's own memory (identity-mapped on the fake), and an owned-buffer request.
    let mut memory = vec![0u8; 512];
    let segments = [Segment {
        phys: PhysAddr(memory.as_mut_ptr() as u64),
        len: 512,
    }];
    // SAFETY: `memory` outlives the driver and the device (both dropped first, below).
    unsafe { rig.driver.submit_segments(Operation::Read, 0, &segments, 1) }.unwrap();
    rig.read(1, 1, 2);
    rig.driver.kick();
    // The device breaks the ring and then refuses to reset: it may go on writing.
    rig.device.set_reset_stuck(true);
    rig.device.inject_used_id(1000);
    rig.device.process(1);
    let (_, done) = rig.interrupt();
    let fault = Error::DeviceBroken(RingFault::UsedIdOutOfRange { id: 1000, size: 8 });
    assert_eq!(rig.driver.failure(), Some(fault));
    // The owned buffer is leaked, the request reported without it; the request on caller
    // memory is never reported, so the caller never reuses memory the device may write.
    assert_eq!(done.len(), 1, "only the owned-buffer request is reported");
    assert_eq!(done[0].token, 2);
    assert_eq!(done[0].result, Err(fault));
    assert!(done[0].buffer.is_none());
    assert_eq!(rig.driver.outstanding_requests(), 1);
    assert!(rig.poll().is_empty());
    rig.driver.check_invariants();
    drop(rig);
    drop(memory);
}
