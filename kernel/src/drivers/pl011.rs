//! Arm PrimeCell UART (PL011) driver: polled transmit, interrupt-driven receive.
//!
//! Register descriptions from the PL011 Technical Reference Manual (ARM DDI 0183), section 3.3.

use super::mmio::Mmio;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

register_bitfields! {
    u32,

    /// Data Register.
    DR [
        /// Received or transmitted character.
        DATA OFFSET(0) NUMBITS(8) [],
        /// Framing, parity, break and overrun error bits of a received character.
        ERRORS OFFSET(8) NUMBITS(4) []
    ],

    /// Flag Register.
    FR [
        /// Transmit FIFO empty.
        TXFE OFFSET(7) NUMBITS(1) [],
        /// Receive FIFO full.
        RXFF OFFSET(6) NUMBITS(1) [],
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        /// Receive FIFO empty.
        RXFE OFFSET(4) NUMBITS(1) [],
        /// UART busy transmitting.
        BUSY OFFSET(3) NUMBITS(1) []
    ],

    /// Integer Baud Rate Divisor.
    IBRD [
        BAUD_DIVINT OFFSET(0) NUMBITS(16) []
    ],

    /// Fractional Baud Rate Divisor.
    FBRD [
        BAUD_DIVFRAC OFFSET(0) NUMBITS(6) []
    ],

    /// Line Control Register.
    LCR_H [
        /// Word length.
        WLEN OFFSET(5) NUMBITS(2) [
            EightBit = 0b11
        ],
        /// FIFO enable.
        FEN OFFSET(4) NUMBITS(1) []
    ],

    /// Control Register.
    CR [
        /// Receive enable.
        RXE OFFSET(9) NUMBITS(1) [],
        /// Transmit enable.
        TXE OFFSET(8) NUMBITS(1) [],
        /// UART enable.
        UARTEN OFFSET(0) NUMBITS(1) []
    ],

    /// Interrupt FIFO Level Select.
    IFLS [
        /// Receive interrupt FIFO level.
        RXIFLSEL OFFSET(3) NUMBITS(3) [
            OneEighth = 0b000
        ]
    ],

    /// Interrupt Mask Set/Clear (1 = enabled).
    IMSC [
        /// Receive timeout interrupt.
        RTIM OFFSET(6) NUMBITS(1) [],
        /// Receive interrupt.
        RXIM OFFSET(4) NUMBITS(1) []
    ],

    /// Interrupt Clear Register.
    ICR [
        /// Clears every interrupt.
        ALL OFFSET(0) NUMBITS(11) []
    ]
}

register_structs! {
    #[allow(non_snake_case)]
    pub Pl011Registers {
        (0x00 => DR: ReadWrite<u32, DR::Register>),
        (0x04 => _reserved0),
        (0x18 => FR: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x24 => IBRD: WriteOnly<u32, IBRD::Register>),
        (0x28 => FBRD: WriteOnly<u32, FBRD::Register>),
        (0x2c => LCR_H: ReadWrite<u32, LCR_H::Register>),
        (0x30 => CR: ReadWrite<u32, CR::Register>),
        (0x34 => IFLS: ReadWrite<u32, IFLS::Register>),
        (0x38 => IMSC: ReadWrite<u32, IMSC::Register>),
        (0x3c => _reserved2),
        (0x44 => ICR: WriteOnly<u32, ICR::Register>),
        (0x48 => @END),
    }
}

/// Default UART reference clock on QEMU virt (the `apb-pclk` fixed clock), used when the
/// devicetree does not say.
pub const DEFAULT_CLOCK_HZ: u32 = 24_000_000;
const BAUD_RATE: u32 = 115_200;

pub struct Pl011 {
    registers: Mmio<Pl011Registers>,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the kernel virtual address of a PL011 register block mapped as device
    /// memory, for as long as the driver is used.
    pub const unsafe fn new(base: usize) -> Self {
        Self {
            // SAFETY: forwarded from the caller.
            registers: unsafe { Mmio::new(base) },
        }
    }

    pub fn base(&self) -> usize {
        self.registers.base()
    }

    /// Programs 115200 8N1 and enables transmit and receive.
    pub fn init(&self, clock_hz: u32) {
        let regs = &self.registers;
        self.flush();
        regs.CR.set(0);
        regs.ICR.write(ICR::ALL::SET);
        // Divisor = clock / (16 * baud), as a 16.6 fixed-point number, rounded.
        let divisor_x64 =
            (u64::from(clock_hz) * 4 + u64::from(BAUD_RATE) / 2) / u64::from(BAUD_RATE);
        regs.IBRD
            .write(IBRD::BAUD_DIVINT.val((divisor_x64 >> 6) as u32));
        regs.FBRD
            .write(FBRD::BAUD_DIVFRAC.val((divisor_x64 & 0x3f) as u32));
        // Keep the FIFO setting as found: changing FEN empties the receive FIFO, which would drop
        // input typed (or piped) before the kernel got here.
        let fifo = if regs.LCR_H.is_set(LCR_H::FEN) {
            LCR_H::FEN::SET
        } else {
            LCR_H::FEN::CLEAR
        };
        regs.LCR_H.write(LCR_H::WLEN::EightBit + fifo);
        regs.IFLS.write(IFLS::RXIFLSEL::OneEighth);
        regs.CR.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Interrupts on received data (and on a receive timeout, so single keystrokes arrive).
    pub fn enable_rx_interrupt(&self) {
        self.registers
            .IMSC
            .modify(IMSC::RXIM::SET + IMSC::RTIM::SET);
    }

    pub fn write_byte(&self, byte: u8) {
        while self.registers.FR.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.registers.DR.write(DR::DATA.val(u32::from(byte)));
    }

    /// Waits until everything written has left the transmitter.
    pub fn flush(&self) {
        while self.registers.FR.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }

    /// A received byte, if any is waiting. Bytes received with an error are dropped.
    pub fn read_byte(&self) -> Option<u8> {
        while !self.registers.FR.is_set(FR::RXFE) {
            let data = self.registers.DR.extract();
            if data.read(DR::ERRORS) == 0 {
                return Some(data.read(DR::DATA) as u8);
            }
        }
        None
    }

    /// Acknowledges the receive interrupts (before draining the FIFO).
    pub fn clear_interrupts(&self) {
        self.registers.ICR.write(ICR::ALL::SET);
    }
}
