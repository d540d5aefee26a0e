//! A memory model that mirrors the kernel around a policy: a free-frame pool with watermarks,
//! page tables with young bits, faults, swap-outs and swap-ins. The simulator replays traces
//! through it; tests use it to drive policies end to end.
//!
//! * Every page of the footprint lives in address space 0 at the virtual page number its
//!   [`PageLayout`] gives; leaf tables group 512 consecutive virtual pages.
//! * An access to a resident page sets its young bit (and dirty bit on a write); an access to a
//!   non-resident page faults: a frame is taken from the free pool (reclaiming first when the
//!   pool is at or below the low watermark), the page is mapped young, and the policy is told,
//!   with the shadow token left at the page's last eviction.
//! * Reclaim isolates victims in batches of up to 32 until the pool reaches the high watermark.
//!   A victim that is dirty or has no valid swap copy costs a swap write; a clean page with a
//!   valid swap copy is dropped for free. Writing a page invalidates its swap copy.
//! * Time: [`ACCESSES_PER_MS`] accesses make one millisecond.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::env::{AccessEnv, LookAround, PageTableVisitor};
use crate::frame::{
    AddressSpaceId, FrameFlags, FrameId, FrameTable, LeafTableId, PTES_PER_TABLE, PageKey,
};
use crate::policy::{
    AnyPolicy, PolicyConfig, PolicyError, PolicyKind, ReclaimError, ReclaimPolicy, ShadowToken,
};

/// Accesses per simulated millisecond.
pub const ACCESSES_PER_MS: u64 = 1000;
/// Victims per `isolate` call (Linux `SWAP_CLUSTER_MAX`).
pub const RECLAIM_BATCH: usize = 32;
/// Half-width of the look-around window (64 PTEs).
const LOOK_AROUND_HALF: u64 = 32;
const NONE: u32 = u32::MAX;
/// The model's only address space.
const SPACE: AddressSpaceId = AddressSpaceId(0);

/// Free-frame watermarks: reclaim starts when an allocation finds `free <= low` and stops at
/// `free >= high`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watermarks {
    /// Reclaim trigger.
    pub low: u32,
    /// Reclaim target.
    pub high: u32,
}

impl Watermarks {
    /// The default for `frames` frames: `high = max(1, frames / 256)`, `low = high / 2`.
    pub fn for_frames(frames: u32) -> Self {
        let high = (frames / 256).max(1);
        Self {
            low: high / 2,
            high,
        }
    }
}

/// Where each page of a footprint sits in the virtual address space.
#[derive(Clone, Debug)]
pub struct PageLayout {
    vpns: Vec<u64>,
    /// Pages in virtual-address order.
    by_va: Vec<u32>,
    /// Index of each page in `by_va`.
    va_pos: Vec<u32>,
    /// Leaf tables in address order: id and the range of `by_va` they cover.
    tables: Vec<(LeafTableId, u32, u32)>,
    /// Index into `tables` of each page.
    table_of: Vec<u32>,
}

/// A layout that cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// Two pages share a virtual page number.
    DuplicateVpn(u64),
    /// A virtual page number needs more than 48 bits.
    VpnTooLarge(u64),
    /// More than 2^31 pages.
    TooManyPages,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::DuplicateVpn(vpn) => {
                write!(f, "virtual page {vpn:#x} appears twice in the layout")
            }
            LayoutError::VpnTooLarge(vpn) => {
                write!(f, "virtual page {vpn:#x} does not fit in 48 bits")
            }
            LayoutError::TooManyPages => f.write_str("a layout holds at most 2^31 pages"),
        }
    }
}

impl core::error::Error for LayoutError {}

impl PageLayout {
    /// Pages `0..pages` at virtual pages `0..pages`.
    pub fn contiguous(pages: u32) -> Self {
        Self::build((0..u64::from(pages)).collect())
    }

