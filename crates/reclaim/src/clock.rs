//! CLOCK (second chance): one circular list, the hand at its tail. A frame under the hand whose
//! young bit is set gets the bit cleared and goes around again; the first old one is the victim.

use core::fmt;

use crate::env::AccessEnv;
use crate::frame::{FrameId, FrameTable, PageKey, pflags};
use crate::list::List;
use crate::policy::{
    InvariantError, PolicyError, PolicyKind, PolicyStats, ReclaimError, ReclaimPolicy, ShadowToken,
    check_isolated, check_tracked, check_untracked,
};

/// List id of frames on the clock.
const ON_CLOCK: u8 = 1;

/// CLOCK replacement.
#[derive(Debug)]
pub struct Clock {
    ring: List,
    tracked: u32,
    stats: PolicyStats,
}

impl Clock {
    /// A policy for a table of `frames` frames (the clock needs no per-frame storage of its own).
    pub fn new(_frames: u32) -> Self {
        Self {
            ring: List::new(),
            tracked: 0,
            stats: PolicyStats::default(),
        }
    }

    fn fail(what: &'static str, frame: Option<u32>) -> InvariantError {
        InvariantError {
            policy: PolicyKind::Clock,
            what,
            frame: frame.map(FrameId),
        }
    }
}

impl ReclaimPolicy for Clock {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Clock
    }

    fn fault_in(
        &mut self,
        frames: &mut FrameTable,
        _env: &mut dyn AccessEnv,
        frame: FrameId,
        owner: PageKey,
        _shadow: Option<ShadowToken>,
    ) -> Result<(), PolicyError> {
        check_untracked(frames, frame)?;
        let meta = frames.meta_mut(frame.0);
        meta.track(owner);
        meta.set_list_id(ON_CLOCK);
        self.ring.push_head(frames, frame.0);
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
        // Two sweeps: the first may only clear young bits.
        let mut budget = 2 * self.ring.len() + 1;
        while isolated < victims.len() && budget > 0 {
            let Some(frame) = self.ring.tail() else { break };
            budget -= 1;
            self.stats.scanned += 1;
            self.ring.remove(frames, frame);
            let meta = *frames.meta(frame);
            if meta.is_busy() {
                self.ring.push_head(frames, frame);
                continue;
            }
            self.stats.ptes_tested += 1;
            if env.test_and_clear_young(FrameId(frame), meta.owner()) {
                self.ring.push_head(frames, frame);
                continue;
            }
            let meta = frames.meta_mut(frame);
            meta.set_list_id(0);
            meta.set(pflags::ISOLATED);
            victims[isolated] = FrameId(frame);
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
        frames.meta_mut(frame.0).untrack();
        self.tracked -= 1;
        self.stats.evicted += 1;
        Ok(ShadowToken::new(PolicyKind::Clock, 0))
    }

    fn putback(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_isolated(frames, frame)?;
        let meta = frames.meta_mut(frame.0);
        meta.clear(pflags::ISOLATED);
        meta.set_list_id(ON_CLOCK);
        self.ring.push_head(frames, frame.0);
        self.stats.putbacks += 1;
        Ok(())
    }

    fn free(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_tracked(frames, frame)?;
        if !frames.meta(frame.0).is_isolated() {
            self.ring.remove(frames, frame.0);
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
        writeln!(
            out,
            "clock: {} frames tracked, {} on the clock",
            self.tracked,
            self.ring.len()
        )
    }

    fn check_invariants(&self, frames: &FrameTable) -> Result<(), InvariantError> {
        let mut bad = None;
        self.ring
            .walk_checked(frames, frames.len(), |node| {
                let meta = frames.meta(node);
                if bad.is_none()
                    && (!meta.is_tracked() || meta.is_isolated() || meta.list_id() != ON_CLOCK)
                {
                    bad = Some(node);
                }
            })
            .ok_or_else(|| Self::fail("clock links are inconsistent", None))?;
        if let Some(node) = bad {
            return Err(Self::fail(
                "frame on the clock is not tracked as listed",
                Some(node),
            ));
        }
        let (mut tracked, mut listed) = (0, 0);
        for (frame, meta) in frames.iter() {
            if meta.is_tracked() {
                tracked += 1;
                if !meta.is_isolated() {
                    listed += 1;
                    if meta.list_id() != ON_CLOCK {
                        return Err(Self::fail("tracked frame is on no list", Some(frame.0)));
                    }
                }
            }
        }
        if tracked != self.tracked || listed != self.ring.len() {
            return Err(Self::fail(
                "tracked or listed count differs from the frame table",
                None,
            ));
        }
        Ok(())
    }
}
