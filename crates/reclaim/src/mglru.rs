//! Multi-generational LRU after Linux 6.1 (`mm/vmscan.c` `lru_gen_*`, `mm/workingset.c`).
//!
//! * **Generations.** `max_seq` (shared) and `min_seq[type]` (anon, file) bound a sliding window
//!   of 2..=4 live generations. A frame's generation is stored in its list id as `seq % 4 + 1`
//!   (0 = on no list); each generation and type has its own list, newest at the head.
//! * **Aging** ([`Mglru::isolate`] runs it when `should_run_aging` says so) walks the page tables
//!   of every address space that ran since the last walk, test-and-clears the young bits and
//!   promotes young frames to `max_seq` by rewriting the list id only; the list move is lazy
//!   (the eviction sorts them). Then `max_seq` is incremented. Leaf tables dense with young
//!   entries go into a Bloom filter that the next walk uses to skip cold tables; two filters
//!   alternate, one per walk.
//! * **Eviction** scans the tail of the oldest generation of the chosen type: promoted frames are
//!   moved to their generation, pinned/under-I/O frames to the next one, frames of a protected
//!   tier to the next one; the rest get a final young check (found young: promoted, plus a
//!   look-around over up to 64 PTE neighbours that also feeds the Bloom filter) and are isolated.
//! * **Tiers.** A frame's refs count the aging intervals in which it was found young (beyond
//!   the young bit left by its instantiating fault); tier = `ceil(log2(refs + 1))`, 0..=3. A PID
//!   style controller compares refaulted / (evicted + protected) of each tier against tier 0 of
//!   the oldest generation, with exponential smoothing across generations, to decide which tiers
//!   to protect, and compares anon against file the same way to choose the type to evict.
//! * **Shadow tokens** remember the evicted generation, the type and the refs; a refault whose
//!   generation is still the oldest counts against its tier and restores its refs.
//! * **min_ttl**: when the oldest generation is younger than `min_ttl_ms`, eviction refuses with
//!   [`ReclaimError::Thrashing`] so the kernel can fail the allocation instead of livelocking.

use alloc::boxed::Box;
use alloc::vec;
use core::fmt;

use crate::env::{AccessEnv, PageTableVisitor};
use crate::frame::{FrameId, FrameTable, LeafTableId, PageKey, pflags};
use crate::list::List;
use crate::policy::{
    InvariantError, PolicyConfig, PolicyError, PolicyKind, PolicyStats, ReclaimError,
    ReclaimPolicy, ShadowToken, check_isolated, check_tracked, check_untracked,
};

/// Generations a type can hold at most (list ids 1..=4).
pub const MAX_NR_GENS: u64 = 4;
/// Generations a type always holds; eviction stalls at this count until aging makes another.
pub const MIN_NR_GENS: u64 = 2;
/// Tiers per generation.
pub const MAX_NR_TIERS: usize = 4;
/// Refaults a tier needs before the controller trusts its rate; also the smoothing offset.
const MIN_LRU_BATCH: u64 = 64;
/// Frames one eviction batch may examine.
const MAX_LRU_BATCH: u32 = 4096;
/// Saturation value of refs; a frame at it is always protected once.
const REFS_MAX: u8 = 4;
/// Agings one `isolate` call may run before it gives up.
const MAX_AGINGS_PER_CALL: u32 = MAX_NR_GENS as u32;
/// A refault counts against its tier while fewer than this many generations have been evicted
/// since its own: its refault distance is then within about one memory size. (Linux counts only
/// refaults while the page's generation is still the oldest; with page-table accesses alone the
/// reuse distances of a working set span several generations, and that window lets almost none
/// through.)
const REFAULT_WINDOW: u64 = MAX_NR_GENS;
/// Bits of the generation number kept in a shadow token.
const TOKEN_SEQ_BITS: u32 = 24;
const TOKEN_SEQ_MASK: u64 = (1 << TOKEN_SEQ_BITS) - 1;
/// Address spaces tracked by the "walked before" bitmap (16-bit ids).
const ADDRESS_SPACES: usize = 1 << 16;

const ANON: usize = 0;
const FILE: usize = 1;
const TYPE_NAMES: [&str; 2] = ["anon", "file"];

const fn gen_from_seq(seq: u64) -> usize {
    (seq % MAX_NR_GENS) as usize
}

/// Tier of a frame with `refs` accesses: `order_base_2(refs + 1)`.
const fn tier_from_refs(refs: u8) -> usize {
    match refs {
        0 => 0,
        1 => 1,
        2 | 3 => 2,
        _ => 3,
    }
}

/// Whether a leaf table with `young` of `present` PTEs young is worth scanning again: on
/// average at least one young PTE per cache line (8 descriptors of 8 bytes).
const fn suitable_to_scan(present: u32, young: u32) -> bool {
    young as u64 * 8 >= present as u64
}

