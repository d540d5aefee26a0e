//! Moving bytes between the user and the guest's serial console.
//!
//! QEMU's stdout always comes through the runner: every chunk is written and flushed at once
//! (a shell prompt without a newline must show up immediately), while complete lines are also
//! collected to add symbolized backtrace lines and to spot the test summary.

use std::io::{self, ErrorKind, Read, Write};

/// Start of the libtest summary line of a passing run; test mode requires it on exit status 0.
pub const TEST_PASSED_PREFIX: &str = "test result: ok.";

/// True for a line that ends a successful test-image run: the libtest summary of a passing run,
/// or the footer of `--list` (`12 tests, 0 benchmarks`).
pub fn is_success_line(line: &str) -> bool {
    if line.starts_with(TEST_PASSED_PREFIX) {
        return true;
    }
    let mut words = line.split(' ');
    let counted = |word: Option<&str>| {
        word.is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
    };
    counted(words.next())
        && matches!(words.next(), Some("tests," | "test,"))
        && counted(words.next())
        && matches!(words.next(), Some("benchmarks" | "benchmark"))
        && words.next().is_none()
}

/// Byte sent to the guest when the runner's stdin ends (a pipe or file): ASCII EOT (Ctrl-D),
/// on which the kernel shell powers off.
pub const END_OF_INPUT: u8 = 0x04;

/// Lines longer than this are only tracked up to this length (they are forwarded whole).
const MAX_TRACKED_LINE: usize = 64 * 1024;

/// What the runner learned from the guest's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsoleSummary {
    /// A line passed [`is_success_line`].
    pub saw_test_passed: bool,
    /// The output did not end with a newline (runner messages then start on a fresh line).
    pub ended_mid_line: bool,
}

/// Copies `from` (QEMU's stdout) to `to` until end of file, flushing after every chunk.
///
/// After each complete line, `annotate` is asked for extra lines, which are written with
/// `line_end` after them (`"\r\n"` while the terminal is in raw mode, `"\n"` otherwise). If
/// writing fails (say, the reader of the runner's stdout went away) the rest is still read, so
/// QEMU never blocks on a full pipe, and still checked for the summary line.
pub fn forward_output(
    mut from: impl Read,
    mut to: impl Write,
    line_end: &str,
    mut annotate: impl FnMut(&str) -> Vec<String>,
) -> ConsoleSummary {
    let mut summary = ConsoleSummary::default();
    let mut line: Vec<u8> = Vec::new();
    let mut sink = Sink {
        to: &mut to,
        writable: true,
    };
    let mut chunk = [0u8; 4096];
    loop {
        let count = match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &chunk[..count];
        while let Some(newline) = rest.iter().position(|&byte| byte == b'\n') {
            sink.write(&rest[..=newline]);
            track(&mut line, &rest[..newline]);
            let text = String::from_utf8_lossy(&line);
            let text = text.strip_suffix('\r').unwrap_or(&text);
            summary.saw_test_passed |= is_success_line(text);
            for extra in annotate(text) {
                sink.write(extra.as_bytes());
                sink.write(line_end.as_bytes());
            }
            line.clear();
            rest = &rest[newline + 1..];
        }
        sink.write(rest);
        track(&mut line, rest);
        summary.ended_mid_line = chunk[count - 1] != b'\n';
        sink.flush();
    }
    // A summary printed right before exit without a final newline still counts.
    summary.saw_test_passed |= is_success_line(&String::from_utf8_lossy(&line));
    summary
}

/// A writer that goes quiet after its first error.
struct Sink<W> {
    to: W,
    writable: bool,
}

impl<W: Write> Sink<W> {
    fn write(&mut self, bytes: &[u8]) {
        if self.writable && !bytes.is_empty() && self.to.write_all(bytes).is_err() {
            self.writable = false;
        }
    }

    fn flush(&mut self) {
        if self.writable && self.to.flush().is_err() {
            self.writable = false;
        }
    }
}

