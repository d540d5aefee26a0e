//! VMSAv8-64 stage-1 descriptors for the 4 KiB granule (Arm ARM D8.3): table descriptors at
//! levels 0-2, block descriptors at levels 1-2, page descriptors at level 3, and invalid
//! descriptors (bit 0 clear) whose other bits the hardware ignores.

use crate::addr::{PAGE_SIZE, PhysAddr, PhysFrame};
use core::fmt;
use tock_registers::{LocalRegisterCopy, register_bitfields};

register_bitfields! [u64,
    /// Table descriptor (levels 0-2): points to the next-level table.
    pub TABLE_DESCRIPTOR [
        /// Next-level table is in Non-secure memory (ignored in Non-secure state).
        NS_TABLE OFFSET(63) NUMBITS(1) [],
        /// Limit on access permissions at lower levels (0 = no limit).
        AP_TABLE OFFSET(61) NUMBITS(2) [],
        /// Unprivileged execute-never for everything below (0 = no limit).
        UXN_TABLE OFFSET(60) NUMBITS(1) [],
        /// Privileged execute-never for everything below (0 = no limit).
        PXN_TABLE OFFSET(59) NUMBITS(1) [],
        /// Physical address bits `[47:12]` of the next-level table.
        NEXT_LEVEL_TABLE_ADDR OFFSET(12) NUMBITS(36) [],
        /// 1 = table (levels 0-2); 0 would be a block.
        TYPE OFFSET(1) NUMBITS(1) [],
        /// The descriptor is valid.
        VALID OFFSET(0) NUMBITS(1) []
    ],
    /// Block (levels 1-2) or page (level 3) descriptor: maps memory.
    pub LEAF_DESCRIPTOR [
        /// Four bits reserved for software (ignored by the hardware).
        SOFTWARE OFFSET(55) NUMBITS(4) [],
        /// Software bits 57-58, not used by this crate: free for the kernel.
        SW_AVAILABLE OFFSET(57) NUMBITS(2) [],
        /// Software bit: a page recorded as dirty by software (kept when write permission is
        /// removed, and the dirty bit proper in software dirty tracking).
        SW_DIRTY OFFSET(56) NUMBITS(1) [],
        /// Software bit: the page may be written (software dirty tracking maps it read-only
        /// until the first write faults).
        SW_WRITABLE OFFSET(55) NUMBITS(1) [],
        /// Unprivileged (EL0) execute-never.
        UXN OFFSET(54) NUMBITS(1) [],
        /// Privileged (EL1) execute-never.
        PXN OFFSET(53) NUMBITS(1) [],
        /// Hint: one of 16 adjacent entries mapping a contiguous output range.
        CONTIGUOUS OFFSET(52) NUMBITS(1) [],
        /// Dirty Bit Modifier (FEAT_HAFDBS): the hardware clears `AP[2]` on a write.
        DBM OFFSET(51) NUMBITS(1) [],
        /// Output address bits `[47:12]` (a block uses `[47:21]` or `[47:30]`; lower bits are zero).
        OUTPUT_ADDR OFFSET(12) NUMBITS(36) [],
        /// Not global: the entry is tagged with the current ASID.
        NG OFFSET(11) NUMBITS(1) [],
        /// Access flag: 0 faults (or is set by hardware with FEAT_HAFDBS).
        AF OFFSET(10) NUMBITS(1) [],
        /// Shareability of Normal memory.
        SH OFFSET(8) NUMBITS(2) [
            NonShareable = 0b00,
            OuterShareable = 0b10,
            InnerShareable = 0b11
        ],
        /// Data access permissions `AP[2:1]`: `AP[2]` = read-only, `AP[1]` = EL0 accessible.
        AP OFFSET(6) NUMBITS(2) [
            RwEl1 = 0b00,
            RwEl1El0 = 0b01,
            RoEl1 = 0b10,
            RoEl1El0 = 0b11
        ],
        /// `AP[2]` alone: the read-only bit (what hardware dirty tracking clears).
        AP_RO OFFSET(7) NUMBITS(1) [],
        /// `AP[1]` alone: EL0 may access the data.
        AP_EL0 OFFSET(6) NUMBITS(1) [],
        /// Non-secure output address (ignored in Non-secure state).
        NS OFFSET(5) NUMBITS(1) [],
        /// Index of the memory attributes in MAIR_EL1.
        ATTR_INDX OFFSET(2) NUMBITS(3) [],
        /// 1 = page (level 3), 0 = block (levels 1-2).
        TYPE OFFSET(1) NUMBITS(1) [],
        /// The descriptor is valid.
        VALID OFFSET(0) NUMBITS(1) []
    ]
];

