//! The shell's commands. Statistics are printed as `key=value` lines, one per line, so that
//! scripts can parse what people read.

use super::{Command, CommandError, CommandResult};
use crate::console::Stdout;
use crate::println;
use core::fmt::Write;

#[rustfmt::skip]
static COMMANDS: &[Command] = &[
    Command { name: "help", usage: "", help: "list the commands", run: help },
    Command { name: "mem", usage: "", help: "memory map, free/used frames, heap use", run: mem },
    Command { name: "pt", usage: "VA [TASK]", help: "walk the page tables for VA level by level (user addresses: in TASK's space)", run: pt },
    Command { name: "dtb", usage: "[tree]", help: "machine summary from the devicetree; `tree` prints the whole tree", run: dtb },
    Command { name: "irq", usage: "", help: "interrupt controller and per-interrupt counts", run: irq },
    Command { name: "ps", usage: "", help: "threads and tasks: state, CPU, runtime, memory, faults", run: ps },
    Command { name: "run", usage: "PROGRAM [ARGS] [&]", help: "start a user program (wait for it unless `&`); `run` lists them", run: run_program },
    Command { name: "kill", usage: "ID", help: "end a user task", run: kill },
    Command { name: "uptime", usage: "", help: "time since boot and timer statistics", run: uptime },
    Command { name: "blk", usage: super::blk::USAGE, help: super::blk::HELP, run: super::blk::run },
    Command { name: "lru", usage: super::vm::LRU_USAGE, help: "reclaim policy state (MGLRU: generations and tiers), or switch policy while no task runs", run: super::vm::lru },
    Command { name: "swap", usage: "", help: "swap area: slots and page counts", run: super::vm::swap },
    Command { name: "vmstat", usage: "", help: "fault and reclaim counters, watermarks", run: super::vm::vmstat },
    Command { name: "stress", usage: super::vm::STRESS_USAGE, help: super::vm::STRESS_HELP, run: super::vm::stress },
    Command { name: "trace", usage: super::trace::USAGE, help: super::trace::HELP, run: super::trace::run },
    Command { name: "bench", usage: "mm|tasks [N]", help: "micro-benchmarks (guest instructions per operation with QEMU_ICOUNT=1)", run: bench },
    Command { name: "poweroff", usage: "", help: "power the machine off (Ctrl-D too); exit status 1 if a command failed", run: poweroff },
];

pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|command| command.name == name)
}

fn no_args(args: &[&str]) -> CommandResult {
    match args.first() {
        Some(extra) => Err(CommandError::new(alloc::format!(
            "unexpected argument `{extra}`"
        ))),
        None => Ok(()),
    }
}

fn help(args: &[&str]) -> CommandResult {
    no_args(args)?;
    for command in COMMANDS {
        let synopsis = alloc::format!("{} {}", command.name, command.usage);
        println!("  {synopsis:<28} {}", command.help);
    }
    Ok(())
}

fn mem(args: &[&str]) -> CommandResult {
    no_args(args)?;
    let machine = crate::init::machine();
    println!("ram_bytes={}", machine.ram_size());
    for (i, region) in machine.ram.iter().enumerate() {
        println!("ram{i}={:#x}-{:#x}", region.base, region.base + region.size);
    }
    let image = crate::mm::image_layout();
    println!(
        "kernel_text={:#x}-{:#x} rx",
        image.text.start, image.text.end
    );
    println!(
        "kernel_rodata={:#x}-{:#x} r",
        image.rodata.start, image.rodata.end
    );
    println!(
        "kernel_data={:#x}-{:#x} rw",
        image.data.start, image.data.end
    );
    println!("linear_map={:#x}", crate::mm::layout::LINEAR_BASE);
    println!(
        "kernel_stacks={:#x}-{:#x}",
        crate::mm::layout::STACKS_BASE,
        crate::mm::layout::STACKS_END
    );
    let frames = crate::mm::frame::stats();
    println!("frames_total={}", frames.total);
    println!("frames_free={}", frames.free);
    println!("frames_used={}", frames.total - frames.free);
    println!(
        "frame_metadata_bytes={}",
        crate::mm::vmscan::metadata_bytes()
    );
    let heap = crate::mm::heap::stats();
    println!("heap_chunks={}", heap.chunks);
    println!("heap_bytes={}", heap.size);
    println!("heap_used={}", heap.used);
    println!("heap_failures={}", heap.failures);
    Ok(())
}

