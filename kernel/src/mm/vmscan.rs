//! Page reclaim: the policy in force and the mechanics around it.
//!
//! * One [`reclaim::FrameMeta`] per frame of RAM and the policy (MGLRU unless `reclaim=lru2`,
//!   `clock` or `clockpro` says otherwise) live under one lock, [`State`]. User address spaces
//!   register here so that a policy can reach their page tables through [`KernelEnv`] (the
//!   [`AccessEnv`] of this kernel): young bits are the hardware Access flag, or the software
//!   one that Access-flag faults set on CPUs without FEAT_HAFDBS.
//! * Every anonymous user page is tracked from the fault that maps it ([`track`]) to the unmap
//!   that frees it ([`release`]).
//! * Reclaim ([`shrink`]) isolates a batch of victims, drops the clean ones whose swap copy is
//!   still valid, write-protects the others (clean in the page table), writes them to swap in
//!   one batch while they stay mapped, then unmaps each one that was not written meanwhile and
//!   frees its frame. A page written during its I/O, pinned meanwhile, or whose write failed
//!   stays resident and goes back to the policy: nothing is lost.
//! * Pressure: user-page allocations ([`alloc_user_frame`]) leave a reserve for the kernel.
//!   Below the low watermark they wake `kswapd`, which reclaims up to the high one; at the
//!   reserve they fail, and the faulting thread reclaims directly ([`direct_reclaim`]) before
//!   retrying; when nothing can be reclaimed the fault ends in a clean out-of-memory error. An
//!   optional user-memory limit (`memlimit=MiB`, or [`set_limit`]) caps the frames user pages
//!   may hold, with the simulator's watermarks, so kernel runs compare with simulated ones.
//!
//! Lock order: an address space's lock, then [`State`]'s. Code holding [`State`] (the policy,
//! walking page tables) only ever `try_lock`s an address space and treats a busy one as "not
//! looked at".

use super::aspace::{SharedSpace, UserSpace};
use super::{PAGE_SIZE, Page, PhysAddr, PhysFrame, VirtAddr, frame, swap};
use crate::sync::IrqSpinLock;
use crate::task::WaitQueue;
use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use alloc::vec;
use alloc::vec::Vec;
use arrayvec::ArrayVec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use devicetree::MachineInfo;
use pagetable::{AgingVisitor, Leaf, SwapEntry, TableId};
use reclaim::model::{RECLAIM_BATCH, Watermarks};
use reclaim::{
    AccessEnv, AddressSpaceId, AnyPolicy, FrameFlags, FrameId, FrameTable, LeafTableId, LookAround,
    PageKey, PageTableVisitor, PolicyConfig, PolicyKind, ReclaimError, ReclaimPolicy, ShadowToken,
};
use spin::Once;

/// Kernel-only frame flag: the page was unmapped while its swap write was in flight; the
/// reclaimer that wrote it frees the frame and the slot when the write ends.
const ORPHANED: FrameFlags = FrameFlags(1 << 8);
/// Kernel-only frame flag: a reclaimer has claimed the isolated frame.
const CLAIMED: FrameFlags = FrameFlags(1 << 9);
/// No swap slot.
const NO_SLOT: u32 = u32::MAX;
/// Neighbours a look-around examines.
const LOOK_AROUND_PTES: usize = 64;

/// The frame table, the policy and the swap slot each frame's page has a valid copy in.
pub struct State {
    /// Physical address of frame 0 (the lowest RAM address).
    base: u64,
    table: FrameTable,
    policy: AnyPolicy,
    slot_of: Box<[u32]>,
}

static STATE: Once<IrqSpinLock<State>> = Once::new();

impl State {
    fn frame_id(&self, pa: PhysAddr) -> Option<FrameId> {
        frame_id(self.base, self.table.len(), pa)
    }

    fn frame_address(&self, id: FrameId) -> PhysFrame {
        PhysFrame::from_start(
            PhysAddr::new(self.base + u64::from(id.0) * PAGE_SIZE)
                .expect("frame ids cover RAM below 2^48"),
        )
        .expect("frame addresses are page aligned")
    }

    fn set_slot(&mut self, id: FrameId, slot: u32) {
        self.slot_of[id.index()] = slot;
    }

    /// Frees the swap slot `id`'s page has a copy in, if any.
    fn drop_slot(&mut self, id: FrameId) {
        let slot = core::mem::replace(&mut self.slot_of[id.index()], NO_SLOT);
        if slot != NO_SLOT {
            swap::free_slot(slot);
        }
    }

