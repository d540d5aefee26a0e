//! A kernel test image whose cases fail on purpose, one way each. It is not part of the QEMU
//! tier: the runner's host tests (tools/runner/tests/reports_failures.rs) boot it and check that
//! every failure is reported, that the run goes on after each, and that the exit status says
//! "failed". Select cases with the usual filters (`-- panics`, `--skip masked`).
#![no_std]
#![no_main]

use kernel::ktest::prelude::*;

kernel::entry_point!(kernel::ktest::main);
qemu_config!("nodisk\n");

ktest! {
    fn passes() -> TestResult {
        Ok(())
    }

    fn fails_a_check() -> TestResult {
        let sum = 1 + 1;
        check_eq!(sum, 3, "arithmetic is broken");
        Ok(())
    }

    fn faults() -> TestResult {
        // SAFETY: none: this read of an unmapped address is the failure under test.
        let value = unsafe { core::ptr::read_volatile(0x0000_00de_ad00_0000 as *const u64) };
        check_eq!(value, 0);
        Ok(())
    }

    /// Runs off the bottom of the kernel stack. Function prologues move SP before storing, so
    /// the exception entry's SP check catches it: always fatal, reported by the stack's name.
    fn overflows_the_stack() -> TestResult {
        #[allow(unconditional_recursion)]
        fn deeper(depth: u64) -> u64 {
            let frame = core::hint::black_box([depth; 32]);
            deeper(depth + 1) + frame[depth as usize % 32]
        }
        check_eq!(deeper(0), 0);
        Ok(())
    }

    fn panics() -> TestResult {
        let items: [u32; 0] = [];
        panic!("deliberate panic with {} items", items.len());
    }
}

ktest! {
    timeout_secs = 1;

    fn hangs() -> TestResult {
        loop {
            kernel::arch::cpu::wait_for_interrupt();
        }
    }

    fn hangs_with_interrupts_masked() -> TestResult {
        kernel::arch::cpu::disable_interrupts();
        loop {
            core::hint::spin_loop();
        }
    }
}
