//! Page-reclaim commands: `lru` (the policy's lists or generations), `swap` (the swap area),
//! `vmstat` (fault and reclaim counters) and `stress` (a seeded workload in a user task, with
//! the simulator's prediction for the same access sequence when a user-memory limit is set).

use super::{CommandError, CommandResult, commands::parse_number};
use crate::console::Stdout;
use crate::mm::{swap, vmscan};
use crate::println;
use core::sync::atomic::{AtomicU64, Ordering};
use reclaim::model::{Machine, MachineConfig, PageLayout};
use reclaim::workload::{Workload, WorkloadKind};

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn no_args(args: &[&str]) -> CommandResult {
    match args.first() {
        Some(extra) => Err(CommandError::new(alloc::format!(
            "unexpected argument `{extra}`"
        ))),
        None => Ok(()),
    }
}

pub fn lru(args: &[&str]) -> CommandResult {
    no_args(args)?;
    println!("policy={}", vmscan::policy_kind());
    vmscan::write_policy_debug(crate::time::uptime_us() / 1000, &mut Stdout)?;
    Ok(())
}

pub fn swap(args: &[&str]) -> CommandResult {
    no_args(args)?;
    let stats = swap::stats();
    println!(
        "device={}",
        swap::area().map_or("none", |area| area.disk().name())
    );
    println!("slots_total={}", stats.slots_total);
    println!("slots_used={}", stats.slots_used);
    println!("pages_out={}", stats.pages_out);
    println!("pages_in={}", stats.pages_in);
    println!("io_errors={}", stats.io_errors);
    println!("write_batches={}", stats.write_batches);
    Ok(())
}

pub fn vmstat(args: &[&str]) -> CommandResult {
    no_args(args)?;
    let faults = &crate::mm::aspace::FAULTS;
    let counters = &vmscan::COUNTERS;
    let (policy, tracked) = vmscan::policy_stats();
    let marks = vmscan::watermarks();
    println!("policy={}", vmscan::policy_kind());
    println!("free_frames={}", crate::mm::frame::stats().free);
    println!("user_frames={tracked}");
    match vmscan::limit() {
        Some(limit) => println!("limit_frames={limit}"),
        None => println!("limit_frames=none"),
    }
    println!("watermark_min={}", marks.min);
    println!("watermark_low={}", marks.low);
    println!("watermark_high={}", marks.high);
    println!("faults_demand_zero={}", load(&faults.demand_zero));
    println!("faults_swap_in={}", load(&counters.swap_ins));
    println!("faults_access_flag={}", load(&faults.access_flag));
    println!("faults_write={}", load(&faults.write));
    println!("faults_unresolved={}", load(&faults.unresolved));
    println!("refaults={}", policy.shadow_hits);
    println!("scanned={}", policy.scanned);
    println!("ptes_tested={}", policy.ptes_tested);
    println!("isolated={}", policy.isolated);
    println!("evicted={}", policy.evicted);
    println!("putbacks={}", load(&counters.putbacks));
    println!("dropped_clean={}", load(&counters.dropped_clean));
    println!("reclaimed_kswapd={}", load(&counters.kswapd_reclaimed));
    println!("reclaimed_direct={}", load(&counters.direct_reclaimed));
    println!("kswapd_wakeups={}", load(&counters.kswapd_wakeups));
    println!("direct_rounds={}", load(&counters.direct_rounds));
    println!("oom={}", load(&counters.oom));
    println!("thrashing={}", load(&counters.thrashing));
    println!(
        "reclaim_ns={}",
        crate::time::ticks_to_ns(load(&counters.reclaim_ticks))
    );
    Ok(())
}

pub const STRESS_USAGE: &str = "WORKLOAD MiB [SECONDS]";
pub const STRESS_HELP: &str =
    "run a reclaim workload (uniform|zipf|hotscan|loop|phase) in a user task, verify every page";

/// Accesses per page of footprint when no duration is given.
const ACCESSES_PER_PAGE: u64 = 4;
/// The workload's seed (the simulator replays the same stream with it).
const SEED: u64 = 1;

/// Counters a `stress` run reports as differences.
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

/// What the stress task's address space looked like when it ended.
struct TaskView {
    faults: crate::mm::aspace::SpaceFaults,
    /// Resident pages outside the workload mapping (code, stack, bookkeeping).
    other_resident: usize,
}

