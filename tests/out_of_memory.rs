//! Out of memory and swap: a 64 MiB machine with 16 MiB of swap cannot hold 120 MiB. The task
//! asking for it is killed with an out-of-memory report; the kernel keeps running, gets all its
//! memory and swap back, and runs the next task normally.
#![no_std]
#![no_main]

extern crate alloc;

mod reclaim_common;

use reclaim_common::{all_released, run};

use core::sync::atomic::Ordering;
use kernel::ktest::prelude::*;
use kernel::mm::{frame, swap, vmscan};
use kernel::task::user;

kernel::entry_point!(kernel::ktest::main);
qemu_config!("memory 64M\ndisk swap size=16M\n");

ktest! {
    timeout_secs = 240;

    fn exhausting_memory_and_swap_kills_the_task_cleanly() -> TestResult {
        let free_before = frame::stats().free;
        let oom_before = vmscan::COUNTERS.oom.load(Ordering::Relaxed);
        check_eq!(run("hog", "120")?, user::KILLED_BY_FAULT);
        check!(vmscan::COUNTERS.oom.load(Ordering::Relaxed) > oom_before, "counted as out of memory");
        let stats = swap::stats();
        check!(stats.pages_out >= 16 * 256 - 64, "swap filled up first ({} pages out)", stats.pages_out);
        check!(all_released(), "the dead task's swap and memory are free again");
        check!(frame::stats().free + 64 >= free_before, "its frames too ({} of {free_before})", frame::stats().free);
        // Life goes on: a task that fits in memory plus swap runs and verifies.
        check_eq!(run("hog", "60")?, 0);
        check_ok!(vmscan::check_invariants());
        Ok(())
    }
}
