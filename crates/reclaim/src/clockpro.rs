//! CLOCK-Pro (Jiang, Chen and Zhang, USENIX ATC 2005): scan-resistant replacement driven only
//! by reference bits, which is exactly what test-and-clear-young gives.
//!
//! One clock holds resident hot pages, resident cold pages and non-resident cold pages (ghosts,
//! metadata only) that are still in their test period. As in the paper, the hot hand marks the
//! tail of the clock and its head is right behind it: pages are inserted there, so the hot hand
//! reaches a page last after inserting it, and every page the hot hand passes is at the head
//! again. Here the clock is a list cut at the hot hand (the hot hand is the list's tail); the
//! cold and test hands move from the tail toward the head and wrap around.
//! * The cold hand finds victims: an unreferenced cold page is evicted (kept as a ghost while in
//!   its test period); a referenced cold page in its test period becomes hot, one outside it
//!   starts a test period; both go to the head.
//! * The hot hand runs while hot pages exceed `resident - cold_target`: it spares referenced hot
//!   pages, demotes the first unreferenced one to cold (outside a test period) and stops at the
//!   next hot page; it ends the test period of every cold page it passes (ghosts are dropped).
//!   A test period thus lasts until the page is older than the oldest hot page.
//! * The test hand drops ghosts when they outnumber resident pages, ending the test periods it
//!   passes.
//!
//! The cold target adapts: +1 when a page is re-accessed during its test period (a ghost hit on
//! refault, or a referenced resident test page), -1 when a test period ends unused.
//!
//! Until memory is first full (the first `isolate`), pages are made hot up to the hot target,
//! as LIRS fills its LIR set first: without resident hot pages no test period would be bounded
//! by one, and a loop larger than memory plus its ghosts would never produce a hot page.
//!
//! Adaptation to access bits: a page is young right after its instantiating fault, so its first
//! young observation is only a second chance (no promotion), as CLOCK would give.

use alloc::boxed::Box;
use alloc::vec;
use core::fmt;

use crate::env::AccessEnv;
use crate::frame::{FrameId, FrameTable, PageKey, pflags};
use crate::list::{Chain, Links, List, NIL};
use crate::policy::{
    InvariantError, PolicyError, PolicyKind, PolicyStats, ReclaimError, ReclaimPolicy, ShadowToken,
    check_isolated, check_tracked, check_untracked,
};

/// List id of frames on the clock.
const ON_CLOCK: u8 = 1;
/// Resident cold pages are kept to at least 1/32 of the resident pages.
const MIN_COLD_SHARE: u32 = 32;

/// A non-resident cold page in its test period.
#[derive(Clone, Copy, Debug)]
struct Ghost {
    prev: u32,
    next: u32,
    /// Owner of the evicted page (checked on refault; the token only carries the index).
    owner: u64,
    in_use: bool,
}

/// Links of clock nodes: frames are nodes `0..frames`, ghosts `frames..frames + ghosts`.
struct ClockLinks<'a> {
    frames: &'a mut FrameTable,
    ghosts: &'a mut [Ghost],
}

/// Read-only view of the same links.
struct ClockChain<'a> {
    frames: &'a FrameTable,
    ghosts: &'a [Ghost],
}

impl Chain for ClockChain<'_> {
    fn prev(&self, node: u32) -> u32 {
        match node.checked_sub(self.frames.len()) {
            Some(g) => self.ghosts[g as usize].prev,
            None => self.frames.prev(node),
        }
    }

    fn next(&self, node: u32) -> u32 {
        match node.checked_sub(self.frames.len()) {
            Some(g) => self.ghosts[g as usize].next,
            None => self.frames.next(node),
        }
    }
}

impl ClockLinks<'_> {
    fn ghost(&self, node: u32) -> Option<usize> {
        node.checked_sub(self.frames.len()).map(|g| g as usize)
    }

    fn chain(&self) -> ClockChain<'_> {
        ClockChain {
            frames: self.frames,
            ghosts: self.ghosts,
        }
    }
}

impl Chain for ClockLinks<'_> {
    fn prev(&self, node: u32) -> u32 {
        self.chain().prev(node)
    }

    fn next(&self, node: u32) -> u32 {
        self.chain().next(node)
    }
}

