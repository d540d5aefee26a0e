//! The kernel's console and shell seen from the host, as a user drives them: commands on the
//! command line, and typed (piped) input ending with end-of-input, which powers off.
//!
//! Needs QEMU and the aarch64 target (tools/setup.sh); builds the kernel with a nested cargo.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "-q", "-p", "kernel", "--bin", "kernel"])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the kernel failed");
        workspace().join("target/aarch64-unknown-none/debug/kernel")
    })
}

/// Boots the kernel with `args`, feeding `input` on the console; returns (exit code, output).
fn boot(args: &[&str], input: &[u8]) -> (Option<i32>, String) {
    let scratch = std::env::temp_dir().join(format!(
        "kernel-shell-test-{}-{}.img",
        std::process::id(),
        args.len() + input.len()
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg(kernel())
        .args(args)
        .env("QEMU_DISK", &scratch)
        .env("QEMU_TIMEOUT", "120")
        .env_remove("QEMU_CPU")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the runner starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .expect("the runner reads its input");
    let output = child.wait_with_output().expect("the runner finishes");
    let _ = std::fs::remove_file(&scratch);
    let _ = std::fs::remove_file(scratch.with_extension("swap.img"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

fn assert_contains(text: &str, expected: &[&str]) {
    for line in expected {
        assert!(
            text.contains(line),
            "missing {line:?} in the output:\n{text}"
        );
    }
}

#[test]
fn commands_on_the_command_line_run_and_power_off() {
    let (code, text) = boot(&["mem", ";", "uptime"], b"");
    assert_eq!(code, Some(0), "{text}");
    assert_contains(
        &text,
        &[
            "> mem",
            "ram_bytes=134217728",
            "frames_free=",
            "> uptime",
            "uptime_us=",
        ],
    );
}

#[test]
fn a_failing_command_makes_the_exit_status_one() {
    let (code, text) = boot(
        &[
            "bogus", ";", "pt", "nonsense", ";", "pt", "0x400000", ";", "pt", "0x400000", "999",
        ],
        b"",
    );
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "error: unknown command `bogus`",
            "error: pt: `nonsense` is not a number",
            "error: pt: a user address needs the TASK",
            "error: pt: no task 999",
        ],
    );
}

#[test]
fn typed_commands_are_echoed_and_end_of_input_powers_off() {
    // Backspace edits the line: "irx\x7fq" is "irq".
    let (code, text) = boot(&[], b"help\rirx\x7fq\ruptime\r");
    assert_eq!(code, Some(0), "{text}");
    assert_contains(
        &text,
        &[
            "Type `help` for commands",
            "> help",
            "list the commands",
            "gic_version=",
            "timer",
            "uptime_s=",
        ],
    );
    assert!(!text.contains("unknown command"), "{text}");
}

/// Lines of `text` that start with `key=`, as values.
fn values<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn reclaim_commands_report_a_stress_run_under_a_memory_limit() {
    // 16 MiB of Zipf accesses with user memory limited to 8 MiB: pages go to swap and back.
    let (code, text) = boot(
        &[
            "memlimit=8",
            "--",
            "stress",
            "zipf",
            "16",
            ";",
            "swap",
            ";",
            "vmstat",
            ";",
            "lru",
            ";",
            "lru",
            "watch",
            "5",
            "3",
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{text}");
    assert_contains(
        &text,
        &[
            "verified=ok",
            "policy=mglru",
            "kernel_vs_sim=",
            "device=blk1",
            "limit_frames=2048",
            "mglru max_seq",
        ],
    );
    let number = |key: &str| -> Vec<u64> {
        values(&text, key)
            .iter()
            .map(|value| value.parse().unwrap_or_else(|_| panic!("{key}={value}")))
            .collect()
    };
    // stress, then swap: the same pages went out, and some came back in.
    let pages_out = number("pages_out");
    assert!(pages_out.len() == 2 && pages_out[0] > 0, "{text}");
    assert!(number("pages_in")[0] > 0, "{text}");
    assert!(number("major_faults")[0] > 0, "{text}");
    assert_eq!(number("io_errors"), [0], "{text}");
    // Three samples, in order of guest time.
    let samples: Vec<u64> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("lru_sample t_ms="))
        .map(|value| value.parse().expect("t_ms is a number"))
        .collect();
    assert_eq!(samples.len(), 3, "{text}");
    assert!(
        samples.windows(2).all(|pair| pair[0] < pair[1]),
        "{samples:?}"
    );
}

#[test]
fn bad_reclaim_commands_fail_with_a_message() {
    let (code, text) = boot(
        &[
            "lru",
            "watch",
            "5",
            "0",
            ";",
            "lru",
            "fifo",
            ";",
            "stress",
            "sequential",
            "4",
            ";",
            "stress",
            "zipf",
            ";",
            "swap",
            "now",
        ],
        b"",
    );
    assert_eq!(code, Some(1), "{text}");
    assert_contains(
        &text,
        &[
            "error: lru: watch: COUNT must be at least 1",
            "error: lru: ",
            "error: stress: ",
            "error: stress: usage: stress WORKLOAD MiB [SECONDS]",
            "error: swap: ",
        ],
    );
    assert_eq!(text.matches("error: ").count(), 5, "{text}");
}
