//! Access-flag harvesting, look-around, dirty tracking, fault fix-ups and the W^X audit.

use super::{MIB, frame, pa, page, user_space, va};
use crate::sim::{RecordingTlb, SimMemory, TlbOp};
use crate::{
    AgingSummary, AgingVisitor, Descriptor, DirtyTracking, FaultOutcome, Granularity, Leaf,
    MapError, MemoryAttributes, PAGE_SIZE, TableId,
};

const DATA: MemoryAttributes = MemoryAttributes::USER_DATA;

/// Records young leaves and skips the tables it is told to.
struct Recorder {
    skip: Vec<TableId>,
    young: Vec<(u64, TableId)>,
    /// Finished tables: (table, scanned, young).
    done: Vec<(TableId, usize, usize)>,
}

impl AgingVisitor for Recorder {
    fn scan_leaf_table(&mut self, table: TableId) -> bool {
        !self.skip.contains(&table)
    }

    fn young(&mut self, leaf: &Leaf) {
        assert!(
            leaf.is_young(),
            "the reported descriptor is the one before clearing"
        );
        self.young.push((leaf.va.as_u64(), leaf.table));
    }

    fn leaf_table_done(&mut self, table: TableId, scanned: usize, young: usize) {
        self.done.push((table, scanned, young));
    }
}

fn pages_young(space: &super::TestSpace<'_>, start: u64, count: u64) -> Vec<bool> {
    (0..count)
        .map(|i| {
            space
                .translate(va(start + i * PAGE_SIZE))
                .unwrap()
                .leaf
                .is_young()
        })
        .collect()
}

#[test]
fn single_test_and_clear_flushes_only_young_pages() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space.map_page(page(0x3000), frame(0x3000), DATA).unwrap();
    tlb.clear();
    assert_eq!(space.test_and_clear_young(va(0x3000)), Ok(true));
    assert_eq!(space.test_and_clear_young(va(0x3fff)), Ok(false));
    assert_eq!(
        tlb.ops(),
        [TlbOp::Va {
            va: 0x3000,
            asid: 7
        }]
    );
    assert_eq!(
        space.test_and_clear_young(va(0x4000)),
        Err(MapError::NotMapped { va: va(0x4000) })
    );
    assert_eq!(
        MapError::NotMapped { va: va(0x4000) }.to_string(),
        "VA 0x4000 is not mapped"
    );
}

#[test]
fn range_harvest_batches_one_flush() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space
        .map(
            va(0x10_0000),
            pa(0x10_0000),
            40 * PAGE_SIZE,
            DATA,
            Granularity::Pages,
        )
        .unwrap();
    // Make all but 5 pages old.
    let mut all_old = Recorder {
        skip: Vec::new(),
        young: Vec::new(),
        done: Vec::new(),
    };
    space
        .test_and_clear_young_range(va(0x10_0000), 40 * PAGE_SIZE, &mut all_old)
        .unwrap();
    for i in [0, 7, 8, 20, 39] {
        assert_eq!(
            space.resolve_access_fault(va(0x10_0000 + i * PAGE_SIZE)),
            Ok(FaultOutcome::Resolved)
        );
    }
    tlb.clear();
    let mut recorder = Recorder {
        skip: Vec::new(),
        young: Vec::new(),
        done: Vec::new(),
    };
    let summary = space
        .test_and_clear_young_range(va(0x10_0000), 40 * PAGE_SIZE, &mut recorder)
        .unwrap();
    assert_eq!(
        summary,
        AgingSummary {
            scanned: 40,
            young: 5,
            skipped_tables: 0
        }
    );
    let young: Vec<u64> = recorder.young.iter().map(|&(addr, _)| addr).collect();
    let expected: Vec<u64> = [0, 7, 8, 20, 39]
        .iter()
        .map(|i| 0x10_0000 + i * PAGE_SIZE)
        .collect();
    assert_eq!(young, expected);
    // Each young leaf names its level-3 table: the one the walk goes through.
    let table = space.walk(va(0x10_0000)).steps[3].table;
    assert!(recorder.young.iter().all(|&(_, id)| id == TableId(table)));
    assert_eq!(recorder.done, [(TableId(table), 40, 5)]);
    // Few young pages: invalidated one by one, at the end.
    assert_eq!(
        tlb.invalidations(),
        expected
            .iter()
            .map(|&va| TlbOp::Va { va, asid: 7 })
            .collect::<Vec<_>>()
    );
    assert_eq!(pages_young(&space, 0x10_0000, 40), vec![false; 40]);
    // Many young pages: one ASID-wide flush.
    for i in 0..40 {
        space
            .resolve_access_fault(va(0x10_0000 + i * PAGE_SIZE))
            .unwrap();
    }
    tlb.clear();
    let mut count = 0;
    let summary = space
        .test_and_clear_young_range(va(0x10_0000), 40 * PAGE_SIZE, &mut |_: &Leaf| count += 1)
        .unwrap();
    assert_eq!((summary.young, count), (40, 40));
    assert_eq!(tlb.invalidations(), [TlbOp::Asid(7)]);
}

