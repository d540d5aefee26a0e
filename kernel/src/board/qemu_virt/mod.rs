//! QEMU `virt`. Everything here comes from the devicetree at run time, except the early console:
//! before the DTB is parsed, messages go to the PL011 where QEMU always puts it.

/// Physical address of the first PL011 on QEMU virt (hw/arm/virt.c, VIRT_UART). Used only until
/// the devicetree names the console.
pub const EARLY_UART_PA: u64 = 0x0900_0000;
