//! The boot matrix: the kernel must boot to its shell in every configuration QEMU virt offers —
//! entry at EL1, EL2 (`virtualization=on`) or EL3, GICv2 or GICv3, 64 MiB to 4 GiB of RAM,
//! Cortex-A53/A57/A72 or `max`, 1 to 8 CPUs — and report what QEMU was told.
//!
//! QEMU 7.2 drops a `-kernel` Linux Image to EL2/EL1 itself even with `secure=on`, so entry at
//! EL3 is exercised firmware-style: the Image goes in with QEMU's generic loader, the CPU starts
//! at its reset EL (EL3) and the DTB waits at the start of RAM (dumped, compacted so it does not
//! overlap the image, and passed with `-dtb`). Without a `-kernel` there are no bootargs, so the
//! commands go in on the console.

use super::{Counts, Step, cargo};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Config {
    machine: &'static str,
    cpu: &'static str,
    memory: &'static str,
    smp: u32,
    /// Exception level the kernel must report having been entered at.
    entry_el: u32,
    gic: u32,
    /// Boot through the generic loader (entry at the reset EL) instead of `-kernel`.
    loader: bool,
}

#[rustfmt::skip]
const CONFIGS: &[Config] = &[
    Config { machine: "virt", cpu: "cortex-a72", memory: "128M", smp: 1, entry_el: 1, gic: 2, loader: false },
    Config { machine: "virt", cpu: "cortex-a53", memory: "64M", smp: 1, entry_el: 1, gic: 2, loader: false },
    Config { machine: "virt", cpu: "cortex-a57", memory: "512M", smp: 8, entry_el: 1, gic: 2, loader: false },
    Config { machine: "virt", cpu: "max", memory: "2G", smp: 4, entry_el: 1, gic: 2, loader: false },
    Config { machine: "virt,virtualization=on", cpu: "cortex-a72", memory: "256M", smp: 2, entry_el: 2, gic: 2, loader: false },
    Config { machine: "virt,virtualization=on", cpu: "max", memory: "128M", smp: 1, entry_el: 2, gic: 2, loader: false },
    Config { machine: "virt,secure=on", cpu: "cortex-a57", memory: "256M", smp: 1, entry_el: 1, gic: 2, loader: false },
    Config { machine: "virt,gic-version=3", cpu: "max", memory: "4G", smp: 4, entry_el: 1, gic: 3, loader: false },
    Config { machine: "virt,gic-version=3", cpu: "cortex-a53", memory: "64M", smp: 8, entry_el: 1, gic: 3, loader: false },
    Config { machine: "virt,gic-version=3,virtualization=on", cpu: "cortex-a72", memory: "1G", smp: 4, entry_el: 2, gic: 3, loader: false },
    Config { machine: "virt,secure=on", cpu: "cortex-a72", memory: "128M", smp: 1, entry_el: 3, gic: 2, loader: true },
    Config { machine: "virt,secure=on,gic-version=3", cpu: "max", memory: "1G", smp: 2, entry_el: 3, gic: 3, loader: true },
    Config { machine: "virt,secure=on,virtualization=on", cpu: "cortex-a57", memory: "128M", smp: 1, entry_el: 3, gic: 2, loader: true },
];

const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
const COMMANDS: &[&str] = &["mem", ";", "dtb", ";", "poweroff"];

fn memory_bytes(memory: &str) -> u64 {
    let (digits, unit) = memory.split_at(memory.len() - 1);
    let n: u64 = digits.parse().expect("CONFIGS use N followed by M or G");
    match unit {
        "M" => n << 20,
        "G" => n << 30,
        _ => unreachable!("CONFIGS use M or G"),
    }
}

impl Config {
    fn name(&self) -> String {
        format!(
            "{} -cpu {} -m {} -smp {}{}",
            self.machine,
            self.cpu,
            self.memory,
            self.smp,
            if self.loader { " (generic loader)" } else { "" }
        )
    }

    /// Every line the kernel must print in this configuration.
    fn expected_lines(&self) -> Vec<String> {
        vec![
            format!("entered at EL{}, running at EL1", self.entry_el),
            format!("ram_bytes={}", memory_bytes(self.memory)),
            format!("cpus={}", self.smp),
            format!("gic_version={}", self.gic),
        ]
    }
}

/// Runs `command` with `input` on its standard input; returns (success, output).
fn run_with_timeout(command: Command, input: &[u8]) -> (bool, String) {
    let (status, output) = run_with_input(command, input);
    (status == Some(0), output)
}

/// Runs `command` with nothing on its standard input; returns (exit code, output).
fn run_with_status(command: Command) -> (Option<i32>, String) {
    run_with_input(command, b"")
}