/// Parses a number in decimal or with a 0x prefix (underscores allowed).
pub fn parse_number(text: &str) -> Result<u64, CommandError> {
    let digits = text.replace('_', "");
    let parsed = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse(),
    };
    parsed.map_err(|_| CommandError::new(alloc::format!("`{text}` is not a number")))
}

fn pt(args: &[&str]) -> CommandResult {
    let (va, task) = match args {
        [va] => (va, None),
        [va, task] => (va, Some(parse_number(task)?)),
        _ => return Err(CommandError::new("usage: pt VA [TASK]")),
    };
    let va = crate::mm::VirtAddr::new(parse_number(va)?)
        .map_err(|err| CommandError::new(alloc::format!("{err}")))?;
    let walk = match (va.half(), task) {
        (pagetable::Half::Kernel, None) => crate::mm::kernel_space::walk(va),
        (pagetable::Half::Kernel, Some(_)) => {
            return Err(CommandError::new(
                "a kernel address has no task: leave TASK out",
            ));
        }
        (pagetable::Half::User, None) => {
            return Err(CommandError::new(
                "a user address needs the TASK whose address space to walk (see `ps`)",
            ));
        }
        (pagetable::Half::User, Some(id)) => {
            let thread = crate::task::find(crate::task::ThreadId(id))
                .ok_or_else(|| CommandError::new(alloc::format!("no task {id}")))?;
            let task = thread.user().ok_or_else(|| {
                CommandError::new(alloc::format!("thread {id} is a kernel thread"))
            })?;
            task.space.lock().tables().walk(va)
        }
    };
    println!("{walk}");
    Ok(())
}

fn dtb(args: &[&str]) -> CommandResult {
    match args {
        [] => devicetree::write_summary(crate::init::machine(), &mut Stdout)?,
        ["tree"] => devicetree::write_tree(crate::init::dtb(), &mut Stdout)?,
        [other, ..] => {
            return Err(CommandError::new(alloc::format!(
                "unknown argument `{other}` (expected `tree` or nothing)"
            )));
        }
    }
    Ok(())
}

fn bench(args: &[&str]) -> CommandResult {
    match args {
        ["tasks", rest @ ..] => {
            let ops = match rest {
                [] => 2000,
                [n] => parse_number(n)?.max(1),
                _ => return Err(CommandError::new("usage: bench tasks [N]")),
            };
            if crate::task::bench::run_all(ops) {
                Ok(())
            } else {
                Err(CommandError::new("a measurement failed"))
            }
        }
        ["mm", rest @ ..] => {
            let iterations = match rest {
                [] => 10_000,
                [n] => parse_number(n)?.max(1),
                _ => return Err(CommandError::new("usage: bench mm [ITERATIONS]")),
            };
            crate::mm::bench::run(&mut Stdout, iterations)?;
            Ok(())
        }
        _ => Err(CommandError::new("usage: bench mm [ITERATIONS]")),
    }
}

fn ps(args: &[&str]) -> CommandResult {
    no_args(args)?;
    let (switches, steals) = crate::task::sched::stats();
    println!(
        "cpus={} context_switches={switches} steals={steals}",
        crate::task::sched::online_cpus()
    );
    println!(
        "{:>5} {:<16} {:<8} {:>3} {:>4} {:>12} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "ID",
        "NAME",
        "STATE",
        "CPU",
        "NICE",
        "RUNTIME_US",
        "RSS_KIB",
        "MINFLT",
        "MAJFLT",
        "SYSCALLS",
        "SWITCHES"
    );
    for thread in crate::task::all() {
        let [rss, minor, major, syscalls] = match thread.user() {
            Some(task) => {
                let (resident, faults) = {
                    let space = task.space.lock();
                    (space.resident_pages(), space.faults())
                };
                [
                    resident as u64 * 4,
                    faults.demand_zero + faults.access_flag,
                    faults.swap_in,
                    task.syscalls.load(core::sync::atomic::Ordering::Relaxed),
                ]
                .map(|value| alloc::format!("{value}"))
            }
            None => ["-"; 4].map(alloc::string::String::from),
        };
        let state = match thread.state() {
            crate::task::RunState::Runnable => "runnable",
            crate::task::RunState::Blocked => "blocked",
            crate::task::RunState::Dead => "dead",
        };
        println!(
            "{:>5} {:<16} {:<8} {:>3} {:>4} {:>12} {:>8} {:>8} {:>8} {:>8} {:>9}",
            thread.id().0,
            thread.name(),
            state,
            thread.cpu(),
            thread.priority().nice(),
            thread.runtime_ns() / 1000,
            rss,
            minor,
            major,
            syscalls,
            thread.switches()
        );
    }
    let faults = &crate::mm::aspace::FAULTS;
    let load = |counter: &core::sync::atomic::AtomicU64| {
        counter.load(core::sync::atomic::Ordering::Relaxed)
    };
    println!(
        "faults_demand_zero={} faults_access_flag={} faults_write={} faults_unresolved={}",
        load(&faults.demand_zero),
        load(&faults.access_flag),
        load(&faults.write),
        load(&faults.unresolved)
    );
    Ok(())
}

