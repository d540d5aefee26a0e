//! The QEMU command line, built from typed settings rather than pasted strings, and the kernel
//! command line passed through `-append`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::disk::Disk;
use crate::error::Error;

/// The emulator binary, looked up on `PATH`.
pub const QEMU_PROGRAM: &str = "qemu-system-aarch64";

/// How the guest's first UART (PL011) is wired to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// `-serial mon:stdio`: interactive use on a terminal; QEMU puts the terminal in raw mode,
    /// Ctrl-A X quits, Ctrl-A C toggles the monitor.
    MonitorMux,
    /// `-serial stdio -monitor none`: plain byte stream for pipes, files and tests.
    Plain,
}

/// Every setting of one QEMU run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuCommand {
    /// `-M` value.
    pub machine: String,
    /// `-cpu` value.
    pub cpu: String,
    /// `-m` value.
    pub memory: String,
    /// `-smp` value.
    pub smp: u32,
    /// Adds `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// The raw Image given to `-kernel`.
    pub kernel: PathBuf,
    /// The kernel command line given to `-append` (see [`kernel_command_line`]).
    pub append: String,
    /// Console wiring.
    pub serial: Serial,
    /// virtio-blk disks in attachment order.
    pub disks: Vec<Disk>,
    /// Adds `-s -S`: gdb server on TCP port 1234, CPUs stopped until gdb continues.
    pub gdb: bool,
    /// Arguments from the image's `.qemu_config` `arg` directives.
    pub image_args: Vec<String>,
    /// Arguments from `QEMU_EXTRA_ARGS`, last so they can override anything before.
    pub extra_args: Vec<String>,
}

impl QemuCommand {
    /// The arguments after the program name.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["-M", &self.machine, "-cpu", &self.cpu, "-m", &self.memory]);
        push(&["-smp", &self.smp.to_string()]);
        if self.icount {
            push(&["-icount", "shift=0,sleep=off"]);
        }
        push(&["-semihosting"]);
        args.push("-kernel".into());
        args.push(self.kernel.clone().into_os_string());
        args.push("-append".into());
        args.push(self.append.clone().into());
        args.extend(["-display", "none"].map(OsString::from));
        match self.serial {
            Serial::MonitorMux => args.extend(["-serial", "mon:stdio"].map(OsString::from)),
            Serial::Plain => {
                args.extend(["-serial", "stdio", "-monitor", "none"].map(OsString::from))
            }
        }
        for disk in &self.disks {
            args.push("-drive".into());
            args.push(drive_option(disk));
            args.push("-device".into());
            args.push(format!("virtio-blk-device,drive={},serial={}", disk.id, disk.serial).into());
        }
        if self.gdb {
            args.extend(["-s", "-S"].map(OsString::from));
        }
        args.extend(self.image_args.iter().map(OsString::from));
        args.extend(self.extra_args.iter().map(OsString::from));
        args
    }

    /// The whole command as one shell line that can be pasted into a terminal.
    pub fn shell_line(&self) -> String {
        let args = self.args();
        let words = std::iter::once(QEMU_PROGRAM.to_string())
            .chain(args.iter().map(|arg| arg.to_string_lossy().into_owned()));
        shell_words::join(words)
    }
}

/// The `-drive` value for `disk`. Writeback caching (QEMU's default, spelled out): writes land in
/// the host page cache and guest flushes reach the file, so flush handling stays observable.
/// `cache=unsafe` would ignore flushes, which a disk-driver test must not have hidden from it.
fn drive_option(disk: &Disk) -> OsString {
    let mut file = OsString::new();
    if let Some(config) = &disk.blkdebug_config {
        file.push("blkdebug:");
        file.push(config);
        file.push(":");
    }
    file.push(&disk.path);
    let mut option = OsString::from("if=none,format=raw,file=");
    option.push(escape_commas(&file));
    option.push(format!(",id={},cache=writeback", disk.id));
    option
}

/// QEMU option values escape a literal comma by doubling it.
fn escape_commas(value: &OsStr) -> OsString {
    let mut escaped = Vec::with_capacity(value.len());
    for &byte in value.as_bytes() {
        escaped.push(byte);
        if byte == b',' {
            escaped.push(b',');
        }
    }
    OsString::from_vec(escaped)
}

