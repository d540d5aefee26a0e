//! Panics and fatal exceptions: report, then exit QEMU with a failure status.

use crate::arch::{backtrace, cpu};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};

static PANICKING: AtomicBool = AtomicBool::new(false);

/// Name of what was running, for reports ("cpu0" until tasks exist).
pub fn current_context_name() -> impl fmt::Display {
    struct Context(usize);
    impl fmt::Display for Context {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "cpu{}", self.0)
        }
    }
    Context(cpu::cpu_index())
}

/// Prints `*** KERNEL PANIC: <what>` and the report written by `body`, reports a running test
/// case as failed, and exits QEMU with status 1. A second fatal error while reporting the first
/// exits immediately.
pub fn fatal(what: fmt::Arguments<'_>, body: impl FnOnce(&mut dyn Write) -> fmt::Result) -> ! {
    cpu::disable_interrupts();
    let mut out = crate::console::emergency_writer();
    if PANICKING.swap(true, Ordering::SeqCst) {
        let _ = writeln!(
            out,
            "\n*** nested fatal error while reporting another: {what}"
        );
        crate::power::exit(1);
    }
    let _ = writeln!(
        out,
        "\n*** KERNEL PANIC on {}: {what}",
        current_context_name()
    );
    let _ = body(&mut out);
    crate::ktest::report_panic(&what);
    crate::power::exit(1)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let fp = backtrace::current_fp();
    let message = info.message();
    match info.location() {
        Some(location) => fatal(format_args!("panicked at {location}: {message}"), |out| {
            backtrace::write(out, None, fp)
        }),
        None => fatal(format_args!("panicked: {message}"), |out| {
            backtrace::write(out, None, fp)
        }),
    }
}
