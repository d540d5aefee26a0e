//! Swap I/O errors lose nothing: blkdebug fails the first write to the swap disk and the first
//! read of slot 1. Pages whose write failed stay in memory (their task never notices); the task
//! whose page cannot be read back is killed with a report, and the kernel and later tasks carry
//! on.
#![no_std]
#![no_main]

extern crate alloc;

mod reclaim_common;

use reclaim_common::{all_released, run};

use kernel::ktest::prelude::*;
use kernel::mm::stress::{self, StressError};
use kernel::mm::{swap, vmscan};
use kernel::task::user::KILLED_BY_FAULT;
use reclaim::workload::WorkloadKind;

kernel::entry_point!(kernel::ktest::main);
qemu_config!(
    "memory 64M\n\
     disk swap size=64M blkdebug=event=write_aio,errno=5,once=on;event=read_aio,errno=5,sector=8,once=on\n"
);

ktest! {
    timeout_secs = 240;

    fn a_failed_write_keeps_the_page_and_a_failed_read_kills_only_its_task() -> TestResult {
        vmscan::set_limit(Some(2048));
        let before = swap::stats();
        // 12 MiB through 8 MiB: pages go out and come back. The first write fails: that page
        // stays resident. The first read fails: its task cannot continue and is killed.
        let first = stress::run(WorkloadKind::Uniform, 12, 0);
        check_eq!(first.err(), Some(StressError::Failed(KILLED_BY_FAULT)));
        let after = swap::stats();
        // QEMU merges the batch's neighbouring writes into one request, so the injected error
        // fails the whole batch; all of its pages stayed in memory.
        check!(after.io_errors - before.io_errors >= 2, "writes and a read failed ({})", after.io_errors - before.io_errors);
        check!(after.pages_out > before.pages_out, "other writes went through");
        check!(all_released(), "the killed task's slots and frames were freed");
        // The same workload again: no more errors, every page verified.
        let second = check_ok!(stress::run(WorkloadKind::Uniform, 12, 0));
        check!(second.faults.swap_in > 1000, "it swapped ({} major faults)", second.faults.swap_in);
        check_eq!(swap::stats().io_errors, after.io_errors);
        check!(all_released());
        check_ok!(vmscan::check_invariants());
        vmscan::set_limit(None);
        // And a task that needs no swap at all.
        check_eq!(run("hog", "8")?, 0);
        Ok(())
    }
}
