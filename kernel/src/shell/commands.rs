//! The shell's commands. Statistics are printed as `key=value` lines, one per line, so that
//! scripts can parse what people read.

use super::{Command, CommandError, CommandResult};
use crate::console::Stdout;
use crate::println;
use core::fmt::Write;

static COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "",
        help: "list the commands",
        run: help,
    },
    Command {
        name: "mem",
        usage: "",
        help: "memory map, free/used frames, heap use",
        run: mem,
    },
    Command {
        name: "dtb",
        usage: "[tree]",
        help: "machine summary from the devicetree; `tree` prints the whole tree",
        run: dtb,
    },
    Command {
        name: "irq",
        usage: "",
        help: "interrupt controller and per-interrupt counts",
        run: irq,
    },
    Command {
        name: "uptime",
        usage: "",
        help: "time since boot and timer statistics",
        run: uptime,
    },
    Command {
        name: "blk",
        usage: super::blk::USAGE,
        help: super::blk::HELP,
        run: super::blk::run,
    },
    Command {
        name: "poweroff",
        usage: "",
        help: "power the machine off (Ctrl-D too); exit status 1 if a command failed",
        run: poweroff,
    },
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
    let image = crate::mm::kernel_image();
    println!("kernel_image={:#x}-{:#x}", image.start, image.end);
    let frames = crate::mm::frame::stats();
    println!("frames_total={}", frames.total);
    println!("frames_free={}", frames.free);
    println!("frames_used={}", frames.total - frames.free);
    let heap = crate::mm::heap::stats();
    println!("heap_chunks={}", heap.chunks);
    println!("heap_bytes={}", heap.size);
    println!("heap_used={}", heap.used);
    println!("heap_failures={}", heap.failures);
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
