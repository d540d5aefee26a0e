//! The in-kernel test runner (QEMU tier).
//!
//! Test cases register themselves with [`ktest!`](crate::ktest!): each becomes a `TestCase` in
//! the `.ktest_cases` link section, which `linker.ld` keeps and brackets with
//! `__ktest_start`/`__ktest_end`; nobody maintains a list. A case returns [`TestResult`]; the
//! `check!` macros return a [`Failure`] instead of panicking, so one failing case is reported and
//! the run goes on. Each case runs under a recovery point with a time budget measured on the
//! generic timer: a fault or a hang fails that case only. A panic prints the failing case and the
//! summary, then exits.
//!
//! Output follows libtest (`test name ... ok`, `test result: ok. N passed; ...`) so tools that
//! read `cargo test` output understand it. Arguments after `--` on the kernel command line (what
//! `cargo test -- ARGS` passes) select cases: substrings of the name, `--exact`, `--skip SUBSTR`,
//! `--list`. The exit status (semihosting) is 0 when every selected case passed, 1 otherwise.

use crate::arch::recover::{self, AbortReason, Caught};
use crate::{print, println};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicPtr, Ordering};

pub use alloc::format as __format;

/// Time budget of a case unless it asks for another (guest seconds).
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

pub type TestResult = Result<(), Failure>;

/// Why a case failed: where the failing check is and what it saw.
pub struct Failure {
    pub file: &'static str,
    pub line: u32,
    pub message: String,
}

impl Failure {
    pub fn new(file: &'static str, line: u32, message: String) -> Self {
        Self {
            file,
            line,
            message,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.message)
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One registered test case.
#[repr(C)]
pub struct TestCase {
    /// `module_path!()` of the case.
    pub module: &'static str,
    pub name: &'static str,
    pub run: fn() -> TestResult,
    pub timeout_secs: u64,
}

impl TestCase {
    /// The libtest name: module path without the crate, then the function name.
    pub fn full_name(&self) -> String {
        match self.module.split_once("::") {
            Some((_crate, path)) => __format!("{path}::{}", self.name),
            None => String::from(self.name),
        }
    }
}

/// Registers test cases: `ktest! { fn name() -> TestResult { ... } ... }`. A block may start
/// with `timeout_secs = N;` to give its cases another time budget.
#[macro_export]
macro_rules! ktest {
    (timeout_secs = $secs:expr; $($(#[$attr:meta])* fn $name:ident() -> TestResult $body:block)*) => {
        $(
            $(#[$attr])*
            fn $name() -> $crate::ktest::TestResult $body

            const _: () = {
                #[unsafe(link_section = ".ktest_cases")]
                #[used]
                static CASE: $crate::ktest::TestCase = $crate::ktest::TestCase {
                    module: module_path!(),
                    name: stringify!($name),
                    run: $name,
                    timeout_secs: $secs,
                };
            };
        )*
    };
    ($($(#[$attr:meta])* fn $name:ident() -> TestResult $body:block)*) => {
        $crate::ktest! { timeout_secs = $crate::ktest::DEFAULT_TIMEOUT_SECS; $($(#[$attr])* fn $name() -> TestResult $body)* }
    };
}

/// Declares the QEMU machine a test image needs, for the host runner (tools/runner): the text
/// goes into the image's `.qemu_config` section, one directive per line (`memory 64M`,
/// `cpu max`, `smp 4`, `icount`, `nodisk`, `disk NAME size=64M fill=lba`, `timeout 120`, ...;
/// see `runner --help`).
#[macro_export]
macro_rules! qemu_config {
    ($text:expr) => {
        const _: () = {
            const TEXT: &str = $text;
            #[used]
            #[unsafe(link_section = ".qemu_config")]
            static QEMU_CONFIG: [u8; TEXT.len()] = $crate::ktest::config_bytes(TEXT);
        };
    };
}

/// `text` as a byte array (for [`qemu_config!`](crate::qemu_config)).
pub const fn config_bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Fails the case unless the condition holds: `check!(cond)` or `check!(cond, "fmt", args..)`.
#[macro_export]
macro_rules! check {
    ($cond:expr $(,)?) => {
        if !$cond {
            return Err($crate::ktest::Failure::new(file!(), line!(), $crate::ktest::__format!("check failed: {}", stringify!($cond))));
        }
    };
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::ktest::Failure::new(
                file!(),
                line!(),
                $crate::ktest::__format!("check failed: {}: {}", stringify!($cond), $crate::ktest::__format!($($arg)+)),
            ));
        }
    };
}

/// Fails the case unless both sides are equal, showing both values.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {
        $crate::check_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if !(*left == *right) {
                    return Err($crate::ktest::Failure::new(
                        file!(),
                        line!(),
                        $crate::ktest::__format!(
                            "check_eq failed: {} == {} {}\n   left: {:?}\n  right: {:?}",
                            stringify!($left),
                            stringify!($right),
                            $crate::ktest::__format!($($arg)+),
                            left,
                            right
                        ),
                    ));
                }
            }
        }
    };
}

/// Fails the case when both sides are equal.
#[macro_export]
macro_rules! check_ne {
    ($left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if *left == *right {
                    return Err($crate::ktest::Failure::new(
                        file!(),
                        line!(),
                        $crate::ktest::__format!(
                            "check_ne failed: {} != {}\n  both: {:?}",
                            stringify!($left),
                            stringify!($right),
                            left
                        ),
                    ));
                }
            }
        }
    };
}

/// Evaluates to the `Ok` value, or fails the case showing the error (its `Display`).
#[macro_export]
macro_rules! check_ok {
    ($result:expr $(,)?) => {
        match $result {
            Ok(value) => value,
            Err(err) => {
                return Err($crate::ktest::Failure::new(
                    file!(),
                    line!(),
                    $crate::ktest::__format!("{} failed: {}", stringify!($result), err),
                ));
            }
        }
    };
}

/// Fails the case with a message: `fail!("fmt", args..)`.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => {
        return Err($crate::ktest::Failure::new(file!(), line!(), $crate::ktest::__format!($($arg)+)))
    };
}