impl Links for ClockLinks<'_> {
    fn set_prev(&mut self, node: u32, prev: u32) {
        match self.ghost(node) {
            Some(g) => self.ghosts[g].prev = prev,
            None => self.frames.set_prev(node, prev),
        }
    }

    fn set_next(&mut self, node: u32, next: u32) {
        match self.ghost(node) {
            Some(g) => self.ghosts[g].next = next,
            None => self.frames.set_next(node, next),
        }
    }
}

/// The clock: a circular list cut right behind the hot hand. The hot hand is the tail (the
/// entry it examines next) and the clock's head, where entries are inserted, is right behind
/// it, as in the paper; the cold and test hands are entries that move from the tail toward the
/// head and wrap around.
#[derive(Debug)]
struct Ring {
    list: List,
    cold: u32,
    test: u32,
}

impl Ring {
    /// The entry after `node` in hand order (toward the head, wrapping to the tail).
    fn step(&self, links: &impl Chain, node: u32) -> u32 {
        List::newer(links, node).or(self.list.tail()).unwrap_or(NIL)
    }

    /// Where a hand stands: its entry, or the tail if it has none yet.
    fn at(&self, hand: u32) -> Option<u32> {
        if hand == NIL {
            self.list.tail()
        } else {
            Some(hand)
        }
    }

    /// Unlink `node`; hands on it move one step on.
    fn remove(&mut self, links: &mut ClockLinks<'_>, node: u32) {
        let next = if self.list.len() == 1 {
            NIL
        } else {
            self.step(links, node)
        };
        for hand in [&mut self.cold, &mut self.test] {
            if *hand == node {
                *hand = next;
            }
        }
        self.list.remove(links, node);
    }

    /// Take `node` out of its place and insert it at the head, right behind the hot hand.
    fn move_to_head(&mut self, links: &mut ClockLinks<'_>, node: u32) {
        self.remove(links, node);
        self.list.push_head(links, node);
    }

    /// The hot hand moves past the tail entry: the cut moves, the circle stays as it is (the
    /// entry is now right behind the hot hand, at the head) and the other hands keep their
    /// entries.
    fn advance_hot_hand(&mut self, links: &mut ClockLinks<'_>) {
        if let Some(tail) = self.list.tail() {
            self.list.remove(links, tail);
            self.list.push_head(links, tail);
        }
    }

    /// Put `new` where `old` is; hands on `old` now point at `new`.
    fn replace(&mut self, links: &mut ClockLinks<'_>, old: u32, new: u32) {
        for hand in [&mut self.cold, &mut self.test] {
            if *hand == old {
                *hand = new;
            }
        }
        self.list.replace(links, old, new);
    }
}

/// CLOCK-Pro replacement.
#[derive(Debug)]
pub struct ClockPro {
    ring: Ring,
    ghosts: Box<[Ghost]>,
    /// Free ghost entries, chained through `next`.
    free_ghost: u32,
    ghosts_in_use: u32,
    hot: u32,
    tracked: u32,
    /// Target number of resident cold pages.
    cold_target: u32,
    /// Memory has been full: `isolate` was called at least once.
    filled: bool,
    stats: PolicyStats,
}

impl ClockPro {
    /// A policy for a table of `frames` frames, with room for as many ghosts.
    pub fn new(frames: u32) -> Self {
        let mut ghosts = vec![
            Ghost {
                prev: NIL,
                next: NIL,
                owner: 0,
                in_use: false
            };
            frames as usize
        ]
        .into_boxed_slice();
        for (i, ghost) in ghosts.iter_mut().enumerate() {
            ghost.next = if i + 1 < frames as usize {
                i as u32 + 1
            } else {
                NIL
            };
        }
        Self {
            ring: Ring {
                list: List::new(),
                cold: NIL,
                test: NIL,
            },
            ghosts,
            free_ghost: if frames > 0 { 0 } else { NIL },
            ghosts_in_use: 0,
            hot: 0,
            tracked: 0,
            cold_target: 1,
            filled: false,
            stats: PolicyStats::default(),
        }
    }

    /// The adaptive target of resident cold pages.
    pub fn cold_target(&self) -> u32 {
        self.cold_target
    }

