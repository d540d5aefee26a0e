//! The cargo runner for kernel images: every `cargo run` / `cargo test` of an
//! `aarch64-unknown-none` binary runs `runner <ELF> [args...]` (see `.cargo/config.toml`).
//!
//! It converts the ELF to a raw arm64 Image ([`image`]), reads the image's own QEMU settings
//! from its `.qemu_config` section ([`config`]), prepares disk images ([`disk`]), builds the
//! QEMU command line ([`qemu`]), runs QEMU with the console wired up ([`console`],
//! [`session`]), symbolizes backtraces in the output ([`symbolize`]) and exits with the guest's
//! status. The `--help` text, reproduced below, lists every knob.
//!
//! ```text
#![doc = include_str!("help.txt")]
//! ```

pub mod config;
pub mod console;
pub mod disk;
pub mod error;
pub mod image;
pub mod qemu;
pub mod session;
pub mod settings;
pub mod symbolize;
#[cfg(test)]
mod test_elf;

use std::ffi::OsString;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use config::ImageConfig;
use disk::Disk;
pub use error::Error;
use qemu::{QEMU_PROGRAM, QemuCommand, Serial};
use session::{GuestInput, Session};
use settings::EnvSettings;

/// The text `runner --help` prints.
pub const HELP: &str = include_str!("help.txt");

/// Exit status for a guest failure the runner detects itself (QEMU killed by a signal, or a
/// test image that exited 0 without a passing summary).
pub const EXIT_FAILURE: i32 = 1;
/// Exit status for problems of the runner itself (bad ELF or config, QEMU missing, I/O error).
pub const EXIT_RUNNER_ERROR: i32 = 2;
/// Exit status when the timeout expired (as coreutils `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;

/// Default `-M` when neither the image nor the environment sets one.
pub const DEFAULT_MACHINE: &str = "virt";
/// Default `-cpu`.
pub const DEFAULT_CPU: &str = "cortex-a72";
/// Default `-m`.
pub const DEFAULT_MEMORY: &str = "128M";
/// Default `-smp`.
pub const DEFAULT_SMP: u32 = 1;
/// Default test-mode wall-clock limit in seconds.
pub const DEFAULT_TEST_TIMEOUT_SECS: u64 = 300;

/// Whether the ELF is a `cargo test` binary or something to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A `cargo run` image: interactive or scripted console, no timeout by default.
    Run,
    /// A `cargo test` image (its path has a `deps` directory): no input, timeout, needs the
    /// libtest summary line.
    Test,
}

