//! map / unmap / protect / translate / walk, break-before-make, splitting and swap entries.

use super::{ASID, GIB, KIB, MIB, frame, kernel_space, pa, page, user_space, va};
use crate::sim::{RecordingTlb, SimMemory, TlbOp};
use crate::{
    AddressSpace, Descriptor, DirtyTracking, Granularity, Level, MapError, MemoryAttributes,
    PAGE_SIZE, Scope, Space, SwapEntry, Unmapped, VirtAddr,
};
use std::ops::ControlFlow;

const DATA: MemoryAttributes = MemoryAttributes::USER_DATA;
const RODATA: MemoryAttributes = MemoryAttributes::USER_RODATA;

/// `(va, pa, level)` of every leaf in the user half.
fn leaves(space: &super::TestSpace<'_>) -> Vec<(u64, u64, Level)> {
    let mut found = Vec::new();
    space
        .for_each_leaf(va(0), crate::HALF_SIZE, |leaf| {
            found.push((leaf.va.as_u64(), leaf.pa.as_u64(), leaf.level));
            ControlFlow::Continue(())
        })
        .unwrap();
    found
}

fn unmap_all(space: &mut super::TestSpace<'_>) -> Vec<Unmapped> {
    let mut removed = Vec::new();
    space
        .unmap(va(0), crate::HALF_SIZE, |item| removed.push(item))
        .unwrap();
    removed
}

#[test]
fn pages_translate_to_their_frames() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space
        .map(
            va(0x40_0000),
            pa(0x8000_0000),
            3 * PAGE_SIZE,
            DATA,
            Granularity::Pages,
        )
        .unwrap();
    for index in 0..3 {
        let translation = space
            .translate(va(0x40_0000 + index * PAGE_SIZE + 0x123))
            .unwrap();
        assert_eq!(translation.pa, pa(0x8000_0000 + index * PAGE_SIZE + 0x123));
        assert_eq!(translation.leaf.level, Level::L3);
        assert_eq!(translation.leaf.va, va(0x40_0000 + index * PAGE_SIZE));
        assert_eq!(translation.leaf.attributes(), Ok(DATA));
        assert!(translation.leaf.is_young() && !translation.leaf.is_dirty());
    }
    assert_eq!(space.translate(va(0x40_3000)), None);
    assert_eq!(space.translate(va(0x3f_f000)), None);
    assert_eq!(
        space.translate(va(0xffff_0000_0040_0000)),
        None,
        "other half"
    );
    // Root + L1 + L2 + L3 tables; new entries only need publishing, no invalidation.
    assert_eq!(memory.allocated(), 4);
    assert_eq!(tlb.ops(), [TlbOp::Publish]);
}

#[test]
fn aligned_ranges_use_blocks_when_allowed() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    let len = GIB + 2 * MIB + 4 * KIB;
    space
        .map(va(GIB), pa(3 * GIB), len, DATA, Granularity::AllowBlocks)
        .unwrap();
    assert_eq!(
        leaves(&space),
        [
            (GIB, 3 * GIB, Level::L1),
            (2 * GIB, 4 * GIB, Level::L2),
            (2 * GIB + 2 * MIB, 4 * GIB + 2 * MIB, Level::L3)
        ]
    );
    // Block boundaries: last byte of each leaf and first byte after.
    let check = |addr: u64, expected: Option<(u64, Level)>| {
        let found = space
            .translate(va(addr))
            .map(|t| (t.pa.as_u64(), t.leaf.level));
        assert_eq!(found, expected, "{addr:#x}");
    };
    check(GIB, Some((3 * GIB, Level::L1)));
    check(2 * GIB - 1, Some((4 * GIB - 1, Level::L1)));
    check(2 * GIB, Some((4 * GIB, Level::L2)));
    check(
        2 * GIB + 2 * MIB - 1,
        Some((4 * GIB + 2 * MIB - 1, Level::L2)),
    );
    check(
        2 * GIB + 2 * MIB + 4 * KIB - 1,
        Some((4 * GIB + 2 * MIB + 4 * KIB - 1, Level::L3)),
    );
    check(2 * GIB + 2 * MIB + 4 * KIB, None);
    check(GIB - 1, None);
    // Pages only: the same 2 MiB needs a full level-3 table.
    space
        .map(va(8 * GIB), pa(8 * GIB), 2 * MIB, DATA, Granularity::Pages)
        .unwrap();
    assert_eq!(
        leaves(&space)
            .iter()
            .filter(|leaf| leaf.0 >= 8 * GIB)
            .count(),
        512
    );
}

