//! One QEMU run: spawn, wire stdin/stdout, enforce the timeout, and turn the way QEMU ended
//! into the runner's exit status.

use std::cell::OnceCell;
use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::console::{ConsoleSummary, forward_output, relay_input};
use crate::error::Error;
use crate::qemu::{QEMU_PROGRAM, QemuCommand};
use crate::symbolize::{Symbolizer, find_code_addresses};
use crate::{EXIT_FAILURE, EXIT_TIMEOUT, Mode};

/// How often the timeout watchdog checks whether QEMU has exited.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Where QEMU's stdin comes from.
pub enum GuestInput {
    /// `/dev/null` (test mode).
    Null,
    /// The runner's own stdin, a terminal that QEMU drives directly (raw mode).
    Inherit,
    /// A reader relayed by a runner thread, followed by EOT when it ends.
    Relay(Box<dyn Read + Send>),
}

/// Everything [`execute`] needs.
pub struct Session<'a> {
    /// The QEMU binary.
    pub program: &'a Path,
    /// Its arguments.
    pub command: &'a QemuCommand,
    /// QEMU's stdin.
    pub input: GuestInput,
    /// Wall-clock limit, if any.
    pub timeout: Option<Duration>,
    /// The kernel ELF's bytes, for symbolizing backtraces.
    pub elf_data: &'a [u8],
    /// Line ending of annotation lines: `"\r\n"` when the terminal is in raw mode.
    pub line_end: &'static str,
}

/// How QEMU ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exited with this status (the guest's semihosting exit code).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Killed by the runner when the timeout expired.
    TimedOut,
}

