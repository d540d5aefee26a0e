//! Valgrind Lackey (`--tool=lackey --trace-mem=yes`) trace parsing.
//!
//! Accepted lines: `I  addr,size` (instruction fetch), ` L addr,size` (load), ` S addr,size`
//! (store), ` M addr,size` (modify: load and store), with `addr` in hex and `size` in decimal
//! (1..=4096). A record touches every 4 KiB page from `addr >> 12` to `(addr + size - 1) >> 12`;
//! `S` and `M` are writes. Blank lines and Valgrind's `==pid==` banner lines are ignored.
//!
//! Anything else is malformed: an error naming the line (in strict mode), or skipped and counted
//! (the default, since a program's own output sometimes ends up in the trace).

use std::fmt;
use std::io::BufRead;

/// What a record does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `I`: instruction fetch.
    Instruction,
    /// `L`: load.
    Load,
    /// `S`: store.
    Store,
    /// `M`: load and store.
    Modify,
}

/// One memory access record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// The access kind.
    pub op: Op,
    /// First byte address.
    pub addr: u64,
    /// Bytes accessed (1..=4096).
    pub size: u64,
}

impl Record {
    /// Virtual page numbers the record touches (one, or two across a page boundary).
    pub fn pages(&self) -> std::ops::RangeInclusive<u64> {
        let last = self.addr.saturating_add(self.size - 1);
        (self.addr >> 12)..=(last >> 12)
    }
}

/// A Lackey input that cannot be used.
#[derive(Debug)]
pub enum LackeyError {
    /// Reading failed.
    Io(std::io::Error),
    /// Strict mode: a malformed line.
    Malformed {
        /// 1-based line number.
        line: u64,
        /// The line (lossy UTF-8, cut to 80 characters).
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No access records at all.
    Empty,
    /// More than 2^31 distinct pages.
    TooManyPages,
    /// The pages cannot be laid out (impossible for page numbers from 64-bit addresses).
    Layout(reclaim::model::LayoutError),
}

impl fmt::Display for LackeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LackeyError::Io(err) => write!(f, "cannot read the trace: {err}"),
            LackeyError::Malformed { line, text, reason } => {
                write!(f, "malformed Lackey line {line}: {reason}: {text:?}")
            }
            LackeyError::Empty => f.write_str("the trace has no memory accesses"),
            LackeyError::TooManyPages => {
                f.write_str("the trace touches more than 2^31 distinct pages")
            }
            LackeyError::Layout(err) => write!(f, "cannot lay out the trace's pages: {err}"),
        }
    }
}

impl std::error::Error for LackeyError {}

/// Parse one line: `Ok(None)` for a line to ignore, `Err(reason)` for a malformed one.
pub fn parse_line(line: &[u8]) -> Result<Option<Record>, &'static str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) || line.starts_with(b"==") {
        return Ok(None);
    }
    let (op, rest) = match line {
        [b'I', rest @ ..] => (Op::Instruction, rest),
        [b' ', b'L', rest @ ..] => (Op::Load, rest),
        [b' ', b'S', rest @ ..] => (Op::Store, rest),
        [b' ', b'M', rest @ ..] => (Op::Modify, rest),
        _ => return Err("expected `I`, ` L`, ` S` or ` M` at the start"),
    };
    if rest.first() != Some(&b' ') {
        return Err("expected a space after the operation");
    }
    let rest = rest.trim_ascii();
    let comma = rest
        .iter()
        .position(|&b| b == b',')
        .ok_or("expected `address,size`")?;
    let (addr, size) = (&rest[..comma], &rest[comma + 1..]);
    if addr.is_empty() || addr.len() > 16 {
        return Err("bad hexadecimal address");
    }
    let mut value = 0u64;
    for &digit in addr {
        let nibble = (digit as char)
            .to_digit(16)
            .ok_or("bad hexadecimal address")?;
        value = (value << 4) | u64::from(nibble);
    }
    if size.is_empty() || size.len() > 4 || !size.iter().all(u8::is_ascii_digit) {
        return Err("bad decimal size");
    }
    let size_value = size
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    if !(1..=4096).contains(&size_value) {
        return Err("size outside 1..=4096");
    }
    Ok(Some(Record {
        op,
        addr: value,
        size: size_value,
    }))
}

/// What [`parse`] saw.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Malformed lines skipped (non-strict mode).
    pub skipped: u64,
    /// Line number of the first skipped line.
    pub first_skipped_line: u64,
    /// Text of the first skipped line.
    pub first_skipped: Option<String>,
}

