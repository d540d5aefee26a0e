//! Threads: the unit the scheduler runs. Every thread has a kernel stack with a guard region and
//! a saved switch context; a user task is a thread whose body runs user code (see [`user`]).
//!
//! Threads are shared as `Arc<Thread>`; the thread table keeps each one until it is waited for
//! (or, for detached threads, until it exits).

pub mod bench;
pub mod loader;
pub mod programs;
pub mod sched;
mod switch;
pub mod user;
pub mod wait;

use crate::arch::recover::RecoveryState;
use crate::mm::stack::{KernelStack, StackError};
use crate::sync::IrqSpinLock;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use switch::SwitchContext;
pub use wait::WaitQueue;

/// Identifies a thread (never reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ThreadId(pub u64);

impl fmt::Display for ThreadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Scheduling priority as a nice value: -20 (highest) .. 19 (lowest), 0 by default. A thread
/// one step higher gets about 1.25 times the CPU of one step lower (Linux's CFS weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Priority(i8);

impl Priority {
    pub const DEFAULT: Priority = Priority(0);
    pub const HIGHEST: Priority = Priority(-20);
    pub const LOWEST: Priority = Priority(19);

    /// A priority from a nice value, or None outside -20..=19.
    pub fn new(nice: i32) -> Option<Self> {
        (-20..=19).contains(&nice).then_some(Self(nice as i8))
    }

    pub fn nice(self) -> i8 {
        self.0
    }

