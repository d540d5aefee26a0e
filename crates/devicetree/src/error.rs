//! The one error type of the crate: every way a DTB can be malformed or lack what is asked of it.

use core::fmt;

/// A region of the DTB named in error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    /// The 40-byte header at offset 0.
    Header,
    /// The memory reservation block (`off_mem_rsvmap`).
    MemoryReservations,
    /// The structure block (`off_dt_struct`, `size_dt_struct`).
    Structure,
    /// The strings block (`off_dt_strings`, `size_dt_strings`).
    Strings,
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Block::Header => "header",
            Block::MemoryReservations => "memory reservation block",
            Block::Structure => "structure block",
            Block::Strings => "strings block",
        })
    }
}

/// A node or property name copied into an error (errors outlive no borrow of the DTB).
///
/// Devicetree names are at most 31 characters; longer ones are cut at a character boundary.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; Name::CAPACITY],
    len: u8,
}

impl Name {
    const CAPACITY: usize = 31;

    /// Copies `name`, keeping at most 31 bytes.
    pub fn new(name: &str) -> Self {
        let mut len = name.len().min(Self::CAPACITY);
        while !name.is_char_boundary(len) {
            len -= 1;
        }
        let mut bytes = [0; Self::CAPACITY];
        let kept = name.as_bytes().get(..len).unwrap_or_default();
        for (slot, byte) in bytes.iter_mut().zip(kept) {
            *slot = *byte;
        }
        Name {
            bytes,
            len: len as u8,
        }
    }