use LEAF_DESCRIPTOR as LEAF;
use TABLE_DESCRIPTOR as TABLE;

type LeafBits = LocalRegisterCopy<u64, LEAF::Register>;
type TableBits = LocalRegisterCopy<u64, TABLE::Register>;

/// Mask of the output address bits `[47:12]`.
const ADDRESS_MASK: u64 = ((1 << 48) - 1) & !(PAGE_SIZE - 1);

/// A translation table level of the 4 KiB granule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Indexed by `VA[47:39]`; holds only table descriptors (each covers 512 GiB).
    L0,
    /// Indexed by `VA[38:30]`; tables or 1 GiB blocks.
    L1,
    /// Indexed by `VA[29:21]`; tables or 2 MiB blocks.
    L2,
    /// Indexed by `VA[20:12]`; 4 KiB pages.
    L3,
}

impl Level {
    /// All levels, root first.
    pub const ALL: [Self; 4] = [Self::L0, Self::L1, Self::L2, Self::L3];

    /// Lowest VA bit of this level's index.
    pub const fn shift(self) -> u32 {
        match self {
            Self::L0 => 39,
            Self::L1 => 30,
            Self::L2 => 21,
            Self::L3 => 12,
        }
    }

    /// Bytes of address space one entry of this level covers.
    pub const fn entry_size(self) -> u64 {
        1 << self.shift()
    }

    /// Index of the entry translating `va_offset` (an offset within a half) in a table of this
    /// level.
    pub const fn index_of(self, va_offset: u64) -> usize {
        ((va_offset >> self.shift()) & 0x1ff) as usize
    }

    /// The next level down, `None` for level 3.
    pub const fn next(self) -> Option<Self> {
        match self {
            Self::L0 => Some(Self::L1),
            Self::L1 => Some(Self::L2),
            Self::L2 => Some(Self::L3),
            Self::L3 => None,
        }
    }

    /// Whether a block descriptor is allowed here (4 KiB granule without FEAT_LPA2).
    pub const fn allows_block(self) -> bool {
        matches!(self, Self::L1 | Self::L2)
    }

    /// The level number 0-3.
    pub const fn number(self) -> u8 {
        match self {
            Self::L0 => 0,
            Self::L1 => 1,
            Self::L2 => 2,
            Self::L3 => 3,
        }
    }
}

/// What a descriptor is, given the level it sits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DescriptorKind {
    /// Bit 0 clear: translation fault; the other bits are ignored by hardware (software payload).
    Invalid,
    /// Points to a next-level table.
    Table,
    /// Maps a 1 GiB (level 1) or 2 MiB (level 2) block.
    Block,
    /// Maps a 4 KiB page (level 3).
    Page,
    /// Valid bit set but an encoding the architecture reserves (a block at level 0, `0b01` at
    /// level 3); behaves as a translation fault. This crate never writes one.
    Reserved,
}

/// Stage-1 memory access permissions `AP[2:1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessPermission {
    /// EL1 read/write, EL0 no access.
    ReadWriteEl1,
    /// EL1 and EL0 read/write.
    ReadWriteEl1El0,
    /// EL1 read-only, EL0 no access.
    ReadOnlyEl1,
    /// EL1 and EL0 read-only.
    ReadOnlyEl1El0,
}

