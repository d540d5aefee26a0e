//! Descriptor, attribute and swap-entry encodings.

use crate::descriptor::{AccessPermission, DescriptorFields, Shareability};
use crate::swap::{SWAP_SLOT_BITS, SlotTooLarge};
use crate::{
    Access, AttributeError, Descriptor, DescriptorKind, DirtyTracking, Level, MAIR_EL1_VALUE,
    MemoryAttributes, MemoryType, Scope, SwapEntry,
};
use proptest::prelude::*;

use super::pa;

const OUTPUT_ADDRESS_MASK: u64 = 0x0000_ffff_ffff_f000;

fn access_permission(bits: u8) -> AccessPermission {
    [
        AccessPermission::ReadWriteEl1,
        AccessPermission::ReadWriteEl1El0,
        AccessPermission::ReadOnlyEl1,
        AccessPermission::ReadOnlyEl1El0,
    ][usize::from(bits % 4)]
}

fn shareability(bits: u8) -> Shareability {
    [
        Shareability::NonShareable,
        Shareability::Reserved,
        Shareability::OuterShareable,
        Shareability::InnerShareable,
    ][usize::from(bits % 4)]
}

fn level(index: u8) -> Level {
    [Level::L1, Level::L2, Level::L3][usize::from(index % 3)]
}

fn access(bits: u8) -> Access {
    Access {
        read: bits & 1 != 0,
        write: bits & 2 != 0,
        execute: bits & 4 != 0,
    }
}

fn memory_type(index: u8) -> MemoryType {
    [
        MemoryType::NormalWriteBack,
        MemoryType::NormalNonCacheable,
        MemoryType::Device,
    ][usize::from(index % 3)]
}

fn tracking(index: u8) -> DirtyTracking {
    [
        DirtyTracking::Untracked,
        DirtyTracking::Hardware,
        DirtyTracking::Software,
    ][usize::from(index % 3)]
}

