//! User tasks: a thread whose body runs a program at EL0 in its own address space.
//!
//! The thread loops: load the address space, run the user context until it traps back
//! ([`run_user`]), then handle the reason on the thread's own kernel stack: a system call
//! (which may block), a fault the memory manager could not resolve (the task is killed with a
//! report naming it), or an interrupt that asked for the CPU back (the thread yields). Killing a
//! task sets a flag that every return to the kernel and every blocking wait checks.

use super::{Builder, Priority, SpawnError, Thread, ThreadId, loader};
use crate::arch::esr::Esr;
use crate::arch::user::{UserContext, UserExit, run_user};
use crate::ipc::{CapabilityTable, ReplyRight};
use crate::mm::aspace::{FaultResolution, SharedSpace, UserSpace};
use crate::sync::IrqSpinLock;
use alloc::string::String;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Exit code of a task killed because of a fault it caused.
pub const KILLED_BY_FAULT: i64 = -11;

/// The user side of a task.
pub struct UserTask {
    pub program: &'static str,
    pub space: SharedSpace,
    args: String,
    /// The user registers; only the task's own thread touches them.
    context: UnsafeCell<UserContext>,
    pub capabilities: IrqSpinLock<CapabilityTable>,
    /// The call this task received last and has not answered.
    pub reply_right: IrqSpinLock<Option<ReplyRight>>,
    /// The pages lent to this task by the call it is answering, mapped at its grant window.
    pub grant: IrqSpinLock<Option<crate::ipc::Grant>>,
    /// The thread that spawned this task (it may wait for it).
    pub parent: Option<ThreadId>,
    killed: AtomicBool,
    kill_code: AtomicI64,
    pub syscalls: AtomicU64,
}

// SAFETY: `context` is only accessed by the task's own thread (see `context()`); everything else
// is locked or atomic.
unsafe impl Sync for UserTask {}

impl UserTask {
    /// Whether the task was asked to end.
    pub fn killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// The user registers.
    ///
    /// # Safety
    /// Only the task's own thread may call this, and not while another borrow is alive.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn context(&self) -> &mut UserContext {
        // SAFETY: per the contract, this is the only reference.
        unsafe { &mut *self.context.get() }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum UserSpawnError {
    NoSuchProgram,
    Load(loader::LoadError),
    Space(crate::mm::aspace::SpaceError),
    Thread(SpawnError),
}

impl fmt::Display for UserSpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchProgram => f.write_str("no such program"),
            Self::Load(err) => write!(f, "{err}"),
            Self::Space(err) => write!(f, "{err}"),
            Self::Thread(err) => write!(f, "{err}"),
        }
    }
}

/// The embedded program called `name`.
pub fn program(name: &str) -> Option<(&'static str, &'static [u8])> {
    super::programs::PROGRAMS
        .iter()
        .copied()
        .find(|(program, _)| *program == name)
}

/// Starts program `name` with `args` (and the given capabilities) as a new task.
pub fn spawn(
    name: &str,
    args: &str,
    capabilities: CapabilityTable,
) -> Result<Arc<Thread>, UserSpawnError> {
    spawn_with(name, args, capabilities, Priority::DEFAULT, None)
}

/// [`spawn`] with a priority, optionally pinned to one CPU.
pub fn spawn_with(
    name: &str,
    args: &str,
    capabilities: CapabilityTable,
    priority: Priority,
    pin: Option<usize>,
) -> Result<Arc<Thread>, UserSpawnError> {
    let (program, elf) = program(name).ok_or(UserSpawnError::NoSuchProgram)?;
    let space = UserSpace::new().map_err(UserSpawnError::Space)?;
    let entry = loader::load(&mut space.lock(), elf).map_err(UserSpawnError::Load)?;
    let parent = super::sched::current_opt().map(|thread| thread.id());
    let task = UserTask {
        program,
        space,
        args: String::from(args),
        context: UnsafeCell::new(UserContext::new(entry, abi::layout::STACK_TOP, 0)),
        capabilities: IrqSpinLock::new(capabilities),
        reply_right: IrqSpinLock::new(None),
        grant: IrqSpinLock::new(None),
        parent,
        killed: AtomicBool::new(false),
        kill_code: AtomicI64::new(0),
        syscalls: AtomicU64::new(0),
    };
    let builder = Builder::new(program).user(task).priority(priority);
    let builder = match pin {
        Some(cpu) => builder.pin(cpu),
        None => builder,
    };
    builder.spawn(task_main, 0).map_err(UserSpawnError::Thread)
}