    /// Page `i` at virtual page `vpns[i]`.
    pub fn from_vpns(vpns: Vec<u64>) -> Result<Self, LayoutError> {
        if vpns.len() > 1 << 31 {
            return Err(LayoutError::TooManyPages);
        }
        if let Some(&vpn) = vpns.iter().find(|&&vpn| vpn > PageKey::MAX_VPN) {
            return Err(LayoutError::VpnTooLarge(vpn));
        }
        let layout = Self::build(vpns);
        if let Some(pair) = layout
            .by_va
            .windows(2)
            .find(|w| layout.vpns[w[0] as usize] == layout.vpns[w[1] as usize])
        {
            return Err(LayoutError::DuplicateVpn(layout.vpns[pair[0] as usize]));
        }
        Ok(layout)
    }

    fn build(vpns: Vec<u64>) -> Self {
        let mut by_va: Vec<u32> = (0..vpns.len() as u32).collect();
        by_va.sort_unstable_by_key(|&p| vpns[p as usize]);
        let mut va_pos = vec![0; vpns.len()];
        let mut table_of = vec![0; vpns.len()];
        let mut tables: Vec<(LeafTableId, u32, u32)> = Vec::new();
        for (pos, &page) in by_va.iter().enumerate() {
            va_pos[page as usize] = pos as u32;
            let id = PageKey::new(SPACE, vpns[page as usize]).leaf_table();
            match tables.last_mut() {
                Some((last, _, end)) if *last == id => *end = pos as u32 + 1,
                _ => tables.push((id, pos as u32, pos as u32 + 1)),
            }
            table_of[page as usize] = tables.len() as u32 - 1;
        }
        Self {
            vpns,
            by_va,
            va_pos,
            tables,
            table_of,
        }
    }

    /// Pages in the footprint.
    pub fn pages(&self) -> u32 {
        self.vpns.len() as u32
    }

    /// Leaf tables the footprint spans.
    pub fn tables(&self) -> u32 {
        self.tables.len() as u32
    }

    fn key(&self, page: u32) -> PageKey {
        PageKey::new(SPACE, self.vpns[page as usize])
    }
}

/// PTE bits of a page.
mod pte {
    pub const YOUNG: u8 = 1 << 0;
    pub const DIRTY: u8 = 1 << 1;
    /// Swap holds an up-to-date copy.
    pub const SWAP_VALID: u8 = 1 << 2;
    /// Faulted in at least once (a later fault is a swap-in).
    pub const SEEN: u8 = 1 << 3;
    /// `shadow` holds the token of the last eviction.
    pub const SHADOW: u8 = 1 << 4;
}

#[derive(Clone, Copy, Debug)]
struct Pte {
    frame: u32,
    shadow: u32,
    bits: u8,
}

/// Page tables and reverse map: the [`AccessEnv`] the model gives the policy.
#[derive(Debug)]
struct Mmu<'l> {
    layout: &'l PageLayout,
    ptes: Vec<Pte>,
    frame_page: Vec<u32>,
    table_resident: Vec<u32>,
    accesses: u64,
    ran: bool,
    tlb_flushes: u64,
}

impl Mmu<'_> {
    fn take_young(&mut self, page: u32) -> bool {
        let pte = &mut self.ptes[page as usize];
        let young = pte.bits & pte::YOUNG != 0;
        pte.bits &= !pte::YOUNG;
        young
    }
}