pub fn stress(args: &[&str]) -> CommandResult {
    let usage = || CommandError::new(alloc::format!("usage: stress {STRESS_USAGE}"));
    let (kind, mib, seconds) = match args {
        [kind, mib] => (kind, mib, 0),
        [kind, mib, seconds] => (kind, mib, parse_number(seconds)?),
        _ => return Err(usage()),
    };
    let kind: WorkloadKind = kind
        .parse()
        .map_err(|err| CommandError::new(alloc::format!("{err}")))?;
    let mib = parse_number(mib)?;
    if mib == 0 || mib > 4096 {
        return Err(CommandError::new("MiB must be 1 to 4096"));
    }
    let pages = mib * 256;
    let accesses = if seconds == 0 {
        ACCESSES_PER_PAGE * pages
    } else {
        0
    };
    let before = Snapshot::take();
    let others = vmscan::tracked();
    let arguments = alloc::format!("{} {pages} {accesses} {seconds} {SEED}", kind.name());
    let thread = crate::task::user::spawn("stress", &arguments, crate::ipc::CapabilityTable::new())
        .map_err(|err| CommandError::new(alloc::format!("stress: {err}")))?;
    let code = crate::task::wait(thread.id()).unwrap_or(-1);
    // The exited task's address space lives as long as its thread: look at it, then let go.
    let view = thread.user().map(|task| {
        let space = task.space.lock();
        let workload = space
            .regions()
            .iter()
            .find(|region| region.end - region.start == pages * crate::mm::PAGE_SIZE)
            .map_or(0, |region| space.resident_in(region));
        TaskView {
            faults: space.faults(),
            other_resident: space.resident_pages() - workload,
        }
    });
    drop(thread);
    let after = Snapshot::take();
    if code < 0 {
        return Err(CommandError::new(alloc::format!(
            "the workload failed (exit code {code})"
        )));
    }
    let view = view.ok_or_else(|| CommandError::new("the stress task vanished"))?;
    let accesses = code as u64;
    let reclaimed = after.reclaimed - before.reclaimed;
    let reclaim_ns = crate::time::ticks_to_ns(after.reclaim_ticks - before.reclaim_ticks);
    println!("policy={}", vmscan::policy_kind());
    println!("workload={}", kind.name());
    println!("pages={pages}");
    println!("seed={SEED}");
    println!("accesses={accesses}");
    println!("major_faults={}", view.faults.swap_in);
    println!("demand_zero_faults={}", view.faults.demand_zero);
    println!("access_flag_faults={}", view.faults.access_flag);
    println!("pages_out={}", after.pages_out - before.pages_out);
    println!("pages_in={}", after.pages_in - before.pages_in);
    println!(
        "dropped_clean={}",
        after.dropped_clean - before.dropped_clean
    );
    println!("reclaimed={reclaimed}");
    println!(
        "run_ns={}",
        crate::time::ticks_to_ns(after.ticks - before.ticks)
    );
    println!("reclaim_ns={reclaim_ns}");
    println!("reclaim_ns_per_page={}", reclaim_ns / reclaimed.max(1));
    if let Some(limit) = vmscan::limit() {
        compare_with_simulator(kind, pages, accesses, limit, others, &view)?;
    }
    Ok(())
}

/// Replays the same access sequence through the reclaim crate's model (what `sim` runs) with
/// the frames the workload had under the limit, and prints both fault counts. The sequence is
/// the workload's accesses followed by the task's final check: one read of every touched page,
/// in page order.
fn compare_with_simulator(
    kind: WorkloadKind,
    pages: u64,
    accesses: u64,
    limit: u32,
    others: u32,
    view: &TaskView,
) -> CommandResult {
    let frames = limit
        .saturating_sub(others)
        .saturating_sub(view.other_resident as u32);
    let layout = PageLayout::contiguous(pages as u32);
    let mut machine = Machine::new(vmscan::policy_kind(), &layout, MachineConfig::new(frames))
        .map_err(|err| CommandError::new(alloc::format!("simulator: {err:?}")))?;
    let mut workload = Workload::new(kind, SEED, pages as u32)
        .map_err(|err| CommandError::new(alloc::format!("{err}")))?;
    let mut touched = alloc::vec![false; pages as usize];
    let checks = (0..accesses)
        .map(|_| {
            let access = workload.next_access();
            touched[access.page as usize] = true;
            access
        })
        .collect::<alloc::vec::Vec<_>>();
    let final_check = (0..pages as u32)
        .filter(|&page| touched[page as usize])
        .map(|page| reclaim::workload::Access { page, write: false });
    for access in checks.into_iter().chain(final_check) {
        machine
            .access(access.page, access.write)
            .map_err(|err| CommandError::new(alloc::format!("simulator: {err}")))?;
    }
    let simulated = machine.stats();
    // The task's other pages fault in once each; the workload's faults are the rest.
    let kernel =
        (view.faults.demand_zero + view.faults.swap_in).saturating_sub(view.other_resident as u64);
    let ratio_x100 = kernel * 100 / simulated.faults.max(1);
    println!("sim_frames={frames}");
    println!("sim_faults={}", simulated.faults);
    println!("sim_swap_writes={}", simulated.swap_writes);
    println!("kernel_faults={kernel}");
    println!("kernel_vs_sim={}.{:02}", ratio_x100 / 100, ratio_x100 % 100);
    Ok(())
}
