//! What a mapping allows and how its memory behaves, independent of the descriptor bits, and the
//! three ways a writable page's dirty state can be kept in a descriptor.

use crate::descriptor::{AccessPermission, Descriptor, Shareability};
use core::fmt;

/// MAIR_EL1 attribute index of Device-nGnRE memory.
pub const MAIR_INDEX_DEVICE: u8 = 0;
/// MAIR_EL1 attribute index of Normal inner/outer write-back, read/write-allocate memory.
pub const MAIR_INDEX_NORMAL: u8 = 1;
/// MAIR_EL1 attribute index of Normal non-cacheable memory.
pub const MAIR_INDEX_NORMAL_NC: u8 = 2;
/// The MAIR_EL1 value the attribute indices above assume: attr0 = Device-nGnRE (0x04),
/// attr1 = Normal WB RW-allocate (0xff), attr2 = Normal NC (0x44). The kernel must program
/// exactly this (boot/src/lib.rs uses the same layout).
pub const MAIR_EL1_VALUE: u64 = (0x04 << (8 * MAIR_INDEX_DEVICE as u64))
    | (0xff << (8 * MAIR_INDEX_NORMAL as u64))
    | (0x44 << (8 * MAIR_INDEX_NORMAL_NC as u64));

/// Memory type and cacheability, selected through AttrIndx.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// Normal memory, inner and outer write-back, read/write-allocate, Inner Shareable.
    NormalWriteBack,
    /// Normal memory, non-cacheable, Inner Shareable (DMA buffers without coherency).
    NormalNonCacheable,
    /// Device-nGnRE (MMIO). Never executable.
    Device,
}

impl MemoryType {
    /// The MAIR_EL1 index this type uses.
    pub const fn attr_index(self) -> u8 {
        match self {
            Self::NormalWriteBack => MAIR_INDEX_NORMAL,
            Self::NormalNonCacheable => MAIR_INDEX_NORMAL_NC,
            Self::Device => MAIR_INDEX_DEVICE,
        }
    }

    /// The type behind a MAIR_EL1 index, `None` for indices this crate does not use.
    pub const fn from_attr_index(index: u8) -> Option<Self> {
        match index {
            MAIR_INDEX_NORMAL => Some(Self::NormalWriteBack),
            MAIR_INDEX_NORMAL_NC => Some(Self::NormalNonCacheable),
            MAIR_INDEX_DEVICE => Some(Self::Device),
            _ => None,
        }
    }

    /// The shareability written for this type: Inner Shareable for Normal memory; Device memory
    /// ignores the field (it is always Outer Shareable), so it is left zero.
    pub const fn shareability(self) -> Shareability {
        match self {
            Self::NormalWriteBack | Self::NormalNonCacheable => Shareability::InnerShareable,
            Self::Device => Shareability::NonShareable,
        }
    }

    /// A short name for printing.
    pub const fn name(self) -> &'static str {
        match self {
            Self::NormalWriteBack => "Normal WB",
            Self::NormalNonCacheable => "Normal NC",
            Self::Device => "Device-nGnRE",
        }
    }
}

/// Access rights at one exception level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// Data reads.
    pub read: bool,
    /// Data writes.
    pub write: bool,
    /// Instruction fetches.
    pub execute: bool,
}

impl Access {
    /// No access.
    pub const NONE: Self = Self {
        read: false,
        write: false,
        execute: false,
    };
    /// Read-only data.
    pub const READ: Self = Self {
        read: true,
        write: false,
        execute: false,
    };
    /// Read/write data.
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
        execute: false,
    };
    /// Code that may also be read.
    pub const READ_EXECUTE: Self = Self {
        read: true,
        write: false,
        execute: true,
    };
    /// Execute-only code (EL0 only: EL1 can always read a valid mapping).
    pub const EXECUTE: Self = Self {
        read: false,
        write: false,
        execute: true,
    };

    const fn any(self) -> bool {
        self.read || self.write || self.execute
    }
}

/// Whether TLB entries for a mapping are shared by all ASIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// nG = 0: one TLB entry serves every ASID (kernel mappings).
    Global,
    /// nG = 1: TLB entries are tagged with the ASID (user mappings).
    PerAsid,
}

/// Why a set of attributes cannot be requested or a descriptor cannot be decoded into one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttributeError {
    /// Some level may write and some level may execute the same memory (W^X).
    WriteAndExecute,
    /// Write without read: stage 1 cannot grant it.
    WriteWithoutRead,
    /// EL1 must be able to read any valid mapping (AP has no "EL1 no access" encoding).
    KernelReadRequired,
    /// EL1 and EL0 both have data access but differ in write permission: `AP[2]` is shared, so
    /// "EL1 read-only, EL0 read/write" and "EL1 read/write, EL0 read-only" do not exist.
    SplitWritePermission,
    /// Executable Device memory (speculative instruction fetches would reach MMIO).
    ExecutableDevice,
    /// The descriptor's AttrIndx is not one of the indices in [`MAIR_EL1_VALUE`].
    UnknownAttrIndex(u8),
}