impl AccessEnv for Mmu<'_> {
    fn now_ms(&self) -> u64 {
        self.accesses / ACCESSES_PER_MS
    }

    fn test_and_clear_young(&mut self, frame: FrameId, owner: PageKey) -> bool {
        match self.frame_page.get(frame.index()) {
            Some(&page) if page != NONE && self.layout.key(page) == owner => {
                let young = self.take_young(page);
                if young {
                    self.tlb_flushes += 1;
                }
                young
            }
            _ => false,
        }
    }

    fn look_around(
        &mut self,
        frame: FrameId,
        owner: PageKey,
        young: &mut dyn FnMut(FrameId),
    ) -> LookAround {
        let page = self.frame_page.get(frame.index()).copied().unwrap_or(NONE);
        let mut result = LookAround {
            table: owner.leaf_table(),
            present: 0,
            young: 0,
        };
        if page == NONE {
            return result;
        }
        let layout = self.layout;
        let (_, first, last) = layout.tables[layout.table_of[page as usize] as usize];
        // The 64-entry window around the page, clipped to its table (as Linux does).
        let vpn = owner.vpn();
        let table_start = vpn - vpn % PTES_PER_TABLE;
        let (start, end) = if vpn - table_start < LOOK_AROUND_HALF {
            (table_start, table_start + 2 * LOOK_AROUND_HALF)
        } else if table_start + PTES_PER_TABLE - vpn < LOOK_AROUND_HALF {
            (
                table_start + PTES_PER_TABLE - 2 * LOOK_AROUND_HALF,
                table_start + PTES_PER_TABLE,
            )
        } else {
            (vpn - LOOK_AROUND_HALF, vpn + LOOK_AROUND_HALF)
        };
        let pos = layout.va_pos[page as usize];
        let below = (first..pos)
            .rev()
            .take_while(|&p| layout.vpns[layout.by_va[p as usize] as usize] >= start);
        let above =
            (pos + 1..last).take_while(|&p| layout.vpns[layout.by_va[p as usize] as usize] < end);
        let positions: [&mut dyn Iterator<Item = u32>; 2] =
            [&mut below.into_iter(), &mut above.into_iter()];
        for side in positions {
            for p in side {
                let neighbour = layout.by_va[p as usize];
                let frame = self.ptes[neighbour as usize].frame;
                if frame == NONE {
                    continue;
                }
                result.present += 1;
                if self.take_young(neighbour) {
                    result.young += 1;
                    young(FrameId(frame));
                }
            }
        }
        if result.young > 0 {
            self.tlb_flushes += 1;
        }
        result
    }

    fn next_address_space(&self, after: Option<AddressSpaceId>) -> Option<AddressSpaceId> {
        after.is_none().then_some(SPACE)
    }

    fn take_ran_since_walk(&mut self, space: AddressSpaceId) -> bool {
        space == SPACE && core::mem::take(&mut self.ran)
    }

    fn walk_page_tables(&mut self, space: AddressSpaceId, visitor: &mut dyn PageTableVisitor) {
        if space != SPACE {
            return;
        }
        let layout = self.layout;
        for (index, &(id, first, last)) in layout.tables.iter().enumerate() {
            if self.table_resident[index] == 0 || !visitor.wants_table(id) {
                continue;
            }
            let (mut present, mut young) = (0, 0);
            for &page in &layout.by_va[first as usize..last as usize] {
                let frame = self.ptes[page as usize].frame;
                if frame == NONE {
                    continue;
                }
                present += 1;
                if self.take_young(page) {
                    young += 1;
                    visitor.young(FrameId(frame));
                }
            }
            visitor.table_done(id, present, young);
        }
        self.tlb_flushes += 1;
    }
}

/// Configuration of a [`Machine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// Physical frames available to the footprint.
    pub frames: u32,
    /// Reclaim watermarks.
    pub watermarks: Watermarks,
    /// Policy tunables.
    pub policy: PolicyConfig,
    /// Fail every n-th swap write (0: never) to exercise `putback`.
    pub swap_write_fails_every: u32,
}

impl MachineConfig {
    /// `frames` frames with default watermarks and policy settings, swap never fails.
    pub fn new(frames: u32) -> Self {
        Self {
            frames,
            watermarks: Watermarks::for_frames(frames),
            policy: PolicyConfig::default(),
            swap_write_fails_every: 0,
        }
    }
}

