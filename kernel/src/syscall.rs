//! System calls: decoding the registers of an `svc #0` (number in x8, arguments in x0..x5),
//! checking every argument, and doing the work on the task's kernel thread, where blocking is
//! allowed. Results go back in x0 (an [`abi::Error`] code when negative) and, for IPC, a
//! message in x1..x5. A bad argument is an error code, never a crash.

use crate::arch::user::UserContext;
use crate::drivers::virtio::UserDevice;
use crate::ipc::{Capability, CapabilityTable, Endpoint, Grant};
use crate::mm::aspace::{FaultResolution, copy_from_user};
use crate::mm::{PAGE_SIZE, PhysFrame, VirtAddr};
use crate::task::user::UserTask;
use crate::task::{self, Thread, ThreadId};
use abi::{Error, Message, call, layout};
use alloc::sync::Arc;
use alloc::vec::Vec;
use pagetable::MemoryAttributes;

/// Longest console write in one call.
const MAX_WRITE: u64 = 4096;
/// Longest program name and argument string for `spawn`.
const MAX_NAME: u64 = 64;
const MAX_ARGS: u64 = 1024;
/// Largest single `map`.
const MAX_MAP: u64 = 4 << 30;
/// Regions a task may create with `map`.
const MAX_MAPPED_REGIONS: usize = 256;
/// Longest sleep in one call (the task can sleep again).
const MAX_SLEEP_US: u64 = 10_000_000;

type CallResult = Result<u64, Error>;

fn message(words: &[u64]) -> Message {
    Message {
        label: words[0],
        words: [words[1], words[2], words[3], words[4]],
    }
}

fn set_message(context: &mut UserContext, message: &Message) {
    context.frame.x[1] = message.label;
    context.frame.x[2..6].copy_from_slice(&message.words);
}

/// Handles the system call in `context` for `task` (running on `thread`). Returns the exit
/// code if the task asked to exit.
pub fn dispatch(thread: &Arc<Thread>, task: &UserTask, context: &mut UserContext) -> Option<i64> {
    let number = context.frame.x[8];
    let args: [u64; 6] = context.frame.x[0..6]
        .try_into()
        .expect("six argument registers");
    let cancelled = || task.killed();
    let result: CallResult = match number {
        call::EXIT => return Some(args[0] as i64),
        call::YIELD => {
            task::yield_now();
            Ok(0)
        }
        call::SLEEP => sleep(task, args[0]),
        call::WRITE => write(args[0], args[1]),
        call::MAP => map(task, args[0]),
        call::UNMAP => unmap(task, args[0]),
        call::SPAWN => spawn(task, args),
        call::WAIT => wait(thread, task, args[0]),
        call::TIME => Ok(crate::time::ticks_to_ns(
            crate::arch::cpu::counter() - crate::time::boot_counter(),
        )),
        call::TASK_ID => Ok(thread.id().0),
        call::ENDPOINT_CREATE => task
            .capabilities
            .lock()
            .insert(Capability::Endpoint(Endpoint::new())),
        call::SEND => task
            .capabilities
            .lock()
            .endpoint(args[0])
            .and_then(|endpoint| endpoint.send(thread.id(), message(&args[1..6]), &cancelled))
            .map(|()| 0),
        call::RECEIVE => receive(task, context, args[0]),
        call::CALL => {
            let reply = task
                .capabilities
                .lock()
                .endpoint(args[0])
                .and_then(|endpoint| {
                    endpoint.call(thread.id(), message(&args[1..6]), None, &cancelled)
                });
            reply.map(|reply| {
                set_message(context, &reply);
                0
            })
        }
        call::REPLY => reply(task, message(&args[0..5])),
        call::CAPABILITY_DROP => task.capabilities.lock().remove(args[0]).map(|()| 0),
        call::GRANT_CALL => grant_call(thread, task, context, args),
        call::DEVICE_READ => device(task, args[0])
            .and_then(|device| device.read(thread.id(), &task.space, args[1], args[2])),
        call::DEVICE_WRITE => device(task, args[0])
            .and_then(|device| device.write(thread.id(), &task.space, args[1], args[2]))
            .map(|()| 0),
        call::DMA_ALLOC => dma_alloc(thread, task, context, args),
        call::DEVICE_WAIT => device(task, args[0])
            .and_then(|device| device.wait_interrupt(thread.id(), &task.space, &cancelled))
            .map(|()| 0),
        _ => Err(Error::NoSuchCall),
    };
    log::trace!(target: "syscall", "{} `{}`: call {number} args {args:x?} = {result:?}", thread.id(), thread.name());
    context.frame.x[0] = match result {
        Ok(value) => value,
        Err(error) => error.code() as u64,
    };
    None
}

