//! Resizing with requests in flight, on both paths, including the failure cases.

use alloc::vec::Vec;

use super::{Rig, pattern, rig, rig_with};
use crate::fake::{CompletionOrder, FakeClock, FakeDevice, FakeDeviceConfig, QueueResetBehaviour};
use crate::{DriverConfig, Error, ResizePath, ResizeStatus};

fn small(queue_size: u16) -> DriverConfig {
    DriverConfig {
        queue_size,
        ..DriverConfig::default()
    }
}

/// Submits reads of sectors `0..count` (tokens = sectors) on a disk holding `pattern`.
fn reads(rig: &mut Rig, count: u64) {
    rig.device.write_disk(0, &pattern(0, 512, 20));
    for sector in 0..count {
        rig.read(sector, 1, sector);
    }
    rig.driver.kick();
}

/// Every token `0..count` completed exactly once with the right data.
fn check_reads(done: &[crate::Completion], count: u64) {
    let mut seen = alloc::vec![0; count as usize];
    let disk = pattern(0, 512, 20);
    for completion in done {
        seen[completion.token as usize] += 1;
        assert_eq!(completion.result, Ok(()), "token {}", completion.token);
        let sector = completion.token as usize;
        assert_eq!(
            completion.buffer.as_deref(),
            Some(&disk[sector * 512..][..512])
        );
    }
    assert!(seen.iter().all(|&n| n == 1), "completion counts {seen:?}");
}

#[test]
fn illegal_sizes_are_refused_and_same_size_is_a_no_op() {
    let mut rig = rig_with(FakeDeviceConfig::modern(64), small(16));
    for (queue, size) in [(0, 0), (0, 3), (0, 6), (0, 2), (0, 2048), (1, 16)] {
        assert!(
            matches!(
                rig.driver.resize(queue, size),
                Err(Error::InvalidArgument(_))
            ),
            "queue {queue} size {size}"
        );
    }
    assert_eq!(rig.driver.resize(0, 16), Ok(ResizeStatus::Unchanged));
    assert_eq!(rig.device.device_resets(), 1, "only the initial reset");
    assert_eq!(rig.device.queue_resets(), 0);
}

#[test]
fn queue_reset_path_grows_with_requests_in_flight() {
    let mut rig = rig_with(FakeDeviceConfig::modern(2048), small(16));
    reads(&mut rig, 24); // 16 in the ring, 8 waiting
    rig.device.process(5);
    assert_eq!(
        rig.driver.resize(0, 64),
        Ok(ResizeStatus::Done(ResizePath::QueueReset))
    );
    assert_eq!(rig.device.queue_resets(), 1);
    assert_eq!(rig.device.device_resets(), 1, "no device reset");
    assert_eq!(rig.device.queue_size(), 64);
    assert_eq!(rig.driver.queue_size(), 64);
    // The 5 completed before the reset are reaped, the 11 others resubmitted with the 8.
    assert_eq!(rig.driver.stats().resubmissions, 11);
    assert_eq!(rig.device.pending(), 19);
    let done = rig.drain();
    check_reads(&done, 24);
    rig.driver.check_invariants();
}

#[test]
fn queue_reset_path_shrinks_below_the_number_in_flight() {
    let mut rig = rig_with(FakeDeviceConfig::modern(2048), small(64));
    reads(&mut rig, 60);
    rig.device.process_in(10, CompletionOrder::Reverse);
    assert_eq!(
        rig.driver.resize(0, 8),
        Ok(ResizeStatus::Done(ResizePath::QueueReset))
    );
    assert_eq!(rig.device.pending(), 8);
    for i in 60..70 {
        rig.read(i, 1, i); // submitted after: must wait behind the resubmissions
    }
    let done = rig.drain();
    check_reads(&done, 70);
    assert_eq!(rig.device.queue_resets(), 1);
}

