//! Random map / unmap / protect sequences against a simple model: a sorted map of leaves.

use super::{GIB, MIB, pa, user_space, va};
use crate::sim::{RecordingTlb, SimMemory};
use crate::{DirtyTracking, Granularity, Level, MapError, MemoryAttributes, PAGE_SIZE, Unmapped};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

const ATTRIBUTES: [MemoryAttributes; 3] = [
    MemoryAttributes::USER_DATA,
    MemoryAttributes::USER_RODATA,
    MemoryAttributes::USER_CODE,
];
/// Two windows of 8 MiB: one at 0, one straddling the 1 GiB boundary (different level-1 entries).
const WINDOWS: [u64; 2] = [0, GIB - 4 * MIB];
const WINDOW_PAGES: u64 = 8 * MIB / PAGE_SIZE;

#[derive(Clone, Debug)]
enum Op {
    Map {
        window: usize,
        first: u64,
        pages: u64,
        pa: u64,
        attributes: usize,
        blocks: bool,
    },
    Unmap {
        window: usize,
        first: u64,
        pages: u64,
    },
    Protect {
        window: usize,
        first: u64,
        pages: u64,
        attributes: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0..WINDOWS.len(), 0..WINDOW_PAGES, 1..1100u64)
        .prop_map(|(window, first, pages)| (window, first, pages.min(WINDOW_PAGES - first)));
    // Physical addresses: 2 MiB aligned half of the time so blocks happen.
    let physical = (0..64u64, any::<bool>(), 0..512u64).prop_map(|(block, aligned, page)| {
        block * 2 * MIB + if aligned { 0 } else { page * PAGE_SIZE }
    });
    prop_oneof![
        (range.clone(), physical, 0..ATTRIBUTES.len(), any::<bool>()).prop_map(
            |((window, first, pages), pa, attributes, blocks)| Op::Map {
                window,
                first,
                pages,
                pa,
                attributes,
                blocks
            }
        ),
        range.clone().prop_map(|(window, first, pages)| Op::Unmap {
            window,
            first,
            pages
        }),
        (range, 0..ATTRIBUTES.len()).prop_map(|((window, first, pages), attributes)| Op::Protect {
            window,
            first,
            pages,
            attributes
        }),
    ]
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModelLeaf {
    pa: u64,
    level: Level,
    attributes: MemoryAttributes,
}

/// Leaves by first virtual address.
type Model = BTreeMap<u64, ModelLeaf>;

fn overlapping(model: &Model, start: u64, end: u64) -> impl Iterator<Item = (u64, ModelLeaf)> + '_ {
    model
        .range(..end)
        .map(|(&va, &leaf)| (va, leaf))
        .filter(move |&(va, leaf)| va + leaf.level.entry_size() > start)
}

/// The leaves `map` should create: the largest size both addresses are aligned to that fits.
fn chunks(start: u64, pa: u64, len: u64, blocks: bool) -> Vec<(u64, u64, Level)> {
    let mut chunks = Vec::new();
    let mut done = 0;
    while done < len {
        let (va, pa) = (start + done, pa + done);
        let level = [Level::L1, Level::L2]
            .into_iter()
            .find(|level| {
                let size = level.entry_size();
                blocks && va % size == 0 && pa % size == 0 && len - done >= size
            })
            .unwrap_or(Level::L3);
        chunks.push((va, pa, level));
        done += level.entry_size();
    }
    chunks
}

/// The error for a range that cuts a block: the block at the start is checked first.
fn block_in_the_way(model: &Model, start: u64, end: u64) -> Option<MapError> {
    [start, end - PAGE_SIZE].into_iter().find_map(|addr| {
        let (block_va, leaf) = overlapping(model, addr, addr + PAGE_SIZE).next()?;
        let inside = block_va >= start && block_va + leaf.level.entry_size() <= end;
        (!inside).then_some(MapError::BlockInTheWay {
            va: va(block_va),
            level: leaf.level,
        })
    })
}

fn actual_leaves(space: &super::TestSpace<'_>) -> Model {
    let mut found = Model::new();
    space
        .for_each_leaf(va(0), crate::HALF_SIZE, |leaf| {
            let attributes = leaf
                .attributes()
                .expect("only this crate writes the tables");
            found.insert(
                leaf.va.as_u64(),
                ModelLeaf {
                    pa: leaf.pa.as_u64(),
                    level: leaf.level,
                    attributes,
                },
            );
            ControlFlow::Continue(())
        })
        .unwrap();
    found
}

