//! Which log records print: the kernel-wide level (`loglevel=`, default `info`) plus
//! per-subsystem tracing. Tracing a subsystem (`trace=virtio,mm` on the kernel command line,
//! `trace virtio on` in the shell) lets its `debug` and `trace` records through while the rest of
//! the kernel stays at the kernel-wide level.
//!
//! A record belongs to a subsystem by its `log` target: the subsystem's short name (trace points
//! say `target: "virtio"`) or a kernel module below the subsystem's modules (`kernel::mm`
//! covers `kernel::mm::aspace`, the default target of records logged there).

use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use log::{Level, LevelFilter};

/// A group of log targets switched on and off together.
pub struct Subsystem {
    /// The name `trace=` and the `trace` command take (also the target of its trace points).
    pub name: &'static str,
    /// Kernel modules whose records belong to it.
    modules: &'static [&'static str],
    /// What its debug and trace records show.
    pub shows: &'static str,
}

#[rustfmt::skip]
pub static SUBSYSTEMS: &[Subsystem] = &[
    Subsystem { name: "virtio", modules: &["kernel::drivers::virtio"], shows: "block requests submitted and completed, queue resizes" },
    Subsystem { name: "mm", modules: &["kernel::mm"], shows: "user-half page faults and how each was resolved" },
    Subsystem { name: "reclaim", modules: &[], shows: "each reclaim round (isolated, written, freed) and why a fault ran out of memory" },
    Subsystem { name: "swap", modules: &[], shows: "the swap device chosen and every swap I/O error" },
    Subsystem { name: "sched", modules: &["kernel::task", "kernel::smp"], shows: "threads created and ended" },
    Subsystem { name: "syscall", modules: &["kernel::syscall", "kernel::ipc"], shows: "every system call with its arguments and result" },
    Subsystem { name: "irq", modules: &["kernel::irq", "kernel::drivers::gic"], shows: "handlers registered and removed, every interrupt taken" },
];

/// Bit i set: `SUBSYSTEMS[i]` is traced.
static TRACED: AtomicU32 = AtomicU32::new(0);
/// The kernel-wide level, as `LevelFilter as usize`.
static LEVEL: AtomicUsize = AtomicUsize::new(LevelFilter::Info as usize);

const LEVELS: [LevelFilter; 6] = [
    LevelFilter::Off,
    LevelFilter::Error,
    LevelFilter::Warn,
    LevelFilter::Info,
    LevelFilter::Debug,
    LevelFilter::Trace,
];

/// The kernel-wide level.
pub fn level() -> LevelFilter {
    LEVELS[LEVEL.load(Ordering::Relaxed).min(LEVELS.len() - 1)]
}

/// Sets the kernel-wide level.
pub fn set_level(level: LevelFilter) {
    LEVEL.store(level as usize, Ordering::Relaxed);
    update_max_level();
}

/// `log`'s own filter runs before the logger: it must let everything a traced subsystem logs
/// through, and nothing more when no subsystem is traced.
pub(crate) fn update_max_level() {
    log::set_max_level(if TRACED.load(Ordering::Relaxed) != 0 {
        LevelFilter::Trace
    } else {
        level()
    });
}

/// Parses a `loglevel=` value.
pub fn parse_level(name: &str) -> Option<LevelFilter> {
    LEVELS
        .into_iter()
        .find(|level| level.as_str().eq_ignore_ascii_case(name))
}

/// The index of the subsystem called `name`.
fn find(name: &str) -> Option<usize> {
    SUBSYSTEMS
        .iter()
        .position(|subsystem| subsystem.name == name)
}

/// A subsystem name that is not in [`SUBSYSTEMS`].
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownSubsystem<'a>(pub &'a str);

impl core::fmt::Display for UnknownSubsystem<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "unknown subsystem `{}` (one of:", self.0)?;
        for subsystem in SUBSYSTEMS {
            write!(f, " {}", subsystem.name)?;
        }
        f.write_str(")")
    }
}

