//! The classic two-list LRU of Linux before 6.1 (the 5.9..6.0 anon behaviour): per type
//! (anon, file) an inactive and an active list.
//!
//! * New pages start at the head of the inactive list.
//! * Reclaim scans the inactive tail and checks the referenced (young) bit at scan time: young
//!   and already `PG_referenced` -> activate; young for the first time -> mark referenced and
//!   rotate (every mapped page is young from its instantiating fault, so it must be seen young
//!   twice: the second chance); old -> isolate.
//! * Active list balance: while `inactive * ratio < active` (ratio = sqrt(10 * GiB), 1 under
//!   1 GiB) the active tail is deactivated to the inactive head; for anon pages the young bit
//!   is cleared but does not keep them active.
//! * Workingset refault detection: the shadow token is the non-resident age (evictions and
//!   refault activations counted); a refault whose distance fits in the workingset (active
//!   lists, plus the inactive list of the other type) is activated at once.

use core::fmt;

use crate::env::AccessEnv;
use crate::frame::{FrameId, FrameTable, PageKey, pflags};
use crate::list::List;
use crate::policy::{
    InvariantError, PolicyError, PolicyKind, PolicyStats, ReclaimError, ReclaimPolicy, ShadowToken,
    check_isolated, check_tracked, check_untracked,
};

/// Pages deactivated or scanned per batch (Linux `SWAP_CLUSTER_MAX`).
const SWAP_CLUSTER_MAX: u32 = 32;
const ANON: usize = 0;
const FILE: usize = 1;

/// Index into the four lists: `type * 2 + active`; the list id in [`crate::FrameMeta`] is that + 1.
const fn list_index(ty: usize, active: bool) -> usize {
    ty * 2 + active as usize
}

/// Two-list active/inactive LRU.
#[derive(Debug)]
pub struct Lru2 {
    lists: [List; 4],
    tracked: u32,
    /// Evictions and refault activations so far (mod 2^30): the clock refault distances use.
    nonresident_age: u32,
    stats: PolicyStats,
}

impl Lru2 {
    /// A policy for a table of `frames` frames.
    pub fn new(_frames: u32) -> Self {
        Self {
            lists: [List::new(); 4],
            tracked: 0,
            nonresident_age: 0,
            stats: PolicyStats::default(),
        }
    }

    fn list_len(&self, ty: usize, active: bool) -> u32 {
        self.lists[list_index(ty, active)].len()
    }

    /// Linux `inactive_is_low`.
    fn inactive_is_low(&self, ty: usize) -> bool {
        let inactive = u64::from(self.list_len(ty, false));
        let active = u64::from(self.list_len(ty, true));
        let gib = (inactive + active) >> (30 - 12);
        let ratio = if gib == 0 { 1 } else { isqrt(10 * gib) };
        inactive * ratio < active
    }

    fn add(&mut self, frames: &mut FrameTable, frame: u32, ty: usize, active: bool) {
        let index = list_index(ty, active);
        frames.meta_mut(frame).set_list_id(index as u8 + 1);
        self.lists[index].push_head(frames, frame);
    }

    fn unlink(&mut self, frames: &mut FrameTable, frame: u32) {
        let index = usize::from(frames.meta(frame).list_id() - 1);
        self.lists[index].remove(frames, frame);
    }

    /// Move up to [`SWAP_CLUSTER_MAX`] pages from the active tail to the inactive head.
    fn shrink_active(&mut self, frames: &mut FrameTable, env: &mut dyn AccessEnv, ty: usize) {
        for _ in 0..SWAP_CLUSTER_MAX {
            let Some(frame) = self.lists[list_index(ty, true)].tail() else {
                return;
            };
            self.stats.scanned += 1;
            self.unlink(frames, frame);
            let meta = *frames.meta(frame);
            if meta.is_busy() {
                self.add(frames, frame, ty, true);
                continue;
            }
            // The reference is consumed (the young bit cleared) but does not keep an anon page
            // active; Linux only keeps executable file pages.
            self.stats.ptes_tested += 1;
            env.test_and_clear_young(FrameId(frame), meta.owner());
            self.add(frames, frame, ty, false);
        }
    }

