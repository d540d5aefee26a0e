//! Randomised model check: random interleavings of submissions, device progress (in random
//! order), interrupts, resizes (legal and not) and injected errors, against a model disk.
//! Every request must complete exactly once, reads must return what the model holds, writes
//! must land, and no descriptor or DMA page may leak. Runs on both transports and both
//! resize paths.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use proptest::prelude::*;

use super::{Rig, pattern, start};
use crate::fake::{
    CompletionOrder, FakeDevice, FakeDeviceConfig, QueueResetBehaviour, StatusFault,
};
use crate::{
    Completion, DriverConfig, Error, Features, Operation, PhysAddr, ResizeStatus, Segment,
};

const CAPACITY: u64 = 256;
const SIZES: [u16; 14] = [0, 1, 2, 3, 4, 6, 8, 16, 32, 64, 128, 256, 1024, 2048];

#[derive(Clone, Debug)]
enum Step {
    Read {
        sector: u64,
        sectors: usize,
        zero_copy: bool,
    },
    Write {
        sector: u64,
        sectors: usize,
        seed: u8,
    },
    Flush,
    Process {
        count: usize,
        order: u8,
        seed: u64,
    },
    Poll,
    Interrupt,
    Resize(usize),
    InjectError(bool),
    AdvanceTime,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..CAPACITY + 4, 1..9usize, any::<bool>())
            .prop_map(|(sector, sectors, zero_copy)| Step::Read { sector, sectors, zero_copy }),
        3 => (0..CAPACITY, 1..9usize, any::<u8>())
            .prop_map(|(sector, sectors, seed)| Step::Write { sector, sectors, seed }),
        1 => Just(Step::Flush),
        4 => (0..12usize, 0..3u8, any::<u64>())
            .prop_map(|(count, order, seed)| Step::Process { count, order, seed }),
        2 => Just(Step::Poll),
        2 => Just(Step::Interrupt),
        1 => (0..SIZES.len()).prop_map(Step::Resize),
        1 => any::<bool>().prop_map(Step::InjectError),
        1 => Just(Step::AdvanceTime),
    ]
}

/// Which device and driver set-up a case runs on.
#[derive(Clone, Copy, Debug)]
enum Variant {
    /// Modern, working queue reset: resize path A.
    ModernQueueReset,
    /// Modern, queue reset ignored as by QEMU 7.2: path B after one failed attempt.
    ModernQemu,
    /// Legacy: path B, no indirect descriptors, no event index.
    LegacyDirect,
    /// Legacy with indirect descriptors and event index.
    Legacy,
}

fn variant() -> impl Strategy<Value = Variant> {
    prop_oneof![
        Just(Variant::ModernQueueReset),
        Just(Variant::ModernQemu),
        Just(Variant::LegacyDirect),
        Just(Variant::Legacy),
    ]
}

struct InFlight {
    op: Operation,
    sector: u64,
    sectors: usize,
    /// Data of a write.
    data: Vec<u8>,
    /// Target of a zero-copy read.
    zero_copy: Option<Box<[u8]>>,
}

struct Model {
    rig: Rig,
    disk: Vec<u8>,
    /// Sectors whose content is unknown (a write that failed part-way).
    unknown: Vec<bool>,
    in_flight: BTreeMap<u64, InFlight>,
    completed: BTreeMap<u64, usize>,
    next_token: u64,
    injected: usize,
    failures: usize,
}

impl Model {
    fn new(variant: Variant) -> Self {
        let (config, driver) = match variant {
            Variant::ModernQueueReset | Variant::ModernQemu => {
                (FakeDeviceConfig::modern(CAPACITY), DriverConfig::default())
            }
            Variant::LegacyDirect => (
                FakeDeviceConfig::legacy(CAPACITY),
                DriverConfig {
                    use_indirect: false,
                    use_event_idx: false,
                    ..DriverConfig::default()
                },
            ),
            Variant::Legacy => (FakeDeviceConfig::legacy(CAPACITY), DriverConfig::default()),
        };
        let device = FakeDevice::new(config);
        if matches!(variant, Variant::ModernQemu) {
            device.set_queue_reset(QueueResetBehaviour::Ignored);
        }
        let disk = pattern(0, CAPACITY as usize, 99);
        device.write_disk(0, &disk);
        let rig = start(
            &device,
            DriverConfig {
                queue_size: 8,
                ..driver
            },
        )
        .expect("starts");
        Self {
            rig,
            disk,
            unknown: vec![false; CAPACITY as usize],
            in_flight: BTreeMap::new(),
            completed: BTreeMap::new(),
            next_token: 0,
            injected: 0,
            failures: 0,
        }
    }

