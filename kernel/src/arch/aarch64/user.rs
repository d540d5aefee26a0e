//! Running code at EL0.
//!
//! [`run_user`] behaves like a function call from the kernel's point of view: it loads a user
//! register context, drops to EL0 and returns when user code traps back into the kernel (system
//! call, fault, or an interrupt the kernel wants to act on, such as preemption), with the user
//! state saved back into the context. A user task is a kernel thread that calls it in a loop.
//! Exceptions that need no kernel decision (an interrupt while user code runs, a page fault the
//! memory manager resolves on the spot) resume EL0 directly without returning.

use super::cpu::{MAX_CPUS, cpu_index};
use super::esr::Esr;
use super::exception::{ExceptionKind, TrapFrame};
use core::sync::atomic::{AtomicPtr, Ordering};

/// The full user register state.
#[repr(C)]
#[derive(Clone, Default)]
pub struct UserContext {
    /// General registers, SP_EL0, ELR (user PC), SPSR, and FP/SIMD state.
    pub frame: TrapFrame,
}

/// SPSR for EL0t (AArch64) with all interrupts unmasked.
pub const SPSR_EL0T: u64 = 0;
/// The condition flags N, Z, C and V: user state that survives every trip through the kernel.
const SPSR_NZCV: u64 = 0xf << 28;

impl UserContext {
    /// A context that starts at `pc` with stack pointer `sp` and `x0 = arg`.
    pub fn new(pc: u64, sp: u64, arg: u64) -> Self {
        let mut frame = TrapFrame::default();
        frame.elr = pc;
        frame.sp_el0 = sp;
        frame.spsr = SPSR_EL0T;
        frame.x[0] = arg;
        Self { frame }
    }
}

/// Why user code stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserExit {
    /// `svc #imm`: the context's ELR already points past it.
    SystemCall { imm: u16 },
    /// A synchronous exception other than a system call (fault, undefined instruction, ...)
    /// that the kernel did not resolve on the spot.
    Exception { esr: Esr, far: u64 },
    /// A page fault the thread must resolve by sleeping (swap-in, or reclaim first): the access
    /// is retried after.
    PageFault { esr: Esr, far: u64 },
    /// An interrupt was handled and the kernel asked to regain control (e.g. to reschedule).
    Interrupt,
}

