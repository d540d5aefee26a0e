//! Page reclaim end to end on a 64 MiB machine with a 256 MiB swap disk: anonymous memory of
//! twice the RAM goes to swap and comes back byte for byte, every policy's fault counts match
//! the reclaim model replaying the same accesses, and young bits come from the hardware Access
//! flag where the CPU has it and from Access-flag faults where it does not.
#![no_std]
#![no_main]

extern crate alloc;

mod reclaim_common;

use reclaim_common::{all_released, run};

use abi::Message;
use core::sync::atomic::Ordering;
use kernel::arch::cpu::{HardwareAccessFlags, hardware_access_flags};
use kernel::ipc::{Capability, CapabilityTable, Endpoint};
use kernel::ktest::prelude::*;
use kernel::mm::{aspace, frame, stress, swap, vmscan};
use kernel::task::{self, user};
use reclaim::PolicyKind;
use reclaim::workload::WorkloadKind;

kernel::entry_point!(kernel::ktest::main);
qemu_config!("memory 64M\ndisk swap size=256M\n");

/// Frames of user memory (8 MiB) the policy comparisons run in.
const LIMIT_FRAMES: u32 = 2048;

ktest! {
    timeout_secs = 240;

    fn twice_the_ram_round_trips_through_swap() -> TestResult {
        check!(swap::area().is_some(), "the swap disk was found");
        let free_before = frame::stats().free;
        let before = swap::stats();
        // hog fills every byte of 128 MiB and checks it all: half of it must come back from swap.
        check_eq!(run("hog", "128")?, 0, "hog verified every page");
        let after = swap::stats();
        check!(after.pages_out - before.pages_out >= 16 * 1024, "at least 64 MiB went out ({} pages)", after.pages_out - before.pages_out);
        check!(after.pages_in - before.pages_in >= 16 * 1024, "and came back ({} pages)", after.pages_in - before.pages_in);
        check!(after.write_batches > before.write_batches && after.pages_out - before.pages_out > 4 * (after.write_batches - before.write_batches), "writes are batched");
        check_eq!(after.io_errors, before.io_errors);
        // Everything the task had is released: swap slots and frames.
        check!(all_released(), "{} slots and {} user frames left", swap::stats().slots_used, vmscan::tracked());
        check_ok!(vmscan::check_invariants());
        check!(frame::stats().free + 64 >= free_before, "frames came back ({} of {free_before})", frame::stats().free);
        Ok(())
    }

    fn every_policy_faults_as_the_model_predicts() -> TestResult {
        vmscan::set_limit(Some(LIMIT_FRAMES));
        for policy in PolicyKind::ALL {
            for kind in [WorkloadKind::Zipf, WorkloadKind::HotScan] {
                // A fresh policy, like the model's fresh machine (CLOCK-Pro, for one, warms up
                // differently before memory first fills).
                check_ok!(vmscan::set_policy(policy));
                let report = check_ok!(stress::run(kind, 16, 0));
                let prediction = check_ok!(stress::predict(&report, LIMIT_FRAMES));
                let ratio = prediction.ratio_x100();
                check!(report.faults.swap_in > 1000, "{policy} {}: the workload swapped ({} major faults)", kind.name(), report.faults.swap_in);
                check!((90..=110).contains(&ratio), "{policy} {}: kernel {} faults, model {} (x{}.{:02})", kind.name(), prediction.kernel_faults, prediction.stats.faults, ratio / 100, ratio % 100);
                check_ok!(vmscan::check_invariants());
            }
        }
        vmscan::set_limit(None);
        check_ok!(vmscan::set_policy(PolicyKind::Mglru));
        Ok(())
    }

    fn aging_walks_skip_idle_spaces_and_cold_tables() -> TestResult {
        check_ok!(vmscan::set_policy(PolicyKind::Mglru));
        // An idle task: the echo server blocks in `receive` for the whole run.
        let endpoint = Endpoint::new();
        let mut capabilities = CapabilityTable::new();
        check_ok!(capabilities.set(0, Capability::Endpoint(endpoint.clone())));
        let server = check_ok!(user::spawn("echo-server", "", capabilities));
        vmscan::set_limit(Some(LIMIT_FRAMES));
        let before = check_ok!(vmscan::mglru_stats().ok_or("MGLRU is the policy"));
        check_ok!(stress::run(WorkloadKind::Zipf, 16, 0));
        vmscan::set_limit(None);
        let after = check_ok!(vmscan::mglru_stats().ok_or("MGLRU is the policy"));
        check!(after.agings > before.agings, "the generations aged");
        check!(after.spaces_walked > before.spaces_walked, "walks ran");
        check!(after.spaces_skipped > before.spaces_skipped, "the idle server's space was skipped ({} skips)", after.spaces_skipped - before.spaces_skipped);
        check!(after.tables_skipped > before.tables_skipped, "the Bloom filter kept walks out of cold tables");
        let me = task::current().id();
        check_ok!(endpoint.call(me, Message { label: 0, words: [0; 4] }, None, &|| false));
        check_eq!(task::wait(server.id()), Some(0));
        Ok(())
    }

    fn young_bits_come_from_the_access_flag() -> TestResult {
        vmscan::set_limit(Some(LIMIT_FRAMES));
        let af_faults = aspace::FAULTS.access_flag.load(Ordering::Relaxed);
        let (policy_before, _) = vmscan::policy_stats();
        let report = check_ok!(stress::run(WorkloadKind::Zipf, 16, 0));
        vmscan::set_limit(None);
        let (policy_after, _) = vmscan::policy_stats();
        let faulted = aspace::FAULTS.access_flag.load(Ordering::Relaxed) - af_faults;
        check!(policy_after.ptes_tested - policy_before.ptes_tested > 4096, "aging tested the young bits");
        check!(policy_after.shadow_hits > policy_before.shadow_hits, "refaults were recognised from shadow tokens");
        match hardware_access_flags() {
            // The hardware sets the flag: no fault for it, ever.
            HardwareAccessFlags::AccessFlag | HardwareAccessFlags::AccessFlagAndDirty => {
                check_eq!(faulted, 0);
                check_eq!(report.faults.access_flag, 0);
            }
            // Each young bit reclaim clears comes back through an Access-flag fault.
            HardwareAccessFlags::None => {
                check!(report.faults.access_flag > 1000, "{} Access-flag faults", report.faults.access_flag);
            }
        }
        Ok(())
    }
}