/// Typed counters of MGLRU's own work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MglruStats {
    /// Agings (increments of `max_seq`).
    pub agings: u64,
    /// Address spaces walked.
    pub spaces_walked: u64,
    /// Address spaces skipped because they had not run since the last walk.
    pub spaces_skipped: u64,
    /// Leaf tables scanned by walks.
    pub tables_scanned: u64,
    /// Leaf tables skipped by walks because the Bloom filter said cold.
    pub tables_skipped: u64,
    /// Frames found young by walks.
    pub walk_young: u64,
    /// Look-arounds run by the eviction.
    pub look_arounds: u64,
    /// Frames found young by look-arounds.
    pub look_around_young: u64,
    /// Frames the eviction moved to the generation they had been promoted to.
    pub sorted: u64,
    /// Frames the eviction found young and promoted.
    pub activated: u64,
    /// Frames the eviction moved to the next generation because their tier was protected.
    pub protected: u64,
    /// `isolate` calls refused as thrashing (min_ttl).
    pub thrash_reports: u64,
}

/// Per-type, per-tier counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TierCounts {
    refaulted: [[u64; MAX_NR_TIERS]; 2],
    evicted: [[u64; MAX_NR_TIERS]; 2],
    protected: [[u64; MAX_NR_TIERS]; 2],
}

/// One input of the feedback loop: a refault rate with its gain.
#[derive(Clone, Copy, Debug)]
struct CtrlPos {
    refaulted: u64,
    total: u64,
    gain: u64,
}

/// Linux `positive_ctrl_err`: true when the process variable `pv` has few refaults or a rate no
/// higher than the set point `sp` (scaled by the gains); then `pv` needs no protection.
fn positive_ctrl_err(sp: CtrlPos, pv: CtrlPos) -> bool {
    pv.refaulted < MIN_LRU_BATCH
        || pv.refaulted * (sp.total + MIN_LRU_BATCH) * sp.gain
            <= (sp.refaulted + 1) * pv.total * pv.gain
}

/// Bloom filter over leaf-table ids: 2^15 bits, two hash functions (Linux's parameters).
#[derive(Clone, Debug)]
struct Bloom {
    bits: Box<[u64]>,
}

impl Bloom {
    const SHIFT: u32 = 15;

    fn new() -> Self {
        Self {
            bits: vec![0; (1 << Self::SHIFT) / 64].into_boxed_slice(),
        }
    }

    fn keys(table: LeafTableId) -> [usize; 2] {
        let hash = (table.0.wrapping_mul(0x61C8_8646_80B5_83EB) >> (64 - 2 * Self::SHIFT)) as usize;
        [hash & ((1 << Self::SHIFT) - 1), hash >> Self::SHIFT]
    }

    fn insert(&mut self, table: LeafTableId) {
        for key in Self::keys(table) {
            self.bits[key / 64] |= 1 << (key % 64);
        }
    }

    fn contains(&self, table: LeafTableId) -> bool {
        Self::keys(table)
            .iter()
            .all(|&key| self.bits[key / 64] & (1 << (key % 64)) != 0)
    }

    fn clear(&mut self) {
        self.bits.fill(0);
    }
}

/// The multi-generational LRU.
#[derive(Debug)]
pub struct Mglru {
    config: PolicyConfig,
    max_seq: u64,
    min_seq: [u64; 2],
    /// Lists by generation index and type; a frame is on the list of its `list_gen`.
    lists: [[List; 2]; MAX_NR_GENS as usize],
    /// Frames by generation in their list id (promotions counted at once) and type.
    nr_pages: [[u32; 2]; MAX_NR_GENS as usize],
    birth_ms: [u64; MAX_NR_GENS as usize],
    /// Feedback-loop counts of the current oldest generation.
    ctrl: TierCounts,
    /// Smoothed refaulted and total of earlier oldest generations.
    avg_refaulted: [[u64; MAX_NR_TIERS]; 2],
    avg_total: [[u64; MAX_NR_TIERS]; 2],
    /// Cumulative counts for the debug view.
    totals: TierCounts,
    /// Filters indexed by `seq % 2`: walk `max_seq` tests filter `max_seq % 2` and fills the other.
    bloom: [Bloom; 2],
    /// Whether a filter has been filled by a walk (an unfilled one lets every table through).
    bloom_filled: [bool; 2],
    /// Address spaces walked at least once (a new one is walked in full).
    walked: Box<[u64]>,
    tracked: u32,
    stats: PolicyStats,
    mglru_stats: MglruStats,
}