proptest! {
    #[test]
    fn every_leaf_field_round_trips(
        frame_number in 0u64..(1 << 36),
        level_index in 0u8..3,
        attr_index in 0u8..8,
        ap in 0u8..4,
        sh in 0u8..4,
        flags in any::<[bool; 7]>(),
        software in 0u8..16,
    ) {
        let level = level(level_index);
        let output = pa((frame_number << 12) & !(level.entry_size() - 1));
        let [ns, af, ng, dbm, contiguous, pxn, uxn] = flags;
        let descriptor = Descriptor::leaf(level, output)
            .unwrap()
            .with_attr_index(attr_index)
            .with_non_secure(ns)
            .with_access_permission(access_permission(ap))
            .with_shareability(shareability(sh))
            .with_accessed(af)
            .with_not_global(ng)
            .with_dirty_bit_modifier(dbm)
            .with_contiguous(contiguous)
            .with_privileged_execute_never(pxn)
            .with_unprivileged_execute_never(uxn)
            .with_software(software);
        prop_assert_eq!(descriptor.kind(level), if level == Level::L3 { DescriptorKind::Page } else { DescriptorKind::Block });
        prop_assert_eq!(descriptor.output_address(level), output);
        prop_assert_eq!(descriptor.attr_index(), attr_index);
        prop_assert_eq!(descriptor.non_secure(), ns);
        prop_assert_eq!(descriptor.access_permission(), access_permission(ap));
        prop_assert_eq!(descriptor.read_only(), ap & 0b10 != 0);
        prop_assert_eq!(descriptor.shareability(), shareability(sh));
        prop_assert_eq!(descriptor.accessed(), af);
        prop_assert_eq!(descriptor.not_global(), ng);
        prop_assert_eq!(descriptor.dirty_bit_modifier(), dbm);
        prop_assert_eq!(descriptor.contiguous(), contiguous);
        prop_assert_eq!(descriptor.privileged_execute_never(), pxn);
        prop_assert_eq!(descriptor.unprivileged_execute_never(), uxn);
        prop_assert_eq!(descriptor.software(), software);
        prop_assert_eq!(descriptor.sw_writable(), software & 1 != 0);
        prop_assert_eq!(descriptor.sw_dirty(), software & 2 != 0);
        prop_assert_eq!(descriptor.sw_available(), software >> 2);
        prop_assert!(descriptor.is_valid());
    }

    #[test]
    fn output_address_and_attributes_never_overlap(raw in any::<u64>(), frame_number in 0u64..(1 << 36), value in any::<u8>(), flag in any::<bool>()) {
        let output = pa(frame_number << 12);
        let descriptor = Descriptor::from_raw(raw);
        let moved = descriptor.with_output_address(output);
        prop_assert_eq!(moved.raw() & !OUTPUT_ADDRESS_MASK, raw & !OUTPUT_ADDRESS_MASK);
        prop_assert_eq!(moved.output_address(Level::L3), output);
        // Every attribute setter leaves the output address alone.
        let changed = [
            descriptor.with_attr_index(value),
            descriptor.with_non_secure(flag),
            descriptor.with_access_permission(access_permission(value)),
            descriptor.with_read_only(flag),
            descriptor.with_shareability(shareability(value)),
            descriptor.with_accessed(flag),
            descriptor.with_not_global(flag),
            descriptor.with_dirty_bit_modifier(flag),
            descriptor.with_contiguous(flag),
            descriptor.with_privileged_execute_never(flag),
            descriptor.with_unprivileged_execute_never(flag),
            descriptor.with_software(value),
            descriptor.with_sw_writable(flag),
            descriptor.with_sw_dirty(flag),
            descriptor.with_sw_available(value),
        ];
        for changed in changed {
            prop_assert_eq!(changed.raw() & OUTPUT_ADDRESS_MASK, raw & OUTPUT_ADDRESS_MASK);
            prop_assert_eq!(changed.raw() & 0b11, raw & 0b11);
        }
    }

    #[test]
    fn attributes_round_trip_or_are_rejected(
        kernel in 0u8..8,
        user in 0u8..8,
        memory in 0u8..3,
        global in any::<bool>(),
        tracking_index in 0u8..3,
        frame_number in 0u64..(1 << 36),
    ) {
        let (kernel, user) = (access(kernel), access(user));
        let scope = if global { Scope::Global } else { Scope::PerAsid };
        let tracking = tracking(tracking_index);
        match MemoryAttributes::new(kernel, user, memory_type(memory), scope) {
            Ok(attributes) => {
                let output = pa(frame_number << 12);
                let descriptor = attributes.apply(Descriptor::leaf(Level::L3, output).unwrap(), tracking);
                prop_assert_eq!(MemoryAttributes::from_descriptor(descriptor, tracking), Ok(attributes));
                prop_assert_eq!(descriptor.output_address(Level::L3), output);
                prop_assert!(descriptor.accessed());
                prop_assert!(!descriptor.violates_wxorx());
                prop_assert!(!tracking.is_dirty(descriptor) || tracking == DirtyTracking::Untracked);
            }
            Err(AttributeError::WriteAndExecute) => {
                prop_assert!((kernel.write || user.write) && (kernel.execute || user.execute));
            }
            Err(_) => prop_assert!(!((kernel.write || user.write) && (kernel.execute || user.execute))),
        }
    }

    #[test]
    fn swap_entries_round_trip(slot in 0u32..(1 << SWAP_SLOT_BITS), token in any::<u32>()) {
        let entry = SwapEntry::new(slot, token).unwrap();
        prop_assert_eq!((entry.slot(), entry.token()), (slot, token));
        let descriptor = entry.descriptor();
        prop_assert!(!descriptor.is_valid());
        prop_assert_ne!(descriptor, Descriptor::EMPTY);
        prop_assert_eq!(descriptor.kind(Level::L3), DescriptorKind::Invalid);
        prop_assert_eq!(SwapEntry::from_descriptor(descriptor), Some(entry));
    }

    #[test]
    fn large_slots_are_rejected(slot in (1u32 << SWAP_SLOT_BITS).., token in any::<u32>()) {
        prop_assert_eq!(SwapEntry::new(slot, token), Err(SlotTooLarge(slot)));
    }
}

