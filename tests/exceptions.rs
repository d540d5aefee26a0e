//! Exception reporting: deliberate faults are caught and decoded into words, and the report a
//! fatal exception prints carries the syndrome, the fault address, registers and a backtrace.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use kernel::arch::esr::{Esr, ExceptionClass, FaultStatus};
use kernel::arch::exception::{TrapFrame, write_report};
use kernel::arch::recover::{Caught, catch};
use kernel::ktest::prelude::*;
use kernel::task::{Builder, RunState, WaitQueue};

kernel::entry_point!(kernel::ktest::main);

/// A user-half address nothing maps.
const UNMAPPED: u64 = 0x0000_00de_ad00_0000;

fn caught_fault(caught: Result<(), Caught>) -> Result<(Esr, u64, u64), Failure> {
    match caught {
        Err(Caught::Fault { esr, far, elr }) => Ok((esr, far, elr)),
        Err(other) => Err(Failure::new(
            file!(),
            line!(),
            alloc::format!("expected a fault, got {other:?}"),
        )),
        Ok(()) => Err(Failure::new(
            file!(),
            line!(),
            String::from("the access did not fault"),
        )),
    }
}

/// Thread body: faults inside its own protected call after sleeping `ms` milliseconds; exits
/// with 1 if the fault came back to that call in the same thread (a point taken from another
/// thread would resume that thread's frame, whose `me` differs).
fn fault_after_sleep(ms: usize) {
    let me = kernel::task::current().id();
    let caught = catch(|| {
        kernel::task::sleep_us(ms as u64 * 1000);
        // SAFETY: the read faults; `catch` turns the fault into an error.
        unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    });
    let own_call = kernel::task::current().id() == me;
    kernel::task::exit(i64::from(
        own_call && matches!(caught, Err(Caught::Fault { .. })),
    ));
}

static NEVER: WaitQueue = WaitQueue::new();

/// Thread body: blocks for good inside a protected call; exits with 1 if the call was aborted.
fn block_forever(_: usize) {
    let caught = catch(|| NEVER.wait_until(|| false));
    kernel::task::exit(i64::from(matches!(caught, Err(Caught::Aborted(_)))));
}

ktest! {
    fn recovery_points_belong_to_threads_not_cpus() -> TestResult {
        // Both on this CPU: the first arms, the second arms on top of it, then the first faults.
        let cpu = kernel::arch::cpu::cpu_index();
        let early = check_ok!(Builder::new("fault-early").pin(cpu).spawn(fault_after_sleep, 5));
        kernel::task::sleep_us(1000);
        let late = check_ok!(Builder::new("fault-late").pin(cpu).spawn(fault_after_sleep, 20));
        check_eq!(kernel::task::wait(early.id()), Some(1), "the first thread's fault went to its own call");
        check_eq!(kernel::task::wait(late.id()), Some(1));
        Ok(())
    }

    fn an_abort_reaches_a_thread_blocked_in_a_protected_call() -> TestResult {
        let thread = check_ok!(kernel::task::spawn("blocked", block_forever, 0));
        kernel::task::sleep_us(2000);
        check_eq!(thread.state(), RunState::Blocked);
        thread.abort_protected_call();
        check_eq!(kernel::task::wait(thread.id()), Some(1), "woken and returned from its call");
        Ok(())
    }

    fn read_of_unmapped_memory_is_a_translation_fault() -> TestResult {
        // SAFETY: the read faults; `catch` turns the fault into an error.
        let (esr, far, _) = caught_fault(catch(|| { unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) }; }))?;
        check_eq!(esr.class(), ExceptionClass::DataAbortSameEl);
        check!(matches!(esr.fault_status(), Some(FaultStatus::Translation { .. })), "{esr}");
        check!(!esr.is_write());
        check!(esr.far_valid());
        check_eq!(far, UNMAPPED);
        Ok(())
    }

    fn write_fault_is_decoded_as_write() -> TestResult {
        // SAFETY: as above.
        let (esr, far, _) = caught_fault(catch(|| unsafe { core::ptr::write_volatile((UNMAPPED + 8) as *mut u64, 1) }))?;
        check!(esr.is_write(), "{esr}");
        check_eq!(far, UNMAPPED + 8);
        let text = alloc::format!("{esr}");
        check!(text.contains("data abort") && text.contains("translation fault") && text.contains("write"), "{text}");
        Ok(())
    }

    fn undefined_instruction_is_reported_with_its_address() -> TestResult {
        // SAFETY: `udf` traps; `catch` turns the trap into an error.
        let (esr, _, elr) = caught_fault(catch(|| unsafe { core::arch::asm!("udf #0x1234") }))?;
        check_eq!(esr.class(), ExceptionClass::Unknown);
        check!(alloc::format!("{esr}").contains("undefined instruction"));
        check!(elr >= boot::KERNEL_VIRT_OFFSET, "elr={elr:#x} is not a kernel address");
        Ok(())
    }

    fn brk_carries_its_immediate() -> TestResult {
        // SAFETY: `brk` traps; `catch` turns the trap into an error.
        let (esr, _, _) = caught_fault(catch(|| unsafe { core::arch::asm!("brk #0x42") }))?;
        check_eq!(esr.class(), ExceptionClass::Brk64);
        check_eq!(esr.imm16(), 0x42);
        check!(alloc::format!("{esr}").contains("imm16=0x42"));
        Ok(())
    }

    fn syndromes_decode_to_words() -> TestResult {
        // Hand-assembled ESR values (Arm ARM D17.2.37).
        let cases: [(u64, &str); 6] = [
            (0x9600_0045, "data abort without a change in exception level; translation fault, level 1, write"),
            (0x9200_0010, "data abort from a lower exception level; synchronous external abort, read"),
            (0x8600_000f, "instruction abort without a change in exception level; permission fault, level 3"),
            (0x9600_000b, "access flag fault, level 3"),
            (0x5600_0000, "SVC (system call) from AArch64; imm16=0x0"),
            (0xbe00_0000, "SError interrupt"),
        ];
        for (raw, expected) in cases {
            let text = alloc::format!("{}", Esr(raw));
            check!(text.contains(expected), "{raw:#x} decoded as {text:?}, expected {expected:?}");
        }
        check_eq!(Esr(0x9600_0045).fault_status(), Some(FaultStatus::Translation { level: 1 }));
        check_eq!(Esr(0x5600_0000).fault_status(), None);
        Ok(())
    }

    fn fatal_report_has_syndrome_registers_and_backtrace() -> TestResult {
        let mut frame = TrapFrame::default();
        for (n, x) in frame.x.iter_mut().enumerate() {
            *x = 0x1000 + n as u64;
        }
        frame.x[29] = kernel::arch::backtrace::current_fp();
        frame.elr = fatal_report_has_syndrome_registers_and_backtrace as *const () as u64;
        frame.spsr = 0x6000_03c5;
        let mut report = String::new();
        check_ok!(write_report(&mut report, &frame, Esr(0x9600_0004), 0xdead_beef, 0x4000));
        for expected in [
            "esr=0x96000004: data abort without a change in exception level; translation fault, level 0, read",
            "far=0x00000000deadbeef",
            "x0 =0x0000000000001000",
            "x28=0x000000000000101c",
            "elr=0xffff",
            "spsr=0x600003c5 (EL1h, NZCV=-ZC-, DAIF=DAIF)",
            "backtrace:",
            "  #0 0xffff",
            "  #1 0xffff",
        ] {
            check!(report.contains(expected), "missing {expected:?} in:\n{report}");
        }
        Ok(())
    }
}
