//! The console: `print!`/`println!`, the `log` facade, and keyboard input on the PL011.
//!
//! Output is polled (the UART FIFO drains at emulation speed). Input arrives by interrupt into a
//! ring buffer once interrupts are on, and is polled before that.

use crate::drivers::pl011::{self, Pl011};
use crate::sync::IrqSpinLock;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Kernel virtual address of the console UART's registers (0 = no console yet).
static UART_BASE: AtomicUsize = AtomicUsize::new(0);
/// Serialises whole messages from different CPUs and interrupt handlers.
static OUTPUT: IrqSpinLock<()> = IrqSpinLock::new(());
/// Set once the receive interrupt feeds `INPUT`.
static RX_INTERRUPTS: AtomicBool = AtomicBool::new(false);
static INPUT: IrqSpinLock<RingBuffer> = IrqSpinLock::new(RingBuffer::new());
/// Bytes received while `INPUT` was full.
static INPUT_DROPPED: AtomicU64 = AtomicU64::new(0);

fn uart() -> Option<Pl011> {
    match UART_BASE.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: UART_BASE only ever holds the address of a mapped PL011 (set in `init_early`
        // and `init` below, whose callers guarantee the mapping).
        base => Some(unsafe { Pl011::new(base) }),
    }
}

/// Console on the PL011 at its fixed QEMU virt address, before the devicetree is read.
///
/// # Safety
/// The boot page tables must map `board::current::EARLY_UART_PA` as device memory at its linear
/// address (the boot code maps the whole first GiB that way).
pub unsafe fn init_early() {
    let base = (boot::KERNEL_VIRT_OFFSET + crate::board::current::EARLY_UART_PA) as usize;
    // SAFETY: the caller guarantees the mapping.
    unsafe { Pl011::new(base) }.init(pl011::DEFAULT_CLOCK_HZ);
    UART_BASE.store(base, Ordering::Release);
}

/// Moves the console to the UART the devicetree names.
///
/// # Safety
/// `base` must be the kernel virtual address of a PL011 mapped as device memory for good.
pub unsafe fn init(base: usize, clock_hz: u32) {
    let _guard = OUTPUT.lock();
    // SAFETY: the caller guarantees the mapping.
    let uart = unsafe { Pl011::new(base) };
    if base != UART_BASE.load(Ordering::Relaxed) {
        uart.init(clock_hz);
    }
    UART_BASE.store(base, Ordering::Release);
}

/// Switches input to the receive interrupt (the caller routes the UART's IRQ to [`handle_irq`]).
pub fn enable_rx_interrupt() {
    if let Some(uart) = uart() {
        RX_INTERRUPTS.store(true, Ordering::Release);
        uart.enable_rx_interrupt();
        // Bytes that arrived before (their interrupt was cleared by the UART's initialisation)
        // would otherwise sit in the FIFO with no interrupt to announce them.
        handle_irq();
    }
}

/// Receive interrupt: moves bytes from the UART FIFO into the input buffer.
pub fn handle_irq() {
    let Some(uart) = uart() else { return };
    // Acknowledge before draining: a byte that arrives after the last read then raises a new
    // interrupt instead of having its interrupt cleared unseen.
    uart.clear_interrupts();
    let mut input = INPUT.lock();
    while let Some(byte) = uart.read_byte() {
        if !input.push(byte) {
            INPUT_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
    drop(input);
    INPUT_WAIT.wake_all();
}

/// Next input byte if one is waiting.
pub fn try_read_byte() -> Option<u8> {
    if RX_INTERRUPTS.load(Ordering::Acquire) {
        INPUT.lock().pop()
    } else {
        uart()?.read_byte()
    }
}

/// Threads waiting for input.
static INPUT_WAIT: crate::task::WaitQueue = crate::task::WaitQueue::new();

/// Waits for the next input byte: the calling thread blocks until the receive interrupt brings
/// one (before interrupts are on, it polls).
pub fn read_byte() -> u8 {
    loop {
        if let Some(byte) = try_read_byte() {
            return byte;
        }
        if RX_INTERRUPTS.load(Ordering::Acquire) {
            INPUT_WAIT.wait_until(|| !INPUT.lock().is_empty());
        } else {
            core::hint::spin_loop();
        }
    }
}

/// Input bytes lost because the buffer was full.
pub fn input_dropped() -> u64 {
    INPUT_DROPPED.load(Ordering::Relaxed)
}

/// Writes to the UART, turning `\n` into `\r\n`.
struct UartWriter(Pl011);

impl Write for UartWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.0.write_byte(b'\r');
            }
            self.0.write_byte(byte);
        }
        Ok(())
    }
}

/// The console as a `fmt::Write` (for code that writes reports into any writer).
pub struct Stdout;

impl Write for Stdout {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        _print(format_args!("{s}"));
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let Some(uart) = uart() else { return };
    let _guard = OUTPUT.lock();
    let _ = UartWriter(uart).write_fmt(args);
}

/// A writer that does not wait for the output lock: for panic and fatal-exception reports,
/// which must get out even if the interrupted code held the lock.
pub fn emergency_writer() -> impl Write {
    struct Emergency;
    impl Write for Emergency {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match uart() {
                Some(uart) => UartWriter(uart).write_str(s),
                None => Ok(()),
            }
        }
    }
    Emergency
}

/// Waits until all console output has been transmitted.
pub fn flush() {
    if let Some(uart) = uart() {
        uart.flush();
    }
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::_print(format_args!($($arg)*)));
}

#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::_print(format_args!("{}\n", format_args!($($arg)*))));
}

/// A fixed-size byte queue for console input.
struct RingBuffer {
    bytes: [u8; 256],
    head: usize,
    len: usize,
}

impl RingBuffer {
    const fn new() -> Self {
        Self {
            bytes: [0; 256],
            head: 0,
            len: 0,
        }
    }

    fn push(&mut self, byte: u8) -> bool {
        if self.len == self.bytes.len() {
            return false;
        }
        let tail = (self.head + self.len) % self.bytes.len();
        self.bytes[tail] = byte;
        self.len += 1;
        true
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let byte = self.bytes[self.head];
        self.head = (self.head + 1) % self.bytes.len();
        self.len -= 1;
        Some(byte)
    }
}

/// The `log` facade: `[seconds.micros] LEVEL target: message`.
struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        crate::trace::enabled(metadata.target(), metadata.level())
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = crate::time::uptime_us();
        let target = record
            .target()
            .strip_prefix("kernel::")
            .unwrap_or(record.target());
        crate::println!(
            "[{:>5}.{:06}] {:<5} {}: {}",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            target,
            record.args()
        );
    }

    fn flush(&self) {
        flush();
    }
}

/// Installs the logger; [`crate::trace`] decides which records print.
pub fn init_logger() {
    let _ = log::set_logger(&LOGGER);
    crate::trace::update_max_level();
}

#[cfg(test)]
mod tests {
    use super::RingBuffer;
    use crate::ktest::prelude::*;

    ktest! {
        fn ring_buffer_keeps_order_and_refuses_overflow() -> TestResult {
            let mut ring = RingBuffer::new();
            for i in 0..256 {
                check!(ring.push(i as u8));
            }
            check!(!ring.push(0xaa), "a full buffer accepts no more bytes");
            for i in 0..256 {
                check_eq!(ring.pop(), Some(i as u8));
            }
            check_eq!(ring.pop(), None);
            Ok(())
        }
    }
}