#[test]
fn descriptors_that_are_not_swap_entries() {
    assert_eq!(SwapEntry::from_descriptor(Descriptor::EMPTY), None);
    assert_eq!(
        SwapEntry::from_descriptor(Descriptor::from_raw(0b100)),
        None
    );
    assert_eq!(SwapEntry::from_descriptor(Descriptor::from_raw(0b11)), None);
    assert_eq!(
        SwapEntry::from_descriptor(Descriptor::from_raw(0b10)),
        Some(SwapEntry::new(0, 0).unwrap())
    );
    assert_eq!(
        SlotTooLarge(1 << 28).to_string(),
        "swap slot 268435456 does not fit 28 bits"
    );
}

#[test]
fn kind_depends_on_level() {
    let table_or_page = Descriptor::from_raw(0b11);
    let block = Descriptor::from_raw(0b01);
    assert_eq!(table_or_page.kind(Level::L0), DescriptorKind::Table);
    assert_eq!(table_or_page.kind(Level::L2), DescriptorKind::Table);
    assert_eq!(table_or_page.kind(Level::L3), DescriptorKind::Page);
    assert_eq!(block.kind(Level::L0), DescriptorKind::Reserved);
    assert_eq!(block.kind(Level::L1), DescriptorKind::Block);
    assert_eq!(block.kind(Level::L2), DescriptorKind::Block);
    assert_eq!(block.kind(Level::L3), DescriptorKind::Reserved);
    assert_eq!(
        Descriptor::from_raw(0b10).kind(Level::L1),
        DescriptorKind::Invalid
    );
    assert_eq!(Descriptor::leaf(Level::L0, pa(0)), None);
    assert_eq!(Descriptor::leaf(Level::L2, pa(0x1000)), None);
    assert_eq!(
        Descriptor::leaf(Level::L2, pa(0x20_0000)).map(Descriptor::raw),
        Some(0x20_0001)
    );
    assert_eq!(
        Descriptor::table(super::frame(0x4000_3000)).raw(),
        0x4000_3003
    );
    assert_eq!(
        Descriptor::table(super::frame(0x4000_3000)).next_table(),
        super::frame(0x4000_3000)
    );
}

#[test]
fn encodings_match_the_architecture() {
    let code = MemoryAttributes::KERNEL_CODE.apply(
        Descriptor::leaf(Level::L3, pa(0x4008_0000)).unwrap(),
        DirtyTracking::Untracked,
    );
    // UXN | OA | nG=0 AF SH=11 AP=10 AttrIndx=1 page valid.
    assert_eq!(code.raw(), 0x0040_0000_4008_0787);
    let data = MemoryAttributes::USER_DATA.apply(
        Descriptor::leaf(Level::L3, pa(0x1234_5000)).unwrap(),
        DirtyTracking::Hardware,
    );
    // UXN PXN DBM | OA | nG AF SH=11 AP=11 (clean: read-only until the hardware clears AP[2]) AttrIndx=1.
    assert_eq!(data.raw(), 0x0068_0000_1234_5fc7);
    let device = MemoryAttributes::KERNEL_DEVICE.apply(
        Descriptor::leaf(Level::L2, pa(0x0800_0000)).unwrap(),
        DirtyTracking::Untracked,
    );
    // Block, AttrIndx=0, SH ignored (0), EL1 RW, PXN UXN.
    assert_eq!(device.raw(), 0x0060_0000_0800_0401);
    assert_eq!(MAIR_EL1_VALUE, 0x44_ff_04);
    assert_eq!(
        MemoryType::from_attr_index(MemoryType::NormalNonCacheable.attr_index()),
        Some(MemoryType::NormalNonCacheable)
    );
    assert_eq!(MemoryType::from_attr_index(3), None);
}