impl fmt::Display for AttributeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WriteAndExecute => {
                write!(f, "memory may not be both writable and executable (W^X)")
            }
            Self::WriteWithoutRead => {
                write!(f, "write access without read access cannot be encoded")
            }
            Self::KernelReadRequired => write!(
                f,
                "EL1 can always read a valid mapping; kernel read access is required"
            ),
            Self::SplitWritePermission => write!(
                f,
                "EL1 and EL0 share the read-only bit: both may write or neither may when both can read"
            ),
            Self::ExecutableDevice => write!(f, "device memory may not be executable"),
            Self::UnknownAttrIndex(index) => write!(
                f,
                "AttrIndx {index} is not a memory type this crate programs"
            ),
        }
    }
}

/// Everything a mapping request says about the memory: permissions per exception level, memory
/// type and TLB scope. Only consistent, W^X-respecting combinations can be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemoryAttributes {
    kernel: Access,
    user: Access,
    memory: MemoryType,
    scope: Scope,
}

/// `Ok(attributes)` in a const context: a bad constant fails the build, never a running kernel.
const fn valid(result: Result<MemoryAttributes, AttributeError>) -> MemoryAttributes {
    match result {
        Ok(attributes) => attributes,
        Err(_) => panic!("invalid MemoryAttributes constant"),
    }
}

impl MemoryAttributes {
    /// Kernel read/write data.
    pub const KERNEL_DATA: Self = valid(Self::new(
        Access::READ_WRITE,
        Access::NONE,
        MemoryType::NormalWriteBack,
        Scope::Global,
    ));
    /// Kernel read-only data.
    pub const KERNEL_RODATA: Self = valid(Self::new(
        Access::READ,
        Access::NONE,
        MemoryType::NormalWriteBack,
        Scope::Global,
    ));
    /// Kernel code.
    pub const KERNEL_CODE: Self = valid(Self::new(
        Access::READ_EXECUTE,
        Access::NONE,
        MemoryType::NormalWriteBack,
        Scope::Global,
    ));
    /// Kernel MMIO.
    pub const KERNEL_DEVICE: Self = valid(Self::new(
        Access::READ_WRITE,
        Access::NONE,
        MemoryType::Device,
        Scope::Global,
    ));
    /// User read/write data (EL1 may access it too, subject to PAN).
    pub const USER_DATA: Self = valid(Self::new(
        Access::READ_WRITE,
        Access::READ_WRITE,
        MemoryType::NormalWriteBack,
        Scope::PerAsid,
    ));
    /// User read-only data.
    pub const USER_RODATA: Self = valid(Self::new(
        Access::READ,
        Access::READ,
        MemoryType::NormalWriteBack,
        Scope::PerAsid,
    ));
    /// User code (readable by EL0, never executable by EL1).
    pub const USER_CODE: Self = valid(Self::new(
        Access::READ,
        Access::READ_EXECUTE,
        MemoryType::NormalWriteBack,
        Scope::PerAsid,
    ));

    /// Checks and builds a set of attributes.
    pub const fn new(
        kernel: Access,
        user: Access,
        memory: MemoryType,
        scope: Scope,
    ) -> Result<Self, AttributeError> {
        if (kernel.write || user.write) && (kernel.execute || user.execute) {
            return Err(AttributeError::WriteAndExecute);
        }
        if (kernel.write && !kernel.read) || (user.write && !user.read) {
            return Err(AttributeError::WriteWithoutRead);
        }
        if !kernel.read {
            return Err(AttributeError::KernelReadRequired);
        }
        if user.read && kernel.write != user.write {
            return Err(AttributeError::SplitWritePermission);
        }
        if matches!(memory, MemoryType::Device) && (kernel.execute || user.execute) {
            return Err(AttributeError::ExecutableDevice);
        }
        Ok(Self {
            kernel,
            user,
            memory,
            scope,
        })
    }

    /// EL1 access.
    pub const fn kernel(&self) -> Access {
        self.kernel
    }

    /// EL0 access.
    pub const fn user(&self) -> Access {
        self.user
    }

    /// Memory type.
    pub const fn memory_type(&self) -> MemoryType {
        self.memory
    }

    /// TLB scope.
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether EL0 has any access.
    pub const fn user_accessible(&self) -> bool {
        self.user.any()
    }

    /// Whether any level may write.
    pub const fn writable(&self) -> bool {
        self.kernel.write
    }