    fn note_tracked(&self) {
        TRACKED.store(self.policy.tracked(), Ordering::Relaxed);
    }

    /// Returns an isolated frame to the policy (the eviction did not happen).
    fn putback(&mut self, id: FrameId) {
        self.table.remove_flags(id, CLAIMED);
        let State { table, policy, .. } = self;
        if let Err(err) = policy.putback(table, id) {
            log::error!(target: "reclaim", "putback of frame {}: {err:?}", id.0);
        }
        COUNTERS.putbacks.fetch_add(1, Ordering::Relaxed);
    }
}

fn frame_id(base: u64, frames: u32, pa: PhysAddr) -> Option<FrameId> {
    let index = pa.as_u64().checked_sub(base)? / PAGE_SIZE;
    (index < u64::from(frames)).then_some(FrameId(index as u32))
}

/// Allocates the frame table for every frame from the lowest to the highest RAM address and
/// builds the policy `reclaim=` names (MGLRU by default; an unknown name is logged and MGLRU
/// used). `memlimit=MiB` sets a user-memory limit.
pub fn init(machine: &MachineInfo<'_>) {
    let base = machine.ram.iter().map(|r| r.base).min().unwrap_or(0);
    let end = machine
        .ram
        .iter()
        .map(|r| r.base.saturating_add(r.size))
        .max()
        .unwrap_or(0);
    let frames = u32::try_from((end - base) / PAGE_SIZE).expect("RAM spans fewer than 2^32 frames");
    let kind = match crate::cmdline::param("reclaim").map(str::parse::<PolicyKind>) {
        None => PolicyKind::Mglru,
        Some(Ok(kind)) => kind,
        Some(Err(err)) => {
            log::warn!(target: "reclaim", "{err}; using mglru");
            PolicyKind::Mglru
        }
    };
    let policy = kind
        .build(frames, &PolicyConfig::default())
        .expect("the default policy configuration is valid");
    STATE.call_once(|| {
        IrqSpinLock::new(State {
            base,
            table: FrameTable::new(frames),
            policy,
            slot_of: vec![NO_SLOT; frames as usize].into_boxed_slice(),
        })
    });
    let total = frame::stats().total as u32;
    let min = (total / 128).clamp(32, 2048);
    *WATERMARKS.lock() = GlobalWatermarks {
        min,
        low: min * 2,
        high: min * 3,
    };
    if let Some(mib) = crate::cmdline::param("memlimit") {
        match mib.parse::<u32>() {
            Ok(mib) if mib > 0 => set_limit(Some(mib * (1 << 20) / PAGE_SIZE as u32)),
            _ => log::warn!(target: "reclaim", "memlimit={mib}: expected a size in MiB"),
        }
    }
}

fn state() -> &'static IrqSpinLock<State> {
    STATE.get().expect("reclaim state is set up by mm::init")
}

/// The policy in force.
pub fn policy_kind() -> PolicyKind {
    state().lock().policy.kind()
}

/// Switching policies needs every user page gone: the old policy's lists describe them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyBusy {
    pub tracked: u32,
}

impl fmt::Display for PolicyBusy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} user pages are tracked; the policy can change only when no user task runs",
            self.tracked
        )
    }
}

/// Replaces the policy (benchmarks compare policies in one boot) while no user page exists.
pub fn set_policy(kind: PolicyKind) -> Result<(), PolicyBusy> {
    let mut state = state().lock();
    let tracked = state.policy.tracked();
    if tracked != 0 {
        return Err(PolicyBusy { tracked });
    }
    state.policy = kind
        .build(state.table.len(), &PolicyConfig::default())
        .expect("the default policy configuration is valid");
    Ok(())
}

/// Bytes the frame table and slot map take.
pub fn metadata_bytes() -> usize {
    STATE.get().map_or(0, |state| {
        state.lock().table.len() as usize
            * (core::mem::size_of::<reclaim::FrameMeta>() + core::mem::size_of::<u32>())
    })
}

// ---- counters ----

/// Reclaim counters (for `vmstat`).
pub struct ReclaimCounters {
    /// Pages reclaimed by kswapd.
    pub kswapd_reclaimed: AtomicU64,
    /// Times kswapd was woken.
    pub kswapd_wakeups: AtomicU64,
    /// Direct reclaim rounds (a faulting thread reclaiming for itself).
    pub direct_rounds: AtomicU64,
    /// Pages reclaimed by direct reclaim.
    pub direct_reclaimed: AtomicU64,
    /// Clean pages dropped without I/O (their swap copy was still valid).
    pub dropped_clean: AtomicU64,
    /// Victims returned to the policy (written meanwhile, pinned, I/O error, swap full).
    pub putbacks: AtomicU64,
    /// Swap-ins (major faults).
    pub swap_ins: AtomicU64,
    /// Allocations that failed for good: out of memory and swap.
    pub oom: AtomicU64,
    /// Reclaim refused because the working set would be thrown out (MGLRU min_ttl).
    pub thrashing: AtomicU64,
    /// Counter ticks spent in reclaim rounds, swap writes included (guest time: instructions
    /// under `-icount`).
    pub reclaim_ticks: AtomicU64,
}

