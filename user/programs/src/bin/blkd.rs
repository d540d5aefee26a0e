//! `blkd`: the block server. Drives the virtio-blk device in capability slot 0 from user mode
//! with the driver core the kernel uses (crates/virtio), and serves the block protocol
//! (`abi::block`) on the endpoint in capability slot 1, one request at a time: reads and writes
//! move through the pages the caller lends, and every reply's label is 0 or an error code. A bad
//! request gets an error reply; nothing a client sends ends the server.
//!
//! Prints `blkd: SERIAL capacity=N transport=T serving` once the device is up. Ends only when it
//! cannot start (exit status: the error's code) or is killed; the kernel then resets the device
//! and frees its DMA memory, so a new `blkd` can take over.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::ptr::NonNull;

use usys::{Error, Message, block, layout, println};
use virtio::{
    BlockDevice, Clock, DriverConfig, Hal, MmioTransport, Operation, PhysAddr, RegisterAccess,
    Segment, TransportVersion,
};

usys::main!(main);

/// Capability slots: the device, the endpoint to serve.
const DEVICE: u64 = 0;
const ENDPOINT: u64 = 1;
/// The bounce buffer between lent pages and the device holds the largest grant.
const BOUNCE_BYTES: u64 = layout::GRANT_MAX_PAGES * 4096;
/// One request at a time needs a small ring.
const QUEUE_SIZE: u16 = 16;

type Device = BlockDevice<KernelDma, MmioTransport<Registers>, Time>;

/// DMA memory from the kernel (`dma_alloc`). It is not handed back before the server ends: the
/// kernel frees it then, after resetting the device, the one moment it knows the device no
/// longer uses it.
#[derive(Clone, Default)]
struct KernelDma {
    /// Address, physical address and length of every allocation.
    allocations: Rc<RefCell<Vec<(usize, u64, usize)>>>,
}

// SAFETY: `dma_alloc` memory is zeroed, contiguous, page-aligned and ours alone until the task
// ends (the kernel maps it in our DMA area only); the device sees it at the physical address the
// kernel reports. `virt_to_phys` answers from those reports.
unsafe impl Hal for KernelDma {
    fn dma_alloc(&self, pages: usize) -> Option<(PhysAddr, NonNull<u8>)> {
        let len = pages * virtio::PAGE_SIZE;
        let (address, physical) = usys::dma_alloc(DEVICE, len as u64).ok()?;
        self.allocations
            .borrow_mut()
            .push((address as usize, physical, len));
        Some((PhysAddr(physical), NonNull::new(address)?))
    }

    unsafe fn dma_free(&self, _phys: PhysAddr, _virt: NonNull<u8>, _pages: usize) {
        // Kept until the server ends: see the type.
    }

    fn virt_to_phys(&self, virt: NonNull<u8>) -> PhysAddr {
        let address = virt.as_ptr() as usize;
        self.allocations
            .borrow()
            .iter()
            .find(|(start, _, len)| (*start..start + len).contains(&address))
            .map(|(start, physical, _)| PhysAddr(physical + (address - start) as u64))
            .expect("blkd gives the driver DMA memory only")
    }
}

/// The device's registers, each access a system call: the kernel checks the offset and width
/// against the device's window. A refused access is a bug here and ends the server.
#[derive(Clone, Copy)]
struct Registers;

fn register(offset: usize, width: u64) -> u64 {
    usys::device_read(DEVICE, offset as u64, width).expect("device register read")
}

impl RegisterAccess for Registers {
    fn read32(&self, offset: usize) -> u32 {
        register(offset, 4) as u32
    }

    fn write32(&mut self, offset: usize, value: u32) {
        usys::device_write(DEVICE, offset as u64, value).expect("device register write");
    }

    fn read8(&self, offset: usize) -> u8 {
        register(offset, 1) as u8
    }

    fn read16(&self, offset: usize) -> u16 {
        register(offset, 2) as u16
    }
}

/// Time for the driver's bounded waits; waiting gives the CPU away.
#[derive(Clone, Copy)]
struct Time;

impl Clock for Time {
    fn now_ns(&self) -> u64 {
        usys::time_ns()
    }

    fn relax(&self) {
        usys::yield_now();
    }
}

/// The error code a client gets for a driver error.
fn status(error: virtio::Error) -> Error {
    match error {
        virtio::Error::OutOfRange
        | virtio::Error::InvalidArgument(_)
        | virtio::Error::ReadOnly
        | virtio::Error::NotSupportedByDevice(_) => Error::InvalidArgument,
        virtio::Error::NoMemory => Error::NoMemory,
        virtio::Error::QueueFull => Error::Exhausted,
        _ => Error::Io,
    }
}

struct Server {
    device: Device,
    /// The bounce buffer: its address and physical address.
    bounce: (*mut u8, u64),
}

fn main(_: &str) -> i32 {
    match start() {
        Ok(mut server) => server.serve(),
        Err(error) => error.code() as i32,
    }
}