impl Mglru {
    /// A policy for a table of `frames` frames (its storage does not depend on the count).
    pub fn new(_frames: u32, config: &PolicyConfig) -> Self {
        Self {
            config: *config,
            max_seq: MIN_NR_GENS + 1,
            min_seq: [0; 2],
            lists: [[List::new(); 2]; MAX_NR_GENS as usize],
            nr_pages: [[0; 2]; MAX_NR_GENS as usize],
            birth_ms: [0; MAX_NR_GENS as usize],
            ctrl: TierCounts::default(),
            avg_refaulted: [[0; MAX_NR_TIERS]; 2],
            avg_total: [[0; MAX_NR_TIERS]; 2],
            totals: TierCounts::default(),
            bloom: [Bloom::new(), Bloom::new()],
            bloom_filled: [false; 2],
            walked: vec![0; ADDRESS_SPACES / 64].into_boxed_slice(),
            tracked: 0,
            stats: PolicyStats::default(),
            mglru_stats: MglruStats::default(),
        }
    }

    /// MGLRU's own counters.
    pub fn mglru_stats(&self) -> MglruStats {
        self.mglru_stats
    }

    /// The youngest generation number.
    pub fn max_seq(&self) -> u64 {
        self.max_seq
    }

    /// The oldest generation number of anon (`[0]`) and file (`[1]`) frames.
    pub fn min_seq(&self) -> [u64; 2] {
        self.min_seq
    }

    fn can_swap(&self) -> bool {
        self.config.swappiness > 0
    }

    fn nr_gens(&self, ty: usize) -> u64 {
        self.max_seq - self.min_seq[ty] + 1
    }

    fn type_of(frames: &FrameTable, frame: u32) -> usize {
        if frames.meta(frame).is_anon() {
            ANON
        } else {
            FILE
        }
    }

    /// Linux `should_run_aging`: aging is due when the type that can be evicted is down to
    /// [`MIN_NR_GENS`], or has three generations with the youngest holding over half of the
    /// frames or the oldest under a quarter.
    fn should_run_aging(&self) -> bool {
        let first_type = usize::from(!self.can_swap());
        let min_seq = self.min_seq[first_type];
        if min_seq + MIN_NR_GENS > self.max_seq {
            return true;
        }
        if min_seq + MIN_NR_GENS < self.max_seq {
            return false;
        }
        let (mut young, mut old, mut total) = (0u64, 0u64, 0u64);
        for ty in first_type..2 {
            for seq in self.min_seq[ty]..=self.max_seq {
                let size = u64::from(self.nr_pages[gen_from_seq(seq)][ty]);
                total += size;
                if seq == self.max_seq {
                    young += size;
                } else if seq + MIN_NR_GENS == self.max_seq {
                    old += size;
                }
            }
        }
        young * MIN_NR_GENS > total || old * (MIN_NR_GENS + 2) < total
    }

    /// A young bit was found (and cleared) on `frame`. The first young bit after the
    /// instantiating fault is that fault's own access, already credited by placing the frame in
    /// the youngest generation: it only clears `FRESH`. Any later one promotes the frame to the
    /// youngest generation by rewriting its list id (the list move is left to the eviction) and
    /// counts the access in its refs. Returns whether the frame was promoted.
    fn promote(&mut self, frames: &mut FrameTable, frame: u32) -> bool {
        if frame >= frames.len() {
            return false;
        }
        let ty = Self::type_of(frames, frame);
        let new_gen = gen_from_seq(self.max_seq);
        let meta = frames.meta_mut(frame);
        if !meta.is_tracked() || meta.is_isolated() {
            return false;
        }
        if meta.has(pflags::FRESH) {
            meta.clear(pflags::FRESH);
            return false;
        }
        meta.set_refs(meta.refs().saturating_add(1).min(REFS_MAX));
        let old_gen = usize::from(meta.list_id() - 1);
        if old_gen != new_gen {
            meta.set_list_id(new_gen as u8 + 1);
            self.nr_pages[old_gen][ty] -= 1;
            self.nr_pages[new_gen][ty] += 1;
        }
        true
    }

    /// Move a listed frame to the list of generation `generation`, at the head or the tail.
    fn relist(
        &mut self,
        frames: &mut FrameTable,
        frame: u32,
        ty: usize,
        generation: usize,
        at_head: bool,
    ) {
        let meta = frames.meta(frame);
        let old_counted = usize::from(meta.list_id() - 1);
        self.lists[meta.list_gen()][ty].remove(frames, frame);
        if old_counted != generation {
            self.nr_pages[old_counted][ty] -= 1;
            self.nr_pages[generation][ty] += 1;
        }
        let meta = frames.meta_mut(frame);
        meta.set_list_id(generation as u8 + 1);
        meta.set_list_gen(generation);
        if at_head {
            self.lists[generation][ty].push_head(frames, frame);
        } else {
            self.lists[generation][ty].push_tail(frames, frame);
        }
    }