/// Runs QEMU to completion, forwarding its stdout to `output`.
pub fn execute(
    session: Session<'_>,
    output: &mut (dyn Write + Send),
) -> Result<(Outcome, ConsoleSummary), Error> {
    let mut command = Command::new(session.program);
    command
        .args(session.command.args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let relay = match session.input {
        GuestInput::Null => {
            command.stdin(Stdio::null());
            None
        }
        GuestInput::Inherit => {
            command.stdin(Stdio::inherit());
            None
        }
        GuestInput::Relay(reader) => {
            command.stdin(Stdio::piped());
            Some(reader)
        }
    };
    let mut child = command.spawn().map_err(Error::Qemu)?;
    let qemu_stdout = child
        .stdout
        .take()
        .ok_or_else(|| Error::Qemu(io::Error::other("QEMU's stdout is not a pipe")))?;
    if let (Some(reader), Some(qemu_stdin)) = (relay, child.stdin.take()) {
        // Detached: it may block reading the runner's stdin long after QEMU is gone, and it
        // ends with the process. An error only means QEMU stopped reading.
        std::thread::spawn(move || relay_input(reader, qemu_stdin));
    }

    std::thread::scope(|scope| {
        let forwarder = scope.spawn(|| {
            // Built on the first line that holds an address: most runs never need it.
            let symbolizer: OnceCell<Option<Symbolizer<'_>>> = OnceCell::new();
            forward_output(qemu_stdout, output, session.line_end, |line: &str| {
                if find_code_addresses(line).is_empty() {
                    return Vec::new();
                }
                symbolizer
                    .get_or_init(|| Symbolizer::new(session.elf_data))
                    .as_ref()
                    .map(|symbolizer| symbolizer.annotate(line))
                    .unwrap_or_default()
            })
        });
        let outcome = wait(&mut child, session.timeout);
        let summary = forwarder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        Ok((outcome?, summary))
    })
}

/// Waits for `child`, killing it when `timeout` expires.
pub fn wait(child: &mut Child, timeout: Option<Duration>) -> Result<Outcome, Error> {
    let Some(timeout) = timeout else {
        return child.wait().map(outcome_of).map_err(Error::Qemu);
    };
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(Error::Qemu)? {
            return Ok(outcome_of(status));
        }
        if Instant::now() >= deadline {
            // kill fails only if it already exited; wait reaps it either way.
            let _ = child.kill();
            child.wait().map_err(Error::Qemu)?;
            return Ok(Outcome::TimedOut);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

fn outcome_of(status: ExitStatus) -> Outcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => Outcome::Exited(code),
        (None, Some(signal)) => Outcome::Signaled(signal),
        (None, None) => Outcome::Signaled(0),
    }
}

/// The runner's exit status for a finished run, and the message to print (without the
/// `runner: ` prefix) if the status is the runner's verdict rather than the guest's.
pub fn verdict(
    mode: Mode,
    outcome: Outcome,
    summary: ConsoleSummary,
    timeout: Option<Duration>,
    image_name: &str,
) -> (i32, Option<String>) {
    match outcome {
        Outcome::TimedOut => (
            EXIT_TIMEOUT,
            Some(format!(
                "TIMEOUT after {} s ({image_name})",
                timeout.unwrap_or_default().as_secs()
            )),
        ),
        Outcome::Signaled(signal) => (
            EXIT_FAILURE,
            Some(format!(
                "{QEMU_PROGRAM} was killed by signal {signal} ({image_name})"
            )),
        ),
        Outcome::Exited(0) if mode == Mode::Test && !summary.saw_test_passed => (
            EXIT_FAILURE,
            Some("kernel exited 0 without a passing test summary".to_string()),
        ),
        Outcome::Exited(code) => (code, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::Serial;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn passed() -> ConsoleSummary {
        ConsoleSummary {
            saw_test_passed: true,
            ended_mid_line: false,
        }
    }

    #[test]
    fn verdicts() {
        let none = ConsoleSummary::default();
        let secs = Some(Duration::from_secs(300));
        assert_eq!(
            verdict(Mode::Test, Outcome::Exited(0), passed(), secs, "mm"),
            (0, None)
        );
        assert_eq!(
            verdict(Mode::Test, Outcome::Exited(1), passed(), secs, "mm"),
            (1, None)
        );
        assert_eq!(
            verdict(Mode::Test, Outcome::Exited(3), none, secs, "mm"),
            (3, None)
        );
        assert_eq!(
            verdict(Mode::Test, Outcome::Exited(0), none, secs, "mm"),
            (
                1,
                Some("kernel exited 0 without a passing test summary".into())
            )
        );
        assert_eq!(
            verdict(Mode::Run, Outcome::Exited(0), none, None, "kernel"),
            (0, None)
        );
        assert_eq!(
            verdict(Mode::Test, Outcome::TimedOut, none, secs, "mm-1a2b"),
            (124, Some("TIMEOUT after 300 s (mm-1a2b)".into()))
        );
        assert_eq!(
            verdict(Mode::Run, Outcome::Signaled(9), none, None, "kernel"),
            (
                1,
                Some("qemu-system-aarch64 was killed by signal 9 (kernel)".into())
            )
        );
    }

    fn shell(script: &str) -> Child {
        Command::new("/bin/sh")
            .args(["-c", script])
            .spawn()
            .unwrap()
    }

    #[test]
    fn wait_reports_exit_codes_and_signals() {
        assert_eq!(
            wait(&mut shell("exit 3"), None).unwrap(),
            Outcome::Exited(3)
        );
        assert_eq!(
            wait(&mut shell("exit 0"), Some(Duration::from_secs(30))).unwrap(),
            Outcome::Exited(0)
        );
        assert_eq!(
            wait(&mut shell("kill -TERM $$"), Some(Duration::from_secs(30))).unwrap(),
            Outcome::Signaled(15)
        );
    }

    #[test]
    fn wait_kills_on_timeout() {
        let started = Instant::now();
        let mut child = shell("exec sleep 30");
        assert_eq!(
            wait(&mut child, Some(Duration::from_millis(100))).unwrap(),
            Outcome::TimedOut
        );
        assert!(started.elapsed() < Duration::from_secs(20));
        assert!(child.try_wait().unwrap().is_some(), "reaped");
    }

    /// A stand-in for QEMU: a shell script run with the QEMU arguments, in a scratch directory.
    fn fake_qemu(test: &str, body: &str) -> (crate::test_elf::ScratchDir, PathBuf) {
        let dir = crate::test_elf::scratch_dir(test);
        let path = dir.join("fake-qemu");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    }

    fn command() -> QemuCommand {
        QemuCommand {
            machine: "virt".into(),
            cpu: "cortex-a72".into(),
            memory: "128M".into(),
            smp: 1,
            icount: false,
            kernel: "/dev/null".into(),
            append: "--".into(),
            serial: Serial::Plain,
            disks: vec![],
            gdb: false,
            image_args: vec![],
            extra_args: vec![],
        }
    }

    fn run_fake(
        program: &Path,
        input: GuestInput,
        timeout: Option<Duration>,
    ) -> (Outcome, ConsoleSummary, String) {
        let mut output = Vec::new();
        let command = command();
        let (outcome, summary) = execute(
            Session {
                program,
                command: &command,
                input,
                timeout,
                elf_data: &[],
                line_end: "\n",
            },
            &mut output,
        )
        .unwrap();
        (outcome, summary, String::from_utf8(output).unwrap())
    }

    #[test]
    fn execute_forwards_output_and_exit_status() {
        let (_scratch, program) = fake_qemu(
            "execute_output",
            "echo \"args: $*\"\nprintf 'test result: ok. 1 passed\\nprompt> '\nexit 7",
        );
        let (outcome, summary, output) = run_fake(&program, GuestInput::Null, None);
        assert_eq!(outcome, Outcome::Exited(7));
        assert!(summary.saw_test_passed);
        assert!(summary.ended_mid_line);
        assert_eq!(
            output,
            "args: -M virt -cpu cortex-a72 -m 128M -smp 1 -semihosting -kernel /dev/null \
             -append -- -display none -serial stdio -monitor none\n\
             test result: ok. 1 passed\nprompt> "
        );
    }

    #[test]
    fn execute_relays_input_then_eot() {
        let (_scratch, program) = fake_qemu("execute_relay", "cat");
        let input = GuestInput::Relay(Box::new(&b"mem\npoweroff\n"[..]));
        let (outcome, _, output) = run_fake(&program, input, Some(Duration::from_secs(30)));
        assert_eq!(outcome, Outcome::Exited(0));
        assert_eq!(output, "mem\npoweroff\n\x04");
    }

    #[test]
    fn execute_null_input_and_timeout() {
        let (_scratch, program) =
            fake_qemu("execute_timeout", "cat\necho done reading\nexec sleep 30");
        let (outcome, _, output) =
            run_fake(&program, GuestInput::Null, Some(Duration::from_millis(200)));
        assert_eq!(outcome, Outcome::TimedOut);
        assert_eq!(output, "done reading\n");
    }

    #[test]
    fn execute_reports_a_missing_program() {
        let command = command();
        let error = execute(
            Session {
                program: Path::new("/nonexistent/qemu-system-aarch64"),
                command: &command,
                input: GuestInput::Null,
                timeout: None,
                elf_data: &[],
                line_end: "\n",
            },
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot run qemu-system-aarch64: "),
            "{error}"
        );
    }
}
