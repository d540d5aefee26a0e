//! GICv3 (Arm IHI 0069): memory-mapped distributor (GICD) and per-CPU redistributors (GICR),
//! system-register CPU interface (ICC_*_EL1), affinity routing.

use super::{Acknowledged, InterruptController, IrqId, Trigger};
use crate::arch::cpu::{MAX_CPUS, cpu_index, mpidr_affinity};
use crate::drivers::mmio::Mmio;
use crate::sync::IrqSpinLock;
use core::sync::atomic::{AtomicUsize, Ordering};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {
    u32,

    /// Distributor Control Register. The non-secure view and a single-security-state GIC use
    /// bits 0, 1 and 4 as named; in the secure view of a GIC with two security states bit 2
    /// enables Secure Group 1, bit 4 is ARE_S and bit 5 ARE_NS.
    GICD_CTLR [
        /// Register write pending.
        RWP OFFSET(31) NUMBITS(1) [],
        /// Affinity routing enable for the non-secure state (secure view only).
        ARE_NS OFFSET(5) NUMBITS(1) [],
        /// Affinity routing enable (ARE, ARE_NS in the non-secure view, ARE_S in the secure view).
        ARE OFFSET(4) NUMBITS(1) [],
        /// Enable Secure Group 1 interrupts (secure view).
        ENABLE_GRP1S OFFSET(2) NUMBITS(1) [],
        /// Enable group 1 (non-secure) interrupts.
        ENABLE_GRP1A OFFSET(1) NUMBITS(1) [],
        /// Enable group 0 (single security state) / group 1 (non-secure view).
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) []
    ],

    /// Interrupt Controller Type Register.
    GICD_TYPER [
        IT_LINES_NUMBER OFFSET(0) NUMBITS(5) []
    ],

    /// Redistributor Wake Register.
    GICR_WAKER [
        /// Set while the redistributor's interface to the CPU is quiescent.
        CHILDREN_ASLEEP OFFSET(2) NUMBITS(1) [],
        /// Cleared to tell the redistributor its CPU is awake.
        PROCESSOR_SLEEP OFFSET(1) NUMBITS(1) []
    ]
}

register_bitfields! {
    u64,

    /// Redistributor Type Register.
    GICR_TYPER [
        /// Affinity of the CPU this redistributor serves (Aff3.Aff2.Aff1.Aff0).
        AFFINITY OFFSET(32) NUMBITS(32) [],
        /// Last redistributor in its region.
        LAST OFFSET(4) NUMBITS(1) [],
        /// Virtual LPIs supported: the redistributor has two extra 64 KiB frames.
        VLPIS OFFSET(1) NUMBITS(1) []
    ]
}

register_structs! {
    #[allow(non_snake_case)]
    pub DistributorRegisters {
        (0x0000 => CTLR: ReadWrite<u32, GICD_CTLR::Register>),
        (0x0004 => TYPER: ReadOnly<u32, GICD_TYPER::Register>),
        (0x0008 => _reserved0),
        (0x0080 => IGROUPR: [ReadWrite<u32>; 32]),
        (0x0100 => ISENABLER: [ReadWrite<u32>; 32]),
        (0x0180 => ICENABLER: [ReadWrite<u32>; 32]),
        (0x0200 => ISPENDR: [ReadWrite<u32>; 32]),
        (0x0280 => ICPENDR: [ReadWrite<u32>; 32]),
        (0x0300 => ISACTIVER: [ReadWrite<u32>; 32]),
        (0x0380 => ICACTIVER: [ReadWrite<u32>; 32]),
        (0x0400 => IPRIORITYR: [ReadWrite<u32>; 255]),
        (0x07fc => _reserved1),
        (0x0c00 => ICFGR: [ReadWrite<u32>; 64]),
        (0x0d00 => IGRPMODR: [ReadWrite<u32>; 32]),
        (0x0d80 => _reserved2),
        (0x6100 => IROUTER: [ReadWrite<u64>; 988]),
        (0x7fe0 => @END),
    }
}

