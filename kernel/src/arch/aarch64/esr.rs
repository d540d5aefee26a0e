//! Decoding of the Exception Syndrome Register (ESR_EL1) into words.
//!
//! Arm ARM D17.2.37: EC = bits 31:26 (exception class), IL = bit 25, ISS = bits 24:0.

use core::fmt;

/// A raw ESR_EL1 value with accessors for its fields.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Esr(pub u64);

/// The exception classes the kernel handles or reports specially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionClass {
    Unknown,
    WfiWfe,
    FpSimdAccess,
    IllegalExecutionState,
    Svc64,
    Hvc64,
    Smc64,
    SysRegTrap,
    SveAccess,
    InstructionAbortLowerEl,
    InstructionAbortSameEl,
    PcAlignment,
    DataAbortLowerEl,
    DataAbortSameEl,
    SpAlignment,
    FpException,
    SError,
    BreakpointLowerEl,
    BreakpointSameEl,
    SoftwareStepLowerEl,
    SoftwareStepSameEl,
    WatchpointLowerEl,
    WatchpointSameEl,
    Brk64,
    Other(u8),
}

impl ExceptionClass {
    fn from_bits(ec: u8) -> Self {
        match ec {
            0x00 => Self::Unknown,
            0x01 => Self::WfiWfe,
            0x07 => Self::FpSimdAccess,
            0x0e => Self::IllegalExecutionState,
            0x15 => Self::Svc64,
            0x16 => Self::Hvc64,
            0x17 => Self::Smc64,
            0x18 => Self::SysRegTrap,
            0x19 => Self::SveAccess,
            0x20 => Self::InstructionAbortLowerEl,
            0x21 => Self::InstructionAbortSameEl,
            0x22 => Self::PcAlignment,
            0x24 => Self::DataAbortLowerEl,
            0x25 => Self::DataAbortSameEl,
            0x26 => Self::SpAlignment,
            0x2c => Self::FpException,
            0x2f => Self::SError,
            0x30 => Self::BreakpointLowerEl,
            0x31 => Self::BreakpointSameEl,
            0x32 => Self::SoftwareStepLowerEl,
            0x33 => Self::SoftwareStepSameEl,
            0x34 => Self::WatchpointLowerEl,
            0x35 => Self::WatchpointSameEl,
            0x3c => Self::Brk64,
            other => Self::Other(other),
        }
    }

    /// What the class means, in words.
    pub fn description(self) -> &'static str {
        match self {
            Self::Unknown => "unknown reason (undefined instruction)",
            Self::WfiWfe => "trapped WFI/WFE",
            Self::FpSimdAccess => "trapped FP/SIMD access",
            Self::IllegalExecutionState => "illegal execution state",
            Self::Svc64 => "SVC (system call) from AArch64",
            Self::Hvc64 => "HVC from AArch64",
            Self::Smc64 => "SMC from AArch64",
            Self::SysRegTrap => "trapped system register access",
            Self::SveAccess => "trapped SVE access",
            Self::InstructionAbortLowerEl => "instruction abort from a lower exception level",
            Self::InstructionAbortSameEl => "instruction abort without a change in exception level",
            Self::PcAlignment => "PC alignment fault",
            Self::DataAbortLowerEl => "data abort from a lower exception level",
            Self::DataAbortSameEl => "data abort without a change in exception level",
            Self::SpAlignment => "SP alignment fault",
            Self::FpException => "trapped floating-point exception",
            Self::SError => "SError interrupt",
            Self::BreakpointLowerEl => "breakpoint from a lower exception level",
            Self::BreakpointSameEl => "breakpoint without a change in exception level",
            Self::SoftwareStepLowerEl => "software step from a lower exception level",
            Self::SoftwareStepSameEl => "software step without a change in exception level",
            Self::WatchpointLowerEl => "watchpoint from a lower exception level",
            Self::WatchpointSameEl => "watchpoint without a change in exception level",
            Self::Brk64 => "BRK instruction",
            Self::Other(_) => "unrecognised exception class",
        }
    }
}

