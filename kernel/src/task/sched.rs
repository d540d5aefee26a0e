//! The scheduler: one run queue per CPU, ordered by virtual runtime as in Linux's CFS (each
//! thread's runtime weighted by its priority, the smallest runs next), with work stealing by CPUs
//! that run out of work, and preemption on the timer tick.
//!
//! Preemption points: a thread running user code is preempted when the tick (or a wake-up of a
//! more deserving thread) interrupts it; kernel code is not preempted, it gives the CPU up when
//! it blocks, sleeps, yields or returns to user mode. Idle CPUs wait with WFI and are woken by a
//! software-generated interrupt when work arrives for them.
//!
//! Locking: a CPU's run queue lock may be taken before a thread's `sched` lock, never after;
//! waking never holds both. Remote run queues are only try-locked (stealing), so two CPUs never
//! wait for each other's queues.

use super::{RunState, Thread};
use crate::arch::cpu::{self, MAX_CPUS, cpu_index};
use crate::drivers::gic::{IrqId, Trigger};
use crate::sync::IrqSpinLock;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Threads that may exist at once (run queues are allocated for this many, so that queueing
/// never allocates).
pub const MAX_THREADS: usize = 512;
/// Time slice: a thread that ran this long is preempted at the next tick if others wait.
const SLICE_NS: u64 = 4_000_000;
/// A woken thread's virtual runtime starts at most this far behind the queue's minimum, so a
/// long sleeper gets a head start but cannot monopolise the CPU.
const SLEEPER_CREDIT_NS: u64 = 6_000_000;
/// A woken thread preempts the running one only if it is this much behind in virtual runtime.
const WAKEUP_GRANULARITY_NS: u64 = 1_000_000;
/// SGI used to make another CPU reschedule.
const RESCHEDULE_SGI: u32 = 0;

struct RunQueue {
    current: Option<Arc<Thread>>,
    idle: Option<Arc<Thread>>,
    /// Runnable threads waiting for this CPU (the current one is not among them).
    waiting: Vec<Arc<Thread>>,
    /// Smallest virtual runtime seen on this CPU (only grows).
    min_vruntime: u64,
    /// Counter value when `current` started running.
    since: u64,
}

static QUEUES: [IrqSpinLock<RunQueue>; MAX_CPUS] = [const {
    IrqSpinLock::new(RunQueue {
        current: None,
        idle: None,
        waiting: Vec::new(),
        min_vruntime: 0,
        since: 0,
    })
}; MAX_CPUS];
/// The thread a CPU just switched away from, until the next thread marks it off-CPU.
static PREVIOUS: [IrqSpinLock<Option<Arc<Thread>>>; MAX_CPUS] =
    [const { IrqSpinLock::new(None) }; MAX_CPUS];
/// CPUs with a scheduler.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Threads waiting on each CPU's queue (for placement without taking the locks).
static LOAD: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];
static CONTEXT_SWITCHES: AtomicU64 = AtomicU64::new(0);
static STEALS: AtomicU64 = AtomicU64::new(0);

fn now_ns() -> u64 {
    crate::time::ticks_to_ns(cpu::counter())
}

/// Sets up CPU `cpu`'s queue with the thread running now and its idle thread.
pub fn init_cpu(cpu: usize, running: Arc<Thread>, idle: Arc<Thread>) {
    {
        let mut queue = QUEUES[cpu].lock();
        queue.waiting.reserve(MAX_THREADS);
        // SAFETY: `running` stays alive as the queue's current thread until the next switch,
        // which makes the next thread's state current.
        unsafe { crate::arch::recover::set_current(&running.recovery) };
        queue.current = Some(running);
        queue.idle = Some(idle);
        queue.since = now_ns();
    }
    ONLINE[cpu].store(true, Ordering::Release);
    let _ = crate::irq::register_banked(IrqId(RESCHEDULE_SGI), Trigger::Edge, "reschedule", |_| {
        crate::irq::request_preempt();
    });
}

/// The thread running on this CPU.
pub fn current() -> Arc<Thread> {
    QUEUES[cpu_index()]
        .lock()
        .current
        .clone()
        .expect("the scheduler is initialised on every CPU that runs threads")
}

/// The thread running on this CPU, if the scheduler runs here yet.
pub fn current_opt() -> Option<Arc<Thread>> {
    QUEUES[cpu_index()].lock().current.clone()
}

/// Makes `cpu` reschedule soon: preempts user code running there (an IPI for another CPU).
pub fn kick(cpu: usize) {
    if cpu == cpu_index() {
        crate::irq::request_preempt();
    } else if let Some(gic) = crate::irq::controller() {
        gic.send_sgi(RESCHEDULE_SGI as u8, 1 << cpu);
    }
}

