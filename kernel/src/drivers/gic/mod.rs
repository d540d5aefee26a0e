//! Arm Generic Interrupt Controller: GICv2 (memory-mapped CPU interface) and GICv3 (system
//! register CPU interface, redistributors) behind one trait.

pub mod v2;
pub mod v3;

/// A GIC interrupt ID (INTID): 0-15 SGIs, 16-31 PPIs, 32-1019 SPIs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IrqId(pub u32);

impl IrqId {
    /// IDs 1020-1023 are special (1023 = spurious: nothing pending).
    pub const SPURIOUS: IrqId = IrqId(1023);
    /// One past the largest SPI ID.
    pub const LIMIT: u32 = 1020;

    pub fn is_sgi(self) -> bool {
        self.0 < 16
    }

    pub fn is_private(self) -> bool {
        self.0 < 32
    }
}

/// An acknowledged interrupt: its ID plus the raw acknowledge value the end-of-interrupt write
/// must echo (GICv2 SGIs carry the source CPU there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    pub irq: IrqId,
    raw: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Level,
    Edge,
}

/// The operations the kernel needs from an interrupt controller.
pub trait InterruptController: Sync {
    /// 2 or 3.
    fn version(&self) -> u8;
    /// Number of interrupt IDs the distributor implements (GICD_TYPER.ITLinesNumber).
    fn num_irqs(&self) -> u32;
    /// Initialises this CPU's interface (and, for GICv3, its redistributor). Once per CPU.
    fn init_cpu(&self);
    /// Configures and enables an interrupt, routed to the calling CPU.
    fn enable(&self, irq: IrqId, trigger: Trigger, priority: u8);
    /// Enables again an interrupt `enable` configured, keeping its routing, trigger and
    /// priority. Drivers that mask their interrupt while they handle it use this, not `enable`:
    /// on GICv2 an edge that arrived while masked is pending for the CPU it was routed to, so
    /// routing it to another CPU on the way would strand it.
    fn unmask(&self, irq: IrqId);
    /// Masks an interrupt (an edge arriving meanwhile stays pending).
    fn disable(&self, irq: IrqId);
    /// Acknowledges the highest-priority pending interrupt (None when spurious).
    fn acknowledge(&self) -> Option<Acknowledged>;
    /// Signals the end of handling an acknowledged interrupt.
    fn end_of_interrupt(&self, ack: Acknowledged);
    /// Makes an interrupt pending by software (SPIs and PPIs; used by tests and for kicks).
    fn set_pending(&self, irq: IrqId);
    /// Sends SGI `sgi` (0-15) to the CPUs whose indices are set in `targets`.
    fn send_sgi(&self, sgi: u8, targets: u8);
}

/// Priority used for all device interrupts (lower value = higher priority).
pub const DEFAULT_PRIORITY: u8 = 0xa0;
