//! `cargo xtask linux-bench [--modern] [--refresh]`: the Linux baseline for the kernel's
//! `blk bench`. Boots Debian's Linux 6.1 arm64 kernel under the same QEMU (`-M virt -cpu
//! cortex-a72 -m 512M`, one virtio-blk-device on a fresh 64 MiB raw image) with an initramfs
//! whose `/init` is `tools/linux-bench-guest`, which runs the same six shapes three times each;
//! prints the median of each as `linux bench=NAME iops=N mib_s=N`. See docs/linux-baseline.md.
//!
//! A benchmark only: nothing in `cargo xtask test` runs it.

mod cpio;
mod debian;
mod kmod;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The shapes the guest runs (the kernel's `blk bench` names), in its order.
const SHAPES: &[&str] = &[
    "rand4k_qd1_read",
    "rand4k_qd32_read",
    "seq4k_read",
    "seq64k_read",
    "seq1m_read",
    "rand4k_qd1_write",
];
/// Runs of each shape in one boot (the guest's `RUNS`); the median is reported.
const RUNS: usize = 3;
/// The issue's figures for Linux 6.1 on its host: (shape, what, value).
const REFERENCE: &[(&str, Figure, f64)] = &[
    ("rand4k_qd1_read", Figure::Iops, 3200.0),
    ("seq64k_read", Figure::MibPerSecond, 155.0),
    ("seq1m_read", Figure::MibPerSecond, 1028.0),
];
const REFERENCE_BOOT_TO_INIT_S: f64 = 0.99;
/// Size of the benchmark disk, as the kernel's default data disk.
const DISK_BYTES: u64 = 64 << 20;
/// Hard limit on one QEMU run (it takes about a minute).
const QEMU_TIMEOUT: Duration = Duration::from_secs(600);
const KERNEL_COMMAND_LINE: &str = "console=ttyAMA0 quiet panic=-1";
const GUEST_PACKAGE: &str = "linux-bench-guest";

/// What can stop the Linux baseline.
#[derive(Debug)]
pub enum Error {
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A program the harness runs could not start or failed.
    Tool { command: String, detail: String },
    /// The kernel package could not be fetched from the Debian mirror.
    Download(String),
    /// The kernel package lacks something the benchmark needs.
    Kernel(String),
    /// A kernel module file is not a readable module.
    Module { path: PathBuf, reason: &'static str },
    /// The Linux guest did not deliver every figure.
    Guest(String),
}

impl Error {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::Tool { command, detail } => write!(f, "{command} failed: {detail}"),
            Self::Download(message) => write!(f, "download failed: {message}"),
            Self::Kernel(message) => write!(f, "kernel package: {message}"),
            Self::Module { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::Guest(message) => write!(f, "Linux guest: {message}"),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Debug, PartialEq, Eq)]
struct Options {
    /// Modern (version 2) virtio-mmio instead of QEMU's default legacy transport.
    modern: bool,
    /// Fetch the kernel again even if one is cached.
    refresh: bool,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        modern: false,
        refresh: false,
    };
    for arg in args {
        match arg.as_str() {
            "--modern" => options.modern = true,
            "--refresh" => options.refresh = true,
            other => return Err(format!("unknown linux-bench option `{other}`")),
        }
    }
    Ok(options)
}

/// `cargo xtask linux-bench ARGS`.
pub fn main(args: &[String]) -> ExitCode {
    let options = match parse_options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}\nusage: cargo xtask linux-bench [--modern] [--refresh]");
            return ExitCode::from(2);
        }
    };
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("linux-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(options: &Options) -> Result<(), Error> {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), PathBuf::from);
    // apt resolves relative directories against /etc/apt: give it absolute ones.
    let target = std::path::absolute(&target).map_err(|err| Error::io(&target, err))?;
    let cache = target.join("linux-baseline");
    let kernel = debian::ensure_kernel(&cache, options.refresh)?;
    let init = build_guest(&target)?;
    let initrd = cache.join("initrd.cpio");
    write_initramfs(&initrd, &init, &kernel.modules)?;
    let disk = cache.join("disk.img");
    fresh_disk(&disk)?;
    let command = qemu_command(&kernel.vmlinuz, &initrd, &disk, options.modern);
    eprintln!("linux-bench: {command:?}");
    let started = Instant::now();
    let output = run_qemu(command)?;
    let wall_s = started.elapsed().as_secs_f64();
    let report = GuestReport::parse(&output);
    let medians = report.medians(&kernel.release)?;
    print_results(&kernel, options, &report, &medians, wall_s);
    Ok(())
}