#[test]
fn queue_reset_path_out_of_memory_keeps_the_old_ring() {
    let mut rig = rig_with(FakeDeviceConfig::modern(2048), small(16));
    reads(&mut rig, 20);
    rig.hal.fail_allocations_after(0);
    assert_eq!(rig.driver.resize(0, 128), Err(Error::NoMemory));
    assert_eq!(rig.driver.queue_size(), 16);
    assert_eq!(rig.device.queue_size(), 16);
    assert_eq!(
        rig.device.queue_resets(),
        1,
        "the queue was reset and set up again"
    );
    let done = rig.drain();
    check_reads(&done, 20);
    rig.hal.allow_allocations();
    assert_eq!(
        rig.driver.resize(0, 128),
        Ok(ResizeStatus::Done(ResizePath::QueueReset))
    );
}

#[test]
fn ignored_queue_reset_falls_back_and_is_not_tried_again() {
    let mut rig = rig_with(FakeDeviceConfig::modern(2048), small(16));
    rig.device.set_queue_reset(QueueResetBehaviour::Ignored);
    reads(&mut rig, 12);
    assert_eq!(rig.driver.resize(0, 32), Ok(ResizeStatus::InProgress));
    // The ignored reset left the queue running: the device drains it normally.
    rig.device.process(usize::MAX);
    let mut done = rig.poll();
    assert!(!rig.driver.is_resizing());
    assert_eq!(rig.device.queue_size(), 32);
    done.extend(rig.drain());
    check_reads(&done, 12);
    // Known not to work now: straight to path B (no queue-reset attempt even if it would).
    rig.device.set_queue_reset(QueueResetBehaviour::Works);
    assert_eq!(
        rig.driver.resize(0, 64),
        Ok(ResizeStatus::Done(ResizePath::DeviceReset))
    );
    assert_eq!(rig.device.queue_resets(), 0);
}

#[test]
fn device_reset_path_drains_flushes_and_resubmits_nothing_lost() {
    for config in [
        FakeDeviceConfig::legacy(2048),
        FakeDeviceConfig::modern(2048),
    ] {
        let mut config = config;
        config.features = config.features.without(crate::Features::RING_RESET);
        let mut rig = rig_with(config, small(8));
        rig.write(100, &pattern(100, 1, 21), 100);
        reads(&mut rig, 10); // the write and 7 reads in the ring, 3 reads waiting
        rig.device.process(2); // the write and one read complete
        let resets = rig.device.device_resets();
        assert_eq!(rig.driver.resize(0, 32), Ok(ResizeStatus::InProgress));
        assert_eq!(rig.driver.resize(0, 64), Err(Error::Busy));
        // Submissions during the resize wait in software: the device sees nothing new.
        let pending_before = rig.device.pending();
        rig.read(10, 1, 10);
        rig.driver.kick();
        assert_eq!(rig.device.pending(), pending_before);
        let mut done = rig.poll();
        rig.device.process(usize::MAX);
        done.extend(rig.poll());
        // Drained: a flush was sent because a write had completed.
        assert_eq!(rig.device.flushes(), 0);
        rig.device.process(usize::MAX);
        done.extend(rig.poll());
        assert_eq!(rig.device.flushes(), 1);
        assert!(!rig.driver.is_resizing());
        assert_eq!(rig.device.device_resets(), resets + 1);
        assert_eq!(rig.device.queue_size(), 32);
        assert_eq!(rig.driver.stats().resizes_by_device_reset, 1);
        done.extend(rig.drain());
        let write = super::only(&done, 100);
        assert_eq!(write.result, Ok(()));
        let reads_only: Vec<_> = done.into_iter().filter(|c| c.token != 100).collect();
        check_reads(&reads_only, 11);
        assert_eq!(rig.device.read_disk(100, 512), pattern(100, 1, 21));
    }
}

#[test]
fn device_reset_path_resubmits_what_did_not_drain_in_time() {
    let mut rig = rig_with(FakeDeviceConfig::legacy(2048), small(16));
    reads(&mut rig, 16);
    rig.device.process(3);
    assert_eq!(rig.driver.resize(0, 4), Ok(ResizeStatus::InProgress));
    let mut done = rig.poll();
    assert_eq!(done.len(), 3);
    assert!(rig.driver.is_resizing());
    rig.clock.advance(DriverConfig::default().drain_timeout_ns);
    done.extend(rig.poll());
    assert!(!rig.driver.is_resizing());
    assert_eq!(rig.device.queue_size(), 4);
    assert_eq!(rig.driver.stats().resubmissions, 13);
    done.extend(rig.drain());
    check_reads(&done, 16);
    rig.driver.check_invariants();
}