pub static COUNTERS: ReclaimCounters = ReclaimCounters {
    kswapd_reclaimed: AtomicU64::new(0),
    kswapd_wakeups: AtomicU64::new(0),
    direct_rounds: AtomicU64::new(0),
    direct_reclaimed: AtomicU64::new(0),
    dropped_clean: AtomicU64::new(0),
    putbacks: AtomicU64::new(0),
    swap_ins: AtomicU64::new(0),
    oom: AtomicU64::new(0),
    thrashing: AtomicU64::new(0),
    reclaim_ticks: AtomicU64::new(0),
};

/// The policy's own counters and its number of tracked frames.
pub fn policy_stats() -> (reclaim::PolicyStats, u32) {
    let state = state().lock();
    (state.policy.stats(), state.policy.tracked())
}

/// MGLRU's own counters (aging walks, skipped spaces and tables), when it is the policy.
pub fn mglru_stats() -> Option<reclaim::MglruStats> {
    match &state().lock().policy {
        AnyPolicy::Mglru(mglru) => Some(mglru.mglru_stats()),
        _ => None,
    }
}

/// The policy's debug view (MGLRU: the generation table) at time `now_ms`.
pub fn write_policy_debug(now_ms: u64, out: &mut dyn fmt::Write) -> fmt::Result {
    state().lock().policy.write_debug(now_ms, out)
}

/// Checks the policy's lists against the frame table.
pub fn check_invariants() -> Result<(), reclaim::InvariantError> {
    let state = state().lock();
    state.policy.check_invariants(&state.table)
}

// ---- address-space registry ----

/// Registered user address spaces by ASID, ascending.
static SPACES: IrqSpinLock<Vec<(u16, Weak<IrqSpinLock<UserSpace>>)>> = IrqSpinLock::new(Vec::new());

/// One bit per ASID: the space was activated on a CPU since the last aging walk over it.
static RAN: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

/// Makes `space` (with ASID `asid`) reachable by reclaim.
pub fn register(asid: u16, space: &SharedSpace) {
    let mut spaces = SPACES.lock();
    let at = spaces.partition_point(|(known, _)| *known < asid);
    if spaces.get(at).is_some_and(|(known, _)| *known == asid) {
        spaces[at].1 = Arc::downgrade(space);
    } else {
        spaces.insert(at, (asid, Arc::downgrade(space)));
    }
    note_ran(asid);
}

/// Forgets the space with ASID `asid` (it is being destroyed).
pub fn unregister(asid: u16) {
    let mut spaces = SPACES.lock();
    if let Ok(at) = spaces.binary_search_by_key(&asid, |(known, _)| *known) {
        spaces.remove(at);
    }
}

/// Records that the space with ASID `asid` runs (its young bits may change).
pub fn note_ran(asid: u16) {
    RAN[usize::from(asid) / 64].fetch_or(1 << (asid % 64), Ordering::Relaxed);
}

fn lookup(asid: u16) -> Option<SharedSpace> {
    let spaces = SPACES.lock();
    let at = spaces
        .binary_search_by_key(&asid, |(known, _)| *known)
        .ok()?;
    spaces[at].1.upgrade()
}

// ---- tracking ----

/// Flags every tracked page carries.
const USER_PAGE: FrameFlags = FrameFlags::ANON;