/// Asks a user task to end with `code` at its next return to the kernel (waking it if it waits).
pub fn kill(thread: &Arc<Thread>, code: i64) -> bool {
    let Some(task) = thread.user.as_ref() else {
        return false;
    };
    task.kill_code.store(code, Ordering::Release);
    task.killed.store(true, Ordering::Release);
    super::sched::wake(thread);
    super::sched::kick(thread.cpu());
    true
}

/// Copies the argument string onto the top of the new task's stack and points x0/x1/SP at it.
fn push_arguments(task: &UserTask, context: &mut UserContext) -> Result<(), ()> {
    let bytes = task.args.as_bytes();
    let address = (abi::layout::STACK_TOP - bytes.len() as u64) & !15;
    // The task's address space is active; the stack pages fill on demand.
    crate::mm::aspace::copy_to_user(address, bytes).map_err(drop)?;
    context.frame.x[0] = address;
    context.frame.x[1] = bytes.len() as u64;
    context.frame.sp_el0 = address;
    Ok(())
}

/// One line about a task killed for a fault: who, what the syndrome says, where.
fn report_fault(thread: &Thread, task: &UserTask, context: &UserContext, esr: Esr, far: u64) {
    let address = if esr.far_valid() {
        alloc::format!(" far={far:#x}")
    } else {
        String::new()
    };
    crate::println!(
        "task {} ({}) killed: {esr};{address} pc={:#x} sp={:#x}",
        thread.id(),
        task.program,
        context.frame.elr,
        context.frame.sp_el0
    );
}

/// One line about a task killed because a page it needs cannot be provided.
fn report_unresolved(
    thread: &Thread,
    task: &UserTask,
    context: &UserContext,
    resolution: FaultResolution,
    far: u64,
) {
    let reason = match resolution {
        FaultResolution::OutOfMemory => "out of memory and swap",
        FaultResolution::SwapIoError => "I/O error reading its page from swap",
        _ => "page fault",
    };
    crate::println!(
        "task {} ({}) killed: {reason}; far={far:#x} pc={:#x}",
        thread.id(),
        task.program,
        context.frame.elr,
    );
}

/// The body of every user task's thread. Nothing may stay alive on this frame when the thread
/// exits (exiting never returns, so a local `Arc` would keep the thread, and its address space,
/// forever): the task runs in [`run_task`], which returns the exit code.
fn task_main(_: usize) {
    let code = run_task();
    // Devices it drove stop before its pending call is answered with `PeerGone`.
    crate::drivers::virtio::release_devices(super::current().id());
    super::exit_user(code);
}

/// Runs the task until it exits or is killed; returns its exit code.
fn run_task() -> i64 {
    let thread = super::current();
    let Some(task) = thread.user.as_ref() else {
        return 0;
    };
    // SAFETY: this is the task's own thread, and the only borrow of its context.
    let context = unsafe { task.context() };
    crate::mm::aspace::activate(&task.space);
    if push_arguments(task, context).is_err() {
        crate::println!(
            "task {} ({}): no memory for its arguments",
            thread.id(),
            task.program
        );
        return KILLED_BY_FAULT;
    }
    let asid = task.space.lock().asid().0;
    loop {
        if task.killed() {
            break;
        }
        // For MGLRU's walks: this space ran since the last one (a task that runs on without
        // ever being switched out counts too).
        crate::mm::vmscan::note_ran(asid);
        match run_user(context) {
            UserExit::SystemCall { .. } => {
                task.syscalls.fetch_add(1, Ordering::Relaxed);
                if let Some(code) = crate::syscall::dispatch(&thread, task, context) {
                    return code;
                }
            }
            UserExit::PageFault { esr, far } => {
                let resolution = crate::mm::aspace::fault_in(&task.space, far, esr.is_write());
                if resolution != FaultResolution::Resolved {
                    if !task.killed() {
                        report_unresolved(&thread, task, context, resolution, far);
                        task.kill_code.store(KILLED_BY_FAULT, Ordering::Release);
                    }
                    break;
                }
            }
            UserExit::Exception { esr, far } => {
                if !task.killed() {
                    report_fault(&thread, task, context, esr, far);
                    task.kill_code.store(KILLED_BY_FAULT, Ordering::Release);
                }
                break;
            }
            UserExit::Interrupt => super::yield_now(),
        }
    }
    task.kill_code.load(Ordering::Acquire)
}
