//! A scripted [`AccessEnv`]: page tables as an ordered map, young bits set by the test, and
//! counts of what the policy asked for.
// Each test crate uses a different part of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use reclaim::{
    AccessEnv, AddressSpaceId, AnyPolicy, FrameFlags, FrameId, FrameTable, LeafTableId, LookAround,
    PTES_PER_TABLE, PageKey, PageTableVisitor, PolicyConfig, PolicyKind, ReclaimPolicy,
    ShadowToken,
};

#[derive(Default)]
pub struct FakeEnv {
    pub now_ms: u64,
    /// PTEs in address order: owner -> (frame, young).
    pub ptes: BTreeMap<PageKey, (FrameId, bool)>,
    /// Address spaces and whether each ran since its last walk.
    pub spaces: BTreeMap<u16, bool>,
    pub walked_spaces: Vec<u16>,
    pub scanned_tables: Vec<LeafTableId>,
    pub skipped_tables: Vec<LeafTableId>,
    pub look_arounds: u32,
    pub young_tests: u32,
}

impl FakeEnv {
    pub fn map(&mut self, owner: PageKey, frame: FrameId) {
        self.ptes.insert(owner, (frame, true));
        self.spaces.insert(owner.asid().0, true);
    }

    pub fn unmap(&mut self, owner: PageKey) {
        self.ptes.remove(&owner);
    }

    /// An access: the young bit is set and the space has run.
    pub fn touch(&mut self, owner: PageKey) {
        if let Some(pte) = self.ptes.get_mut(&owner) {
            pte.1 = true;
        }
        self.spaces.insert(owner.asid().0, true);
    }
}

impl AccessEnv for FakeEnv {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }

    fn test_and_clear_young(&mut self, frame: FrameId, owner: PageKey) -> bool {
        self.young_tests += 1;
        match self.ptes.get_mut(&owner) {
            Some(pte) if pte.0 == frame => std::mem::take(&mut pte.1),
            _ => false,
        }
    }

    fn look_around(
        &mut self,
        _frame: FrameId,
        owner: PageKey,
        young: &mut dyn FnMut(FrameId),
    ) -> LookAround {
        self.look_arounds += 1;
        let table = owner.leaf_table();
        let start = PageKey::new(
            owner.asid(),
            owner
                .vpn()
                .saturating_sub(32)
                .max(owner.vpn() / PTES_PER_TABLE * PTES_PER_TABLE),
        );
        let mut result = LookAround {
            table,
            present: 0,
            young: 0,
        };
        for (key, pte) in self.ptes.range_mut(start..) {
            if key.leaf_table() != table || key.vpn() >= start.vpn() + 64 {
                break;
            }
            if *key == owner {
                continue;
            }
            result.present += 1;
            if std::mem::take(&mut pte.1) {
                result.young += 1;
                young(pte.0);
            }
        }
        result
    }

    fn next_address_space(&self, after: Option<AddressSpaceId>) -> Option<AddressSpaceId> {
        let next = match after {
            None => self.spaces.keys().next(),
            Some(space) => self.spaces.range(space.0 + 1..).next().map(|(k, _)| k),
        };
        next.map(|&id| AddressSpaceId(id))
    }

    fn take_ran_since_walk(&mut self, space: AddressSpaceId) -> bool {
        self.spaces.get_mut(&space.0).is_some_and(std::mem::take)
    }

    fn walk_page_tables(&mut self, space: AddressSpaceId, visitor: &mut dyn PageTableVisitor) {
        self.walked_spaces.push(space.0);
        let first = PageKey::new(space, 0);
        let last = PageKey::new(space, PageKey::MAX_VPN);
        let tables: BTreeSet<LeafTableId> = self
            .ptes
            .range(first..=last)
            .map(|(k, _)| k.leaf_table())
            .collect();
        for table in tables {
            if !visitor.wants_table(table) {
                self.skipped_tables.push(table);
                continue;
            }
            self.scanned_tables.push(table);
            let (mut present, mut young) = (0, 0);
            for (key, pte) in self.ptes.range_mut(first..=last) {
                if key.leaf_table() != table {
                    continue;
                }
                present += 1;
                if std::mem::take(&mut pte.1) {
                    young += 1;
                    visitor.young(pte.0);
                }
            }
            visitor.table_done(table, present, young);
        }
    }
}

/// A policy, its frame table and a scripted environment.
pub struct Rig {
    pub policy: AnyPolicy,
    pub frames: FrameTable,
    pub env: FakeEnv,
}

impl Rig {
    pub fn new(kind: PolicyKind, frames: u32) -> Self {
        Self::with_config(kind, frames, PolicyConfig::default())
    }

    pub fn with_config(kind: PolicyKind, frames: u32, config: PolicyConfig) -> Self {
        Self {
            policy: kind.build(frames, &config).unwrap(),
            frames: FrameTable::new(frames),
            env: FakeEnv::default(),
        }
    }

    /// Fault `owner` into `frame` (anonymous), as the kernel would.
    pub fn fault(&mut self, frame: u32, owner: PageKey, shadow: Option<ShadowToken>) {
        self.frames.set_flags(FrameId(frame), FrameFlags::ANON);
        self.env.map(owner, FrameId(frame));
        self.policy
            .fault_in(
                &mut self.frames,
                &mut self.env,
                FrameId(frame),
                owner,
                shadow,
            )
            .unwrap();
        self.check();
    }

    /// Isolate up to `n` frames.
    pub fn isolate(&mut self, n: usize) -> Vec<FrameId> {
        let mut victims = vec![FrameId(0); n];
        let count = self
            .policy
            .isolate(&mut self.frames, &mut self.env, &mut victims)
            .unwrap();
        victims.truncate(count);
        self.check();
        victims
    }

    /// Evict an isolated frame: unmap it and return its token.
    pub fn evict(&mut self, frame: FrameId) -> ShadowToken {
        let owner = self.frames.get(frame).unwrap().owner();
        self.env.unmap(owner);
        let token = self.policy.evicted(&mut self.frames, frame).unwrap();
        self.frames.set_flags(frame, FrameFlags::EMPTY);
        self.check();
        token
    }

    pub fn check(&self) {
        if let Err(err) = self.policy.check_invariants(&self.frames) {
            panic!("{err}");
        }
    }

    pub fn debug(&self) -> String {
        let mut out = String::new();
        self.policy.write_debug(self.env.now_ms, &mut out).unwrap();
        out
    }
}

/// Page `vpn` of address space 0.
pub fn page(vpn: u64) -> PageKey {
    PageKey::new(AddressSpaceId(0), vpn)
}