/// The kernel command line: `<params> -- <args>`.
///
/// `params` is `KERNEL_ARGS` (trimmed, used as written). `runner_args` are the runner's
/// arguments after the ELF: if they contain a standalone `--`, the words before it are appended
/// to the params and the words after it are the args; otherwise all of them are args. Words are
/// joined by single spaces; a word that is empty or contains whitespace is wrapped in double
/// quotes (the kernel's tokenizer treats `"..."` as one word), and a word containing `"` is
/// refused since the command line has no escape for it. The `--` is always present, so the
/// kernel can tell parameters from arguments.
pub fn kernel_command_line(params: &str, runner_args: &[String]) -> Result<String, Error> {
    let (extra_params, args) = match runner_args.iter().position(|arg| arg == "--") {
        Some(split) => (&runner_args[..split], &runner_args[split + 1..]),
        None => (&runner_args[..0], runner_args),
    };
    let mut words = Vec::new();
    let params = params.trim();
    if !params.is_empty() {
        words.push(params.to_string());
    }
    for word in extra_params {
        words.push(quote_word(word)?);
    }
    words.push("--".to_string());
    for word in args {
        words.push(quote_word(word)?);
    }
    Ok(words.join(" "))
}

fn quote_word(word: &str) -> Result<String, Error> {
    if word.contains('"') {
        return Err(Error::KernelArgument(format!(
            "`{word}` contains `\"`, which the kernel command line cannot carry"
        )));
    }
    if word.is_empty() || word.chars().any(char::is_whitespace) {
        Ok(format!("\"{word}\""))
    } else {
        Ok(word.to_string())
    }
}

