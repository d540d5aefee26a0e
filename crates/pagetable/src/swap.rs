//! The software payload of an invalid level-3 descriptor: where an evicted page went (its swap
//! slot) and the reclaim policy's shadow token (e.g. MGLRU generation and tier at eviction).
//!
//! Bit layout (the hardware ignores every bit but bit 0 of an invalid descriptor):
//!
//! | bits   | field                                                         |
//! |--------|---------------------------------------------------------------|
//! | 0      | valid = 0 (always)                                            |
//! | 1      | swap marker = 1 (so slot 0 with token 0 is not an empty slot) |
//! | 2..=33 | swap slot (32 bits)                                           |
//! | 34..=63| shadow token ([`SWAP_TOKEN_BITS`] = 30 bits)                  |

use crate::descriptor::Descriptor;
use core::fmt;

/// Width of the shadow token.
pub const SWAP_TOKEN_BITS: u32 = 30;
const MARKER: u64 = 0b10;
const SLOT_SHIFT: u32 = 2;
const TOKEN_SHIFT: u32 = 34;

/// The shadow token does not fit [`SWAP_TOKEN_BITS`] bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenTooWide(pub u32);

impl fmt::Display for TokenTooWide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shadow token {:#x} does not fit {SWAP_TOKEN_BITS} bits",
            self.0
        )
    }
}

/// A swapped-out page's entry: swap slot and shadow token, stored in an invalid descriptor.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SwapEntry(u64);

impl SwapEntry {
    /// Builds an entry; the token must fit [`SWAP_TOKEN_BITS`] bits.
    pub const fn new(slot: u32, token: u32) -> Result<Self, TokenTooWide> {
        if token >> SWAP_TOKEN_BITS != 0 {
            return Err(TokenTooWide(token));
        }
        Ok(Self(
            ((token as u64) << TOKEN_SHIFT) | ((slot as u64) << SLOT_SHIFT) | MARKER,
        ))
    }

    /// The swap slot.
    pub const fn slot(self) -> u32 {
        (self.0 >> SLOT_SHIFT) as u32
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