#[test]
fn misaligned_physical_addresses_fall_back_to_pages() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space
        .map(
            va(2 * MIB),
            pa(2 * MIB + PAGE_SIZE),
            2 * MIB,
            DATA,
            Granularity::AllowBlocks,
        )
        .unwrap();
    let found = leaves(&space);
    assert_eq!(found.len(), 512);
    assert!(found.iter().all(|leaf| leaf.2 == Level::L3));
    assert_eq!(found[511], (4 * MIB - PAGE_SIZE, 4 * MIB, Level::L3));
}

#[test]
fn bad_requests_are_refused_without_allocating() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    let pages = Granularity::Pages;
    assert_eq!(
        space.map(va(0x1001), pa(0x1000), PAGE_SIZE, DATA, pages),
        Err(MapError::Misaligned { value: 0x1001 })
    );
    assert_eq!(
        space.map(va(0x1000), pa(0x1001), PAGE_SIZE, DATA, pages),
        Err(MapError::Misaligned { value: 0x1001 })
    );
    assert_eq!(
        space.map(va(0x1000), pa(0x1000), 100, DATA, pages),
        Err(MapError::Misaligned { value: 100 })
    );
    assert_eq!(
        space.map(va(0xffff_0000_0000_0000), pa(0), PAGE_SIZE, DATA, pages),
        Err(MapError::NotCanonical {
            addr: 0xffff_0000_0000_0000
        })
    );
    let top = crate::HALF_SIZE - PAGE_SIZE;
    assert_eq!(
        space.map(va(top), pa(0), 2 * PAGE_SIZE, DATA, pages),
        Err(MapError::NotCanonical {
            addr: crate::HALF_SIZE + PAGE_SIZE
        })
    );
    assert_eq!(
        space.map(va(0), pa(top), 2 * PAGE_SIZE, DATA, pages),
        Err(MapError::PhysicalOutOfRange {
            start: top,
            len: 2 * PAGE_SIZE
        })
    );
    assert_eq!(
        space.map(
            va(0),
            pa(0),
            PAGE_SIZE,
            MemoryAttributes::KERNEL_DATA,
            pages
        ),
        Err(MapError::ScopeMismatch {
            required: Scope::PerAsid
        })
    );
    assert_eq!(memory.allocated(), 1, "only the root");
    // The last page of the half is fine.
    space.map(va(top), pa(top), PAGE_SIZE, DATA, pages).unwrap();
    assert_eq!(
        space.translate(va(crate::HALF_SIZE - 1)).map(|t| t.pa),
        Some(pa(crate::HALF_SIZE - 1))
    );
    // A zero-length request does nothing.
    space.map(va(0), pa(0), 0, DATA, pages).unwrap();
    assert_eq!(leaves(&space).len(), 1);

    let kernel_memory = SimMemory::new(4);
    let kernel_tlb = RecordingTlb::new();
    let mut kernel = kernel_space(&kernel_memory, &kernel_tlb);
    let kernel_va = va(0xffff_0000_4000_0000);
    assert_eq!(
        kernel.map(kernel_va, pa(0), PAGE_SIZE, DATA, pages),
        Err(MapError::UserAccessInKernelSpace)
    );
    let per_asid_kernel = MemoryAttributes::new(
        crate::Access::READ,
        crate::Access::NONE,
        crate::MemoryType::NormalWriteBack,
        Scope::PerAsid,
    )
    .unwrap();
    assert_eq!(
        kernel.map(kernel_va, pa(0), PAGE_SIZE, per_asid_kernel, pages),
        Err(MapError::ScopeMismatch {
            required: Scope::Global
        })
    );
    assert_eq!(
        kernel.map(
            va(0x1000),
            pa(0),
            PAGE_SIZE,
            MemoryAttributes::KERNEL_DATA,
            pages
        ),
        Err(MapError::NotCanonical { addr: 0x1000 })
    );
    assert_eq!(
        MapError::ScopeMismatch {
            required: Scope::Global
        }
        .to_string(),
        "this address space only takes Global mappings"
    );
}