impl AccessPermission {
    const fn bits(self) -> u64 {
        match self {
            Self::ReadWriteEl1 => 0b00,
            Self::ReadWriteEl1El0 => 0b01,
            Self::ReadOnlyEl1 => 0b10,
            Self::ReadOnlyEl1El0 => 0b11,
        }
    }

    const fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0b00 => Self::ReadWriteEl1,
            0b01 => Self::ReadWriteEl1El0,
            0b10 => Self::ReadOnlyEl1,
            _ => Self::ReadOnlyEl1El0,
        }
    }

    /// Whether `AP[2]` (read-only) is set.
    pub const fn is_read_only(self) -> bool {
        matches!(self, Self::ReadOnlyEl1 | Self::ReadOnlyEl1El0)
    }

    /// Whether `AP[1]` (EL0 data access) is set.
    pub const fn el0_accessible(self) -> bool {
        matches!(self, Self::ReadWriteEl1El0 | Self::ReadOnlyEl1El0)
    }
}

/// Stage-1 shareability `SH[1:0]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shareability {
    /// Non-shareable (also what this crate writes for Device memory, where SH is ignored).
    NonShareable,
    /// Outer Shareable.
    OuterShareable,
    /// Inner Shareable (all Normal memory in this crate).
    InnerShareable,
    /// The reserved encoding 0b01 (never written by this crate).
    Reserved,
}

impl Shareability {
    const fn bits(self) -> u64 {
        match self {
            Self::NonShareable => 0b00,
            Self::Reserved => 0b01,
            Self::OuterShareable => 0b10,
            Self::InnerShareable => 0b11,
        }
    }

    const fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0b00 => Self::NonShareable,
            0b01 => Self::Reserved,
            0b10 => Self::OuterShareable,
            _ => Self::InnerShareable,
        }
    }
}

/// One 64-bit translation table entry. The `with_*` builders and accessors touch only their own
/// field; which fields mean something depends on [`Descriptor::kind`].
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Descriptor(u64);

impl Descriptor {
    /// The all-zero invalid descriptor (an empty slot).
    pub const EMPTY: Self = Self(0);

    /// Wraps a raw value.
    pub const fn from_raw(raw: u64) -> Self {
        Self(raw)
    }

    /// The raw value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// A valid table descriptor pointing to `table`, with no hierarchical restrictions.
    pub fn table(table: PhysFrame) -> Self {
        let mut bits = TableBits::new(0);
        bits.write(
            TABLE::VALID::SET
                + TABLE::TYPE::SET
                + TABLE::NEXT_LEVEL_TABLE_ADDR
                    .val(table.start().as_u64() >> PAGE_SIZE.trailing_zeros()),
        );
        Self(bits.get())
    }

    /// A valid leaf descriptor for `level` (block at 1-2, page at 3) with output address `output`
    /// and no attribute bits set: AttrIndx 0, EL1 read/write, AF clear, global, executable.
    /// `None` if the level holds no leaves (level 0) or `output` is not aligned to the level's
    /// entry size.
    pub const fn leaf(level: Level, output: PhysAddr) -> Option<Self> {
        if matches!(level, Level::L0) || !output.as_u64().is_multiple_of(level.entry_size()) {
            return None;
        }
        Some(Self::leaf_truncating(level, output))
    }

    /// As [`leaf`](Self::leaf) for a level 1-3 and an output address aligned to it (bits below
    /// the level's entry size are dropped).
    pub(crate) const fn leaf_truncating(level: Level, output: PhysAddr) -> Self {
        let type_bit = if matches!(level, Level::L3) { 0b10 } else { 0 };
        Self((output.as_u64() & ADDRESS_MASK & !(level.entry_size() - 1)) | type_bit | 1)
    }

    /// This leaf's bits turned into a leaf for `level`: the type bit set for a level-3 page,
    /// clear for a block (used when splitting a block into smaller leaves).
    pub(crate) fn as_leaf_at(self, level: Level) -> Self {
        self.modified(LEAF::TYPE.val(u64::from(level == Level::L3)))
    }

    /// The AF bit alone, for atomic test-and-clear on a live entry.
    pub(crate) fn access_flag_mask() -> u64 {
        Self::EMPTY.with_accessed(true).0
    }

