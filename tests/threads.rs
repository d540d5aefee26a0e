//! Kernel threads and the scheduler: spawning and reaping, wait queues without lost wake-ups,
//! sleeping (accurate, and taking no CPU), and CPU shares following priorities.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::arch::cpu;
use kernel::ktest::prelude::*;
use kernel::mm::frame;
use kernel::task::{self, Builder, Priority, RunState, WaitQueue};
use kernel::time::{ticks_to_us, us_to_ticks};

kernel::entry_point!(kernel::ktest::main);

ktest! {
    fn spawned_thread_runs_and_its_exit_code_is_collected() -> TestResult {
        static RAN_WITH: AtomicU64 = AtomicU64::new(0);
        let thread = check_ok!(task::spawn("worker", |arg| {
            RAN_WITH.store(arg as u64, Ordering::SeqCst);
            task::exit(42);
        }, 7));
        let id = thread.id();
        drop(thread);
        check_eq!(task::wait(id), Some(42));
        check_eq!(RAN_WITH.load(Ordering::SeqCst), 7);
        check!(task::find(id).is_none(), "a waited-for thread is reaped");
        check_eq!(task::wait(id), None);
        Ok(())
    }

    fn reaped_threads_give_their_stacks_back() -> TestResult {
        // Warm up: the first spawn may allocate page tables for the stack area and heap space.
        let warm = check_ok!(task::spawn("warm-up", |_| {}, 0)).id();
        task::wait(warm);
        let before = frame::stats();
        let ids: Vec<_> = (0..20).map(|i| task::spawn("short", |_| {}, i).map(|t| t.id())).collect::<Result<_, _>>().map_err(|e| Failure::new(file!(), line!(), alloc::format!("{e}")))?;
        for id in ids {
            check_eq!(task::wait(id), Some(0));
        }
        check_eq!(frame::stats(), before);
        Ok(())
    }

    fn a_waiter_woken_by_another_path_leaves_the_queue() -> TestResult {
        static QUEUE: WaitQueue = WaitQueue::new();
        static GO: AtomicBool = AtomicBool::new(false);
        let thread = check_ok!(task::spawn("waiter", |_| {
            QUEUE.wait_until(|| GO.load(Ordering::SeqCst));
            task::exit(0);
        }, 0));
        while thread.state() != RunState::Blocked {
            task::sleep_us(100);
        }
        // Woken directly, as a kill or a timer does, not through the queue.
        GO.store(true, Ordering::SeqCst);
        task::sched::wake(&thread);
        check_eq!(task::wait(thread.id()), Some(0));
        // Only this handle is left: the queue kept no reference to the exited thread.
        check_eq!(alloc::sync::Arc::strong_count(&thread), 1);
        Ok(())
    }

    fn wait_queue_ping_pong_loses_no_wakeup() -> TestResult {
        static TURN: AtomicU64 = AtomicU64::new(0);
        static PING: WaitQueue = WaitQueue::new();
        static PONG: WaitQueue = WaitQueue::new();
        const ROUNDS: u64 = 2000;
        TURN.store(0, Ordering::SeqCst);
        let partner = check_ok!(task::spawn("pong", |_| {
            for round in 0..ROUNDS {
                PONG.wait_until(|| TURN.load(Ordering::SeqCst) == 2 * round + 1);
                TURN.store(2 * round + 2, Ordering::SeqCst);
                PING.wake_all();
            }
        }, 0));
        for round in 0..ROUNDS {
            TURN.store(2 * round + 1, Ordering::SeqCst);
            PONG.wake_all();
            PING.wait_until(|| TURN.load(Ordering::SeqCst) == 2 * round + 2);
        }
        check_eq!(task::wait(partner.id()), Some(0));
        check_eq!(TURN.load(Ordering::SeqCst), 2 * ROUNDS);
        Ok(())
    }

    fn sleep_is_accurate_and_takes_no_cpu() -> TestResult {
        let sleeper = check_ok!(task::spawn("sleeper", |_| task::sleep_us(50_000), 0));
        let start = cpu::counter();
        // Keep this thread busy meanwhile; the sleeper must not need the CPU.
        while sleeper.state() != RunState::Dead {
            task::yield_now();
        }
        let elapsed = ticks_to_us(cpu::counter() - start);
        check!(elapsed >= 50_000, "woke after {elapsed} us");
        // Guest time keeps running while the host deschedules a virtual CPU, so lateness is
        // only bounded loosely.
        check!(elapsed < 100_000, "woke late: {elapsed} us");
        check!(sleeper.runtime_ns() < 5_000_000, "the sleeper used {} ns of CPU", sleeper.runtime_ns());
        check_eq!(task::wait(sleeper.id()), Some(0));

        let start = cpu::counter();
        task::sleep_us(10_000);
        let slept = ticks_to_us(cpu::counter() - start);
        check!((10_000..20_000).contains(&slept), "slept {slept} us");
        Ok(())
    }

    fn cpu_shares_follow_priorities() -> TestResult {
        static STOP: AtomicBool = AtomicBool::new(false);
        static WORK: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
        fn burn(slot: usize) {
            while !STOP.load(Ordering::Relaxed) {
                // About 50 us of work, then let the scheduler choose.
                let end = cpu::counter() + us_to_ticks(50);
                while cpu::counter() < end {}
                WORK[slot].fetch_add(1, Ordering::Relaxed);
                task::yield_now();
            }
        }
        STOP.store(false, Ordering::SeqCst);
        let me = task::current().cpu();
        // Both on this CPU (shares are about competing for one CPU).
        let high = check_ok!(Builder::new("nice0").priority(Priority::DEFAULT).pin(me).spawn(burn, 0));
        let low = check_ok!(Builder::new("nice5").priority(check_ok!(Priority::new(5).ok_or("valid"))).pin(me).spawn(burn, 1));
        task::sleep_us(400_000);
        STOP.store(true, Ordering::SeqCst);
        task::wait(high.id());
        task::wait(low.id());
        let (high_runtime, low_runtime) = (high.runtime_ns() as f64, low.runtime_ns() as f64);
        let expected = Priority::DEFAULT.weight() as f64 / check_ok!(Priority::new(5).ok_or("valid")).weight() as f64;
        let ratio = high_runtime / low_runtime;
        check!((ratio / expected - 1.0).abs() < 0.15, "CPU ratio {ratio:.2}, weights say {expected:.2}");
        Ok(())
    }

    fn equal_priorities_share_equally() -> TestResult {
        static STOP: AtomicBool = AtomicBool::new(false);
        fn burn(_: usize) {
            while !STOP.load(Ordering::Relaxed) {
                let end = cpu::counter() + us_to_ticks(50);
                while cpu::counter() < end {}
                task::yield_now();
            }
        }
        STOP.store(false, Ordering::SeqCst);
        let me = task::current().cpu();
        let threads: Vec<_> = (0..3).map(|i| Builder::new("equal").pin(me).spawn(burn, i)).collect::<Result<_, _>>().map_err(|e| Failure::new(file!(), line!(), alloc::format!("{e}")))?;
        task::sleep_us(300_000);
        STOP.store(true, Ordering::SeqCst);
        for thread in &threads {
            task::wait(thread.id());
        }
        let runtimes: Vec<f64> = threads.iter().map(|t| t.runtime_ns() as f64).collect();
        let mean = runtimes.iter().sum::<f64>() / runtimes.len() as f64;
        for runtime in &runtimes {
            check!((runtime / mean - 1.0).abs() < 0.10, "runtimes {runtimes:?} are not within 10% of fair");
        }
        Ok(())
    }

    fn many_threads_ping_pong_across_cpus_without_lost_wakeups() -> TestResult {
        const PAIRS: usize = 6;
        const ROUNDS: u64 = 400;
        static TURNS: [AtomicU64; PAIRS] = [const { AtomicU64::new(0) }; PAIRS];
        static QUEUES: [WaitQueue; PAIRS] = [const { WaitQueue::new() }; PAIRS];
        fn player(arg: usize) {
            let (pair, side) = (arg / 2, arg as u64 % 2);
            for round in 0..ROUNDS {
                let mine = 2 * round + side;
                QUEUES[pair].wait_until(|| TURNS[pair].load(Ordering::SeqCst) == mine);
                TURNS[pair].store(mine + 1, Ordering::SeqCst);
                QUEUES[pair].wake_all();
            }
        }
        for turn in &TURNS {
            turn.store(0, Ordering::SeqCst);
        }
        let (switches_before, _) = task::sched::stats();
        let players: Vec<_> = (0..2 * PAIRS).map(|i| task::spawn("player", player, i)).collect::<Result<_, _>>().map_err(|e| Failure::new(file!(), line!(), alloc::format!("{e}")))?;
        let mut cpus_used = [false; kernel::arch::cpu::MAX_CPUS];
        for player in &players {
            cpus_used[player.cpu()] = true;
            check_eq!(task::wait(player.id()), Some(0));
        }
        for turn in &TURNS {
            check_eq!(turn.load(Ordering::SeqCst), 2 * ROUNDS);
        }
        let (switches_after, _) = task::sched::stats();
        check!(switches_after - switches_before >= 2 * PAIRS as u64 * ROUNDS / 2, "players blocked and were woken");
        let online = task::sched::online_cpus();
        let used = cpus_used.iter().filter(|&&used| used).count();
        check!(used >= online.min(2), "players ended on {used} of {online} CPUs");
        Ok(())
    }

    fn invalid_priorities_are_refused() -> TestResult {
        check!(Priority::new(-21).is_none() && Priority::new(20).is_none());
        check_eq!(Priority::new(-20), Some(Priority::HIGHEST));
        check!(Priority::HIGHEST.weight() > Priority::DEFAULT.weight() && Priority::DEFAULT.weight() > Priority::LOWEST.weight());
        Ok(())
    }
}