#[test]
fn range_harvest_skips_tables_the_visitor_declines() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    // Four pages on each side of a 2 MiB boundary: two level-3 tables.
    let start = 2 * MIB - 4 * PAGE_SIZE;
    space
        .map(va(start), pa(0), 8 * PAGE_SIZE, DATA, Granularity::Pages)
        .unwrap();
    let first = TableId(space.walk(va(start)).steps[3].table);
    let second = TableId(space.walk(va(2 * MIB)).steps[3].table);
    assert_ne!(first, second);
    let mut recorder = Recorder {
        skip: vec![first],
        young: Vec::new(),
        done: Vec::new(),
    };
    let summary = space
        .test_and_clear_young_range(va(0), 4 * MIB, &mut recorder)
        .unwrap();
    assert_eq!(
        summary,
        AgingSummary {
            scanned: 4,
            young: 4,
            skipped_tables: 1
        }
    );
    assert!(
        recorder
            .young
            .iter()
            .all(|&(addr, table)| addr >= 2 * MIB && table == second)
    );
    // Only the scanned table is reported done, with its own counts.
    assert_eq!(recorder.done, [(second, 4, 4)]);
    assert_eq!(
        pages_young(&space, start, 8),
        [true, true, true, true, false, false, false, false]
    );
}

#[test]
fn look_around_scans_neighbours_in_the_same_table() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    // A full level-3 table except for a hole at index 12.
    space
        .map(va(0), pa(0), 12 * PAGE_SIZE, DATA, Granularity::Pages)
        .unwrap();
    space
        .map(
            va(13 * PAGE_SIZE),
            pa(13 * PAGE_SIZE),
            499 * PAGE_SIZE,
            DATA,
            Granularity::Pages,
        )
        .unwrap();
    tlb.clear();
    let mut seen = Vec::new();
    let summary = space
        .look_around(va(10 * PAGE_SIZE), 8, &mut |leaf: &Leaf| {
            seen.push(leaf.va.as_u64() / PAGE_SIZE)
        })
        .unwrap();
    // Window of 9 entries centred on 10 (6..=14), minus 10 itself and the hole at 12.
    assert_eq!(seen, [6, 7, 8, 9, 11, 13, 14]);
    assert_eq!(
        summary,
        AgingSummary {
            scanned: 7,
            young: 7,
            skipped_tables: 0
        }
    );
    assert_eq!(tlb.invalidations().len(), 7);
    assert!(
        space.translate(va(10 * PAGE_SIZE)).unwrap().leaf.is_young(),
        "the centre is not touched"
    );
    // At the table's start the window shifts right; already-old pages are scanned, not reported.
    seen.clear();
    let summary = space
        .look_around(va(0), 8, &mut |leaf: &Leaf| {
            seen.push(leaf.va.as_u64() / PAGE_SIZE)
        })
        .unwrap();
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    assert_eq!(
        summary,
        AgingSummary {
            scanned: 8,
            young: 5,
            skipped_tables: 0
        }
    );
    // A wide window ends with one ASID flush; the last index is 511.
    tlb.clear();
    let summary = space
        .look_around(va(511 * PAGE_SIZE), 64, &mut |_: &Leaf| {})
        .unwrap();
    assert_eq!(summary.scanned, 64);
    assert_eq!(tlb.invalidations(), [TlbOp::Asid(7)]);
    // No level-3 table: nothing to look around in.
    space
        .map(va(4 * MIB), pa(0), 2 * MIB, DATA, Granularity::AllowBlocks)
        .unwrap();
    assert_eq!(
        space.look_around(va(4 * MIB), 8, &mut |_: &Leaf| {}),
        Err(MapError::NotMapped { va: va(4 * MIB) })
    );
    assert_eq!(
        space.look_around(va(64 * MIB), 8, &mut |_: &Leaf| {}),
        Err(MapError::NotMapped { va: va(64 * MIB) })
    );
}