/// Starts tracking the user page `key`, just mapped into `frame` (a first touch when `from_swap`
/// is `None`, else a swap-in of `(slot, shadow token)`). A swapped-in page keeps its slot as a
/// valid copy, so that evicting it again unwritten costs no I/O, unless swap is more than half
/// full (Linux's `vm_swap_full`): then the slot is freed for pages that have no copy yet.
/// Called with the owning space locked.
pub fn track(frame: PhysFrame, key: PageKey, from_swap: Option<SwapEntry>) {
    let mut state = state().lock();
    let Some(id) = state.frame_id(frame.start()) else {
        return;
    };
    state.table.set_flags(id, USER_PAGE);
    let slot = match from_swap {
        Some(entry) if !swap::mostly_full() => entry.slot(),
        Some(entry) => {
            swap::free_slot(entry.slot());
            NO_SLOT
        }
        None => NO_SLOT,
    };
    state.set_slot(id, slot);
    let shadow = from_swap.map(|entry| ShadowToken::from_raw(entry.token()));
    let mut env = KernelEnv::new(&state);
    let State { table, policy, .. } = &mut *state;
    if let Err(err) = policy.fault_in(table, &mut env, id, key, shadow) {
        log::error!(target: "reclaim", "fault_in of frame {}: {err:?}", id.0);
    }
    state.note_tracked();
    drop(state);
    // Spaces the policy looked at are released outside the lock.
    drop(env.hold);
}

/// The user page in `frame` was unmapped (region removed, task exit): stop tracking it and free
/// its swap copy. Returns whether the caller frees the frame now; `false` when a swap write of
/// it is in flight, in which case the reclaimer frees it when the write ends.
pub fn release(frame: PhysFrame) -> bool {
    let mut state = state().lock();
    let Some(id) = state.frame_id(frame.start()) else {
        return true;
    };
    if state.table.get(id).is_some_and(|meta| meta.is_tracked()) {
        let State { table, policy, .. } = &mut *state;
        if let Err(err) = policy.free(table, id) {
            log::error!(target: "reclaim", "free of frame {}: {err:?}", id.0);
        }
        state.note_tracked();
    }
    if state.table.flags(id).contains(FrameFlags::UNDER_IO) {
        state.table.insert_flags(id, ORPHANED);
        return false;
    }
    state.drop_slot(id);
    state.table.set_flags(id, FrameFlags::EMPTY);
    true
}

/// Pins or unpins a user frame (lent to another task): a pinned frame is never evicted.
pub fn set_pinned(frame: PhysFrame, pinned: bool) {
    let mut state = state().lock();
    if let Some(id) = state.frame_id(frame.start()) {
        if pinned {
            state.table.insert_flags(id, FrameFlags::PINNED);
        } else {
            state.table.remove_flags(id, FrameFlags::PINNED);
        }
    }
}

// ---- allocation and pressure ----

/// Free-frame watermarks for the whole machine: below `low` kswapd wakes and reclaims up to
/// `high`; user pages never take the last `min` frames (the kernel's reserve).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GlobalWatermarks {
    pub min: u32,
    pub low: u32,
    pub high: u32,
}

static WATERMARKS: IrqSpinLock<GlobalWatermarks> = IrqSpinLock::new(GlobalWatermarks {
    min: 0,
    low: 0,
    high: 0,
});

/// Frames tracked by the policy (mirrors `policy.tracked()` for lock-free checks).
static TRACKED: AtomicU32 = AtomicU32::new(0);
/// User-memory limit in frames, `u32::MAX` for none.
static LIMIT: AtomicU32 = AtomicU32::new(u32::MAX);

pub fn watermarks() -> GlobalWatermarks {
    *WATERMARKS.lock()
}

/// Sets (or with `None` lifts) the user-memory limit in frames.
pub fn set_limit(frames: Option<u32>) {
    LIMIT.store(frames.unwrap_or(u32::MAX), Ordering::Relaxed);
}

/// The user-memory limit in frames, if any.
pub fn limit() -> Option<u32> {
    Some(LIMIT.load(Ordering::Relaxed)).filter(|&limit| limit != u32::MAX)
}

/// Frames user pages hold now.
pub fn tracked() -> u32 {
    TRACKED.load(Ordering::Relaxed)
}

/// Whether a user-page allocation must reclaim first.
fn must_reclaim() -> bool {
    if let Some(limit) = limit()
        && limit.saturating_sub(tracked()) <= Watermarks::for_frames(limit).low
    {
        return true;
    }
    let free = frame::stats().free as u32;
    let marks = watermarks();
    if free <= marks.low {
        wake_kswapd();
    }
    free <= marks.min
}

/// Whether reclaim has freed enough for the allocation that asked for it.
fn reclaimed_enough() -> bool {
    if let Some(limit) = limit()
        && limit.saturating_sub(tracked()) < Watermarks::for_frames(limit).high
    {
        return false;
    }
    frame::stats().free as u32 > watermarks().min
}

/// A zeroed frame for a user page, or `None` when the caller must reclaim first (from thread
/// context: [`direct_reclaim`]) because memory is at the reserve or the user limit.
pub fn alloc_user_frame() -> Option<PhysFrame> {
    if must_reclaim() {
        return None;
    }
    frame::alloc_zeroed(0).ok()
}