/// Counters of a [`Machine`] run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MachineStats {
    /// Accesses replayed.
    pub accesses: u64,
    /// Page faults (first touches and swap-ins).
    pub faults: u64,
    /// Faults of pages that had been evicted (major faults, swap-ins).
    pub swap_ins: u64,
    /// Pages written to swap.
    pub swap_writes: u64,
    /// Pages evicted.
    pub evictions: u64,
    /// Evictions that failed (injected swap-write errors) and were put back.
    pub failed_evictions: u64,
    /// `isolate` calls.
    pub isolate_calls: u64,
    /// `isolate` calls refused as thrashing.
    pub thrash_events: u64,
    /// Pages freed by [`Machine::free_page`] while resident.
    pub frees: u64,
    /// TLB invalidations (single pages with a young bit cleared, and whole-space walks).
    pub tlb_flushes: u64,
}

/// What stops a [`Machine`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The page index is outside the layout.
    PageOutOfRange {
        /// The page given.
        page: u32,
        /// Pages in the layout.
        pages: u32,
    },
    /// A fault found no free frame even after reclaim (with `thrashing` when the policy
    /// refused to evict because of min_ttl): the kernel would OOM here.
    OutOfMemory {
        /// The faulting page.
        page: u32,
        /// Whether the policy reported thrashing.
        thrashing: bool,
    },
    /// The policy rejected a call (a model bug).
    Policy(PolicyError),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::PageOutOfRange { page, pages } => {
                write!(f, "page {page} is outside the {pages}-page footprint")
            }
            ModelError::OutOfMemory {
                page,
                thrashing: true,
            } => {
                write!(
                    f,
                    "out of memory faulting page {page}: the policy reports thrashing (min_ttl)"
                )
            }
            ModelError::OutOfMemory {
                page,
                thrashing: false,
            } => {
                write!(
                    f,
                    "out of memory faulting page {page}: nothing is evictable"
                )
            }
            ModelError::Policy(err) => write!(f, "policy rejected a call: {err}"),
        }
    }
}

impl core::error::Error for ModelError {}

impl From<PolicyError> for ModelError {
    fn from(err: PolicyError) -> Self {
        ModelError::Policy(err)
    }
}

/// A machine running one policy over a footprint.
#[derive(Debug)]
pub struct Machine<'l> {
    policy: AnyPolicy,
    frames: FrameTable,
    mmu: Mmu<'l>,
    free: Vec<u32>,
    config: MachineConfig,
    stats: MachineStats,
    swap_write_attempts: u64,
    victims: [FrameId; RECLAIM_BATCH],
}

impl<'l> Machine<'l> {
    /// A machine with all frames free and no page resident.
    pub fn new(
        kind: PolicyKind,
        layout: &'l PageLayout,
        config: MachineConfig,
    ) -> Result<Self, crate::ConfigError> {
        let policy = kind.build(config.frames, &config.policy)?;
        let pages = layout.pages() as usize;
        Ok(Self {
            policy,
            frames: FrameTable::new(config.frames),
            mmu: Mmu {
                layout,
                ptes: vec![
                    Pte {
                        frame: NONE,
                        shadow: 0,
                        bits: 0
                    };
                    pages
                ],
                frame_page: vec![NONE; config.frames as usize],
                table_resident: vec![0; layout.tables.len()],
                accesses: 0,
                ran: false,
                tlb_flushes: 0,
            },
            // Popped from the end: frame 0 first.
            free: (0..config.frames).rev().collect(),
            config,
            stats: MachineStats::default(),
            swap_write_attempts: 0,
            victims: [FrameId(0); RECLAIM_BATCH],
        })
    }

    /// The policy under test.
    pub fn policy(&self) -> &AnyPolicy {
        &self.policy
    }

    /// The frame table.
    pub fn frames(&self) -> &FrameTable {
        &self.frames
    }

    /// Counters so far.
    pub fn stats(&self) -> MachineStats {
        MachineStats {
            tlb_flushes: self.mmu.tlb_flushes,
            ..self.stats
        }
    }