fn sleep(task: &UserTask, us: u64) -> CallResult {
    let deadline = crate::arch::cpu::counter() + crate::time::us_to_ticks(us.min(MAX_SLEEP_US));
    while crate::arch::cpu::counter() < deadline && !task.killed() {
        task::sched::sleep_until(
            deadline.min(crate::arch::cpu::counter() + crate::time::us_to_ticks(100_000)),
        );
    }
    Ok(0)
}

fn write(address: u64, len: u64) -> CallResult {
    if len > MAX_WRITE {
        return Err(Error::InvalidArgument);
    }
    let bytes = copy_from_user(address, len as usize)?;
    crate::print!("{}", alloc::string::String::from_utf8_lossy(&bytes));
    Ok(len)
}

fn map(task: &UserTask, len: u64) -> CallResult {
    if len == 0 || len > MAX_MAP {
        return Err(Error::InvalidArgument);
    }
    let len = len.div_ceil(PAGE_SIZE) * PAGE_SIZE;
    let mut space = task.space.lock();
    let mapped = space
        .regions()
        .iter()
        .filter(|r| (layout::MAP_BASE..layout::GRANT_WINDOW).contains(&r.start))
        .count();
    if mapped >= MAX_MAPPED_REGIONS {
        return Err(Error::Exhausted);
    }
    let start = space
        .find_free(layout::MAP_BASE, layout::GRANT_WINDOW, len)
        .ok_or(Error::NoMemory)?;
    space
        .add_region(start, len, MemoryAttributes::USER_DATA)
        .map_err(|_| Error::NoMemory)?;
    Ok(start)
}

fn unmap(task: &UserTask, address: u64) -> CallResult {
    // Only what `map` made: not the program, its stack or a grant window.
    if !(layout::MAP_BASE..layout::GRANT_WINDOW).contains(&address) {
        return Err(Error::InvalidArgument);
    }
    task.space
        .lock()
        .remove_region(address)
        .map(|()| 0)
        .map_err(|_| Error::InvalidArgument)
}

fn user_string(address: u64, len: u64, max: u64) -> Result<alloc::string::String, Error> {
    if len > max {
        return Err(Error::InvalidArgument);
    }
    let bytes = copy_from_user(address, len as usize)?;
    alloc::string::String::from_utf8(bytes).map_err(|_| Error::InvalidArgument)
}

fn spawn(task: &UserTask, args: [u64; 6]) -> CallResult {
    let name = user_string(args[0], args[1], MAX_NAME)?;
    let arguments = user_string(args[2], args[3], MAX_ARGS)?;
    let mut capabilities = CapabilityTable::new();
    if args[4] != u64::MAX {
        let capability = task.capabilities.lock().get(args[4])?.clone();
        capabilities.set(0, capability)?;
    }
    match task::user::spawn(&name, &arguments, capabilities) {
        Ok(child) => Ok(child.id().0),
        Err(task::user::UserSpawnError::NoSuchProgram) => Err(Error::NotFound),
        Err(task::user::UserSpawnError::Thread(task::SpawnError::TooManyThreads)) => {
            Err(Error::Exhausted)
        }
        Err(_) => Err(Error::NoMemory),
    }
}

fn wait(thread: &Thread, task: &UserTask, child: u64) -> CallResult {
    let child = task::find(ThreadId(child)).ok_or(Error::NotFound)?;
    if child.user().and_then(|c| c.parent) != Some(thread.id()) {
        return Err(Error::NotFound);
    }
    match task::wait_or_cancel(child.id(), &|| task.killed()) {
        Some(code) => Ok(code as u64),
        None => Err(Error::PeerGone),
    }
}

/// Unmaps the pages lent to this task by the call it is answering, if any.
pub fn release_grant(task: &UserTask) {
    // Unmapped first, then unpinned (when the grant drops).
    if let Some(_grant) = task.grant.lock().take() {
        let _ = task.space.lock().remove_region(layout::GRANT_WINDOW);
    }
}

