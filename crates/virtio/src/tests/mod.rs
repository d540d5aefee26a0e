//! Driver tests against the fake device.

mod basic;
mod faults;
mod model;
mod resize;
mod ring;

use alloc::vec::Vec;

use crate::fake::{FakeClock, FakeDevice, FakeDeviceConfig, FakeHal, FakeMmio};
use crate::{BlockDevice, Completion, DriverConfig, Error, MmioTransport, Operation, probe};

pub(crate) type Driver = BlockDevice<FakeHal, MmioTransport<FakeMmio>, FakeClock>;

/// A driver wired to a fake device, with handles on everything.
pub(crate) struct Rig {
    pub(crate) device: FakeDevice,
    pub(crate) hal: FakeHal,
    pub(crate) clock: FakeClock,
    pub(crate) driver: Driver,
}

/// Probes and initialises a driver on `device`.
pub(crate) fn start(device: &FakeDevice, config: DriverConfig) -> Result<Rig, Error> {
    let hal = device.hal();
    let clock = FakeClock::new();
    let transport = probe(device.mmio())?;
    let driver = BlockDevice::new(transport, hal.clone(), clock.clone(), config)?;
    Ok(Rig {
        device: device.clone(),
        hal,
        clock,
        driver,
    })
}

/// A rig on a fresh device described by `config`, default driver settings.
pub(crate) fn rig(config: FakeDeviceConfig) -> Rig {
    start(&FakeDevice::new(config), DriverConfig::default()).expect("driver starts")
}

/// A rig with driver settings.
pub(crate) fn rig_with(config: FakeDeviceConfig, driver: DriverConfig) -> Rig {
    start(&FakeDevice::new(config), driver).expect("driver starts")
}

/// Both transports, 1 MiB disks.
pub(crate) fn both_transports() -> [FakeDeviceConfig; 2] {
    [
        FakeDeviceConfig::legacy(2048),
        FakeDeviceConfig::modern(2048),
    ]
}

/// Recognisable bytes for `sectors` sectors starting at `sector`, varied by `seed`.
pub(crate) fn pattern(sector: u64, sectors: usize, seed: u8) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| (sector as usize * 31 + i * 7 + usize::from(seed) * 13) as u8)
        .collect()
}

impl Rig {
    /// Reports every finished request.
    pub(crate) fn poll(&mut self) -> Vec<Completion> {
        let mut out = Vec::new();
        self.driver.poll(&mut |completion| out.push(completion));
        out
    }

    /// Runs the interrupt handler.
    pub(crate) fn interrupt(&mut self) -> (crate::InterruptReport, Vec<Completion>) {
        let mut out = Vec::new();
        let report = self
            .driver
            .handle_interrupt(&mut |completion| out.push(completion));
        (report, out)
    }

    /// Submits an owned-buffer write of `data` with `token`.
    pub(crate) fn write(&mut self, sector: u64, data: &[u8], token: u64) {
        self.driver
            .submit_buffer(
                Operation::Write,
                sector,
                data.to_vec().into_boxed_slice(),
                token,
            )
            .expect("write accepted");
    }

    /// Submits an owned-buffer read of `sectors` sectors with `token`.
    pub(crate) fn read(&mut self, sector: u64, sectors: usize, token: u64) {
        self.driver
            .submit_buffer(
                Operation::Read,
                sector,
                alloc::vec![0u8; sectors * 512].into_boxed_slice(),
                token,
            )
            .expect("read accepted");
    }

    /// Lets the device complete everything and collects all completions (bounded).
    pub(crate) fn drain(&mut self) -> Vec<Completion> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            self.driver.kick();
            self.device.process(usize::MAX);
            self.driver.poll(&mut |completion| out.push(completion));
            if self.driver.outstanding_requests() == 0 {
                return out;
            }
            self.clock.advance(1_000_000);
        }
        panic!("requests never finished");
    }
}

/// The completion with `token`, which must be the only one.
pub(crate) fn only(completions: &[Completion], token: u64) -> &Completion {
    let found: Vec<_> = completions.iter().filter(|c| c.token == token).collect();
    assert_eq!(
        found.len(),
        1,
        "token {token} completed {} times",
        found.len()
    );
    found[0]
}