    /// Scan up to [`SWAP_CLUSTER_MAX`] pages from the inactive tail; returns pages isolated.
    fn shrink_inactive(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        ty: usize,
        victims: &mut [FrameId],
    ) -> usize {
        let mut isolated = 0;
        for _ in 0..SWAP_CLUSTER_MAX {
            if isolated == victims.len() {
                break;
            }
            let Some(frame) = self.lists[list_index(ty, false)].tail() else {
                break;
            };
            self.stats.scanned += 1;
            self.unlink(frames, frame);
            let meta = *frames.meta(frame);
            if meta.is_busy() {
                self.add(frames, frame, ty, false);
                continue;
            }
            self.stats.ptes_tested += 1;
            let young = env.test_and_clear_young(FrameId(frame), meta.owner());
            let was_referenced = meta.has(pflags::REFERENCED);
            let meta = frames.meta_mut(frame);
            meta.clear(pflags::REFERENCED);
            if young {
                meta.set(pflags::REFERENCED);
                // Young twice on the inactive list: activate; young once: another trip.
                self.add(frames, frame, ty, was_referenced);
                continue;
            }
            meta.set_list_id(0);
            meta.set(pflags::ISOLATED);
            victims[isolated] = FrameId(frame);
            isolated += 1;
        }
        isolated
    }

    fn fail(what: &'static str, frame: Option<u32>) -> InvariantError {
        InvariantError {
            policy: PolicyKind::Lru2,
            what,
            frame: frame.map(FrameId),
        }
    }
}

