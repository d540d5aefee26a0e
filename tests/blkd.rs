//! The block server in user mode: `blkd` drives a virtio-blk device the kernel left alone
//! (serial `user*`) and serves `blkcat` over IPC. Data round trips checked against the disk's
//! `fill=lba` content and across a server restart, bad requests refused, capability checks,
//! argument checks of the device calls, a server killed with a request in flight (its client
//! gets `PeerGone`, the device is reset and a new server takes over), memory given back, and
//! the cost of a 4 KiB read through the server next to the kernel's own driver.
//!
//! Disks (in `-drive` order): `user0` (4 MiB), `user1` (1 MiB, throttled by QEMU to two
//! requests a second, so that a request stays in flight long enough to kill its server) and
//! `data` (4 MiB, the kernel's `blk0`); all `fill=lba`.
#![no_std]
#![no_main]

extern crate alloc;

use abi::Error;
use alloc::sync::Arc;
use kernel::drivers::virtio::{self, UserDevice};
use kernel::ipc::{Capability, CapabilityTable, Endpoint};
use kernel::ktest::prelude::*;
use kernel::task::{self, ThreadId, user};

kernel::entry_point!(kernel::ktest::main);
qemu_config!(
    "memory 256M\n\
     disk user0 size=4M fill=lba\n\
     disk user1 size=1M fill=lba\n\
     disk data size=4M fill=lba\n\
     arg -set drive.blk1.throttling.iops-total=2\n"
);

/// Exit code of a killed task (as `kill` in the shell).
const KILLED: i64 = -9;

fn device(serial: &str) -> Result<&'static UserDevice, Failure> {
    virtio::user_device(serial)
        .ok_or_else(|| Failure::new(file!(), line!(), alloc::format!("no user device {serial}")))
}

fn table(slots: &[(usize, Capability)]) -> CapabilityTable {
    let mut table = CapabilityTable::new();
    for (slot, capability) in slots {
        table.set(*slot, capability.clone()).expect("slot exists");
    }
    table
}

fn start(name: &str, args: &str, capabilities: CapabilityTable) -> Result<ThreadId, Failure> {
    user::spawn(name, args, capabilities)
        .map(|thread| thread.id())
        .map_err(|err| Failure::new(file!(), line!(), alloc::format!("spawn {name}: {err}")))
}

/// Starts `blkd` on `device`, serving `endpoint`.
fn server(device: &'static UserDevice, endpoint: &Arc<Endpoint>) -> Result<ThreadId, Failure> {
    let capabilities = table(&[
        (0, Capability::Device(device)),
        (1, Capability::Endpoint(endpoint.clone())),
    ]);
    start("blkd", "", capabilities)
}

/// Runs `blkcat ARGS` against `endpoint` and returns its exit code.
fn client(endpoint: &Arc<Endpoint>, args: &str) -> Result<Option<i64>, Failure> {
    let id = start(
        "blkcat",
        args,
        table(&[(0, Capability::Endpoint(endpoint.clone()))]),
    )?;
    Ok(task::wait(id))
}

/// Kills a server and checks the device came back.
fn stop(server: ThreadId, device: &UserDevice) -> TestResult {
    check!(task::kill(server, KILLED));
    check_eq!(task::wait(server), Some(KILLED));
    check_eq!(device.owner(), None, "{} still claimed", device.serial());
    Ok(())
}