/// Finds an executable file called `name` in the directories of `path_var` (a `PATH` value).
pub fn find_program(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    fn base() -> QemuCommand {
        QemuCommand {
            machine: "virt".into(),
            cpu: "cortex-a72".into(),
            memory: "128M".into(),
            smp: 1,
            icount: false,
            kernel: "/t/kernel.bin".into(),
            append: "--".into(),
            serial: Serial::Plain,
            disks: vec![],
            gdb: false,
            image_args: vec![],
            extra_args: vec![],
        }
    }

    fn lossy(command: &QemuCommand) -> Vec<String> {
        command
            .args()
            .iter()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn minimal_command() {
        assert_eq!(
            lossy(&base()),
            [
                "-M",
                "virt",
                "-cpu",
                "cortex-a72",
                "-m",
                "128M",
                "-smp",
                "1",
                "-semihosting",
                "-kernel",
                "/t/kernel.bin",
                "-append",
                "--",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-monitor",
                "none",
            ]
        );
    }

    #[test]
    fn every_knob() {
        let command = QemuCommand {
            machine: "virt,gic-version=3".into(),
            cpu: "max".into(),
            memory: "64M".into(),
            smp: 4,
            icount: true,
            append: "reclaim=clock -- stress".into(),
            serial: Serial::MonitorMux,
            disks: vec![
                Disk {
                    id: "blk0".into(),
                    path: "/t/qemu/disk0.img".into(),
                    blkdebug_config: None,
                    serial: "disk0".into(),
                },
                Disk {
                    id: "blk1".into(),
                    path: "/t/qemu/io-bad.img".into(),
                    blkdebug_config: Some("/t/qemu/io-bad.blkdebug".into()),
                    serial: "bad".into(),
                },
            ],
            gdb: true,
            image_args: strings(&["-global", "virtio-mmio.force-legacy=false"]),
            extra_args: strings(&["-d", "int"]),
            ..base()
        };
        assert_eq!(
            lossy(&command),
            [
                "-M",
                "virt,gic-version=3",
                "-cpu",
                "max",
                "-m",
                "64M",
                "-smp",
                "4",
                "-icount",
                "shift=0,sleep=off",
                "-semihosting",
                "-kernel",
                "/t/kernel.bin",
                "-append",
                "reclaim=clock -- stress",
                "-display",
                "none",
                "-serial",
                "mon:stdio",
                "-drive",
                "if=none,format=raw,file=/t/qemu/disk0.img,id=blk0,cache=writeback",
                "-device",
                "virtio-blk-device,drive=blk0,serial=disk0",
                "-drive",
                "if=none,format=raw,file=blkdebug:/t/qemu/io-bad.blkdebug:/t/qemu/io-bad.img,\
                 id=blk1,cache=writeback",
                "-device",
                "virtio-blk-device,drive=blk1,serial=bad",
                "-s",
                "-S",
                "-global",
                "virtio-mmio.force-legacy=false",
                "-d",
                "int",
            ]
        );
    }

    #[test]
    fn commas_in_disk_paths_are_doubled() {
        let command = QemuCommand {
            disks: vec![Disk {
                id: "blk0".into(),
                path: "/t/a,b.img".into(),
                blkdebug_config: None,
                serial: "disk0".into(),
            }],
            ..base()
        };
        assert!(
            lossy(&command)
                .contains(&"if=none,format=raw,file=/t/a,,b.img,id=blk0,cache=writeback".into())
        );
    }

    #[test]
    fn shell_line_is_quoted_for_pasting() {
        let command = QemuCommand {
            append: "-- echo \"hello world\"".into(),
            kernel: "/my dir/kernel.bin".into(),
            ..base()
        };
        let line = command.shell_line();
        assert!(line.starts_with("qemu-system-aarch64 -M virt "), "{line}");
        assert!(line.contains(" -kernel '/my dir/kernel.bin' "), "{line}");
        assert!(
            line.contains(" -append '-- echo \"hello world\"' "),
            "{line}"
        );
        let words = shell_words::split(&line).unwrap();
        assert_eq!(words[0], QEMU_PROGRAM);
        assert_eq!(words[1..], lossy(&command)[..]);
    }

    #[test]
    fn command_line_without_arguments() {
        assert_eq!(kernel_command_line("", &[]).unwrap(), "--");
        assert_eq!(kernel_command_line("  ", &[]).unwrap(), "--");
        assert_eq!(
            kernel_command_line(" loglevel=debug  reclaim=clock ", &[]).unwrap(),
            "loglevel=debug  reclaim=clock --"
        );
    }

    #[test]
    fn command_line_arguments_follow_the_separator() {
        assert_eq!(
            kernel_command_line("", &strings(&["mem", ";", "poweroff"])).unwrap(),
            "-- mem ; poweroff"
        );
        assert_eq!(
            kernel_command_line("quiet", &strings(&["paging"])).unwrap(),
            "quiet -- paging"
        );
    }

    #[test]
    fn standalone_separator_splits_params_from_args() {
        assert_eq!(
            kernel_command_line(
                "quiet",
                &strings(&["reclaim=clock", "--", "stress", "zipf", "64"])
            )
            .unwrap(),
            "quiet reclaim=clock -- stress zipf 64"
        );
        // Only the first `--` splits; later ones are ordinary arguments.
        assert_eq!(
            kernel_command_line("", &strings(&["a=1", "--", "x", "--", "y"])).unwrap(),
            "a=1 -- x -- y"
        );
        assert_eq!(kernel_command_line("", &strings(&["--"])).unwrap(), "--");
    }

    #[test]
    fn words_with_spaces_are_quoted_and_quotes_refused() {
        assert_eq!(
            kernel_command_line("", &strings(&["echo", "hello world", ""])).unwrap(),
            "-- echo \"hello world\" \"\""
        );
        assert_eq!(
            kernel_command_line("", &strings(&["name=a b", "--"])).unwrap(),
            "\"name=a b\" --"
        );
        assert_eq!(
            kernel_command_line("", &strings(&["say", "\"hi\""]))
                .unwrap_err()
                .to_string(),
            "kernel argument `\"hi\"` contains `\"`, which the kernel command line cannot carry"
        );
    }

    #[test]
    fn program_lookup_on_path() {
        let dir = crate::test_elf::scratch_dir("find_program");
        let empty = dir.join("empty");
        let bin = dir.join("bin");
        std::fs::create_dir_all(&empty).unwrap();
        std::fs::create_dir_all(&bin).unwrap();
        let program = bin.join(QEMU_PROGRAM);
        std::fs::write(&program, b"#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([&empty, &bin]).unwrap();

        // Present but not executable: not found.
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_program(QEMU_PROGRAM, Some(&path)), None);

        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_program(QEMU_PROGRAM, Some(&path)), Some(program));
        assert_eq!(find_program(QEMU_PROGRAM, Some(empty.as_os_str())), None);
        assert_eq!(find_program(QEMU_PROGRAM, None), None);
    }
}
