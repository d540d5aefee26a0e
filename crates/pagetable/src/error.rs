//! Errors of address-space operations.

use crate::addr::VirtAddr;
use crate::attributes::Scope;
use crate::descriptor::Level;
use core::fmt;

/// Why an address-space operation was refused. An operation that returns an error has changed
/// nothing (see each operation for the exact guarantee).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// A virtual address, physical address or length is not 4 KiB aligned.
    Misaligned {
        /// The offending value.
        value: u64,
    },
    /// A virtual address or the end of a range lies outside this address space's half.
    NotCanonical {
        /// The offending address (for a range end, the wrapped sum).
        addr: u64,
    },
    /// The physical range runs past the 48-bit physical address space.
    PhysicalOutOfRange {
        /// Start of the physical range.
        start: u64,
        /// Its length.
        len: u64,
    },
    /// Something is already mapped (or a swap entry is stored) where a new mapping was requested.
    AlreadyMapped {
        /// First address found occupied.
        va: VirtAddr,
    },
    /// Nothing is mapped at the address.
    NotMapped {
        /// The address.
        va: VirtAddr,
    },
    /// No frame for a translation table.
    OutOfMemory,
    /// The range covers only part of a block mapping; split it first (`split_block`). Blocks are
    /// never split implicitly: the break-before-make window would fault accesses to the whole
    /// block, which may hold the running code.
    BlockInTheWay {
        /// Start of the block.
        va: VirtAddr,
        /// Its level (1 = 1 GiB, 2 = 2 MiB).
        level: Level,
    },
    /// `split_block` on an address mapped by a 4 KiB page.
    NotABlock {
        /// The address.
        va: VirtAddr,
    },
    /// `swap_in` on a page that holds no swap entry.
    NotSwapped {
        /// The address.
        va: VirtAddr,
    },
    /// Kernel-space mappings must be global and user-space mappings per-ASID.
    ScopeMismatch {
        /// The scope this address space requires.
        required: Scope,
    },
    /// EL0 access to a kernel-space (TTBR1) mapping.
    UserAccessInKernelSpace,
    /// Dirty state was asked of an address space created with `DirtyTracking::Untracked`.
    NoDirtyTracking,
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Misaligned { value } => write!(f, "{value:#x} is not 4 KiB aligned"),
            Self::NotCanonical { addr } => {
                write!(f, "{addr:#x} is outside this address space's half")
            }
            Self::PhysicalOutOfRange { start, len } => write!(
                f,
                "physical range {start:#x} + {len:#x} runs past the 48-bit physical address space"
            ),
            Self::AlreadyMapped { va } => write!(f, "{va} is already mapped"),
            Self::NotMapped { va } => write!(f, "{va} is not mapped"),
            Self::OutOfMemory => write!(f, "out of memory for translation tables"),
            Self::BlockInTheWay { va, level } => write!(
                f,
                "the range covers part of the level-{} block at {va}; split it first",
                level.number()
            ),
            Self::NotABlock { va } => write!(f, "{va} is mapped by a 4 KiB page, not a block"),
            Self::NotSwapped { va } => write!(f, "{va} holds no swap entry"),
            Self::ScopeMismatch { required } => {
                write!(f, "this address space only takes {required:?} mappings")
            }
            Self::UserAccessInKernelSpace => {
                write!(f, "kernel-space mappings may not be accessible to EL0")
            }
            Self::NoDirtyTracking => write!(f, "this address space does not track dirty pages"),
        }
    }
}
