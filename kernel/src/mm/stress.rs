//! Reclaim workloads in a user task (`stress`): the `stress` program replays a seeded stream of
//! the reclaim crate's `workload` module over a fresh mapping and verifies every page; this
//! module starts it, collects what reclaim did meanwhile, and replays the same access sequence
//! through the reclaim crate's model (what the simulator runs) to compare fault counts.

use super::aspace::SpaceFaults;
use super::{PAGE_SIZE, swap, vmscan};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use reclaim::PolicyKind;
use reclaim::model::{Machine, MachineConfig, MachineStats, PageLayout};
use reclaim::workload::{Access, Workload, WorkloadKind};

/// Accesses per page of footprint when no duration is given.
pub const ACCESSES_PER_PAGE: u64 = 4;
/// The workload's seed (the simulator replays the same stream with it).
pub const SEED: u64 = 1;
/// Largest footprint.
pub const MAX_MIB: u64 = 4096;

/// What one run did.
#[derive(Clone, Copy, Debug)]
pub struct StressReport {
    pub policy: PolicyKind,
    pub kind: WorkloadKind,
    pub pages: u64,
    pub accesses: u64,
    /// The task's own faults.
    pub faults: SpaceFaults,
    /// Resident pages of the task outside the workload mapping at the end (code, stack,
    /// bookkeeping).
    pub other_resident: u64,
    /// User frames other tasks held when the run started.
    pub others: u32,
    pub pages_out: u64,
    pub pages_in: u64,
    pub dropped_clean: u64,
    pub reclaimed: u64,
    /// Guest time of the whole run and of its reclaim rounds.
    pub run_ns: u64,
    pub reclaim_ns: u64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StressError {
    BadFootprint,
    Spawn(crate::task::user::UserSpawnError),
    /// The task ended with this code: a failed check (-1), or killed (out of memory, I/O error).
    Failed(i64),
}

impl fmt::Display for StressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadFootprint => write!(f, "MiB must be 1 to {MAX_MIB}"),
            Self::Spawn(err) => write!(f, "stress: {err}"),
            Self::Failed(-1) => f.write_str("the workload's check failed: a page lost its content"),
            Self::Failed(code) => write!(f, "the workload task ended with {code}"),
        }
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Counters a run reports as differences.
#[derive(Clone, Copy)]
struct Snapshot {
    pages_out: u64,
    pages_in: u64,
    dropped_clean: u64,
    reclaimed: u64,
    reclaim_ticks: u64,
    ticks: u64,
}

impl Snapshot {
    fn take() -> Self {
        let counters = &vmscan::COUNTERS;
        let swap = swap::stats();
        Self {
            pages_out: swap.pages_out,
            pages_in: swap.pages_in,
            dropped_clean: load(&counters.dropped_clean),
            reclaimed: load(&counters.kswapd_reclaimed) + load(&counters.direct_reclaimed),
            reclaim_ticks: load(&counters.reclaim_ticks),
            ticks: crate::arch::cpu::counter(),
        }
    }
}

/// Runs `kind` over `mib` MiB for `seconds` of guest time, or for [`ACCESSES_PER_PAGE`]
/// accesses per page when `seconds` is 0, and waits for it.
pub fn run(kind: WorkloadKind, mib: u64, seconds: u64) -> Result<StressReport, StressError> {
    if mib == 0 || mib > MAX_MIB {
        return Err(StressError::BadFootprint);
    }
    let pages = mib * (1 << 20) / PAGE_SIZE;
    if pages < u64::from(kind.min_pages()) {
        return Err(StressError::BadFootprint);
    }
    let accesses = if seconds == 0 {
        ACCESSES_PER_PAGE * pages
    } else {
        0
    };
    let before = Snapshot::take();
    let others = vmscan::tracked();
    let arguments = alloc::format!("{} {pages} {accesses} {seconds} {SEED}", kind.name());
    let thread = crate::task::user::spawn("stress", &arguments, crate::ipc::CapabilityTable::new())
        .map_err(StressError::Spawn)?;
    let code = crate::task::wait(thread.id()).unwrap_or(-1);
    // The exited task's address space lives as long as its thread: look at it, then let go.
    let view = thread.user().map(|task| {
        let space = task.space.lock();
        let workload = space
            .regions()
            .iter()
            .find(|region| region.end - region.start == pages * PAGE_SIZE)
            .map_or(0, |region| space.resident_in(region));
        (space.faults(), (space.resident_pages() - workload) as u64)
    });
    drop(thread);
    let after = Snapshot::take();
    let Some((faults, other_resident)) = view.filter(|_| code >= 0) else {
        return Err(StressError::Failed(code));
    };
    Ok(StressReport {
        policy: vmscan::policy_kind(),
        kind,
        pages,
        accesses: code as u64,
        faults,
        other_resident,
        others,
        pages_out: after.pages_out - before.pages_out,
        pages_in: after.pages_in - before.pages_in,
        dropped_clean: after.dropped_clean - before.dropped_clean,
        reclaimed: after.reclaimed - before.reclaimed,
        run_ns: crate::time::ticks_to_ns(after.ticks - before.ticks),
        reclaim_ns: crate::time::ticks_to_ns(after.reclaim_ticks - before.reclaim_ticks),
    })
}

/// The model's prediction for a run under a user-memory limit of `limit` frames.
#[derive(Clone, Copy, Debug)]
pub struct Prediction {
    /// Frames the workload had: the limit less the task's other pages and other tasks' pages.
    pub frames: u32,
    pub stats: MachineStats,
    /// The task's faults on its workload mapping (its other pages fault in once each).
    pub kernel_faults: u64,
}

impl Prediction {
    /// Kernel faults over simulated faults, in hundredths.
    pub fn ratio_x100(&self) -> u64 {
        self.kernel_faults * 100 / self.stats.faults.max(1)
    }
}

/// Replays the run's access sequence through the model with the frames the workload had under
/// `limit`: the workload's accesses, then the task's final check (one read of every touched
/// page, in page order).
pub fn predict(
    report: &StressReport,
    limit: u32,
) -> Result<Prediction, reclaim::model::ModelError> {
    let frames = limit
        .saturating_sub(report.others)
        .saturating_sub(report.other_resident as u32);
    let pages = report.pages as u32;
    let layout = PageLayout::contiguous(pages);
    // The kernel reclaims at the limit's watermarks.
    let config = MachineConfig {
        watermarks: reclaim::model::Watermarks::for_frames(limit),
        ..MachineConfig::new(frames)
    };
    let mut machine = Machine::new(report.policy, &layout, config)
        .expect("the default policy configuration is valid");
    let mut workload =
        Workload::new(report.kind, SEED, pages).expect("the run already accepted the footprint");
    let mut touched = vec![false; pages as usize];
    let accesses: Vec<Access> = (0..report.accesses)
        .map(|_| {
            let access = workload.next_access();
            touched[access.page as usize] = true;
            access
        })
        .collect();
    let final_check = (0..pages)
        .filter(|&page| touched[page as usize])
        .map(|page| Access { page, write: false });
    for access in accesses.into_iter().chain(final_check) {
        machine.access(access.page, access.write)?;
    }
    Ok(Prediction {
        frames,
        stats: machine.stats(),
        kernel_faults: (report.faults.demand_zero + report.faults.swap_in)
            .saturating_sub(report.other_resident),
    })
}
