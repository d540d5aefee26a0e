//! `stress WORKLOAD PAGES ACCESSES SECONDS SEED`: replays a seeded page-reference stream of the
//! reclaim crate's `workload` module (`uniform`, `zipf`, `hotscan`, `loop`, `phase`) over a
//! PAGES-page mapping, for ACCESSES accesses (0: no limit) or SECONDS seconds of guest time
//! (0: no limit), whichever ends first. The shell's `stress` command starts it; the same seed
//! gives the simulator the same stream.
//!
//! Every page carries a known content: on its first touch the whole page is filled with a
//! pattern of its index; word 0 then holds `index << 32 | version`, and every write access bumps
//! the version. Reads check word 0; at the end every word of every touched page is checked, so
//! a page that went to swap and came back must be byte-identical. Prints `verified=ok` or
//! `verified=FAILED pages=N` and exits with the number of accesses made (-1 on a failed check).
#![no_std]
#![no_main]

use reclaim::workload::{Workload, WorkloadKind};
use usys::println;

usys::main!(main);

const PAGE: usize = 4096;
const WORDS: usize = PAGE / 8;

fn pattern(page: usize, word: usize) -> u64 {
    (page as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (word as u64).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

fn stamp(page: usize, version: u32) -> u64 {
    ((page as u64) << 32) | u64::from(version)
}

struct Memory {
    base: *mut u64,
    /// Version of each page; 0 = never touched.
    versions: *mut u32,
}

impl Memory {
    fn load(&self, page: usize, word: usize) -> u64 {
        // SAFETY: `base` maps WORDS words per page of the footprint; every caller passes a page
        // of the footprint (the workload draws from it) and a word below WORDS.
        unsafe { self.base.wrapping_add(page * WORDS + word).read_volatile() }
    }

    fn store(&self, page: usize, word: usize, value: u64) {
        // SAFETY: as in `load`.
        unsafe {
            self.base
                .wrapping_add(page * WORDS + word)
                .write_volatile(value)
        }
    }

    fn version(&self, page: usize) -> u32 {
        // SAFETY: `versions` maps one u32 per page of the footprint; `page` is in range.
        unsafe { self.versions.wrapping_add(page).read_volatile() }
    }

    fn set_version(&self, page: usize, version: u32) {
        // SAFETY: as in `version`.
        unsafe { self.versions.wrapping_add(page).write_volatile(version) }
    }

    /// Makes one access; false if the page's stamp is wrong.
    fn access(&self, page: usize, write: bool) -> bool {
        let version = self.version(page);
        if version == 0 {
            for word in 1..WORDS {
                self.store(page, word, pattern(page, word));
            }
            self.store(page, 0, stamp(page, 1));
            self.set_version(page, 1);
            return true;
        }
        if write {
            self.store(page, 0, stamp(page, version + 1));
            self.set_version(page, version + 1);
            true
        } else {
            self.load(page, 0) == stamp(page, version)
        }
    }

    /// Whether every word of a touched page is what it should be.
    fn intact(&self, page: usize) -> bool {
        let version = self.version(page);
        version == 0
            || (self.load(page, 0) == stamp(page, version)
                && (1..WORDS).all(|word| self.load(page, word) == pattern(page, word)))
    }
}

fn main(args: &str) -> i32 {
    let mut words = args.split_whitespace();
    let mut next = || words.next();
    let (Some(kind), Some(pages), Some(accesses), Some(seconds), Some(seed)) = (
        next().and_then(|w| w.parse::<WorkloadKind>().ok()),
        next().and_then(usys::parse_u64),
        next().and_then(usys::parse_u64),
        next().and_then(usys::parse_u64),
        next().and_then(usys::parse_u64),
    ) else {
        println!("usage: stress uniform|zipf|hotscan|loop|phase PAGES ACCESSES SECONDS SEED");
        return -2;
    };
    let Ok(mut workload) = Workload::new(kind, seed, pages as u32) else {
        println!(
            "stress: {pages} pages is not a valid footprint for {}",
            kind.name()
        );
        return -2;
    };
    let (base, versions) = match (
        usys::map(pages * PAGE as u64),
        usys::map((pages * 4).next_multiple_of(PAGE as u64)),
    ) {
        (Ok(base), Ok(versions)) => (base, versions),
        (Err(err), _) | (_, Err(err)) => {
            println!("stress: map: {err}");
            return -2;
        }
    };
    let memory = Memory {
        base: base.cast(),
        versions: versions.cast(),
    };
    let deadline = (seconds > 0).then(|| usys::time_ns() + seconds * 1_000_000_000);
    let mut done: u64 = 0;
    let mut bad_reads = 0u64;
    while accesses == 0 || done < accesses {
        // Check the clock every 1024 accesses.
        if done.is_multiple_of(1024) && deadline.is_some_and(|deadline| usys::time_ns() >= deadline)
        {
            break;
        }
        let access = workload.next_access();
        if !memory.access(access.page as usize, access.write) {
            bad_reads += 1;
        }
        done += 1;
    }
    let bad_pages = (0..pages as usize)
        .filter(|&page| !memory.intact(page))
        .count();
    if bad_pages == 0 && bad_reads == 0 {
        println!(
            "stress {} pages={pages} accesses={done}: verified=ok",
            kind.name()
        );
        i32::try_from(done).unwrap_or(i32::MAX)
    } else {
        println!(
            "stress {} pages={pages} accesses={done}: verified=FAILED pages={bad_pages} bad_reads={bad_reads}",
            kind.name()
        );
        -1
    }
}
