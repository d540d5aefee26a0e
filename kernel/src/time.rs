//! Time: uptime from the generic counter, a periodic tick, and one-shot deadlines.
//!
//! Each CPU's own EL1 virtual timer serves both: it is always programmed for the earlier of
//! that CPU's next tick and its earliest deadline. A deadline fires on the CPU that set it.
//! Deadline callbacks run in interrupt context with interrupts masked, so they must be short
//! and must not block.

use crate::arch::cpu::{self, MAX_CPUS, cpu_index};
use crate::arch::timer;
use crate::sync::IrqSpinLock;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Periodic tick rate (scheduler preemption, statistics).
pub const TICK_HZ: u64 = 100;
/// Deadlines that can be pending at once.
const MAX_DEADLINES: usize = 64;

static BOOT_COUNTER: AtomicU64 = AtomicU64::new(0);
static FREQUENCY: AtomicU64 = AtomicU64::new(1);
/// Periodic ticks taken by each CPU.
static TICKS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static TIMER_IRQS: AtomicU64 = AtomicU64::new(0);

/// Records the boot instant and counter frequency; first thing at boot.
pub fn init_clock() {
    FREQUENCY.store(cpu::counter_frequency().max(1), Ordering::Relaxed);
    BOOT_COUNTER.store(cpu::counter(), Ordering::Relaxed);
}

pub fn frequency() -> u64 {
    FREQUENCY.load(Ordering::Relaxed)
}

/// Converts counter ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000 / u128::from(frequency())) as u64
}

/// Converts counter ticks to nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    (u128::from(ticks) * 1_000_000_000 / u128::from(frequency())) as u64
}

/// Converts microseconds to counter ticks (rounding up).
pub fn us_to_ticks(us: u64) -> u64 {
    (u128::from(us) * u128::from(frequency())).div_ceil(1_000_000) as u64
}

/// Counter value at boot (the zero of uptime).
pub fn boot_counter() -> u64 {
    BOOT_COUNTER.load(Ordering::Relaxed)
}

/// Microseconds since boot.
pub fn uptime_us() -> u64 {
    ticks_to_us(cpu::counter().wrapping_sub(boot_counter()))
}

/// Periodic ticks this CPU has taken since its tick started.
pub fn ticks() -> u64 {
    TICKS[cpu_index()].load(Ordering::Relaxed)
}

/// Timer interrupts taken (ticks and deadlines).
pub fn timer_irqs() -> u64 {
    TIMER_IRQS.load(Ordering::Relaxed)
}

/// Identifies a pending deadline for [`cancel_deadline`]: the CPU that set it and a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadlineId {
    cpu: usize,
    id: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerError {
    /// All deadline slots are in use.
    TooManyDeadlines,
}

impl fmt::Display for TimerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyDeadlines => write!(f, "all {MAX_DEADLINES} deadline slots are in use"),
        }
    }
}

#[derive(Clone, Copy)]
struct Deadline {
    id: u64,
    at: u64,
    callback: fn(usize),
    arg: usize,
}

struct Timers {
    deadlines: [Option<Deadline>; MAX_DEADLINES],
    next_id: u64,
    /// Counter value of the next periodic tick (None: tick stopped).
    next_tick: Option<u64>,
    tick_interval: u64,
    /// [`TimerPause`] guards alive: while any is, the hardware timer stays off.
    pauses: u32,
}

static TIMERS: [IrqSpinLock<Timers>; MAX_CPUS] = [const {
    IrqSpinLock::new(Timers {
        deadlines: [None; MAX_DEADLINES],
        next_id: 1,
        next_tick: None,
        tick_interval: 0,
        pauses: 0,
    })
}; MAX_CPUS];

impl Timers {
    /// Programs the hardware for the earliest pending event.
    fn reprogram(&self, cpu: usize) {
        // Only the owning CPU can program its timer; another CPU changing these deadlines
        // leaves the hardware early at worst, and the interrupt then reprograms it.
        if cpu != cpu_index() {
            return;
        }
        if self.pauses > 0 {
            timer::disarm();
            return;
        }
        let earliest = self
            .deadlines
            .iter()
            .flatten()
            .map(|d| d.at)
            .chain(self.next_tick)
            .min();
        match earliest {
            Some(at) => timer::arm(at),
            None => timer::disarm(),
        }
    }
}

/// Starts this CPU's periodic tick (the caller routes the timer interrupt to [`handle_irq`]).
pub fn start_tick() {
    let cpu = cpu_index();
    let mut timers = TIMERS[cpu].lock();
    timers.tick_interval = frequency() / TICK_HZ;
    timers.next_tick = Some(cpu::counter() + timers.tick_interval);
    timers.reprogram(cpu);
}

