//! Typed physical and virtual addresses, 4 KiB frames and pages.
//!
//! ```
//! use pagetable::{Page, PhysAddr, PhysFrame, VirtAddr};
//! let frame = PhysFrame::from_start(PhysAddr::new(0x4000_0000).unwrap()).unwrap();
//! let page = Page::from_start(VirtAddr::new(0x40_0000).unwrap()).unwrap();
//! assert_eq!(page.checked_add(1).unwrap().start().as_u64(), 0x40_1000);
//! assert_eq!(frame.start().as_u64(), 0x4000_0000);
//! ```
//!
//! Physical and virtual addresses are distinct types, so handing one where the other is expected
//! does not compile:
//!
//! ```compile_fail
//! use pagetable::{PhysAddr, VirtAddr};
//! let pa = PhysAddr::new(0x4000_0000).unwrap();
//! let va: VirtAddr = pa; // error[E0308]: mismatched types
//! ```
//!
//! ```compile_fail
//! use pagetable::{Page, PhysAddr};
//! let pa = PhysAddr::new(0x4000_0000).unwrap();
//! let page = Page::from_start(pa); // a Page is built from a VirtAddr only
//! ```

use core::fmt;

/// Size of a translation granule, a page and a frame: 4 KiB.
pub const PAGE_SIZE: u64 = 4096;
/// Number of output-address bits a descriptor holds (`OA[47:12]`); physical addresses are below
/// 2^48.
pub const PA_BITS: u32 = 48;
/// Virtual address bits per half (T0SZ = T1SZ = 16).
pub const VA_BITS: u32 = 48;
/// Size in bytes of each virtual half (user TTBR0 half and kernel TTBR1 half).
pub const HALF_SIZE: u64 = 1 << VA_BITS;
/// First address of the kernel (TTBR1) half.
pub const KERNEL_HALF_START: u64 = 0xFFFF_0000_0000_0000;

/// Why a raw value is not a valid address of the requested kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressError {
    /// The value does not fit the 48-bit physical address space.
    PhysicalOutOfRange(u64),
    /// Bits `[63:48]` are neither all zeros (user half) nor all ones (kernel half).
    NotCanonical(u64),
    /// The value is not 4 KiB aligned but a page or frame start was required.
    Misaligned(u64),
}

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PhysicalOutOfRange(value) => {
                write!(
                    f,
                    "physical address {value:#x} is beyond the {PA_BITS}-bit physical address space"
                )
            }
            Self::NotCanonical(value) => write!(
                f,
                "virtual address {value:#x} is not canonical (bits 63:48 must be all zeros or all ones)"
            ),
            Self::Misaligned(value) => write!(f, "address {value:#x} is not 4 KiB aligned"),
        }
    }
}

/// Which half of the 64-bit virtual address space an address lies in, i.e. which TTBR
/// translates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Half {
    /// `0 .. 2^48`, translated through TTBR0_EL1 (user address spaces).
    User,
    /// `0xFFFF_0000_0000_0000 ..= u64::MAX`, translated through TTBR1_EL1 (the kernel).
    Kernel,
}

impl Half {
    /// First address of the half.
    pub const fn start(self) -> VirtAddr {
        match self {
            Self::User => VirtAddr(0),
            Self::Kernel => VirtAddr(KERNEL_HALF_START),
        }
    }
}

/// `value` rounded down to a multiple of `align`, or `None` if `align` is not a power of two.
const fn align_down_raw(value: u64, align: u64) -> Option<u64> {
    if align.is_power_of_two() {
        Some(value & !(align - 1))
    } else {
        None
    }
}

/// `value` rounded up to a multiple of `align`, or `None` if `align` is not a power of two or the
/// result overflows.
const fn align_up_raw(value: u64, align: u64) -> Option<u64> {
    if !align.is_power_of_two() {
        return None;
    }
    match value.checked_add(align - 1) {
        Some(bumped) => Some(bumped & !(align - 1)),
        None => None,
    }
}

/// A physical address below 2^[`PA_BITS`].
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(u64);