#[test]
fn hardware_dirty_state() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space.map_page(page(0x8000), frame(0x8000), DATA).unwrap();
    let leaf = space.translate(va(0x8000)).unwrap().leaf;
    assert!(
        leaf.descriptor.dirty_bit_modifier() && leaf.descriptor.read_only() && !leaf.is_dirty()
    );
    // The hardware clears AP[2] on the first write.
    let (table, index, raw) = memory.lookup(space.root(), va(0x8000));
    memory.write(
        table,
        index,
        Descriptor::from_raw(raw).with_read_only(false).raw(),
    );
    assert!(space.translate(va(0x8000)).unwrap().leaf.is_dirty());
    tlb.clear();
    assert_eq!(space.test_and_clear_dirty(va(0x8000)), Ok(true));
    assert_eq!(
        tlb.invalidations(),
        [TlbOp::Va {
            va: 0x8000,
            asid: 7
        }],
        "the TLB may hold the writable entry"
    );
    let cleaned = space.translate(va(0x8000)).unwrap().leaf;
    assert_eq!(cleaned.descriptor, Descriptor::from_raw(raw));
    assert_eq!(space.test_and_clear_dirty(va(0x8000)), Ok(false));
    assert_eq!(tlb.invalidations().len(), 1);
    assert_eq!(
        space.test_and_clear_dirty(va(0x9000)),
        Err(MapError::NotMapped { va: va(0x9000) })
    );
}

#[test]
fn software_dirty_state_through_write_faults() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space.map_page(page(0x8000), frame(0x8000), DATA).unwrap();
    space
        .map_page(page(0x9000), frame(0x9000), MemoryAttributes::USER_RODATA)
        .unwrap();
    let clean = space.translate(va(0x8000)).unwrap().leaf;
    assert!(
        clean.descriptor.sw_writable()
            && clean.descriptor.read_only()
            && !clean.descriptor.dirty_bit_modifier()
    );
    tlb.clear();
    assert_eq!(
        space.resolve_write_fault(va(0x8000)),
        Ok(FaultOutcome::Resolved)
    );
    assert_eq!(
        tlb.ops(),
        [TlbOp::Publish],
        "relaxing needs no invalidation"
    );
    assert!(space.translate(va(0x8000)).unwrap().leaf.is_dirty());
    assert_eq!(
        space.resolve_write_fault(va(0x8000)),
        Ok(FaultOutcome::Spurious)
    );
    assert_eq!(
        space.resolve_write_fault(va(0x9000)),
        Ok(FaultOutcome::PermissionDenied)
    );
    assert_eq!(
        space.resolve_write_fault(va(0xa000)),
        Err(MapError::NotMapped { va: va(0xa000) })
    );
    assert_eq!(space.test_and_clear_dirty(va(0x8000)), Ok(true));
    assert_eq!(
        space.translate(va(0x8000)).unwrap().leaf.descriptor,
        clean.descriptor
    );
    // Dirty, then write-protected: SW_DIRTY keeps it; cleaning it needs no flush.
    space.resolve_write_fault(va(0x8000)).unwrap();
    space
        .protect(va(0x8000), PAGE_SIZE, MemoryAttributes::USER_RODATA)
        .unwrap();
    tlb.clear();
    assert_eq!(space.test_and_clear_dirty(va(0x8000)), Ok(true));
    assert!(tlb.invalidations().is_empty());
    assert!(!space.translate(va(0x8000)).unwrap().leaf.is_dirty());
}

