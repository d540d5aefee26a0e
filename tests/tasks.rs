//! User tasks end to end: programs at EL0 in their own address spaces, system calls with bad
//! arguments, preemption and fair CPU shares between tasks that never yield, every register
//! preserved across switches, IPC with capability checks, a syscall fuzzer, faults that kill
//! only the offender, kill, and IPC across CPUs.
#![no_std]
#![no_main]

extern crate alloc;

use abi::{Error, Message};
use alloc::vec::Vec;
use kernel::ipc::{Capability, CapabilityTable, Endpoint};
use kernel::ktest::prelude::*;
use kernel::task::user::{self, KILLED_BY_FAULT};
use kernel::task::{self, Priority, ThreadId};

kernel::entry_point!(kernel::ktest::main);
qemu_config!("memory 256M\n");

fn start(name: &str, args: &str) -> Result<ThreadId, Failure> {
    user::spawn(name, args, CapabilityTable::new())
        .map(|thread| thread.id())
        .map_err(|err| Failure::new(file!(), line!(), alloc::format!("spawn {name}: {err}")))
}

fn start_with(
    name: &str,
    args: &str,
    capabilities: CapabilityTable,
    priority: Priority,
    pin: Option<usize>,
) -> Result<ThreadId, Failure> {
    user::spawn_with(name, args, capabilities, priority, pin)
        .map(|thread| thread.id())
        .map_err(|err| Failure::new(file!(), line!(), alloc::format!("spawn {name}: {err}")))
}

fn with_endpoint(endpoint: &alloc::sync::Arc<Endpoint>) -> CapabilityTable {
    let mut table = CapabilityTable::new();
    table
        .set(0, Capability::Endpoint(endpoint.clone()))
        .expect("slot 0 exists");
    table
}

