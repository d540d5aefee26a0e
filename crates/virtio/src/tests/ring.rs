//! Ring arithmetic, free-list integrity, indirect vs direct, notification suppression.

use super::{pattern, rig_with};
use crate::fake::{CompletionOrder, FakeDeviceConfig};
use crate::{DriverConfig, Features};

fn config(queue_size: u16, indirect: bool, event_idx: bool) -> DriverConfig {
    DriverConfig {
        queue_size,
        use_indirect: indirect,
        use_event_idx: event_idx,
        ..DriverConfig::default()
    }
}

#[test]
fn more_than_65536_requests_through_a_queue_of_four() {
    for (indirect, legacy) in [(true, false), (false, true)] {
        let device = if legacy {
            FakeDeviceConfig::legacy(64)
        } else {
            FakeDeviceConfig::modern(64)
        };
        let mut rig = rig_with(device, config(4, indirect, true));
        rig.device.write_disk(0, &pattern(0, 64, 9));
        let total = 70_000u64;
        let mut submitted = 0u64;
        let mut completed = 0u64;
        let mut round = 0u64;
        while completed < total {
            // Keep the ring full plus a few waiting in software.
            while submitted < total && rig.driver.outstanding_requests() < 6 {
                rig.read(submitted % 64, 1, submitted);
                submitted += 1;
            }
            rig.driver.kick();
            let order = if round.is_multiple_of(2) {
                CompletionOrder::InOrder
            } else {
                CompletionOrder::Reverse
            };
            rig.device.process_in(3, order);
            for done in rig.poll() {
                assert_eq!(done.result, Ok(()));
                let sector = done.token % 64;
                assert_eq!(
                    done.buffer.as_deref(),
                    Some(&pattern(0, 64, 9)[sector as usize * 512..][..512])
                );
                completed += 1;
            }
            round += 1;
        }
        assert_eq!(completed, total);
        let stats = rig.driver.stats();
        assert_eq!(stats.used_entries, total);
        assert!(stats.virtio_requests > 65_536);
        rig.driver.check_invariants();
    }
}

#[test]
fn free_list_stays_intact_under_shuffled_completions() {
    let mut rig = rig_with(FakeDeviceConfig::modern(256), config(16, false, true));
    let mut seed = 1;
    for step in 0..400u64 {
        for i in 0..(step % 5) {
            rig.read((step + i) % 200, 1 + (i as usize % 3), step * 8 + i);
        }
        rig.driver.kick();
        seed += 7;
        rig.device
            .process_in((step % 4) as usize, CompletionOrder::Shuffled(seed));
        rig.poll();
        rig.driver.check_invariants();
    }
    rig.drain();
    rig.driver.check_invariants();
}

#[test]
fn indirect_descriptors_take_one_ring_slot_per_request() {
    let mut indirect = rig_with(FakeDeviceConfig::modern(256), config(8, true, true));
    let mut direct = rig_with(FakeDeviceConfig::modern(256), config(8, false, true));
    for rig in [&mut indirect, &mut direct] {
        for i in 0..8 {
            rig.read(i, 1, i);
        }
        rig.driver.kick();
    }
    // 8 requests in 8 slots, against 3 descriptors each (2 fit in 8).
    assert_eq!(indirect.device.pending(), 8);
    assert_eq!(direct.device.pending(), 2);
    assert_eq!(indirect.driver.stats().ring_full, 0);
    assert_eq!(direct.driver.stats().ring_full, 6);
    assert_eq!(indirect.drain().len(), 8);
    assert_eq!(direct.drain().len(), 8);
    assert_eq!(indirect.device.chains_seen(), (8, 0));
    assert_eq!(direct.device.chains_seen(), (0, 8));
}

#[test]
fn a_batch_of_submissions_costs_one_notification() {
    let mut rig = rig_with(FakeDeviceConfig::modern(256), config(64, true, true));
    for i in 0..10 {
        rig.read(i, 1, i);
    }
    assert_eq!(rig.device.notifications(), 0, "nothing sent before kick");
    rig.driver.kick();
    rig.driver.kick();
    assert_eq!(rig.device.notifications(), 1);
    assert_eq!(rig.driver.stats().notifies, 1);
}

#[test]
fn event_idx_suppresses_notifications_while_the_device_is_behind() {
    for event_idx in [true, false] {
        let mut rig = rig_with(FakeDeviceConfig::modern(256), config(64, true, event_idx));
        assert_eq!(
            rig.device.driver_features().contains(Features::EVENT_IDX),
            event_idx
        );
        for i in 0..8 {
            rig.read(i, 1, i);
        }
        rig.driver.kick();
        for i in 8..16 {
            rig.read(i, 1, i);
        }
        rig.driver.kick();
        // With EVENT_IDX the device asked for a kick only past what it had seen (0): the
        // second batch needs none. Without it every batch notifies.
        let expected = if event_idx { 1 } else { 2 };
        assert_eq!(
            rig.device.notifications(),
            expected,
            "event_idx={event_idx}"
        );
        // Once the device caught up, the next batch notifies again.
        rig.device.process(usize::MAX);
        rig.poll();
        rig.read(0, 1, 100);
        rig.driver.kick();
        assert_eq!(rig.device.notifications(), expected + 1);
    }
}

#[test]
fn event_idx_suppresses_interrupts_until_the_driver_catches_up() {
    for event_idx in [true, false] {
        let mut rig = rig_with(FakeDeviceConfig::modern(256), config(64, true, event_idx));
        for i in 0..8 {
            rig.read(i, 1, i);
        }
        rig.driver.kick();
        // Two device batches before the driver handles anything.
        rig.device.process(4);
        rig.device.process(4);
        let expected = if event_idx { 1 } else { 2 };
        assert_eq!(
            rig.device.interrupts_raised(),
            expected,
            "event_idx={event_idx}"
        );
        let (report, done) = rig.interrupt();
        assert_eq!(report.acknowledged, 1);
        assert_eq!(done.len(), 8);
        assert_eq!(rig.driver.stats().interrupts, 1);
        assert_eq!(rig.driver.stats().used_entries, 8);
        // Re-armed: the next completion interrupts.
        rig.read(0, 1, 9);
        rig.driver.kick();
        rig.device.process(1);
        assert_eq!(rig.device.interrupts_raised(), expected + 1);
    }
}

#[test]
fn synchronous_device_costs_one_notify_and_one_interrupt_per_batch() {
    let mut rig = rig_with(FakeDeviceConfig::modern(4096), config(256, true, true));
    rig.device.set_complete_on_notify(true);
    for batch in 0..10u64 {
        for i in 0..32 {
            rig.read(batch * 32 + i, 1, batch * 32 + i);
        }
        rig.driver.kick();
        let (_, done) = rig.interrupt();
        assert_eq!(done.len(), 32);
    }
    let stats = rig.driver.stats();
    assert_eq!(stats.requests, 320);
    assert_eq!(stats.notifies, 10);
    assert_eq!(stats.interrupts, 10);
}
