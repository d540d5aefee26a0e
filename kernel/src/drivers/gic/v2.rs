//! GICv2 (Arm IHI 0048B): memory-mapped distributor (GICD) and CPU interface (GICC).

use super::{Acknowledged, InterruptController, IrqId, Trigger};
use crate::drivers::mmio::Mmio;
use crate::sync::IrqSpinLock;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {
    u32,

    /// Distributor Control Register (non-secure view).
    GICD_CTLR [
        /// Forward group 1 (non-secure) interrupts to CPU interfaces; bit 0 in the secure view
        /// enables group 0, bit 1 group 1.
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) []
    ],

    /// Interrupt Controller Type Register.
    GICD_TYPER [
        /// Implemented interrupt lines: 32 * (N + 1).
        IT_LINES_NUMBER OFFSET(0) NUMBITS(5) [],
        /// Implemented CPU interfaces minus one.
        CPU_NUMBER OFFSET(5) NUMBITS(3) [],
        /// Security extensions implemented.
        SECURITY_EXTN OFFSET(10) NUMBITS(1) []
    ],

    /// Software Generated Interrupt Register.
    GICD_SGIR [
        /// 0b00: the CPUs in CPU_TARGET_LIST.
        TARGET_LIST_FILTER OFFSET(24) NUMBITS(2) [],
        CPU_TARGET_LIST OFFSET(16) NUMBITS(8) [],
        SGI_INTID OFFSET(0) NUMBITS(4) []
    ],

    /// CPU Interface Control Register.
    GICC_CTLR [
        ENABLE_GRP0 OFFSET(0) NUMBITS(1) [],
        ENABLE_GRP1 OFFSET(1) NUMBITS(1) []
    ],

    /// Interrupt Priority Mask Register: only priorities numerically below this are signalled.
    GICC_PMR [
        PRIORITY OFFSET(0) NUMBITS(8) []
    ],

    /// Interrupt Acknowledge / End Of Interrupt register layout.
    GICC_IAR [
        INTERRUPT_ID OFFSET(0) NUMBITS(10) [],
        CPU_ID OFFSET(10) NUMBITS(3) []
    ]
}

register_structs! {
    #[allow(non_snake_case)]
    pub DistributorRegisters {
        (0x000 => CTLR: ReadWrite<u32, GICD_CTLR::Register>),
        (0x004 => TYPER: ReadOnly<u32, GICD_TYPER::Register>),
        (0x008 => _reserved0),
        (0x080 => IGROUPR: [ReadWrite<u32>; 32]),
        (0x100 => ISENABLER: [ReadWrite<u32>; 32]),
        (0x180 => ICENABLER: [ReadWrite<u32>; 32]),
        (0x200 => ISPENDR: [ReadWrite<u32>; 32]),
        (0x280 => ICPENDR: [ReadWrite<u32>; 32]),
        (0x300 => ISACTIVER: [ReadWrite<u32>; 32]),
        (0x380 => ICACTIVER: [ReadWrite<u32>; 32]),
        (0x400 => IPRIORITYR: [ReadWrite<u32>; 255]),
        (0x7fc => _reserved1),
        (0x800 => ITARGETSR: [ReadWrite<u32>; 255]),
        (0xbfc => _reserved2),
        (0xc00 => ICFGR: [ReadWrite<u32>; 64]),
        (0xd00 => _reserved3),
        (0xf00 => SGIR: WriteOnly<u32, GICD_SGIR::Register>),
        (0xf04 => @END),
    }
}

register_structs! {
    #[allow(non_snake_case)]
    pub CpuInterfaceRegisters {
        (0x00 => CTLR: ReadWrite<u32, GICC_CTLR::Register>),
        (0x04 => PMR: ReadWrite<u32, GICC_PMR::Register>),
        (0x08 => BPR: ReadWrite<u32>),
        (0x0c => IAR: ReadOnly<u32, GICC_IAR::Register>),
        (0x10 => EOIR: WriteOnly<u32, GICC_IAR::Register>),
        (0x14 => @END),
    }
}

pub struct GicV2 {
    gicd: Mmio<DistributorRegisters>,
    gicc: Mmio<CpuInterfaceRegisters>,
    /// Serialises read-modify-write of shared distributor registers.
    config: IrqSpinLock<()>,
}

impl GicV2 {
    /// # Safety
    /// `gicd` and `gicc` must be kernel virtual addresses of the GICv2 distributor and CPU
    /// interface, mapped as device memory for good.
    pub unsafe fn new(gicd: usize, gicc: usize) -> Self {
        Self {
            // SAFETY: forwarded from the caller.
            gicd: unsafe { Mmio::new(gicd) },
            // SAFETY: forwarded from the caller.
            gicc: unsafe { Mmio::new(gicc) },
            config: IrqSpinLock::new(()),
        }
    }