/// Calls `callback(arg)` from this CPU's timer interrupt once the counter reaches `at`.
pub fn add_deadline(at: u64, callback: fn(usize), arg: usize) -> Result<DeadlineId, TimerError> {
    let cpu = cpu_index();
    let mut timers = TIMERS[cpu].lock();
    let id = timers.next_id;
    let slot = timers
        .deadlines
        .iter_mut()
        .find(|slot| slot.is_none())
        .ok_or(TimerError::TooManyDeadlines)?;
    *slot = Some(Deadline {
        id,
        at,
        callback,
        arg,
    });
    timers.next_id += 1;
    timers.reprogram(cpu);
    Ok(DeadlineId { cpu, id })
}

/// [`add_deadline`] `us` microseconds from now.
pub fn add_deadline_after_us(
    us: u64,
    callback: fn(usize),
    arg: usize,
) -> Result<DeadlineId, TimerError> {
    add_deadline(cpu::counter() + us_to_ticks(us), callback, arg)
}

/// Cancels a deadline; returns false if it already fired (or never existed).
pub fn cancel_deadline(id: DeadlineId) -> bool {
    let Some(lock) = TIMERS.get(id.cpu) else {
        return false;
    };
    let mut timers = lock.lock();
    let Some(slot) = timers
        .deadlines
        .iter_mut()
        .find(|slot| slot.is_some_and(|d| d.id == id.id))
    else {
        return false;
    };
    *slot = None;
    timers.reprogram(id.cpu);
    true
}

/// Keeps this CPU's hardware timer off while it exists: no tick, no deadline fires (they fire
/// late, once it is dropped). For measurements: under QEMU `-icount shift=0,sleep=off` an idle
/// CPU makes guest time jump to the next timer deadline, so with the timer off guest time counts
/// executed instructions only. Nothing on this CPU may wait on a deadline meanwhile.
pub struct TimerPause {
    cpu: usize,
}

/// Stops this CPU's timer until the returned guard is dropped.
pub fn pause_timer() -> TimerPause {
    let cpu = cpu_index();
    let mut timers = TIMERS[cpu].lock();
    timers.pauses += 1;
    timers.reprogram(cpu);
    TimerPause { cpu }
}

impl Drop for TimerPause {
    fn drop(&mut self) {
        let mut timers = TIMERS[self.cpu].lock();
        timers.pauses -= 1;
        timers.reprogram(self.cpu);
    }
}

/// Timer interrupt: advances this CPU's tick (telling the scheduler) and runs its expired
/// deadlines.
pub fn handle_irq() {
    TIMER_IRQS.fetch_add(1, Ordering::Relaxed);
    let cpu = cpu_index();
    let now = cpu::counter();
    let mut expired: [Option<Deadline>; MAX_DEADLINES] = [None; MAX_DEADLINES];
    let mut ticked = false;
    {
        let mut timers = TIMERS[cpu].lock();
        if let Some(next) = timers.next_tick
            && now >= next
        {
            let interval = timers.tick_interval.max(1);
            let missed = (now - next) / interval + 1;
            TICKS[cpu].fetch_add(missed, Ordering::Relaxed);
            timers.next_tick = Some(next + missed * interval);
            ticked = true;
        }
        for (slot, out) in timers.deadlines.iter_mut().zip(expired.iter_mut()) {
            if slot.is_some_and(|d| d.at <= now) {
                *out = slot.take();
            }
        }
        timers.reprogram(cpu);
    }
    if ticked {
        crate::task::sched::tick();
    }
    expired.sort_unstable_by_key(|deadline| deadline.map_or(u64::MAX, |d| d.at));
    for deadline in expired.iter().flatten() {
        (deadline.callback)(deadline.arg);
    }
}