ktest! {
    timeout_secs = 120;

    fn devices_with_a_user_serial_are_left_to_user_mode() -> TestResult {
        let serials: alloc::vec::Vec<&str> = virtio::user_devices().iter().map(UserDevice::serial).collect();
        check_eq!(serials, ["user0", "user1"], "in -drive order");
        let disks: alloc::vec::Vec<Option<&str>> = virtio::disks().iter().map(|disk| disk.serial()).collect();
        check_eq!(disks, [Some("data")], "the kernel drives only the other disk");
        check_eq!(virtio::disk("blk0").map(|disk| disk.name()), Some("blk0"));
        for device in virtio::user_devices() {
            check_eq!(device.owner(), None);
        }
        Ok(())
    }

    fn blkd_serves_reads_and_writes_that_outlive_the_server() -> TestResult {
        let user0 = device("user0")?;
        let endpoint = Endpoint::new();
        let interrupts = kernel::irq::count(user0.irq());
        let first = server(user0, &endpoint)?;
        check_eq!(client(&endpoint, "info")?, Some(0));
        check_eq!(client(&endpoint, "lba 0 64")?, Some(0), "the fill=lba content, read through blkd");
        check_eq!(client(&endpoint, "lba 8064 128")?, Some(0), "the last 64 KiB");
        check_eq!(client(&endpoint, "verify 100 40 7")?, Some(0), "a pattern written, flushed, read back");
        check_eq!(user0.owner(), Some(first));
        check!(kernel::irq::count(user0.irq()) > interrupts, "completions came by interrupt");
        stop(first, user0)?;
        // A new server finds what the first one wrote, and the rest untouched.
        let second = server(user0, &endpoint)?;
        check_eq!(client(&endpoint, "expect 100 40 7")?, Some(0));
        check_eq!(client(&endpoint, "expect 100 40 8")?, Some(1), "another seed's pattern is not there");
        check_eq!(client(&endpoint, "lba 60 40")?, Some(0), "sectors 60..100 kept their content");
        check_eq!(client(&endpoint, "lba 140 8")?, Some(0), "sectors 140.. kept their content");
        stop(second, user0)
    }

    fn blkd_refuses_bad_requests_and_keeps_serving() -> TestResult {
        let user0 = device("user0")?;
        let endpoint = Endpoint::new();
        let blkd = server(user0, &endpoint)?;
        check_eq!(client(&endpoint, "bad")?, Some(0), "every bad request refused with its error");
        check_eq!(client(&endpoint, "lba 0 8")?, Some(0), "still serving");
        // The kernel's own caller: a label with the grant flag but no pages gets no grant.
        let me = task::current().id();
        let forged = abi::Message { label: abi::block::READ | abi::Message::GRANTED, words: [0, 1, 1, abi::layout::GRANT_WINDOW] };
        let reply = check_ok!(endpoint.call(me, forged, None, &|| false));
        check_eq!(reply.label, Error::BadAddress.code() as u64);
        stop(blkd, user0)
    }

    fn capabilities_decide_who_reaches_the_server_and_the_device() -> TestResult {
        let user0 = device("user0")?;
        let endpoint = Endpoint::new();
        // A client without the endpoint cannot even name the server.
        let id = start("blkcat", "lba 0 8", CapabilityTable::new())?;
        check_eq!(task::wait(id), Some(Error::NoCapability.code()));
        let id = start("blkcat", "lba 0 8", table(&[(0, Capability::Device(user0))]))?;
        check_eq!(task::wait(id), Some(Error::NoCapability.code()), "a device is not an endpoint");
        // A server without a device, or with a device another server drives, does not start.
        let id = start("blkd", "", table(&[(1, Capability::Endpoint(endpoint.clone()))]))?;
        check_eq!(task::wait(id), Some(Error::NoCapability.code()));
        let blkd = server(user0, &endpoint)?;
        check_eq!(client(&endpoint, "info")?, Some(0));
        let rival = server(user0, &Endpoint::new())?;
        check_eq!(task::wait(rival), Some(Error::Busy.code()));
        check_eq!(user0.owner(), Some(blkd), "the first server keeps the device");
        check_eq!(client(&endpoint, "lba 0 8")?, Some(0));
        stop(blkd, user0)
    }

    fn device_calls_check_every_argument() -> TestResult {
        let user1 = device("user1")?;
        let me = task::current().id();
        let space = check_ok!(kernel::mm::aspace::UserSpace::new());
        let before = kernel::mm::frame::stats();
        // Registers: 4 bytes anywhere in the window, 1 or 2 only in configuration space,
        // aligned, inside.
        check_eq!(user1.read(me, &space, 0, 4), Ok(0x7472_6976), "the magic value");
        check_eq!(user1.read(me, &space, 0x100, 1).map(|_| ()), Ok(()));
        check_eq!(user1.read(me, &space, 0x102, 2).map(|_| ()), Ok(()));
        for (offset, width) in [(0, 1), (0x70, 2), (2, 4), (0x101, 2), (0, 8), (0, 0), (0x200, 4), (0x1fe, 4), (u64::MAX - 1, 4)] {
            check_eq!(user1.read(me, &space, offset, width), Err(Error::InvalidArgument), "read {width} at {offset:#x}");
        }
        check_eq!(user1.write(me, &space, 0x71, 0), Err(Error::InvalidArgument));
        check_eq!(user1.write(me, &space, 0x200, 0), Err(Error::InvalidArgument));
        check_eq!(user1.write(me, &space, 0x70, 1 << 32), Err(Error::InvalidArgument), "a 33-bit value");
        // The first call claimed the device: nobody else gets it.
        check_eq!(user1.owner(), Some(me));
        check_eq!(user1.read(ThreadId(1 << 40), &space, 0, 4), Err(Error::Busy));
        // DMA memory: zeroed, mapped in the DMA area at the physical address reported, limited.
        check_eq!(user1.alloc_dma(me, &space, 0), Err(Error::InvalidArgument));
        check_eq!(user1.alloc_dma(me, &space, virtio::user::DMA_LIMIT + 1), Err(Error::InvalidArgument));
        let (address, physical) = check_ok!(user1.alloc_dma(me, &space, 3 * 4096));
        check!((abi::layout::DMA_BASE..abi::layout::DMA_END).contains(&address));
        for page in 0..3 {
            let va = check_ok!(kernel::mm::VirtAddr::new(address + page * 4096));
            let mapped = space.lock().tables().translate(va).map(|translation| translation.pa.as_u64());
            check_eq!(mapped, Some(physical + page * 4096), "page {page}");
        }
        let zeroed = (0..3 * 4096).all(|i| {
            let pa = ram(physical + i);
            // SAFETY: the frames were just allocated for the device and are in the linear map.
            unsafe { kernel::mm::phys_ptr::<u8>(pa).read_volatile() == 0 }
        });
        check!(zeroed, "DMA memory starts zeroed");
        check_eq!(user1.alloc_dma(ThreadId(1 << 40), &space, 4096), Err(Error::Busy));
        let mut blocks = 1;
        let exhausted = loop {
            match user1.alloc_dma(me, &space, 512 * 1024) {
                Ok(_) => blocks += 1,
                Err(error) => break error,
            }
        };
        check_eq!(exhausted, Error::Exhausted, "after {blocks} allocations");
        check!(blocks >= 8, "4 MiB allow 7 half-MiB blocks after the first: {blocks}");
        // Ending the driver gives everything back and frees the device for the next one.
        virtio::release_devices(me);
        check_eq!(user1.owner(), None);
        check!(space.lock().regions().is_empty(), "the DMA mappings are gone");
        // Only the space's new page tables stay (until the space goes).
        let after = kernel::mm::frame::stats();
        check!(after.free + 8 >= before.free, "DMA frames leaked: {} free before, {} after", before.free, after.free);
        Ok(())
    }

    fn a_killed_server_fails_its_call_and_a_new_server_takes_over() -> TestResult {
        let user1 = device("user1")?;
        let endpoint = Endpoint::new();
        let blkd = server(user1, &endpoint)?;
        let reader = start("blkcat", "loop 0", table(&[(0, Capability::Endpoint(endpoint.clone()))]))?;
        // Wait until the server holds a call it has not answered: the throttled disk keeps the
        // request in flight for about half a second.
        let thread = check_ok!(task::find(blkd).ok_or("blkd runs"));
        let mut waited_ms = 0;
        while thread.user().is_some_and(|task| task.reply_right.lock().is_none()) {
            check!(waited_ms < 10_000, "blkd never took a request");
            task::sleep_us(1000);
            waited_ms += 1;
        }
        drop(thread);
        stop(blkd, user1)?;
        check_eq!(task::wait(reader), Some(Error::PeerGone.code()), "the call in flight failed");
        // The device was reset; a new server brings it up again and serves the same endpoint.
        let next = server(user1, &endpoint)?;
        check_eq!(client(&endpoint, "lba 0 16")?, Some(0));
        stop(next, user1)
    }

    fn memory_given_to_a_server_comes_back_when_it_ends() -> TestResult {
        let user0 = device("user0")?;
        let endpoint = Endpoint::new();
        let mut free = alloc::vec::Vec::new();
        for _ in 0..3 {
            let blkd = server(user0, &endpoint)?;
            check_eq!(client(&endpoint, "lba 0 64")?, Some(0));
            stop(blkd, user0)?;
            free.push(settled_free_frames());
        }
        // The first round may grow kernel tables for good; later rounds give back all they take
        // (the server's DMA memory alone is over 256 frames).
        check!(free[2] + 16 >= free[1], "frames free after rounds: {free:?}");
        Ok(())
    }

    fn measure_a_4k_read_through_blkd_and_through_the_kernel_driver() -> TestResult {
        // The timer keeps running: the server and client are scheduled tasks that may sleep and
        // wake across CPUs, and the case's time budget needs it.
        const READS: u64 = 2000;
        let user0 = device("user0")?;
        let endpoint = Endpoint::new();
        let blkd = server(user0, &endpoint)?;
        check_eq!(client(&endpoint, &alloc::format!("bench {READS}"))?, Some(0));
        stop(blkd, user0)?;
        let disk = check_ok!(virtio::disk("blk0").ok_or("the kernel's disk"));
        let mut buffer = alloc::vec![0u8; 4096];
        check_ok!(disk.read(0, &mut buffer));
        let pages = disk.capacity() / 8;
        let start = kernel::arch::cpu::counter();
        for i in 0..READS {
            check_ok!(disk.read(i % pages * 8, &mut buffer));
        }
        let ns = kernel::time::ticks_to_ns(kernel::arch::cpu::counter() - start);
        kernel::println!("bench=kernel_read4k ops={READS} ns_per_op={}", ns / READS);
        Ok(())
    }
}

/// Free frames once the count stops rising: a reaped task's last reference may still be dropped
/// by the CPU it ran on as that CPU switches away from it, a moment after `wait` returns.
fn settled_free_frames() -> usize {
    let mut free = kernel::mm::frame::stats().free;
    for _ in 0..100 {
        task::sleep_us(1000);
        let now = kernel::mm::frame::stats().free;
        if now <= free {
            break;
        }
        free = now;
    }
    free
}

/// A physical address as the kernel's type (DMA memory lies in RAM, below 2^48).
fn ram(pa: u64) -> kernel::mm::PhysAddr {
    kernel::mm::PhysAddr::new(pa).expect("RAM addresses fit 48 bits")
}
