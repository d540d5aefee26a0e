//! Device drivers. Each takes the addresses the devicetree reports; none hard-codes a board.

pub mod gic;
pub mod mmio;
pub mod pl011;
pub mod virtio;