impl PhysAddr {
    /// Checks that `addr` fits the 48-bit physical address space.
    pub const fn new(addr: u64) -> Result<Self, AddressError> {
        if addr >> PA_BITS == 0 {
            Ok(Self(addr))
        } else {
            Err(AddressError::PhysicalOutOfRange(addr))
        }
    }

    /// `addr` with the bits above [`PA_BITS`] cleared (for values taken from descriptor fields,
    /// which cannot hold more).
    pub(crate) const fn truncated(addr: u64) -> Self {
        Self(addr & ((1 << PA_BITS) - 1))
    }

    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// `self + bytes`, or `None` past the physical address space.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.0.checked_add(bytes) {
            Some(sum) if sum >> PA_BITS == 0 => Some(Self(sum)),
            _ => None,
        }
    }

    /// `self - bytes`, or `None` below zero.
    pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
        match self.0.checked_sub(bytes) {
            Some(difference) => Some(Self(difference)),
            None => None,
        }
    }

    /// Rounded down to a multiple of `align`; `None` if `align` is not a power of two.
    pub const fn align_down(self, align: u64) -> Option<Self> {
        match align_down_raw(self.0, align) {
            Some(value) => Some(Self(value)),
            None => None,
        }
    }

    /// Rounded up to a multiple of `align`; `None` if `align` is not a power of two or the result
    /// leaves the physical address space.
    pub const fn align_up(self, align: u64) -> Option<Self> {
        match align_up_raw(self.0, align) {
            Some(value) if value >> PA_BITS == 0 => Some(Self(value)),
            _ => None,
        }
    }

    /// Whether the address is a multiple of `align` (false if `align` is not a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        align.is_power_of_two() && self.0 & (align - 1) == 0
    }

    /// Offset within its 4 KiB frame.
    pub const fn page_offset(self) -> u64 {
        self.0 % PAGE_SIZE
    }
}

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PA {:#x}", self.0)
    }
}

/// A canonical virtual address: in the user half (`< 2^48`) or the kernel half
/// (`>= 0xFFFF_0000_0000_0000`).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtAddr(u64);

impl VirtAddr {
    /// Checks that `addr` is canonical.
    pub const fn new(addr: u64) -> Result<Self, AddressError> {
        if addr < HALF_SIZE || addr >= KERNEL_HALF_START {
            Ok(Self(addr))
        } else {
            Err(AddressError::NotCanonical(addr))
        }
    }

    /// The address `offset` bytes into `half`; `None` if `offset >= HALF_SIZE`.
    pub const fn from_half_offset(half: Half, offset: u64) -> Option<Self> {
        if offset >= HALF_SIZE {
            return None;
        }
        Some(Self(half.start().0 + offset))
    }

    /// The address `offset` bytes into `half`, with `offset` taken modulo [`HALF_SIZE`] (for
    /// offsets computed from table indices, which cannot be larger).
    pub(crate) const fn in_half(half: Half, offset: u64) -> Self {
        Self(half.start().0 + offset % HALF_SIZE)
    }

    /// The raw value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The half the address lies in.
    pub const fn half(self) -> Half {
        if self.0 < HALF_SIZE {
            Half::User
        } else {
            Half::Kernel
        }
    }

    /// Offset from the start of its half (`0 .. HALF_SIZE`): the part the tables translate.
    pub const fn half_offset(self) -> u64 {
        self.0 - self.half().start().0
    }

    /// `self + bytes` if the result stays in the same half.
    pub const fn checked_add(self, bytes: u64) -> Option<Self> {
        match self.half_offset().checked_add(bytes) {
            Some(offset) => Self::from_half_offset(self.half(), offset),
            None => None,
        }
    }