    /// Resident hot pages.
    pub fn hot_pages(&self) -> u32 {
        self.hot
    }

    fn grow_cold_target(&mut self) {
        self.cold_target = (self.cold_target + 1).min(self.tracked.saturating_sub(1).max(1));
    }

    fn shrink_cold_target(&mut self) {
        self.cold_target = self.cold_target.saturating_sub(1).max(1);
    }

    /// Resident hot pages allowed. The cold share never drops below 1/[`MIN_COLD_SHARE`] of the
    /// resident pages: with fewer cold pages the cold hand would sweep the whole clock for each
    /// victim (quadratic reclaim).
    fn hot_target(&self) -> u32 {
        let cold = self.cold_target.max(self.tracked / MIN_COLD_SHARE).max(1);
        self.tracked.saturating_sub(cold)
    }

    /// Drop ghost node `node` from the clock and free its entry.
    fn drop_ghost(&mut self, frames: &mut FrameTable, node: u32) {
        let index = node - frames.len();
        let mut links = ClockLinks {
            frames,
            ghosts: &mut self.ghosts,
        };
        self.ring.remove(&mut links, node);
        let ghost = &mut self.ghosts[index as usize];
        ghost.in_use = false;
        ghost.next = self.free_ghost;
        self.free_ghost = index;
        self.ghosts_in_use -= 1;
    }

    /// Cold hand: find one victim, or `None` after a full bounded sweep without one.
    fn run_cold_hand(&mut self, frames: &mut FrameTable, env: &mut dyn AccessEnv) -> Option<u32> {
        let mut budget = 2 * self.ring.list.len() + 2;
        while budget > 0 {
            budget -= 1;
            let node = self.ring.at(self.ring.cold)?;
            let step = self.ring.step(
                &ClockChain {
                    frames,
                    ghosts: &self.ghosts,
                },
                node,
            );
            if node >= frames.len() {
                self.ring.cold = step;
                continue;
            }
            let meta = *frames.meta(node);
            if meta.has(pflags::HOT) || meta.is_isolated() || meta.is_busy() {
                self.ring.cold = step;
                continue;
            }
            self.stats.scanned += 1;
            self.stats.ptes_tested += 1;
            if env.test_and_clear_young(FrameId(node), meta.owner()) {
                let meta = frames.meta_mut(node);
                if meta.has(pflags::FRESH) {
                    // Only the instantiating fault: a second chance, still in test.
                    meta.clear(pflags::FRESH);
                } else if meta.has(pflags::TEST) {
                    // Re-accessed during its test period: hot.
                    meta.clear(pflags::TEST);
                    meta.set(pflags::HOT);
                    self.hot += 1;
                    self.grow_cold_target();
                } else {
                    meta.set(pflags::TEST);
                }
                self.ring.move_to_head(
                    &mut ClockLinks {
                        frames,
                        ghosts: &mut self.ghosts,
                    },
                    node,
                );
                self.balance_hot(frames, env);
                continue;
            }
            frames.meta_mut(node).set(pflags::ISOLATED);
            self.ring.cold = step;
            return Some(node);
        }
        None
    }

    /// Run the hot hand until hot pages fit their target.
    fn balance_hot(&mut self, frames: &mut FrameTable, env: &mut dyn AccessEnv) {
        while self.hot > self.hot_target() {
            if !self.run_hot_hand(frames, env) {
                return;
            }
        }
    }

    /// Hot hand, at the tail: demote the first unreferenced hot page (sparing referenced ones),
    /// ending the test period of every cold page it passes (ghosts leave the clock), then stop
    /// at the next hot page. Every entry it passes ends up at the head, right behind it.
    /// Returns false if a bounded sweep demoted nothing.
    fn run_hot_hand(&mut self, frames: &mut FrameTable, env: &mut dyn AccessEnv) -> bool {
        let mut demoted = false;
        let mut budget = 2 * self.ring.list.len() + 2;
        while self.hot > 0 && budget > 0 {
            budget -= 1;
            let Some(node) = self.ring.list.tail() else {
                break;
            };
            if node >= frames.len() {
                self.drop_ghost(frames, node);
                self.shrink_cold_target();
                continue;
            }
            let meta = *frames.meta(node);
            if meta.has(pflags::HOT) {
                if demoted {
                    break;
                }
                self.stats.ptes_tested += 1;
                let young = env.test_and_clear_young(FrameId(node), meta.owner());
                let meta = frames.meta_mut(node);
                meta.clear(pflags::FRESH);
                if !young && !meta.is_busy() {
                    meta.clear(pflags::HOT);
                    self.hot -= 1;
                    demoted = true;
                }
            } else if meta.has(pflags::TEST) {
                frames.meta_mut(node).clear(pflags::TEST);
                self.shrink_cold_target();
            }
            self.ring.advance_hot_hand(&mut ClockLinks {
                frames,
                ghosts: &mut self.ghosts,
            });
        }
        demoted
    }

