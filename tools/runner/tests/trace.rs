//! Per-subsystem tracing seen on the console: `trace=` on the kernel command line and the
//! `trace` shell command switch one subsystem's debug and trace records on and off, and
//! nothing else's.
//!
//! Needs QEMU and the aarch64 target (tools/setup.sh); builds the kernel with a nested cargo.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::{assert_contains, built_kernel_image, output_of};

fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    built_kernel_image(&KERNEL, &["--bin", "kernel"], "kernel")
}

/// Boots the kernel with `args` on its command line and no console input.
fn boot(name: &str, args: &[&str]) -> (Option<i32>, String) {
    let disk = std::env::temp_dir().join(format!(
        "kernel-trace-test-{}-{name}.img",
        std::process::id()
    ));
    let result = output_of(
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg(kernel())
            .args(args)
            .env("QEMU_DISK", &disk)
            .env("QEMU_TIMEOUT", "120")
            .env_remove("QEMU_CPU")
            .env_remove("KERNEL_ARGS"),
    );
    let _ = std::fs::remove_file(&disk);
    result
}

/// `"a b ; c"` as the runner's argument words.
fn script(text: &str) -> Vec<&str> {
    text.split(' ').collect()
}

#[test]
fn only_traced_subsystems_print_debug_and_trace_records() {
    let mut args = vec!["trace=virtio", "--"];
    args.extend(script(
        "trace ; blk resize blk0 64 ; trace virtio off ; blk resize blk0 128 ; \
         trace mm on ; trace syscall on ; trace sched on ; run hello ; \
         trace mm off ; trace syscall off ; trace sched off ; run hello ; \
         trace irq on ; blk read blk0 0 ; trace irq off ; trace",
    ));
    let (code, text) = boot("switches", &args);
    assert_eq!(code, Some(0), "{text}");
    assert_contains(
        &text,
        &[
            "virtio=on ",
            "mm=off ",
            "DEBUG virtio: blk0: resize to 64: Ok(Done(DeviceReset))",
            "TRACE mm: fault at 0x",
            "TRACE syscall: ",
            "`hello`: call 3 args [",
            "DEBUG sched: thread ",
            "`hello` exits with 0",
            "TRACE irq: INTID ",
        ],
    );
    assert!(
        !text.contains("resize to 128"),
        "virtio was switched off:\n{text}"
    );
    // `hello` ran twice, traced only the first time.
    assert_eq!(text.matches("`hello` exits with 0").count(), 1, "{text}");
    assert_eq!(text.matches("hello from EL0").count(), 2, "{text}");
    let listing = text.rsplit("> trace\n").next().expect("the last listing");
    assert_contains(listing, &["loglevel=info", "virtio=off ", "irq=off "]);
}

#[test]
fn without_tracing_the_default_level_hides_debug_records() {
    let (code, text) = boot("quiet", &script("blk resize blk0 64 ; run hello"));
    assert_eq!(code, Some(0), "{text}");
    assert_contains(&text, &["queue_size=64", "hello from EL0"]);
    assert!(!text.contains("DEBUG") && !text.contains("TRACE"), "{text}");
}

#[test]
fn bad_trace_settings_are_reported() {
    let (code, text) = boot(
        "bad",
        &script("trace=mm,vfs loglevel=loud -- trace ; trace vfs on ; trace mm maybe"),
    );
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "WARN  trace: trace=mm,vfs: unknown subsystem `vfs` (one of: virtio mm reclaim swap sched syscall irq)",
            "WARN  trace: loglevel=loud is not one of off|error|warn|info|debug|trace",
            "mm=on ",
            "error: trace: unknown subsystem `vfs`",
            "error: trace: usage: trace [SUBSYSTEM on|off]",
        ],
    );
}
