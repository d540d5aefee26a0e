//! Switching between kernel threads: saving one thread's callee-saved registers and stack
//! pointer and loading another's. Everything else is either caller-saved (the switch is a
//! function call) or lives in the thread's user context.

/// Callee-saved state of a thread that is not running. Layout shared with `switch_context`.
#[repr(C)]
#[derive(Default)]
pub struct SwitchContext {
    /// x19..x28.
    x19_x28: [u64; 10],
    /// x29 (frame pointer) and x30 (link register: where the thread resumes).
    fp: u64,
    lr: u64,
    sp: u64,
    /// d8..d15 (the callee-saved halves of v8..v15).
    d8_d15: [u64; 8],
}

core::arch::global_asm!(
    r#"
.section .text.switch, "ax"
// void switch_context(SwitchContext *save, const SwitchContext *load)
.global switch_context
switch_context:
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
    ldp     x19, x20, [x1, #0]
    ldp     x21, x22, [x1, #16]
    ldp     x23, x24, [x1, #32]
    ldp     x25, x26, [x1, #48]
    ldp     x27, x28, [x1, #64]
    ldp     x29, x30, [x1, #80]
    ldr     x9, [x1, #96]
    mov     sp, x9
    ldp     d8, d9, [x1, #104]
    ldp     d10, d11, [x1, #120]
    ldp     d12, d13, [x1, #136]
    ldp     d14, d15, [x1, #152]
    ret

// First instructions of every new thread: x19 = entry, x20 = argument.
.global thread_trampoline
thread_trampoline:
    mov     x0, x19
    mov     x1, x20
    bl      thread_start
    brk     #0x1
"#
);

unsafe extern "C" {
    fn switch_context(save: *mut SwitchContext, load: *const SwitchContext);
    fn thread_trampoline();
}

impl SwitchContext {
    /// The context of a thread that has not run yet: it starts in `thread_start(entry, arg)` on
    /// the stack whose top is `stack_top`.
    pub fn new_thread(stack_top: u64, entry: usize, arg: usize) -> Self {
        let mut context = Self {
            sp: stack_top,
            lr: thread_trampoline as *const () as u64,
            ..Self::default()
        };
        context.x19_x28[0] = entry as u64;
        context.x19_x28[1] = arg as u64;
        context
    }
}

/// Saves the running thread's state into `save` and resumes the thread whose state is `load`.
/// Returns when some later switch loads `save` again.
///
/// # Safety
/// `save` must belong to the running thread and `load` to a thread that is not running, both
/// valid until the switch back; interrupts must be masked.
pub unsafe fn switch(save: *mut SwitchContext, load: *const SwitchContext) {
    // SAFETY: per the contract; the callee-saved registers are exactly what the asm preserves.
    unsafe { switch_context(save, load) };
}