/// Builds the guest program; returns its ELF.
fn build_guest(target: &Path) -> Result<PathBuf, Error> {
    let mut command = super::cargo();
    command.args(["build", "-q", "--release", "-p", GUEST_PACKAGE]);
    let shown = format!("{command:?}");
    let status = command.status().map_err(|err| Error::Tool {
        command: shown.clone(),
        detail: err.to_string(),
    })?;
    if !status.success() {
        return Err(Error::Tool {
            command: shown,
            detail: status.to_string(),
        });
    }
    Ok(target
        .join("aarch64-unknown-none/release")
        .join(GUEST_PACKAGE))
}

/// Writes the initramfs: `/init`, `/dev/console` (the kernel opens it for init's standard
/// streams) and the modules as `/m/0.ko`, `/m/1.ko`, ... in load order.
fn write_initramfs(path: &Path, init: &Path, modules: &[PathBuf]) -> Result<(), Error> {
    // The guest looks for /m/0.ko .. /m/9.ko.
    if modules.len() > 10 {
        return Err(Error::Kernel(format!(
            "{} modules to load; the guest takes at most 10",
            modules.len()
        )));
    }
    let read = |path: &Path| std::fs::read(path).map_err(|err| Error::io(path, err));
    let init = read(init)?;
    let module_data = modules
        .iter()
        .map(|m| read(m))
        .collect::<Result<Vec<_>, _>>()?;
    let module_paths: Vec<String> = (0..modules.len()).map(|i| format!("m/{i}.ko")).collect();
    let mut entries = vec![
        cpio::Entry::Directory { path: "dev" },
        cpio::Entry::CharDevice {
            path: "dev/console",
            major: 5,
            minor: 1,
        },
        cpio::Entry::Directory { path: "m" },
        cpio::Entry::File {
            path: "init",
            executable: true,
            data: &init,
        },
    ];
    for (path, data) in module_paths.iter().zip(&module_data) {
        entries.push(cpio::Entry::File {
            path,
            executable: false,
            data,
        });
    }
    let archive = cpio::newc(&entries)?;
    std::fs::write(path, archive).map_err(|err| Error::io(path, err))
}

/// A new sparse, zero-filled disk image of `DISK_BYTES`.
fn fresh_disk(path: &Path) -> Result<(), Error> {
    let file = std::fs::File::create(path).map_err(|err| Error::io(path, err))?;
    file.set_len(DISK_BYTES).map_err(|err| Error::io(path, err))
}

fn qemu_command(vmlinuz: &Path, initrd: &Path, disk: &Path, modern: bool) -> Command {
    let mut command = Command::new("qemu-system-aarch64");
    command
        .args(["-M", "virt", "-cpu", "cortex-a72", "-m", "512M"])
        .args(["-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", KERNEL_COMMAND_LINE])
        .arg("-drive")
        .arg(format!(
            "if=none,format=raw,file={},id=d0,cache=writeback",
            disk.display()
        ))
        .args(["-device", "virtio-blk-device,drive=d0"]);
    if modern {
        command.args(["-global", "virtio-mmio.force-legacy=false"]);
    }
    command
}

