//! Helpers shared by the reclaim test images.

use kernel::ipc::CapabilityTable;
use kernel::ktest::prelude::*;
use kernel::mm::{swap, vmscan};
use kernel::task::{self, user};

/// Runs `program args` as a task and returns its exit code.
pub fn run(program: &str, args: &str) -> Result<i64, Failure> {
    let thread = user::spawn(program, args, CapabilityTable::new())
        .map_err(|err| Failure::new(file!(), line!(), alloc::format!("spawn {program}: {err}")))?;
    task::wait(thread.id()).ok_or_else(|| {
        Failure::new(
            file!(),
            line!(),
            alloc::string::String::from("the task vanished"),
        )
    })
}

/// Waits (up to 20 s of guest time) until no user page and no swap slot is left: an ended task's
/// address space goes when its last reference does, which can be a reclaimer on another CPU
/// finishing a write of one of its pages, and tearing down 128 MiB while kswapd still works on
/// the pressure it left takes a few seconds under TCG with several CPUs (about 3 s measured on
/// -smp 2). Returns whether everything was released.
pub fn all_released() -> bool {
    for _ in 0..20_000 {
        if vmscan::tracked() == 0 && swap::stats().slots_used == 0 {
            return true;
        }
        task::sleep_us(1000);
    }
    false
}
