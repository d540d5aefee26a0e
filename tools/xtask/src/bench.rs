//! `cargo xtask bench`: the virtio-blk driver's benchmark (`blk bench blk0` in the kernel) on
//! both virtio-mmio transports, next to Linux 6.1's figures from the same host and run.
//!
//! Each transport runs twice on `-cpu cortex-a72 -m 512M` with a fresh 64 MiB raw disk:
//! without icount, where guest time follows the host clock (IOPS, MiB/s), and with
//! `QEMU_ICOUNT=1` (`-icount shift=0,sleep=off`), where the kernel's guest nanoseconds per
//! request are instructions per request (the kernel stops its timer while measuring, so idle
//! time does not count). The Linux baseline comes from `cargo xtask linux-bench` when this
//! xtask has that subcommand: its `linux bench=NAME iops=N mib_s=N` lines.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use super::cargo;

/// The kernel's shapes, in its output order, and the target the issue sets for each:
/// (name, figure compared with Linux, minimum ratio).
const TARGETS: &[(&str, Figure, Option<f64>)] = &[
    ("rand4k_qd1_read", Figure::Iops, Some(2.0)),
    ("rand4k_qd32_read", Figure::Iops, Some(5.0)),
    ("seq4k_read", Figure::MibPerSecond, None),
    ("seq64k_read", Figure::MibPerSecond, None),
    ("seq1m_read", Figure::MibPerSecond, Some(1.0)),
    ("rand4k_qd1_write", Figure::Iops, None),
];

const TRANSPORTS: &[(&str, &str)] = &[
    ("legacy", ""),
    ("modern", "-global virtio-mmio.force-legacy=false"),
];

const DISK_BYTES: u64 = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Figure {
    Iops,
    MibPerSecond,
}

/// The `key=value` figures of one `bench=` line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Line {
    pub values: BTreeMap<String, f64>,
}

impl Line {
    fn get(&self, key: &str) -> Option<f64> {
        self.values.get(key).copied()
    }

    fn figure(&self, figure: Figure) -> Option<f64> {
        match figure {
            Figure::Iops => self.get("iops"),
            Figure::MibPerSecond => self.get("mib_s"),
        }
    }
}

/// `bench=NAME key=value ...` lines after `prefix` (`""` for the kernel, `"linux "` for the
/// baseline), by name. Other lines are ignored.
pub fn parse_lines(text: &str, prefix: &str) -> BTreeMap<String, Line> {
    let mut lines = BTreeMap::new();
    for raw in text.lines() {
        let Some(rest) = raw.trim().strip_prefix(prefix) else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let Some(name) = words.next().and_then(|word| word.strip_prefix("bench=")) else {
            continue;
        };
        let values = words
            .filter_map(|word| word.split_once('='))
            .filter_map(|(key, value)| Some((key.to_string(), value.parse().ok()?)))
            .collect();
        lines.insert(name.to_string(), Line { values });
    }
    lines
}

/// Runs `blk bench blk0` on the release kernel; the console output.
fn kernel_bench(disk: &Path, qemu_args: &str, icount: bool) -> Result<String, String> {
    std::fs::remove_file(disk).ok();
    let file = std::fs::File::create(disk).map_err(|err| format!("{}: {err}", disk.display()))?;
    file.set_len(DISK_BYTES)
        .map_err(|err| format!("{}: {err}", disk.display()))?;
    let output = cargo()
        .args(["run", "-q", "--release", "--", "blk", "bench", "blk0"])
        .env("RUNNER_MODE", "run")
        .env("QEMU_CPU", "cortex-a72")
        .env("QEMU_MEM", "512M")
        .env("QEMU_DISK", disk)
        .env("QEMU_EXTRA_ARGS", qemu_args)
        .env("QEMU_ICOUNT", if icount { "1" } else { "0" })
        .env("QEMU_TIMEOUT", "1200")
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run the kernel: {err}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "the kernel benchmark failed ({}):\n{text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(text)
}

/// The Linux 6.1 baseline, if this xtask has a `linux-bench` subcommand that prints it.
///
/// This is the hook for the Linux harness: it runs `cargo xtask linux-bench` (this very
/// program) and takes its `linux bench=NAME iops=N mib_s=N` lines, measured under the same QEMU
/// settings on the same host in the same session.
fn linux_baseline() -> Option<BTreeMap<String, Line>> {
    let program = std::env::current_exe().ok()?;
    eprintln!("==> linux baseline (cargo xtask linux-bench)");
    let output = Command::new(program)
        .arg("linux-bench")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    let lines = parse_lines(&String::from_utf8_lossy(&output.stdout), "linux ");
    (output.status.success() && !lines.is_empty()).then_some(lines)
}

/// `value` with a sensible number of decimals.
fn show(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(value) if value >= 100.0 => format!("{value:.0}"),
        Some(value) => format!("{value:.2}"),
    }
}