#[test]
fn overlapping_map_fails_and_rolls_back() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space.map_page(page(0x7000), frame(0x9000), DATA).unwrap();
    let tables = memory.allocated();
    tlb.clear();
    assert_eq!(
        space.map(
            va(0x5000),
            pa(0x1_0000),
            4 * PAGE_SIZE,
            DATA,
            Granularity::Pages
        ),
        Err(MapError::AlreadyMapped { va: va(0x7000) })
    );
    assert_eq!(
        leaves(&space),
        [(0x7000, 0x9000, Level::L3)],
        "0x5000 and 0x6000 were removed again"
    );
    assert_eq!(memory.allocated(), tables);
    // The two pages mapped before the conflict were invalidated when removed.
    assert_eq!(
        tlb.invalidations(),
        [
            TlbOp::Va {
                va: 0x5000,
                asid: 7
            },
            TlbOp::Va {
                va: 0x6000,
                asid: 7
            }
        ]
    );
    // A page inside a block, and a block over a populated table.
    space
        .map(
            va(4 * MIB),
            pa(4 * MIB),
            2 * MIB,
            DATA,
            Granularity::AllowBlocks,
        )
        .unwrap();
    assert_eq!(
        space.map_page(page(5 * MIB), frame(0), DATA),
        Err(MapError::AlreadyMapped { va: va(5 * MIB) })
    );
    assert_eq!(
        space.map(va(0), pa(0), 2 * MIB, DATA, Granularity::AllowBlocks),
        Err(MapError::AlreadyMapped { va: va(0) })
    );
    assert_eq!(
        MapError::AlreadyMapped { va: va(0x7000) }.to_string(),
        "VA 0x7000 is already mapped"
    );
}

#[test]
fn running_out_of_memory_midway_leaves_nothing_behind() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    // Root + L1 + L2 + first L3 fit; the second L3 table (past the 2 MiB boundary) does not.
    memory.set_limit(4);
    let start = 2 * MIB - 2 * PAGE_SIZE;
    assert_eq!(
        space.map(
            va(start),
            pa(0x10_0000),
            4 * PAGE_SIZE,
            DATA,
            Granularity::Pages
        ),
        Err(MapError::OutOfMemory)
    );
    assert!(leaves(&space).is_empty());
    assert_eq!(
        memory.allocated(),
        1,
        "every table made by the failed call is freed"
    );
    // Failing on the very first table too.
    memory.set_limit(2);
    assert_eq!(
        space.map_page(page(0x1000), frame(0x1000), DATA),
        Err(MapError::OutOfMemory)
    );
    assert_eq!(memory.allocated(), 1);
    memory.set_limit(1);
    let none_left = AddressSpace::new(&memory, &tlb, Space::User(ASID), DirtyTracking::Software);
    assert_eq!(none_left.err(), Some(MapError::OutOfMemory));
    assert_eq!(
        MapError::OutOfMemory.to_string(),
        "out of memory for translation tables"
    );
}