register_structs! {
    #[allow(non_snake_case)]
    pub RedistributorRegisters {
        (0x0000 => CTLR: ReadWrite<u32>),
        (0x0004 => IIDR: ReadOnly<u32>),
        (0x0008 => TYPER: ReadOnly<u64, GICR_TYPER::Register>),
        (0x0010 => STATUSR: ReadWrite<u32>),
        (0x0014 => WAKER: ReadWrite<u32, GICR_WAKER::Register>),
        (0x0018 => _reserved0),
        (0x10080 => IGROUPR0: ReadWrite<u32>),
        (0x10084 => _reserved1),
        (0x10100 => ISENABLER0: ReadWrite<u32>),
        (0x10104 => _reserved2),
        (0x10180 => ICENABLER0: ReadWrite<u32>),
        (0x10184 => _reserved3),
        (0x10200 => ISPENDR0: ReadWrite<u32>),
        (0x10204 => _reserved4),
        (0x10280 => ICPENDR0: ReadWrite<u32>),
        (0x10284 => _reserved5),
        (0x10380 => ICACTIVER0: ReadWrite<u32>),
        (0x10384 => _reserved6),
        (0x10400 => IPRIORITYR: [ReadWrite<u32>; 8]),
        (0x10420 => _reserved7),
        (0x10c00 => ICFGR: [ReadWrite<u32>; 2]),
        (0x10c08 => _reserved8),
        (0x10d00 => IGRPMODR0: ReadWrite<u32>),
        (0x10d04 => @END),
    }
}

/// Distance between redistributors without / with the virtual-LPI frames.
const GICR_STRIDE: usize = 0x2_0000;
const GICR_STRIDE_VLPI: usize = 0x4_0000;

/// ICC system registers (GICv3 CPU interface), by encoding.
mod icc {
    macro_rules! read {
        ($name:ident, $enc:literal) => {
            pub fn $name() -> u64 {
                let value: u64;
                // SAFETY: reads a GIC CPU interface register; enabled by ICC_SRE_EL1.SRE.
                unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) value, options(nomem, nostack, preserves_flags)) };
                value
            }
        };
    }
    macro_rules! write {
        ($name:ident, $enc:literal) => {
            pub fn $name(value: u64) {
                // SAFETY: writes a GIC CPU interface register; the callers keep the GIC's rules.
                unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), "isb", in(reg) value, options(nostack, preserves_flags)) };
            }
        };
    }
    read!(read_sre, "S3_0_C12_C12_5");
    write!(write_sre, "S3_0_C12_C12_5");
    write!(write_pmr, "S3_0_C4_C6_0");
    write!(write_bpr1, "S3_0_C12_C12_3");
    write!(write_ctlr, "S3_0_C12_C12_4");
    write!(write_igrpen1, "S3_0_C12_C12_7");
    read!(read_iar1, "S3_0_C12_C12_0");
    write!(write_eoir1, "S3_0_C12_C12_1");
    write!(write_sgi1r, "S3_0_C12_C11_5");
}

pub struct GicV3 {
    gicd: Mmio<DistributorRegisters>,
    gicr_base: usize,
    gicr_size: usize,
    /// This CPU's redistributor (kernel virtual address), found in `init_cpu`.
    gicr_of_cpu: [AtomicUsize; MAX_CPUS],
    /// The kernel runs in the secure state: interrupts are Secure Group 1 (signalled as IRQs to
    /// Secure EL1) instead of Non-secure Group 1.
    secure: bool,
    config: IrqSpinLock<()>,
}

impl GicV3 {
    /// `secure`: the kernel runs in Secure EL1 (entered at EL3).
    ///
    /// # Safety
    /// `gicd` must be the kernel virtual address of the distributor and `gicr_base`/`gicr_size`
    /// a redistributor region, all mapped as device memory for good.
    pub unsafe fn new(gicd: usize, gicr_base: usize, gicr_size: usize, secure: bool) -> Self {
        Self {
            // SAFETY: forwarded from the caller.
            gicd: unsafe { Mmio::new(gicd) },
            gicr_base,
            gicr_size,
            gicr_of_cpu: [const { AtomicUsize::new(0) }; MAX_CPUS],
            secure,
            config: IrqSpinLock::new(()),
        }
    }