    /// Whether bit 0 (valid) is set.
    pub const fn is_valid(self) -> bool {
        self.0 & 1 == 1
    }

    /// What the descriptor is at `level`.
    pub const fn kind(self, level: Level) -> DescriptorKind {
        if !self.is_valid() {
            return DescriptorKind::Invalid;
        }
        let table_or_page = self.0 & 0b10 != 0;
        match (level, table_or_page) {
            (Level::L3, true) => DescriptorKind::Page,
            (Level::L3, false) | (Level::L0, false) => DescriptorKind::Reserved,
            (_, true) => DescriptorKind::Table,
            (_, false) => DescriptorKind::Block,
        }
    }

    /// Whether this is a block or page descriptor at `level`.
    pub const fn is_leaf(self, level: Level) -> bool {
        matches!(
            self.kind(level),
            DescriptorKind::Block | DescriptorKind::Page
        )
    }

    /// The next-level table a table descriptor points to.
    pub fn next_table(self) -> PhysFrame {
        let bits = TableBits::new(self.0);
        let address = bits.read(TABLE::NEXT_LEVEL_TABLE_ADDR) << PAGE_SIZE.trailing_zeros();
        PhysFrame::containing(PhysAddr::truncated(address))
    }

    /// The output address of a leaf at `level` (bits below the level's entry size are not part of
    /// the address and are ignored).
    pub const fn output_address(self, level: Level) -> PhysAddr {
        PhysAddr::truncated(self.0 & ADDRESS_MASK & !(level.entry_size() - 1))
    }

    /// The same descriptor with the output address replaced by `output` (aligned down to 4 KiB);
    /// every other bit is kept.
    pub const fn with_output_address(self, output: PhysAddr) -> Self {
        Self((self.0 & !ADDRESS_MASK) | (output.as_u64() & ADDRESS_MASK))
    }

    fn leaf_bits(self) -> LeafBits {
        LeafBits::new(self.0)
    }

    fn modified(self, field: tock_registers::fields::FieldValue<u64, LEAF::Register>) -> Self {
        let mut bits = self.leaf_bits();
        bits.modify(field);
        Self(bits.get())
    }

    fn flag(self, field: tock_registers::fields::Field<u64, LEAF::Register>) -> bool {
        self.leaf_bits().is_set(field)
    }

    fn with_flag(
        self,
        field: tock_registers::fields::Field<u64, LEAF::Register>,
        set: bool,
    ) -> Self {
        self.modified(field.val(u64::from(set)))
    }

    /// AttrIndx: the MAIR_EL1 attribute index (0-7).
    pub fn attr_index(self) -> u8 {
        self.leaf_bits().read(LEAF::ATTR_INDX) as u8
    }

    /// Sets AttrIndx (only the low 3 bits of `index` are used).
    pub fn with_attr_index(self, index: u8) -> Self {
        self.modified(LEAF::ATTR_INDX.val(u64::from(index & 0b111)))
    }

    /// NS: non-secure output address.
    pub fn non_secure(self) -> bool {
        self.flag(LEAF::NS)
    }

    /// Sets NS.
    pub fn with_non_secure(self, set: bool) -> Self {
        self.with_flag(LEAF::NS, set)
    }

    /// `AP[2:1]`.
    pub fn access_permission(self) -> AccessPermission {
        AccessPermission::from_bits(self.leaf_bits().read(LEAF::AP))
    }

    /// Sets `AP[2:1]`.
    pub fn with_access_permission(self, ap: AccessPermission) -> Self {
        self.modified(LEAF::AP.val(ap.bits()))
    }

    /// `AP[2]`: the read-only bit.
    pub fn read_only(self) -> bool {
        self.flag(LEAF::AP_RO)
    }

    /// Sets `AP[2]` alone (what hardware dirty tracking clears on a write).
    pub fn with_read_only(self, set: bool) -> Self {
        self.with_flag(LEAF::AP_RO, set)
    }