    /// Simulated time in milliseconds.
    pub fn now_ms(&self) -> u64 {
        self.mmu.now_ms()
    }

    /// Free frames.
    pub fn free_frames(&self) -> u32 {
        self.free.len() as u32
    }

    /// Pages currently resident.
    pub fn resident_pages(&self) -> u32 {
        self.config.frames - self.free_frames()
    }

    /// Whether `page` is resident.
    pub fn is_resident(&self, page: u32) -> bool {
        self.mmu
            .ptes
            .get(page as usize)
            .is_some_and(|pte| pte.frame != NONE)
    }

    /// The frame holding `page`, if resident.
    pub fn frame_of(&self, page: u32) -> Option<FrameId> {
        self.mmu
            .ptes
            .get(page as usize)
            .filter(|pte| pte.frame != NONE)
            .map(|pte| FrameId(pte.frame))
    }

    fn check_page(&self, page: u32) -> Result<(), ModelError> {
        let pages = self.mmu.layout.pages();
        if page < pages {
            Ok(())
        } else {
            Err(ModelError::PageOutOfRange { page, pages })
        }
    }

    /// Replay one access.
    pub fn access(&mut self, page: u32, write: bool) -> Result<(), ModelError> {
        self.check_page(page)?;
        self.stats.accesses += 1;
        self.mmu.accesses += 1;
        self.mmu.ran = true;
        let pte = &mut self.mmu.ptes[page as usize];
        if pte.frame != NONE {
            pte.bits |= pte::YOUNG;
            if write {
                pte.bits = (pte.bits | pte::DIRTY) & !pte::SWAP_VALID;
            }
            return Ok(());
        }
        self.fault(page, write)
    }

    fn fault(&mut self, page: u32, write: bool) -> Result<(), ModelError> {
        self.stats.faults += 1;
        let frame = self.allocate(page)?;
        let pte = &mut self.mmu.ptes[page as usize];
        if pte.bits & pte::SEEN != 0 {
            self.stats.swap_ins += 1;
        }
        let shadow = (pte.bits & pte::SHADOW != 0).then_some(ShadowToken::from_raw(pte.shadow));
        pte.frame = frame;
        pte.bits = (pte.bits & !pte::SHADOW) | pte::YOUNG | pte::SEEN;
        if write {
            pte.bits = (pte.bits | pte::DIRTY) & !pte::SWAP_VALID;
        }
        let dirty = pte.bits & pte::DIRTY != 0;
        self.mmu.frame_page[frame as usize] = page;
        self.mmu.table_resident[self.mmu.layout.table_of[page as usize] as usize] += 1;
        let flags = if dirty {
            FrameFlags::ANON.union(FrameFlags::DIRTY)
        } else {
            FrameFlags::ANON
        };
        self.frames.set_flags(FrameId(frame), flags);
        let owner = self.mmu.layout.key(page);
        self.policy.fault_in(
            &mut self.frames,
            &mut self.mmu,
            FrameId(frame),
            owner,
            shadow,
        )?;
        Ok(())
    }

    fn allocate(&mut self, page: u32) -> Result<u32, ModelError> {
        let mut thrashing = false;
        if self.free.len() as u32 <= self.config.watermarks.low {
            thrashing = self.reclaim()?;
        }
        self.free
            .pop()
            .ok_or(ModelError::OutOfMemory { page, thrashing })
    }