    /// Distributor setup, once at boot: every SPI disabled, level-triggered, default priority,
    /// routed to CPU 0, in group 0; then forwarding enabled.
    ///
    /// Groups: without security extensions, or seen from the secure side (the kernel entered at
    /// EL3), group 0 interrupts reach the CPU as IRQs (GICC_CTLR.FIQEn stays 0). Seen from the
    /// non-secure side the group registers ignore writes and QEMU has already made every
    /// interrupt non-secure group 1, which the non-secure CPU interface signals as IRQs.
    pub fn init_distributor(&self) {
        let gicd = &self.gicd;
        gicd.CTLR.set(0);
        let words = (self.num_irqs() / 32) as usize;
        for n in 1..words {
            gicd.ICENABLER[n].set(u32::MAX);
            gicd.ICPENDR[n].set(u32::MAX);
            gicd.ICACTIVER[n].set(u32::MAX);
            gicd.IGROUPR[n].set(0);
        }
        for n in 8..(words * 8) {
            gicd.IPRIORITYR[n].set(u32::from_ne_bytes([super::DEFAULT_PRIORITY; 4]));
            gicd.ITARGETSR[n].set(0x0101_0101);
        }
        for n in 2..(words * 2) {
            gicd.ICFGR[n].set(0);
        }
        gicd.CTLR
            .write(GICD_CTLR::ENABLE_GRP0::SET + GICD_CTLR::ENABLE_GRP1::SET);
    }

    /// Sets byte `irq % 4` of 32-bit register `irq / 4` in an array of byte fields.
    fn write_byte_field(registers: &[ReadWrite<u32>], irq: IrqId, value: u8) {
        let word = &registers[(irq.0 / 4) as usize];
        let shift = (irq.0 % 4) * 8;
        word.set((word.get() & !(0xff << shift)) | (u32::from(value) << shift));
    }
}

impl InterruptController for GicV2 {
    fn version(&self) -> u8 {
        2
    }

    fn num_irqs(&self) -> u32 {
        ((self.gicd.TYPER.read(GICD_TYPER::IT_LINES_NUMBER) + 1) * 32).min(IrqId::LIMIT)
    }

    fn init_cpu(&self) {
        let gicd = &self.gicd;
        // Banked per CPU: SGIs and PPIs.
        gicd.ICENABLER[0].set(u32::MAX);
        gicd.ICPENDR[0].set(u32::MAX);
        gicd.ICACTIVER[0].set(u32::MAX);
        gicd.IGROUPR[0].set(0);
        for n in 0..8 {
            gicd.IPRIORITYR[n].set(u32::from_ne_bytes([super::DEFAULT_PRIORITY; 4]));
        }
        self.gicc.PMR.write(GICC_PMR::PRIORITY.val(0xff));
        self.gicc.BPR.set(0);
        self.gicc
            .CTLR
            .write(GICC_CTLR::ENABLE_GRP0::SET + GICC_CTLR::ENABLE_GRP1::SET);
    }

    fn enable(&self, irq: IrqId, trigger: Trigger, priority: u8) {
        let _guard = self.config.lock();
        let gicd = &self.gicd;
        Self::write_byte_field(&gicd.IPRIORITYR, irq, priority);
        if !irq.is_private() {
            let cpu = crate::arch::cpu::cpu_index() as u32;
            Self::write_byte_field(&gicd.ITARGETSR, irq, 1 << cpu);
        }
        if !irq.is_sgi() {
            let cfg = &gicd.ICFGR[(irq.0 / 16) as usize];
            let bit = 1 << ((irq.0 % 16) * 2 + 1);
            match trigger {
                Trigger::Edge => cfg.set(cfg.get() | bit),
                Trigger::Level => cfg.set(cfg.get() & !bit),
            }
        }
        gicd.ISENABLER[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
    }

    fn unmask(&self, irq: IrqId) {
        self.gicd.ISENABLER[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
    }

    fn disable(&self, irq: IrqId) {
        self.gicd.ICENABLER[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
    }

    fn acknowledge(&self) -> Option<Acknowledged> {
        let raw = self.gicc.IAR.get();
        let id = raw & 0x3ff;
        (id < IrqId::LIMIT).then_some(Acknowledged {
            irq: IrqId(id),
            raw,
        })
    }

    fn end_of_interrupt(&self, ack: Acknowledged) {
        self.gicc.EOIR.set(ack.raw);
    }

    fn set_pending(&self, irq: IrqId) {
        self.gicd.ISPENDR[(irq.0 / 32) as usize].set(1 << (irq.0 % 32));
    }

    fn send_sgi(&self, sgi: u8, targets: u8) {
        self.gicd.SGIR.write(
            GICD_SGIR::TARGET_LIST_FILTER.val(0)
                + GICD_SGIR::CPU_TARGET_LIST.val(u32::from(targets))
                + GICD_SGIR::SGI_INTID.val(u32::from(sgi & 0xf)),
        );
    }
}