fn shown(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(80).collect()
}

/// Stream `input`, calling `record(line_number, record)` for every access record.
pub fn parse(
    mut input: impl BufRead,
    strict: bool,
    mut record: impl FnMut(u64, Record) -> Result<(), LackeyError>,
) -> Result<Summary, LackeyError> {
    let mut summary = Summary::default();
    let mut line = Vec::with_capacity(128);
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(LackeyError::Io)?
            == 0
        {
            return Ok(summary);
        }
        summary.lines += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match parse_line(text) {
            Ok(Some(rec)) => record(summary.lines, rec)?,
            Ok(None) => {}
            Err(reason) if strict => {
                return Err(LackeyError::Malformed {
                    line: summary.lines,
                    text: shown(text),
                    reason,
                });
            }
            Err(_) => {
                if summary.skipped == 0 {
                    summary.first_skipped_line = summary.lines;
                    summary.first_skipped = Some(shown(text));
                }
                summary.skipped += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_record_kinds() {
        assert_eq!(
            parse_line(b"I  0400d7d4,8"),
            Ok(Some(Record {
                op: Op::Instruction,
                addr: 0x400d7d4,
                size: 8
            }))
        );
        assert_eq!(
            parse_line(b" L 7ff0005d8,8"),
            Ok(Some(Record {
                op: Op::Load,
                addr: 0x7ff0005d8,
                size: 8
            }))
        );
        assert_eq!(
            parse_line(b" S 7ff0005c8,8\r"),
            Ok(Some(Record {
                op: Op::Store,
                addr: 0x7ff0005c8,
                size: 8
            }))
        );
        assert_eq!(
            parse_line(b" M 0421d9b0,4"),
            Ok(Some(Record {
                op: Op::Modify,
                addr: 0x421d9b0,
                size: 4
            }))
        );
    }

    #[test]
    fn ignores_banners_and_blank_lines() {
        assert_eq!(
            parse_line(b"==12345== Lackey, an example Valgrind tool"),
            Ok(None)
        );
        assert_eq!(parse_line(b""), Ok(None));
        assert_eq!(parse_line(b"   "), Ok(None));
    }

    #[test]
    fn rejects_malformed_lines_with_reasons() {
        let cases: [(&[u8], &str); 8] = [
            (b"X 1234,4", "expected `I`, ` L`, ` S` or ` M` at the start"),
            (b"L 1234,4", "expected `I`, ` L`, ` S` or ` M` at the start"),
            (b" L1234,4", "expected a space after the operation"),
            (b" L 1234", "expected `address,size`"),
            (b" L zz,4", "bad hexadecimal address"),
            (b" L 12345678901234567,4", "bad hexadecimal address"),
            (b" L 1234,x", "bad decimal size"),
            (b" L 1234,0", "size outside 1..=4096"),
        ];
        for (line, reason) in cases {
            assert_eq!(
                parse_line(line),
                Err(reason),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn a_record_spanning_a_page_boundary_touches_two_pages() {
        let record = Record {
            op: Op::Load,
            addr: 0x1ffc,
            size: 8,
        };
        assert_eq!(record.pages(), 1..=2);
        let record = Record {
            op: Op::Load,
            addr: 0x1ff8,
            size: 8,
        };
        assert_eq!(record.pages(), 1..=1);
    }

    #[test]
    fn strict_mode_names_the_line_and_lenient_mode_counts() {
        let input = "==1== hi\n L 1000,4\nhello world\n S 2000,4\nbye\n";
        let err = parse(input.as_bytes(), true, |_, _| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed Lackey line 3: expected `I`, ` L`, ` S` or ` M` at the start: \"hello world\""
        );
        let mut seen = Vec::new();
        let summary = parse(input.as_bytes(), false, |line, rec| {
            seen.push((line, rec.addr));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [(2, 0x1000), (4, 0x2000)]);
        assert_eq!(
            summary,
            Summary {
                lines: 5,
                skipped: 2,
                first_skipped_line: 3,
                first_skipped: Some("hello world".into())
            }
        );
    }

    #[test]
    fn io_errors_are_reported() {
        struct Broken;
        impl std::io::Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("disk on fire"))
            }
        }
        let err = parse(std::io::BufReader::new(Broken), false, |_, _| Ok(())).unwrap_err();
        assert_eq!(err.to_string(), "cannot read the trace: disk on fire");
    }
}