    /// Test hand: drop one ghost, ending the test periods it passes.
    fn run_test_hand(&mut self, frames: &mut FrameTable) {
        let mut budget = 2 * self.ring.list.len() + 2;
        while budget > 0 {
            budget -= 1;
            let Some(node) = self.ring.at(self.ring.test) else {
                return;
            };
            if node >= frames.len() {
                self.drop_ghost(frames, node);
                self.shrink_cold_target();
                return;
            }
            let step = self.ring.step(
                &ClockChain {
                    frames,
                    ghosts: &self.ghosts,
                },
                node,
            );
            self.ring.test = step;
            let meta = frames.meta_mut(node);
            if meta.has(pflags::TEST) {
                meta.clear(pflags::TEST);
                self.shrink_cold_target();
            }
        }
    }

    fn fail(what: &'static str, frame: Option<u32>) -> InvariantError {
        InvariantError {
            policy: PolicyKind::ClockPro,
            what,
            frame: frame.map(FrameId),
        }
    }
}

impl ReclaimPolicy for ClockPro {
    fn kind(&self) -> PolicyKind {
        PolicyKind::ClockPro
    }

    fn fault_in(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        frame: FrameId,
        owner: PageKey,
        shadow: Option<ShadowToken>,
    ) -> Result<(), PolicyError> {
        check_untracked(frames, frame)?;
        let ghost_hit = shadow
            .and_then(|s| s.payload(PolicyKind::ClockPro))
            .and_then(|payload| payload.checked_sub(1))
            .filter(|&g| {
                self.ghosts
                    .get(g as usize)
                    .is_some_and(|ghost| ghost.in_use && ghost.owner == owner.0)
            });
        let meta = frames.meta_mut(frame.0);
        meta.track(owner);
        meta.set_list_id(ON_CLOCK);
        meta.set(pflags::FRESH);
        self.tracked += 1;
        self.stats.fault_ins += 1;
        if let Some(ghost) = ghost_hit {
            // Re-accessed during its test period while non-resident: hot at once.
            self.drop_ghost(frames, frames.len() + ghost);
            frames.meta_mut(frame.0).set(pflags::HOT);
            self.hot += 1;
            self.grow_cold_target();
            self.stats.shadow_hits += 1;
        } else if !self.filled && self.hot < self.hot_target() {
            // Memory is filling for the first time: no page has a reuse distance larger than
            // memory yet, so pages are hot up to the hot target (as LIRS fills its LIR set).
            frames.meta_mut(frame.0).set(pflags::HOT);
            self.hot += 1;
        } else {
            frames.meta_mut(frame.0).set(pflags::TEST);
        }
        self.ring.list.push_head(
            &mut ClockLinks {
                frames,
                ghosts: &mut self.ghosts,
            },
            frame.0,
        );
        self.balance_hot(frames, env);
        Ok(())
    }