    /// IGROUPR and IGRPMODR values that make interrupts reach this kernel as IRQs:
    /// Non-secure Group 1, or Secure Group 1 when running secure.
    fn group_registers(&self) -> (u32, u32) {
        if self.secure {
            (0, u32::MAX)
        } else {
            (u32::MAX, 0)
        }
    }

    fn wait_for_rwp(&self) {
        while self.gicd.CTLR.is_set(GICD_CTLR::RWP) {
            core::hint::spin_loop();
        }
    }

    /// Distributor setup, once at boot: affinity routing on, every SPI disabled, in the group
    /// that reaches this kernel as IRQs, level-triggered, default priority, routed to the boot
    /// CPU when enabled.
    pub fn init_distributor(&self) {
        let gicd = &self.gicd;
        gicd.CTLR.set(0);
        self.wait_for_rwp();
        let (group, modifier) = self.group_registers();
        let words = (self.num_irqs() / 32) as usize;
        for n in 1..words {
            gicd.ICENABLER[n].set(u32::MAX);
            gicd.ICPENDR[n].set(u32::MAX);
            gicd.ICACTIVER[n].set(u32::MAX);
            gicd.IGROUPR[n].set(group);
            gicd.IGRPMODR[n].set(modifier);
        }
        for n in 8..(words * 8) {
            gicd.IPRIORITYR[n].set(u32::from_ne_bytes([super::DEFAULT_PRIORITY; 4]));
        }
        for n in 2..(words * 2) {
            gicd.ICFGR[n].set(0);
        }
        self.wait_for_rwp();
        if self.secure {
            gicd.CTLR
                .write(GICD_CTLR::ARE::SET + GICD_CTLR::ARE_NS::SET + GICD_CTLR::ENABLE_GRP1S::SET);
        } else {
            gicd.CTLR.write(
                GICD_CTLR::ARE::SET + GICD_CTLR::ENABLE_GRP1A::SET + GICD_CTLR::ENABLE_GRP0::SET,
            );
        }
        self.wait_for_rwp();
    }

    /// Finds the redistributor serving the CPU with affinity `mpidr`.
    fn find_redistributor(&self, mpidr: u64) -> Option<usize> {
        let wanted = ((mpidr >> 8) & 0xff00_0000) | (mpidr & 0x00ff_ffff);
        let mut offset = 0;
        while offset + GICR_STRIDE <= self.gicr_size {
            // SAFETY: the redistributor region was mapped by the caller of `new`; each frame
            // within it starts with the RD_base registers.
            let gicr: Mmio<RedistributorRegisters> = unsafe { Mmio::new(self.gicr_base + offset) };
            let typer = gicr.TYPER.extract();
            if typer.read(GICR_TYPER::AFFINITY) == wanted {
                return Some(self.gicr_base + offset);
            }
            if typer.is_set(GICR_TYPER::LAST) {
                return None;
            }
            offset += if typer.is_set(GICR_TYPER::VLPIS) {
                GICR_STRIDE_VLPI
            } else {
                GICR_STRIDE
            };
        }
        None
    }

    fn gicr(&self) -> Mmio<RedistributorRegisters> {
        let base = self.gicr_of_cpu[cpu_index()].load(Ordering::Acquire);
        // SAFETY: set by `init_cpu` to this CPU's redistributor inside the mapped region.
        unsafe { Mmio::new(base) }
    }
}

impl InterruptController for GicV3 {
    fn version(&self) -> u8 {
        3
    }

    fn num_irqs(&self) -> u32 {
        ((self.gicd.TYPER.read(GICD_TYPER::IT_LINES_NUMBER) + 1) * 32).min(IrqId::LIMIT)
    }

