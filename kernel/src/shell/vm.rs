//! Page-reclaim commands: `lru` (the policy's lists or generations, once or sampled over time),
//! `swap` (the swap area), `vmstat` (fault and reclaim counters) and `stress` (a seeded workload
//! in a user task, with the simulator's prediction for the same access sequence when a
//! user-memory limit is set).

use super::{CommandError, CommandResult, commands::parse_number};
use crate::console::Stdout;
use crate::mm::stress;
use crate::mm::{swap, vmscan};
use crate::{print, println};
use core::sync::atomic::{AtomicU64, Ordering};
use reclaim::workload::WorkloadKind;

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

pub const LRU_USAGE: &str = "[mglru|lru2|clock|clockpro | watch INTERVAL_MS COUNT]";

pub fn lru(args: &[&str]) -> CommandResult {
    match args {
        [] => {}
        ["watch", interval_ms, count] => {
            return watch(parse_number(interval_ms)?, parse_number(count)?);
        }
        ["watch", ..] => {
            return Err(CommandError::new("usage: lru watch INTERVAL_MS COUNT"));
        }
        [name] => {
            let kind: reclaim::PolicyKind = name
                .parse()
                .map_err(|err| CommandError::new(alloc::format!("{err}")))?;
            return vmscan::set_policy(kind)
                .map_err(|err| CommandError::new(alloc::format!("{err}")));
        }
        _ => return Err(CommandError::new(alloc::format!("usage: lru {LRU_USAGE}"))),
    }
    println!("policy={}", vmscan::policy_kind());
    vmscan::write_policy_debug(crate::time::uptime_us() / 1000, &mut Stdout)?;
    Ok(())
}

/// `lru watch INTERVAL_MS COUNT`: COUNT samples of the policy's debug view, INTERVAL_MS of guest
/// time apart, each after a line `lru_sample t_ms=<guest ms since boot>` (the time the view is
/// taken at). The shell sleeps between samples, so a workload started with `run ... &` keeps
/// running; `cargo xtask plots` draws MGLRU's generation sizes from these samples.
fn watch(interval_ms: u64, count: u64) -> CommandResult {
    if count == 0 {
        return Err(CommandError::new("watch: COUNT must be at least 1"));
    }
    println!("policy={}", vmscan::policy_kind());
    let start_us = crate::time::uptime_us();
    for index in 0..count {
        let due_us =
            start_us.saturating_add(index.saturating_mul(interval_ms).saturating_mul(1000));
        crate::task::sleep_us(due_us.saturating_sub(crate::time::uptime_us()));
        let now_ms = crate::time::uptime_us() / 1000;
        // One console write per sample, formatted first: the policy's lock is not held while
        // the UART drains, and a background task's output cannot land inside a sample.
        let mut sample = alloc::format!("lru_sample t_ms={now_ms}\n");
        vmscan::write_policy_debug(now_ms, &mut sample)?;
        print!("{sample}");
    }
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

pub fn stress(args: &[&str]) -> CommandResult {
    let (kind, mib, seconds) = match args {
        [kind, mib] => (kind, mib, 0),
        [kind, mib, seconds] => (kind, mib, parse_number(seconds)?),
        _ => {
            return Err(CommandError::new(alloc::format!(
                "usage: stress {STRESS_USAGE}"
            )));
        }
    };
    let kind: WorkloadKind = kind
        .parse()
        .map_err(|err| CommandError::new(alloc::format!("{err}")))?;
    let report = stress::run(kind, parse_number(mib)?, seconds)
        .map_err(|err| CommandError::new(alloc::format!("{err}")))?;
    println!("policy={}", report.policy);
    println!("workload={}", kind.name());
    println!("pages={}", report.pages);
    println!("seed={}", stress::SEED);
    println!("accesses={}", report.accesses);
    println!("major_faults={}", report.faults.swap_in);
    println!("demand_zero_faults={}", report.faults.demand_zero);
    println!("access_flag_faults={}", report.faults.access_flag);
    println!("pages_out={}", report.pages_out);
    println!("pages_in={}", report.pages_in);
    println!("dropped_clean={}", report.dropped_clean);
    println!("reclaimed={}", report.reclaimed);
    println!("run_ns={}", report.run_ns);
    println!("reclaim_ns={}", report.reclaim_ns);
    println!(
        "reclaim_ns_per_page={}",
        report.reclaim_ns / report.reclaimed.max(1)
    );
    if let Some(limit) = vmscan::limit() {
        let prediction = stress::predict(&report, limit)
            .map_err(|err| CommandError::new(alloc::format!("simulator: {err}")))?;
        let ratio = prediction.ratio_x100();
        println!("sim_frames={}", prediction.frames);
        println!("sim_faults={}", prediction.stats.faults);
        println!("sim_swap_writes={}", prediction.stats.swap_writes);
        println!("kernel_faults={}", prediction.kernel_faults);
        println!("kernel_vs_sim={}.{:02}", ratio / 100, ratio % 100);
    }
    Ok(())
}