    /// The (possibly shortened) name.
    pub fn as_str(&self) -> &str {
        let kept = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        core::str::from_utf8(kept).unwrap_or_default()
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// Why a DTB was rejected or a question about it could not be answered.
///
/// Offsets are byte offsets from the start of the DTB, so they can be found in a hex dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `Fdt::from_ptr` was given a null pointer.
    NullPointer,
    /// The buffer cannot even hold the header.
    BlobTooSmall { len: usize },
    /// The first word is not the FDT magic.
    BadMagic { found: u32 },
    /// `totalsize` is smaller than the header itself.
    TotalSizeTooSmall { total_size: u32 },
    /// `totalsize` claims more bytes than the buffer holds.
    TotalSizeTooBig { total_size: u32, available: usize },
    /// `totalsize` is above the limit `Fdt::from_ptr` accepts for memory it cannot measure.
    TotalSizeOverLimit { total_size: u32, limit: usize },
    /// `version` is older than 16, the oldest layout this parser reads.
    UnsupportedVersion { version: u32 },
    /// `last_comp_version` says a version-17 reader cannot read this DTB.
    IncompatibleVersion { last_comp_version: u32 },
    /// A block does not fit inside `totalsize`.
    BlockOutOfBounds {
        block: Block,
        offset: u32,
        size: u32,
        total_size: u32,
    },
    /// A block starts at an offset that is not a multiple of its required alignment.
    MisalignedBlock {
        block: Block,
        offset: u32,
        align: u32,
    },
    /// Two blocks share bytes.
    BlocksOverlap { first: Block, second: Block },
    /// The memory reservation list runs to the end of the DTB without its (0, 0) terminator;
    /// `offset` is the entry that does not fit.
    UnterminatedReservations { offset: usize },
    /// A memory reservation wraps around the 64-bit address space.
    ReservationOverflow {
        offset: usize,
        address: u64,
        size: u64,
    },
    /// The structure block ends in the middle of a token or its operands.
    UnexpectedEnd { offset: usize },
    /// The structure block ends (at `offset`) without an END token.
    MissingEnd { offset: usize },
    /// A token word that is none of BEGIN_NODE, END_NODE, PROP, NOP, END.
    BadToken { offset: usize, token: u32 },
    /// A node name runs to the end of the structure block without a NUL.
    UnterminatedNodeName { offset: usize },
    /// A node or property name is not valid UTF-8.
    InvalidName { offset: usize },
    /// A property value extends past the end of the structure block.
    PropertyPastBlock {
        offset: usize,
        len: u32,
        block_end: usize,
    },
    /// A property's name offset lies outside the strings block.
    StringOffsetOutOfRange {
        offset: usize,
        string_offset: u32,
        strings_size: u32,
    },
    /// A property name in the strings block runs to the block's end without a NUL.
    UnterminatedString { offset: usize, string_offset: u32 },
    /// The first token is not the root node's BEGIN_NODE.
    NoRootNode { offset: usize },
    /// The root node has a name (it must be empty).
    NamedRootNode { offset: usize },
    /// A token follows the root node's END_NODE other than END.
    TokenAfterRoot { offset: usize },
    /// An END_NODE closes a node that was never opened.
    UnbalancedEndNode { offset: usize },
    /// The END token comes while `open` nodes are still open.
    EndInsideNode { offset: usize, open: usize },
    /// A property follows a child node (properties must come first).
    PropertyAfterChild { offset: usize },
    /// Nodes are nested deeper than `limit` levels (counting the root).
    TooDeep { offset: usize, limit: usize },
    /// A property's value has the wrong size for how it is read.
    BadPropertyLength {
        property: Name,
        offset: usize,
        len: usize,
        expected: &'static str,
    },
    /// A property read as text is not NUL-terminated UTF-8.
    BadString { property: Name, offset: usize },
    /// A node lacks a property that is needed.
    MissingProperty { node: Name, property: Name },
    /// `#address-cells` / `#size-cells` values this parser cannot turn into `u64`s.
    UnsupportedCells {
        node: Name,
        address_cells: u32,
        size_cells: u32,
    },
    /// A phandle refers to no node.
    UnknownPhandle {
        node: Name,
        property: Name,
        phandle: u32,
    },
    /// No interrupt controller was found above a node that has interrupts.
    NoInterruptParent { node: Name },
    /// Following `interrupt-parent` links went round in a circle.
    InterruptParentLoop { node: Name },
    /// An interrupt controller's `#interrupt-cells` is 0, so its specifiers cannot be told apart.
    ZeroInterruptCells { controller: Name },
    /// A node has fewer interrupts than the one asked for.
    MissingInterrupt { node: Name, index: usize },
    /// The interrupt parent is not a GIC with 3-cell specifiers.
    NotGicInterrupt { node: Name, controller: Name },
    /// A GIC specifier names an interrupt type other than SPI (0) or PPI (1).
    UnsupportedIrqType { node: Name, irq_type: u32 },
    /// A GIC specifier's number is outside the range for its type.
    IrqNumberOutOfRange { node: Name, number: u32 },
    /// A GIC specifier's trigger flags are not one of edge (1, 2) or level (4, 8).
    BadIrqFlags { node: Name, flags: u32 },
    /// `/chosen/stdout-path` names no node.
    BadStdoutPath,
    /// The PSCI node's `method` is neither "hvc" nor "smc".
    BadPsciMethod { node: Name },
    /// No enabled node with `device_type = "memory"`.
    NoMemory,
    /// No enabled GIC (`arm,cortex-a15-gic`, `arm,gic-400`, `arm,gic-v3`).
    NoGic,
    /// No CPU node under `/cpus`.
    NoCpus,
    /// More items of one kind than the fixed-capacity table holds.
    TooMany { what: &'static str, limit: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Error::*;
        match *self {
            NullPointer => write!(f, "DTB pointer is null"),
            BlobTooSmall { len } => {
                write!(
                    f,
                    "DTB buffer is {len} bytes, shorter than the 40-byte header"
                )
            }
            BadMagic { found } => write!(f, "bad magic {found:#010x} (expected 0xd00dfeed)"),
            TotalSizeTooSmall { total_size } => {
                write!(
                    f,
                    "header totalsize {total_size} is smaller than the 40-byte header"
                )
            }
            TotalSizeTooBig {
                total_size,
                available,
            } => write!(
                f,
                "header totalsize {total_size} exceeds the {available} bytes available"
            ),
            TotalSizeOverLimit { total_size, limit } => {
                write!(
                    f,
                    "header totalsize {total_size} exceeds the {limit}-byte limit"
                )
            }
            UnsupportedVersion { version } => {
                write!(
                    f,
                    "DTB version {version} is older than 16, the oldest supported"
                )
            }
            IncompatibleVersion { last_comp_version } => write!(
                f,
                "DTB last_comp_version {last_comp_version} is newer than 17, the newest supported"
            ),
            BlockOutOfBounds {
                block,
                offset,
                size,
                total_size,
            } => write!(
                f,
                "{block} at {offset:#x} (size {size:#x}) extends past totalsize {total_size:#x}"
            ),
            MisalignedBlock {
                block,
                offset,
                align,
            } => {
                write!(f, "{block} offset {offset:#x} is not {align}-byte aligned")
            }
            BlocksOverlap { first, second } => write!(f, "{first} overlaps {second}"),
            UnterminatedReservations { offset } => write!(
                f,
                "memory reservation entry at {offset:#x} runs past the end of the DTB (no terminator)"
            ),
            ReservationOverflow {
                offset,
                address,
                size,
            } => write!(
                f,
                "memory reservation at {offset:#x} ({address:#x} + {size:#x}) overflows 64 bits"
            ),
            UnexpectedEnd { offset } => {
                write!(f, "structure block ends inside the token at {offset:#x}")
            }
            MissingEnd { offset } => {
                write!(
                    f,
                    "structure block ends at {offset:#x} without an END token"
                )
            }
            BadToken { offset, token } => write!(f, "unknown token {token:#x} at {offset:#x}"),
            UnterminatedNodeName { offset } => {
                write!(f, "node name at {offset:#x} runs past the structure block")
            }
            InvalidName { offset } => write!(f, "name for the token at {offset:#x} is not UTF-8"),
            PropertyPastBlock {
                offset,
                len,
                block_end,
            } => write!(
                f,
                "property at {offset:#x} (length {len}) runs past the structure block end {block_end:#x}"
            ),
            StringOffsetOutOfRange {
                offset,
                string_offset,
                strings_size,
            } => write!(
                f,
                "property at {offset:#x}: name offset {string_offset:#x} is outside the \
                 {strings_size:#x}-byte strings block"
            ),
            UnterminatedString {
                offset,
                string_offset,
            } => write!(
                f,
                "property at {offset:#x}: name at strings offset {string_offset:#x} has no NUL"
            ),
            NoRootNode { offset } => write!(f, "expected the root node at {offset:#x}"),
            NamedRootNode { offset } => write!(f, "root node at {offset:#x} has a name"),
            TokenAfterRoot { offset } => {
                write!(f, "token at {offset:#x} follows the end of the root node")
            }
            UnbalancedEndNode { offset } => {
                write!(f, "END_NODE at {offset:#x} has no node to close")
            }
            EndInsideNode { offset, open } => {
                write!(f, "END token at {offset:#x} with {open} node(s) still open")
            }
            PropertyAfterChild { offset } => {
                write!(f, "property at {offset:#x} follows a child node")
            }
            TooDeep { offset, limit } => {
                write!(
                    f,
                    "node at {offset:#x} is nested deeper than {limit} levels"
                )
            }
            BadPropertyLength {
                property,
                offset,
                len,
                expected,
            } => write!(
                f,
                "property {property} at {offset:#x} is {len} bytes, expected {expected}"
            ),
            BadString { property, offset } => write!(
                f,
                "property {property} at {offset:#x} is not a NUL-terminated UTF-8 string"
            ),
            MissingProperty { node, property } => {
                write!(f, "node {node:?} has no {property:?} property")
            }
            UnsupportedCells {
                node,
                address_cells,
                size_cells,
            } => write!(
                f,
                "node {node:?}: #address-cells {address_cells} / #size-cells {size_cells} \
                 (at most 2 each supported)"
            ),
            UnknownPhandle {
                node,
                property,
                phandle,
            } => write!(
                f,
                "node {node:?}: {property} refers to phandle {phandle:#x}, which no node has"
            ),
            NoInterruptParent { node } => {
                write!(f, "node {node:?} has no interrupt controller above it")
            }
            InterruptParentLoop { node } => {
                write!(f, "node {node:?}: interrupt-parent links form a loop")
            }
            ZeroInterruptCells { controller } => {
                write!(
                    f,
                    "interrupt controller {controller:?} has #interrupt-cells = 0"
                )
            }
            MissingInterrupt { node, index } => {
                write!(f, "node {node:?} has no interrupt number {index}")
            }
            NotGicInterrupt { node, controller } => write!(
                f,
                "node {node:?}: interrupt parent {controller:?} is not a GIC with 3 cells"
            ),
            UnsupportedIrqType { node, irq_type } => write!(
                f,
                "node {node:?}: GIC interrupt type {irq_type} is neither SPI (0) nor PPI (1)"
            ),
            IrqNumberOutOfRange { node, number } => {
                write!(
                    f,
                    "node {node:?}: GIC interrupt number {number} is out of range"
                )
            }
            BadIrqFlags { node, flags } => write!(
                f,
                "node {node:?}: GIC trigger flags {flags:#x} are not 1, 2, 4 or 8"
            ),
            BadStdoutPath => write!(f, "/chosen/stdout-path names no node"),
            BadPsciMethod { node } => {
                write!(
                    f,
                    "node {node:?}: PSCI method is neither \"hvc\" nor \"smc\""
                )
            }
            NoMemory => write!(f, "no enabled node with device_type = \"memory\""),
            NoGic => write!(
                f,
                "no enabled GIC (arm,cortex-a15-gic, arm,gic-400 or arm,gic-v3)"
            ),
            NoCpus => write!(f, "no CPU node under /cpus"),
            TooMany { what, limit } => write!(f, "more than {limit} {what}"),
        }
    }
}

impl core::error::Error for Error {}
