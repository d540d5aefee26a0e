//! Seeded page-reference generators shared by the simulator and the kernel's `stress` command.
//!
//! A workload is fully determined by (kind, seed, footprint `P` in pages): the `n`-th access is
//! the same everywhere, so the kernel's `stress WORKLOAD MiB` and `sim --workload` replay the
//! same sequence (a footprint of `M` MiB is `P = M * 256` pages). Generators are infinite; a run
//! takes as many accesses as it wants.
//!
//! # Random numbers
//! SplitMix64 with state `s = seed`: each draw does `s += 0x9E3779B97F4A7C15` (wrapping), then
//! `z = s; z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9; z = (z ^ (z >> 27)) * 0x94D049BB133111EB;
//! z ^ (z >> 31)` (wrapping products). `below(n)` = `(draw * n) >> 64` in 128-bit arithmetic;
//! `unit()` = `(draw >> 11) * 2^-53`, a double in [0, 1).
//!
//! # One access
//! Each access first makes the page draws of its kind (below), then one more draw `w`: the access
//! is a write when `w >> 62 == 0` (one in four).
//!
//! # Kinds (`P` pages numbered `0..P`)
//! * `uniform`: page `below(P)`.
//! * `zipf`: Zipf with exponent 0.9 over ranks `1..=P`, sampled by rejection-inversion
//!   (Hörmann and Derflinger 1996; the procedure of Apache Commons RNG's
//!   `RejectionInversionZipfSampler`, with `unit()` as its uniform input and `libm` for
//!   `exp`/`log`/`expm1`/`log1p`), then scattered: page `((rank - 1) * stride) mod P`, where
//!   `stride` is the least integer `>= max(1, P * 618 / 1000)` coprime with `P`.
//! * `hotscan`: a hot set of `H = max(1, P / 4)` pages `0..H` and a scan region of the other
//!   `P - H` pages. A draw `x`: if `x >> 63 == 0`, page `below(H)` (hot); otherwise the next
//!   scan page `H + c`, where the scan counter `c` starts at 0 and steps by 1 modulo `P - H`.
//!   The hot set is reused while a one-pass scan streams through cold pages (wrapping only after
//!   `P - H` scan accesses). Needs `P >= 2`.
//! * `loop`: the `i`-th access (from 0) touches page `i mod P`; no page draw.
//! * `phase`: the working set moves between four quarters. `W = P / 4`; phase `k` covers accesses
//!   `k * 8W .. (k + 1) * 8W` and uses pages `(k mod 4) * W .. (k mod 4) * W + W`. A draw `x`:
//!   if `x % 10 != 0` (nine in ten), page `(k mod 4) * W + below(W)`; otherwise `below(P)`.
//!   Needs `P >= 4`.
//!
//! Floating point is used only for Zipf and is deterministic: IEEE-754 double arithmetic and the
//! pure-Rust `libm` give the same bits on every target.

use core::fmt;
use core::str::FromStr;

/// Zipf exponent of the `zipf` workload.
pub const ZIPF_EXPONENT: f64 = 0.9;

/// SplitMix64 pseudo-random numbers.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub const fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (multiply-shift; `n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A double in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The workload kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// Uniform random over the footprint.
    Uniform,
    /// Zipf (exponent 0.9), scattered over the footprint.
    Zipf,
    /// Hot set reused during a streaming scan of the rest.
    HotScan,
    /// Cyclic over the footprint.
    Loop,
    /// Working set moving between quarters of the footprint.
    Phase,
}

impl WorkloadKind {
    /// Every kind, in report order.
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::Uniform,
        WorkloadKind::Zipf,
        WorkloadKind::HotScan,
        WorkloadKind::Loop,
        WorkloadKind::Phase,
    ];

    /// The name accepted by [`FromStr`].
    pub const fn name(self) -> &'static str {
        match self {
            WorkloadKind::Uniform => "uniform",
            WorkloadKind::Zipf => "zipf",
            WorkloadKind::HotScan => "hotscan",
            WorkloadKind::Loop => "loop",
            WorkloadKind::Phase => "phase",
        }
    }

    /// The smallest footprint the kind is defined for.
    pub const fn min_pages(self) -> u32 {
        match self {
            WorkloadKind::Uniform | WorkloadKind::Zipf | WorkloadKind::Loop => 1,
            WorkloadKind::HotScan => 2,
            WorkloadKind::Phase => 4,
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkloadKind {
    type Err = WorkloadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkloadKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or(WorkloadError::UnknownKind)
    }
}

/// A workload that cannot be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadError {
    /// The name is not one of the kinds.
    UnknownKind,
    /// The footprint is outside what the kind supports.
    BadFootprint {
        /// The kind asked for.
        kind: WorkloadKind,
        /// The footprint given.
        pages: u32,
    },
}