/// The user context each CPU is running (null when in the kernel).
static RUNNING: [AtomicPtr<UserContext>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
/// Why the last `enter_user` on each CPU returned.
static EXITS: crate::sync::IrqSpinLock<[Option<UserExit>; MAX_CPUS]> =
    crate::sync::IrqSpinLock::new([None; MAX_CPUS]);

core::arch::global_asm!(
    r#"
.section .text.user, "ax"
// void enter_user(UserContext *context): saves the kernel's callee-saved registers on the kernel
// stack, loads the user state and erets to EL0. Returns (through `leave_user`) when an exception
// from EL0 is to be handled by the caller.
//
// Interrupts are masked first: an interrupt taken once ELR_EL1/SPSR_EL1 hold the user's PC and
// PSTATE would overwrite them, and the final eret would then "return" to EL1 with the user's
// registers loaded. The eret unmasks them (SPSR_EL0T).
.global enter_user
enter_user:
    msr     daifset, #0xf
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    add     x1, x0, #288
    ldp     q0, q1, [x1, #32 * 0]
    ldp     q2, q3, [x1, #32 * 1]
    ldp     q4, q5, [x1, #32 * 2]
    ldp     q6, q7, [x1, #32 * 3]
    ldp     q8, q9, [x1, #32 * 4]
    ldp     q10, q11, [x1, #32 * 5]
    ldp     q12, q13, [x1, #32 * 6]
    ldp     q14, q15, [x1, #32 * 7]
    ldp     q16, q17, [x1, #32 * 8]
    ldp     q18, q19, [x1, #32 * 9]
    ldp     q20, q21, [x1, #32 * 10]
    ldp     q22, q23, [x1, #32 * 11]
    ldp     q24, q25, [x1, #32 * 12]
    ldp     q26, q27, [x1, #32 * 13]
    ldp     q28, q29, [x1, #32 * 14]
    ldp     q30, q31, [x1, #32 * 15]
    ldr     x2, [x1, #512]
    ldr     x3, [x1, #520]
    msr     fpsr, x2
    msr     fpcr, x3
    ldp     x2, x3, [x0, #248]
    ldr     x4, [x0, #264]
    msr     sp_el0, x2
    msr     elr_el1, x3
    msr     spsr_el1, x4
    ldp     x2, x3, [x0, #16 * 1]
    ldp     x4, x5, [x0, #16 * 2]
    ldp     x6, x7, [x0, #16 * 3]
    ldp     x8, x9, [x0, #16 * 4]
    ldp     x10, x11, [x0, #16 * 5]
    ldp     x12, x13, [x0, #16 * 6]
    ldp     x14, x15, [x0, #16 * 7]
    ldp     x16, x17, [x0, #16 * 8]
    ldp     x18, x19, [x0, #16 * 9]
    ldp     x20, x21, [x0, #16 * 10]
    ldp     x22, x23, [x0, #16 * 11]
    ldp     x24, x25, [x0, #16 * 12]
    ldp     x26, x27, [x0, #16 * 13]
    ldp     x28, x29, [x0, #16 * 14]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret

// Entered from the exception path with sp where `enter_user` left it.
.global leave_user
leave_user:
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
"#
);

unsafe extern "C" {
    fn enter_user(context: *mut UserContext);
}

/// Runs `context` at EL0 until it traps back for the kernel to decide something.
///
/// The caller must have loaded the user address space (TTBR0) the context's addresses belong
/// to. User code runs with interrupts unmasked whatever the caller's state was; on return they
/// are masked as they were at the exception.
pub fn run_user(context: &mut UserContext) -> UserExit {
    // Never let user code run privileged or with interrupts masked; keep its condition flags (a
    // fault or an interrupt can come between a compare and the branch that reads it).
    context.frame.spsr = (context.frame.spsr & SPSR_NZCV) | SPSR_EL0T;
    let cpu = cpu_index();
    RUNNING[cpu].store(context, Ordering::Release);
    // SAFETY: `context` is exclusively ours for the call; `enter_user` returns through
    // `leave_user` only after `exit_to_kernel` (below) copied the user state into it.
    unsafe { enter_user(context) };
    RUNNING[cpu].store(core::ptr::null_mut(), Ordering::Release);
    EXITS.lock()[cpu].take().unwrap_or(UserExit::Interrupt)
}

/// Called by the exception dispatcher for an exception from EL0 that the kernel wants to handle
/// outside exception context: saves the user state and records why. Returns false if no user
/// context is running on this CPU (the exception then resumes EL0 as is).
pub fn exit_to_kernel(frame: &TrapFrame, exit: UserExit) -> bool {
    let cpu = cpu_index();
    let context = RUNNING[cpu].load(Ordering::Acquire);
    if context.is_null() {
        return false;
    }
    // SAFETY: `run_user` set RUNNING to its exclusive context, and nothing else runs on this
    // CPU until we return into it.
    unsafe { (*context).frame = frame.clone() };
    EXITS.lock()[cpu] = Some(exit);
    true
}

/// What the exception dispatcher does with an exception taken from EL0.
pub fn handle_exception_from_user(
    frame: &mut TrapFrame,
    kind: ExceptionKind,
    esr: Esr,
    far: u64,
) -> bool {
    use super::esr::ExceptionClass;
    use super::exception::ExceptionType;
    match kind.ty {
        ExceptionType::Irq => {
            crate::irq::handle_irq();
            // Resume the user code unless the kernel wants the CPU back.
            crate::irq::take_preempt_request() && exit_to_kernel(frame, UserExit::Interrupt)
        }
        ExceptionType::Synchronous => match esr.class() {
            ExceptionClass::Svc64 => {
                exit_to_kernel(frame, UserExit::SystemCall { imm: esr.imm16() })
            }
            ExceptionClass::DataAbortLowerEl | ExceptionClass::InstructionAbortLowerEl
                if esr.far_valid() =>
            {
                let resolution = crate::mm::aspace::handle_fault(far, esr);
                if resolution == crate::mm::aspace::FaultResolution::Resolved {
                    false
                } else if resolution.needs_thread() {
                    exit_to_kernel(frame, UserExit::PageFault { esr, far })
                } else {
                    exit_to_kernel(frame, UserExit::Exception { esr, far })
                }
            }
            _ => exit_to_kernel(frame, UserExit::Exception { esr, far }),
        },
        _ => exit_to_kernel(frame, UserExit::Exception { esr, far }),
    }
}