fn track(line: &mut Vec<u8>, bytes: &[u8]) {
    let room = MAX_TRACKED_LINE.saturating_sub(line.len());
    line.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Copies the runner's stdin to QEMU's stdin as it arrives, then sends [`END_OF_INPUT`].
pub fn relay_input(mut from: impl Read, mut to: impl Write) -> io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => {
                to.write_all(&chunk[..count])?;
                to.flush()?;
            }
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
    }
    to.write_all(&[END_OF_INPUT])?;
    to.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Returns one queued chunk per `read` call, like a pipe fed in bursts.
    struct Chunks(VecDeque<Vec<u8>>);

    impl Chunks {
        fn new(chunks: &[&[u8]]) -> Self {
            Chunks(chunks.iter().map(|chunk| chunk.to_vec()).collect())
        }
    }

    impl Read for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(mut chunk) = self.0.pop_front() else {
                return Ok(0);
            };
            let count = chunk.len().min(buf.len());
            buf[..count].copy_from_slice(&chunk[..count]);
            if count < chunk.len() {
                self.0.push_front(chunk.split_off(count));
            }
            Ok(count)
        }
    }

    /// Records writes and flushes in order.
    #[derive(Default)]
    struct Recorder {
        events: Vec<Event>,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Event {
        Write(String),
        Flush,
    }

    impl Write for &mut Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.events
                .push(Event::Write(String::from_utf8_lossy(buf).into_owned()));
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            self.events.push(Event::Flush);
            Ok(())
        }
    }

    impl Recorder {
        fn text(&self) -> String {
            self.events
                .iter()
                .filter_map(|event| match event {
                    Event::Write(text) => Some(text.as_str()),
                    Event::Flush => None,
                })
                .collect()
        }
    }

    fn no_annotations(_: &str) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn partial_lines_are_flushed_at_once() {
        let mut out = Recorder::default();
        let summary = forward_output(
            Chunks::new(&[b"boot ok\r\nkernel> ", b"mem\r\n"]),
            &mut out,
            "\n",
            no_annotations,
        );
        assert_eq!(
            out.events,
            [
                Event::Write("boot ok\r\n".into()),
                Event::Write("kernel> ".into()),
                Event::Flush,
                Event::Write("mem\r\n".into()),
                Event::Flush,
            ]
        );
        assert!(!summary.ended_mid_line);
        assert!(!summary.saw_test_passed);
    }

    #[test]
    fn annotations_follow_their_line_across_chunks() {
        let mut out = Recorder::default();
        let mut seen = Vec::new();
        let summary = forward_output(
            Chunks::new(&[
                b"panic\r\n  #1 0xffff0000",
                b"40081234\r\nafter",
                b"\r\n#2 x",
            ]),
            &mut out,
            "\r\n",
            |line: &str| {
                seen.push(line.to_string());
                if line.contains("#1") {
                    vec!["      at kernel::f+0x4 (src/f.rs:3)".to_string()]
                } else {
                    vec![]
                }
            },
        );
        assert_eq!(seen, ["panic", "  #1 0xffff000040081234", "after"]);
        assert_eq!(
            out.text(),
            "panic\r\n  #1 0xffff000040081234\r\n      at kernel::f+0x4 (src/f.rs:3)\r\nafter\r\n#2 x"
        );
        assert!(summary.ended_mid_line);
    }

    #[test]
    fn test_summary_detection() {
        let passed = |chunks: &[&[u8]]| {
            forward_output(Chunks::new(chunks), io::sink(), "\n", no_annotations).saw_test_passed
        };
        assert!(passed(&[
            b"test a ... ok\n",
            b"test result: ok. 1 passed; 0 failed\n"
        ]));
        assert!(passed(&[b"test result: ok. 1 passed\r\n"]));
        assert!(
            passed(&[b"x\ntest res", b"ult: ok. 3 passed"]),
            "split and unterminated"
        );
        assert!(!passed(&[b"test result: FAILED. 0 passed; 1 failed\n"]));
        assert!(!passed(&[
            b"  test result: ok. indented is not a summary\n"
        ]));
        assert!(!passed(&[b"echo test result: ok.\n"]));
        assert!(!passed(&[]));
        assert!(
            passed(&[b"a: test\n\n2 tests, 0 benchmarks\n"]),
            "--list footer"
        );
        assert!(passed(&[b"1 test, 0 benchmarks\r\n"]));
        assert!(!passed(&[b"2 tests, 0 benchmarks failed\n"]));
        assert!(!passed(&[b"many tests, 0 benchmarks\n"]));
    }

    /// A writer whose reader has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn output_is_drained_after_the_writer_fails() {
        let mut source = Chunks::new(&[b"a\n", b"b\n", b"test result: ok. 1 passed\n"]);
        let summary = forward_output(&mut source, ClosedPipe, "\n", no_annotations);
        assert!(source.0.is_empty(), "everything was read");
        assert!(summary.saw_test_passed);
    }

    #[test]
    fn very_long_lines_are_forwarded_whole() {
        let long = vec![b'x'; MAX_TRACKED_LINE + 100];
        let mut out = Recorder::default();
        let mut lengths = Vec::new();
        forward_output(
            Chunks::new(&[&long, b"\n"]),
            &mut out,
            "\n",
            |line: &str| {
                lengths.push(line.len());
                vec![]
            },
        );
        assert_eq!(out.text().len(), MAX_TRACKED_LINE + 101);
        assert_eq!(lengths, [MAX_TRACKED_LINE]);
    }

    #[test]
    fn input_relay_ends_with_eot() {
        let mut to = Vec::new();
        relay_input(Chunks::new(&[b"mem\n", b"poweroff\n"]), &mut to).unwrap();
        assert_eq!(to, b"mem\npoweroff\n\x04");

        let mut to = Vec::new();
        relay_input(io::empty(), &mut to).unwrap();
        assert_eq!(to, [END_OF_INPUT]);
    }

    #[test]
    fn input_relay_reports_a_closed_guest() {
        let error = relay_input(&b"data"[..], ClosedPipe).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BrokenPipe);
    }
}
