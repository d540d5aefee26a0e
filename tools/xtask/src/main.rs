//! Project tasks: `cargo xtask <task>` (alias in .cargo/config.toml).
//!
//! - `test`: the whole suite — host tier, QEMU tier on `-cpu cortex-a72` (software Access-flag
//!   faults) and `-cpu max` (hardware Access flag and dirty state) with one, two and four CPUs,
//!   the boot matrix, and the
//!   lints (rustfmt, clippy with warnings as errors). Prints a summary and exits non-zero if
//!   anything failed. This is what CI runs.
//! - `host`: host tier only (`cargo test --target host-tuple` for the host-testable crates).
//! - `qemu`: QEMU tier only, on both CPUs.
//! - `boot-matrix [FILTER]`: boots the kernel in every supported configuration (entry at EL1/EL2/EL3,
//!   GICv2/v3, 64 MiB to 4 GiB, four CPU models, 1 to 8 CPUs) and checks what it reports.
//! - `lint`: rustfmt check and clippy (kernel target, user programs, host, Linux-baseline
//!   guest) with warnings as errors, and the docs check.
//! - `docs`: README.md and docs/ name only files, tests, subcommands and shell commands that
//!   exist (see docs.rs).
//! - `bench`: the virtio-blk benchmark on both transports, with and without icount, next to
//!   Linux 6.1's figures measured in the same run (see bench.rs).
//! - `plots`: regenerates docs/plots/ (the simulator's faults-vs-memory plot, and MGLRU's
//!   generation sizes during a `stress` run in the kernel; see plots.rs).
//! - `linux-bench [--modern] [--refresh]`: the Linux 6.1 baseline for the kernel's `blk bench`
//!   (a benchmark, not part of `test`; see docs/linux-baseline.md).

mod bench;
mod bootmatrix;
mod docs;
mod linuxbench;
mod plots;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

/// Every subcommand, as `cargo xtask SUB` takes it.
const SUBCOMMANDS: &[&str] = &[
    "test",
    "host",
    "qemu",
    "boot-matrix",
    "lint",
    "docs",
    "bench",
    "plots",
    "linux-bench",
];

/// Crates tested on the host.
const HOST_PACKAGES: &[&str] = &[
    "abi",
    "devicetree",
    "pagetable",
    "virtio",
    "reclaim",
    "runner",
    "sim",
    "xtask",
];
/// The QEMU tier runs once per configuration: CPU models without and with FEAT_HAFDBS
/// (software vs hardware Access flag), one to four CPUs.
const QEMU_CONFIGS: &[(&str, u32)] = &[("cortex-a72", 1), ("max", 4), ("cortex-a72", 2)];

/// Test counts parsed from libtest-format `test result:` lines.
#[derive(Default, Clone, Copy)]
struct Counts {
    passed: u64,
    failed: u64,
}