impl fmt::Display for WorkloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadError::UnknownKind => f.write_str(
                "unknown workload; expected one of: uniform, zipf, hotscan, loop, phase",
            ),
            WorkloadError::BadFootprint { kind, pages } => write!(
                f,
                "workload {kind} needs a footprint of {}..={} pages, got {pages}",
                kind.min_pages(),
                Workload::MAX_PAGES
            ),
        }
    }
}

impl core::error::Error for WorkloadError {}

/// One page reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// Page index in `0..P`.
    pub page: u32,
    /// Whether the access writes the page.
    pub write: bool,
}

/// Rejection-inversion Zipf sampler over `1..=n`.
#[derive(Clone, Debug)]
struct Zipf {
    n: f64,
    exponent: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    s: f64,
}

impl Zipf {
    fn new(n: u32, exponent: f64) -> Self {
        let n = f64::from(n);
        let mut zipf = Self {
            n,
            exponent,
            h_integral_x1: 0.0,
            h_integral_n: 0.0,
            s: 0.0,
        };
        zipf.h_integral_x1 = zipf.h_integral(1.5) - 1.0;
        zipf.h_integral_n = zipf.h_integral(n + 0.5);
        zipf.s = 2.0 - zipf.h_integral_inverse(zipf.h_integral(2.5) - zipf.h(2.0));
        zipf
    }

    fn h(&self, x: f64) -> f64 {
        libm::exp(-self.exponent * libm::log(x))
    }

    fn h_integral(&self, x: f64) -> f64 {
        let log_x = libm::log(x);
        helper2((1.0 - self.exponent) * log_x) * log_x
    }

    fn h_integral_inverse(&self, x: f64) -> f64 {
        let mut t = x * (1.0 - self.exponent);
        if t < -1.0 {
            t = -1.0;
        }
        libm::exp(helper1(t) * x)
    }

    fn sample(&self, rng: &mut SplitMix64) -> u32 {
        loop {
            let u = self.h_integral_n + rng.unit() * (self.h_integral_x1 - self.h_integral_n);
            let x = self.h_integral_inverse(u);
            let mut k = (x + 0.5) as u64 as f64;
            if k < 1.0 {
                k = 1.0;
            } else if k > self.n {
                k = self.n;
            }
            if k - x <= self.s || u >= self.h_integral(k + 0.5) - self.h(k) {
                return k as u32;
            }
        }
    }
}

