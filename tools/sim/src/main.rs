//! Trace-driven page-reclaim simulator: replays built-in workloads or Valgrind Lackey traces
//! through every policy of crate `reclaim` (the same code the kernel runs, in its memory model)
//! and through Belady's OPT, and reports faults relative to OPT. It also plots MGLRU's
//! generation sizes over time from the kernel's `lru watch` samples (`--lru-log`).
//! `cargo sim -- --help`.

mod args;
mod generations;
mod lackey;
mod opt;
mod report;
mod svg;
mod trace;

use std::fs::File;
use std::io::{BufReader, BufWriter, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use reclaim::PolicyKind;
use reclaim::model::{Machine, MachineConfig, Watermarks};

use crate::args::{Command, GenerationsPlot, Options, Sizes, Source};
use crate::report::Row;
use crate::trace::{Trace, WRITE_BIT};

fn main() -> ExitCode {
    match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", args::HELP);
            ExitCode::SUCCESS
        }
        Ok(Command::Run(options)) => finish(run(&options)),
        Ok(Command::Generations(plot)) => finish(plot_generations(&plot)),
        Err(err) => {
            eprintln!("sim: {err}");
            ExitCode::from(2)
        }
    }
}

fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sim: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--lru-log FILE --svg PATH`: the generations plot.
fn plot_generations(plot: &GenerationsPlot) -> Result<(), String> {
    let log =
        std::fs::read(&plot.log).map_err(|e| format!("cannot read {}: {e}", plot.log.display()))?;
    let samples = generations::parse(&String::from_utf8_lossy(&log))
        .map_err(|e| format!("{}: {e}", plot.log.display()))?;
    std::fs::write(&plot.svg, generations::svg(&samples, &plot.title))
        .map_err(|e| format!("cannot write {}: {e}", plot.svg.display()))?;
    let span_ms = samples.last().map_or(0, |s| s.t_ms) - samples[0].t_ms;
    eprintln!(
        "sim: {} samples over {span_ms} ms of guest time -> {}",
        samples.len(),
        plot.svg.display()
    );
    Ok(())
}

/// Faults and swap writes of one simulation.
#[derive(Clone, Copy, Debug)]
struct Outcome {
    faults: u64,
    swap_writes: u64,
}

/// One simulation: a policy (`None` = OPT) at a memory size on a trace.
struct Job {
    trace: usize,
    frames: u32,
    policy: Option<PolicyKind>,
}

fn run(options: &Options) -> Result<(), String> {
    let traces = load(options)?;
    if let Some(path) = &options.emit_lackey {
        return emit_lackey(&traces[0], path);
    }
    let next_uses: Vec<Vec<u32>> = traces
        .iter()
        .map(|t| opt::next_uses(&t.accesses, t.pages()))
        .collect();
    let mut jobs = Vec::new();
    for (index, trace) in traces.iter().enumerate() {
        for frames in sizes(&options.sizes, trace.pages()) {
            jobs.push(Job {
                trace: index,
                frames,
                policy: None,
            });
            jobs.extend(options.policies.iter().map(|&kind| Job {
                trace: index,
                frames,
                policy: Some(kind),
            }));
        }
    }
    let outcomes = simulate_all(options, &traces, &next_uses, &jobs)?;
    let rows = rows(&traces, &jobs, &outcomes);
    let names: Vec<&'static str> = options.policies.iter().map(|k| k.name()).collect();
    let mut stdout = std::io::stdout().lock();
    if options.csv {
        write!(stdout, "{}", report::csv(&rows)).map_err(|e| e.to_string())?;
    } else {
        for trace in &traces {
            let trace_rows: Vec<Row> = rows
                .iter()
                .filter(|r| r.source == trace.name)
                .cloned()
                .collect();
            let title = format!(
                "{}: {} pages, {} accesses",
                trace.name,
                trace.pages(),
                trace.accesses.len()
            );
            writeln!(stdout, "{}", report::table(&title, &trace_rows))
                .map_err(|e| e.to_string())?;
        }
        if traces.len() > 1 {
            write!(stdout, "{}", report::summary(&rows, &names)).map_err(|e| e.to_string())?;
        }
    }
    if let Some(path) = &options.svg {
        std::fs::write(path, report::svg(&rows, &names))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

fn load(options: &Options) -> Result<Vec<Trace>, String> {
    match &options.source {
        Source::Workloads(kinds) => kinds
            .iter()
            .map(|&kind| Trace::from_workload(kind, options.seed, options.pages, options.accesses))
            .collect(),
        Source::Trace(None) => {
            let stdin = std::io::stdin().lock();
            Ok(vec![
                Trace::from_lackey("stdin".into(), stdin, options.strict)
                    .map_err(|e| e.to_string())?,
            ])
        }
        Source::Trace(Some(path)) => {
            let file =
                File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let name = path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            let reader = BufReader::with_capacity(1 << 20, file);
            Ok(vec![
                Trace::from_lackey(name, reader, options.strict).map_err(|e| e.to_string())?,
            ])
        }
    }
}

/// Frame counts for a footprint of `pages`.
fn sizes(sizes: &Sizes, pages: u32) -> Vec<u32> {
    match sizes {
        Sizes::Frames(frames) => frames.clone(),
        Sizes::Percent(percents) => percents
            .iter()
            .map(|&p| (u64::from(pages) * u64::from(p)).div_ceil(100).max(1) as u32)
            .collect(),
    }
}

fn simulate_all(
    options: &Options,
    traces: &[Trace],
    next_uses: &[Vec<u32>],
    jobs: &[Job],
) -> Result<Vec<Outcome>, String> {
    let workers = options
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let next_job = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Outcome, String>>>> =
        Mutex::new(jobs.iter().map(|_| None).collect());
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let last_log = Mutex::new(start);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(jobs.len()).max(1) {
            scope.spawn(|| {
                loop {
                    let index = next_job.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else { break };
                    let trace = &traces[job.trace];
                    let outcome = match job.policy {
                        None => {
                            let r = opt::simulate(
                                &trace.accesses,
                                &next_uses[job.trace],
                                trace.pages(),
                                usable_frames(job.frames),
                            );
                            Ok(Outcome {
                                faults: r.faults,
                                swap_writes: r.swap_writes,
                            })
                        }
                        Some(kind) => simulate_policy(kind, trace, job.frames, options.min_ttl_ms),
                    };
                    if let Ok(mut slots) = results.lock() {
                        slots[index] = Some(outcome);
                    }
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    let elapsed = start.elapsed().as_secs_f64();
                    if tty {
                        eprint!(
                            "\rsim: {finished}/{} simulations ({elapsed:.1} s)",
                            jobs.len()
                        );
                    } else if let Ok(mut last) = last_log.lock()
                        && last.elapsed().as_secs_f64() >= 5.0
                    {
                        // Long runs log their progress every 5 s (short ones stay quiet).
                        *last = Instant::now();
                        eprintln!(
                            "sim: {finished}/{} simulations ({elapsed:.1} s)",
                            jobs.len()
                        );
                    }
                }
            });
        }
    });
    if tty {
        eprintln!();
    }
    let slots = results
        .into_inner()
        .map_err(|_| "a simulation thread panicked".to_string())?;
    slots
        .into_iter()
        .map(|slot| slot.unwrap_or_else(|| Err("a simulation did not run".into())))
        .collect()
}

/// Frames a policy can fill on a machine of `frames` frames: the model keeps at least the low
/// watermark free (it reclaims when an allocation finds `free <= low`), so OPT, the floor every
/// policy is measured against, gets the same memory rather than the whole machine.
fn usable_frames(frames: u32) -> u32 {
    frames - Watermarks::for_frames(frames).low
}

fn simulate_policy(
    kind: PolicyKind,
    trace: &Trace,
    frames: u32,
    min_ttl_ms: u64,
) -> Result<Outcome, String> {
    let mut config = MachineConfig::new(frames);
    config.policy.min_ttl_ms = min_ttl_ms;
    let mut machine = Machine::new(kind, &trace.layout, config).map_err(|e| e.to_string())?;
    for &access in &trace.accesses {
        machine
            .access(access & !WRITE_BIT, access & WRITE_BIT != 0)
            .map_err(|e| format!("{kind} on {} with {frames} frames: {e}", trace.name))?;
    }
    let stats = machine.stats();
    Ok(Outcome {
        faults: stats.faults,
        swap_writes: stats.swap_writes,
    })
}

fn rows(traces: &[Trace], jobs: &[Job], outcomes: &[Outcome]) -> Vec<Row> {
    let mut rows = Vec::with_capacity(jobs.len());
    let mut opt_faults = 0;
    for (job, outcome) in jobs.iter().zip(outcomes) {
        if job.policy.is_none() {
            opt_faults = outcome.faults.max(1);
        }
        let trace = &traces[job.trace];
        rows.push(Row {
            source: trace.name.clone(),
            policy: job.policy.map_or("opt", PolicyKind::name),
            frames: job.frames,
            percent: 100.0 * f64::from(job.frames) / f64::from(trace.pages()),
            faults: outcome.faults,
            vs_opt: outcome.faults as f64 / opt_faults as f64,
            swap_writes: outcome.swap_writes,
        });
    }
    rows
}

/// Write a workload as a Lackey trace (loads and stores at increasing offsets in each page).
fn emit_lackey(trace: &Trace, path: &std::path::Path) -> Result<(), String> {
    let file = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let write_all = |out: &mut BufWriter<File>| -> std::io::Result<()> {
        writeln!(
            out,
            "==0== synthetic {} trace, {} accesses",
            trace.name,
            trace.accesses.len()
        )?;
        for (i, &access) in trace.accesses.iter().enumerate() {
            let op = if access & WRITE_BIT != 0 { 'S' } else { 'L' };
            let addr =
                ((0x10000 + u64::from(access & !WRITE_BIT)) << 12) | ((i as u64 * 8) & 0xff8);
            writeln!(out, " {op} {addr:08x},8")?;
        }
        out.flush()
    };
    write_all(&mut out).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
