//! Page-reclaim policies for the kernel, architecture-neutral and testable on the host, plus the
//! workload generators and memory model that the simulator (`tools/sim`) and the kernel's
//! `stress` command share.
//!
//! # Pieces
//! * [`FrameTable`] / [`FrameMeta`]: one 24-byte record per physical frame, owned by the kernel
//!   and shared by every policy (list links, generation or list id, access count, kernel flags
//!   `ANON`/`DIRTY`/`PINNED`/`UNDER_IO`, owner back-reference [`PageKey`]).
//! * [`AccessEnv`]: what the kernel offers a policy: test-and-clear the young bit of one PTE,
//!   look around a PTE's neighbours, walk an address space's leaf tables, tell whether an
//!   address space ran since the last walk, and the time. Young bits are the only access
//!   information; there is no callback per access.
//! * [`ReclaimPolicy`]: the four policies, [`Mglru`] (default), [`Lru2`], [`Clock`] and
//!   [`ClockPro`], selected by name with [`PolicyKind`] and built with [`PolicyKind::build`].
//! * [`workload`]: seeded page-reference generators, specified exactly.
//! * [`model`]: a memory model mirroring the kernel (free frames, watermarks, faults, swap).
//!
//! # How the kernel drives a policy
//! Everything runs under one reclaim lock; no policy call allocates (all storage is allocated by
//! [`PolicyKind::build`]), uses floating point, or depends on anything but its inputs.
//!
//! 1. **Boot**: `let mut frames = FrameTable::new(n)` and
//!    `let mut policy = "mglru".parse::<PolicyKind>()?.build(n, &PolicyConfig::default())?`.
//! 2. **Fault-in** (first touch, or swap-in of a page evicted earlier): allocate a frame, map the
//!    page, set the frame's flags (`frames.set_flags(f, FrameFlags::ANON)`), then
//!    `policy.fault_in(&mut frames, env, f, PageKey::new(asid, vpn), shadow)` where `shadow` is
//!    the [`ShadowToken`] read back from the swap PTE (`None` for a first touch).
//! 3. **Reclaim round** when free frames fall below the low watermark, repeated until they reach
//!    the high one:
//!    * `let n = policy.isolate(&mut frames, env, &mut victims[..32])?` picks up to 32 victims
//!      (never pinned or under-I/O frames) and takes them off its lists. On
//!      `Err(ReclaimError::Thrashing { .. })` (MGLRU `min_ttl`), fail the allocation with OOM
//!      instead of evicting the working set; on `Ok(0)` nothing is evictable.
//!    * For each victim: unmap it (clearing the PTE), write it to swap if it is dirty or has no
//!      valid swap copy (batch the writes), invalidate the TLB, then either
//!      `let token = policy.evicted(&mut frames, f)?` and store `token.to_raw()` in the swap PTE
//!      or slot, and free the frame; or, if the write failed or the page was mapped again,
//!      `policy.putback(&mut frames, f)?` (the policy takes the frame back, nothing is lost).
//! 4. **Free**: when a tracked frame is freed for another reason (unmap, task exit), call
//!    `policy.free(&mut frames, f)?` first; isolated frames may be freed too.
//! 5. **Aging** needs no call of its own: MGLRU ages inside `isolate` (page-table walks through
//!    [`AccessEnv::walk_page_tables`], Linux's `should_run_aging` rule); the other policies
//!    test young bits as they scan.
//!
//! Debug: [`ReclaimPolicy::write_debug`] prints the state (for MGLRU, `seq age_ms nr_anon
//! nr_file` rows and per-tier refaulted/evicted/protected counts, as `/sys/kernel/debug/lru_gen`);
//! [`ReclaimPolicy::stats`] and [`Mglru::mglru_stats`] give typed counters;
//! [`ReclaimPolicy::check_invariants`] verifies the lists against the frame table.
//!
//! # Shadow tokens
//! A [`ShadowToken`] is 32 bits: bits 30..32 name the policy that made it (a token from
//! another policy is ignored), bits 0..30 are its payload. MGLRU: `seq mod 2^24` of the
//! generation evicted from (bits 6..30), type (bit 5: 0 anon, 1 file) and refs (bits 0..5);
//! LRU2: the non-resident age at eviction; CLOCK: 0; CLOCK-Pro: 0 or 1 + ghost-entry index.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod clock;
mod clockpro;
mod env;
mod frame;
mod list;
mod lru2;
mod mglru;
pub mod model;
mod policy;
pub mod workload;

pub use clock::Clock;
pub use clockpro::ClockPro;
pub use env::{AccessEnv, LookAround, PageTableVisitor};
pub use frame::{
    AddressSpaceId, FrameFlags, FrameId, FrameMeta, FrameTable, LeafTableId, PTES_PER_TABLE,
    PageKey,
};
pub use lru2::Lru2;
pub use mglru::{MAX_NR_GENS, MAX_NR_TIERS, MIN_NR_GENS, Mglru, MglruStats};
pub use policy::{
    AnyPolicy, ConfigError, InvariantError, PolicyConfig, PolicyError, PolicyKind, PolicyStats,
    ReclaimError, ReclaimPolicy, ShadowToken, UnknownPolicy,
};
