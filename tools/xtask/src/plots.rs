//! `cargo xtask plots`: regenerates the figures committed in docs/plots/.
//!
//! - `faults-vs-memory.svg`: the simulator over its five workloads at ten memory sizes, every
//!   policy's faults relative to OPT (`cargo sim -- --workload all --svg ...`).
//! - `generations.svg`: MGLRU's generation sizes over time in the kernel. The release kernel
//!   boots through the runner with `QEMU_ICOUNT=1` (guest time counts instructions, so the run
//!   barely depends on the host) and a user-memory limit, starts a `stress` run in the
//!   background and samples the generation table with `lru watch`; the console log is kept in
//!   target/plots/lru-watch.log and `cargo sim -- --lru-log` draws it.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use super::{Counts, Step, cargo, run_counting};

/// Where the figures go.
const OUT_DIR: &str = "docs/plots";
/// Where the kernel's console log goes.
const LOG: &str = "target/plots/lru-watch.log";

/// The `stress` run: a Zipf workload over twice the memory limit, 8 accesses per page.
const WORKLOAD: &str = "zipf";
const PAGES: u32 = 16384;
const ACCESSES: u32 = 131_072;
/// User-memory limit (`memlimit=`), in MiB: 8192 frames for a 16384-page footprint.
const MEMLIMIT_MIB: u32 = 32;
/// `lru watch INTERVAL_MS COUNT`: 800 ms of samples; the run takes about 700 ms of guest time.
/// (The shell wakes on the 10 ms scheduler tick while the workload runs, so shorter intervals
/// do not give more samples.)
const INTERVAL_MS: u32 = 10;
const COUNT: u32 = 80;

/// The shell script the kernel runs.
fn script() -> String {
    format!("run stress {WORKLOAD} {PAGES} {ACCESSES} 0 1 & ; lru watch {INTERVAL_MS} {COUNT}")
}

/// Whether the console log shows a complete run: the workload verified its pages before the
/// sampling ended (a run still going at power-off prints nothing) and no command failed.
pub fn check_log(log: &str) -> Result<(), String> {
    if let Some(error) = log
        .lines()
        .find(|line| line.trim_start().starts_with("error:"))
    {
        return Err(format!("the kernel reported `{}`", error.trim()));
    }
    match log.lines().find(|line| line.contains("verified=")) {
        Some(line) if line.trim_end().ends_with("verified=ok") => Ok(()),
        Some(line) => Err(format!("the workload failed: `{}`", line.trim())),
        None => Err(format!(
            "the workload did not finish within the samples (lru watch {INTERVAL_MS} {COUNT}); \
             raise COUNT in tools/xtask/src/plots.rs"
        )),
    }
}

/// Boots the kernel for the samples and writes the console log to [`LOG`].
fn capture() -> Step {
    let name = "kernel: lru watch samples";
    eprintln!(
        "\n==> {name}: `{}` with memlimit={MEMLIMIT_MIB}, QEMU_ICOUNT=1 (release kernel; \
         log in {LOG})",
        script()
    );
    let start = Instant::now();
    let result = (|| -> Result<(), String> {
        std::fs::create_dir_all("target/plots").map_err(|err| format!("target/plots: {err}"))?;
        let mut command = cargo();
        command
            .args(["run", "--release", "--", &script()])
            .env("RUNNER_MODE", "run")
            .env("KERNEL_ARGS", format!("memlimit={MEMLIMIT_MIB}"))
            .env("QEMU_ICOUNT", "1")
            .env("QEMU_CPU", "cortex-a72")
            .env("QEMU_MEM", "128M")
            .env("QEMU_SMP", "1")
            .env("QEMU_DISK", "target/qemu/plots.img")
            .env("QEMU_TIMEOUT", "600")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit());
        for knob in [
            "QEMU_MACHINE",
            "QEMU_EXTRA_ARGS",
            "QEMU_GDB",
            "QEMU_VERBOSE",
        ] {
            command.env_remove(knob);
        }
        let output = command
            .output()
            .map_err(|err| format!("cannot run the kernel: {err}"))?;
        let log = String::from_utf8_lossy(&output.stdout);
        std::fs::write(LOG, log.as_bytes()).map_err(|err| format!("{LOG}: {err}"))?;
        if !output.status.success() {
            return Err(format!(
                "the kernel run failed ({}); see {LOG}",
                output.status
            ));
        }
        check_log(&log).map_err(|err| format!("{err}; see {LOG}"))?;
        let samples = log
            .lines()
            .filter(|line| line.starts_with("lru_sample"))
            .count();
        eprintln!("{samples} samples in {LOG}");
        Ok(())
    })();
    if let Err(err) = &result {
        eprintln!("xtask: {err}");
    }
    Step {
        name: name.to_string(),
        ok: result.is_ok(),
        counts: Counts::default(),
        seconds: start.elapsed().as_secs_f64(),
    }
}

pub fn run() -> Vec<Step> {
    if let Err(err) = std::fs::create_dir_all(OUT_DIR) {
        eprintln!("xtask: {OUT_DIR}: {err}");
        return vec![Step {
            name: "plots".to_string(),
            ok: false,
            counts: Counts::default(),
            seconds: 0.0,
        }];
    }
    let faults_svg = Path::new(OUT_DIR).join("faults-vs-memory.svg");
    let mut sim = cargo();
    sim.args(["sim", "--", "--workload", "all", "--svg"])
        .arg(&faults_svg);
    let mut steps = vec![run_counting("simulator: faults-vs-memory.svg", sim)];
    let capture = capture();
    let captured = capture.ok;
    steps.push(capture);
    if captured {
        let generations_svg = Path::new(OUT_DIR).join("generations.svg");
        let mut plot = cargo();
        plot.args(["sim", "--", "--lru-log", LOG, "--svg"])
            .arg(&generations_svg)
            .arg("--title")
            .arg(format!(
                "MGLRU generations: stress {WORKLOAD}, {PAGES} pages, {ACCESSES} accesses, \
                 user memory limited to {MEMLIMIT_MIB} MiB"
            ));
        steps.push(run_counting("plot: generations.svg", plot));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_starts_the_workload_in_the_background_then_samples() {
        assert_eq!(
            script(),
            "run stress zipf 16384 131072 0 1 & ; lru watch 10 80"
        );
    }

    #[test]
    fn a_log_counts_only_when_the_workload_verified_its_pages() {
        let log = "> lru watch 10 80\nlru_sample t_ms=3\n\
                   stress zipf pages=16384 accesses=131072: verified=ok\r\nlru_sample t_ms=13\n";
        assert_eq!(check_log(log), Ok(()));
        assert_eq!(
            check_log("lru_sample t_ms=3\n"),
            Err(
                "the workload did not finish within the samples (lru watch 10 80); \
                 raise COUNT in tools/xtask/src/plots.rs"
                    .to_string()
            )
        );
        assert_eq!(
            check_log("stress zipf pages=4 accesses=8: verified=FAILED pages=2\n"),
            Err(
                "the workload failed: `stress zipf pages=4 accesses=8: verified=FAILED pages=2`"
                    .to_string()
            )
        );
        assert_eq!(
            check_log(&format!(
                "{log}error: lru: watch: COUNT must be at least 1\n"
            )),
            Err("the kernel reported `error: lru: watch: COUNT must be at least 1`".to_string())
        );
    }
}