/// `log1p(x) / x`, accurate near 0.
fn helper1(x: f64) -> f64 {
    if libm::fabs(x) > 1e-8 {
        libm::log1p(x) / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// `expm1(x) / x`, accurate near 0.
fn helper2(x: f64) -> f64 {
    if libm::fabs(x) > 1e-8 {
        libm::expm1(x) / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Per-kind generator state.
#[derive(Clone, Debug)]
enum Shape {
    Uniform,
    Zipf { sampler: Zipf, stride: u64 },
    HotScan { hot: u32, scan_next: u32 },
    Loop,
    Phase { width: u32 },
}

/// An infinite, seeded page-reference stream (see the module docs for the exact definition).
#[derive(Clone, Debug)]
pub struct Workload {
    kind: WorkloadKind,
    pages: u32,
    rng: SplitMix64,
    shape: Shape,
    issued: u64,
}

impl Workload {
    /// Largest footprint (page indices stay below 2^31).
    pub const MAX_PAGES: u32 = 1 << 31;

    /// The stream of `kind` over `pages` pages, seeded with `seed`.
    pub fn new(kind: WorkloadKind, seed: u64, pages: u32) -> Result<Self, WorkloadError> {
        if pages < kind.min_pages() || pages > Self::MAX_PAGES {
            return Err(WorkloadError::BadFootprint { kind, pages });
        }
        let shape = match kind {
            WorkloadKind::Uniform => Shape::Uniform,
            WorkloadKind::Zipf => {
                let p = u64::from(pages);
                let mut stride = (p * 618 / 1000).max(1);
                while gcd(stride, p) != 1 {
                    stride += 1;
                }
                Shape::Zipf {
                    sampler: Zipf::new(pages, ZIPF_EXPONENT),
                    stride,
                }
            }
            WorkloadKind::HotScan => Shape::HotScan {
                hot: (pages / 4).max(1),
                scan_next: 0,
            },
            WorkloadKind::Loop => Shape::Loop,
            WorkloadKind::Phase => Shape::Phase { width: pages / 4 },
        };
        Ok(Self {
            kind,
            pages,
            rng: SplitMix64::new(seed),
            shape,
            issued: 0,
        })
    }

    /// The kind of this stream.
    pub fn kind(&self) -> WorkloadKind {
        self.kind
    }

    /// The footprint in pages.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The next access.
    pub fn next_access(&mut self) -> Access {
        let pages = u64::from(self.pages);
        let i = self.issued;
        self.issued += 1;
        let page = match &mut self.shape {
            Shape::Uniform => self.rng.below(pages) as u32,
            Shape::Zipf { sampler, stride } => {
                let rank = u64::from(sampler.sample(&mut self.rng));
                ((rank - 1) * *stride % pages) as u32
            }
            Shape::HotScan { hot, scan_next } => {
                if self.rng.next_u64() >> 63 == 0 {
                    self.rng.below(u64::from(*hot)) as u32
                } else {
                    let page = *hot + *scan_next;
                    *scan_next = (*scan_next + 1) % (self.pages - *hot);
                    page
                }
            }
            Shape::Loop => (i % pages) as u32,
            Shape::Phase { width } => {
                let width = u64::from(*width);
                let base = (i / (8 * width)) % 4 * width;
                if !self.rng.next_u64().is_multiple_of(10) {
                    (base + self.rng.below(width)) as u32
                } else {
                    self.rng.below(pages) as u32
                }
            }
        };
        let write = self.rng.next_u64() >> 62 == 0;
        Access { page, write }
    }
}

impl Iterator for Workload {
    type Item = Access;

    fn next(&mut self) -> Option<Access> {
        Some(self.next_access())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    fn take(kind: WorkloadKind, seed: u64, pages: u32, n: usize) -> Vec<Access> {
        Workload::new(kind, seed, pages).unwrap().take(n).collect()
    }

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference outputs of SplitMix64 seeded with 0 (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn same_seed_same_stream_and_prefix_property() {
        for kind in WorkloadKind::ALL {
            let long = take(kind, 42, 1000, 5000);
            assert_eq!(take(kind, 42, 1000, 5000), long, "{kind}");
            assert_eq!(take(kind, 42, 1000, 100), long[..100], "{kind}");
            assert!(long.iter().all(|a| a.page < 1000), "{kind}");
            if kind != WorkloadKind::Loop {
                assert_ne!(take(kind, 43, 1000, 5000), long, "{kind}");
            }
        }
    }

    #[test]
    fn writes_are_about_a_quarter() {
        let writes = take(WorkloadKind::Uniform, 1, 100, 40_000)
            .iter()
            .filter(|a| a.write)
            .count();
        assert!((9_000..11_000).contains(&writes), "{writes}");
    }

    #[test]
    fn loop_cycles_and_hotscan_streams() {
        let pages: Vec<u32> = take(WorkloadKind::Loop, 0, 3, 7)
            .iter()
            .map(|a| a.page)
            .collect();
        assert_eq!(pages, [0, 1, 2, 0, 1, 2, 0]);
        let accesses = take(WorkloadKind::HotScan, 9, 100, 10_000);
        let scan: Vec<u32> = accesses
            .iter()
            .map(|a| a.page)
            .filter(|&p| p >= 25)
            .collect();
        // The scan visits 25, 26, ... 99, 25, ... in order.
        assert!(
            scan.iter()
                .enumerate()
                .all(|(i, &p)| p == 25 + (i as u32 % 75))
        );
        let hot = accesses.len() - scan.len();
        assert!((4_500..5_500).contains(&hot), "{hot}");
    }

    #[test]
    fn phase_moves_between_quarters() {
        let accesses = take(WorkloadKind::Phase, 5, 400, 4 * 800);
        // Phase k spans 800 accesses on quarter k; nine in ten accesses stay inside it.
        for (k, phase) in accesses.chunks(800).enumerate() {
            let inside = phase
                .iter()
                .filter(|a| (a.page / 100) as usize == k)
                .count();
            assert!(inside >= 700, "phase {k}: {inside}");
        }
    }

    #[test]
    fn zipf_ranks_follow_the_power_law() {
        let pages = 1000;
        let mut counts = vec![0u32; pages as usize];
        for access in take(WorkloadKind::Zipf, 3, pages, 200_000) {
            counts[access.page as usize] += 1;
        }
        // Rank 1 is page 0, rank 2 is page `stride` = 619 (coprime with 1000).
        let (r1, r2) = (f64::from(counts[0]), f64::from(counts[619]));
        let expected = libm::pow(2.0, ZIPF_EXPONENT);
        assert!((r1 / r2 - expected).abs() < 0.15, "ratio {}", r1 / r2);
        // Normalisation: sum of k^-0.9 for k = 1..=1000 is 10.43, so rank 1 gets 9.6%.
        assert!((18_500..19_900).contains(&counts[0]), "{}", counts[0]);
    }

    #[test]
    fn names_and_footprint_errors() {
        for kind in WorkloadKind::ALL {
            assert_eq!(kind.name().parse::<WorkloadKind>(), Ok(kind));
        }
        assert_eq!(
            "scan".parse::<WorkloadKind>(),
            Err(WorkloadError::UnknownKind)
        );
        let err = Workload::new(WorkloadKind::Phase, 0, 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "workload phase needs a footprint of 4..=2147483648 pages, got 3"
        );
        assert!(Workload::new(WorkloadKind::Uniform, 0, 0).is_err());
        assert!(Workload::new(WorkloadKind::Uniform, 0, 1).is_ok());
        assert_eq!(
            WorkloadError::UnknownKind.to_string(),
            "unknown workload; expected one of: uniform, zipf, hotscan, loop, phase"
        );
    }
}