    fn init_cpu(&self) {
        let Some(base) = self.find_redistributor(mpidr_affinity()) else {
            log::error!(
                "GICv3: no redistributor for CPU affinity {:#x}; interrupts stay off",
                mpidr_affinity()
            );
            return;
        };
        self.gicr_of_cpu[cpu_index()].store(base, Ordering::Release);
        let gicr = self.gicr();
        gicr.WAKER.modify(GICR_WAKER::PROCESSOR_SLEEP::CLEAR);
        while gicr.WAKER.is_set(GICR_WAKER::CHILDREN_ASLEEP) {
            core::hint::spin_loop();
        }
        gicr.ICENABLER0.set(u32::MAX);
        gicr.ICPENDR0.set(u32::MAX);
        gicr.ICACTIVER0.set(u32::MAX);
        let (group, modifier) = self.group_registers();
        gicr.IGROUPR0.set(group);
        gicr.IGRPMODR0.set(modifier);
        for priority in gicr.IPRIORITYR.iter() {
            priority.set(u32::from_ne_bytes([super::DEFAULT_PRIORITY; 4]));
        }

        icc::write_sre(icc::read_sre() | 1);
        icc::write_pmr(0xff);
        icc::write_bpr1(0);
        icc::write_ctlr(0);
        icc::write_igrpen1(1);
    }

    fn enable(&self, irq: IrqId, trigger: Trigger, priority: u8) {
        let _guard = self.config.lock();
        let shift = (irq.0 % 4) * 8;
        let edge_bit = 1 << ((irq.0 % 16) * 2 + 1);
        let set_trigger = |cfg: &ReadWrite<u32>| match trigger {
            Trigger::Edge => cfg.set(cfg.get() | edge_bit),
            Trigger::Level => cfg.set(cfg.get() & !edge_bit),
        };
        if irq.is_private() {
            let gicr = self.gicr();
            let word = &gicr.IPRIORITYR[(irq.0 / 4) as usize];
            word.set((word.get() & !(0xff << shift)) | (u32::from(priority) << shift));
            if !irq.is_sgi() {
                set_trigger(&gicr.ICFGR[(irq.0 / 16) as usize]);
            }
            gicr.ISENABLER0.set(1 << irq.0);
        } else {
            let gicd = &self.gicd;
            let word = &gicd.IPRIORITYR[(irq.0 / 4) as usize];
            word.set((word.get() & !(0xff << shift)) | (u32::from(priority) << shift));
            set_trigger(&gicd.ICFGR[(irq.0 / 16) as usize]);
            let mpidr = mpidr_affinity();
            let route = ((mpidr >> 32) << 32) | (mpidr & 0x00ff_ffff);
            gicd.IROUTER[(irq.0 - 32) as usize].set(route);
            gicd.ISENABLER[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
            self.wait_for_rwp();
        }
    }

    fn unmask(&self, irq: IrqId) {
        if irq.is_private() {
            self.gicr().ISENABLER0.set(1 << irq.0);
        } else {
            self.gicd.ISENABLER[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
            self.wait_for_rwp();
        }
    }

    fn disable(&self, irq: IrqId) {
        if irq.is_private() {
            self.gicr().ICENABLER0.set(1 << irq.0);
        } else {
            self.gicd.ICENABLER[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
            self.wait_for_rwp();
        }
    }

    fn acknowledge(&self) -> Option<Acknowledged> {
        let raw = (icc::read_iar1() & 0xff_ffff) as u32;
        (raw < IrqId::LIMIT).then_some(Acknowledged {
            irq: IrqId(raw),
            raw,
        })
    }

    fn end_of_interrupt(&self, ack: Acknowledged) {
        icc::write_eoir1(u64::from(ack.raw));
    }

    fn set_pending(&self, irq: IrqId) {
        if irq.is_private() {
            self.gicr().ISPENDR0.set(1 << irq.0);
        } else {
            self.gicd.ISPENDR[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
        }
    }

    fn send_sgi(&self, sgi: u8, targets: u8) {
        // QEMU virt numbers CPUs 0..7 in Aff0 of cluster 0.
        let value = (u64::from(sgi & 0xf) << 24) | u64::from(targets);
        icc::write_sgi1r(value);
    }
}