/// Whether threads wait for this CPU (blocking then lets them run; otherwise the CPU might as
/// well wait in place). False where the scheduler does not run yet.
pub fn others_waiting() -> bool {
    !QUEUES[cpu_index()].lock().waiting.is_empty()
}

/// The smallest virtual runtime on `cpu`'s queue, where a new thread starts.
pub fn min_vruntime(cpu: usize) -> u64 {
    QUEUES[cpu].lock().min_vruntime
}

/// The online CPU with the fewest waiting threads.
pub fn least_loaded_cpu() -> usize {
    (0..MAX_CPUS)
        .filter(|&cpu| ONLINE[cpu].load(Ordering::Acquire))
        .min_by_key(|&cpu| LOAD[cpu].load(Ordering::Relaxed))
        .unwrap_or_else(cpu_index)
}

/// Makes a blocked (or new) thread runnable on its CPU, preempting what runs there if the woken
/// thread deserves the CPU more.
pub fn wake(thread: &Arc<Thread>) {
    let cpu = {
        let mut state = thread.sched.lock();
        if state.run != RunState::Blocked {
            return;
        }
        state.run = RunState::Runnable;
        if state.on_rq {
            return;
        }
        state.on_rq = true;
        state.cpu
    };
    let preempt = {
        let mut queue = QUEUES[cpu].lock();
        let floor = queue.min_vruntime.saturating_sub(SLEEPER_CREDIT_NS);
        thread.vruntime.fetch_max(floor, Ordering::Relaxed);
        queue.waiting.push(thread.clone());
        LOAD[cpu].store(queue.waiting.len(), Ordering::Relaxed);
        match &queue.current {
            Some(current) if !current.idle => {
                current.vruntime.load(Ordering::Relaxed)
                    > thread.vruntime.load(Ordering::Relaxed) + WAKEUP_GRANULARITY_NS
            }
            _ => true,
        }
    };
    if preempt {
        if cpu == cpu_index() {
            crate::irq::request_preempt();
        } else if let Some(gic) = crate::irq::controller() {
            gic.send_sgi(RESCHEDULE_SGI as u8, 1 << cpu);
        }
    }
}

/// Removes the waiting thread with the smallest virtual runtime from `queue`: one no CPU is
/// running, or `previous`, the thread this CPU is switching away from.
fn take_next(queue: &mut RunQueue, previous: &Arc<Thread>) -> Option<Arc<Thread>> {
    let (index, _) = queue
        .waiting
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.on_cpu.load(Ordering::Acquire) || Arc::ptr_eq(t, previous))
        .min_by_key(|(_, t)| t.vruntime.load(Ordering::Relaxed))?;
    Some(queue.waiting.swap_remove(index))
}

/// Takes a thread from another CPU's queue (one that is not running anywhere).
fn steal(me: usize) -> Option<Arc<Thread>> {
    for offset in 1..MAX_CPUS {
        let victim = (me + offset) % MAX_CPUS;
        if !ONLINE[victim].load(Ordering::Acquire) || LOAD[victim].load(Ordering::Relaxed) == 0 {
            continue;
        }
        let Some(mut queue) = QUEUES[victim].try_lock() else {
            continue;
        };
        let candidate = queue
            .waiting
            .iter()
            .enumerate()
            .filter(|(_, t)| !t.pinned && !t.on_cpu.load(Ordering::Acquire))
            .max_by_key(|(_, t)| t.vruntime.load(Ordering::Relaxed))
            .map(|(index, _)| index);
        if let Some(index) = candidate {
            let thread = queue.waiting.swap_remove(index);
            LOAD[victim].store(queue.waiting.len(), Ordering::Relaxed);
            drop(queue);
            thread.sched.lock().cpu = me;
            STEALS.fetch_add(1, Ordering::Relaxed);
            return Some(thread);
        }
    }
    None
}