    /// Take a listed frame off its list (for isolation or freeing).
    fn unlist(&mut self, frames: &mut FrameTable, frame: u32) {
        let ty = Self::type_of(frames, frame);
        let meta = frames.meta(frame);
        let counted = usize::from(meta.list_id() - 1);
        self.lists[meta.list_gen()][ty].remove(frames, frame);
        self.nr_pages[counted][ty] -= 1;
        frames.meta_mut(frame).set_list_id(0);
    }

    /// Put an untracked-by-lists frame at the head of the youngest generation.
    fn list_youngest(&mut self, frames: &mut FrameTable, frame: u32) {
        let ty = Self::type_of(frames, frame);
        let generation = gen_from_seq(self.max_seq);
        let meta = frames.meta_mut(frame);
        meta.set_list_id(generation as u8 + 1);
        meta.set_list_gen(generation);
        self.lists[generation][ty].push_head(frames, frame);
        self.nr_pages[generation][ty] += 1;
    }

    /// Aging: walk the page tables, then open a new generation.
    fn age(&mut self, frames: &mut FrameTable, env: &mut dyn AccessEnv) {
        let test_filter = (self.max_seq % 2) as usize;
        let fill_filter = 1 - test_filter;
        self.bloom[fill_filter].clear();
        self.bloom_filled[fill_filter] = true;
        let use_filter = self.bloom_filled[test_filter];
        let mut space = env.next_address_space(None);
        while let Some(asid) = space {
            let word = usize::from(asid.0) / 64;
            let bit = 1u64 << (asid.0 % 64);
            let first_walk = self.walked[word] & bit == 0;
            self.walked[word] |= bit;
            if env.take_ran_since_walk(asid) || first_walk {
                self.mglru_stats.spaces_walked += 1;
                let mut walker = Walker {
                    mglru: self,
                    frames,
                    test_filter,
                    full_scan: first_walk || !use_filter,
                };
                env.walk_page_tables(asid, &mut walker);
            } else {
                self.mglru_stats.spaces_skipped += 1;
            }
            space = env.next_address_space(Some(asid));
        }
        self.inc_max_seq(env.now_ms());
    }

    /// Open generation `max_seq + 1`. A type already at [`MAX_NR_GENS`] (only anon, when it
    /// cannot be swapped) first gives up its oldest generation: its list becomes the new youngest.
    fn inc_max_seq(&mut self, now_ms: u64) {
        if self.nr_gens(ANON) == MAX_NR_GENS {
            self.carry_over_ctrl(ANON);
            self.min_seq[ANON] += 1;
        }
        self.max_seq += 1;
        self.birth_ms[gen_from_seq(self.max_seq)] = now_ms;
        self.mglru_stats.agings += 1;
    }

    /// Advance `min_seq` past empty oldest generations (keeping [`MIN_NR_GENS`]); anon never gets
    /// ahead of file. Returns whether anything moved.
    fn try_to_inc_min_seq(&mut self) -> bool {
        let can_swap = self.can_swap();
        let mut min_seq = self.min_seq;
        for (ty, seq) in min_seq.iter_mut().enumerate().skip(usize::from(!can_swap)) {
            while *seq + MIN_NR_GENS <= self.max_seq
                && self.lists[gen_from_seq(*seq)][ty].is_empty()
            {
                *seq += 1;
            }
        }
        if can_swap {
            min_seq[ANON] = min_seq[ANON].min(min_seq[FILE]);
            min_seq[FILE] = min_seq[ANON].max(self.min_seq[FILE]);
        }
        let mut moved = false;
        for (ty, &seq) in min_seq.iter().enumerate() {
            if seq != self.min_seq[ty] {
                self.carry_over_ctrl(ty);
                self.min_seq[ty] = seq;
                moved = true;
            }
        }
        moved
    }

    /// The oldest generation of `ty` is done: fold its counts into the running averages.
    fn carry_over_ctrl(&mut self, ty: usize) {
        for tier in 0..MAX_NR_TIERS {
            self.avg_refaulted[ty][tier] =
                (self.avg_refaulted[ty][tier] + self.ctrl.refaulted[ty][tier]) / 2;
            let total = self.ctrl.evicted[ty][tier] + self.ctrl.protected[ty][tier];
            self.avg_total[ty][tier] = (self.avg_total[ty][tier] + total) / 2;
            self.ctrl.refaulted[ty][tier] = 0;
            self.ctrl.evicted[ty][tier] = 0;
            self.ctrl.protected[ty][tier] = 0;
        }
    }

    fn read_ctrl_pos(&self, ty: usize, tier: usize, gain: u64) -> CtrlPos {
        CtrlPos {
            refaulted: self.avg_refaulted[ty][tier] + self.ctrl.refaulted[ty][tier],
            total: self.avg_total[ty][tier]
                + self.ctrl.evicted[ty][tier]
                + self.ctrl.protected[ty][tier],
            gain,
        }
    }