fn apply(
    space: &mut super::TestSpace<'_>,
    model: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    match *op {
        Op::Map {
            window,
            first,
            pages,
            pa: physical,
            attributes,
            blocks,
        } => {
            let (start, len) = (WINDOWS[window] + first * PAGE_SIZE, pages * PAGE_SIZE);
            let granularity = if blocks {
                Granularity::AllowBlocks
            } else {
                Granularity::Pages
            };
            let planned = chunks(start, physical, len, blocks);
            let conflict = planned.iter().find(|&&(va, _, level)| {
                overlapping(model, va, va + level.entry_size())
                    .next()
                    .is_some()
            });
            let result = space.map(
                va(start),
                pa(physical),
                len,
                ATTRIBUTES[attributes],
                granularity,
            );
            match conflict {
                Some(&(conflict_va, _, _)) => prop_assert_eq!(
                    result,
                    Err(MapError::AlreadyMapped {
                        va: va(conflict_va)
                    })
                ),
                None => {
                    prop_assert_eq!(result, Ok(()));
                    for (va, pa, level) in planned {
                        model.insert(
                            va,
                            ModelLeaf {
                                pa,
                                level,
                                attributes: ATTRIBUTES[attributes],
                            },
                        );
                    }
                }
            }
        }
        Op::Unmap {
            window,
            first,
            pages,
        } => {
            let (start, end) = (
                WINDOWS[window] + first * PAGE_SIZE,
                WINDOWS[window] + (first + pages) * PAGE_SIZE,
            );
            let mut removed = Model::new();
            let result = space.unmap(va(start), end - start, |item| match item {
                Unmapped::Leaf(leaf) => {
                    let attributes = leaf.attributes().unwrap();
                    removed.insert(
                        leaf.va.as_u64(),
                        ModelLeaf {
                            pa: leaf.pa.as_u64(),
                            level: leaf.level,
                            attributes,
                        },
                    );
                }
                Unmapped::Swap { .. } => panic!("no swap entries in this test"),
            });
            match block_in_the_way(model, start, end) {
                Some(error) => {
                    prop_assert_eq!(result, Err(error));
                    prop_assert!(removed.is_empty());
                }
                None => {
                    prop_assert_eq!(result, Ok(()));
                    let expected: Model = overlapping(model, start, end).collect();
                    prop_assert_eq!(&removed, &expected);
                    model.retain(|va, _| !expected.contains_key(va));
                }
            }
        }
        Op::Protect {
            window,
            first,
            pages,
            attributes,
        } => {
            let (start, end) = (
                WINDOWS[window] + first * PAGE_SIZE,
                WINDOWS[window] + (first + pages) * PAGE_SIZE,
            );
            let new = ATTRIBUTES[attributes];
            let result = space.protect(va(start), end - start, new);
            match block_in_the_way(model, start, end) {
                Some(error) => prop_assert_eq!(result, Err(error)),
                None => {
                    let targets: Vec<u64> =
                        overlapping(model, start, end).map(|(va, _)| va).collect();
                    let mut changed = 0;
                    for va in targets {
                        let leaf = model.get_mut(&va).unwrap();
                        changed += usize::from(leaf.attributes != new);
                        leaf.attributes = new;
                    }
                    prop_assert_eq!(result, Ok(changed));
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn random_operations_match_the_model(ops in proptest::collection::vec(op(), 1..25)) {
        let memory = SimMemory::new(64);
        let tlb = RecordingTlb::new();
        let mut space = user_space(&memory, &tlb, DirtyTracking::Software);
        let mut model = Model::new();
        for op in &ops {
            apply(&mut space, &mut model, op)?;
            prop_assert_eq!(&actual_leaves(&space), &model, "after {:?}", op);
        }
        // Every page of every window translates as the model says.
        for window in WINDOWS {
            for index in 0..WINDOW_PAGES {
                let addr = window + index * PAGE_SIZE + 0x18;
                let expected = overlapping(&model, addr, addr + 1).next().map(|(start, leaf)| (leaf.pa + addr - start, leaf.level, leaf.attributes));
                let actual = space.translate(va(addr)).map(|t| (t.pa.as_u64(), t.leaf.level, t.leaf.attributes().unwrap()));
                prop_assert_eq!(actual, expected, "at {:#x}", addr);
            }
        }
        space.unmap(va(0), crate::HALF_SIZE, |_| {}).unwrap();
        prop_assert_eq!(memory.allocated(), 1, "every table but the root is freed");
    }
}