/// Runs `command` with `input` on its standard input and a timeout; returns (exit code, output).
fn run_with_input(mut command: Command, input: &[u8]) -> (Option<i32>, String) {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(err) => return (None, format!("cannot start {command:?}: {err}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > BOOT_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break None,
        }
    };
    let mut output = reader.join().unwrap_or_default();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut output);
    }
    match status {
        Some(status) => (status.code(), output),
        None => (
            None,
            format!("{output}\n(timed out after {} s)", BOOT_TIMEOUT.as_secs()),
        ),
    }
}

fn boot_with_kernel(config: &Config) -> (bool, String) {
    let mut command = cargo();
    command
        .args(["run", "-q", "--"])
        .args(COMMANDS)
        .env("QEMU_MACHINE", config.machine)
        .env("QEMU_CPU", config.cpu)
        .env("QEMU_MEM", config.memory)
        .env("QEMU_SMP", config.smp.to_string());
    run_with_timeout(command, b"")
}

/// Shrinks a dumped DTB to its used size (QEMU pads it to 1 MiB), patching `totalsize`.
fn compact_dtb(dtb: &[u8]) -> Option<Vec<u8>> {
    let word = |offset: usize| {
        Some(u32::from_be_bytes(dtb.get(offset..offset + 4)?.try_into().ok()?) as usize)
    };
    let (off_struct, off_strings) = (word(8)?, word(12)?);
    let (size_strings, size_struct) = (word(32)?, word(36)?);
    let used = (off_strings + size_strings)
        .max(off_struct + size_struct)
        .next_multiple_of(8);
    let mut out = dtb.get(..used)?.to_vec();
    out[4..8].copy_from_slice(&u32::try_from(used).ok()?.to_be_bytes());
    Some(out)
}

fn boot_with_loader(config: &Config, image: &Path, work: &Path) -> (bool, String) {
    let dumped = work.join("bootmatrix.dtb");
    let status = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            &format!("{},dumpdtb={}", config.machine, dumped.display()),
        ])
        .args([
            "-cpu",
            config.cpu,
            "-m",
            config.memory,
            "-smp",
            &config.smp.to_string(),
            "-display",
            "none",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let Some(dtb) = status
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::read(&dumped).ok())
    else {
        return (false, "could not dump the DTB".to_string());
    };
    let Some(small) = compact_dtb(&dtb) else {
        return (false, "dumped DTB is malformed".to_string());
    };
    let dtb_path = work.join("bootmatrix-compact.dtb");
    if let Err(err) = std::fs::write(&dtb_path, small) {
        return (false, format!("cannot write {}: {err}", dtb_path.display()));
    }
    let mut command = Command::new("qemu-system-aarch64");
    command
        .args([
            "-M",
            config.machine,
            "-cpu",
            config.cpu,
            "-m",
            config.memory,
            "-smp",
            &config.smp.to_string(),
        ])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-semihosting",
        ])
        .args(["-dtb", &dtb_path.display().to_string()])
        .args([
            "-device",
            &format!(
                "loader,file={},addr=0x40080000,force-raw=on",
                image.display()
            ),
        ])
        .args(["-device", "loader,addr=0x40080000,cpu-num=0"]);
    run_with_timeout(command, b"mem\rdtb\rpoweroff\r")
}

/// Builds the kernel and its Image (through the runner's own conversion).
fn build_image() -> Result<(PathBuf, PathBuf), String> {
    let status = cargo()
        .args(["build", "-q"])
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !status.success() {
        return Err("cargo build failed".to_string());
    }
    let elf = PathBuf::from("target/aarch64-unknown-none/debug/kernel");
    let data = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
    let kernel = runner::image::KernelElf::parse(&elf, &data).map_err(|e| e.to_string())?;
    let image = runner::image::write_image(&elf, &kernel).map_err(|e| e.to_string())?;
    Ok((elf, image))
}

/// Prints a case's verdict (and, when it failed, why and the output); counts it.
fn record(counts: &mut Counts, name: &str, problems: &[String], output: &str) {
    if problems.is_empty() {
        counts.passed += 1;
        println!("boot {name} ... ok");
        return;
    }
    counts.failed += 1;
    println!("boot {name} ... FAILED");
    for problem in problems {
        println!("  {problem}");
    }
    let quoted: Vec<String> = output.lines().map(|l| format!("    | {l}")).collect();
    println!("  output:\n{}", quoted.join("\n"));
}

/// A boot that must fail cleanly: a clear message, exit status 1, no hang or fault loop.
struct BadBoot {
    name: &'static str,
    expected: &'static str,
}