    /// Highest tier of `ty` to evict: tiers above it refault more than tier 0 (gain 1:2) and
    /// are protected.
    fn tier_to_evict(&self, ty: usize) -> usize {
        let sp = self.read_ctrl_pos(ty, 0, 1);
        (1..MAX_NR_TIERS)
            .find(|&tier| !positive_ctrl_err(sp, self.read_ctrl_pos(ty, tier, 2)))
            .unwrap_or(MAX_NR_TIERS)
            - 1
    }

    /// Type to evict when both are equally old: the one whose first tier refaults less
    /// (weighted by swappiness), and the highest tier of it to evict.
    fn type_to_scan(&self) -> (usize, usize) {
        let swappiness = u64::from(self.config.swappiness);
        let gain = [swappiness, 200 - swappiness];
        let sp = self.read_ctrl_pos(ANON, 0, gain[ANON]);
        let pv = self.read_ctrl_pos(FILE, 0, gain[FILE]);
        let ty = usize::from(positive_ctrl_err(sp, pv));
        let sp = self.read_ctrl_pos(1 - ty, 0, gain[1 - ty]);
        let tier = (1..MAX_NR_TIERS)
            .find(|&tier| !positive_ctrl_err(sp, self.read_ctrl_pos(ty, tier, gain[ty])))
            .unwrap_or(MAX_NR_TIERS)
            - 1;
        (ty, tier)
    }

    /// One eviction batch; returns (frames scanned, frames isolated into `victims`).
    fn evict_batch(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        victims: &mut [FrameId],
    ) -> (u32, usize) {
        let swappiness = self.config.swappiness;
        let (mut ty, mut tier) = if swappiness == 0 {
            (FILE, None)
        } else if self.min_seq[ANON] < self.min_seq[FILE] {
            (ANON, None)
        } else if swappiness == 1 {
            (FILE, None)
        } else if swappiness == 200 {
            (ANON, None)
        } else {
            let (ty, tier) = self.type_to_scan();
            (ty, Some(tier))
        };
        for _ in usize::from(swappiness == 0)..2 {
            let tier_to_evict = tier.unwrap_or_else(|| self.tier_to_evict(ty));
            let (scanned, isolated) = self.scan(frames, env, ty, tier_to_evict, victims);
            if scanned > 0 {
                return (scanned, isolated);
            }
            ty = 1 - ty;
            tier = None;
        }
        (0, 0)
    }

    /// Scan the tail of the oldest generation of `ty`; returns (scanned, isolated).
    fn scan(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        ty: usize,
        tier_to_evict: usize,
        victims: &mut [FrameId],
    ) -> (u32, usize) {
        if self.nr_gens(ty) <= MIN_NR_GENS {
            return (0, 0);
        }
        let generation = gen_from_seq(self.min_seq[ty]);
        let (mut scanned, mut isolated) = (0, 0);
        while isolated < victims.len() && scanned < MAX_LRU_BATCH {
            let Some(frame) = self.lists[generation][ty].tail() else {
                break;
            };
            scanned += 1;
            if self.sort(frames, frame, ty, tier_to_evict) {
                continue;
            }
            // The final reference check, as the rmap walk in shrink_folio_list does.
            let owner = frames.meta(frame).owner();
            self.stats.ptes_tested += 1;
            if env.test_and_clear_young(FrameId(frame), owner) {
                if self.promote(frames, frame) {
                    self.relist(frames, frame, ty, gen_from_seq(self.max_seq), true);
                    self.mglru_stats.activated += 1;
                } else {
                    // Young only since its fault as far as we know: a second trip, one
                    // generation on (its table was skipped by the walks until now).
                    self.relist(frames, frame, ty, gen_from_seq(self.min_seq[ty] + 1), true);
                }
                self.look_around(frames, env, frame, owner);
                continue;
            }
            self.unlist(frames, frame);
            frames.meta_mut(frame).set(pflags::ISOLATED);
            victims[isolated] = FrameId(frame);
            isolated += 1;
        }
        self.stats.scanned += u64::from(scanned);
        (scanned, isolated)
    }

    /// Linux `sort_folio`: move a frame that must not be evicted now; true if moved.
    fn sort(
        &mut self,
        frames: &mut FrameTable,
        frame: u32,
        ty: usize,
        tier_to_evict: usize,
    ) -> bool {
        let meta = *frames.meta(frame);
        let generation = usize::from(meta.list_id() - 1);
        let oldest = gen_from_seq(self.min_seq[ty]);
        let next = gen_from_seq(self.min_seq[ty] + 1);
        if generation != oldest {
            // Promoted by aging or look-around: file it under its generation.
            self.relist(frames, frame, ty, generation, true);
            self.mglru_stats.sorted += 1;
            return true;
        }
        let tier = tier_from_refs(meta.refs());
        if tier > tier_to_evict || meta.refs() == REFS_MAX {
            // Protected: one more generation. A tier the controller protects keeps its refs (the
            // controller withdraws protection when the tier stops refaulting); a frame protected
            // only for its saturated refs halves them, so a stale frame cannot stay forever.
            self.relist(frames, frame, ty, next, false);
            if tier <= tier_to_evict {
                frames.meta_mut(frame).set_refs(meta.refs() / 2);
            }
            self.ctrl.protected[ty][tier] += 1;
            self.totals.protected[ty][tier] += 1;
            self.mglru_stats.protected += 1;
            return true;
        }
        if meta.is_busy() {
            self.relist(frames, frame, ty, next, true);
            return true;
        }
        false
    }

