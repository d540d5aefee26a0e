//! `/init` of the Linux baseline initramfs (see docs/linux-baseline.md and `cargo xtask
//! linux-bench`): loads the virtio modules the initramfs carries, opens `/dev/vda` with O_DIRECT,
//! runs the same six shapes as the kernel's `blk bench` three times each, prints one line per run
//! and powers the machine off.
//!
//! Lines, all starting with `linux ` so the host can pick them out of the console:
//! `linux boot_to_init_ns=N`, `linux uname release=R version=V`, `linux disk_bytes=N`,
//! `linux run=K bench=NAME requests=N bytes=N ns=N` (guest CLOCK_MONOTONIC),
//! `linux error: ...` and finally `linux done`.

#![no_std]
#![no_main]

mod sys;
mod workload;

use core::ffi::CStr;
use core::fmt::{self, Write};
use sys::Errno;

/// Modules the initramfs may carry, in load order; the host writes as many as the kernel needs.
const MODULE_PATHS: [&CStr; 10] = [
    c"/m/0.ko", c"/m/1.ko", c"/m/2.ko", c"/m/3.ko", c"/m/4.ko", c"/m/5.ko", c"/m/6.ko", c"/m/7.ko",
    c"/m/8.ko", c"/m/9.ko",
];
/// How long to wait for `/dev/vda` to appear after the modules are loaded.
const DEVICE_WAIT_NS: u64 = 5_000_000_000;
/// Runs of each shape; the host reports the median.
const RUNS: u32 = 3;

/// One console line, assembled on the stack and written with a single `write` so kernel messages
/// cannot split it.
struct Line {
    bytes: [u8; 256],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }

    fn emit(mut self) {
        if self.len == self.bytes.len() {
            self.len -= 1;
        }
        self.bytes[self.len] = b'\n';
        let _ = sys::write(1, &self.bytes[..=self.len]);
    }
}

impl Write for Line {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let take = text.len().min(room);
        self.bytes[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

/// Prints `linux <args>` as one line.
fn report(args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = line.write_str("linux ");
    let _ = line.write_fmt(args);
    line.emit();
}

/// What went wrong, for the `linux error:` line.
struct Failure {
    what: &'static str,
    errno: Errno,
}

trait Context<T> {
    fn context(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, Errno> {
    fn context(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|errno| Failure { what, errno })
    }
}

/// Loads `/m/0.ko`, `/m/1.ko`, ... until one is missing.
fn load_modules() -> Result<(), Failure> {
    for path in MODULE_PATHS {
        let module = match sys::open(path, sys::O_RDONLY | sys::O_CLOEXEC) {
            Err(Errno(sys::ENOENT)) => return Ok(()),
            other => other.context("open module")?,
        };
        match sys::finit_module(&module) {
            Ok(()) | Err(Errno(sys::EEXIST)) => {}
            Err(errno) => {
                return Err(Failure {
                    what: "finit_module",
                    errno,
                });
            }
        }
    }
    Ok(())
}

/// Opens `/dev/vda` for O_DIRECT I/O, waiting a little for the device node.
fn open_disk() -> Result<sys::Fd, Failure> {
    let deadline = sys::clock_ns(sys::CLOCK_MONOTONIC) + DEVICE_WAIT_NS;
    loop {
        match sys::open(c"/dev/vda", sys::O_RDWR | sys::O_DIRECT | sys::O_CLOEXEC) {
            Err(Errno(sys::ENOENT)) if sys::clock_ns(sys::CLOCK_MONOTONIC) < deadline => {
                sys::sleep_ns(10_000_000);
            }
            other => return other.context("open /dev/vda"),
        }
    }
}

fn run() -> Result<(), Failure> {
    let names = sys::uname().context("uname")?;
    report(format_args!(
        "uname release={} version={}",
        names.release(),
        names.version()
    ));
    // devtmpfs gives /dev/vda its node whatever major number virtio_blk gets.
    sys::mount(c"devtmpfs", c"/dev", c"devtmpfs").context("mount devtmpfs on /dev")?;
    load_modules()?;
    let disk = open_disk()?;
    let disk_bytes = sys::size(&disk).context("size of /dev/vda")?;
    report(format_args!("disk_bytes={disk_bytes}"));
    let buffers = sys::map_anonymous(workload::BUFFER_BYTES).context("mmap buffers")?;
    for shape in &workload::SHAPES {
        for run in 1..=RUNS {
            let measured = shape.run(&disk, disk_bytes, buffers).context(shape.name)?;
            report(format_args!(
                "run={run} bench={} requests={} bytes={} ns={}",
                shape.name, measured.requests, measured.bytes, measured.ns
            ));
        }
    }
    Ok(())
}

/// Entry from Linux's ELF loader: the stack pointer is 16-byte aligned and points at `argc`.
#[unsafe(naked)]
#[unsafe(no_mangle)]
extern "C" fn _start() -> ! {
    core::arch::naked_asm!(
        "mov x29, xzr",
        "mov x30, xzr",
        "b {main}",
        main = sym main,
    )
}

extern "C" fn main() -> ! {
    // First thing: how long the kernel took to reach init.
    let boot_to_init_ns = sys::clock_ns(sys::CLOCK_BOOTTIME);
    report(format_args!("boot_to_init_ns={boot_to_init_ns}"));
    match run() {
        Ok(()) => report(format_args!("done")),
        Err(failure) => report(format_args!("error: {}: {}", failure.what, failure.errno)),
    }
    sys::power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    report(format_args!("error: panic: {}", info.message()));
    sys::power_off()
}