#[test]
fn unmap_returns_frames_after_the_flush_and_frees_tables() {
    let memory = SimMemory::new(32);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    let base = 512 * GIB;
    space
        .map(
            va(base),
            pa(0x8000_0000),
            10 * PAGE_SIZE,
            DATA,
            Granularity::Pages,
        )
        .unwrap();
    assert_eq!(memory.allocated(), 4);
    tlb.clear();
    let mut returned = Vec::new();
    space
        .unmap(va(base), 10 * PAGE_SIZE, |item| {
            // Every frame comes back only once its TLB entries are gone.
            returned.push((item, tlb.invalidations().len()));
        })
        .unwrap();
    assert_eq!(returned.len(), 10);
    for (index, (item, flushes_before)) in returned.iter().enumerate() {
        let Unmapped::Leaf(leaf) = item else {
            panic!("{item:?}")
        };
        assert_eq!(
            (leaf.va, leaf.pa),
            (
                va(base + index as u64 * PAGE_SIZE),
                pa(0x8000_0000 + index as u64 * PAGE_SIZE)
            )
        );
        assert_eq!(*flushes_before, 13);
    }
    // 10 pages, then the level-3, level-2 and level-1 tables (all at `base`): 13 ≤ 16 by-VA flushes.
    let mut expected: Vec<TlbOp> = (0..10)
        .map(|i| TlbOp::Va {
            va: base + i * PAGE_SIZE,
            asid: 7,
        })
        .collect();
    expected.extend([TlbOp::Va { va: base, asid: 7 }; 3]);
    assert_eq!(tlb.invalidations(), expected);
    assert_eq!(memory.allocated(), 1);
    assert!(leaves(&space).is_empty());
}

#[test]
fn large_unmaps_flush_by_asid_per_batch() {
    let memory = SimMemory::new(32);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space
        .map(va(0), pa(0), 100 * PAGE_SIZE, DATA, Granularity::Pages)
        .unwrap();
    tlb.clear();
    let mut count = 0;
    space.unmap(va(0), 100 * PAGE_SIZE, |_| count += 1).unwrap();
    assert_eq!(count, 100);
    // 100 leaves + 3 tables in batches of 64 and 39: each over the per-page limit.
    assert_eq!(tlb.invalidations(), [TlbOp::Asid(7), TlbOp::Asid(7)]);
    assert_eq!(memory.allocated(), 1);
}

#[test]
fn unmapping_holes_is_harmless() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space.unmap(va(0), GIB, |item| panic!("{item:?}")).unwrap();
    assert!(tlb.ops().is_empty());
    space.map_page(page(0x3000), frame(0x3000), DATA).unwrap();
    space.map_page(page(0x5000), frame(0x5000), DATA).unwrap();
    let mut removed = Vec::new();
    space
        .unmap(va(0x2000), 3 * PAGE_SIZE, |item| removed.push(item))
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(leaves(&space), [(0x5000, 0x5000, Level::L3)]);
    assert_eq!(
        memory.allocated(),
        4,
        "the level-3 table still holds 0x5000"
    );
    assert_eq!(
        space.unmap(va(0x2001), PAGE_SIZE, |_| {}),
        Err(MapError::Misaligned { value: 0x2001 })
    );
}