const BAD_BOOTS: &[BadBoot] = &[
    BadBoot {
        name: "ELF instead of Image: no devicetree",
        expected: "boot failed: no devicetree",
    },
    BadBoot {
        name: "devicetree without an interrupt controller",
        expected: "boot failed: devicetree at 0x",
    },
];

/// The QEMU command for a bad boot: the ELF given directly (QEMU then passes no DTB), or the
/// Image with a devicetree whose GIC is unrecognisable.
fn bad_boot_command(
    case: &BadBoot,
    elf: &Path,
    image: &Path,
    work: &Path,
) -> Result<Command, String> {
    let mut command = Command::new("qemu-system-aarch64");
    command.args([
        "-M",
        "virt",
        "-cpu",
        "cortex-a72",
        "-m",
        "128M",
        "-display",
        "none",
    ]);
    command.args(["-serial", "stdio", "-monitor", "none", "-semihosting"]);
    if case.name.starts_with("ELF") {
        command.arg("-kernel").arg(elf);
        return Ok(command);
    }
    let dumped = work.join("bootmatrix-bad.dtb");
    let status = Command::new("qemu-system-aarch64")
        .args([
            "-M",
            &format!("virt,dumpdtb={}", dumped.display()),
            "-display",
            "none",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("qemu: {e}"))?;
    let mut dtb =
        std::fs::read(&dumped).map_err(|e| format!("{}: {e} ({status})", dumped.display()))?;
    let gic = b"arm,cortex-a15-gic";
    let at = dtb
        .windows(gic.len())
        .position(|w| w == gic)
        .ok_or("no GIC compatible in the DTB")?;
    dtb[at..at + gic.len()].copy_from_slice(b"arm,cortex-a15-xxx");
    std::fs::write(&dumped, dtb).map_err(|e| format!("{}: {e}", dumped.display()))?;
    command.arg("-kernel").arg(image).arg("-dtb").arg(&dumped);
    Ok(command)
}

/// Boots every configuration whose name contains `filter` (all when empty), then the bad boots.
pub fn run(filter: &str) -> Step {
    eprintln!("\n==> boot matrix");
    let start = Instant::now();
    let mut counts = Counts::default();
    let (elf, image) = match build_image() {
        Ok(paths) => paths,
        Err(err) => {
            eprintln!("boot matrix: {err}");
            return Step {
                name: "boot matrix".to_string(),
                ok: false,
                counts,
                seconds: 0.0,
            };
        }
    };
    let work = image.parent().map(Path::to_path_buf).unwrap_or_default();
    for config in CONFIGS
        .iter()
        .filter(|config| config.name().contains(filter))
    {
        let (exited_ok, output) = if config.loader {
            boot_with_loader(config, &image, &work)
        } else {
            boot_with_kernel(config)
        };
        let mut problems: Vec<String> = config
            .expected_lines()
            .into_iter()
            .filter(|line| !output.contains(line.as_str()))
            .map(|line| format!("missing from the output: {line}"))
            .collect();
        if !exited_ok {
            problems.push("QEMU did not exit with status 0".to_string());
        }
        record(&mut counts, &config.name(), &problems, &output);
    }
    for case in BAD_BOOTS.iter().filter(|case| case.name.contains(filter)) {
        let (status, output) = match bad_boot_command(case, &elf, &image, &work) {
            Ok(command) => run_with_status(command),
            Err(err) => (None, err),
        };
        let mut problems = Vec::new();
        if status != Some(1) {
            problems.push(format!("expected exit status 1, got {status:?}"));
        }
        if !output.contains(case.expected) {
            problems.push(format!("missing from the output: {}", case.expected));
        }
        record(&mut counts, case.name, &problems, &output);
    }
    Step {
        name: "boot matrix".to_string(),
        ok: counts.failed == 0,
        counts,
        seconds: start.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    use super::{compact_dtb, memory_bytes};

    #[test]
    fn memory_sizes_parse() {
        assert_eq!(memory_bytes("64M"), 64 << 20);
        assert_eq!(memory_bytes("4G"), 4 << 30);
    }

    #[test]
    fn compacting_keeps_the_blocks_and_patches_totalsize() {
        let mut dtb = vec![0u8; 4096];
        let header: [u32; 10] = [0xd00d_feed, 4096, 0x40, 0x100, 0x30, 17, 16, 0, 0x20, 0xc0];
        for (i, word) in header.iter().enumerate() {
            dtb[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
        }
        let small = compact_dtb(&dtb).expect("well-formed header");
        assert_eq!(small.len(), 0x120);
        assert_eq!(u32::from_be_bytes(small[4..8].try_into().unwrap()), 0x120);
        assert!(compact_dtb(&dtb[..16]).is_none());
    }
}