    /// `self - bytes` if the result stays in the same half.
    pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
        match self.half_offset().checked_sub(bytes) {
            Some(offset) => Self::from_half_offset(self.half(), offset),
            None => None,
        }
    }

    /// Rounded down to a multiple of `align`; `None` if `align` is not a power of two.
    pub const fn align_down(self, align: u64) -> Option<Self> {
        match align_down_raw(self.0, align) {
            // Rounding down within a half never leaves it for alignments up to 2^48; larger ones
            // can turn a kernel address into a non-canonical one.
            Some(value) => match Self::new(value) {
                Ok(va) => Some(va),
                Err(_) => None,
            },
            None => None,
        }
    }

    /// Rounded up to a multiple of `align`; `None` if `align` is not a power of two or the result
    /// leaves the half.
    pub const fn align_up(self, align: u64) -> Option<Self> {
        match align_up_raw(self.0, align) {
            Some(value) if (value < HALF_SIZE) == (self.0 < HALF_SIZE) => match Self::new(value) {
                Ok(va) => Some(va),
                Err(_) => None,
            },
            _ => None,
        }
    }

    /// Whether the address is a multiple of `align` (false if `align` is not a power of two).
    pub const fn is_aligned(self, align: u64) -> bool {
        align.is_power_of_two() && self.0 & (align - 1) == 0
    }

    /// Offset within its 4 KiB page.
    pub const fn page_offset(self) -> u64 {
        self.0 % PAGE_SIZE
    }
}

impl fmt::Debug for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VirtAddr({:#x})", self.0)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VA {:#x}", self.0)
    }
}