struct Step {
    name: String,
    ok: bool,
    counts: Counts,
    seconds: f64,
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `command`, echoing its standard output while counting `test result:` lines.
fn run_counting(name: &str, mut command: Command) -> Step {
    eprintln!("\n==> {name}");
    let start = Instant::now();
    command.stdout(Stdio::piped());
    let mut counts = Counts::default();
    let status = match command.spawn() {
        Ok(mut child) => {
            if let Some(stdout) = child.stdout.take() {
                let mut out = std::io::stdout().lock();
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    let _ = writeln!(out, "{line}");
                    if let Some(result) = line.strip_prefix("test result: ") {
                        counts.passed += count_before(result, " passed");
                        counts.failed += count_before(result, " failed");
                    }
                }
            }
            child.wait().ok()
        }
        Err(err) => {
            eprintln!("xtask: cannot start {command:?}: {err}");
            None
        }
    };
    Step {
        name: name.to_string(),
        ok: status.is_some_and(|s| s.success()),
        counts,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The number just before `label` in a `test result:` line (`12 passed`).
fn count_before(line: &str, label: &str) -> u64 {
    line.split(';')
        .find_map(|part| part.trim().strip_suffix(label.trim()).map(str::trim))
        .and_then(|n| n.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn host_tier() -> Step {
    let mut command = cargo();
    command.args(["test", "--target", "host-tuple", "--no-fail-fast"]);
    for package in HOST_PACKAGES {
        command.args(["-p", package]);
    }
    run_counting("host tier", command)
}

fn qemu_tier((cpu, smp): (&str, u32)) -> Step {
    let mut command = cargo();
    command
        .args(["test", "--no-fail-fast"])
        .env("QEMU_CPU", cpu)
        .env("QEMU_SMP", smp.to_string());
    run_counting(&format!("QEMU tier, -cpu {cpu} -smp {smp}"), command)
}

fn lint() -> Vec<Step> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--", "--check"]);
    let mut kernel = cargo();
    kernel.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    // User programs have no test targets (there is no `test` crate for them).
    let mut user = cargo();
    user.args([
        "clippy", "-p", "programs", "-p", "usys", "--", "-D", "warnings",
    ]);
    let mut host = cargo();
    host.args(["clippy", "--target", "host-tuple", "--all-targets"]);
    for package in HOST_PACKAGES {
        host.args(["-p", package]);
    }
    host.args(["--", "-D", "warnings"]);
    // The Linux baseline's /init (aarch64-unknown-none, like the kernel; not a default member).
    let mut guest = cargo();
    guest.args(["clippy", "-p", "linux-bench-guest", "--", "-D", "warnings"]);
    vec![
        run_counting("rustfmt", fmt),
        run_counting("clippy (kernel)", kernel),
        run_counting("clippy (user programs)", user),
        run_counting("clippy (host)", host),
        run_counting("clippy (linux-bench guest)", guest),
        docs_check(),
    ]
}

fn docs_check() -> Step {
    eprintln!("\n==> docs");
    let start = Instant::now();
    let ok = docs::run(std::path::Path::new("."), SUBCOMMANDS);
    Step {
        name: "docs".to_string(),
        ok,
        counts: Counts::default(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn summarize(steps: &[Step]) -> ExitCode {
    println!("\n==> summary");
    let mut all_ok = true;
    for step in steps {
        all_ok &= step.ok;
        let counts = if step.counts.passed + step.counts.failed > 0 {
            format!(
                "{} passed, {} failed",
                step.counts.passed, step.counts.failed
            )
        } else {
            String::new()
        };
        println!(
            "{:<6} {:<32} {:>7.1}s  {counts}",
            if step.ok { "ok" } else { "FAILED" },
            step.name,
            step.seconds
        );
    }
    let total: u64 = steps.iter().map(|s| s.counts.passed).sum();
    let verdict = if all_ok {
        "all green"
    } else {
        "FAILURES above"
    };
    if total > 0 {
        println!("{verdict} ({total} tests passed in all)");
    } else {
        println!("{verdict}");
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    // Run from the workspace root whatever the caller's directory.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if let Err(err) = std::env::set_current_dir(&root) {
        eprintln!(
            "xtask: cannot enter the workspace root {}: {err}",
            root.display()
        );
        return ExitCode::from(2);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = match args.first().map(String::as_str) {
        Some("test") => {
            let mut steps = vec![host_tier()];
            steps.extend(QEMU_CONFIGS.iter().map(|config| qemu_tier(*config)));
            steps.push(bootmatrix::run(""));
            steps.extend(lint());
            steps
        }
        Some("host") => vec![host_tier()],
        Some("qemu") => QEMU_CONFIGS
            .iter()
            .map(|config| qemu_tier(*config))
            .collect(),
        Some("boot-matrix") => vec![bootmatrix::run(args.get(1).map_or("", String::as_str))],
        Some("lint") => lint(),
        Some("docs") => vec![docs_check()],
        Some("bench") => return bench::run(),
        Some("plots") => plots::run(),
        Some("linux-bench") => return linuxbench::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask {} (boot-matrix [FILTER], linux-bench [--modern] [--refresh])",
                SUBCOMMANDS.join("|")
            );
            return ExitCode::from(2);
        }
    };
    summarize(&steps)
}

#[cfg(test)]
mod tests {
    use super::count_before;

    #[test]
    fn counts_come_from_libtest_summary_lines() {
        let line =
            "ok. 12 passed; 3 failed; 0 ignored; 0 measured; 1 filtered out; finished in 0.41s";
        assert_eq!(count_before(line, " passed"), 12);
        assert_eq!(count_before(line, " failed"), 3);
        assert_eq!(count_before("FAILED. 0 passed; 1 failed;", " failed"), 1);
        assert_eq!(count_before("garbage", " passed"), 0);
    }
}
