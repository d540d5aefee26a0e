//! The software payload of an invalid level-3 descriptor: where an evicted page went (its swap
//! slot) and the reclaim policy's shadow token (e.g. MGLRU generation and tier at eviction).
//!
//! Bit layout (the hardware ignores every bit but bit 0 of an invalid descriptor):
//!
//! | bits    | field                                                         |
//! |---------|---------------------------------------------------------------|
//! | 0       | valid = 0 (always)                                            |
//! | 1       | swap marker = 1 (so slot 0 with token 0 is not an empty slot) |
//! | 2..=29  | swap slot ([`SWAP_SLOT_BITS`] = 28 bits: 1 TiB of 4 KiB slots) |
//! | 30..=61 | shadow token (32 bits)                                        |
//! | 62..=63 | 0                                                             |

use crate::descriptor::Descriptor;
use core::fmt;

/// Width of the swap slot number.
pub const SWAP_SLOT_BITS: u32 = 28;
const MARKER: u64 = 0b10;
const SLOT_SHIFT: u32 = 2;
const TOKEN_SHIFT: u32 = SLOT_SHIFT + SWAP_SLOT_BITS;

/// The swap slot does not fit [`SWAP_SLOT_BITS`] bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotTooLarge(pub u32);

impl fmt::Display for SlotTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "swap slot {} does not fit {SWAP_SLOT_BITS} bits", self.0)
    }
}

/// A swapped-out page's entry: swap slot and shadow token, stored in an invalid descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwapEntry(u64);

impl SwapEntry {
    /// Largest slot an entry can hold.
    pub const MAX_SLOT: u32 = (1 << SWAP_SLOT_BITS) - 1;

    /// Builds an entry; the slot must fit [`SWAP_SLOT_BITS`] bits.
    pub const fn new(slot: u32, token: u32) -> Result<Self, SlotTooLarge> {
        if slot > Self::MAX_SLOT {
            return Err(SlotTooLarge(slot));
        }
        Ok(Self(
            ((token as u64) << TOKEN_SHIFT) | ((slot as u64) << SLOT_SHIFT) | MARKER,
        ))
    }

    /// The swap slot.
    pub const fn slot(self) -> u32 {
        ((self.0 >> SLOT_SHIFT) & Self::MAX_SLOT as u64) as u32
    }

    /// The shadow token.
    pub const fn token(self) -> u32 {
        (self.0 >> TOKEN_SHIFT) as u32
    }

    /// The invalid descriptor holding this entry.
    pub const fn descriptor(self) -> Descriptor {
        Descriptor::from_raw(self.0)
    }

    /// The entry held by `descriptor`, `None` if it is valid or has no swap marker.
    pub const fn from_descriptor(descriptor: Descriptor) -> Option<Self> {
        if descriptor.raw() & 0b11 == MARKER {
            Some(Self(descriptor.raw()))
        } else {
            None
        }
    }
}

impl fmt::Debug for SwapEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SwapEntry {{ slot: {}, token: {:#x} }}",
            self.slot(),
            self.token()
        )
    }
}