    /// `SH[1:0]`.
    pub fn shareability(self) -> Shareability {
        Shareability::from_bits(self.leaf_bits().read(LEAF::SH))
    }

    /// Sets `SH[1:0]`.
    pub fn with_shareability(self, sh: Shareability) -> Self {
        self.modified(LEAF::SH.val(sh.bits()))
    }

    /// AF: the access flag.
    pub fn accessed(self) -> bool {
        self.flag(LEAF::AF)
    }

    /// Sets AF.
    pub fn with_accessed(self, set: bool) -> Self {
        self.with_flag(LEAF::AF, set)
    }

    /// nG: not global (ASID-tagged).
    pub fn not_global(self) -> bool {
        self.flag(LEAF::NG)
    }

    /// Sets nG.
    pub fn with_not_global(self, set: bool) -> Self {
        self.with_flag(LEAF::NG, set)
    }

    /// DBM (bit 51): hardware dirty-bit modifier.
    pub fn dirty_bit_modifier(self) -> bool {
        self.flag(LEAF::DBM)
    }

    /// Sets DBM.
    pub fn with_dirty_bit_modifier(self, set: bool) -> Self {
        self.with_flag(LEAF::DBM, set)
    }

    /// The contiguous hint (never set by this crate's mapping functions).
    pub fn contiguous(self) -> bool {
        self.flag(LEAF::CONTIGUOUS)
    }

    /// Sets the contiguous hint.
    pub fn with_contiguous(self, set: bool) -> Self {
        self.with_flag(LEAF::CONTIGUOUS, set)
    }

    /// PXN: privileged execute-never.
    pub fn privileged_execute_never(self) -> bool {
        self.flag(LEAF::PXN)
    }

    /// Sets PXN.
    pub fn with_privileged_execute_never(self, set: bool) -> Self {
        self.with_flag(LEAF::PXN, set)
    }

    /// UXN: unprivileged execute-never.
    pub fn unprivileged_execute_never(self) -> bool {
        self.flag(LEAF::UXN)
    }

    /// Sets UXN.
    pub fn with_unprivileged_execute_never(self, set: bool) -> Self {
        self.with_flag(LEAF::UXN, set)
    }

    /// The four software bits `[58:55]` as a number.
    pub fn software(self) -> u8 {
        self.leaf_bits().read(LEAF::SOFTWARE) as u8
    }

    /// Sets the four software bits `[58:55]` (only the low 4 bits of `bits` are used).
    pub fn with_software(self, bits: u8) -> Self {
        self.modified(LEAF::SOFTWARE.val(u64::from(bits & 0xf)))
    }

    /// SW_WRITABLE (bit 55): write intended, for software dirty tracking.
    pub fn sw_writable(self) -> bool {
        self.flag(LEAF::SW_WRITABLE)
    }

    /// Sets SW_WRITABLE.
    pub fn with_sw_writable(self, set: bool) -> Self {
        self.with_flag(LEAF::SW_WRITABLE, set)
    }

    /// SW_DIRTY (bit 56): dirty as recorded by software.
    pub fn sw_dirty(self) -> bool {
        self.flag(LEAF::SW_DIRTY)
    }

    /// Sets SW_DIRTY.
    pub fn with_sw_dirty(self, set: bool) -> Self {
        self.with_flag(LEAF::SW_DIRTY, set)
    }

    /// Software bits 57-58, which this crate never touches: free for the kernel.
    pub fn sw_available(self) -> u8 {
        self.leaf_bits().read(LEAF::SW_AVAILABLE) as u8
    }

    /// Sets software bits 57-58 (only the low 2 bits of `bits` are used).
    pub fn with_sw_available(self, bits: u8) -> Self {
        self.modified(LEAF::SW_AVAILABLE.val(u64::from(bits & 0b11)))
    }