pub use crate::{check, check_eq, check_ne, check_ok, fail, ktest, qemu_config};

/// What a test module needs: `use crate::ktest::prelude::*;`
pub mod prelude {
    pub use super::{Failure, TestResult};
    pub use crate::{check, check_eq, check_ne, check_ok, fail, ktest, qemu_config};
}

fn registered_cases() -> &'static [TestCase] {
    unsafe extern "C" {
        static __ktest_start: u8;
        static __ktest_end: u8;
    }
    // SAFETY: the linker script places every `TestCase` static (and nothing else) between the two
    // symbols, in one array of properly aligned elements.
    unsafe {
        let start = (&raw const __ktest_start).cast::<TestCase>();
        let end = (&raw const __ktest_end).cast::<TestCase>();
        let len = (end as usize - start as usize) / core::mem::size_of::<TestCase>();
        core::slice::from_raw_parts(start, len)
    }
}

/// Which cases to run, from libtest-style arguments.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Selection<'a> {
    filters: Vec<&'a str>,
    skips: Vec<&'a str>,
    exact: bool,
    list: bool,
}

impl<'a> Selection<'a> {
    pub fn parse(args: &[&'a str]) -> Self {
        let mut selection = Self::default();
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            match arg {
                "--exact" => selection.exact = true,
                "--list" => selection.list = true,
                "--skip" => selection.skips.extend(args.next().copied()),
                // Other libtest flags (--nocapture, --test-threads, ...) have no meaning here.
                flag if flag.starts_with('-') => {}
                filter => selection.filters.push(filter),
            }
        }
        selection
    }

    pub fn selects(&self, name: &str) -> bool {
        let matches = |pattern: &&str| {
            if self.exact {
                name == *pattern
            } else {
                name.contains(*pattern)
            }
        };
        (self.filters.is_empty() || self.filters.iter().any(matches))
            && !self.skips.iter().any(|skip| name.contains(*skip))
    }
}

/// The case running now, for the panic handler.
static CURRENT: AtomicPtr<TestCase> = AtomicPtr::new(core::ptr::null_mut());

enum Outcome {
    Passed,
    Failed(String),
}

struct Summary {
    passed: usize,
    failed: Vec<(String, String)>,
    filtered_out: usize,
    start: u64,
}

impl Summary {
    fn print(&self) {
        if !self.failed.is_empty() {
            println!("\nfailures:\n");
            for (name, why) in &self.failed {
                println!("---- {name} ----\n{why}\n");
            }
            println!("failures:");
            for (name, _) in &self.failed {
                println!("    {name}");
            }
        }
        let elapsed_us = crate::time::ticks_to_us(crate::arch::cpu::counter() - self.start);
        println!(
            "\ntest result: {}. {} passed; {} failed; 0 ignored; 0 measured; {} filtered out; finished in {}.{:02}s\n",
            if self.failed.is_empty() {
                "ok"
            } else {
                "FAILED"
            },
            self.passed,
            self.failed.len(),
            self.filtered_out,
            elapsed_us / 1_000_000,
            (elapsed_us % 1_000_000) / 10_000
        );
    }
}

static SUMMARY: crate::sync::IrqSpinLock<Option<Summary>> = crate::sync::IrqSpinLock::new(None);