#[test]
fn partial_blocks_are_refused_whole_blocks_removed() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space
        .map(
            va(2 * MIB),
            pa(6 * MIB),
            4 * MIB,
            DATA,
            Granularity::AllowBlocks,
        )
        .unwrap();
    let in_the_way = MapError::BlockInTheWay {
        va: va(4 * MIB),
        level: Level::L2,
    };
    assert_eq!(space.unmap(va(2 * MIB), 3 * MIB, |_| {}), Err(in_the_way));
    assert_eq!(space.unmap(va(5 * MIB), 2 * MIB, |_| {}), Err(in_the_way));
    assert_eq!(
        space.protect(va(4 * MIB), PAGE_SIZE, RODATA),
        Err(in_the_way)
    );
    assert_eq!(leaves(&space).len(), 2, "nothing was removed");
    let mut removed = Vec::new();
    space
        .unmap(va(0), 8 * MIB, |item| removed.push(item))
        .unwrap();
    let sizes: Vec<u64> = removed
        .iter()
        .map(|item| match item {
            Unmapped::Leaf(leaf) => leaf.size(),
            Unmapped::Swap { .. } => 0,
        })
        .collect();
    assert_eq!(sizes, [2 * MIB, 2 * MIB]);
    assert_eq!(memory.allocated(), 1);
    assert_eq!(
        MapError::BlockInTheWay {
            va: va(4 * MIB),
            level: Level::L2
        }
        .to_string(),
        "the range covers part of the level-2 block at VA 0x400000; split it first"
    );
}

#[test]
fn protect_changes_permissions_in_place_and_keeps_state() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::observing(&memory);
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space
        .map(
            va(0x10_0000),
            pa(0x20_0000),
            3 * PAGE_SIZE,
            DATA,
            Granularity::Pages,
        )
        .unwrap();
    // One page dirty, one old.
    assert_eq!(
        space.resolve_write_fault(va(0x10_0000)),
        Ok(crate::FaultOutcome::Resolved)
    );
    assert_eq!(space.test_and_clear_young(va(0x10_1000)), Ok(true));
    tlb.clear();
    // A hole at 0x10_3000 is skipped.
    assert_eq!(space.protect(va(0x10_0000), 4 * PAGE_SIZE, RODATA), Ok(3));
    let flushed: Vec<u64> = (0..3).map(|i| 0x10_0000 + i * PAGE_SIZE).collect();
    assert_eq!(
        tlb.invalidations(),
        flushed
            .iter()
            .map(|&va| TlbOp::Va { va, asid: 7 })
            .collect::<Vec<_>>()
    );
    // Permission-only: written in place, so the flush saw the new (valid) entry.
    assert!(
        tlb.entries_at_flush()
            .iter()
            .all(|&(_, raw)| Descriptor::from_raw(raw).is_valid())
    );
    let leaf = |addr| space.translate(va(addr)).unwrap().leaf;
    assert_eq!(leaf(0x10_0000).attributes(), Ok(RODATA));
    assert!(leaf(0x10_0000).is_dirty(), "SW_DIRTY keeps the write");
    assert!(leaf(0x10_0000).descriptor.sw_dirty());
    assert!(!leaf(0x10_1000).is_young(), "AF is kept");
    assert_eq!(leaf(0x10_2000).pa, pa(0x20_2000));
    // Same attributes again: nothing changes, nothing is flushed.
    tlb.clear();
    assert_eq!(space.protect(va(0x10_0000), 3 * PAGE_SIZE, RODATA), Ok(0));
    assert!(tlb.invalidations().is_empty());
    assert_eq!(
        space.protect(va(0x10_0000), PAGE_SIZE, MemoryAttributes::KERNEL_DATA),
        Err(MapError::ScopeMismatch {
            required: Scope::PerAsid
        })
    );
}

#[test]
fn memory_type_changes_break_before_make() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::observing(&memory);
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space.map_page(page(0x4000), frame(0x8000), DATA).unwrap();
    let non_cacheable = MemoryAttributes::new(
        crate::Access::READ_WRITE,
        crate::Access::READ_WRITE,
        crate::MemoryType::NormalNonCacheable,
        Scope::PerAsid,
    )
    .unwrap();
    tlb.clear();
    assert_eq!(space.protect(va(0x4000), PAGE_SIZE, non_cacheable), Ok(1));
    // At the flush the entry was invalid; afterwards it holds the new attributes.
    assert_eq!(tlb.entries_at_flush(), [(0x4000, 0)]);
    assert_eq!(
        space.translate(va(0x4000)).unwrap().leaf.attributes(),
        Ok(non_cacheable)
    );
    assert_eq!(
        tlb.invalidations(),
        [TlbOp::Va {
            va: 0x4000,
            asid: 7
        }]
    );
}