    /// Whether a leaf may ever be both written and executed: writable now (`AP[2]` clear) or
    /// writable on demand (DBM or SW_WRITABLE), and executable at EL1 or EL0. EL0-writable
    /// memory is never executable at EL1 (the architecture forces PXN there), but EL0 execution
    /// still counts.
    pub fn violates_wxorx(self) -> bool {
        let writable = !self.read_only() || self.dirty_bit_modifier() || self.sw_writable();
        let el0_writable_now = self.access_permission() == AccessPermission::ReadWriteEl1El0;
        let el1_executes = !self.privileged_execute_never() && !el0_writable_now;
        let el0_executes = !self.unprivileged_execute_never();
        writable && (el1_executes || el0_executes)
    }
}

impl fmt::Debug for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Descriptor({:#018x})", self.0)
    }
}

/// A descriptor shown with its decoded fields as they apply at `level` (used by the walk
/// printer).
pub struct DescriptorFields {
    /// The descriptor.
    pub descriptor: Descriptor,
    /// The level it sits at.
    pub level: Level,
}

impl fmt::Display for DescriptorFields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.descriptor;
        match d.kind(self.level) {
            DescriptorKind::Invalid if d.raw() == 0 => write!(f, "empty"),
            DescriptorKind::Invalid => match crate::swap::SwapEntry::from_descriptor(d) {
                Some(entry) => write!(
                    f,
                    "invalid, swap entry slot={} token={:#x}",
                    entry.slot(),
                    entry.token()
                ),
                None => write!(f, "invalid, software payload {:#x}", d.raw()),
            },
            DescriptorKind::Reserved => write!(f, "reserved encoding (translation fault)"),
            DescriptorKind::Table => {
                let bits = TableBits::new(d.raw());
                write!(f, "table -> {:#x}", d.next_table().start().as_u64())?;
                if bits.read(TABLE::AP_TABLE) != 0 {
                    write!(f, " APTable={:#b}", bits.read(TABLE::AP_TABLE))?;
                }
                for (name, field) in [
                    ("UXNTable", TABLE::UXN_TABLE),
                    ("PXNTable", TABLE::PXN_TABLE),
                    ("NSTable", TABLE::NS_TABLE),
                ] {
                    if bits.is_set(field) {
                        write!(f, " {name}")?;
                    }
                }
                Ok(())
            }
            kind @ (DescriptorKind::Block | DescriptorKind::Page) => {
                let name = if kind == DescriptorKind::Page {
                    "page"
                } else {
                    "block"
                };
                let memory = match crate::attributes::MemoryType::from_attr_index(d.attr_index()) {
                    Some(memory) => memory.name(),
                    None => "unknown",
                };
                let ap = match d.access_permission() {
                    AccessPermission::ReadWriteEl1 => "EL1 RW, EL0 none",
                    AccessPermission::ReadWriteEl1El0 => "EL1 RW, EL0 RW",
                    AccessPermission::ReadOnlyEl1 => "EL1 RO, EL0 none",
                    AccessPermission::ReadOnlyEl1El0 => "EL1 RO, EL0 RO",
                };
                let sh = match d.shareability() {
                    Shareability::NonShareable => "NSH",
                    Shareability::OuterShareable => "OSH",
                    Shareability::InnerShareable => "ISH",
                    Shareability::Reserved => "SH=01?",
                };
                write!(
                    f,
                    "{name} -> {:#x} AttrIndx={}({memory}) AP={ap} SH={sh}",
                    d.output_address(self.level).as_u64(),
                    d.attr_index()
                )?;
                for (name, set) in [
                    ("AF", d.accessed()),
                    ("nG", d.not_global()),
                    ("NS", d.non_secure()),
                    ("DBM", d.dirty_bit_modifier()),
                    ("Cont", d.contiguous()),
                    ("PXN", d.privileged_execute_never()),
                    ("UXN", d.unprivileged_execute_never()),
                    ("SW_WRITABLE", d.sw_writable()),
                    ("SW_DIRTY", d.sw_dirty()),
                ] {
                    if set {
                        write!(f, " {name}")?;
                    }
                }
                if d.sw_available() != 0 {
                    write!(f, " SW[58:57]={:#b}", d.sw_available())?;
                }
                Ok(())
            }
        }
    }
}
