//! Links every kernel image (the kernel binary, its unit-test image and tests/*.rs) with the
//! top-level linker script, and builds the user programs (user/programs) that the kernel
//! embeds, listing them in `$OUT_DIR/programs.rs`.
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest
        .join("..")
        .canonicalize()
        .expect("the workspace root exists");
    let script = workspace.join("linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg=-T{}", script.display());
    }
    build_user_programs(&workspace);
}

/// The program names: the `[[bin]]` names of user/programs/Cargo.toml.
fn program_names(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).expect("user/programs/Cargo.toml is readable");
    let mut names = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin && let Some(value) = line.strip_prefix("name") {
            let name = value
                .trim_start_matches([' ', '='])
                .trim()
                .trim_matches('"');
            names.push(name.to_string());
        }
    }
    names
}

fn build_user_programs(workspace: &Path) {
    for watched in ["user", "crates/abi", "crates/reclaim", "crates/virtio"] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }
    // A target directory of their own: the outer cargo holds the lock on target/.
    let target_dir = workspace.join("target/user");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args([
            "build",
            "-q",
            "-p",
            "programs",
            "--profile",
            "user",
            "--target",
            "aarch64-unknown-none",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the user programs failed");

    let binaries = target_dir.join("aarch64-unknown-none/user");
    let mut table = String::from(
        "/// The embedded user programs: (name, ELF image).\npub static PROGRAMS: &[(&str, &[u8])] = &[\n",
    );
    for name in program_names(&workspace.join("user/programs/Cargo.toml")) {
        let path = binaries.join(&name);
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("programs.rs");
    std::fs::write(&out, table).expect("OUT_DIR is writable");
}