#[test]
fn replace_page_breaks_before_making() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::observing(&memory);
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space.map_page(page(0x4000), frame(0x8000), RODATA).unwrap();
    tlb.clear();
    let old = space
        .replace_page(page(0x4000), frame(0xa000), DATA)
        .unwrap();
    assert_eq!((old.pa, old.attributes()), (pa(0x8000), Ok(RODATA)));
    assert_eq!(tlb.entries_at_flush(), [(0x4000, 0)]);
    assert_eq!(
        tlb.ops(),
        [
            TlbOp::Va {
                va: 0x4000,
                asid: 7
            },
            TlbOp::Publish
        ]
    );
    let now = space.translate(va(0x4000)).unwrap();
    assert_eq!((now.pa, now.leaf.attributes()), (pa(0xa000), Ok(DATA)));
    assert_eq!(
        space.replace_page(page(0x5000), frame(0xa000), DATA),
        Err(MapError::NotMapped { va: va(0x5000) })
    );
    space
        .map(va(2 * MIB), pa(0), 2 * MIB, DATA, Granularity::AllowBlocks)
        .unwrap();
    assert_eq!(
        space.replace_page(page(2 * MIB + PAGE_SIZE), frame(0), DATA),
        Err(MapError::BlockInTheWay {
            va: va(2 * MIB),
            level: Level::L2
        })
    );
}

#[test]
fn split_block_keeps_the_mapping_and_state() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::observing(&memory);
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space
        .map(va(GIB), pa(2 * GIB), GIB, DATA, Granularity::AllowBlocks)
        .unwrap();
    assert_eq!(space.test_and_clear_young(va(GIB)), Ok(true));
    tlb.clear();
    assert_eq!(space.split_block(va(GIB + 5 * MIB)), Ok(Level::L2));
    assert_eq!(
        tlb.entries_at_flush(),
        [(GIB, 0)],
        "break, flush, then make"
    );
    let found = leaves(&space);
    assert_eq!(found.len(), 512);
    assert!(found.iter().enumerate().all(|(i, leaf)| {
        let i = i as u64;
        *leaf == (GIB + i * 2 * MIB, 2 * GIB + i * 2 * MIB, Level::L2)
    }));
    let block = space.translate(va(GIB + 3 * MIB)).unwrap().leaf;
    assert_eq!(block.attributes(), Ok(DATA));
    assert!(!block.is_young(), "AF state carried to the pieces");
    // Down to pages.
    assert_eq!(space.split_block(va(GIB + 3 * MIB)), Ok(Level::L3));
    let piece = space.translate(va(GIB + 3 * MIB + 0x1234)).unwrap();
    assert_eq!(
        (piece.pa, piece.leaf.level),
        (pa(2 * GIB + 3 * MIB + 0x1234), Level::L3)
    );
    assert_eq!(
        space.split_block(va(GIB + 3 * MIB)),
        Err(MapError::NotABlock {
            va: va(GIB + 3 * MIB)
        })
    );
    assert_eq!(
        space.split_block(va(0)),
        Err(MapError::NotMapped { va: va(0) })
    );
    // Without memory for the new table the block stays as it was.
    memory.set_limit(memory.allocated());
    assert_eq!(
        space.split_block(va(GIB + 8 * MIB)),
        Err(MapError::OutOfMemory)
    );
    assert_eq!(
        space.translate(va(GIB + 8 * MIB)).unwrap().leaf.level,
        Level::L2
    );
}