#[test]
fn device_reset_path_out_of_memory_changes_nothing() {
    let mut rig = rig_with(FakeDeviceConfig::legacy(2048), small(16));
    reads(&mut rig, 6);
    rig.hal.fail_allocations_after(0);
    assert_eq!(rig.driver.resize(0, 64), Err(Error::NoMemory));
    assert!(!rig.driver.is_resizing());
    assert_eq!(rig.device.device_resets(), 1);
    rig.hal.allow_allocations();
    let done = rig.drain();
    check_reads(&done, 6);
    assert_eq!(rig.device.queue_size(), 16);
}

#[test]
fn device_needs_reset_during_a_drain_completes_the_resize() {
    let mut rig = rig_with(FakeDeviceConfig::legacy(2048), small(16));
    reads(&mut rig, 10);
    assert_eq!(rig.driver.resize(0, 32), Ok(ResizeStatus::InProgress));
    rig.device.inject_needs_reset();
    let (report, _) = rig.interrupt();
    assert!(report.device_reset);
    assert!(!rig.driver.is_resizing());
    assert_eq!(rig.device.queue_size(), 32);
    let done = rig.drain();
    check_reads(&done, 10);
}

#[test]
fn device_reset_that_never_completes_fails_every_request() {
    let mut rig = rig_with(FakeDeviceConfig::legacy(2048), small(16));
    reads(&mut rig, 4);
    rig.device.set_reset_stuck(true);
    assert_eq!(rig.driver.resize(0, 32), Ok(ResizeStatus::InProgress));
    rig.clock.advance(DriverConfig::default().drain_timeout_ns);
    let done = rig.poll();
    assert_eq!(done.len(), 4);
    for completion in &done {
        assert_eq!(completion.result, Err(Error::Timeout("device reset")));
        assert!(
            completion.buffer.is_none(),
            "buffers the device may write are leaked"
        );
    }
    assert_eq!(
        rig.driver.submit_flush(1),
        Err(Error::Timeout("device reset"))
    );
    rig.device.set_reset_stuck(false);
    rig.driver.reset().unwrap();
    reads(&mut rig, 2);
    check_reads(&rig.drain(), 2);
}

#[test]
fn resize_blocking_finishes_path_b_with_a_live_device() {
    let device = FakeDevice::new(FakeDeviceConfig::legacy(2048));
    let hal = device.hal();
    let clock = FakeClock::driving(&device, 2);
    let transport = crate::probe(device.mmio()).unwrap();
    let mut driver = crate::BlockDevice::new(transport, hal.clone(), clock, small(8)).unwrap();
    device.write_disk(0, &pattern(0, 512, 20));
    for sector in 0..12u64 {
        driver
            .submit_buffer(
                crate::Operation::Read,
                sector,
                alloc::vec![0u8; 512].into_boxed_slice(),
                sector,
            )
            .unwrap();
    }
    driver.kick();
    let mut done = Vec::new();
    let status = driver
        .resize_blocking(0, 128, &mut |c| done.push(c))
        .unwrap();
    assert_eq!(status, ResizeStatus::Done(ResizePath::DeviceReset));
    assert_eq!(device.queue_size(), 128);
    for _ in 0..100 {
        device.process(usize::MAX);
        driver.poll(&mut |c| done.push(c));
    }
    check_reads(&done, 12);
    drop(driver);
    assert_eq!(
        hal.outstanding_pages(),
        0,
        "old rings freed, new ones freed on drop"
    );
}

#[test]
fn rings_are_freed_after_resizes() {
    let mut rig = rig(FakeDeviceConfig::modern(2048));
    let pages = rig.hal.outstanding_pages();
    assert_eq!(
        rig.driver.resize(0, 1024),
        Ok(ResizeStatus::Done(ResizePath::QueueReset))
    );
    assert!(rig.hal.outstanding_pages() > pages);
    assert_eq!(
        rig.driver.resize(0, 256),
        Ok(ResizeStatus::Done(ResizePath::QueueReset))
    );
    assert_eq!(rig.hal.outstanding_pages(), pages);
}