/// Runs QEMU to its exit (or `QEMU_TIMEOUT`), echoing the guest's console; returns the console.
fn run_qemu(mut command: Command) -> Result<String, Error> {
    let shown = format!("{command:?}");
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn().map_err(|err| Error::Tool {
        command: shown.clone(),
        detail: format!("cannot start: {err}"),
    })?;
    let stdout = child.stdout.take().ok_or_else(|| Error::Tool {
        command: shown.clone(),
        detail: "no standard output".to_string(),
    })?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("  | {}", line.trim_end());
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + QEMU_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(err) => {
                return Err(Error::Tool {
                    command: shown,
                    detail: err.to_string(),
                });
            }
        }
    };
    // The reader ends when QEMU's stdout closes.
    let output: Vec<String> = received.iter().collect();
    match status {
        Some(status) if status.success() => Ok(output.join("\n")),
        Some(status) => Err(Error::Tool {
            command: shown,
            detail: format!("QEMU exited with {status}"),
        }),
        None => Err(Error::Guest(format!(
            "no power-off within {} s; the last console lines are above",
            QEMU_TIMEOUT.as_secs()
        ))),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Figure {
    Iops,
    MibPerSecond,
}

/// One run of one shape, as the guest reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    requests: u64,
    bytes: u64,
    ns: u64,
}

impl Run {
    fn iops(&self) -> f64 {
        self.requests as f64 * 1e9 / self.ns as f64
    }
    fn mib_per_second(&self) -> f64 {
        self.bytes as f64 / (1 << 20) as f64 * 1e9 / self.ns as f64
    }
}

/// Everything the guest said, from its `linux ...` console lines.
#[derive(Debug, Default)]
struct GuestReport {
    boot_to_init_ns: Option<u64>,
    release: Option<String>,
    version: Option<String>,
    disk_bytes: Option<u64>,
    runs: BTreeMap<String, Vec<Run>>,
    errors: Vec<String>,
    done: bool,
}

impl GuestReport {
    fn parse(console: &str) -> Self {
        let mut report = Self::default();
        for line in console.lines() {
            // Kernel messages may share the line's start; the guest's text starts at `linux `.
            let Some(at) = line.find("linux ") else {
                continue;
            };
            let line = line[at + "linux ".len()..].trim_end();
            if let Some(error) = line.strip_prefix("error: ") {
                report.errors.push(error.to_string());
            } else if line == "done" {
                report.done = true;
            } else if let Some(names) = line.strip_prefix("uname release=") {
                let (release, version) = names.split_once(" version=").unwrap_or((names, ""));
                report.release = Some(release.to_string());
                report.version = Some(version.to_string());
            } else if let Some(ns) = line.strip_prefix("boot_to_init_ns=") {
                report.boot_to_init_ns = ns.parse().ok();
            } else if let Some(bytes) = line.strip_prefix("disk_bytes=") {
                report.disk_bytes = bytes.parse().ok();
            } else if line.starts_with("run=") {
                let value = |key: &str| {
                    line.split_whitespace()
                        .find_map(|field| field.strip_prefix(key)?.strip_prefix('='))
                };
                let number = |key: &str| value(key).and_then(|v| v.parse::<u64>().ok());
                if let (Some(name), Some(requests), Some(bytes), Some(ns)) = (
                    value("bench"),
                    number("requests"),
                    number("bytes"),
                    number("ns"),
                ) {
                    report.runs.entry(name.to_string()).or_default().push(Run {
                        requests,
                        bytes,
                        ns,
                    });
                }
            }
        }
        report
    }

    /// The median run of every shape, in `SHAPES` order; an error unless the guest ran the
    /// expected kernel and delivered every shape `RUNS` times.
    fn medians(&self, release: &str) -> Result<Vec<(&'static str, Run)>, Error> {
        let mut problems = self.errors.clone();
        match &self.release {
            Some(running) if running == release => {}
            Some(running) => problems.push(format!("booted {running}, expected {release}")),
            None => problems.push("never reported its kernel (did /init run?)".to_string()),
        }
        if self.disk_bytes.is_some_and(|bytes| bytes != DISK_BYTES) {
            problems.push(format!(
                "/dev/vda has {} bytes, expected {DISK_BYTES}",
                self.disk_bytes.unwrap_or(0)
            ));
        }
        let mut medians = Vec::new();
        for &shape in SHAPES {
            let mut runs: Vec<Run> = self
                .runs
                .get(shape)
                .into_iter()
                .flatten()
                .filter(|run| run.requests > 0 && run.ns > 0)
                .copied()
                .collect();
            if runs.len() != RUNS {
                problems.push(format!(
                    "{shape}: {} valid runs, expected {RUNS}",
                    runs.len()
                ));
                continue;
            }
            runs.sort_by(|a, b| a.iops().total_cmp(&b.iops()));
            medians.push((shape, runs[RUNS / 2]));
        }
        if problems.is_empty() && !self.done {
            problems.push("did not finish".to_string());
        }
        if problems.is_empty() {
            Ok(medians)
        } else {
            Err(Error::Guest(problems.join("; ")))
        }
    }
}