fn start() -> Result<Server, Error> {
    // Fails cleanly without the capability, or while another task drives the device.
    usys::device_read(DEVICE, virtio::mmio::reg::MAGIC as u64, 4).inspect_err(|error| {
        println!("blkd: device: {error}");
    })?;
    let failed = |what: &str, error: virtio::Error| {
        println!("blkd: {what}: {error}");
        status(error)
    };
    let transport = virtio::probe(Registers).map_err(|error| failed("probe", error))?;
    let config = DriverConfig {
        queue_size: QUEUE_SIZE,
        max_requests: 4,
        ..DriverConfig::default()
    };
    let mut device = Device::new(transport, KernelDma::default(), Time, config)
        .map_err(|error| failed("start", error))?;
    let serial = device.get_id_blocking().unwrap_or_default();
    let serial = serial.split(|&b| b == 0).next().unwrap_or_default();
    let bounce = usys::dma_alloc(DEVICE, BOUNCE_BYTES).inspect_err(|error| {
        println!("blkd: DMA memory: {error}");
    })?;
    let info = device.info();
    println!(
        "blkd: {} capacity={} transport={} serving",
        core::str::from_utf8(serial).unwrap_or("?"),
        info.capacity,
        match info.transport {
            TransportVersion::Legacy => "legacy",
            TransportVersion::Modern => "modern",
        }
    );
    Ok(Server { device, bounce })
}

impl Server {
    fn serve(&mut self) -> ! {
        loop {
            let request = match usys::receive(ENDPOINT) {
                Ok((_, request)) => request,
                Err(error) => {
                    println!("blkd: receive: {error}");
                    usys::exit(error.code() as i32);
                }
            };
            let reply = self.handle(&request).unwrap_or_else(|error| Message {
                label: error.code() as u64,
                words: [0; 4],
            });
            // A caller that went away meanwhile is no concern of the server's.
            let _ = usys::reply(&reply);
        }
    }

    fn handle(&mut self, request: &Message) -> Result<Message, Error> {
        let lent = (request.label & Message::GRANTED != 0).then_some(request.words[2]);
        let [sector, count, ..] = request.words;
        let words = match request.label & !Message::GRANTED {
            block::READ => [
                self.transfer(Operation::Read, sector, count, lent)?,
                0,
                0,
                0,
            ],
            block::WRITE => [
                self.transfer(Operation::Write, sector, count, lent)?,
                0,
                0,
                0,
            ],
            block::FLUSH => {
                self.device.submit_flush(0).map_err(status)?;
                self.finish().map_err(status)?;
                [0; 4]
            }
            block::INFO => {
                let info = self.device.info();
                let max_sectors = BOUNCE_BYTES / block::SECTOR_SIZE;
                [info.capacity, max_sectors, u64::from(info.read_only), 0]
            }
            _ => return Err(Error::NoSuchCall),
        };
        Ok(Message { label: 0, words })
    }

    /// Reads or writes `count` sectors at `sector` through the `lent` pages at the grant
    /// window; returns the bytes moved.
    fn transfer(
        &mut self,
        op: Operation,
        sector: u64,
        count: u64,
        lent: Option<u64>,
    ) -> Result<u64, Error> {
        let pages = lent.ok_or(Error::BadAddress)?;
        let bytes = count
            .checked_mul(block::SECTOR_SIZE)
            .filter(|&bytes| bytes > 0 && bytes <= pages * 4096)
            .ok_or(Error::InvalidArgument)?;
        // A grant is at most GRANT_MAX_PAGES pages: `bytes` fits the bounce buffer.
        let window = layout::GRANT_WINDOW as *mut u8;
        let (bounce, physical) = self.bounce;
        if op == Operation::Write {
            // SAFETY: the kernel mapped `pages` lent pages at the grant window for this call
            // (GRANTED says so) and the bounce buffer holds BOUNCE_BYTES; they do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(window, bounce, bytes as usize) };
        }
        let segment = Segment {
            phys: PhysAddr(physical),
            len: bytes as u32,
        };
        // SAFETY: the bounce buffer is DMA memory that nothing else touches until `finish`
        // reports this request, the only one in flight.
        unsafe { self.device.submit_segments(op, sector, &[segment], 0) }.map_err(status)?;
        self.finish().map_err(status)?;
        if op == Operation::Read {
            // SAFETY: as above, the other way round; the device is done with the buffer.
            unsafe { core::ptr::copy_nonoverlapping(bounce, window, bytes as usize) };
        }
        Ok(bytes)
    }

    /// Notifies the device and waits for the request in flight: reaps, and if it is not done,
    /// sleeps until the device's interrupt, then handles (acknowledges) it.
    fn finish(&mut self) -> Result<(), virtio::Error> {
        self.device.kick();
        let mut result = None;
        loop {
            self.device
                .poll(&mut |completion| result = Some(completion.result));
            if let Some(result) = result {
                return result;
            }
            if usys::device_wait(DEVICE).is_err() {
                // No usable interrupt: poll.
                usys::yield_now();
            }
            self.device
                .handle_interrupt(&mut |completion| result = Some(completion.result));
        }
    }
}