fn run_program(args: &[&str]) -> CommandResult {
    let Some((program, rest)) = args.split_first() else {
        let names: alloc::vec::Vec<&str> = crate::task::programs::PROGRAMS
            .iter()
            .map(|(name, _)| *name)
            .collect();
        println!("programs: {}", names.join(" "));
        return Ok(());
    };
    let (background, rest) = match rest.split_last() {
        Some((&"&", before)) => (true, before),
        _ => (false, rest),
    };
    let arguments = rest.join(" ");
    let thread = crate::task::user::spawn(program, &arguments, capabilities_for(program))
        .map_err(|err| CommandError::new(alloc::format!("{program}: {err}")))?;
    let id = thread.id();
    if background {
        crate::task::detach(&thread);
        println!("started task {id}");
        return Ok(());
    }
    drop(thread);
    match crate::task::wait(id) {
        Some(0) => Ok(()),
        Some(code) => Err(CommandError::new(alloc::format!(
            "{program} exited with {code}"
        ))),
        None => Err(CommandError::new(alloc::format!("task {id} vanished"))),
    }
}

/// What the shell, as the root task, gives a program it starts: the block server (`blkd`) the
/// first user-mode device no task drives (slot 0) and the block service endpoint (slot 1); its
/// client (`blkcat`) that endpoint (slot 0); other programs nothing.
fn capabilities_for(program: &str) -> crate::ipc::CapabilityTable {
    use crate::ipc::{Capability, Endpoint};
    static BLOCK_SERVICE: spin::Once<alloc::sync::Arc<Endpoint>> = spin::Once::new();
    let service = || Capability::Endpoint(BLOCK_SERVICE.call_once(Endpoint::new).clone());
    let mut table = crate::ipc::CapabilityTable::new();
    let mut give = |slot, capability| table.set(slot, capability).expect("slots 0 and 1 exist");
    match program {
        "blkd" => {
            if let Some(device) = crate::drivers::virtio::first_free_user_device() {
                give(0, Capability::Device(device));
            }
            give(1, service());
        }
        "blkcat" => give(0, service()),
        _ => {}
    }
    table
}

fn kill(args: &[&str]) -> CommandResult {
    let [id] = args else {
        return Err(CommandError::new("usage: kill ID"));
    };
    let id = crate::task::ThreadId(parse_number(id)?);
    if !crate::task::kill(id, -9) {
        return Err(CommandError::new(alloc::format!("no user task {}", id.0)));
    }
    if let Some(code) = crate::task::wait(id) {
        println!("task {} ended with {code}", id.0);
    }
    Ok(())
}

fn irq(args: &[&str]) -> CommandResult {
    no_args(args)?;
    crate::irq::write_stats(&mut Stdout)?;
    Ok(())
}

fn uptime(args: &[&str]) -> CommandResult {
    no_args(args)?;
    let us = crate::time::uptime_us();
    let mut out = Stdout;
    writeln!(out, "uptime_s={}.{:06}", us / 1_000_000, us % 1_000_000)?;
    writeln!(out, "uptime_us={us}")?;
    writeln!(out, "counter_hz={}", crate::time::frequency())?;
    writeln!(out, "ticks={}", crate::time::ticks())?;
    writeln!(out, "tick_hz={}", crate::time::TICK_HZ)?;
    writeln!(out, "timer_irqs={}", crate::time::timer_irqs())?;
    Ok(())
}

fn poweroff(args: &[&str]) -> CommandResult {
    no_args(args)?;
    super::power_off()
}