#[test]
fn swap_entries_replace_and_restore_pages() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::observing(&memory);
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space.map_page(page(0x6000), frame(0x9000), DATA).unwrap();
    assert_eq!(
        space.resolve_write_fault(va(0x6000)),
        Ok(crate::FaultOutcome::Resolved)
    );
    let entry = SwapEntry::new(42, 0x1_2345).unwrap();
    tlb.clear();
    let evicted = space.swap_out(page(0x6000), entry).unwrap();
    assert_eq!(evicted.pa, pa(0x9000));
    assert!(evicted.is_dirty() && evicted.is_young());
    assert_eq!(tlb.entries_at_flush(), [(0x6000, entry.descriptor().raw())]);
    assert_eq!(space.translate(va(0x6000)), None);
    assert_eq!(space.swap_entry(page(0x6000)), Some(entry));
    assert_eq!(space.swap_entry(page(0x7000)), None);
    // The entry can be rewritten in place (the shadow token comes last); only swap entries.
    let final_entry = SwapEntry::new(42, 0xdead_beef).unwrap();
    assert!(space.set_swap_entry(page(0x6000), final_entry));
    assert_eq!(space.swap_entry(page(0x6000)), Some(final_entry));
    assert!(space.set_swap_entry(page(0x6000), entry));
    assert!(!space.set_swap_entry(page(0x7000), entry));
    assert!(!space.set_swap_entry(page(0xffff_f000), entry));
    assert_eq!(
        space.map_page(page(0x6000), frame(0xb000), DATA),
        Err(MapError::AlreadyMapped { va: va(0x6000) })
    );
    assert_eq!(
        space.swap_in(page(0x7000), frame(0xb000), DATA),
        Err(MapError::NotSwapped { va: va(0x7000) })
    );
    assert_eq!(space.swap_in(page(0x6000), frame(0xb000), DATA), Ok(entry));
    let back = space.translate(va(0x6000)).unwrap();
    assert_eq!(back.pa, pa(0xb000));
    assert!(!back.leaf.is_dirty());
    assert_eq!(
        space.swap_in(page(0x6000), frame(0xb000), DATA),
        Err(MapError::AlreadyMapped { va: va(0x6000) })
    );
    assert_eq!(
        space.swap_out(page(0x7000), entry),
        Err(MapError::NotMapped { va: va(0x7000) })
    );
    // Unmap reports swap entries too and frees the emptied tables.
    space.swap_out(page(0x6000), entry).unwrap();
    assert_eq!(
        unmap_all(&mut space),
        [Unmapped::Swap {
            page: page(0x6000),
            entry
        }]
    );
    assert_eq!(memory.allocated(), 1);
    assert_eq!(space.swap_entry(page(0x6000)), None);
}

#[test]
fn ttbr_holds_root_and_asid() {
    let memory = SimMemory::new(4);
    let tlb = RecordingTlb::new();
    let user = user_space(&memory, &tlb, DirtyTracking::Software);
    assert_eq!(user.ttbr(), user.root().start().as_u64() | 7 << 48);
    assert_eq!(user.space(), Space::User(ASID));
    let kernel = kernel_space(&memory, &tlb);
    assert_eq!(kernel.ttbr(), kernel.root().start().as_u64());
    assert_eq!(kernel.dirty_tracking(), DirtyTracking::Untracked);
}

#[test]
fn kernel_space_flushes_all_asids() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut kernel = kernel_space(&memory, &tlb);
    let base = 0xffff_0000_4000_0000;
    kernel
        .map(
            va(base),
            pa(0x4000_0000),
            20 * PAGE_SIZE,
            MemoryAttributes::KERNEL_DATA,
            Granularity::Pages,
        )
        .unwrap();
    assert_eq!(
        kernel.translate(va(base + 0x1234)).map(|t| t.pa),
        Some(pa(0x4000_1234))
    );
    tlb.clear();
    kernel
        .protect(va(base), PAGE_SIZE, MemoryAttributes::KERNEL_RODATA)
        .unwrap();
    assert_eq!(tlb.invalidations(), [TlbOp::VaAllAsids { va: base }]);
    tlb.clear();
    kernel
        .protect(va(base), 20 * PAGE_SIZE, MemoryAttributes::KERNEL_RODATA)
        .unwrap();
    assert_eq!(
        tlb.invalidations(),
        [TlbOp::All],
        "19 changed pages are over the per-page limit"
    );
    drop(kernel);
    assert_eq!(memory.allocated(), 0);
}