    /// Reclaim until the high watermark; returns whether the policy reported thrashing.
    fn reclaim(&mut self) -> Result<bool, ModelError> {
        let high = self.config.watermarks.high.max(1) as usize;
        while self.free.len() < high {
            let want = (high - self.free.len()).min(RECLAIM_BATCH);
            self.stats.isolate_calls += 1;
            let isolated = match self.policy.isolate(
                &mut self.frames,
                &mut self.mmu,
                &mut self.victims[..want],
            ) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(ReclaimError::Thrashing { .. }) => {
                    self.stats.thrash_events += 1;
                    return Ok(true);
                }
            };
            for i in 0..isolated {
                let victim = self.victims[i];
                self.evict(victim)?;
            }
        }
        Ok(false)
    }

    fn evict(&mut self, frame: FrameId) -> Result<(), ModelError> {
        let page = self.mmu.frame_page[frame.index()];
        let pte = self.mmu.ptes[page as usize];
        let needs_write = pte.bits & pte::DIRTY != 0 || pte.bits & pte::SWAP_VALID == 0;
        if needs_write {
            self.swap_write_attempts += 1;
            let every = u64::from(self.config.swap_write_fails_every);
            if every > 0 && self.swap_write_attempts.is_multiple_of(every) {
                self.stats.failed_evictions += 1;
                self.policy.putback(&mut self.frames, frame)?;
                return Ok(());
            }
            self.stats.swap_writes += 1;
        }
        let token = self.policy.evicted(&mut self.frames, frame)?;
        let pte = &mut self.mmu.ptes[page as usize];
        pte.frame = NONE;
        pte.shadow = token.to_raw();
        pte.bits = (pte.bits & !(pte::YOUNG | pte::DIRTY)) | pte::SWAP_VALID | pte::SHADOW;
        self.unmap_frame(frame, page);
        self.stats.evictions += 1;
        Ok(())
    }

    fn unmap_frame(&mut self, frame: FrameId, page: u32) {
        self.mmu.frame_page[frame.index()] = NONE;
        self.mmu.table_resident[self.mmu.layout.table_of[page as usize] as usize] -= 1;
        self.frames.set_flags(frame, FrameFlags::EMPTY);
        self.free.push(frame.0);
    }

    /// The page is freed (unmapped for good): its frame and swap copy are released, and a later
    /// access is a first touch again.
    pub fn free_page(&mut self, page: u32) -> Result<(), ModelError> {
        self.check_page(page)?;
        let pte = self.mmu.ptes[page as usize];
        if pte.frame != NONE {
            self.policy.free(&mut self.frames, FrameId(pte.frame))?;
            self.unmap_frame(FrameId(pte.frame), page);
            self.stats.frees += 1;
        }
        self.mmu.ptes[page as usize] = Pte {
            frame: NONE,
            shadow: 0,
            bits: 0,
        };
        Ok(())
    }

    /// Pin or unpin the frame of a resident page (pinned frames are never evicted); returns
    /// false if the page is not resident.
    pub fn set_pinned(&mut self, page: u32, pinned: bool) -> bool {
        let Some(frame) = self.frame_of(page) else {
            return false;
        };
        if pinned {
            self.frames.insert_flags(frame, FrameFlags::PINNED)
        } else {
            self.frames.remove_flags(frame, FrameFlags::PINNED)
        }
    }

    /// The policy's debug view at the current time.
    pub fn write_debug(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.policy.write_debug(self.now_ms(), out)
    }

    /// Check the policy's invariants and the model's bookkeeping against each other.
    pub fn check(&self) -> Result<(), crate::InvariantError> {
        self.policy.check_invariants(&self.frames)?;
        let fail = |what| crate::InvariantError {
            policy: self.policy.kind(),
            what,
            frame: None,
        };
        let resident = self.mmu.ptes.iter().filter(|pte| pte.frame != NONE).count() as u32;
        if resident != self.resident_pages() || resident != self.policy.tracked() {
            return Err(fail(
                "model: resident pages differ from frames in use or frames tracked",
            ));
        }
        for (frame, &page) in self.mmu.frame_page.iter().enumerate() {
            if page != NONE && self.mmu.ptes[page as usize].frame != frame as u32 {
                return Err(fail("model: reverse map disagrees with the page tables"));
            }
        }
        Ok(())
    }
}