/// Out of memory: reclaim found nothing it could free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimFailure {
    /// There is no swap area; anonymous memory cannot be reclaimed.
    NoSwap,
    /// Nothing evictable (everything pinned, under I/O, or swap full).
    NothingToReclaim,
    /// The policy refused: the working set would be thrown out (MGLRU min_ttl).
    Thrashing,
}

impl fmt::Display for ReclaimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoSwap => "out of memory (no swap)",
            Self::NothingToReclaim => "out of memory and swap",
            Self::Thrashing => "out of memory (thrashing: the working set does not fit)",
        })
    }
}

/// Rounds in a row without progress, with no swap write in flight anywhere, before direct
/// reclaim gives up.
const DIRECT_RECLAIM_PATIENCE: u32 = 8;
/// Longest direct reclaim waits for other reclaimers' writes before giving up anyway (a device
/// that stopped completing requests), in microseconds of guest time.
const DIRECT_RECLAIM_MAX_WAIT_US: u64 = 10_000_000;
/// How long one wait for others' writes lasts.
const IN_FLIGHT_WAIT_US: u64 = 1_000;

/// Victims being written to swap right now (by any reclaimer on any CPU): while there are,
/// finding nothing to evict is no reason to give up, since they will free memory.
static WRITES_IN_FLIGHT: AtomicU32 = AtomicU32::new(0);

/// Reclaims from the calling thread until a user-page allocation can proceed (thread context
/// only: it sleeps on swap I/O).
pub fn direct_reclaim() -> Result<(), ReclaimFailure> {
    let mut idle_rounds = 0;
    let mut waited_us = 0;
    while !reclaimed_enough() {
        COUNTERS.direct_rounds.fetch_add(1, Ordering::Relaxed);
        match shrink() {
            Ok(0)
                if WRITES_IN_FLIGHT.load(Ordering::Acquire) > 0
                    && waited_us < DIRECT_RECLAIM_MAX_WAIT_US =>
            {
                // Other reclaimers hold the victims; their writes will free memory.
                crate::task::sleep_us(IN_FLIGHT_WAIT_US);
                waited_us += IN_FLIGHT_WAIT_US;
            }
            Ok(0) => {
                idle_rounds += 1;
                if idle_rounds >= DIRECT_RECLAIM_PATIENCE {
                    COUNTERS.oom.fetch_add(1, Ordering::Relaxed);
                    return Err(ReclaimFailure::NothingToReclaim);
                }
                crate::task::yield_now();
            }
            Ok(freed) => {
                idle_rounds = 0;
                COUNTERS
                    .direct_reclaimed
                    .fetch_add(freed as u64, Ordering::Relaxed);
            }
            Err(err) => {
                COUNTERS.oom.fetch_add(1, Ordering::Relaxed);
                return Err(err);
            }
        }
    }
    Ok(())
}

static KSWAPD: WaitQueue = WaitQueue::new();
static KSWAPD_WANTED: AtomicBool = AtomicBool::new(false);

/// Asks kswapd to reclaim (free memory fell below the low watermark).
pub fn wake_kswapd() {
    if swap::area().is_some() && !KSWAPD_WANTED.swap(true, Ordering::AcqRel) {
        KSWAPD.wake_one();
    }
}

/// Starts kswapd when there is a swap area.
pub fn start_kswapd() {
    if swap::area().is_none() {
        return;
    }
    if let Err(err) = crate::task::spawn("kswapd", kswapd_main, 0) {
        log::error!(target: "reclaim", "cannot start kswapd: {err}");
    }
}

fn kswapd_main(_: usize) {
    loop {
        KSWAPD.wait_until(|| KSWAPD_WANTED.load(Ordering::Acquire));
        KSWAPD_WANTED.store(false, Ordering::Release);
        COUNTERS.kswapd_wakeups.fetch_add(1, Ordering::Relaxed);
        while (frame::stats().free as u32) < watermarks().high {
            match shrink() {
                Ok(0) | Err(_) => {
                    // Nothing to take now: back off instead of spinning on the lists.
                    crate::task::sleep_us(10_000);
                    break;
                }
                Ok(freed) => {
                    COUNTERS
                        .kswapd_reclaimed
                        .fetch_add(freed as u64, Ordering::Relaxed);
                }
            }
        }
    }
}

// ---- one reclaim round ----

/// A victim being written to swap.
struct Writing {
    id: FrameId,
    frame: PhysFrame,
    key: PageKey,
    space: SharedSpace,
    slot: u32,
}