/// Runs one case under a recovery point and its time budget.
fn run_case(case: &'static TestCase) -> Outcome {
    CURRENT.store(case as *const TestCase as *mut TestCase, Ordering::Release);
    let budget_us = case.timeout_secs * 1_000_000;
    // Runs in the timer interrupt: abandons the case whether its thread is running (at the
    // interrupt's return) or blocked (it is woken to notice).
    fn out_of_time(thread: usize) {
        if let Some(thread) = crate::task::find(crate::task::ThreadId(thread as u64)) {
            thread.abort_protected_call();
        }
    }
    let deadline = crate::time::add_deadline_after_us(
        budget_us,
        out_of_time,
        crate::task::current().id().0 as usize,
    );
    let result = recover::catch(case.run);
    if let Ok(id) = deadline {
        crate::time::cancel_deadline(id);
    }
    CURRENT.store(core::ptr::null_mut(), Ordering::Release);
    match (deadline, result) {
        (Err(err), _) => Outcome::Failed(__format!("could not arm the time budget: {err}")),
        (Ok(_), Ok(Ok(()))) => Outcome::Passed,
        (Ok(_), Ok(Err(failure))) => Outcome::Failed(__format!("{failure}")),
        (Ok(_), Err(Caught::Fault { esr, far, elr })) => Outcome::Failed(__format!(
            "unhandled exception in the test: {esr}\n  far={far:#018x}\n  elr={elr:#018x}"
        )),
        (Ok(_), Err(Caught::Aborted(AbortReason::Timeout))) => Outcome::Failed(__format!(
            "exceeded its time budget of {} s (guest time); threads then:{}",
            case.timeout_secs,
            thread_table()
        )),
    }
}

/// One line per thread (id, name, state, CPU), to see what a case that ran out of time waits for.
fn thread_table() -> String {
    use fmt::Write as _;
    let mut table = String::new();
    for thread in crate::task::all() {
        let (id, name, state, cpu) = (thread.id(), thread.name(), thread.state(), thread.cpu());
        let _ = write!(table, "\n  {id:>4} {name:<16} {state:?} cpu{cpu}");
    }
    table
}

/// Entry point of test images: runs the selected cases and exits QEMU with the result.
pub fn main() -> ! {
    let args: Vec<&str> = crate::cmdline::args().collect();
    let selection = Selection::parse(&args);
    let mut cases: Vec<&'static TestCase> = registered_cases().iter().collect();
    cases.sort_by_cached_key(|case| case.full_name());
    let total = cases.len();
    cases.retain(|case| selection.selects(&case.full_name()));

    if selection.list {
        for case in &cases {
            println!("{}: test", case.full_name());
        }
        println!("\n{} tests, 0 benchmarks", cases.len());
        crate::power::exit(0);
    }

    println!(
        "\nrunning {} test{}",
        cases.len(),
        if cases.len() == 1 { "" } else { "s" }
    );
    *SUMMARY.lock() = Some(Summary {
        passed: 0,
        failed: Vec::new(),
        filtered_out: total - cases.len(),
        start: crate::arch::cpu::counter(),
    });
    for case in cases {
        let name = case.full_name();
        print!("test {name} ... ");
        let outcome = run_case(case);
        let mut summary = SUMMARY.lock();
        let summary = summary
            .as_mut()
            .expect("the summary exists while cases run");
        match outcome {
            Outcome::Passed => {
                summary.passed += 1;
                println!("ok");
            }
            Outcome::Failed(why) => {
                println!("FAILED");
                summary.failed.push((name, why));
            }
        }
    }
    let summary = SUMMARY
        .lock()
        .take()
        .expect("the summary exists after the run");
    summary.print();
    crate::power::exit(if summary.failed.is_empty() { 0 } else { 1 });
}

/// Called by the panic handler: if a case was running, report it failed and print the summary.
/// Returns true when a test run was in progress.
pub fn report_panic(message: &dyn fmt::Display) -> bool {
    let case = CURRENT.load(Ordering::Acquire);
    if case.is_null() {
        return false;
    }
    // SAFETY: CURRENT only holds pointers to `TestCase` statics.
    let case = unsafe { &*case };
    println!("FAILED");
    if let Some(mut guard) = SUMMARY.try_lock()
        && let Some(summary) = guard.as_mut()
    {
        summary
            .failed
            .push((case.full_name(), __format!("panicked: {message}")));
        summary.print();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::Selection;

    ktest! {
        fn selection_filters_like_libtest() -> TestResult {
            let all = Selection::parse(&[]);
            check!(all.selects("mm::buddy::split"));
            let sub = Selection::parse(&["buddy"]);
            check!(sub.selects("mm::buddy::split"));
            check!(!sub.selects("time::uptime"));
            let exact = Selection::parse(&["--exact", "mm::buddy"]);
            check!(!exact.selects("mm::buddy::split"));
            check!(exact.selects("mm::buddy"));
            let skip = Selection::parse(&["mm", "--skip", "split", "--nocapture"]);
            check!(skip.selects("mm::buddy::merge"));
            check!(!skip.selects("mm::buddy::split"));
            check!(Selection::parse(&["--list"]).list);
            Ok(())
        }
    }
}
