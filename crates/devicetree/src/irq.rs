//! GIC interrupt specifiers (the 3-cell `interrupts` entries under an ARM GIC).

use crate::error::{Error, Name};
use crate::node::Node;

/// `compatible` strings of the GICv2 distributors this crate recognises.
pub const GICV2_COMPATIBLES: [&str; 2] = ["arm,cortex-a15-gic", "arm,gic-400"];
/// `compatible` strings of the GICv3 distributors this crate recognises.
pub const GICV3_COMPATIBLES: [&str; 1] = ["arm,gic-v3"];

/// The GIC architecture version of `node` (2 or 3) if it is a GIC this crate recognises.
pub(crate) fn gic_version(node: &Node<'_>) -> Option<u32> {
    if GICV3_COMPATIBLES.iter().any(|c| node.is_compatible(c)) {
        Some(3)
    } else if GICV2_COMPATIBLES.iter().any(|c| node.is_compatible(c)) {
        Some(2)
    } else {
        None
    }
}

/// Shared peripheral or private (per-CPU) peripheral interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// Shared peripheral interrupt; specifier cell 0 = 0.
    Spi,
    /// Private peripheral interrupt; specifier cell 0 = 1.
    Ppi,
}

/// How the interrupt line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge triggered (flags 1: rising, 2: falling).
    Edge,
    /// Level sensitive (flags 4: active high, 8: active low).
    Level,
}

/// A decoded GIC interrupt specifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqSpec {
    pub kind: IrqKind,
    /// The number within its kind, as in the DTB (SPI 0..=987, PPI 0..=15).
    pub number: u32,
    pub trigger: Trigger,
}

/// INTID of SPI 0.
const FIRST_SPI_INTID: u32 = 32;
/// INTID of PPI 0.
const FIRST_PPI_INTID: u32 = 16;
/// SPIs occupy INTIDs 32..=1019.
const SPI_COUNT: u32 = 988;
/// PPIs occupy INTIDs 16..=31.
const PPI_COUNT: u32 = 16;

impl IrqSpec {
    /// The GIC interrupt ID: SPI n is 32 + n, PPI n is 16 + n.
    pub fn intid(&self) -> u32 {
        let first = match self.kind {
            IrqKind::Spi => FIRST_SPI_INTID,
            IrqKind::Ppi => FIRST_PPI_INTID,
        };
        // Saturates only for a hand-made spec with an impossible number; decoded ones fit.
        first.saturating_add(self.number)
    }

    /// Decodes `<type number flags>` from the `interrupts` of `node`. Bits 8..16 of the flags
    /// (the GICv2 PPI CPU mask) are ignored; the low nibble must name one trigger mode.
    pub(crate) fn from_gic_cells(
        node: &str,
        [irq_type, number, flags]: [u32; 3],
    ) -> Result<Self, Error> {
        let (kind, count) = match irq_type {
            0 => (IrqKind::Spi, SPI_COUNT),
            1 => (IrqKind::Ppi, PPI_COUNT),
            irq_type => {
                return Err(Error::UnsupportedIrqType {
                    node: Name::new(node),
                    irq_type,
                });
            }
        };
        if number >= count {
            return Err(Error::IrqNumberOutOfRange {
                node: Name::new(node),
                number,
            });
        }
        let trigger = match flags & 0xf {
            1 | 2 => Trigger::Edge,
            4 | 8 => Trigger::Level,
            _ => {
                return Err(Error::BadIrqFlags {
                    node: Name::new(node),
                    flags,
                });
            }
        };
        Ok(IrqSpec {
            kind,
            number,
            trigger,
        })
    }
}