impl Mode {
    /// Test mode when a directory of `elf`'s path is called `deps`, where cargo puts test
    /// binaries (`target/<triple>/<profile>/deps/`).
    pub fn of_elf(elf: &Path) -> Mode {
        let in_deps = elf
            .parent()
            .is_some_and(|dir| dir.components().any(|part| part.as_os_str() == "deps"));
        if in_deps { Mode::Test } else { Mode::Run }
    }
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set, else the nearest ancestor of `elf`
/// named `target`.
pub fn find_target_dir(elf: &Path, cargo_target_dir: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = cargo_target_dir {
        return Ok(dir.to_path_buf());
    }
    let mut path = PathBuf::new();
    let mut found = None;
    for component in elf.parent().unwrap_or(Path::new("")).components() {
        path.push(component);
        if matches!(component, Component::Normal(name) if name == "target") {
            found = Some(path.clone());
        }
    }
    found.ok_or_else(|| Error::TargetDirNotFound {
        elf: elf.to_path_buf(),
    })
}

/// The QEMU command for one run: machine settings from the image config, then the
/// environment, then the defaults; `-serial mon:stdio` only for run mode on a terminal.
pub fn qemu_command(
    config: &ImageConfig,
    env: &EnvSettings,
    mode: Mode,
    stdin_is_terminal: bool,
    kernel: PathBuf,
    runner_args: &[String],
    disks: Vec<Disk>,
) -> Result<QemuCommand, Error> {
    let pick = |image: &Option<String>, environment: &Option<String>, default: &str| {
        image
            .clone()
            .or_else(|| environment.clone())
            .unwrap_or_else(|| default.to_string())
    };
    Ok(QemuCommand {
        machine: pick(&config.machine, &env.machine, DEFAULT_MACHINE),
        cpu: pick(&config.cpu, &env.cpu, DEFAULT_CPU),
        memory: pick(&config.memory, &env.memory, DEFAULT_MEMORY),
        smp: config.smp.or(env.smp).unwrap_or(DEFAULT_SMP),
        icount: config.icount || env.icount,
        kernel,
        append: qemu::kernel_command_line(&env.kernel_args, runner_args)?,
        serial: if mode == Mode::Run && stdin_is_terminal {
            Serial::MonitorMux
        } else {
            Serial::Plain
        },
        disks,
        gdb: env.gdb,
        image_args: config.qemu_args.clone(),
        extra_args: env.extra_args.clone(),
    })
}

/// The wall-clock limit. None under `QEMU_GDB`. Otherwise `QEMU_TIMEOUT` if set (0 = none):
/// the limit is about the host's speed, so the person running may always override the image;
/// then, in test mode only, the image's `timeout` and finally 300 s.
pub fn timeout(config: &ImageConfig, env: &EnvSettings, mode: Mode) -> Option<Duration> {
    if env.gdb {
        return None;
    }
    let secs = match (env.timeout_secs, mode) {
        (Some(secs), _) => secs,
        (None, Mode::Test) => config.timeout_secs.unwrap_or(DEFAULT_TEST_TIMEOUT_SECS),
        (None, Mode::Run) => 0,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Runs the runner with its arguments (without the program name) and returns its exit status.
/// Errors are the runner's own; the caller prints them and exits with [`EXIT_RUNNER_ERROR`].
pub fn run(args: Vec<OsString>) -> Result<i32, Error> {
    if is_help_request(&args) {
        print!("{HELP}");
        return Ok(0);
    }
    let env = EnvSettings::from_lookup(|var| std::env::var_os(var))?;
    let console = Console {
        stdin_is_terminal: io::stdin().is_terminal(),
        input: Box::new(io::stdin()),
        output: &mut io::stdout(),
    };
    run_with(args, &env, console)
}

fn is_help_request(args: &[OsString]) -> bool {
    args.first()
        .is_some_and(|first| first == "--help" || first == "-h")
}

/// The user's side of the console for [`run_with`].
pub struct Console<'a> {
    /// Whether the runner's stdin is a terminal: run mode then hands it to QEMU directly.
    pub stdin_is_terminal: bool,
    /// The runner's stdin, relayed to QEMU in run mode when it is not a terminal.
    pub input: Box<dyn Read + Send>,
    /// Where the guest's output goes.
    pub output: &'a mut (dyn Write + Send),
}

/// [`run`] with the environment and console given: the whole runner except reading the
/// process environment.
pub fn run_with(
    args: Vec<OsString>,
    env: &EnvSettings,
    console: Console<'_>,
) -> Result<i32, Error> {
    if is_help_request(&args) {
        // Nothing useful can be done if the help text cannot be written.
        let _ = console.output.write_all(HELP.as_bytes());
        return Ok(0);
    }
    let mut args = args.into_iter();
    let elf_path = PathBuf::from(args.next().ok_or_else(|| {
        Error::Usage("usage: runner <kernel ELF> [kernel args...]; see runner --help".to_string())
    })?);
    let runner_args = args
        .map(|arg| {
            arg.into_string().map_err(|arg| {
                Error::KernelArgument(format!("{} is not valid UTF-8", arg.to_string_lossy()))
            })
        })
        .collect::<Result<Vec<String>, Error>>()?;
    let program =
        qemu::find_program(QEMU_PROGRAM, env.path.as_deref()).ok_or(Error::QemuNotFound)?;

    let elf_data =
        std::fs::read(&elf_path).map_err(error::io_error("read kernel ELF", &elf_path))?;
    let elf = image::KernelElf::parse(&elf_path, &elf_data)?;
    let image_path = image::write_image(&elf_path, &elf)?;
    let config = match elf.qemu_config()? {
        Some(section) => config::parse(section)?,
        None => ImageConfig::default(),
    };

    let mode = env.mode.unwrap_or_else(|| Mode::of_elf(&elf_path));
    let image_name = elf_path
        .file_name()
        .unwrap_or(elf_path.as_os_str())
        .to_string_lossy()
        .into_owned();
    let target_dir = find_target_dir(&elf_path, env.target_dir.as_deref())?;
    let qemu_dir = target_dir.join("qemu");
    let default_disk = env
        .disk
        .clone()
        .unwrap_or_else(|| qemu_dir.join("disk0.img"));
    // Test images get only the disks they declare: the shared default disk would make test
    // images that run at the same time fight over QEMU's image lock.
    let selection = match (&config.disks, mode) {
        (config::DiskSelection::Default, Mode::Test) => &config::DiskSelection::NoDisk,
        (selection, _) => selection,
    };
    let disks = disk::prepare(selection, &qemu_dir, &image_name, &default_disk)?;

    let command = qemu_command(
        &config,
        env,
        mode,
        console.stdin_is_terminal,
        image_path,
        &runner_args,
        disks,
    )?;
    let timeout = timeout(&config, env, mode);

    if env.verbose {
        eprintln!("runner: {}", command.shell_line());
    }
    if env.gdb {
        eprintln!(
            "runner: QEMU waits for gdb on :1234 (no timeout); attach with:\n\
             runner:   gdb-multiarch {} -ex 'target remote :1234'",
            shell_words::quote(&elf_path.to_string_lossy())
        );
    }

    let input = match (mode, command.serial) {
        (Mode::Test, _) => GuestInput::Null,
        (Mode::Run, Serial::MonitorMux) => GuestInput::Inherit,
        (Mode::Run, Serial::Plain) => GuestInput::Relay(console.input),
    };
    let line_end = match command.serial {
        Serial::MonitorMux => "\r\n",
        Serial::Plain => "\n",
    };
    let (outcome, summary) = session::execute(
        Session {
            program: &program,
            command: &command,
            input,
            timeout,
            elf_data: &elf_data,
            line_end,
        },
        console.output,
    )?;
    let _ = console.output.flush();

    let (status, message) = session::verdict(mode, outcome, summary, timeout, &image_name);
    if let Some(message) = message {
        let fresh_line = if summary.ended_mid_line { "\n" } else { "" };
        eprintln!("{fresh_line}runner: {message}");
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn env(vars: &[(&str, &str)]) -> EnvSettings {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(key, value)| (key.to_string(), OsString::from(value)))
            .collect();
        EnvSettings::from_lookup(|var| {
            vars.iter()
                .find(|(key, _)| key == var)
                .map(|(_, value)| value.clone())
        })
        .unwrap()
    }

    fn build(config: &ImageConfig, env: &EnvSettings, mode: Mode, terminal: bool) -> QemuCommand {
        qemu_command(config, env, mode, terminal, "k.bin".into(), &[], vec![]).unwrap()
    }

    #[test]
    fn mode_from_path() {
        assert_eq!(
            Mode::of_elf(Path::new(
                "/w/target/aarch64-unknown-none/debug/deps/mm-1a2b3c"
            )),
            Mode::Test
        );
        assert_eq!(
            Mode::of_elf(Path::new("/w/target/aarch64-unknown-none/debug/kernel")),
            Mode::Run
        );
        assert_eq!(
            Mode::of_elf(Path::new("deps")),
            Mode::Run,
            "only directories count"
        );
        assert_eq!(Mode::of_elf(Path::new("/w/deps-old/kernel")), Mode::Run);
    }

    #[test]
    fn target_dir_lookup() {
        let elf = Path::new("/w/target/aarch64-unknown-none/debug/deps/mm-1a2b");
        assert_eq!(find_target_dir(elf, None).unwrap(), Path::new("/w/target"));
        assert_eq!(
            find_target_dir(elf, Some(Path::new("/build"))).unwrap(),
            Path::new("/build")
        );
        assert_eq!(
            find_target_dir(
                Path::new("target/aarch64-unknown-none/release/kernel"),
                None
            )
            .unwrap(),
            Path::new("target")
        );
        // The nearest `target` wins when a project itself lives below a `target` directory.
        assert_eq!(
            find_target_dir(Path::new("/target/w/target/x/debug/kernel"), None).unwrap(),
            Path::new("/target/w/target")
        );
        assert_eq!(
            find_target_dir(Path::new("/tmp/kernel"), None)
                .unwrap_err()
                .to_string(),
            "cannot find cargo's target directory above /tmp/kernel (no `target` ancestor); \
             set CARGO_TARGET_DIR"
        );
    }

    #[test]
    fn defaults() {
        let command = build(&ImageConfig::default(), &env(&[]), Mode::Test, false);
        assert_eq!(
            (
                command.machine.as_str(),
                command.cpu.as_str(),
                command.memory.as_str()
            ),
            ("virt", "cortex-a72", "128M")
        );
        assert_eq!(command.smp, 1);
        assert!(!command.icount && !command.gdb);
        assert_eq!(command.append, "--");
        assert_eq!(command.serial, Serial::Plain);
    }

    #[test]
    fn environment_overrides_defaults() {
        let environment = env(&[
            ("QEMU_MACHINE", "virt,gic-version=3"),
            ("QEMU_CPU", "max"),
            ("QEMU_MEM", "1G"),
            ("QEMU_SMP", "2"),
            ("QEMU_ICOUNT", "1"),
            ("QEMU_GDB", "1"),
            ("QEMU_EXTRA_ARGS", "-d int"),
        ]);
        let command = build(&ImageConfig::default(), &environment, Mode::Run, false);
        assert_eq!(
            (
                command.machine.as_str(),
                command.cpu.as_str(),
                command.memory.as_str()
            ),
            ("virt,gic-version=3", "max", "1G")
        );
        assert_eq!(command.smp, 2);
        assert!(command.icount && command.gdb);
        assert_eq!(command.extra_args, ["-d", "int"]);
    }

    #[test]
    fn image_config_overrides_environment() {
        let config = ImageConfig {
            machine: Some("virt,virtualization=on".into()),
            cpu: Some("cortex-a76".into()),
            memory: Some("64M".into()),
            smp: Some(4),
            icount: true,
            qemu_args: vec!["-global".into(), "virtio-mmio.force-legacy=false".into()],
            ..ImageConfig::default()
        };
        let environment = env(&[
            ("QEMU_MACHINE", "virt"),
            ("QEMU_CPU", "max"),
            ("QEMU_MEM", "1G"),
            ("QEMU_SMP", "2"),
            ("QEMU_ICOUNT", "0"),
            ("QEMU_EXTRA_ARGS", "-d int"),
        ]);
        let command = build(&config, &environment, Mode::Test, false);
        assert_eq!(
            (
                command.machine.as_str(),
                command.cpu.as_str(),
                command.memory.as_str()
            ),
            ("virt,virtualization=on", "cortex-a76", "64M")
        );
        assert_eq!(command.smp, 4);
        assert!(command.icount, "either source enables icount");
        assert_eq!(
            command.image_args,
            ["-global", "virtio-mmio.force-legacy=false"]
        );
        assert_eq!(
            command.extra_args,
            ["-d", "int"],
            "both kinds of extra args are kept"
        );
        let args = command.args();
        let position = |arg: &str| args.iter().position(|a| a == arg).unwrap();
        assert!(
            position("-global") < position("-d"),
            "QEMU_EXTRA_ARGS come last"
        );
    }

    #[test]
    fn serial_wiring_per_mode() {
        let config = ImageConfig::default();
        let environment = env(&[]);
        assert_eq!(
            build(&config, &environment, Mode::Run, true).serial,
            Serial::MonitorMux
        );
        assert_eq!(
            build(&config, &environment, Mode::Run, false).serial,
            Serial::Plain
        );
        assert_eq!(
            build(&config, &environment, Mode::Test, true).serial,
            Serial::Plain
        );
    }

    #[test]
    fn kernel_arguments_reach_append() {
        let environment = env(&[("KERNEL_ARGS", "loglevel=debug")]);
        let args: Vec<String> = ["reclaim=clock", "--", "stress", "zipf", "64"]
            .map(String::from)
            .to_vec();
        let command = qemu_command(
            &ImageConfig::default(),
            &environment,
            Mode::Run,
            false,
            "k.bin".into(),
            &args,
            vec![],
        )
        .unwrap();
        assert_eq!(
            command.append,
            "loglevel=debug reclaim=clock -- stress zipf 64"
        );
        let bad = qemu_command(
            &ImageConfig::default(),
            &environment,
            Mode::Run,
            false,
            "k.bin".into(),
            &["\"".to_string()],
            vec![],
        );
        assert!(matches!(bad, Err(Error::KernelArgument(_))));
    }

    #[test]
    fn timeouts() {
        let none = ImageConfig::default();
        let image = ImageConfig {
            timeout_secs: Some(120),
            ..ImageConfig::default()
        };
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(timeout(&none, &env(&[]), Mode::Test), secs(300));
        assert_eq!(timeout(&image, &env(&[]), Mode::Test), secs(120));
        assert_eq!(
            timeout(&image, &env(&[("QEMU_TIMEOUT", "900")]), Mode::Test),
            secs(900)
        );
        assert_eq!(
            timeout(&image, &env(&[("QEMU_TIMEOUT", "0")]), Mode::Test),
            None
        );
        assert_eq!(
            timeout(&image, &env(&[]), Mode::Run),
            None,
            "image timeout is test-only"
        );
        assert_eq!(
            timeout(&none, &env(&[("QEMU_TIMEOUT", "60")]), Mode::Run),
            secs(60)
        );
        assert_eq!(
            timeout(
                &image,
                &env(&[("QEMU_TIMEOUT", "60"), ("QEMU_GDB", "1")]),
                Mode::Test
            ),
            None
        );
    }

    /// Runs `run_with` on a non-terminal console, returning the status (or error text) and
    /// the guest output.
    fn run_captured(args: &[&OsStr], env: &EnvSettings) -> (Result<i32, String>, String) {
        run_captured_with_input(args, env, b"")
    }

    fn run_captured_with_input(
        args: &[&OsStr],
        env: &EnvSettings,
        input: &'static [u8],
    ) -> (Result<i32, String>, String) {
        let mut output = Vec::new();
        let result = run_with(
            args.iter().map(|arg| arg.to_os_string()).collect(),
            env,
            Console {
                stdin_is_terminal: false,
                input: Box::new(input),
                output: &mut output,
            },
        )
        .map_err(|error| error.to_string());
        (result, String::from_utf8_lossy(&output).into_owned())
    }

    /// A scratch cargo-like tree with a fake `qemu-system-aarch64` (a shell script with
    /// `body`) on `PATH`; returns (the tree, its target dir, settings with that PATH).
    fn fake_setup(test: &str, body: &str) -> (test_elf::ScratchDir, PathBuf, EnvSettings) {
        use std::os::unix::fs::PermissionsExt;
        let root = test_elf::scratch_dir(test);
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let program = bin.join(QEMU_PROGRAM);
        std::fs::write(&program, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let target = root.join("target");
        std::fs::create_dir_all(target.join("aarch64-unknown-none/debug/deps")).unwrap();
        let settings = EnvSettings {
            path: Some(bin.into_os_string()),
            ..EnvSettings::default()
        };
        (root, target, settings)
    }

    /// A minimal kernel ELF: a 64-byte Image header segment plus `.qemu_config` text.
    fn write_kernel_elf(path: &Path, config: &[u8]) {
        let mut header = vec![0u8; 64];
        header[0x38..0x3c].copy_from_slice(b"ARM\x64");
        let elf = test_elf::TestElf::new()
            .segment(test_elf::Segment::load(0x4008_0000, &header))
            .section(".qemu_config", config)
            .build();
        std::fs::write(path, elf).unwrap();
    }

    #[test]
    fn usage_errors() {
        let env = EnvSettings::default();
        assert_eq!(
            run_captured(&[], &env).0,
            Err("usage: runner <kernel ELF> [kernel args...]; see runner --help".into())
        );
        let (status, help) = run_captured(&[OsStr::new("--help")], &env);
        assert_eq!((status, help.as_str()), (Ok(0), HELP));
        use std::os::unix::ffi::OsStrExt;
        let bad = OsStr::from_bytes(b"a\xff");
        assert_eq!(
            run_captured(&[OsStr::new("kernel"), bad], &env).0,
            Err("kernel argument a\u{FFFD} is not valid UTF-8".into())
        );
    }

    #[test]
    fn missing_qemu() {
        let (_scratch, target, _) = fake_setup("missing_qemu", "exit 0");
        let env = EnvSettings {
            path: Some(target.clone().into_os_string()),
            ..EnvSettings::default()
        };
        assert_eq!(
            run_captured(&[target.join("kernel").as_os_str()], &env).0,
            Err("qemu-system-aarch64 not found; run tools/setup.sh".into())
        );
    }

    #[test]
    fn missing_elf() {
        let (_scratch, target, env) = fake_setup("missing_elf", "exit 0");
        let elf = target.join("aarch64-unknown-none/debug/kernel");
        let (result, _) = run_captured(&[elf.as_os_str()], &env);
        let error = result.unwrap_err();
        assert!(
            error.starts_with(&format!("cannot read kernel ELF {}: ", elf.display())),
            "{error}"
        );
    }

    #[test]
    fn test_image_end_to_end_with_fake_qemu() {
        let (_scratch, target, env) = fake_setup(
            "end_to_end",
            "printf '%s\\n' \"$@\"\necho 'test result: ok. 1 passed'\nexit 0",
        );
        let elf = target.join("aarch64-unknown-none/debug/deps/blk-1a2b");
        write_kernel_elf(&elf, b"smp 2\ndisk data size=1K fill=lba\n\0\0");
        let (status, output) = run_captured(
            &[elf.as_os_str(), OsStr::new("read"), OsStr::new("--exact")],
            &env,
        );
        assert_eq!(status, Ok(0));
        let args: Vec<&str> = output.lines().collect();
        let image = target.join("aarch64-unknown-none/debug/deps/blk-1a2b.bin");
        let disk = target.join("qemu/blk-1a2b-data.img");
        let expected_drive = format!(
            "if=none,format=raw,file={},id=blk0,cache=writeback",
            disk.display()
        );
        let expected = [
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-m",
            "128M",
            "-smp",
            "2",
            "-semihosting",
            "-kernel",
            &image.to_string_lossy(),
            "-append",
            "-- read --exact",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-drive",
            &expected_drive,
            "-device",
            "virtio-blk-device,drive=blk0,serial=data",
            "test result: ok. 1 passed",
        ];
        assert_eq!(args, expected);
        assert_eq!(std::fs::read(&image).unwrap()[0x38..0x3c], *b"ARM\x64");
        let disk_bytes = std::fs::read(&disk).unwrap();
        assert_eq!(disk_bytes.len(), 1024);
        assert_eq!(disk_bytes[512..520], 1u64.to_le_bytes());
        assert!(
            !target.join("qemu/disk0.img").exists(),
            "declared disks replace the default"
        );
    }

    #[test]
    fn test_image_exiting_0_without_summary_fails() {
        let (_scratch, target, env) = fake_setup("no_summary", "echo 'test a ... ok'\nexit 0");
        let elf = target.join("aarch64-unknown-none/debug/deps/mm-1a2b");
        write_kernel_elf(&elf, b"nodisk");
        assert_eq!(run_captured(&[elf.as_os_str()], &env).0, Ok(EXIT_FAILURE));
        assert!(!target.join("qemu/disk0.img").exists(), "nodisk");
    }

    #[test]
    fn run_image_relays_input_passes_the_status_and_gets_the_default_disks() {
        let (_scratch, target, env) = fake_setup("run_status", "cat\nexit 3");
        let elf = target.join("aarch64-unknown-none/debug/kernel");
        write_kernel_elf(&elf, b"");
        assert_eq!(
            run_captured_with_input(&[elf.as_os_str()], &env, b"mem\n"),
            (Ok(3), "mem\n\x04".to_string())
        );
        let disk = target.join("qemu/disk0.img");
        assert_eq!(std::fs::metadata(disk).unwrap().len(), 64 << 20);
        let swap = target.join("qemu/disk0.swap.img");
        assert_eq!(std::fs::metadata(swap).unwrap().len(), 256 << 20);
    }

    #[test]
    fn test_image_timeout_from_its_config() {
        let (_scratch, target, env) = fake_setup("config_timeout", "exec sleep 30");
        let elf = target.join("aarch64-unknown-none/debug/deps/hang-1a2b");
        write_kernel_elf(&elf, b"timeout 1\nnodisk\n");
        assert_eq!(run_captured(&[elf.as_os_str()], &env).0, Ok(EXIT_TIMEOUT));
    }

    #[test]
    fn bad_config_and_missing_target_dir() {
        let (_scratch, target, env) = fake_setup("bad_config", "exit 0");
        let elf = target.join("aarch64-unknown-none/debug/kernel");
        write_kernel_elf(&elf, b"smp 2\nsmp four\n");
        assert_eq!(
            run_captured(&[elf.as_os_str()], &env).0,
            Err(".qemu_config line 2: `smp` wants a positive integer, not `four`".into())
        );

        let scratch = test_elf::scratch_dir("no_target");
        let outside = scratch.join("kernel");
        write_kernel_elf(&outside, b"");
        let error = run_captured(&[outside.as_os_str()], &env).0.unwrap_err();
        assert!(
            error.starts_with("cannot find cargo's target directory"),
            "{error}"
        );
    }

    #[test]
    fn help_names_every_knob() {
        for knob in [
            "KERNEL_ARGS",
            "QEMU_MACHINE",
            "QEMU_CPU",
            "QEMU_MEM",
            "QEMU_SMP",
            "QEMU_ICOUNT",
            "QEMU_DISK",
            "QEMU_EXTRA_ARGS",
            "QEMU_TIMEOUT",
            "QEMU_VERBOSE",
            "QEMU_GDB",
            "CARGO_TARGET_DIR",
            ".qemu_config",
            "gdb-multiarch",
        ] {
            assert!(HELP.contains(knob), "{knob} missing from --help");
        }
    }
}
