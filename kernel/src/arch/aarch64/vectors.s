// Exception vector table (VBAR_EL1) and the register save/restore around the Rust dispatcher
// `exception_dispatch(frame: &mut TrapFrame, kind: u64)`.
//
// TrapFrame layout (kernel::arch::aarch64::exception::TrapFrame, FRAME_SIZE bytes):
//   x0..x30 at 8*n, sp_el0 at 248, elr at 256, spsr at 264, frame record (fp, lr) at 272,
//   q0..q31 at 288 + 16*n, fpsr at 800, fpcr at 808.
// The kernel is compiled with FP/SIMD enabled, so handlers may use any vector register: they
// are saved for every exception, from EL1 as from EL0.
// The frame record links the handler's frame-pointer chain to the interrupted code, so a
// backtrace taken inside a handler continues through the exception.

.equ FRAME_SIZE,        {frame_size}
.equ STACK_SHIFT,       {stack_shift}

.macro save_regs_from_x2
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x21, sp_el0
    mrs     x22, elr_el1
    mrs     x23, spsr_el1
    stp     x30, x21, [sp, #16 * 15]
    stp     x22, x23, [sp, #16 * 16]
.endm

.macro save_fp
    add     x21, sp, #288
    stp     q0, q1, [x21, #32 * 0]
    stp     q2, q3, [x21, #32 * 1]
    stp     q4, q5, [x21, #32 * 2]
    stp     q6, q7, [x21, #32 * 3]
    stp     q8, q9, [x21, #32 * 4]
    stp     q10, q11, [x21, #32 * 5]
    stp     q12, q13, [x21, #32 * 6]
    stp     q14, q15, [x21, #32 * 7]
    stp     q16, q17, [x21, #32 * 8]
    stp     q18, q19, [x21, #32 * 9]
    stp     q20, q21, [x21, #32 * 10]
    stp     q22, q23, [x21, #32 * 11]
    stp     q24, q25, [x21, #32 * 12]
    stp     q26, q27, [x21, #32 * 13]
    stp     q28, q29, [x21, #32 * 14]
    stp     q30, q31, [x21, #32 * 15]
    mrs     x22, fpsr
    mrs     x23, fpcr
    str     x22, [x21, #512]
    str     x23, [x21, #520]
.endm

.macro restore_fp
    add     x21, sp, #288
    ldp     q0, q1, [x21, #32 * 0]
    ldp     q2, q3, [x21, #32 * 1]
    ldp     q4, q5, [x21, #32 * 2]
    ldp     q6, q7, [x21, #32 * 3]
    ldp     q8, q9, [x21, #32 * 4]
    ldp     q10, q11, [x21, #32 * 5]
    ldp     q12, q13, [x21, #32 * 6]
    ldp     q14, q15, [x21, #32 * 7]
    ldp     q16, q17, [x21, #32 * 8]
    ldp     q18, q19, [x21, #32 * 9]
    ldp     q20, q21, [x21, #32 * 10]
    ldp     q22, q23, [x21, #32 * 11]
    ldp     q24, q25, [x21, #32 * 12]
    ldp     q26, q27, [x21, #32 * 13]
    ldp     q28, q29, [x21, #32 * 14]
    ldp     q30, q31, [x21, #32 * 15]
    ldr     x22, [x21, #512]
    ldr     x23, [x21, #520]
    msr     fpsr, x22
    msr     fpcr, x23
.endm

.macro restore_regs_and_eret
    restore_fp
    ldp     x22, x23, [sp, #16 * 16]
    ldp     x30, x21, [sp, #16 * 15]
    msr     elr_el1, x22
    msr     spsr_el1, x23
    msr     sp_el0, x21
    ldp     x0, x1, [sp, #16 * 0]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x28, x29, [sp, #16 * 14]
    add     sp, sp, #FRAME_SIZE
    eret
.endm

// An exception taken from EL1 lands on the interrupted code's own stack. Kernel stacks are
// 2^STACK_SHIFT bytes aligned to twice that, so a valid SP has bit STACK_SHIFT clear; a set bit
// means the stack ran into its guard region. Tested without a free register (x0 is live).
.macro ventry_el1 kind
    .balign 128
    sub     sp, sp, #FRAME_SIZE
    add     sp, sp, x0              // sp' = sp + x0
    sub     x0, sp, x0              // x0' = sp
    tbnz    x0, #STACK_SHIFT, stack_overflow
    sub     x0, sp, x0              // x0 restored
    sub     sp, sp, x0              // sp restored
    stp     x0, x1, [sp]
    mov     x1, #\kind
    b       handle_exception
.endm

// From EL0 the stack is the task's empty kernel stack (SP_EL1).
.macro ventry_el0 kind
    .balign 128
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp]
    mov     x1, #\kind
    b       handle_exception
.endm

.section .text.vectors, "ax"
.balign 2048
.global exception_vectors
exception_vectors:
    // Current EL with SP_EL0 (the kernel never runs that way): kinds 0..3
    ventry_el1 0
    ventry_el1 1
    ventry_el1 2
    ventry_el1 3
    // Current EL with SP_EL1: kinds 4..7
    ventry_el1 4
    ventry_el1 5
    ventry_el1 6
    ventry_el1 7
    // Lower EL, AArch64: kinds 8..11
    ventry_el0 8
    ventry_el0 9
    ventry_el0 10
    ventry_el0 11
    // Lower EL, AArch32: kinds 12..15
    ventry_el0 12
    ventry_el0 13
    ventry_el0 14
    ventry_el0 15

// x0 and x1 are saved at [sp]; x1 = kind; everything else is as interrupted.
handle_exception:
    save_regs_from_x2
    save_fp
    // Frame record: continue the kernel's frame chain into the interrupted code, but end it at
    // the boundary to user space.
    cmp     x1, #8
    b.hs    1f
    stp     x29, x22, [sp, #16 * 17]
    b       2f
1:  stp     xzr, xzr, [sp, #16 * 17]
2:  add     x29, sp, #16 * 17
    mov     x0, sp
    bl      exception_dispatch
    cbnz    x0, exit_to_kernel
.global exception_return
exception_return:
    restore_regs_and_eret

// The exception came from user code started by `enter_user`, and the dispatcher copied the user
// state out: drop the trap frame and return from `enter_user` to the kernel code that called it.
exit_to_kernel:
    add     sp, sp, #FRAME_SIZE
    b       leave_user

// SP overflowed into the guard region: sp = overflowed SP + x0, x0 = overflowed SP. Stash both
// in registers the kernel does not otherwise use at EL1 (it is about to stop), then switch to
// this CPU's emergency stack (TPIDR_EL1 holds the CPU index).
stack_overflow:
    msr     tpidr_el0, x0
    sub     x0, sp, x0
    msr     tpidrro_el0, x0
    mrs     x0, tpidr_el1
    and     x0, x0, #({max_cpus} - 1)
    add     x0, x0, #1
    lsl     x0, x0, #{emergency_stack_shift}
    mov     sp, x0
    adrp    x0, {emergency_stacks}
    add     x0, x0, :lo12:{emergency_stacks}
    add     sp, sp, x0
    sub     sp, sp, #FRAME_SIZE
    str     x1, [sp, #8]
    mrs     x1, tpidrro_el0
    str     x1, [sp]
    save_regs_from_x2
    stp     x29, x22, [sp, #16 * 17]
    add     x29, sp, #16 * 17
    mov     x0, sp
    mrs     x1, tpidr_el0
    bl      kernel_stack_overflow
    b       .