/// Integer square root (floor).
fn isqrt(n: u64) -> u64 {
    let mut root = 0u64;
    let mut bit = 1u64 << 62;
    let mut rest = n;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if rest >= root + bit {
            rest -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    root
}

impl ReclaimPolicy for Lru2 {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Lru2
    }

    fn fault_in(
        &mut self,
        frames: &mut FrameTable,
        _env: &mut dyn AccessEnv,
        frame: FrameId,
        owner: PageKey,
        shadow: Option<ShadowToken>,
    ) -> Result<(), PolicyError> {
        check_untracked(frames, frame)?;
        let meta = frames.meta_mut(frame.0);
        meta.track(owner);
        let ty = if meta.is_anon() { ANON } else { FILE };
        let other = 1 - ty;
        let mut active = false;
        if let Some(evicted_at) = shadow.and_then(|s| s.payload(PolicyKind::Lru2)) {
            let distance =
                self.nonresident_age.wrapping_sub(evicted_at) & ShadowToken::PAYLOAD_MASK;
            let workingset =
                self.list_len(ty, true) + self.list_len(other, true) + self.list_len(other, false);
            if distance <= workingset {
                active = true;
                self.nonresident_age =
                    self.nonresident_age.wrapping_add(1) & ShadowToken::PAYLOAD_MASK;
                self.stats.shadow_hits += 1;
            }
        }
        self.add(frames, frame.0, ty, active);
        self.tracked += 1;
        self.stats.fault_ins += 1;
        Ok(())
    }

    fn isolate(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        victims: &mut [FrameId],
    ) -> Result<usize, ReclaimError> {
        let mut isolated = 0;
        // Bound the work: every frame can be scanned a few times (rotations, deactivation).
        let budget = 4 * u64::from(self.tracked) + u64::from(SWAP_CLUSTER_MAX);
        let start = self.stats.scanned;
        while isolated < victims.len() && self.stats.scanned - start < budget {
            let before = self.stats.scanned;
            // Clean file pages first, as the kernel prefers them; then anon.
            for ty in [FILE, ANON] {
                if isolated == victims.len() {
                    break;
                }
                if self.inactive_is_low(ty) {
                    self.shrink_active(frames, env, ty);
                }
                isolated += self.shrink_inactive(frames, env, ty, &mut victims[isolated..]);
            }
            if self.stats.scanned == before {
                break;
            }
        }
        self.stats.isolated += isolated as u64;
        Ok(isolated)
    }

    fn evicted(
        &mut self,
        frames: &mut FrameTable,
        frame: FrameId,
    ) -> Result<ShadowToken, PolicyError> {
        check_isolated(frames, frame)?;
        frames.meta_mut(frame.0).untrack();
        self.tracked -= 1;
        self.stats.evicted += 1;
        let token = ShadowToken::new(PolicyKind::Lru2, self.nonresident_age);
        self.nonresident_age = self.nonresident_age.wrapping_add(1) & ShadowToken::PAYLOAD_MASK;
        Ok(token)
    }

    fn putback(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_isolated(frames, frame)?;
        let meta = frames.meta_mut(frame.0);
        meta.clear(pflags::ISOLATED);
        let ty = if meta.is_anon() { ANON } else { FILE };
        self.add(frames, frame.0, ty, false);
        self.stats.putbacks += 1;
        Ok(())
    }

    fn free(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_tracked(frames, frame)?;
        if !frames.meta(frame.0).is_isolated() {
            self.unlink(frames, frame.0);
        }
        frames.meta_mut(frame.0).untrack();
        self.tracked -= 1;
        self.stats.frees += 1;
        Ok(())
    }

    fn tracked(&self) -> u32 {
        self.tracked
    }

    fn stats(&self) -> PolicyStats {
        self.stats
    }

    fn write_debug(&self, _now_ms: u64, out: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(out, "lru2: nonresident_age {}", self.nonresident_age)?;
        writeln!(out, "type  inactive  active")?;
        for (name, ty) in [("anon", ANON), ("file", FILE)] {
            writeln!(
                out,
                "{name:4}  {:8}  {:6}",
                self.list_len(ty, false),
                self.list_len(ty, true)
            )?;
        }
        Ok(())
    }

    fn check_invariants(&self, frames: &FrameTable) -> Result<(), InvariantError> {
        let mut listed = 0;
        for (index, list) in self.lists.iter().enumerate() {
            let mut bad = None;
            list.walk_checked(frames, frames.len(), |node| {
                let meta = frames.meta(node);
                let ty = if meta.is_anon() { ANON } else { FILE };
                let ok = meta.is_tracked()
                    && !meta.is_isolated()
                    && usize::from(meta.list_id()) == index + 1
                    && index / 2 == ty;
                if bad.is_none() && !ok {
                    bad = Some(node);
                }
            })
            .ok_or_else(|| Self::fail("list links are inconsistent", None))?;
            if let Some(node) = bad {
                return Err(Self::fail(
                    "frame's list id, type or state does not match its list",
                    Some(node),
                ));
            }
            listed += list.len();
        }
        let (mut tracked, mut unisolated) = (0, 0);
        for (frame, meta) in frames.iter() {
            if !meta.is_tracked() {
                continue;
            }
            tracked += 1;
            if !meta.is_isolated() {
                unisolated += 1;
                if meta.list_id() == 0 {
                    return Err(Self::fail("tracked frame is on no list", Some(frame.0)));
                }
            }
        }
        if tracked != self.tracked || unisolated != listed {
            return Err(Self::fail(
                "tracked or listed count differs from the frame table",
                None,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::isqrt;

    #[test]
    fn integer_square_root_floors() {
        for (n, root) in [
            (0, 0),
            (1, 1),
            (3, 1),
            (4, 2),
            (10, 3),
            (99, 9),
            (100, 10),
            (u64::MAX, 4_294_967_295),
        ] {
            assert_eq!(isqrt(n), root, "isqrt({n})");
        }
    }
}