enum Prepared {
    /// Dropped without I/O: free this frame.
    Freed(PhysFrame),
    /// Must be written first.
    Write(Writing),
    /// Not evicted (put back, or no longer ours to evict).
    Kept,
}

/// One reclaim round: isolates up to [`RECLAIM_BATCH`] victims and evicts what it can.
/// Returns the number of frames freed.
pub fn shrink() -> Result<usize, ReclaimFailure> {
    let area = swap::area().ok_or(ReclaimFailure::NoSwap)?;
    let start = crate::arch::cpu::counter();
    let mut victims = [FrameId(0); RECLAIM_BATCH];
    let mut keys = [PageKey(0); RECLAIM_BATCH];
    let (isolated, hold) = {
        let mut state = state().lock();
        let mut env = KernelEnv::new(&state);
        let State { table, policy, .. } = &mut *state;
        let isolated = policy.isolate(table, &mut env, &mut victims);
        if let Ok(count) = isolated {
            for (key, id) in keys.iter_mut().zip(&victims[..count]) {
                *key = table.get(*id).map_or(PageKey(0), |meta| meta.owner());
            }
        }
        state.note_tracked();
        (isolated, env.hold)
    };
    drop(hold);
    let isolated = match isolated {
        Ok(count) => count,
        Err(ReclaimError::Thrashing { .. }) => {
            COUNTERS.thrashing.fetch_add(1, Ordering::Relaxed);
            return Err(ReclaimFailure::Thrashing);
        }
    };
    let mut freed: ArrayVec<PhysFrame, RECLAIM_BATCH> = ArrayVec::new();
    let mut writes: ArrayVec<Writing, RECLAIM_BATCH> = ArrayVec::new();
    for (&id, &key) in victims[..isolated].iter().zip(&keys) {
        match prepare(id, key, area) {
            Prepared::Freed(frame) => freed.push(frame),
            Prepared::Write(writing) => writes.push(writing),
            Prepared::Kept => {}
        }
    }
    let written = writes.len();
    if !writes.is_empty() {
        let pages: ArrayVec<(u32, PhysFrame), RECLAIM_BATCH> =
            writes.iter().map(|w| (w.slot, w.frame)).collect();
        let mut results = [Ok(()); RECLAIM_BATCH];
        // SAFETY: every frame is marked under I/O: the policy will not hand it out, an unmap
        // leaves it to us (ORPHANED), and its page is mapped clean (write-protected for
        // software dirty tracking), so a write to it is detected (dirty again) rather than
        // racing with the device: `finish` then keeps the page resident.
        unsafe { area.write_batch(&pages, &mut results[..pages.len()]) };
        let failed = results[..pages.len()].iter().filter(|r| r.is_err()).count();
        if let Some(Err(err)) = results[..pages.len()].iter().find(|r| r.is_err()) {
            log::warn!(target: "swap", "{failed} of {written} swap writes failed ({err}); those pages stay in memory");
        }
        for (writing, result) in writes.into_iter().zip(results) {
            if let Some(frame) = finish(writing, result) {
                freed.push(frame);
            }
        }
    }
    let count = freed.len();
    log::debug!(target: "reclaim", "round: {isolated} isolated, {written} written, {count} freed");
    for frame in freed {
        // SAFETY: the frame's page is unmapped (its PTE holds the swap entry, TLB invalidated)
        // and the policy no longer tracks it: nothing refers to it.
        unsafe { frame::free(frame, 0) };
    }
    COUNTERS.reclaim_ticks.fetch_add(
        crate::arch::cpu::counter().wrapping_sub(start),
        Ordering::Relaxed,
    );
    Ok(count)
}

fn page_of(key: PageKey) -> Option<Page> {
    VirtAddr::new(key.vpn() * PAGE_SIZE)
        .ok()
        .map(Page::containing)
}

