//! When to resize the request queue.
//!
//! The rule: the kernel samples the device at a steady pace (a timer tick, or every few
//! hundred completions) with [`BlockDevice::sample_occupancy`] and feeds each sample to
//! [`ResizePolicy::observe`]. A window is `window` consecutive samples at one queue size.
//!
//! * Grow (double, up to `max_size`) as soon as submissions found the ring full
//!   `grow_after` times within the current window: the queue is the bottleneck.
//! * Shrink (halve, down to `min_size`) when a whole window passes in which the peak number
//!   of descriptors in use stayed below a quarter of the queue: the ring and its request
//!   slots are mostly idle memory. Below a quarter, the halved queue is still at most half
//!   full, so shrinking cannot immediately cause the ring-full waits that would grow it back.
//! * After any decision, and whenever the size changes, the window starts afresh.
//!
//! [`BlockDevice::sample_occupancy`]: crate::BlockDevice::sample_occupancy

use crate::block::{MIN_QUEUE_SIZE, QueueSample};
use crate::error::Error;

/// The adaptive resize rule (see the module documentation).
#[derive(Clone, Debug)]
pub struct ResizePolicy {
    grow_after: u64,
    window: u32,
    min_size: u16,
    max_size: u16,
    /// Size the current window observes.
    size: u16,
    samples: u32,
    ring_full: u64,
    stayed_below_quarter: bool,
}

impl ResizePolicy {
    /// A policy that grows after `grow_after` ring-full events within `window` samples and
    /// shrinks after `window` quiet samples, keeping sizes within `min_size..=max_size`
    /// (powers of two, `min_size >= 4`; pass QueueNumMax or less as `max_size`).
    pub fn new(grow_after: u64, window: u32, min_size: u16, max_size: u16) -> Result<Self, Error> {
        if grow_after == 0 || window == 0 {
            return Err(Error::InvalidArgument("policy thresholds must be positive"));
        }
        if !min_size.is_power_of_two() || !max_size.is_power_of_two() {
            return Err(Error::InvalidArgument("policy sizes must be powers of two"));
        }
        if min_size < MIN_QUEUE_SIZE || min_size > max_size {
            return Err(Error::InvalidArgument(
                "policy needs 4 <= min_size <= max_size",
            ));
        }
        Ok(Self {
            grow_after,
            window,
            min_size,
            max_size,
            size: 0,
            samples: 0,
            ring_full: 0,
            stayed_below_quarter: true,
        })
    }

    fn restart(&mut self, size: u16) {
        self.size = size;
        self.samples = 0;
        self.ring_full = 0;
        self.stayed_below_quarter = true;
    }

    /// Takes one sample; returns the size to resize to, if the rule says so.
    pub fn observe(&mut self, sample: QueueSample) -> Option<u16> {
        if sample.size != self.size {
            self.restart(sample.size);
        }
        self.samples += 1;
        self.ring_full += sample.ring_full;
        self.stayed_below_quarter &= u32::from(sample.peak_in_use) * 4 < u32::from(sample.size);
        if self.ring_full >= self.grow_after && sample.size < self.max_size {
            self.restart(sample.size);
            return Some(sample.size.saturating_mul(2).min(self.max_size));
        }
        if self.samples < self.window {
            return None;
        }
        let shrink = self.stayed_below_quarter && sample.size > self.min_size;
        self.restart(sample.size);
        shrink.then(|| (sample.size / 2).max(self.min_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(size: u16, peak_in_use: u16, ring_full: u64) -> QueueSample {
        QueueSample {
            size,
            peak_in_use,
            ring_full,
        }
    }

    #[test]
    fn grows_once_ring_full_reaches_threshold_within_window() {
        let mut policy = ResizePolicy::new(3, 10, 4, 1024).unwrap();
        assert_eq!(policy.observe(sample(64, 64, 1)), None);
        assert_eq!(policy.observe(sample(64, 64, 1)), None);
        assert_eq!(policy.observe(sample(64, 64, 1)), Some(128));
        // Capped at max.
        let mut capped = ResizePolicy::new(1, 10, 4, 128).unwrap();
        assert_eq!(capped.observe(sample(128, 128, 5)), None);
    }

    #[test]
    fn ring_full_events_from_an_old_window_do_not_count() {
        let mut policy = ResizePolicy::new(2, 3, 4, 1024).unwrap();
        assert_eq!(policy.observe(sample(64, 60, 1)), None);
        assert_eq!(policy.observe(sample(64, 60, 0)), None);
        assert_eq!(policy.observe(sample(64, 60, 0)), None); // window ends, busy: no shrink
        assert_eq!(policy.observe(sample(64, 60, 1)), None); // new window: 1 < 2
    }

    #[test]
    fn shrinks_after_a_quiet_window_only() {
        let mut policy = ResizePolicy::new(2, 3, 16, 1024).unwrap();
        assert_eq!(policy.observe(sample(256, 10, 0)), None);
        assert_eq!(policy.observe(sample(256, 63, 0)), None);
        assert_eq!(policy.observe(sample(256, 20, 0)), Some(128));
        // One sample at a quarter (64 of 256) spoils the window.
        assert_eq!(policy.observe(sample(256, 64, 0)), None);
        assert_eq!(policy.observe(sample(256, 1, 0)), None);
        assert_eq!(policy.observe(sample(256, 1, 0)), None);
        // Never below the minimum.
        let mut floor = ResizePolicy::new(2, 1, 16, 1024).unwrap();
        assert_eq!(floor.observe(sample(16, 0, 0)), None);
    }

    #[test]
    fn size_change_restarts_the_window() {
        let mut policy = ResizePolicy::new(2, 10, 4, 1024).unwrap();
        assert_eq!(policy.observe(sample(64, 64, 1)), None);
        assert_eq!(policy.observe(sample(128, 64, 1)), None);
        assert_eq!(policy.observe(sample(128, 64, 1)), Some(256));
    }

    #[test]
    fn rejects_bad_parameters() {
        for (grow, window, min, max) in [
            (0, 1, 4, 8),
            (1, 0, 4, 8),
            (1, 1, 2, 8),
            (1, 1, 16, 8),
            (1, 1, 4, 100),
        ] {
            assert!(matches!(
                ResizePolicy::new(grow, window, min, max),
                Err(Error::InvalidArgument(_))
            ));
        }
    }
}