    /// CFS load weight: 1024 at nice 0, each step about 1.25x.
    pub fn weight(self) -> u64 {
        const WEIGHTS: [u64; 40] = [
            88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100,
            4904, 3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172,
            137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
        ];
        WEIGHTS[(i32::from(self.0) + 20) as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// Running or waiting for a CPU.
    Runnable,
    /// Waiting for an event (a wait queue, a deadline).
    Blocked,
    /// Exited; the code is in `Thread::exit_code`.
    Dead,
}

/// What the scheduler keeps per thread, under the thread's own lock.
pub(crate) struct SchedState {
    pub(crate) run: RunState,
    /// Queued on a CPU's run queue (or about to be).
    pub(crate) on_rq: bool,
    /// The CPU whose run queue holds or last held the thread.
    pub(crate) cpu: usize,
}

pub struct Thread {
    id: ThreadId,
    name: String,
    priority: Priority,
    /// The thread's kernel stack, owned here so it lives exactly as long as the thread.
    _stack: KernelStack,
    context: UnsafeCell<SwitchContext>,
    pub(crate) sched: IrqSpinLock<SchedState>,
    /// Weighted runtime in nanoseconds (CFS virtual runtime).
    pub(crate) vruntime: AtomicU64,
    /// Its registers are live on a CPU (set until the next thread has switched away from it).
    pub(crate) on_cpu: AtomicBool,
    /// Idle threads run only when nothing else can.
    pub(crate) idle: bool,
    /// Runs only on its CPU (work stealing leaves it alone).
    pub(crate) pinned: bool,
    runtime_ns: AtomicU64,
    switches: AtomicU64,
    exit_code: AtomicI64,
    exited: WaitQueue,
    /// Removed from the thread table as soon as it exits (nobody waits for it).
    detached: AtomicBool,
    /// User task state, for threads that run user code.
    pub(crate) user: Option<user::UserTask>,
    /// Its recovery points (`arch::recover`), current on whichever CPU runs it.
    pub(crate) recovery: RecoveryState,
    /// Its user address space (`mm::aspace::activate`), installed on whichever CPU runs it.
    pub(crate) space: IrqSpinLock<Option<crate::mm::aspace::ThreadSpace>>,
}

// SAFETY: `context` is only touched by the scheduler while switching to or from the thread,
// with the CPU's run queue lock or the thread's `on_cpu` flag keeping any other CPU away.
unsafe impl Sync for Thread {}
// SAFETY: as above; everything else is atomics, locks or immutable.
unsafe impl Send for Thread {}

impl Thread {
    pub fn id(&self) -> ThreadId {
        self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn priority(&self) -> Priority {
        self.priority
    }

    pub fn state(&self) -> RunState {
        self.sched.lock().run
    }

    /// CPU the thread runs on or last ran on.
    pub fn cpu(&self) -> usize {
        self.sched.lock().cpu
    }

    pub fn runtime_ns(&self) -> u64 {
        self.runtime_ns.load(Ordering::Relaxed)
    }

    pub fn switches(&self) -> u64 {
        self.switches.load(Ordering::Relaxed)
    }

    pub fn is_user(&self) -> bool {
        self.user.is_some()
    }

    /// The user side of a user task.
    pub fn user(&self) -> Option<&user::UserTask> {
        self.user.as_ref()
    }

    /// Abandons the thread's outermost protected call (`arch::recover::catch`): at once if it
    /// is blocked (it is woken to return from the call), else at its next interrupt. Callable
    /// from interrupt handlers.
    pub fn abort_protected_call(self: &Arc<Self>) {
        self.recovery.request_abort();
        sched::wake(self);
    }

    fn context(&self) -> *mut SwitchContext {
        self.context.get()
    }

    pub(crate) fn account(&self, ran_ns: u64) {
        self.runtime_ns.fetch_add(ran_ns, Ordering::Relaxed);
        let weighted = ran_ns * Priority::DEFAULT.weight() / self.priority.weight();
        self.vruntime.fetch_add(weighted.max(1), Ordering::Relaxed);
    }

    pub(crate) fn count_switch(&self) {
        self.switches.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every thread that has not been reaped.
static THREADS: IrqSpinLock<BTreeMap<ThreadId, Arc<Thread>>> = IrqSpinLock::new(BTreeMap::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, PartialEq, Eq)]
pub enum SpawnError {
    Stack(StackError),
    /// The system has as many threads as its run queues are sized for.
    TooManyThreads,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stack(err) => write!(f, "{err}"),
            Self::TooManyThreads => {
                write!(f, "no more than {} threads may exist", sched::MAX_THREADS)
            }
        }
    }
}

/// How to create a thread.
pub struct Builder {
    name: String,
    priority: Priority,
    cpu: Option<usize>,
    pinned: bool,
    user: Option<user::UserTask>,
}

impl Builder {
    pub fn new(name: &str) -> Self {
        Self {
            name: String::from(name),
            priority: Priority::DEFAULT,
            cpu: None,
            pinned: false,
            user: None,
        }
    }

    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Start on this CPU (it may later move to another by work stealing).
    pub fn cpu(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self
    }

    pub(crate) fn user(mut self, task: user::UserTask) -> Self {
        self.user = Some(task);
        self
    }

    /// Run only on this CPU.
    pub fn pin(mut self, cpu: usize) -> Self {
        self.cpu = Some(cpu);
        self.pinned = true;
        self
    }

    /// Creates the thread and makes it runnable: it calls `entry(arg)`, then exits with code 0.
    pub fn spawn(self, entry: fn(usize), arg: usize) -> Result<Arc<Thread>, SpawnError> {
        if THREADS.lock().len() >= sched::MAX_THREADS {
            return Err(SpawnError::TooManyThreads);
        }
        let stack = KernelStack::new(&self.name).map_err(SpawnError::Stack)?;
        let context = SwitchContext::new_thread(stack.top().as_u64(), entry as usize, arg);
        let cpu = self.cpu.unwrap_or_else(sched::least_loaded_cpu);
        let thread = Arc::new(Thread {
            id: ThreadId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            name: self.name,
            priority: self.priority,
            _stack: stack,
            context: UnsafeCell::new(context),
            sched: IrqSpinLock::new(SchedState {
                run: RunState::Blocked,
                on_rq: false,
                cpu,
            }),
            vruntime: AtomicU64::new(sched::min_vruntime(cpu)),
            on_cpu: AtomicBool::new(false),
            idle: false,
            pinned: self.pinned,
            runtime_ns: AtomicU64::new(0),
            switches: AtomicU64::new(0),
            exit_code: AtomicI64::new(0),
            exited: WaitQueue::new(),
            detached: AtomicBool::new(false),
            user: self.user,
            recovery: RecoveryState::new(),
            space: IrqSpinLock::new(None),
        });
        THREADS.lock().insert(thread.id, thread.clone());
        log::debug!(target: "sched", "thread {} `{}` created on cpu{cpu}", thread.id, thread.name);
        sched::wake(&thread);
        Ok(thread)
    }
}

/// Spawns a kernel thread with default settings.
pub fn spawn(name: &str, entry: fn(usize), arg: usize) -> Result<Arc<Thread>, SpawnError> {
    Builder::new(name).spawn(entry, arg)
}

/// A thread that is not on any run queue: a CPU's idle thread or the code already running on
/// a CPU's stack (`running`).
fn special_thread(
    name: &str,
    stack: KernelStack,
    context: SwitchContext,
    idle: bool,
    running: bool,
    cpu: usize,
) -> Arc<Thread> {
    let thread = Arc::new(Thread {
        id: ThreadId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        name: String::from(name),
        priority: if idle {
            Priority::LOWEST
        } else {
            Priority::DEFAULT
        },
        _stack: stack,
        context: UnsafeCell::new(context),
        sched: IrqSpinLock::new(SchedState {
            run: RunState::Runnable,
            on_rq: false,
            cpu,
        }),
        vruntime: AtomicU64::new(0),
        on_cpu: AtomicBool::new(running),
        idle,
        pinned: true,
        runtime_ns: AtomicU64::new(0),
        switches: AtomicU64::new(0),
        exit_code: AtomicI64::new(0),
        exited: WaitQueue::new(),
        detached: AtomicBool::new(idle),
        user: None,
        recovery: RecoveryState::new(),
        space: IrqSpinLock::new(None),
    });
    if !idle {
        THREADS.lock().insert(thread.id, thread.clone());
    }
    thread
}

/// The thread running on this CPU.
pub fn current() -> Arc<Thread> {
    sched::current()
}

/// Looks a thread up by id.
pub fn find(id: ThreadId) -> Option<Arc<Thread>> {
    THREADS.lock().get(&id).cloned()
}

/// Every thread not yet reaped, by id.
pub fn all() -> Vec<Arc<Thread>> {
    THREADS.lock().values().cloned().collect()
}

/// Called by `thread_trampoline` as the first Rust code of a new thread.
#[unsafe(no_mangle)]
extern "C" fn thread_start(entry: usize, arg: usize) -> ! {
    sched::finish_switch();
    crate::arch::cpu::enable_interrupts();
    // SAFETY: `entry` was a `fn(usize)` when `Builder::spawn` stored it.
    let entry: fn(usize) = unsafe { core::mem::transmute::<usize, fn(usize)>(entry) };
    entry(arg);
    exit(0)
}

/// Ends the calling thread with `code`.
pub fn exit(code: i64) -> ! {
    let me = current();
    log::debug!(target: "sched", "thread {} `{}` exits with {code}", me.id, me.name);
    me.exit_code.store(code, Ordering::Release);
    me.sched.lock().run = RunState::Dead;
    me.exited.wake_all();
    if me.detached.load(Ordering::Acquire) {
        THREADS.lock().remove(&me.id);
    }
    drop(me);
    sched::schedule();
    unreachable!("a dead thread was scheduled again");
}

/// Ends a user task with `code` at its next return to the kernel (see [`user::kill`]); kernel
/// threads cannot be killed. Returns false for unknown ids and kernel threads.
pub fn kill(id: ThreadId, code: i64) -> bool {
    match find(id) {
        Some(thread) if thread.is_user() => user::kill(&thread, code),
        _ => false,
    }
}

/// Ends the calling user task: answers a pending call with `PeerGone`, leaves its address space
/// (freed when the thread is reaped), then exits the thread.
pub(crate) fn exit_user(code: i64) -> ! {
    let me = current();
    if let Some(task) = me.user.as_ref() {
        drop(task.reply_right.lock().take());
        crate::syscall::release_grant(task);
    }
    drop(me);
    crate::mm::aspace::deactivate();
    exit(code)
}

/// Waits until thread `id` exits, reaps it and returns its exit code (None if no such thread).
pub fn wait(id: ThreadId) -> Option<i64> {
    let thread = find(id)?;
    thread
        .exited
        .wait_until(|| thread.sched.lock().run == RunState::Dead);
    THREADS.lock().remove(&id);
    Some(thread.exit_code.load(Ordering::Acquire))
}

/// Like [`wait`], but gives up (returning None, the thread left unreaped) once `cancelled()`.
pub fn wait_or_cancel(id: ThreadId, cancelled: &dyn Fn() -> bool) -> Option<i64> {
    let thread = find(id)?;
    thread
        .exited
        .wait_until(|| thread.sched.lock().run == RunState::Dead || cancelled());
    if thread.state() != RunState::Dead {
        return None;
    }
    THREADS.lock().remove(&id);
    Some(thread.exit_code.load(Ordering::Acquire))
}

/// Lets the thread be reaped as soon as it exits.
pub fn detach(thread: &Thread) {
    thread.detached.store(true, Ordering::Release);
    if thread.state() == RunState::Dead {
        THREADS.lock().remove(&thread.id);
    }
}

/// Gives the CPU to another runnable thread, if any.
pub fn yield_now() {
    sched::schedule();
}

/// Sleeps for `us` microseconds of guest time.
pub fn sleep_us(us: u64) {
    sched::sleep_until(crate::arch::cpu::counter() + crate::time::us_to_ticks(us));
}

/// Makes the boot CPU's flow, running on `stack`, a thread named `name`, and gives the CPU an
/// idle thread. Called once, before interrupts are enabled.
pub fn init_boot_cpu(name: &str, stack: KernelStack) -> Result<(), SpawnError> {
    let cpu = crate::arch::cpu::cpu_index();
    let idle_stack = KernelStack::new("idle cpu0").map_err(SpawnError::Stack)?;
    let idle_context = SwitchContext::new_thread(
        idle_stack.top().as_u64(),
        sched::idle_loop as *const () as usize,
        0,
    );
    let idle = special_thread("idle", idle_stack, idle_context, true, false, cpu);
    let boot = special_thread(name, stack, SwitchContext::default(), false, true, cpu);
    sched::init_cpu(cpu, boot, idle);
    Ok(())
}

/// Makes a secondary CPU's flow, running on `stack`, its idle thread and runs the idle loop.
pub fn run_secondary_cpu(stack: KernelStack) -> ! {
    let cpu = crate::arch::cpu::cpu_index();
    let idle = special_thread("idle", stack, SwitchContext::default(), true, true, cpu);
    sched::init_cpu(cpu, idle.clone(), idle);
    sched::idle_loop(0);
    unreachable!("the idle loop never returns")
}