#[test]
fn untracked_spaces_have_no_dirty_state() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Untracked);
    space.map_page(page(0x8000), frame(0x8000), DATA).unwrap();
    let leaf = space.translate(va(0x8000)).unwrap().leaf;
    assert!(!leaf.descriptor.read_only() && leaf.is_dirty());
    assert_eq!(
        space.test_and_clear_dirty(va(0x8000)),
        Err(MapError::NoDirtyTracking)
    );
    assert_eq!(
        space.resolve_write_fault(va(0x8000)),
        Ok(FaultOutcome::Spurious)
    );
}

#[test]
fn access_flag_faults_set_af_without_invalidation() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
    space.map_page(page(0x8000), frame(0x8000), DATA).unwrap();
    space.test_and_clear_young(va(0x8000)).unwrap();
    tlb.clear();
    assert_eq!(
        space.resolve_access_fault(va(0x8abc)),
        Ok(FaultOutcome::Resolved)
    );
    assert!(space.translate(va(0x8000)).unwrap().leaf.is_young());
    assert_eq!(
        space.resolve_access_fault(va(0x8000)),
        Ok(FaultOutcome::Spurious)
    );
    assert!(tlb.invalidations().is_empty());
    assert_eq!(
        space.resolve_access_fault(va(0x7000)),
        Err(MapError::NotMapped { va: va(0x7000) })
    );
}

#[test]
fn wxorx_audit_finds_planted_violations() {
    let memory = SimMemory::new(16);
    let tlb = RecordingTlb::new();
    let mut space = user_space(&memory, &tlb, DirtyTracking::Hardware);
    space
        .map(
            va(0x40_0000),
            pa(0x40_0000),
            4 * PAGE_SIZE,
            MemoryAttributes::USER_CODE,
            Granularity::Pages,
        )
        .unwrap();
    space
        .map(
            va(0x50_0000),
            pa(0x50_0000),
            4 * PAGE_SIZE,
            DATA,
            Granularity::Pages,
        )
        .unwrap();
    space
        .map(
            va(0x60_0000),
            pa(0x60_0000),
            4 * PAGE_SIZE,
            MemoryAttributes::USER_RODATA,
            Granularity::Pages,
        )
        .unwrap();
    let whole = crate::HALF_SIZE;
    assert_eq!(
        space.wxorx_violations(va(0), whole, |leaf| panic!("{leaf:?}")),
        Ok(0)
    );
    // A writable-clean data page made executable at EL0, and a code page given DBM.
    let (table, index, raw) = memory.lookup(space.root(), va(0x50_2000));
    memory.write(
        table,
        index,
        Descriptor::from_raw(raw)
            .with_unprivileged_execute_never(false)
            .raw(),
    );
    let (table, index, raw) = memory.lookup(space.root(), va(0x40_1000));
    memory.write(
        table,
        index,
        Descriptor::from_raw(raw)
            .with_dirty_bit_modifier(true)
            .raw(),
    );
    let mut found = Vec::new();
    assert_eq!(
        space.wxorx_violations(va(0), whole, |leaf| found.push(leaf.va.as_u64())),
        Ok(2)
    );
    assert_eq!(found, [0x40_1000, 0x50_2000]);
}