ktest! {
    timeout_secs = 120;

    fn a_program_runs_and_returns_its_exit_code() -> TestResult {
        let id = start("hello", "from a test")?;
        check_eq!(task::wait(id), Some(0));
        let usage = start("spin", "")?;
        check_eq!(task::wait(usage), Some(2), "spin without arguments prints its usage and fails");
        check!(user::spawn("no-such-program", "", CapabilityTable::new()).is_err());
        Ok(())
    }

    fn every_register_survives_preemption_and_switches() -> TestResult {
        let me = task::current().cpu();
        // Three on one CPU (they preempt each other), plus some free to move between CPUs.
        let mut ids = Vec::new();
        for seed in 1..=3 {
            ids.push(start_with("regs", &alloc::format!("100 {seed}"), CapabilityTable::new(), Priority::DEFAULT, Some(me))?);
        }
        for seed in 4..=6 {
            ids.push(start("regs", &alloc::format!("100 {seed}"))?);
        }
        for id in ids {
            check_eq!(task::wait(id), Some(0), "task {id}: a register changed under it");
        }
        Ok(())
    }

    fn condition_flags_survive_preemption() -> TestResult {
        // Spins far longer than a time slice, so the two tasks preempt each other mid-spin,
        // between setting the flags and reading them back.
        let me = task::current().cpu();
        let a = start_with("regs", "3 1 30000000", CapabilityTable::new(), Priority::DEFAULT, Some(me))?;
        let b = start_with("regs", "3 2 30000000", CapabilityTable::new(), Priority::DEFAULT, Some(me))?;
        check_eq!(task::wait(a), Some(0), "task {a}: the flags changed under it");
        check_eq!(task::wait(b), Some(0), "task {b}: the flags changed under it");
        Ok(())
    }

    fn tasks_that_never_yield_share_the_cpu_fairly() -> TestResult {
        let me = task::current().cpu();
        let spawn = |label: &str| user::spawn_with("spin", &alloc::format!("1000 {label}"), CapabilityTable::new(), Priority::DEFAULT, Some(me));
        let a = check_ok!(spawn("a"));
        let b = check_ok!(spawn("b"));
        task::wait(a.id());
        task::wait(b.id());
        let (ra, rb) = (a.runtime_ns() as f64, b.runtime_ns() as f64);
        let share = ra / (ra + rb);
        check!((share - 0.5).abs() < 0.05, "share {share:.3} (runtimes {ra} and {rb} ns)");
        check!(a.switches() > 10 && b.switches() > 10, "both were preempted many times ({} and {})", a.switches(), b.switches());
        Ok(())
    }

    fn priorities_decide_cpu_shares_between_tasks() -> TestResult {
        let me = task::current().cpu();
        let low_priority = check_ok!(Priority::new(5).ok_or("valid nice"));
        let high = check_ok!(user::spawn_with("spin", "800 high", CapabilityTable::new(), Priority::DEFAULT, Some(me)));
        let low = check_ok!(user::spawn_with("spin", "800 low", CapabilityTable::new(), low_priority, Some(me)));
        // Both run for 800 ms of wall time; while both are runnable the CPU splits by weight.
        task::wait(high.id());
        task::wait(low.id());
        let ratio = high.runtime_ns() as f64 / low.runtime_ns() as f64;
        let expected = Priority::DEFAULT.weight() as f64 / low_priority.weight() as f64;
        // The high-priority task finishes its time first; after that the low one runs alone,
        // so the ratio lies between 1 and the weight ratio: it must be well above 1.
        check!(ratio > 1.5 && ratio < expected * 1.15, "runtime ratio {ratio:.2} (weights {expected:.2})");
        Ok(())
    }

    fn ipc_round_trips_carry_messages_and_lent_pages() -> TestResult {
        let endpoint = Endpoint::new();
        let server = start_with("echo-server", "", with_endpoint(&endpoint), Priority::DEFAULT, None)?;
        let client = start_with("echo-client", "200", with_endpoint(&endpoint), Priority::DEFAULT, None)?;
        check_eq!(task::wait(client), Some(0), "the client checks every reply and the grant's sum");
        // Label 0 ends the server; it replies with how many calls it served.
        let me = task::current().id();
        let reply = check_ok!(endpoint.call(me, Message { label: 0, words: [0; 4] }, None, &|| false));
        check_eq!(reply.label, 201, "200 calls and one grant");
        check_eq!(task::wait(server), Some(0));
        Ok(())
    }

    fn ipc_needs_the_capability() -> TestResult {
        // No endpoint in slot 0: the call fails with NoCapability and the client exits with it.
        let client = start("echo-client", "1")?;
        check_eq!(task::wait(client), Some(Error::NoCapability.code()));
        Ok(())
    }

    fn kernel_calls_the_server_while_a_client_dies_mid_call() -> TestResult {
        let endpoint = Endpoint::new();
        let me = task::current().id();
        // Nobody receives: a call from a killed client gives up and the kernel stays fine.
        let client = start_with("echo-client", "5", with_endpoint(&endpoint), Priority::DEFAULT, None)?;
        task::sleep_us(20_000);
        check!(task::kill(client, -9));
        check_eq!(task::wait(client), Some(-9));
        check_eq!(endpoint.queued(), 0, "the dead client's call was withdrawn");
        // A server now receives only the kernel's own call.
        let server = start_with("echo-server", "", with_endpoint(&endpoint), Priority::DEFAULT, None)?;
        let reply = check_ok!(endpoint.call(me, Message { label: 0, words: [0; 4] }, None, &|| false));
        check_eq!(reply.label, 0);
        check_eq!(task::wait(server), Some(0));
        Ok(())
    }

    fn faults_kill_only_the_offender() -> TestResult {
        let survivor = start("regs", "30 99")?;
        let mut offenders = Vec::new();
        for what in ["kernel", "null", "exec", "undef", "stack"] {
            offenders.push((what, start("bad", what)?));
        }
        for (what, id) in offenders {
            check_eq!(task::wait(id), Some(KILLED_BY_FAULT), "bad {what}");
        }
        check_eq!(task::wait(survivor), Some(0), "the innocent task finished intact");
        Ok(())
    }

    fn a_syscall_fuzzer_leaves_the_kernel_and_other_tasks_unharmed() -> TestResult {
        let before = kernel::mm::frame::stats();
        let bystander = start("regs", "40 7")?;
        let fuzzers: Vec<ThreadId> = (1..=2).map(|seed| start("fuzz", &alloc::format!("50000 {seed}"))).collect::<Result<_, _>>()?;
        for fuzzer in fuzzers {
            check_eq!(task::wait(fuzzer), Some(0));
        }
        check_eq!(task::wait(bystander), Some(0));
        // Everything the fuzzers and their children allocated came back (heap chunks aside).
        let after = kernel::mm::frame::stats();
        check!(after.free + 2048 >= before.free, "frames leaked: {} before, {} after", before.free, after.free);
        Ok(())
    }

    fn kill_ends_a_running_task() -> TestResult {
        let spinner = start("spin", "100000 forever")?;
        task::sleep_us(30_000);
        check!(task::kill(spinner, -9));
        check_eq!(task::wait(spinner), Some(-9));
        check!(!task::kill(ThreadId(1 << 40), -9), "unknown ids are refused");
        check!(!task::kill(task::current().id(), -9), "kernel threads cannot be killed");
        Ok(())
    }

    fn many_clients_and_servers_talk_across_cpus() -> TestResult {
        let mut pairs = Vec::new();
        for _ in 0..6 {
            let endpoint = Endpoint::new();
            let server = start_with("echo-server", "", with_endpoint(&endpoint), Priority::DEFAULT, None)?;
            let client = start_with("echo-client", "100", with_endpoint(&endpoint), Priority::DEFAULT, None)?;
            pairs.push((endpoint, server, client));
        }
        let me = task::current().id();
        for (endpoint, server, client) in pairs {
            check_eq!(task::wait(client), Some(0));
            let reply = check_ok!(endpoint.call(me, Message { label: 0, words: [0; 4] }, None, &|| false));
            check_eq!(reply.label, 101);
            check_eq!(task::wait(server), Some(0));
        }
        Ok(())
    }
}
