//! Compact page-reference traces: dense page ids (first-touch order) with a write bit, plus the
//! virtual layout of the pages; built from a workload generator or a Valgrind Lackey stream.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Instant;

use reclaim::model::PageLayout;
use reclaim::workload::{Workload, WorkloadKind};

use crate::lackey::{self, LackeyError, Op};

/// Bit of a trace entry that marks a write; the other 31 bits are the dense page id.
pub const WRITE_BIT: u32 = 1 << 31;

/// A replayable trace.
pub struct Trace {
    /// Name shown in reports (`uniform`, file name, `stdin`).
    pub name: String,
    /// Entries: dense page id, `| WRITE_BIT` for writes.
    pub accesses: Vec<u32>,
    /// Virtual page of every dense page id.
    pub layout: PageLayout,
}

impl Trace {
    /// Distinct pages (the footprint).
    pub fn pages(&self) -> u32 {
        self.layout.pages()
    }

    /// `count` accesses of a built-in workload over `pages` pages.
    pub fn from_workload(
        kind: WorkloadKind,
        seed: u64,
        pages: u32,
        count: u64,
    ) -> Result<Self, String> {
        let workload = Workload::new(kind, seed, pages).map_err(|e| e.to_string())?;
        let accesses = workload
            .take(count as usize)
            .map(|a| if a.write { a.page | WRITE_BIT } else { a.page })
            .collect();
        Ok(Self {
            name: kind.name().to_string(),
            accesses,
            layout: PageLayout::contiguous(pages),
        })
    }

    /// Read a Lackey trace, mapping pages to dense ids as they first appear. Malformed lines are
    /// errors when `strict`, otherwise skipped and counted (reported on stderr).
    pub fn from_lackey(
        name: String,
        input: impl BufRead,
        strict: bool,
    ) -> Result<Self, LackeyError> {
        let mut ids: HashMap<u64, u32, BuildHasherDefault<PageHasher>> = HashMap::default();
        let mut vpns = Vec::new();
        let mut accesses = Vec::new();
        let mut progress = Progress::new();
        let summary = lackey::parse(input, strict, |lines, record| {
            progress.tick(lines);
            let write = matches!(record.op, Op::Store | Op::Modify);
            for vpn in record.pages() {
                let next_id = vpns.len() as u32;
                let id = *ids.entry(vpn).or_insert_with(|| {
                    vpns.push(vpn);
                    next_id
                });
                accesses.push(if write { id | WRITE_BIT } else { id });
            }
            if vpns.len() as u64 > u64::from(WRITE_BIT) {
                return Err(LackeyError::TooManyPages);
            }
            Ok(())
        })?;
        progress.finish(summary.lines, accesses.len(), vpns.len());
        if summary.skipped > 0 {
            eprintln!(
                "sim: skipped {} malformed line(s); first at line {}: {:?} (use --strict to stop on them)",
                summary.skipped,
                summary.first_skipped_line,
                summary.first_skipped.as_deref().unwrap_or("")
            );
        }
        if accesses.is_empty() {
            return Err(LackeyError::Empty);
        }
        let layout = PageLayout::from_vpns(vpns).map_err(LackeyError::Layout)?;
        Ok(Self {
            name,
            accesses,
            layout,
        })
    }
}

/// FxHash-style hasher for page numbers (the trace maps one per line, std's SipHash is slow).
#[derive(Default)]
pub struct PageHasher(u64);

impl Hasher for PageHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517C_C1B7_2722_0A95);
    }
}

/// Lines-per-second progress on stderr while a trace is read.
struct Progress {
    start: Instant,
    last: Instant,
    tty: bool,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            start: now,
            last: now,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn tick(&mut self, lines: u64) {
        if !lines.is_multiple_of(1 << 20) {
            return;
        }
        let now = Instant::now();
        // A terminal gets an updating line twice a second; a log a line every 5 s.
        let every = if self.tty { 0.5 } else { 5.0 };
        if now.duration_since(self.last).as_secs_f64() < every {
            return;
        }
        self.last = now;
        let rate = lines as f64 / now.duration_since(self.start).as_secs_f64();
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\rsim: read {lines} lines ({rate:.0} lines/s)");
        } else {
            let _ = writeln!(err, "sim: read {lines} lines ({rate:.0} lines/s)");
        }
    }

    fn finish(&self, lines: u64, accesses: usize, pages: usize) {
        let secs = self.start.elapsed().as_secs_f64().max(1e-9);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r");
        }
        let _ = writeln!(
            err,
            "sim: read {lines} lines in {secs:.2} s ({:.0} lines/s): {accesses} page accesses, {pages} distinct pages",
            lines as f64 / secs
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lackey_pages_get_dense_ids_in_first_touch_order() {
        let input = "==1== banner\nI  04000000,4\n L 7ff000,8\n S 04000ffe,4\n M 7ff008,8\n";
        let trace = Trace::from_lackey("t".into(), input.as_bytes(), true).unwrap();
        // Page 0x4000 (id 0), 0x7ff (id 1); the store spans pages 0x4000 and 0x4001 (id 2).
        assert_eq!(
            trace.accesses,
            [0, 1, WRITE_BIT, 2 | WRITE_BIT, 1 | WRITE_BIT]
        );
        assert_eq!(trace.pages(), 3);
    }

    #[test]
    fn empty_lackey_trace_is_an_error() {
        let err = Trace::from_lackey("t".into(), "==1== only a banner\n".as_bytes(), true)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "the trace has no memory accesses");
    }

    #[test]
    fn workload_trace_marks_writes() {
        let trace = Trace::from_workload(WorkloadKind::Loop, 1, 10, 1000).unwrap();
        assert_eq!(trace.accesses.len(), 1000);
        let writes = trace
            .accesses
            .iter()
            .filter(|&&a| a & WRITE_BIT != 0)
            .count();
        assert!((150..350).contains(&writes), "{writes}");
        assert!(
            trace
                .accesses
                .iter()
                .enumerate()
                .all(|(i, &a)| a & !WRITE_BIT == i as u32 % 10)
        );
    }
}