fn receive(task: &UserTask, context: &mut UserContext, slot: u64) -> CallResult {
    let endpoint = task.capabilities.lock().endpoint(slot)?;
    let (sender, mut message, right) = endpoint.receive(&|| task.killed())?;
    // A new call replaces the unanswered one (whose caller learns its peer went away).
    release_grant(task);
    // Only the kernel says whether pages were lent.
    message.label &= !Message::GRANTED;
    if let Some(right) = right.as_ref()
        && let Some(grant) = right.take_grant()
    {
        let pages = grant.frames().len() as u64;
        task.space
            .lock()
            .map_borrowed(
                layout::GRANT_WINDOW,
                grant.frames(),
                MemoryAttributes::USER_DATA,
            )
            .map_err(|_| Error::NoMemory)?;
        *task.grant.lock() = Some(grant);
        message.label |= Message::GRANTED;
        message.words[2] = pages;
        message.words[3] = layout::GRANT_WINDOW;
    }
    *task.reply_right.lock() = right;
    set_message(context, &message);
    Ok(sender.0)
}

fn reply(task: &UserTask, message: Message) -> CallResult {
    let right = task.reply_right.lock().take().ok_or(Error::NotWaiting)?;
    release_grant(task);
    right.reply(message);
    Ok(0)
}

/// Whether `[address, address + len)` lies in the task's own memory: regions it may write
/// whose pages it owns. Borrowed pages (a grant it received, DMA memory) are not its to lend:
/// their owner may take them back while the loan runs.
fn owns_writable(task: &UserTask, address: u64, len: u64) -> bool {
    let space = task.space.lock();
    let borrowed = space
        .regions()
        .iter()
        .any(|r| r.borrowed && r.start < address + len && address < r.end);
    !borrowed && space.user_may_access(address, len, true)
}

/// The frames behind `pages` pages of the caller's memory at `address`, faulted in and pinned.
fn lend(task: &UserTask, address: u64, pages: u64) -> Result<Grant, Error> {
    if pages == 0 || pages > layout::GRANT_MAX_PAGES || !address.is_multiple_of(PAGE_SIZE) {
        return Err(Error::InvalidArgument);
    }
    let len = pages * PAGE_SIZE;
    if address.checked_add(len).is_none() || !owns_writable(task, address, len) {
        return Err(Error::BadAddress);
    }
    // Each page is made present, then pinned while the space is locked, so reclaim cannot take
    // it in between. The grant unpins what it holds if a later page fails.
    let mut grant = Grant::new(Vec::new(), task.space.clone());
    for page in 0..pages {
        let va = address + page * PAGE_SIZE;
        let frame = loop {
            match crate::mm::aspace::fault_in(&task.space, va, false) {
                FaultResolution::Resolved => {}
                FaultResolution::OutOfMemory => return Err(Error::NoMemory),
                _ => return Err(Error::BadAddress),
            }
            let mut space = task.space.lock();
            let translated = space
                .tables()
                .translate(VirtAddr::new(va).map_err(|_| Error::BadAddress)?);
            if let Some(frame) = translated.and_then(|t| PhysFrame::from_start(t.pa).ok()) {
                crate::mm::vmscan::set_pinned(frame, true);
                break frame;
            }
            // Evicted again before we could pin it: fault it in once more.
        };
        grant.push(frame);
    }
    Ok(grant)
}

fn grant_call(
    thread: &Thread,
    task: &UserTask,
    context: &mut UserContext,
    args: [u64; 6],
) -> CallResult {
    let endpoint = task.capabilities.lock().endpoint(args[0])?;
    let grant = lend(task, args[4], args[5])?;
    let message = Message {
        label: args[1],
        words: [args[2], args[3], 0, 0],
    };
    let reply = endpoint.call(thread.id(), message, Some(grant), &|| task.killed())?;
    set_message(context, &reply);
    Ok(0)
}

/// The device in capability `slot`.
fn device(task: &UserTask, slot: u64) -> Result<&'static UserDevice, Error> {
    task.capabilities.lock().device(slot)
}

/// `dma_alloc`: the address in x0, the physical address in x1.
fn dma_alloc(
    thread: &Thread,
    task: &UserTask,
    context: &mut UserContext,
    args: [u64; 6],
) -> CallResult {
    let (address, physical) =
        device(task, args[0])?.alloc_dma(thread.id(), &task.space, args[1])?;
    context.frame.x[1] = physical;
    Ok(address)
}