    /// `leaf` (a fresh leaf descriptor carrying only its output address and type) with these
    /// attributes: AF set, a writable mapping in the clean state of `tracking`.
    pub fn apply(&self, leaf: Descriptor, tracking: DirtyTracking) -> Descriptor {
        let ap = match (self.kernel.write, self.user.read) {
            (true, true) => AccessPermission::ReadWriteEl1El0,
            (true, false) => AccessPermission::ReadWriteEl1,
            (false, true) => AccessPermission::ReadOnlyEl1El0,
            (false, false) => AccessPermission::ReadOnlyEl1,
        };
        let descriptor = leaf
            .with_attr_index(self.memory.attr_index())
            .with_shareability(self.memory.shareability())
            .with_access_permission(ap)
            .with_accessed(true)
            .with_not_global(matches!(self.scope, Scope::PerAsid))
            .with_privileged_execute_never(!self.kernel.execute)
            .with_unprivileged_execute_never(!self.user.execute);
        if self.kernel.write {
            tracking.writable_clean(descriptor)
        } else {
            descriptor
        }
    }

    /// Decodes a leaf descriptor's attributes, reading write permission as `tracking` encodes it
    /// (a writable-clean page decodes as writable).
    pub fn from_descriptor(
        descriptor: Descriptor,
        tracking: DirtyTracking,
    ) -> Result<Self, AttributeError> {
        let memory = MemoryType::from_attr_index(descriptor.attr_index())
            .ok_or(AttributeError::UnknownAttrIndex(descriptor.attr_index()))?;
        let write = tracking.write_intended(descriptor);
        let el0 = descriptor.access_permission().el0_accessible();
        let kernel = Access {
            read: true,
            write,
            execute: !descriptor.privileged_execute_never(),
        };
        let user = Access {
            read: el0,
            write: write && el0,
            execute: !descriptor.unprivileged_execute_never(),
        };
        let scope = if descriptor.not_global() {
            Scope::PerAsid
        } else {
            Scope::Global
        };
        Self::new(kernel, user, memory, scope)
    }
}

/// How a writable page's dirty state lives in its descriptor; chosen once per address space.
///
/// In every mode a page is dirty when it is writable right now (`AP[2]` clear) or SW_DIRTY is set;
/// SW_DIRTY keeps the dirty state of a page whose write permission was removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DirtyTracking {
    /// No tracking: writable pages are mapped writable and always count as dirty (kernel space).
    Untracked,
    /// FEAT_HAFDBS with TCR_EL1.HD = 1: a writable-clean page is `AP[2]` = 1 (read-only) with
    /// DBM = 1; the hardware clears `AP[2]` on the first write, so dirty = DBM && !`AP[2]`.
    Hardware,
    /// No HAFDBS: a writable-clean page is read-only with SW_WRITABLE set; the first write takes
    /// a permission fault and the handler clears `AP[2]` (see `AddressSpace::resolve_write_fault`).
    Software,
}

impl DirtyTracking {
    /// `descriptor` (with write permission in its AP bits) turned into the writable-clean state.
    pub fn writable_clean(self, descriptor: Descriptor) -> Descriptor {
        match self {
            Self::Untracked => descriptor.with_read_only(false),
            Self::Hardware => descriptor
                .with_read_only(true)
                .with_dirty_bit_modifier(true),
            Self::Software => descriptor.with_read_only(true).with_sw_writable(true),
        }
    }

    /// Whether the mapping may be written, now or after the dirty transition.
    pub fn write_intended(self, descriptor: Descriptor) -> bool {
        !descriptor.read_only()
            || match self {
                Self::Untracked => false,
                Self::Hardware => descriptor.dirty_bit_modifier(),
                Self::Software => descriptor.sw_writable(),
            }
    }

    /// Whether the page has been written since it was last cleaned.
    pub fn is_dirty(self, descriptor: Descriptor) -> bool {
        !descriptor.read_only() || descriptor.sw_dirty()
    }

    /// The page made dirty and writable now, or `None` if it may not be written.
    pub fn mark_dirty(self, descriptor: Descriptor) -> Option<Descriptor> {
        self.write_intended(descriptor)
            .then(|| descriptor.with_read_only(false))
    }

    /// The page made clean: write permission back to the on-demand state and SW_DIRTY cleared.
    /// `None` in [`DirtyTracking::Untracked`], which cannot tell a later write.
    pub fn mark_clean(self, descriptor: Descriptor) -> Option<Descriptor> {
        if matches!(self, Self::Untracked) {
            return None;
        }
        let cleaned = descriptor.with_sw_dirty(false);
        Some(if self.write_intended(descriptor) {
            self.writable_clean(cleaned)
        } else {
            cleaned
        })
    }

    /// `fresh` (a descriptor just built from attributes, in the clean state) given the dirty
    /// state of `old`, so that changing permissions never loses a write: a dirty page that stays
    /// writable stays writable-dirty, one that loses write permission keeps SW_DIRTY.
    pub fn carry_dirty(self, old: Descriptor, fresh: Descriptor) -> Descriptor {
        if !self.is_dirty(old) {
            return fresh;
        }
        match self.mark_dirty(fresh) {
            Some(dirty) => dirty.with_sw_dirty(old.sw_dirty()),
            None => fresh.with_sw_dirty(true),
        }
    }
}