/// First step for one victim, under its space's lock: claim it, then drop it without I/O when
/// its swap copy is valid, or make it clean and get it a slot for writing.
fn prepare(id: FrameId, key: PageKey, area: &swap::SwapArea) -> Prepared {
    let Some(space) = lookup(key.asid().0) else {
        // The space is being destroyed; its teardown frees the frame.
        return Prepared::Kept;
    };
    let Some(page) = page_of(key) else {
        return Prepared::Kept;
    };
    let mut user = space.lock();
    let mut state = state().lock();
    let ours = state.table.get(id).is_some_and(|meta| {
        meta.is_tracked()
            && meta.is_isolated()
            && meta.owner() == key
            && !meta.flags().contains(CLAIMED)
    });
    if !ours {
        return Prepared::Kept;
    }
    state.table.insert_flags(id, CLAIMED);
    let frame = state.frame_address(id);
    let mapped = user
        .tables()
        .translate(page.start())
        .is_some_and(|t| t.pa == frame.start());
    if !mapped || state.table.flags(id).contains(FrameFlags::PINNED) {
        state.putback(id);
        return Prepared::Kept;
    }
    // Clean in the page table from here: a later write shows up as dirty again.
    let was_dirty = user
        .tables()
        .test_and_clear_dirty(page.start())
        .unwrap_or(true);
    let slot = state.slot_of[id.index()];
    if !was_dirty && slot != NO_SLOT {
        return match unmap_victim(&mut user, &mut state, id, page, slot) {
            Some(frame) => {
                COUNTERS.dropped_clean.fetch_add(1, Ordering::Relaxed);
                Prepared::Freed(frame)
            }
            None => Prepared::Kept,
        };
    }
    let slot = if slot != NO_SLOT {
        slot
    } else {
        match area.allocate() {
            Some(slot) => {
                state.set_slot(id, slot);
                slot
            }
            None => {
                // Swap is full: the page stays. Its page-table dirty bit was cleared, but
                // with no slot it is written in full whenever it is next evicted.
                state.putback(id);
                return Prepared::Kept;
            }
        }
    };
    state.table.insert_flags(id, FrameFlags::UNDER_IO);
    WRITES_IN_FLIGHT.fetch_add(1, Ordering::AcqRel);
    drop(state);
    drop(user);
    Prepared::Write(Writing {
        id,
        frame,
        key,
        space,
        slot,
    })
}

/// Last step for a written victim: unmap it unless it was unmapped, pinned or written while the
/// I/O ran, or the write failed. Returns the frame to free, if any.
fn finish(writing: Writing, result: Result<(), ::virtio::Error>) -> Option<PhysFrame> {
    let Writing {
        id,
        frame,
        key,
        space,
        slot,
    } = writing;
    let mut user = space.lock();
    let mut state = state().lock();
    state.table.remove_flags(id, FrameFlags::UNDER_IO);
    WRITES_IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
    if state.table.flags(id).contains(ORPHANED) {
        // Unmapped meanwhile (`release` already told the policy): ours to free.
        state.drop_slot(id);
        state.table.set_flags(id, FrameFlags::EMPTY);
        return Some(frame);
    }
    if result.is_err() {
        state.drop_slot(id);
        state.putback(id);
        return None;
    }
    if state.table.flags(id).contains(FrameFlags::PINNED) {
        state.putback(id);
        return None;
    }
    let page = page_of(key)?;
    let freed = unmap_victim(&mut user, &mut state, id, page, slot);
    drop(state);
    drop(user);
    // The space may be gone but for us: its teardown runs here, with no lock held.
    drop(space);
    freed
}

/// Replaces the victim's mapping by its swap entry (slot plus the policy's shadow token) and
/// returns its frame. If the page turned out dirty (written after it was made clean), the
/// mapping is restored, the now stale slot freed, and the frame put back.
fn unmap_victim(
    user: &mut UserSpace,
    state: &mut State,
    id: FrameId,
    page: Page,
    slot: u32,
) -> Option<PhysFrame> {
    let frame = state.frame_address(id);
    let placeholder = SwapEntry::new(slot, 0).ok()?;
    let leaf = match user.tables().swap_out(page, placeholder) {
        Ok(leaf) => leaf,
        Err(err) => {
            log::error!(target: "reclaim", "unmapping {:#x}: {err}", page.start().as_u64());
            state.putback(id);
            return None;
        }
    };
    if leaf.is_dirty() {
        if let Ok(attributes) = leaf.attributes() {
            let _ = user.tables().swap_in(page, frame, attributes);
        }
        state.drop_slot(id);
        state.putback(id);
        return None;
    }
    let State { table, policy, .. } = state;
    let token = match policy.evicted(table, id) {
        Ok(token) => token.to_raw(),
        Err(err) => {
            log::error!(target: "reclaim", "evicted frame {}: {err:?}", id.0);
            0
        }
    };
    if let Ok(entry) = SwapEntry::new(slot, token) {
        user.tables().set_swap_entry(page, entry);
    }
    // The slot now belongs to the swap entry.
    state.slot_of[id.index()] = NO_SLOT;
    state.table.set_flags(id, FrameFlags::EMPTY);
    state.note_tracked();
    Some(frame)
}

// ---- the policy's view of the page tables ----