    /// Linux `lru_gen_look_around`: promote the young PTE neighbours of a young frame and feed
    /// the table back to the next walk if it is dense with young entries.
    fn look_around(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        frame: u32,
        owner: PageKey,
    ) {
        self.mglru_stats.look_arounds += 1;
        let result = env.look_around(FrameId(frame), owner, &mut |young| {
            self.promote(frames, young.0);
        });
        self.stats.ptes_tested += u64::from(result.present);
        self.mglru_stats.look_around_young += u64::from(result.young);
        // The centre frame counts as young.
        if suitable_to_scan(result.present + 1, result.young + 1) {
            self.bloom[(self.max_seq % 2) as usize].insert(result.table);
        }
    }

    /// Generation number of generation index `generation` for `ty`, if inside the window.
    fn seq_of(&self, ty: usize, generation: usize) -> Option<u64> {
        (self.min_seq[ty]..=self.max_seq).find(|&seq| gen_from_seq(seq) == generation)
    }

    /// Oldest generation holding frames, over both types.
    fn oldest_populated_seq(&self) -> Option<u64> {
        (0..2)
            .filter_map(|ty| {
                (self.min_seq[ty]..=self.max_seq)
                    .find(|&seq| self.nr_pages[gen_from_seq(seq)][ty] > 0)
            })
            .min()
    }

    fn fail(what: &'static str, frame: Option<u32>) -> InvariantError {
        InvariantError {
            policy: PolicyKind::Mglru,
            what,
            frame: frame.map(FrameId),
        }
    }
}

/// A page-table walk on behalf of [`Mglru::age`].
struct Walker<'a> {
    mglru: &'a mut Mglru,
    frames: &'a mut FrameTable,
    test_filter: usize,
    full_scan: bool,
}

impl PageTableVisitor for Walker<'_> {
    fn wants_table(&mut self, table: LeafTableId) -> bool {
        if self.full_scan || self.mglru.bloom[self.test_filter].contains(table) {
            self.mglru.mglru_stats.tables_scanned += 1;
            true
        } else {
            self.mglru.mglru_stats.tables_skipped += 1;
            false
        }
    }

    fn young(&mut self, frame: FrameId) {
        self.mglru.mglru_stats.walk_young += 1;
        self.mglru.promote(self.frames, frame.0);
    }

    fn table_done(&mut self, table: LeafTableId, present: u32, young: u32) {
        self.mglru.stats.ptes_tested += u64::from(present);
        if suitable_to_scan(present, young) {
            // Carry the table over to the next walk.
            self.mglru.bloom[1 - self.test_filter].insert(table);
        }
    }
}