/// Defines a 4 KiB aligned unit of an address type: [`PhysFrame`] of [`PhysAddr`], [`Page`] of
/// [`VirtAddr`].
macro_rules! page_aligned {
    ($(#[$doc:meta])* $name:ident, $address:ident, $unit:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($address);

        impl $name {
            #[doc = concat!("The ", $unit, " starting at `start`; [`AddressError::Misaligned`] if it is not 4 KiB aligned.")]
            pub const fn from_start(start: $address) -> Result<Self, AddressError> {
                if start.0.is_multiple_of(PAGE_SIZE) {
                    Ok(Self(start))
                } else {
                    Err(AddressError::Misaligned(start.0))
                }
            }

            #[doc = concat!("The ", $unit, " holding `addr`.")]
            pub const fn containing(addr: $address) -> Self {
                Self($address(addr.0 - addr.0 % PAGE_SIZE))
            }

            #[doc = concat!("First byte of the ", $unit, ".")]
            pub const fn start(self) -> $address {
                self.0
            }

            #[doc = concat!("The ", $unit, " `count` units further on, or `None` past the end of its address space.")]
            pub const fn checked_add(self, count: u64) -> Option<Self> {
                match count.checked_mul(PAGE_SIZE) {
                    Some(bytes) => match self.0.checked_add(bytes) {
                        Some(start) => Some(Self(start)),
                        None => None,
                    },
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0.0)
            }
        }
    };
}

page_aligned!(
    /// A 4 KiB aligned physical frame.
    PhysFrame,
    PhysAddr,
    "frame"
);

page_aligned!(
    /// A 4 KiB aligned virtual page.
    Page,
    VirtAddr,
    "page"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_addresses_stop_at_48_bits() {
        assert_eq!(
            PhysAddr::new((1 << 48) - 1).map(PhysAddr::as_u64),
            Ok((1 << 48) - 1)
        );
        assert_eq!(
            PhysAddr::new(1 << 48),
            Err(AddressError::PhysicalOutOfRange(1 << 48))
        );
        let top = PhysAddr::new((1 << 48) - 8).unwrap();
        assert_eq!(
            top.checked_add(7).map(PhysAddr::as_u64),
            Some((1 << 48) - 1)
        );
        assert_eq!(top.checked_add(8), None);
        assert_eq!(top.checked_add(u64::MAX), None);
        assert_eq!(PhysAddr::new(5).unwrap().checked_sub(6), None);
        assert_eq!(top.align_up(PAGE_SIZE), None);
        assert_eq!(
            top.align_down(PAGE_SIZE).map(PhysAddr::as_u64),
            Some((1 << 48) - PAGE_SIZE)
        );
    }

    #[test]
    fn alignment_helpers_need_a_power_of_two() {
        let pa = PhysAddr::new(0x4000_1234).unwrap();
        assert_eq!(
            pa.align_down(0x1000).map(PhysAddr::as_u64),
            Some(0x4000_1000)
        );
        assert_eq!(pa.align_up(0x1000).map(PhysAddr::as_u64), Some(0x4000_2000));
        assert_eq!(pa.align_up(0x3000), None);
        assert_eq!(pa.align_down(0), None);
        assert!(!pa.is_aligned(0));
        assert!(pa.is_aligned(4));
        assert_eq!(pa.page_offset(), 0x234);
        let va = VirtAddr::new(0x1234).unwrap();
        assert_eq!(va.align_up(0x1000).map(VirtAddr::as_u64), Some(0x2000));
        assert_eq!(va.align_down(6), None);
    }

    #[test]
    fn virtual_addresses_must_be_canonical() {
        assert_eq!(VirtAddr::new(0).map(VirtAddr::half), Ok(Half::User));
        assert_eq!(
            VirtAddr::new(HALF_SIZE - 1).map(VirtAddr::half),
            Ok(Half::User)
        );
        assert_eq!(
            VirtAddr::new(HALF_SIZE),
            Err(AddressError::NotCanonical(HALF_SIZE))
        );
        assert_eq!(
            VirtAddr::new(KERNEL_HALF_START - 1),
            Err(AddressError::NotCanonical(KERNEL_HALF_START - 1))
        );
        assert_eq!(
            VirtAddr::new(KERNEL_HALF_START).map(VirtAddr::half),
            Ok(Half::Kernel)
        );
        assert_eq!(
            VirtAddr::new(u64::MAX).map(VirtAddr::half_offset),
            Ok(HALF_SIZE - 1)
        );
    }

    #[test]
    fn virtual_arithmetic_stays_in_its_half() {
        let user_top = VirtAddr::new(HALF_SIZE - PAGE_SIZE).unwrap();
        assert_eq!(
            user_top.checked_add(PAGE_SIZE - 1).map(VirtAddr::as_u64),
            Some(HALF_SIZE - 1)
        );
        assert_eq!(user_top.checked_add(PAGE_SIZE), None);
        assert_eq!(user_top.align_up(HALF_SIZE), None);
        let kernel_start = Half::Kernel.start();
        assert_eq!(kernel_start.checked_sub(1), None);
        assert_eq!(VirtAddr::new(u64::MAX).unwrap().checked_add(1), None);
        assert_eq!(kernel_start.align_down(1 << 63), None);
        assert_eq!(
            VirtAddr::from_half_offset(Half::Kernel, 0x1000).map(VirtAddr::as_u64),
            Some(KERNEL_HALF_START + 0x1000)
        );
        assert_eq!(VirtAddr::from_half_offset(Half::User, HALF_SIZE), None);
    }

    #[test]
    fn frames_and_pages_are_aligned() {
        let pa = PhysAddr::new(0x4000_0010).unwrap();
        assert_eq!(
            PhysFrame::from_start(pa),
            Err(AddressError::Misaligned(0x4000_0010))
        );
        assert_eq!(PhysFrame::containing(pa).start().as_u64(), 0x4000_0000);
        let last = PhysFrame::containing(PhysAddr::new((1 << 48) - 1).unwrap());
        assert_eq!(last.checked_add(1), None);
        assert_eq!(last.checked_add(0), Some(last));
        let va = VirtAddr::new(0x7fff).unwrap();
        assert_eq!(Page::from_start(va), Err(AddressError::Misaligned(0x7fff)));
        assert_eq!(
            Page::containing(va)
                .checked_add(2)
                .map(|p| p.start().as_u64()),
            Some(0x9000)
        );
        assert_eq!(Page::containing(va).checked_add(u64::MAX), None);
    }

    #[test]
    fn errors_print_the_value() {
        assert_eq!(
            AddressError::NotCanonical(0x1_0000_0000_0000).to_string(),
            "virtual address 0x1000000000000 is not canonical (bits 63:48 must be all zeros or all ones)"
        );
        assert_eq!(
            AddressError::Misaligned(0x10).to_string(),
            "address 0x10 is not 4 KiB aligned"
        );
        assert_eq!(
            AddressError::PhysicalOutOfRange(1 << 48).to_string(),
            "physical address 0x1000000000000 is beyond the 48-bit physical address space"
        );
    }
}