    /// Concurrent overlapping requests have no defined outcome: keep them apart when one of
    /// them writes.
    fn conflicts(&self, sector: u64, sectors: usize, writing: bool) -> bool {
        self.in_flight.values().any(|other| {
            let overlap = sector < other.sector + other.sectors as u64
                && other.sector < sector + sectors as u64;
            overlap && (writing || other.op == Operation::Write)
        })
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Read {
                sector,
                sectors,
                zero_copy,
            } => self.read(sector, sectors, zero_copy),
            Step::Write {
                sector,
                sectors,
                seed,
            } => {
                let sectors = sectors.min((CAPACITY - sector) as usize);
                if self.conflicts(sector, sectors, true) {
                    return;
                }
                let data = pattern(sector, sectors, seed);
                let token = self.token();
                self.rig
                    .driver
                    .submit_buffer(
                        Operation::Write,
                        sector,
                        data.clone().into_boxed_slice(),
                        token,
                    )
                    .expect("write accepted");
                self.track(token, Operation::Write, sector, sectors, data, None);
            }
            Step::Flush => {
                let token = self.token();
                self.rig.driver.submit_flush(token).expect("flush accepted");
                self.track(token, Operation::Flush, 0, 0, Vec::new(), None);
            }
            Step::Process { count, order, seed } => {
                self.rig.driver.kick();
                let order = match order {
                    0 => CompletionOrder::InOrder,
                    1 => CompletionOrder::Reverse,
                    _ => CompletionOrder::Shuffled(seed),
                };
                self.rig.device.process_in(count, order);
            }
            Step::Poll => {
                let done = self.rig.poll();
                self.settle(done);
            }
            Step::Interrupt => {
                let (_, done) = self.rig.interrupt();
                self.settle(done);
            }
            Step::Resize(index) => self.resize(SIZES[index]),
            Step::InjectError(unwritten) => {
                self.injected += 1;
                self.rig.device.inject_status(if unwritten {
                    StatusFault::NotWritten
                } else {
                    StatusFault::Status(1)
                });
            }
            Step::AdvanceTime => self
                .rig
                .clock
                .advance(DriverConfig::default().drain_timeout_ns),
        }
        self.rig.driver.check_invariants();
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn track(
        &mut self,
        token: u64,
        op: Operation,
        sector: u64,
        sectors: usize,
        data: Vec<u8>,
        zero_copy: Option<Box<[u8]>>,
    ) {
        self.in_flight.insert(
            token,
            InFlight {
                op,
                sector,
                sectors,
                data,
                zero_copy,
            },
        );
    }

    fn read(&mut self, sector: u64, sectors: usize, zero_copy: bool) {
        let token = self.token();
        let past_end = sector + sectors as u64 > CAPACITY;
        if !past_end && self.conflicts(sector, sectors, false) {
            return;
        }
        let result = if zero_copy {
            let mut target = vec![0u8; sectors * 512].into_boxed_slice();
            let base = target.as_mut_ptr() as u64;
            // Two segments: the second half first, to exercise scatter lists.
            let half = (sectors / 2 * 512) as u32;
            let segments = if half == 0 {
                vec![Segment {
                    phys: PhysAddr(base),
                    len: 512,
                }]
            } else {
                vec![
                    Segment {
                        phys: PhysAddr(base),
                        len: half,
                    },
                    Segment {
                        phys: PhysAddr(base + u64::from(half)),
                        len: (sectors * 512) as u32 - half,
                    },
                ]
            };
            // SAFETY: `target` is kept in `in_flight` until the completion arrives.
            let result = unsafe {
                self.rig
                    .driver
                    .submit_segments(Operation::Read, sector, &segments, token)
            };
            if result.is_ok() {
                self.track(
                    token,
                    Operation::Read,
                    sector,
                    sectors,
                    Vec::new(),
                    Some(target),
                );
            }
            result.map(|_| ())
        } else {
            let buffer = vec![0u8; sectors * 512].into_boxed_slice();
            let result = self
                .rig
                .driver
                .submit_buffer(Operation::Read, sector, buffer, token);
            if result.is_ok() {
                self.track(token, Operation::Read, sector, sectors, Vec::new(), None);
            }
            result.map(|_| ()).map_err(|rejected| rejected.error)
        };
        if past_end {
            assert_eq!(result, Err(Error::OutOfRange));
        } else {
            result.expect("read accepted");
        }
    }

