//! Recovery points: run a closure so that a fault inside it, or an abort requested by an interrupt
//! handler (a test's time budget ran out), returns control to the caller instead of stopping the
//! kernel.
//!
//! [`catch`] saves the callee-saved registers and SP in a [`RecoveryPoint`] (like `setjmp`). The
//! exception dispatcher calls [`try_recover`]: if the running thread has a recovery point armed it
//! records what happened and rewrites the trap frame so the `eret` lands in `recovery_resume`,
//! which restores the saved registers and returns 1 from `protected_call` (like `longjmp`).
//! Destructors of the abandoned frames do not run: memory they owned leaks, which is acceptable
//! for the users (tests that failed, copies from user memory that fault, and probing instructions
//! that may not exist, such as semihosting).
//!
//! Armed points belong to the thread that armed them, not to a CPU: each kernel thread has a
//! [`RecoveryState`], which the scheduler makes current on the CPU it switches the thread to
//! ([`set_current`]). A thread preempted or migrated inside a protected call keeps its point,
//! and another thread faulting on that CPU meanwhile is not sent to it.

use super::esr::Esr;
use super::exception::TrapFrame;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use super::cpu::{MAX_CPUS, cpu_index, disable_interrupts, restore_interrupts};

/// Why a protected call did not return normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caught {
    /// A synchronous exception the kernel could not handle.
    Fault { esr: Esr, far: u64, elr: u64 },
    /// An interrupt handler asked to abandon the call (e.g. a time budget expired).
    Aborted(AbortReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortReason {
    Timeout,
}

/// Saved context of a protected call. Layout shared with `protected_call` / `recovery_resume`.
#[repr(C)]
struct RecoveryPoint {
    /// x19..x30 and SP.
    gprs: [u64; 13],
    /// d8..d15.
    fprs: [u64; 8],
    caught: Option<Caught>,
    /// The point armed before this one by the same thread (null for the outermost).
    outer: *mut RecoveryPoint,
}

core::arch::global_asm!(
    r#"
.section .text.recover, "ax"
// u64 protected_call(RecoveryPoint *rp, void (*f)(void *), void *arg)
.global protected_call
protected_call:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    mov     x9, x1
    mov     x0, x2
    blr     x9
    ldp     x29, x30, [sp], #16
    mov     x0, #0
    ret

// Entered by eret from the exception dispatcher with x0 = RecoveryPoint *.
.global recovery_resume
recovery_resume:
    ldp     x19, x20, [x0, #0]
    ldp     x21, x22, [x0, #16]
    ldp     x23, x24, [x0, #32]
    ldp     x25, x26, [x0, #48]
    ldp     x27, x28, [x0, #64]
    ldp     x29, x30, [x0, #80]
    ldr     x9, [x0, #96]
    mov     sp, x9
    ldp     d8, d9, [x0, #104]
    ldp     d10, d11, [x0, #120]
    ldp     d12, d13, [x0, #136]
    ldp     d14, d15, [x0, #152]
    mov     x0, #1
    ret
"#
);

unsafe extern "C" {
    fn protected_call(rp: *mut u8, f: extern "C" fn(*mut u8), arg: *mut u8) -> u64;
    fn recovery_resume(point: *mut u8) -> !;
}

/// One thread's recovery points and abort request.
pub struct RecoveryState {
    /// The innermost armed point (null when none).
    armed: AtomicPtr<RecoveryPoint>,
    /// An abort of the outermost protected call was requested (only timeouts exist).
    abort: AtomicBool,
}

impl RecoveryState {
    pub const fn new() -> Self {
        Self {
            armed: AtomicPtr::new(core::ptr::null_mut()),
            abort: AtomicBool::new(false),
        }
    }

    /// Asks that the thread's outermost protected call be abandoned: at its next return from an
    /// interrupt, or when it next wakes from blocking ([`abort_if_requested`]). The one asking
    /// wakes the thread if it may be blocked. Ignored when no call is armed by then.
    pub fn request_abort(&self) {
        self.abort.store(true, Ordering::Release);
    }
}

impl Default for RecoveryState {
    fn default() -> Self {
        Self::new()
    }
}

/// The state of each CPU's code before its scheduler runs threads.
static BOOT_STATE: [RecoveryState; MAX_CPUS] = [const { RecoveryState::new() }; MAX_CPUS];
/// The state of the thread running on each CPU (null: the CPU's `BOOT_STATE`).
static CURRENT: [AtomicPtr<RecoveryState>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Makes `state` the recovery state of the code running on this CPU from now on: the scheduler
/// calls it, with interrupts masked, for the thread it switches to.
///
/// # Safety
/// `state` stays valid until another state is made current on this CPU (it belongs to the thread
/// the CPU runs).
pub unsafe fn set_current(state: *const RecoveryState) {
    CURRENT[cpu_index()].store(state.cast_mut(), Ordering::Release);
}

/// The running thread's recovery state.
fn current_state() -> &'static RecoveryState {
    // Masked, so that the CPU index and its entry belong together (no migration in between).
    let daif = disable_interrupts();
    let cpu = cpu_index();
    let state = CURRENT[cpu].load(Ordering::Acquire);
    restore_interrupts(daif);
    if state.is_null() {
        &BOOT_STATE[cpu]
    } else {
        // SAFETY: by `set_current`'s contract the state lives as long as the running thread,
        // which is the caller; nothing keeps the reference past the caller's own frames.
        unsafe { &*state }
    }
}

/// Runs `f`; returns `Err` if it faulted or was aborted instead of returning.
///
/// Calls nest: an inner `catch` gets the faults of its own closure.
pub fn catch<F: FnOnce() -> R, R>(f: F) -> Result<R, Caught> {
    struct Call<F, R> {
        f: Option<F>,
        result: Option<R>,
    }
    extern "C" fn trampoline<F: FnOnce() -> R, R>(call: *mut u8) {
        // SAFETY: `call` is the `Call<F, R>` passed to `protected_call` below, alive and exclusively
        // ours for the duration of the call.
        let call = unsafe { &mut *call.cast::<Call<F, R>>() };
        if let Some(f) = call.f.take() {
            call.result = Some(f());
        }
    }

    let mut call = Call {
        f: Some(f),
        result: None,
    };
    let state = current_state();
    let outer = state.armed.load(Ordering::Acquire);
    let point = UnsafeCell::new(RecoveryPoint {
        gprs: [0; 13],
        fprs: [0; 8],
        caught: None,
        outer,
    });
    state.armed.store(point.get(), Ordering::Release);
    // SAFETY: `point` outlives the call and `trampoline::<F, R>` matches the argument type. If the
    // closure faults, `recovery_resume` restores the callee-saved state captured here, so this
    // frame continues as if `protected_call` had returned 1.
    let status = unsafe {
        protected_call(
            point.get().cast::<u8>(),
            trampoline::<F, R>,
            (&raw mut call).cast::<u8>(),
        )
    };
    state.armed.store(outer, Ordering::Release);
    if outer.is_null() {
        // The request, if any, was for this call: honoured, or too late.
        state.abort.store(false, Ordering::Release);
    }
    if status == 0 {
        Ok(call
            .result
            .take()
            .expect("protected_call returned normally, so the closure ran"))
    } else {
        // SAFETY: the exception path finished writing `caught` before resuming here; nothing
        // else refers to `point` any more.
        let caught = unsafe { (*point.get()).caught };
        Err(caught.unwrap_or(Caught::Aborted(AbortReason::Timeout)))
    }
}

/// True when the running thread has a recovery point armed.
pub fn armed() -> bool {
    !current_state().armed.load(Ordering::Acquire).is_null()
}

/// The point an abort or a fault returns to: the outermost for an abort (it abandons every
/// nested call), the innermost for a fault. Null when none is armed.
fn target(state: &RecoveryState, caught: Caught) -> *mut RecoveryPoint {
    let mut point = state.armed.load(Ordering::Acquire);
    if matches!(caught, Caught::Aborted(_)) {
        loop {
            if point.is_null() {
                break;
            }
            // SAFETY: armed points, and the points they were armed inside, belong to live
            // `catch` frames of the running thread.
            let outer = unsafe { (*point).outer };
            if outer.is_null() {
                break;
            }
            point = outer;
        }
    }
    point
}

/// Redirects `frame` to the running thread's recovery point after a fault the kernel cannot
/// handle or for an abort. Returns false (frame untouched) when no recovery point is armed.
pub fn try_recover(frame: &mut TrapFrame, caught: Caught) -> bool {
    let daif = disable_interrupts();
    let point = target(current_state(), caught);
    if point.is_null() {
        restore_interrupts(daif);
        return false;
    }
    // SAFETY: the point belongs to a `catch` frame further up this thread's stack, which stays
    // alive until `recovery_resume` returns into it.
    unsafe { (*point).caught = Some(caught) };
    frame.redirect_to(recovery_resume as *const () as u64, point as u64);
    restore_interrupts(daif);
    true
}

/// Called on the way back from an interrupt to EL1 code: honours an abort requested for the
/// running thread.
pub fn check_abort_request(frame: &mut TrapFrame) {
    if current_state().abort.load(Ordering::Acquire) {
        try_recover(frame, Caught::Aborted(AbortReason::Timeout));
    }
}

/// Called by a thread that just woke from blocking: if an abort was requested for it, returns
/// from its outermost protected call now (with the abort as the result) instead of going on
/// waiting. The caller must hold no lock.
pub fn abort_if_requested() {
    let state = current_state();
    if !state.abort.load(Ordering::Acquire) {
        return;
    }
    let caught = Caught::Aborted(AbortReason::Timeout);
    let point = target(state, caught);
    if point.is_null() {
        return;
    }
    // SAFETY: the point belongs to a live `catch` frame further up this thread's stack.
    unsafe { (*point).caught = Some(caught) };
    // SAFETY: `recovery_resume` restores that frame's callee-saved registers and SP and returns
    // 1 from its `protected_call`, abandoning the frames in between (the caller holds no lock).
    unsafe { recovery_resume(point.cast()) }
}