#[test]
fn each_invalid_combination_has_its_error() {
    use MemoryType::{Device, NormalWriteBack};
    use Scope::Global;
    let rwx = Access {
        read: true,
        write: true,
        execute: true,
    };
    let write_only = Access {
        read: false,
        write: true,
        execute: false,
    };
    let cases = [
        (
            rwx,
            Access::NONE,
            NormalWriteBack,
            AttributeError::WriteAndExecute,
        ),
        (
            Access::READ_WRITE,
            Access::EXECUTE,
            NormalWriteBack,
            AttributeError::WriteAndExecute,
        ),
        (
            Access::READ_EXECUTE,
            Access::READ_WRITE,
            NormalWriteBack,
            AttributeError::WriteAndExecute,
        ),
        (
            write_only,
            Access::NONE,
            NormalWriteBack,
            AttributeError::WriteWithoutRead,
        ),
        (
            Access::READ,
            write_only,
            NormalWriteBack,
            AttributeError::WriteWithoutRead,
        ),
        (
            Access::NONE,
            Access::READ,
            NormalWriteBack,
            AttributeError::KernelReadRequired,
        ),
        (
            Access::READ,
            Access::READ_WRITE,
            NormalWriteBack,
            AttributeError::SplitWritePermission,
        ),
        (
            Access::READ_WRITE,
            Access::READ,
            NormalWriteBack,
            AttributeError::SplitWritePermission,
        ),
        (
            Access::READ_EXECUTE,
            Access::NONE,
            Device,
            AttributeError::ExecutableDevice,
        ),
    ];
    for (kernel, user, memory, error) in cases {
        assert_eq!(
            MemoryAttributes::new(kernel, user, memory, Global),
            Err(error),
            "{kernel:?} {user:?} {memory:?}"
        );
    }
    // User execute-only is encodable (AP = EL1 RO, EL0 none; UXN clear).
    let execute_only = MemoryAttributes::new(
        Access::READ,
        Access::EXECUTE,
        NormalWriteBack,
        Scope::PerAsid,
    )
    .unwrap();
    let descriptor = execute_only.apply(
        Descriptor::leaf(Level::L3, pa(0)).unwrap(),
        DirtyTracking::Software,
    );
    assert_eq!(
        descriptor.access_permission(),
        AccessPermission::ReadOnlyEl1
    );
    assert!(!descriptor.unprivileged_execute_never() && descriptor.privileged_execute_never());
    // A descriptor with a foreign AttrIndx does not decode.
    assert_eq!(
        MemoryAttributes::from_descriptor(descriptor.with_attr_index(5), DirtyTracking::Software),
        Err(AttributeError::UnknownAttrIndex(5))
    );
    assert_eq!(
        AttributeError::WriteAndExecute.to_string(),
        "memory may not be both writable and executable (W^X)"
    );
}

