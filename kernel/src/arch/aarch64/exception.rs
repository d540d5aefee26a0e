//! Exception entry: the vector table (`vectors.s`), the saved register frame, dispatch to the
//! kernel's handlers, and the report printed for exceptions nobody handles.

use super::backtrace;
use super::cpu::MAX_CPUS;
use super::esr::{Esr, ExceptionClass};
use super::recover::{self, Caught};
use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable, VBAR_EL1, Writeable};
use core::fmt::{self, Write};

/// log2 of the kernel stack size; stacks are aligned to twice their size (see `linker.ld`).
pub const STACK_SHIFT: u32 = 16;
/// Size of every kernel stack.
pub const STACK_SIZE: usize = 1 << STACK_SHIFT;

/// Size of each CPU's emergency stack, used to report a kernel stack overflow.
const EMERGENCY_STACK_SHIFT: u32 = 14;

#[repr(C, align(16))]
struct EmergencyStacks([[u8; 1 << EMERGENCY_STACK_SHIFT]; MAX_CPUS]);

#[unsafe(no_mangle)]
static mut EMERGENCY_STACKS: EmergencyStacks =
    EmergencyStacks([[0; 1 << EMERGENCY_STACK_SHIFT]; MAX_CPUS]);

core::arch::global_asm!(
    include_str!("vectors.s"),
    frame_size = const core::mem::size_of::<TrapFrame>(),
    stack_shift = const STACK_SHIFT,
    max_cpus = const MAX_CPUS,
    emergency_stack_shift = const EMERGENCY_STACK_SHIFT,
    emergency_stacks = sym EMERGENCY_STACKS,
);

/// Registers saved on exception entry. Layout shared with `vectors.s`.
#[repr(C)]
#[derive(Clone, Default)]
pub struct TrapFrame {
    /// x0..x30 (x29 = frame pointer, x30 = link register).
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
    /// Frame record linking backtraces through the exception: (interrupted fp, elr).
    frame_record: [u64; 2],
    /// FP/SIMD registers (the kernel's Rust code uses them too, so they are always saved).
    pub fp: FpState,
}

/// The FP/SIMD register file.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct FpState {
    pub q: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

const _: () = assert!(core::mem::offset_of!(TrapFrame, fp) == 288);
const _: () = assert!(core::mem::offset_of!(TrapFrame, sp_el0) == 248);

const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

/// Where an exception came from and what it was (the vector table slot).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionKind {
    pub source: Source,
    pub ty: ExceptionType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// EL1 running on SP_EL0 (never used by this kernel).
    CurrentElSp0,
    /// EL1 running on SP_EL1: the kernel itself.
    CurrentElSpx,
    /// EL0 in AArch64: a user task.
    LowerElAarch64,
    /// EL0 in AArch32 (not supported).
    LowerElAarch32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionType {
    Synchronous,
    Irq,
    Fiq,
    SError,
}

impl ExceptionKind {
    fn from_vector(kind: u64) -> Self {
        let source = match kind / 4 {
            0 => Source::CurrentElSp0,
            1 => Source::CurrentElSpx,
            2 => Source::LowerElAarch64,
            _ => Source::LowerElAarch32,
        };
        let ty = match kind % 4 {
            0 => ExceptionType::Synchronous,
            1 => ExceptionType::Irq,
            2 => ExceptionType::Fiq,
            _ => ExceptionType::SError,
        };
        Self { source, ty }
    }
}

impl fmt::Display for ExceptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match self.ty {
            ExceptionType::Synchronous => "synchronous exception",
            ExceptionType::Irq => "IRQ",
            ExceptionType::Fiq => "FIQ",
            ExceptionType::SError => "SError",
        };
        let source = match self.source {
            Source::CurrentElSp0 => "EL1 using SP_EL0",
            Source::CurrentElSpx => "EL1 (kernel)",
            Source::LowerElAarch64 => "EL0 (user, AArch64)",
            Source::LowerElAarch32 => "EL0 (user, AArch32)",
        };
        write!(f, "{ty} from {source}")
    }
}

impl TrapFrame {
    /// The interrupted code's stack pointer, when it ran at EL1 (the frame sits just below it).
    pub fn el1_sp(&self) -> u64 {
        self as *const Self as u64 + core::mem::size_of::<Self>() as u64
    }

    /// True when the exception interrupted EL0.
    pub fn from_user(&self) -> bool {
        self.spsr & 0b1111 == 0
    }

    /// Makes the exception return resume at `pc` in EL1h with `x0 = arg`, interrupts as they were.
    pub fn redirect_to(&mut self, pc: u64, arg: u64) {
        const SPSR_MODE_MASK: u64 = 0b1111;
        const SPSR_EL1H: u64 = 0b0101;
        self.elr = pc;
        self.x[0] = arg;
        self.spsr = (self.spsr & !SPSR_MODE_MASK) | SPSR_EL1H;
    }