    fn resize(&mut self, size: u16) {
        let legal = size >= 4 && size.is_power_of_two() && size <= 1024;
        let current = self.rig.driver.queue_size();
        let busy = self.rig.driver.is_resizing();
        let result = self.rig.driver.resize(0, size);
        match result {
            Err(Error::InvalidArgument(_)) => assert!(!legal, "legal size {size} refused"),
            Err(Error::Busy) => assert!(legal && busy),
            Ok(ResizeStatus::Unchanged) => assert_eq!(size, current),
            Ok(_) => assert!(legal && !busy),
            Err(other) => panic!("resize to {size}: {other}"),
        }
    }

    fn settle(&mut self, done: Vec<Completion>) {
        for completion in done {
            *self.completed.entry(completion.token).or_default() += 1;
            assert_eq!(
                self.completed[&completion.token], 1,
                "token {} twice",
                completion.token
            );
            let request = self
                .in_flight
                .remove(&completion.token)
                .expect("completion of a request in flight");
            let range =
                request.sector as usize * 512..(request.sector as usize + request.sectors) * 512;
            let sectors = request.sector as usize..request.sector as usize + request.sectors;
            match completion.result {
                Ok(()) => match request.op {
                    Operation::Read => {
                        let got = match &request.zero_copy {
                            Some(target) => &target[..],
                            None => completion.buffer.as_deref().expect("buffer returned"),
                        };
                        for (i, sector) in sectors.clone().enumerate() {
                            if !self.unknown[sector] {
                                assert_eq!(
                                    &got[i * 512..][..512],
                                    &self.disk[sector * 512..][..512],
                                    "sector {sector} of token {}",
                                    completion.token
                                );
                            }
                        }
                    }
                    Operation::Write => {
                        self.disk[range].copy_from_slice(&request.data);
                        self.unknown[sectors].fill(false);
                    }
                    _ => {}
                },
                Err(Error::IoError | Error::StatusNotWritten) => {
                    self.failures += 1;
                    assert!(
                        self.failures <= self.injected,
                        "more failures than injected"
                    );
                    if request.op == Operation::Write {
                        self.unknown[sectors].fill(true);
                    }
                }
                Err(other) => panic!("unexpected error {other}"),
            }
        }
    }

    /// Lets everything finish, then checks that nothing was lost or leaked.
    fn finish(mut self) {
        for _ in 0..1_000 {
            let driver = &self.rig.driver;
            if self.in_flight.is_empty()
                && !driver.is_resizing()
                && driver.outstanding_requests() == 0
            {
                break;
            }
            self.rig.driver.kick();
            self.rig.device.process(usize::MAX);
            let done = self.rig.poll();
            self.settle(done);
            self.rig
                .clock
                .advance(DriverConfig::default().drain_timeout_ns);
        }
        assert!(
            self.in_flight.is_empty(),
            "requests never completed: {:?}",
            self.in_flight.keys()
        );
        assert_eq!(self.rig.driver.outstanding_requests(), 0);
        assert!(!self.rig.driver.is_resizing());
        self.rig.driver.check_invariants();
        let disk = self.rig.device.read_disk(0, CAPACITY as usize * 512);
        for sector in 0..CAPACITY as usize {
            if !self.unknown[sector] {
                assert_eq!(
                    &disk[sector * 512..][..512],
                    &self.disk[sector * 512..][..512]
                );
            }
        }
        let hal = self.rig.hal.clone();
        drop(self.rig);
        assert_eq!(hal.outstanding_pages(), 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn every_request_completes_once_with_the_right_data(
        variant in variant(),
        steps in prop::collection::vec(step(), 1..80),
    ) {
        let mut model = Model::new(variant);
        if matches!(variant, Variant::ModernQueueReset | Variant::ModernQemu) {
            prop_assert!(model.rig.device.driver_features().contains(Features::RING_RESET));
        }
        for step in steps {
            model.apply(step);
        }
        model.finish();
    }
}
