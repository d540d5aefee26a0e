//! The QEMU tier is only as good as its failure reporting: boot a kernel test image whose cases
//! fail on purpose (tests/selftest/failing_cases.rs) and check that every kind of failure is
//! reported, that the run continues after each, and that the exit status is a failure.
//!
//! Needs QEMU and the aarch64 target (tools/setup.sh); builds the image with a nested cargo.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::{assert_contains, built_kernel_image, output_of};

/// The failing image, built once per test process.
fn failing_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    built_kernel_image(
        &IMAGE,
        &["--example", "failing_cases"],
        "examples/failing_cases",
    )
}

/// Runs the runner on the failing image in test mode; returns (exit code, stdout + stderr).
fn run(args: &[&str], timeout_secs: &str) -> (Option<i32>, String) {
    output_of(
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg(failing_image())
            .args(args)
            .env("RUNNER_MODE", "test")
            .env("QEMU_TIMEOUT", timeout_secs)
            .env_remove("QEMU_CPU"),
    )
}

#[test]
fn failed_check_fault_and_timeout_each_fail_one_case_and_the_run() {
    let (code, text) = run(
        &[
            "--skip",
            "panics",
            "--skip",
            "masked",
            "--skip",
            "overflows",
        ],
        "120",
    );
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "test passes ... ok",
            "test fails_a_check ... FAILED",
            "test faults ... FAILED",
            "test hangs ... FAILED",
            "check_eq failed: sum == 3 arithmetic is broken",
            "   left: 2",
            "unhandled exception in the test: esr=0x96000004: data abort",
            "far=0x000000dead000000",
            "at failing_cases::faults",
            "exceeded its time budget of 1 s",
            "test result: FAILED. 1 passed; 3 failed; 0 ignored; 0 measured; 3 filtered out",
        ],
    );
}

#[test]
fn panic_reports_the_case_and_summary_then_fails() {
    let (code, text) = run(&["panics"], "120");
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "test panics ... ",
            "*** KERNEL PANIC on cpu0: panicked at",
            "deliberate panic with 0 items",
            "backtrace:",
            // The first frame is the return address into the panic machinery, which called the
            // handler as its last instruction: symbolized as a return address, it is there.
            "  #1 0x",
            "at core::panicking::panic_fmt",
            "at failing_cases::panics",
            "panicked: panicked at",
            "test result: FAILED. 0 passed; 1 failed",
        ],
    );
}

#[test]
fn stack_overflow_below_the_stack_is_fatal_and_named() {
    let (code, text) = run(&["overflows_the_stack"], "120");
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "*** KERNEL PANIC on cpu0: kernel stack overflow in main",
            "at failing_cases::overflows_the_stack::deeper",
            "backtrace:",
            "test result: FAILED. 0 passed; 1 failed",
        ],
    );
}

#[test]
fn hang_with_interrupts_masked_hits_the_host_timeout() {
    let (code, text) = run(&["hangs_with_interrupts_masked"], "15");
    assert_eq!(code, Some(124), "{text}");
    assert_contains(
        &text,
        &[
            "test hangs_with_interrupts_masked ... ",
            "runner: TIMEOUT after 15 s",
        ],
    );
}

#[test]
fn listing_selects_without_running() {
    let (code, text) = run(&["--list"], "120");
    assert_eq!(code, Some(0), "{text}");
    assert_contains(
        &text,
        &[
            "passes: test",
            "hangs_with_interrupts_masked: test",
            "7 tests, 0 benchmarks",
        ],
    );
}