/// Switches tracing of subsystem `name` on or off.
pub fn set_traced(name: &str, on: bool) -> Result<(), UnknownSubsystem<'_>> {
    let bit = 1 << find(name).ok_or(UnknownSubsystem(name))?;
    if on {
        TRACED.fetch_or(bit, Ordering::Relaxed);
    } else {
        TRACED.fetch_and(!bit, Ordering::Relaxed);
    }
    update_max_level();
    Ok(())
}

fn is_traced(index: usize) -> bool {
    TRACED.load(Ordering::Relaxed) & (1 << index) != 0
}

/// Every subsystem with whether it is traced.
pub fn subsystems() -> impl Iterator<Item = (&'static Subsystem, bool)> {
    SUBSYSTEMS
        .iter()
        .enumerate()
        .map(|(index, subsystem)| (subsystem, is_traced(index)))
}

/// True if `target` is `prefix` or a module below it.
fn within(target: &str, prefix: &str) -> bool {
    target
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// The index of the subsystem a record with this `target` belongs to.
fn subsystem_of(target: &str) -> Option<usize> {
    SUBSYSTEMS.iter().position(|subsystem| {
        target == subsystem.name
            || subsystem
                .modules
                .iter()
                .any(|module| within(target, module))
    })
}

/// Whether a record at `level` for `target` prints (the logger's filter).
pub fn enabled(target: &str, level: Level) -> bool {
    level <= self::level() || subsystem_of(target).is_some_and(is_traced)
}

/// Applies `loglevel=` and `trace=` from the kernel command line. Bad values are reported and
/// ignored.
pub fn configure_from_cmdline() {
    if let Some(name) = crate::cmdline::param("loglevel") {
        match parse_level(name) {
            Some(level) => set_level(level),
            None => log::warn!("loglevel={name} is not one of off|error|warn|info|debug|trace"),
        }
    }
    if let Some(names) = crate::cmdline::param("trace") {
        for name in names.split(',').filter(|name| !name.is_empty()) {
            if let Err(err) = set_traced(name, true) {
                log::warn!("trace={names}: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::prelude::*;

    ktest! {
        fn records_follow_the_level_unless_their_subsystem_is_traced() -> TestResult {
            let saved_level = level();
            let saved_traced = TRACED.load(Ordering::Relaxed);
            set_level(LevelFilter::Info);
            TRACED.store(0, Ordering::Relaxed);
            update_max_level();
            check!(enabled("kernel::drivers::virtio::block", Level::Info));
            check!(!enabled("kernel::drivers::virtio::block", Level::Debug));
            check_eq!(log::max_level(), LevelFilter::Info);

            check_ok!(set_traced("virtio", true));
            check_eq!(log::max_level(), LevelFilter::Trace);
            check!(enabled("virtio", Level::Trace));
            check!(enabled("kernel::drivers::virtio::block", Level::Debug));
            check!(enabled("kernel::drivers::virtio", Level::Trace));
            check!(!enabled("kernel::drivers::virtio_net", Level::Debug), "a sibling module is not below it");
            check!(!enabled("mm", Level::Trace), "other subsystems stay at the level");
            check!(!enabled("kernel::shell", Level::Debug));

            check_ok!(set_traced("virtio", false));
            check!(!enabled("virtio", Level::Debug));
            check_eq!(log::max_level(), LevelFilter::Info);

            set_level(saved_level);
            TRACED.store(saved_traced, Ordering::Relaxed);
            update_max_level();
            Ok(())
        }

        fn unknown_subsystems_and_levels_are_refused() -> TestResult {
            check_eq!(set_traced("vfs", true), Err(UnknownSubsystem("vfs")));
            check_eq!(
                alloc::format!("{}", UnknownSubsystem("vfs")),
                "unknown subsystem `vfs` (one of: virtio mm reclaim swap sched syscall irq)"
            );
            check_eq!(parse_level("debug"), Some(LevelFilter::Debug));
            check_eq!(parse_level("off"), Some(LevelFilter::Off));
            check_eq!(parse_level("loud"), None);
            Ok(())
        }
    }
}