/// Busy-waits (sleeping between interrupts when they are on) for `us` microseconds.
pub fn delay_us(us: u64) {
    let end = cpu::counter() + us_to_ticks(us);
    if cpu::interrupts_enabled() {
        let woken = add_deadline(end, |_| {}, 0);
        while cpu::counter() < end {
            cpu::wait_for_interrupt();
        }
        if let Ok(id) = woken {
            cancel_deadline(id);
        }
    } else {
        while cpu::counter() < end {
            core::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::prelude::*;
    use core::sync::atomic::AtomicUsize;

    ktest! {
        fn conversions_round_trip() -> TestResult {
            check_eq!(ticks_to_us(frequency()), 1_000_000);
            check_eq!(us_to_ticks(1_000_000), frequency());
            check!(us_to_ticks(1) >= 1, "a microsecond is at least one tick");
            Ok(())
        }

        fn deadline_fires_on_time_against_the_counter() -> TestResult {
            static FIRED_AT: AtomicU64 = AtomicU64::new(0);
            let start = cpu::counter();
            let target = start + us_to_ticks(20_000);
            check_ok!(add_deadline(target, |_| FIRED_AT.store(cpu::counter(), Ordering::SeqCst), 0));
            while FIRED_AT.load(Ordering::SeqCst) == 0 {
                check!(cpu::counter() - start < us_to_ticks(2_000_000), "deadline did not fire within 2 s");
                cpu::wait_for_interrupt();
            }
            let fired = FIRED_AT.load(Ordering::SeqCst);
            check!(fired >= target, "fired {} ticks early", target - fired);
            // Interrupt latency under emulation is well below a millisecond of guest time.
            check!(fired - target < us_to_ticks(5_000), "fired {} us late", ticks_to_us(fired - target));
            Ok(())
        }

        fn cancelled_deadline_never_fires() -> TestResult {
            static FIRED: AtomicUsize = AtomicUsize::new(0);
            let id = check_ok!(add_deadline_after_us(5_000, |_| { FIRED.fetch_add(1, Ordering::SeqCst); }, 0));
            check!(cancel_deadline(id));
            check!(!cancel_deadline(id), "a deadline cancels only once");
            delay_us(20_000);
            check_eq!(FIRED.load(Ordering::SeqCst), 0);
            Ok(())
        }

        fn deadlines_fire_in_order_and_slots_run_out_cleanly() -> TestResult {
            static ORDER: IrqSpinLock<[usize; 3]> = IrqSpinLock::new([0; 3]);
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            fn record(arg: usize) {
                let n = COUNT.fetch_add(1, Ordering::SeqCst);
                ORDER.lock()[n] = arg;
            }
            let now = cpu::counter();
            for (arg, delay_us) in [(3, 9_000), (1, 3_000), (2, 6_000)] {
                check_ok!(add_deadline(now + us_to_ticks(delay_us), record, arg));
            }
            delay_us(30_000);
            check_eq!(COUNT.load(Ordering::SeqCst), 3);
            check_eq!(*ORDER.lock(), [1, 2, 3]);

            let mut ids = alloc::vec::Vec::new();
            let far = cpu::counter() + us_to_ticks(60_000_000);
            let result = loop {
                match add_deadline(far, |_| {}, 0) {
                    Ok(id) => ids.push(id),
                    Err(err) => break err,
                }
            };
            for id in &ids {
                cancel_deadline(*id);
            }
            check_eq!(result, TimerError::TooManyDeadlines);
            check!(ids.len() <= MAX_DEADLINES && ids.len() + 2 >= MAX_DEADLINES, "got {} slots", ids.len());
            Ok(())
        }

        fn periodic_tick_matches_the_counter() -> TestResult {
            let start_ticks = ticks();
            let start = cpu::counter();
            delay_us(200_000);
            let elapsed_us = ticks_to_us(cpu::counter() - start);
            let counted = ticks() - start_ticks;
            let expected = elapsed_us * TICK_HZ / 1_000_000;
            check!(counted + 1 >= expected && counted <= expected + 1, "{counted} ticks in {elapsed_us} us, expected {expected}");
            Ok(())
        }

        fn paused_timer_stops_ticks_and_deadlines_until_resumed() -> TestResult {
            static FIRED: AtomicUsize = AtomicUsize::new(0);
            let id = check_ok!(add_deadline_after_us(1_000, |_| { FIRED.fetch_add(1, Ordering::SeqCst); }, 0));
            let pause = pause_timer();
            let ticks_before = ticks();
            let end = cpu::counter() + us_to_ticks(40_000);
            while cpu::counter() < end {
                core::hint::spin_loop();
            }
            let (ticks_paused, fired_paused) = (ticks(), FIRED.load(Ordering::SeqCst));
            drop(pause);
            delay_us(20_000);
            cancel_deadline(id);
            check_eq!(ticks_paused, ticks_before, "no tick while paused");
            check_eq!(fired_paused, 0, "no deadline while paused");
            check_eq!(FIRED.load(Ordering::SeqCst), 1, "the late deadline fires once resumed");
            check!(ticks() > ticks_paused, "ticks resume");
            Ok(())
        }

        fn uptime_advances_with_the_counter() -> TestResult {
            let a = uptime_us();
            delay_us(10_000);
            let b = uptime_us();
            check!(b >= a + 10_000, "uptime went from {a} to {b} over a 10 ms delay");
            check!(b - a < 1_000_000, "uptime jumped by {} us", b - a);
            Ok(())
        }
    }
}