    fn isolate(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        victims: &mut [FrameId],
    ) -> Result<usize, ReclaimError> {
        self.filled = true;
        let mut isolated = 0;
        while isolated < victims.len() {
            let victim = match self.run_cold_hand(frames, env) {
                Some(victim) => victim,
                // No evictable cold page: demote a hot one and try once more.
                None if self.run_hot_hand(frames, env) => match self.run_cold_hand(frames, env) {
                    Some(victim) => victim,
                    None => break,
                },
                None => break,
            };
            victims[isolated] = FrameId(victim);
            isolated += 1;
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
        let meta = *frames.meta(frame.0);
        self.tracked -= 1;
        self.stats.evicted += 1;
        if meta.has(pflags::TEST) && self.free_ghost == NIL && self.ghosts_in_use > 0 {
            self.run_test_hand(frames);
        }
        let payload = if meta.has(pflags::TEST) && self.free_ghost != NIL {
            // Stay on the clock as a ghost until the test period ends.
            let index = self.free_ghost;
            let ghost = &mut self.ghosts[index as usize];
            self.free_ghost = ghost.next;
            *ghost = Ghost {
                prev: NIL,
                next: NIL,
                owner: meta.owner().0,
                in_use: true,
            };
            self.ghosts_in_use += 1;
            let node = frames.len() + index;
            self.ring.replace(
                &mut ClockLinks {
                    frames,
                    ghosts: &mut self.ghosts,
                },
                frame.0,
                node,
            );
            index + 1
        } else {
            self.ring.remove(
                &mut ClockLinks {
                    frames,
                    ghosts: &mut self.ghosts,
                },
                frame.0,
            );
            0
        };
        frames.meta_mut(frame.0).untrack();
        while self.ghosts_in_use > self.tracked {
            let before = self.ghosts_in_use;
            self.run_test_hand(frames);
            if self.ghosts_in_use == before {
                break;
            }
        }
        Ok(ShadowToken::new(PolicyKind::ClockPro, payload))
    }

    fn putback(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_isolated(frames, frame)?;
        frames.meta_mut(frame.0).clear(pflags::ISOLATED);
        self.stats.putbacks += 1;
        Ok(())
    }

    fn free(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_tracked(frames, frame)?;
        if frames.meta(frame.0).has(pflags::HOT) {
            self.hot -= 1;
        }
        self.ring.remove(
            &mut ClockLinks {
                frames,
                ghosts: &mut self.ghosts,
            },
            frame.0,
        );
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
        writeln!(
            out,
            "clockpro: resident {} hot {} cold {} cold_target {} ghosts {}",
            self.tracked,
            self.hot,
            self.tracked - self.hot,
            self.cold_target,
            self.ghosts_in_use
        )
    }

    fn check_invariants(&self, frames: &FrameTable) -> Result<(), InvariantError> {
        let n = frames.len();
        let (mut resident, mut hot, mut ghosts) = (0, 0, 0);
        let mut bad = None;
        let links = ClockChain {
            frames,
            ghosts: &self.ghosts,
        };
        self.ring
            .list
            .walk_checked(&links, n + self.ghosts.len() as u32, |node| {
                if node >= n {
                    let ok = self
                        .ghosts
                        .get((node - n) as usize)
                        .is_some_and(|g| g.in_use);
                    ghosts += 1;
                    if !ok && bad.is_none() {
                        bad = Some(node);
                    }
                    return;
                }
                let meta = frames.meta(node);
                resident += 1;
                if meta.has(pflags::HOT) {
                    hot += 1;
                }
                let ok = meta.is_tracked()
                    && meta.list_id() == ON_CLOCK
                    && !(meta.has(pflags::HOT) && meta.has(pflags::TEST))
                    && !(meta.has(pflags::HOT) && meta.is_isolated());
                if !ok && bad.is_none() {
                    bad = Some(node);
                }
            })
            .ok_or_else(|| Self::fail("clock links are inconsistent", None))?;
        if let Some(node) = bad {
            return Err(Self::fail(
                "clock entry is in an impossible state",
                Some(node),
            ));
        }
        let tracked = frames.iter().filter(|(_, meta)| meta.is_tracked()).count() as u32;
        if resident != self.tracked
            || tracked != self.tracked
            || hot != self.hot
            || ghosts != self.ghosts_in_use
        {
            return Err(Self::fail(
                "resident, hot or ghost counts differ from the clock",
                None,
            ));
        }
        for hand in [self.ring.cold, self.ring.test] {
            let on_clock = match hand.checked_sub(n) {
                _ if hand == NIL => true,
                Some(g) => self
                    .ghosts
                    .get(g as usize)
                    .is_some_and(|ghost| ghost.in_use),
                None => frames.meta(hand).is_tracked(),
            };
            if !on_clock {
                return Err(Self::fail("hand points outside the clock", None));
            }
        }
        Ok(())
    }
}