fn print_results(
    kernel: &debian::Kernel,
    options: &Options,
    report: &GuestReport,
    medians: &[(&'static str, Run)],
    wall_s: f64,
) {
    println!(
        "Linux {} ({} {}, {}), {} virtio-mmio, QEMU -M virt -cpu cortex-a72 -m 512M, {} MiB disk",
        kernel.release,
        kernel.package,
        kernel.version,
        report.version.as_deref().unwrap_or("?"),
        if options.modern { "modern" } else { "legacy" },
        DISK_BYTES >> 20
    );
    println!(
        "kernel package: {:.1} MB download, cached in {}",
        kernel.deb_bytes as f64 / 1e6,
        kernel.vmlinuz.parent().unwrap_or(Path::new(".")).display()
    );
    if let Some(ns) = report.boot_to_init_ns {
        println!(
            "boot to init: {:.2} s guest time (issue: {REFERENCE_BOOT_TO_INIT_S} s); QEMU ran {wall_s:.1} s",
            ns as f64 / 1e9
        );
    }
    for (shape, median) in medians {
        let runs: Vec<String> = report.runs[*shape]
            .iter()
            .map(|run| format!("{:.0}", run.iops()))
            .collect();
        println!(
            "linux bench={shape} iops={:.0} mib_s={:.1} runs_iops={}",
            median.iops(),
            median.mib_per_second(),
            runs.join(",")
        );
    }
    for (shape, figure, reference) in REFERENCE {
        if let Some((_, median)) = medians.iter().find(|(name, _)| name == shape) {
            let (value, unit) = match figure {
                Figure::Iops => (median.iops(), "IOPS"),
                Figure::MibPerSecond => (median.mib_per_second(), "MiB/s"),
            };
            println!(
                "{shape}: {value:.0} {unit} here vs {reference:.0} in the issue ({:.2}x)",
                value / reference
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn console(runs_per_shape: usize) -> String {
        let mut text = String::from(
            "[    0.000000] Booting Linux\r\n\
             linux boot_to_init_ns=987654321\r\n\
             linux uname release=6.1.0-56-arm64 version=#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2\r\n\
             linux disk_bytes=67108864\r\n",
        );
        for shape in SHAPES {
            for (run, ns) in [4_000_000_000u64, 1_000_000_000, 2_000_000_000]
                .into_iter()
                .take(runs_per_shape)
                .enumerate()
            {
                text.push_str(&format!(
                    "linux run={} bench={shape} requests=4096 bytes=16777216 ns={ns}\r\n",
                    run + 1
                ));
            }
        }
        text.push_str("linux done\r\n[    9.1] reboot: Power down\r\n");
        text
    }

    #[test]
    fn medians_come_from_the_middle_run_of_each_shape() {
        let report = GuestReport::parse(&console(3));
        assert_eq!(report.boot_to_init_ns, Some(987_654_321));
        assert_eq!(
            report.version.as_deref(),
            Some("#1 SMP PREEMPT_DYNAMIC Debian 6.1.192-2")
        );
        let medians = report.medians("6.1.0-56-arm64").unwrap();
        assert_eq!(medians.len(), SHAPES.len());
        for ((shape, median), expected) in medians.iter().zip(SHAPES) {
            assert_eq!(shape, expected);
            assert_eq!(median.ns, 2_000_000_000);
            assert_eq!(median.iops(), 2048.0);
            assert_eq!(median.mib_per_second(), 8.0);
        }
    }

    #[test]
    fn missing_runs_errors_and_a_wrong_kernel_are_reported() {
        let message = GuestReport::parse(&console(2))
            .medians("6.1.0-56-arm64")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("seq1m_read: 2 valid runs, expected 3"),
            "{message}"
        );
        let message = GuestReport::parse(&console(3))
            .medians("6.1.0-57-arm64")
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("booted 6.1.0-56-arm64, expected 6.1.0-57-arm64"),
            "{message}"
        );
        let failed = "linux uname release=r version=v\nlinux error: open /dev/vda: errno 6\n";
        let message = GuestReport::parse(failed)
            .medians("r")
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with("Linux guest: open /dev/vda: errno 6; "),
            "{message}"
        );
        assert!(
            message.contains("rand4k_qd1_read: 0 valid runs"),
            "{message}"
        );
        let message = GuestReport::parse("Kernel panic - not syncing\n")
            .medians("r")
            .unwrap_err()
            .to_string();
        assert!(message.contains("never reported its kernel"), "{message}");
        let unfinished = console(3).replace("linux done", "");
        let message = GuestReport::parse(&unfinished)
            .medians("6.1.0-56-arm64")
            .unwrap_err()
            .to_string();
        assert_eq!(message, "Linux guest: did not finish");
    }

    #[test]
    fn the_initramfs_holds_init_console_and_numbered_modules() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/xtask-tests/initramfs");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, data: &[u8]| {
            std::fs::write(dir.join(name), data).unwrap();
            dir.join(name)
        };
        let init = file("init.elf", b"\x7fELF init");
        let modules = [
            file("virtio_mmio.ko", b"mmio"),
            file("virtio_blk.ko", b"blk"),
        ];
        let archive_path = dir.join("initrd.cpio");
        write_initramfs(&archive_path, &init, &modules).unwrap();
        let archive = std::fs::read(&archive_path).unwrap();
        let text = String::from_utf8_lossy(&archive);
        let order: Vec<usize> = [
            "dev\0",
            "dev/console\0",
            "m\0",
            "init\0",
            "m/0.ko\0",
            "m/1.ko\0",
        ]
        .iter()
        .map(|name| {
            text.find(name)
                .unwrap_or_else(|| panic!("{name:?} missing"))
        })
        .collect();
        assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{order:?}");
        assert!(text.find("m/0.ko\0").unwrap() < text.find("mmio").unwrap());
        assert!(text.find("mmio").unwrap() < text.find("m/1.ko\0").unwrap());
        assert!(text.ends_with("TRAILER!!!\0\0\0\0"));

        let eleven = vec![modules[0].clone(); 11];
        let message = write_initramfs(&archive_path, &init, &eleven)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("11 modules to load; the guest takes at most 10"),
            "{message}"
        );
        let message = write_initramfs(&archive_path, &dir.join("absent"), &modules)
            .unwrap_err()
            .to_string();
        assert!(message.contains("absent: No such file"), "{message}");
    }

    #[test]
    fn options_parse_and_unknown_ones_are_refused() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_options(&args(&[])),
            Ok(Options {
                modern: false,
                refresh: false
            })
        );
        assert_eq!(
            parse_options(&args(&["--refresh", "--modern"])),
            Ok(Options {
                modern: true,
                refresh: true
            })
        );
        assert_eq!(
            parse_options(&args(&["--fast"])),
            Err("unknown linux-bench option `--fast`".to_string())
        );
    }

    #[test]
    fn modern_transport_adds_the_global_and_nothing_else() {
        let args = |modern| {
            qemu_command(Path::new("v"), Path::new("i"), Path::new("d.img"), modern)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        let legacy = args(false);
        assert!(legacy.contains(&"if=none,format=raw,file=d.img,id=d0,cache=writeback".into()));
        assert!(!legacy.iter().any(|a| a.contains("force-legacy")));
        let mut modern = args(true);
        assert_eq!(
            modern.split_off(legacy.len()),
            ["-global", "virtio-mmio.force-legacy=false"]
        );
        assert_eq!(modern, legacy);
    }
}
