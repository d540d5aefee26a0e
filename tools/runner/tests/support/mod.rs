//! What the runner's QEMU-backed tests share: the workspace, and kernel images built once per
//! test process with a nested cargo.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `cargo build -q -p kernel <target>` once per `cell` and returns the built image,
/// `target/aarch64-unknown-none/debug/<path>`.
pub fn built_kernel_image(
    cell: &'static OnceLock<PathBuf>,
    target: &[&str],
    path: &str,
) -> &'static Path {
    cell.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "-q", "-p", "kernel"])
            .args(target)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the kernel image {path} failed");
        workspace()
            .join("target/aarch64-unknown-none/debug")
            .join(path)
    })
}

/// Runs the runner `command` to its end; returns its exit code and stdout + stderr.
pub fn output_of(command: &mut Command) -> (Option<i32>, String) {
    let output = command.output().expect("the runner starts");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code(), text)
}

/// Fails unless `text` contains every one of `expected`.
pub fn assert_contains<S: AsRef<str>>(text: &str, expected: &[S]) {
    for line in expected {
        let line = line.as_ref();
        assert!(
            text.contains(line),
            "missing {line:?} in the output:\n{text}"
        );
    }
}