/// The table: one row per transport and shape; Linux figures and ratios when available.
pub fn table(
    wall: &BTreeMap<String, BTreeMap<String, Line>>,
    icount: &BTreeMap<String, BTreeMap<String, Line>>,
    linux: Option<&BTreeMap<String, Line>>,
) -> String {
    let mut out = format!(
        "{:<18} {:<9} {:>9} {:>9} {:>11} {:>13} {:>9} {:>11} {:>7} {:>7}\n",
        "shape",
        "transport",
        "iops",
        "MiB/s",
        "insns/req",
        "notifies/req",
        "irqs/req",
        "linux",
        "ratio",
        "target"
    );
    for (transport, _) in TRANSPORTS {
        for (name, figure, target) in TARGETS {
            let ours = wall.get(*transport).and_then(|lines| lines.get(*name));
            let counted = icount.get(*transport).and_then(|lines| lines.get(*name));
            let baseline = linux
                .and_then(|lines| lines.get(*name))
                .and_then(|line| line.figure(*figure));
            let ratio = ours
                .and_then(|line| line.figure(*figure))
                .zip(baseline)
                .map(|(ours, theirs)| ours / theirs);
            let verdict = match (ratio, target) {
                (Some(ratio), Some(target)) if ratio >= *target => format!(">={target} ok"),
                (Some(_), Some(target)) => format!(">={target} MISSED"),
                (None, Some(target)) => format!(">={target}"),
                (_, None) => String::new(),
            };
            out.push_str(&format!(
                "{:<18} {:<9} {:>9} {:>9} {:>11} {:>13} {:>9} {:>11} {:>7} {:>7}\n",
                name,
                transport,
                show(ours.and_then(|line| line.get("iops"))),
                show(ours.and_then(|line| line.get("mib_s"))),
                show(counted.and_then(|line| line.get("insns_per_req"))),
                show(ours.and_then(|line| line.get("notifies_per_req"))),
                show(ours.and_then(|line| line.get("irqs_per_req"))),
                match (baseline, figure) {
                    (Some(value), Figure::Iops) => format!("{value:.0} iops"),
                    (Some(value), Figure::MibPerSecond) => format!("{value:.0} MiB/s"),
                    (None, _) => "-".to_string(),
                },
                show(ratio),
                verdict
            ));
        }
    }
    out
}

pub fn run() -> ExitCode {
    let disk_dir = Path::new("target/qemu");
    if let Err(err) = std::fs::create_dir_all(disk_dir) {
        eprintln!("xtask: {}: {err}", disk_dir.display());
        return ExitCode::FAILURE;
    }
    let mut wall = BTreeMap::new();
    let mut icount = BTreeMap::new();
    for (transport, qemu_args) in TRANSPORTS {
        let disk = disk_dir.join(format!("bench-{transport}.img"));
        for counted in [false, true] {
            eprintln!(
                "==> blk bench blk0, {transport} transport{}",
                if counted { ", QEMU_ICOUNT=1" } else { "" }
            );
            let start = Instant::now();
            match kernel_bench(&disk, qemu_args, counted) {
                Ok(text) => {
                    let lines = parse_lines(&text, "");
                    for line in text.lines().filter(|line| line.starts_with("bench=")) {
                        eprintln!("{line}");
                    }
                    eprintln!("({:.1} s)", start.elapsed().as_secs_f64());
                    if counted {
                        icount.insert(transport.to_string(), lines);
                    } else {
                        wall.insert(transport.to_string(), lines);
                    }
                }
                Err(err) => {
                    eprintln!("xtask: {err}");
                    return ExitCode::FAILURE;
                }
            }
        }
        std::fs::remove_file(&disk).ok();
    }
    let linux = linux_baseline();
    if linux.is_none() {
        println!("linux baseline: not available");
    }
    println!(
        "\niops, MiB/s, notifies/req, irqs/req: run without icount (guest time = host time)\n\
         insns/req: run with -icount shift=0,sleep=off (guest ns = instructions)\n"
    );
    print!("{}", table(&wall, &icount, linux.as_ref()));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse_by_prefix() {
        let text = "> blk bench blk0\n\
                    bench=seq1m_read iops=2923 mib_s=2923.7 insns_per_req=3110 notifies_per_req=1.000 irqs_per_req=0.000\n\
                    linux bench=seq1m_read iops=1028 mib_s=1028\n\
                    bench=broken\n\
                    noise bench=seq4k_read iops=1\n";
        let ours = parse_lines(text, "");
        assert_eq!(ours.len(), 2);
        let line = &ours["seq1m_read"];
        assert_eq!(line.get("mib_s"), Some(2923.7));
        assert_eq!(line.get("irqs_per_req"), Some(0.0));
        assert!(ours["broken"].values.is_empty());
        let linux = parse_lines(text, "linux ");
        assert_eq!(linux.len(), 1);
        assert_eq!(
            linux["seq1m_read"].figure(Figure::MibPerSecond),
            Some(1028.0)
        );
    }

    #[test]
    fn table_shows_ratios_and_targets_when_linux_figures_exist() {
        let lines = |text: &str| parse_lines(text, "");
        let mut wall = BTreeMap::new();
        wall.insert(
            "legacy".to_string(),
            lines(
                "bench=rand4k_qd1_read iops=6000 mib_s=23.4\nbench=seq1m_read iops=900 mib_s=900",
            ),
        );
        let icount = BTreeMap::new();
        let linux = parse_lines(
            "linux bench=rand4k_qd1_read iops=3200 mib_s=12.5\nlinux bench=seq1m_read iops=1028 mib_s=1028",
            "linux ",
        );
        let text = table(&wall, &icount, Some(&linux));
        let row = |name: &str| {
            text.lines()
                .find(|line| line.starts_with(name) && line.contains("legacy"))
                .unwrap_or_default()
                .to_string()
        };
        assert!(row("rand4k_qd1_read").contains("1.88"), "{text}");
        assert!(row("rand4k_qd1_read").contains("MISSED"), "{text}");
        assert!(row("seq1m_read").contains("0.88"), "{text}");
        assert!(row("seq1m_read").contains("1028 MiB/s"), "{text}");
        let without = table(&wall, &icount, None);
        assert!(
            !without.contains("ok") && !without.contains("MISSED"),
            "{without}"
        );
    }
}
