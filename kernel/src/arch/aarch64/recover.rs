//! Recovery points: run a closure so that a fault inside it, or an abort requested by an interrupt
//! handler (a test's time budget ran out), returns control to the caller instead of stopping the
//! kernel.
//!
//! [`catch`] saves the callee-saved registers and SP in a [`RecoveryPoint`] (like `setjmp`). The
//! exception dispatcher calls [`try_recover`]: if a recovery point is armed on this CPU it records
//! what happened and rewrites the trap frame so the `eret` lands in `recovery_resume`, which
//! restores the saved registers and returns 1 from `protected_call` (like `longjmp`). Destructors of
//! the abandoned frames do not run: memory they owned leaks, which is acceptable for the two users
//! (tests that failed, and probing instructions that may not exist, such as semihosting).

use super::esr::Esr;
use super::exception::TrapFrame;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

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
    fn recovery_resume();
}

/// The armed recovery point of each CPU (null when none).
static ARMED: [AtomicPtr<RecoveryPoint>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];

/// Abort requested by an interrupt handler for the protected call running on each CPU.
static ABORT_REQUEST: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
const ABORT_NONE: u8 = 0;
const ABORT_TIMEOUT: u8 = 1;

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
    let point = UnsafeCell::new(RecoveryPoint {
        gprs: [0; 13],
        fprs: [0; 8],
        caught: None,
    });
    let cpu = cpu_index();
    let previous = ARMED[cpu].swap(point.get(), Ordering::AcqRel);
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
    ARMED[cpu].store(previous, Ordering::Release);
    ABORT_REQUEST[cpu].store(ABORT_NONE, Ordering::Relaxed);
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

/// True when a recovery point is armed on this CPU.
pub fn armed() -> bool {
    !ARMED[cpu_index()].load(Ordering::Acquire).is_null()
}

/// Asks that the protected call running on this CPU be abandoned at the next exception return
/// to it (called from interrupt handlers).
pub fn request_abort(reason: AbortReason) {
    let code = match reason {
        AbortReason::Timeout => ABORT_TIMEOUT,
    };
    ABORT_REQUEST[cpu_index()].store(code, Ordering::Relaxed);
}

/// Redirects `frame` to the armed recovery point after a fault the kernel cannot handle.
/// Returns false (frame untouched) when no recovery point is armed.
pub fn try_recover(frame: &mut TrapFrame, caught: Caught) -> bool {
    let daif = disable_interrupts();
    let point = ARMED[cpu_index()].load(Ordering::Acquire);
    if point.is_null() {
        restore_interrupts(daif);
        return false;
    }
    // SAFETY: an armed point belongs to a `catch` frame further up this CPU's stack, which stays
    // alive until `recovery_resume` returns into it.
    unsafe { (*point).caught = Some(caught) };
    frame.redirect_to(recovery_resume as *const () as u64, point as u64);
    restore_interrupts(daif);
    true
}

/// Called on the way back from an interrupt to EL1 code: honours a pending abort request.
pub fn check_abort_request(frame: &mut TrapFrame) {
    let cpu = cpu_index();
    if ABORT_REQUEST[cpu].swap(ABORT_NONE, Ordering::Relaxed) == ABORT_TIMEOUT {
        try_recover(frame, Caught::Aborted(AbortReason::Timeout));
    }
}