    /// Writes the registers, four per line, plus ELR/SPSR/SP.
    pub fn write_registers(&self, out: &mut dyn Write, sp: u64) -> fmt::Result {
        for row in 0..8 {
            out.write_str(" ")?;
            for col in 0..4 {
                let n = row * 4 + col;
                if n < 29 {
                    write!(out, " x{n:<2}={:#018x}", self.x[n])?;
                }
            }
            writeln!(out)?;
        }
        writeln!(
            out,
            "  fp={:#018x} sp={sp:#018x} sp_el0={:#018x}",
            self.x[29], self.sp_el0
        )?;
        writeln!(out, "  lr={:#018x}", self.x[30])?;
        writeln!(out, "  elr={:#018x}", self.elr)?;
        writeln!(
            out,
            "  spsr={:#010x} ({})",
            self.spsr,
            SpsrDisplay(self.spsr)
        )
    }
}

struct SpsrDisplay(u64);

impl fmt::Display for SpsrDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.0 & 0b1111 {
            0b0000 => "EL0t",
            0b0100 => "EL1t",
            0b0101 => "EL1h",
            0b1000 => "EL2t",
            0b1001 => "EL2h",
            _ => "other mode",
        };
        let flag = |bit: u32, name: char| if self.0 & (1 << bit) != 0 { name } else { '-' };
        write!(
            f,
            "{mode}, NZCV={}{}{}{}, DAIF={}{}{}{}",
            flag(31, 'N'),
            flag(30, 'Z'),
            flag(29, 'C'),
            flag(28, 'V'),
            flag(9, 'D'),
            flag(8, 'A'),
            flag(7, 'I'),
            flag(6, 'F')
        )
    }
}

/// Installs the kernel's vector table on this CPU.
pub fn init() {
    unsafe extern "C" {
        static exception_vectors: [u8; 2048];
    }
    let vectors = (&raw const exception_vectors) as u64;
    VBAR_EL1.set(vectors);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Called from `vectors.s` with the saved registers and the vector slot (0..15). Returns 0 to
/// resume the interrupted code from `frame`, or 1 to return from `user::run_user` instead (only
/// for exceptions from EL0, once the user state is saved).
#[unsafe(no_mangle)]
extern "C" fn exception_dispatch(frame: &mut TrapFrame, vector: u64) -> u64 {
    let kind = ExceptionKind::from_vector(vector);
    match (kind.source, kind.ty) {
        (Source::CurrentElSpx, ExceptionType::Synchronous) => el1_synchronous(frame, kind),
        (Source::CurrentElSpx, ExceptionType::Irq) => {
            crate::irq::handle_irq();
            recover::check_abort_request(frame);
        }
        (Source::LowerElAarch64, _) => {
            let esr = Esr(ESR_EL1.get());
            let far = FAR_EL1.get();
            return u64::from(super::user::handle_exception_from_user(
                frame, kind, esr, far,
            ));
        }
        _ => unhandled(frame, kind, None),
    }
    0
}

fn el1_synchronous(frame: &mut TrapFrame, kind: ExceptionKind) {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    if esr.is_abort() && crate::mm::fault::handle_kernel_fault(frame, esr, far) {
        return;
    }
    if recover::try_recover(
        frame,
        Caught::Fault {
            esr,
            far,
            elr: frame.elr,
        },
    ) {
        return;
    }
    unhandled(frame, kind, Some((esr, far)));
}

/// Reports an exception nobody handles and stops the kernel.
fn unhandled(frame: &TrapFrame, kind: ExceptionKind, syndrome: Option<(Esr, u64)>) -> ! {
    let (esr, far) = syndrome.unwrap_or_else(|| (Esr(ESR_EL1.get()), FAR_EL1.get()));
    let sp = if frame.from_user() {
        frame.sp_el0
    } else {
        frame.el1_sp()
    };
    crate::panic::fatal(format_args!("unhandled {kind}"), |out| {
        write_report(out, frame, esr, far, sp)
    })
}

/// The body of an exception report: syndrome in words, fault address, registers, backtrace.
pub fn write_report(
    out: &mut dyn Write,
    frame: &TrapFrame,
    esr: Esr,
    far: u64,
    sp: u64,
) -> fmt::Result {
    writeln!(out, "  {esr}")?;
    if esr.far_valid()
        || matches!(
            esr.class(),
            ExceptionClass::PcAlignment | ExceptionClass::WatchpointSameEl
        )
    {
        writeln!(out, "  far={far:#018x} (faulting address)")?;
    }
    frame.write_registers(out, sp)?;
    if frame.from_user() {
        Ok(())
    } else {
        backtrace::write(out, Some(frame.elr), frame.x[29])
    }
}

/// Entered on this CPU's emergency stack when an exception found SP beyond its stack's end.
#[unsafe(no_mangle)]
extern "C" fn kernel_stack_overflow(frame: &mut TrapFrame, overflowed_sp: u64) -> ! {
    let esr = Esr(ESR_EL1.get());
    let far = FAR_EL1.get();
    let sp = overflowed_sp + core::mem::size_of::<TrapFrame>() as u64;
    let name = crate::mm::stack::stack_name_of(sp);
    crate::panic::fatal(
        format_args!(
            "kernel stack overflow in {} (sp={sp:#x})",
            name.as_deref().unwrap_or("the boot stack")
        ),
        |out| write_report(out, frame, esr, far, sp),
    )
}