/// Kind of memory fault, from the DFSC/IFSC field of a data or instruction abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize { level: u8 },
    Translation { level: u8 },
    AccessFlag { level: u8 },
    Permission { level: u8 },
    SynchronousExternal,
    Alignment,
    TlbConflict,
    Other(u8),
}

impl FaultStatus {
    fn from_bits(fsc: u8) -> Self {
        let level = fsc & 0b11;
        match fsc {
            0b00_0000..=0b00_0011 => Self::AddressSize { level },
            0b00_0100..=0b00_0111 => Self::Translation { level },
            0b00_1000..=0b00_1011 => Self::AccessFlag { level },
            0b00_1100..=0b00_1111 => Self::Permission { level },
            0b01_0000 => Self::SynchronousExternal,
            0b10_0001 => Self::Alignment,
            0b11_0000 => Self::TlbConflict,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressSize { level } => write!(f, "address size fault, level {level}"),
            Self::Translation { level } => write!(f, "translation fault, level {level}"),
            Self::AccessFlag { level } => write!(f, "access flag fault, level {level}"),
            Self::Permission { level } => write!(f, "permission fault, level {level}"),
            Self::SynchronousExternal => f.write_str("synchronous external abort"),
            Self::Alignment => f.write_str("alignment fault"),
            Self::TlbConflict => f.write_str("TLB conflict abort"),
            Self::Other(code) => write!(f, "fault status code {code:#08b}"),
        }
    }
}

impl Esr {
    pub fn class(self) -> ExceptionClass {
        ExceptionClass::from_bits(((self.0 >> 26) & 0x3f) as u8)
    }

    /// Instruction Specific Syndrome.
    pub fn iss(self) -> u32 {
        (self.0 & 0x01ff_ffff) as u32
    }

    /// True for data and instruction aborts, whose ISS carries a fault status code.
    pub fn is_abort(self) -> bool {
        matches!(
            self.class(),
            ExceptionClass::DataAbortLowerEl
                | ExceptionClass::DataAbortSameEl
                | ExceptionClass::InstructionAbortLowerEl
                | ExceptionClass::InstructionAbortSameEl
        )
    }

    /// The fault status of an abort (None for other classes).
    pub fn fault_status(self) -> Option<FaultStatus> {
        self.is_abort()
            .then(|| FaultStatus::from_bits((self.iss() & 0x3f) as u8))
    }

    /// For a data abort: was it caused by a write? (WnR, ISS bit 6; cache maintenance (CM) reports as write)
    pub fn is_write(self) -> bool {
        matches!(
            self.class(),
            ExceptionClass::DataAbortLowerEl | ExceptionClass::DataAbortSameEl
        ) && self.iss() & (1 << 6) != 0
            && self.iss() & (1 << 8) == 0
    }

    /// For an abort: is FAR_EL1 valid? (FnV, ISS bit 10, clear when valid)
    pub fn far_valid(self) -> bool {
        self.is_abort() && self.iss() & (1 << 10) == 0
    }

    /// The immediate of an SVC, HVC, SMC or BRK.
    pub fn imm16(self) -> u16 {
        (self.iss() & 0xffff) as u16
    }
}

impl fmt::Display for Esr {
    /// One line: raw value, class in words, and the ISS decoded where the class has a known layout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.class();
        write!(f, "esr={:#010x}: {}", self.0, class.description())?;
        if let ExceptionClass::Other(ec) = class {
            write!(f, " (EC {ec:#04x})")?;
        }
        if let Some(status) = self.fault_status() {
            write!(f, "; {status}")?;
            if matches!(
                class,
                ExceptionClass::DataAbortLowerEl | ExceptionClass::DataAbortSameEl
            ) {
                f.write_str(if self.is_write() { ", write" } else { ", read" })?;
                if self.iss() & (1 << 7) != 0 {
                    f.write_str(", during a stage-2 table walk")?;
                }
            }
            if !self.far_valid() {
                f.write_str(", FAR not valid")?;
            }
        } else {
            match class {
                ExceptionClass::Svc64
                | ExceptionClass::Hvc64
                | ExceptionClass::Smc64
                | ExceptionClass::Brk64 => write!(f, "; imm16={:#x}", self.imm16())?,
                _ => write!(f, "; iss={:#x}", self.iss())?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
