//! `bench tasks`: the cost of the microkernel's basic operations, measured by the `bench` user
//! program (guest nanoseconds per operation; instructions with QEMU_ICOUNT=1): a null system
//! call, a yield that switches between two tasks, a demand-zero page fault, a swap-in (major)
//! fault with the eviction it causes, and an IPC round trip to the echo server on the same CPU
//! and, with two CPUs or more, across CPUs.

use super::{Priority, sched, user};
use crate::ipc::{Capability, CapabilityTable, Endpoint};
use abi::Message;
use alloc::sync::Arc;

fn capabilities(endpoint: Option<&Arc<Endpoint>>) -> CapabilityTable {
    let mut table = CapabilityTable::new();
    if let Some(endpoint) = endpoint {
        let _ = table.set(0, Capability::Endpoint(endpoint.clone()));
    }
    table
}

/// Runs `bench ARGS` pinned to `cpu` and waits for it; returns whether it exited 0.
fn run(args: &str, endpoint: Option<&Arc<Endpoint>>, cpu: usize) -> bool {
    match user::spawn_with(
        "bench",
        args,
        capabilities(endpoint),
        Priority::DEFAULT,
        Some(cpu),
    ) {
        Ok(thread) => super::wait(thread.id()) == Some(0),
        Err(err) => {
            crate::println!("bench {args}: {err}");
            false
        }
    }
}

/// The IPC round trip with the server on `server_cpu` and the client on `client_cpu`.
fn ipc(label: &str, ops: u64, server_cpu: usize, client_cpu: usize) -> bool {
    let endpoint = Endpoint::new();
    let Ok(server) = user::spawn_with(
        "echo-server",
        "",
        capabilities(Some(&endpoint)),
        Priority::DEFAULT,
        Some(server_cpu),
    ) else {
        return false;
    };
    crate::println!("{label}:");
    let ok = run(&alloc::format!("ipc {ops}"), Some(&endpoint), client_cpu);
    let me = super::current().id();
    let _ = endpoint.call(
        me,
        Message {
            label: 0,
            words: [0; 4],
        },
        None,
        &|| false,
    );
    super::wait(server.id());
    ok
}

/// Runs every measurement; false if one could not run.
pub fn run_all(ops: u64) -> bool {
    let here = super::current().cpu();
    let mut ok = run(&alloc::format!("syscall {ops}"), None, here);
    // Two yielders on one CPU: every yield is a switch to the other.
    let partner = user::spawn_with(
        "bench",
        &alloc::format!("yield {ops}"),
        CapabilityTable::new(),
        Priority::DEFAULT,
        Some(here),
    );
    ok &= run(&alloc::format!("yield {ops}"), None, here);
    if let Ok(partner) = partner {
        ok &= super::wait(partner.id()) == Some(0);
    }
    ok &= run(&alloc::format!("fault {ops}"), None, here);
    if crate::mm::swap::area().is_some() && crate::mm::vmscan::tracked() == 0 {
        // Twice as many pages as the limit lets stay: a pass reads each back from swap.
        let previous = crate::mm::vmscan::limit();
        let pages = ops.clamp(1024, 8192);
        crate::mm::vmscan::set_limit(Some(pages as u32 / 2));
        ok &= run(&alloc::format!("swapin {pages}"), None, here);
        crate::mm::vmscan::set_limit(previous);
    }
    ok &= ipc("same CPU", ops, here, here);
    if sched::online_cpus() > 1 {
        let other = (here + 1) % sched::online_cpus();
        ok &= ipc("across CPUs", ops, other, here);
    }
    ok
}