/// Gives this CPU to the most deserving runnable thread (possibly the caller again). The caller
/// keeps running later if it is still runnable; a blocked caller resumes once woken.
pub fn schedule() {
    let daif = cpu::disable_interrupts();
    let cpu = cpu_index();
    let switch = {
        let mut queue = QUEUES[cpu].lock();
        let Some(previous) = queue.current.take() else {
            cpu::restore_interrupts(daif);
            return;
        };
        let now = now_ns();
        let ran = now.saturating_sub(queue.since);
        queue.since = now;
        if !previous.idle {
            previous.account(ran);
            let mut state = previous.sched.lock();
            if state.run == RunState::Runnable && !state.on_rq {
                state.on_rq = true;
                state.cpu = cpu;
                queue.waiting.push(previous.clone());
            }
        }
        let next = take_next(&mut queue, &previous)
            .or_else(|| steal(cpu))
            .or_else(|| queue.idle.clone())
            .expect("every CPU has an idle thread");
        next.sched.lock().on_rq = false;
        LOAD[cpu].store(queue.waiting.len(), Ordering::Relaxed);
        if !next.idle {
            let vruntime = next.vruntime.load(Ordering::Relaxed);
            queue.min_vruntime = queue.min_vruntime.max(vruntime);
        }
        queue.current = Some(next.clone());
        if Arc::ptr_eq(&previous, &next) {
            None
        } else {
            next.on_cpu.store(true, Ordering::Release);
            next.count_switch();
            CONTEXT_SWITCHES.fetch_add(1, Ordering::Relaxed);
            let save = previous.context();
            let load = next.context();
            // SAFETY: `next` stays alive as the queue's current thread until it is switched away
            // from, which makes another state current first.
            unsafe { crate::arch::recover::set_current(&next.recovery) };
            crate::mm::aspace::install(next.space.lock().as_ref());
            *PREVIOUS[cpu].lock() = Some(previous);
            Some((save, load))
        }
    };
    if let Some((save, load)) = switch {
        // SAFETY: `save` belongs to the thread running now (kept alive by PREVIOUS until the
        // next thread has switched away from it), `load` to a thread marked on-CPU for us and
        // kept alive by the run queue's `current`; interrupts are masked.
        unsafe { super::switch::switch(save, load) };
        finish_switch();
    }
    cpu::restore_interrupts(daif);
}

/// Completes a switch on the new thread's side: the previous thread is off this CPU now (so
/// another CPU may run it) and its last reference may be dropped here, on another stack.
pub fn finish_switch() {
    let previous = PREVIOUS[cpu_index()].lock().take();
    if let Some(previous) = previous {
        previous.on_cpu.store(false, Ordering::Release);
    }
}

/// Timer tick on this CPU: asks for preemption when the running thread used its slice and
/// others are waiting. (An idle CPU's idle loop wakes on the tick anyway and looks for work.)
pub fn tick() {
    let cpu = cpu_index();
    let Some(queue) = QUEUES[cpu].try_lock() else {
        return;
    };
    let Some(current) = queue.current.as_ref() else {
        return;
    };
    let expired = now_ns().saturating_sub(queue.since) >= SLICE_NS;
    if !current.idle && !queue.waiting.is_empty() && expired {
        crate::irq::request_preempt();
    }
}

/// The idle thread of each CPU: runs whatever becomes runnable here or can be stolen from a
/// busier CPU, and sleeps in WFI otherwise (until the next interrupt: a tick, a wake-up IPI).
pub fn idle_loop(_: usize) {
    loop {
        let daif = cpu::disable_interrupts();
        let cpu = cpu_index();
        let mut runnable =
            !QUEUES[cpu].lock().waiting.is_empty() || crate::irq::take_preempt_request();
        if !runnable && let Some(thread) = steal(cpu) {
            let mut queue = QUEUES[cpu].lock();
            queue.waiting.push(thread);
            LOAD[cpu].store(queue.waiting.len(), Ordering::Relaxed);
            runnable = true;
        }
        if runnable {
            cpu::restore_interrupts(daif);
            schedule();
        } else {
            // WFI wakes on a pending interrupt even while masked; it is taken right after.
            cpu::wait_for_interrupt();
            cpu::enable_interrupts();
        }
    }
}

/// Sleeps the calling thread until the counter reaches `deadline`.
pub fn sleep_until(deadline: u64) {
    fn wake_by_id(id: usize) {
        if let Some(thread) = super::find(super::ThreadId(id as u64)) {
            wake(&thread);
        }
    }
    let me = current();
    while cpu::counter() < deadline {
        me.sched.lock().run = RunState::Blocked;
        match crate::time::add_deadline(deadline, wake_by_id, me.id().0 as usize) {
            Ok(_) => {
                schedule();
                crate::arch::recover::abort_if_requested();
            }
            Err(_) => {
                // No timer slot: poll, giving the CPU away in between.
                me.sched.lock().run = RunState::Runnable;
                schedule();
            }
        }
    }
}

/// Scheduler figures for `ps`/stats.
pub fn stats() -> (u64, u64) {
    (
        CONTEXT_SWITCHES.load(Ordering::Relaxed),
        STEALS.load(Ordering::Relaxed),
    )
}

/// CPUs running the scheduler.
pub fn online_cpus() -> usize {
    ONLINE
        .iter()
        .filter(|online| online.load(Ordering::Acquire))
        .count()
}