#[test]
fn walk_prints_each_level() {
    let memory = SimMemory::new(8);
    let tlb = RecordingTlb::new();
    let mut kernel = kernel_space(&memory, &tlb);
    kernel
        .map(
            va(0xffff_0000_4008_0000),
            pa(0x4008_0000),
            PAGE_SIZE,
            MemoryAttributes::KERNEL_CODE,
            Granularity::Pages,
        )
        .unwrap();
    let walk = kernel.walk(va(0xffff_0000_4008_0123));
    assert_eq!(walk.steps.len(), 4);
    assert_eq!(walk.steps[3].descriptor.raw(), 0x0040_0000_4008_0787);
    assert_eq!(
        walk.to_string(),
        "walk of VA 0xffff000040080123:\n\
         \x20 L0[  0] table 0x40000000: 0x0000000040001003 table -> 0x40001000\n\
         \x20 L1[  1] table 0x40001000: 0x0000000040002003 table -> 0x40002000\n\
         \x20 L2[  0] table 0x40002000: 0x0000000040003003 table -> 0x40003000\n\
         \x20 L3[128] table 0x40003000: 0x0040000040080787 page -> 0x40080000 AttrIndx=1(Normal WB) AP=EL1 RO, EL0 none SH=ISH AF UXN"
    );
    // A hole stops the walk at the first invalid entry.
    let hole = kernel.walk(va(0xffff_8000_0000_0000));
    assert_eq!(hole.steps.len(), 1);
    assert_eq!(
        hole.steps[0].to_string(),
        "L0[256] table 0x40000000: 0x0000000000000000 empty"
    );
    assert_eq!(
        kernel.walk(va(0x1000)).to_string(),
        "VA 0x1000 is not in this address space's half"
    );
}

#[test]
fn dropping_frees_every_table() {
    let memory = SimMemory::new(32);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    for addr in [0, 3 * GIB, 600 * GIB, 0x7fff_ffff_f000] {
        space.map_page(page(addr), frame(0x1000), DATA).unwrap();
    }
    assert_eq!(memory.allocated(), 1 + 3 + 2 + 3 + 3);
    tlb.clear();
    drop(space);
    assert_eq!(memory.allocated(), 0);
    assert_eq!(tlb.invalidations(), [TlbOp::Asid(7)]);
}

#[test]
fn leaf_iteration_covers_overlapping_blocks_and_stops_on_request() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space
        .map(
            va(2 * MIB),
            pa(2 * MIB),
            2 * MIB,
            DATA,
            Granularity::AllowBlocks,
        )
        .unwrap();
    space
        .map(va(4 * MIB), pa(0), 3 * PAGE_SIZE, DATA, Granularity::Pages)
        .unwrap();
    let mut seen = Vec::new();
    space
        .for_each_leaf(va(3 * MIB), MIB + 2 * PAGE_SIZE, |leaf| {
            seen.push(leaf.va.as_u64());
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(
        seen,
        [2 * MIB, 4 * MIB, 4 * MIB + PAGE_SIZE],
        "the block overlapping the start is included"
    );
    let mut first = Vec::new();
    space
        .for_each_leaf(va(0), 8 * MIB, |leaf| {
            first.push(leaf.table);
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        space.for_each_leaf(
            VirtAddr::new(0xffff_0000_0000_0000).unwrap(),
            PAGE_SIZE,
            |_| ControlFlow::Continue(())
        ),
        Err(MapError::NotCanonical {
            addr: 0xffff_0000_0000_0000
        })
    );
}