/// [`AccessEnv`] over the registered user address spaces. Spaces it touched are kept in `hold`
/// so that none is destroyed while [`State`] is locked.
struct KernelEnv {
    base: u64,
    frames: u32,
    hold: Vec<SharedSpace>,
}

impl KernelEnv {
    fn new(state: &State) -> Self {
        Self {
            base: state.base,
            frames: state.table.len(),
            hold: Vec::new(),
        }
    }

    /// Runs `f` on the space `asid` if it exists and is not busy.
    fn with_space<R>(&mut self, asid: u16, f: impl FnOnce(&mut UserSpace) -> R) -> Option<R> {
        let space = lookup(asid)?;
        let result = space.try_lock().map(|mut user| f(&mut user));
        self.hold.push(space);
        result
    }
}

fn leaf_table_id(table: TableId) -> LeafTableId {
    LeafTableId(table.0.start().as_u64() / PAGE_SIZE)
}

/// Adapts a policy's [`PageTableVisitor`] to the page-table crate's aging walk.
struct Walk<'v> {
    visitor: &'v mut dyn PageTableVisitor,
    base: u64,
    frames: u32,
}

impl AgingVisitor for Walk<'_> {
    fn scan_leaf_table(&mut self, table: TableId) -> bool {
        self.visitor.wants_table(leaf_table_id(table))
    }

    fn young(&mut self, leaf: &Leaf) {
        if let Some(id) = frame_id(self.base, self.frames, leaf.pa) {
            self.visitor.young(id);
        }
    }

    fn leaf_table_done(&mut self, table: TableId, scanned: usize, young: usize) {
        self.visitor
            .table_done(leaf_table_id(table), scanned as u32, young as u32);
    }
}

impl AccessEnv for KernelEnv {
    fn now_ms(&self) -> u64 {
        crate::time::uptime_us() / 1000
    }

    fn test_and_clear_young(&mut self, _frame: FrameId, owner: PageKey) -> bool {
        let Some(page) = page_of(owner) else {
            return false;
        };
        // A busy space counts as young: its page is not evicted on a guess.
        self.with_space(owner.asid().0, |user| {
            user.tables()
                .test_and_clear_young(page.start())
                .unwrap_or(false)
        })
        .unwrap_or(true)
    }

    fn look_around(
        &mut self,
        _frame: FrameId,
        owner: PageKey,
        young: &mut dyn FnMut(FrameId),
    ) -> LookAround {
        let (base, frames) = (self.base, self.frames);
        let empty = LookAround {
            table: owner.leaf_table(),
            present: 0,
            young: 0,
        };
        let Some(page) = page_of(owner) else {
            return empty;
        };
        self.with_space(owner.asid().0, |user| {
            let tables = user.tables();
            let Some(table) = tables.translate(page.start()).map(|t| t.leaf.table) else {
                return empty;
            };
            let mut report = |leaf: &Leaf| {
                if let Some(id) = frame_id(base, frames, leaf.pa) {
                    young(id);
                }
            };
            match tables.look_around(page.start(), LOOK_AROUND_PTES, &mut report) {
                Ok(summary) => LookAround {
                    table: leaf_table_id(table),
                    present: summary.scanned as u32,
                    young: summary.young as u32,
                },
                Err(_) => empty,
            }
        })
        .unwrap_or(empty)
    }

    fn next_address_space(&self, after: Option<AddressSpaceId>) -> Option<AddressSpaceId> {
        let spaces = SPACES.lock();
        let at = match after {
            None => 0,
            Some(after) => spaces.partition_point(|(asid, _)| *asid <= after.0),
        };
        spaces.get(at).map(|(asid, _)| AddressSpaceId(*asid))
    }

    fn take_ran_since_walk(&mut self, space: AddressSpaceId) -> bool {
        let bit = 1 << (space.0 % 64);
        RAN[usize::from(space.0) / 64].fetch_and(!bit, Ordering::Relaxed) & bit != 0
    }

    fn walk_page_tables(&mut self, space: AddressSpaceId, visitor: &mut dyn PageTableVisitor) {
        let (base, frames) = (self.base, self.frames);
        self.with_space(space.0, |user| {
            let mut walk = Walk {
                visitor,
                base,
                frames,
            };
            let _ = user.tables().test_and_clear_young_range(
                VirtAddr::new(0).expect("0 is a user address"),
                pagetable::HALF_SIZE,
                &mut walk,
            );
        });
    }
}

/// Records a swap-in (major fault).
pub fn note_swap_in() {
    COUNTERS.swap_ins.fetch_add(1, Ordering::Relaxed);
}