impl ReclaimPolicy for Mglru {
    fn kind(&self) -> PolicyKind {
        PolicyKind::Mglru
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
        frames.meta_mut(frame.0).track(owner);
        frames.meta_mut(frame.0).set(pflags::FRESH);
        let ty = Self::type_of(frames, frame.0);
        if let Some(payload) = shadow.and_then(|s| s.payload(PolicyKind::Mglru)) {
            let seq = u64::from(payload >> 6);
            let token_type = ((payload >> 5) & 1) as usize;
            let refs = (payload & 31).min(u32::from(REFS_MAX)) as u8;
            if token_type == ty
                && (self.min_seq[ty].wrapping_sub(seq) & TOKEN_SEQ_MASK) < REFAULT_WINDOW
            {
                let tier = tier_from_refs(refs);
                self.ctrl.refaulted[ty][tier] += 1;
                self.totals.refaulted[ty][tier] += 1;
                self.stats.shadow_hits += 1;
                // A refault of the working set: it keeps (at least the first step of) its tier.
                frames.meta_mut(frame.0).set_refs(refs.max(1));
            }
        }
        self.list_youngest(frames, frame.0);
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
        if victims.is_empty() || self.tracked == 0 {
            return Ok(0);
        }
        if self.config.min_ttl_ms > 0
            && let Some(seq) = self.oldest_populated_seq()
        {
            let oldest_age_ms = env
                .now_ms()
                .saturating_sub(self.birth_ms[gen_from_seq(seq)]);
            if oldest_age_ms < self.config.min_ttl_ms {
                self.mglru_stats.thrash_reports += 1;
                return Err(ReclaimError::Thrashing {
                    oldest_age_ms,
                    min_ttl_ms: self.config.min_ttl_ms,
                });
            }
        }
        let budget = 2 * u64::from(self.tracked) + u64::from(MAX_LRU_BATCH);
        let (mut isolated, mut agings, mut scanned) = (0, 0, 0u64);
        while isolated < victims.len() && scanned < budget {
            if self.should_run_aging() {
                if agings == MAX_AGINGS_PER_CALL {
                    break;
                }
                self.age(frames, env);
                agings += 1;
            }
            let (batch_scanned, batch_isolated) =
                self.evict_batch(frames, env, &mut victims[isolated..]);
            isolated += batch_isolated;
            scanned += u64::from(batch_scanned);
            let advanced = self.try_to_inc_min_seq();
            if batch_scanned == 0 && !advanced && !self.should_run_aging() {
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
        let ty = Self::type_of(frames, frame.0);
        let refs = frames.meta(frame.0).refs();
        let tier = tier_from_refs(refs);
        self.ctrl.evicted[ty][tier] += 1;
        self.totals.evicted[ty][tier] += 1;
        let seq = (self.min_seq[ty] & TOKEN_SEQ_MASK) as u32;
        frames.meta_mut(frame.0).untrack();
        self.tracked -= 1;
        self.stats.evicted += 1;
        Ok(ShadowToken::new(
            PolicyKind::Mglru,
            (seq << 6) | ((ty as u32) << 5) | u32::from(refs),
        ))
    }

    fn putback(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_isolated(frames, frame)?;
        frames.meta_mut(frame.0).clear(pflags::ISOLATED);
        // It is in use again: not back to the oldest generation.
        self.list_youngest(frames, frame.0);
        self.stats.putbacks += 1;
        Ok(())
    }

    fn free(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        check_tracked(frames, frame)?;
        if !frames.meta(frame.0).is_isolated() {
            self.unlist(frames, frame.0);
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

    /// The `lru_gen` view: one row per generation (`seq age_ms nr_anon nr_file`), then the
    /// cumulative refaulted/evicted/protected counts per tier and type, then the counters.
    fn write_debug(&self, now_ms: u64, out: &mut dyn fmt::Write) -> fmt::Result {
        writeln!(
            out,
            "mglru max_seq {} min_seq anon {} file {} tracked {}",
            self.max_seq, self.min_seq[ANON], self.min_seq[FILE], self.tracked
        )?;
        writeln!(
            out,
            "{:>8} {:>10} {:>8} {:>8}",
            "seq", "age_ms", "nr_anon", "nr_file"
        )?;
        for seq in self.min_seq[ANON].min(self.min_seq[FILE])..=self.max_seq {
            let generation = gen_from_seq(seq);
            let count = |ty: usize| {
                if seq >= self.min_seq[ty] {
                    self.nr_pages[generation][ty]
                } else {
                    0
                }
            };
            let age = now_ms.saturating_sub(self.birth_ms[generation]);
            writeln!(
                out,
                "{seq:>8} {age:>10} {:>8} {:>8}",
                count(ANON),
                count(FILE)
            )?;
        }
        writeln!(
            out,
            "tiers evicted up to: anon {} file {} (higher tiers are protected)",
            self.tier_to_evict(ANON),
            self.tier_to_evict(FILE)
        )?;
        writeln!(
            out,
            "{:>8} {:>4} {:>10} {:>10} {:>10}",
            "tier", "type", "refaulted", "evicted", "protected"
        )?;
        for tier in 0..MAX_NR_TIERS {
            for ty in [ANON, FILE] {
                writeln!(
                    out,
                    "{tier:>8} {:>4} {:>10} {:>10} {:>10}",
                    TYPE_NAMES[ty],
                    self.totals.refaulted[ty][tier],
                    self.totals.evicted[ty][tier],
                    self.totals.protected[ty][tier]
                )?;
            }
        }
        let s = &self.mglru_stats;
        writeln!(
            out,
            "agings {} walked {} skipped_spaces {} tables {} skipped_tables {} walk_young {} look_arounds {} \
             look_around_young {} sorted {} activated {} protected {} thrashing {}",
            s.agings,
            s.spaces_walked,
            s.spaces_skipped,
            s.tables_scanned,
            s.tables_skipped,
            s.walk_young,
            s.look_arounds,
            s.look_around_young,
            s.sorted,
            s.activated,
            s.protected,
            s.thrash_reports
        )
    }

    fn check_invariants(&self, frames: &FrameTable) -> Result<(), InvariantError> {
        for ty in 0..2 {
            let gens = self.nr_gens(ty);
            if !(MIN_NR_GENS..=MAX_NR_GENS).contains(&gens) {
                return Err(Self::fail("generation window outside 2..=4", None));
            }
        }
        if self.can_swap() && self.min_seq[ANON] > self.min_seq[FILE] {
            return Err(Self::fail("anon min_seq is ahead of file min_seq", None));
        }
        let mut counted = [[0u32; 2]; MAX_NR_GENS as usize];
        let mut listed = 0;
        for generation in 0..MAX_NR_GENS as usize {
            for (ty, list) in self.lists[generation].iter().enumerate() {
                let list_seq = self.seq_of(ty, generation);
                if list_seq.is_none() && !list.is_empty() {
                    return Err(Self::fail(
                        "list of a generation outside the window is not empty",
                        None,
                    ));
                }
                let mut bad = None;
                list.walk_checked(frames, frames.len(), |node| {
                    let meta = frames.meta(node);
                    let ok = meta.is_tracked()
                        && !meta.is_isolated()
                        && meta.list_id() != 0
                        && meta.list_gen() == generation
                        && Self::type_of(frames, node) == ty
                        && match (list_seq, self.seq_of(ty, usize::from(meta.list_id()) - 1)) {
                            // Promotion only ever moves a frame to a younger generation.
                            (Some(on), Some(counted_in)) => counted_in >= on,
                            _ => false,
                        };
                    if ok {
                        counted[usize::from(meta.list_id()) - 1][ty] += 1;
                    } else if bad.is_none() {
                        bad = Some(node);
                    }
                })
                .ok_or_else(|| Self::fail("list links are inconsistent", None))?;
                if let Some(node) = bad {
                    return Err(Self::fail(
                        "frame's generation, type or state does not match its list",
                        Some(node),
                    ));
                }
                listed += list.len();
            }
        }
        if counted != self.nr_pages {
            return Err(Self::fail(
                "per-generation counts differ from the lists",
                None,
            ));
        }
        let (mut tracked, mut unisolated) = (0, 0);
        for (frame, meta) in frames.iter() {
            if meta.is_tracked() {
                tracked += 1;
                if !meta.is_isolated() {
                    unisolated += 1;
                    if meta.list_id() == 0 {
                        return Err(Self::fail("tracked frame is on no list", Some(frame.0)));
                    }
                }
                if meta.refs() > REFS_MAX {
                    return Err(Self::fail("refs above the maximum", Some(frame.0)));
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

/// Whether `space` has been walked before (for tests of the full first walk).
#[cfg(test)]
impl Mglru {
    fn has_walked(&self, space: crate::frame::AddressSpaceId) -> bool {
        self.walked[usize::from(space.0) / 64] & (1 << (space.0 % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_follow_order_base_2() {
        assert_eq!([0, 1, 2, 3, 4, 9].map(tier_from_refs), [0, 1, 2, 2, 3, 3]);
    }

    #[test]
    fn bloom_filter_remembers_and_clears() {
        let mut bloom = Bloom::new();
        let tables: [LeafTableId; 3] = [LeafTableId(1), LeafTableId(77), LeafTableId(1 << 40)];
        for table in tables {
            assert!(!bloom.contains(table));
            bloom.insert(table);
        }
        assert!(tables.iter().all(|&t| bloom.contains(t)));
        // With 3 entries in 2^15 bits, unrelated ids are (almost all) absent.
        let false_positives = (1000..2000)
            .filter(|&i| bloom.contains(LeafTableId(i)))
            .count();
        assert!(false_positives < 5, "{false_positives} false positives");
        bloom.clear();
        assert!(!bloom.contains(LeafTableId(77)));
    }

    #[test]
    fn controller_protects_only_with_enough_refaults() {
        let sp = CtrlPos {
            refaulted: 0,
            total: 1000,
            gain: 1,
        };
        // Few refaults: no protection (positive error).
        assert!(positive_ctrl_err(
            sp,
            CtrlPos {
                refaulted: 63,
                total: 100,
                gain: 2
            }
        ));
        // Many refaults at a high rate versus a quiet tier 0: protect.
        assert!(!positive_ctrl_err(
            sp,
            CtrlPos {
                refaulted: 500,
                total: 1000,
                gain: 2
            }
        ));
        // The same rate as tier 0 (within the 1:2 margin): no protection.
        let busy_sp = CtrlPos {
            refaulted: 400,
            total: 1000,
            gain: 1,
        };
        assert!(positive_ctrl_err(
            busy_sp,
            CtrlPos {
                refaulted: 500,
                total: 1000,
                gain: 2
            }
        ));
    }

    #[test]
    fn new_policy_has_a_valid_window() {
        let mglru = Mglru::new(16, &PolicyConfig::default());
        assert_eq!(mglru.max_seq(), 3);
        assert_eq!(mglru.min_seq(), [0, 0]);
        assert!(!mglru.has_walked(crate::frame::AddressSpaceId(0)));
        mglru.check_invariants(&FrameTable::new(16)).unwrap();
    }
}