#[test]
fn dirty_encodings_per_mode() {
    let leaf = MemoryAttributes::USER_DATA.apply(
        Descriptor::leaf(Level::L3, pa(0x5000)).unwrap(),
        DirtyTracking::Untracked,
    );
    // Untracked: writable means writable now, and counts as dirty; it cannot be cleaned.
    assert!(!leaf.read_only() && DirtyTracking::Untracked.is_dirty(leaf));
    assert_eq!(DirtyTracking::Untracked.mark_clean(leaf), None);
    for tracking in [DirtyTracking::Hardware, DirtyTracking::Software] {
        let clean = MemoryAttributes::USER_DATA
            .apply(Descriptor::leaf(Level::L3, pa(0x5000)).unwrap(), tracking);
        assert!(
            clean.read_only(),
            "{tracking:?}: writable-clean is read-only"
        );
        assert_eq!(
            clean.dirty_bit_modifier(),
            tracking == DirtyTracking::Hardware
        );
        assert_eq!(clean.sw_writable(), tracking == DirtyTracking::Software);
        assert!(tracking.write_intended(clean) && !tracking.is_dirty(clean));
        let dirty = tracking.mark_dirty(clean).unwrap();
        assert!(!dirty.read_only() && tracking.is_dirty(dirty));
        assert_eq!(tracking.mark_clean(dirty), Some(clean));
        // Removing write permission from a dirty page keeps SW_DIRTY.
        let read_only = MemoryAttributes::USER_RODATA
            .apply(Descriptor::leaf(Level::L3, pa(0x5000)).unwrap(), tracking);
        let carried = tracking.carry_dirty(dirty, read_only);
        assert!(carried.read_only() && carried.sw_dirty() && tracking.is_dirty(carried));
        assert_eq!(tracking.mark_dirty(carried), None);
        assert_eq!(tracking.mark_clean(carried), Some(read_only));
        // Giving it back keeps it dirty and writable.
        let writable_again = tracking.carry_dirty(carried, clean);
        assert!(!writable_again.read_only() && writable_again.sw_dirty());
        assert_eq!(tracking.carry_dirty(clean, read_only), read_only);
    }
}

#[test]
fn wxorx_checks_write_intent_and_both_levels() {
    let base = Descriptor::leaf(Level::L3, pa(0x7000)).unwrap();
    let kernel_rw_exec = base.with_access_permission(AccessPermission::ReadWriteEl1);
    assert!(kernel_rw_exec.violates_wxorx());
    assert!(
        !kernel_rw_exec
            .with_privileged_execute_never(true)
            .with_unprivileged_execute_never(true)
            .violates_wxorx()
    );
    // EL0-writable memory is never executable at EL1 (implicit PXN); EL0 execution still counts.
    let user_rw = base
        .with_access_permission(AccessPermission::ReadWriteEl1El0)
        .with_unprivileged_execute_never(true);
    assert!(!user_rw.violates_wxorx());
    assert!(
        user_rw
            .with_unprivileged_execute_never(false)
            .violates_wxorx()
    );
    // Read-only but writable on demand.
    let clean = base
        .with_access_permission(AccessPermission::ReadOnlyEl1El0)
        .with_privileged_execute_never(true);
    assert!(!clean.violates_wxorx());
    assert!(clean.with_dirty_bit_modifier(true).violates_wxorx());
    assert!(clean.with_sw_writable(true).violates_wxorx());
}

#[test]
fn fields_print_decoded() {
    let data = MemoryAttributes::USER_DATA.apply(
        Descriptor::leaf(Level::L3, pa(0x1234_5000)).unwrap(),
        DirtyTracking::Hardware,
    );
    assert_eq!(
        DescriptorFields {
            descriptor: data,
            level: Level::L3
        }
        .to_string(),
        "page -> 0x12345000 AttrIndx=1(Normal WB) AP=EL1 RO, EL0 RO SH=ISH AF nG DBM PXN UXN"
    );
    let table = Descriptor::table(super::frame(0x4000_2000));
    assert_eq!(
        DescriptorFields {
            descriptor: table,
            level: Level::L1
        }
        .to_string(),
        "table -> 0x40002000"
    );
    let swap = SwapEntry::new(9, 0x55).unwrap().descriptor();
    assert_eq!(
        DescriptorFields {
            descriptor: swap,
            level: Level::L3
        }
        .to_string(),
        "invalid, swap entry slot=9 token=0x55"
    );
    assert_eq!(
        DescriptorFields {
            descriptor: Descriptor::EMPTY,
            level: Level::L0
        }
        .to_string(),
        "empty"
    );
    assert_eq!(
        DescriptorFields {
            descriptor: Descriptor::from_raw(0b01),
            level: Level::L0
        }
        .to_string(),
        "reserved encoding (translation fault)"
    );
}
