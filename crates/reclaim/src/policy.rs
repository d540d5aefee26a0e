//! The policy interface ([`ReclaimPolicy`]), policy selection by name ([`PolicyKind`]), shadow
//! tokens, errors and counters shared by the four policies.

use alloc::string::String;
use core::fmt;
use core::str::FromStr;

use crate::clock::Clock;
use crate::clockpro::ClockPro;
use crate::env::AccessEnv;
use crate::frame::{FrameId, FrameTable, PageKey};
use crate::lru2::Lru2;
use crate::mglru::Mglru;

/// A page-reclaim policy. The kernel calls it under one lock; every method is allocation-free.
///
/// Protocol (see the crate docs for the full sequence):
/// * [`fault_in`](Self::fault_in) when a page is mapped into a frame (first touch or swap-in,
///   with the shadow token stored at its eviction);
/// * [`isolate`](Self::isolate) when free memory is low: fills `victims` with frames to evict;
/// * for each victim exactly one of [`evicted`](Self::evicted) (returns the shadow token to keep
///   in the swap PTE) or [`putback`](Self::putback) (eviction failed, the page stays resident);
/// * [`free`](Self::free) when the kernel frees a tracked frame (unmap, exit), isolated or not.
pub trait ReclaimPolicy {
    /// Which policy this is.
    fn kind(&self) -> PolicyKind;

    /// Start tracking `frame`, now mapping `owner`. `shadow` is the token [`evicted`]
    /// returned when this page was last evicted, if any. The kernel sets the frame's
    /// [`crate::FrameFlags`] (at least `ANON` for anonymous memory) before the call.
    ///
    /// [`evicted`]: Self::evicted
    fn fault_in(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        frame: FrameId,
        owner: PageKey,
        shadow: Option<ShadowToken>,
    ) -> Result<(), PolicyError>;

    /// Choose up to `victims.len()` frames to evict, write them to `victims` and return how many.
    /// The frames leave the policy's lists (isolated) until the kernel reports each back.
    /// Pinned and under-I/O frames are never chosen. `Ok(0)` means nothing is evictable now;
    /// [`ReclaimError::Thrashing`] asks the kernel to fail the allocation (OOM) instead.
    fn isolate(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        victims: &mut [FrameId],
    ) -> Result<usize, ReclaimError>;

    /// The isolated `frame` was unmapped and its page written out (or dropped): forget the
    /// frame and return the shadow token the kernel stores with the swapped-out page.
    fn evicted(
        &mut self,
        frames: &mut FrameTable,
        frame: FrameId,
    ) -> Result<ShadowToken, PolicyError>;

    /// Evicting the isolated `frame` failed (I/O error, page re-mapped): take it back.
    fn putback(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError>;

    /// The kernel freed the tracked `frame` (isolated or not): forget it, no shadow.
    fn free(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError>;

    /// Frames tracked (on a list or isolated).
    fn tracked(&self) -> u32;

    /// Counters common to all policies.
    fn stats(&self) -> PolicyStats;

    /// Human-readable state (MGLRU: the `lru_gen` generation and tier table) at time `now_ms`.
    fn write_debug(&self, now_ms: u64, out: &mut dyn fmt::Write) -> fmt::Result;

    /// Check every internal invariant against `frames` (O(frames); for tests and debugging).
    fn check_invariants(&self, frames: &FrameTable) -> Result<(), InvariantError>;
}

/// The four policies, selectable by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Multi-generational LRU (Linux 6.1), the default.
    Mglru,
    /// Two-list active/inactive LRU (Linux before 6.1).
    Lru2,
    /// CLOCK (second chance).
    Clock,
    /// CLOCK-Pro (scan resistant, reference bits only).
    ClockPro,
}

impl PolicyKind {
    /// Every policy, default first.
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::Mglru,
        PolicyKind::Lru2,
        PolicyKind::Clock,
        PolicyKind::ClockPro,
    ];

    /// The name accepted by [`FromStr`].
    pub const fn name(self) -> &'static str {
        match self {
            PolicyKind::Mglru => "mglru",
            PolicyKind::Lru2 => "lru2",
            PolicyKind::Clock => "clock",
            PolicyKind::ClockPro => "clockpro",
        }
    }

    /// Tag stored in the top two bits of this policy's shadow tokens.
    const fn token_tag(self) -> u32 {
        match self {
            PolicyKind::Mglru => 0,
            PolicyKind::Lru2 => 1,
            PolicyKind::Clock => 2,
            PolicyKind::ClockPro => 3,
        }
    }

    /// Build this policy for a table of `frames` frames.
    pub fn build(self, frames: u32, config: &PolicyConfig) -> Result<AnyPolicy, ConfigError> {
        config.validate()?;
        Ok(match self {
            PolicyKind::Mglru => AnyPolicy::Mglru(Mglru::new(frames, config)),
            PolicyKind::Lru2 => AnyPolicy::Lru2(Lru2::new(frames)),
            PolicyKind::Clock => AnyPolicy::Clock(Clock::new(frames)),
            PolicyKind::ClockPro => AnyPolicy::ClockPro(ClockPro::new(frames)),
        })
    }
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown policy name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownPolicy {
    /// The name as given.
    pub name: String,
}

impl fmt::Display for UnknownPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown reclaim policy `{}`; expected one of: mglru, lru2, clock, clockpro",
            self.name
        )
    }
}

impl core::error::Error for UnknownPolicy {}

impl FromStr for PolicyKind {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyKind::ALL
            .into_iter()
            .find(|kind| kind.name() == s)
            .ok_or_else(|| UnknownPolicy {
                name: String::from(s),
            })
    }
}

/// Tunables. Only MGLRU reads them; the other policies have no knobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyConfig {
    /// MGLRU thrash protection: report [`ReclaimError::Thrashing`] when the oldest generation
    /// is younger than this (0 disables it, as Linux's default).
    pub min_ttl_ms: u64,
    /// MGLRU anon/file balance, 0..=200 as Linux `vm.swappiness` (0: never anon, 200: anon first).
    pub swappiness: u8,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            min_ttl_ms: 0,
            swappiness: 60,
        }
    }
}

impl PolicyConfig {
    /// Check the ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.swappiness > 200 {
            return Err(ConfigError::Swappiness(self.swappiness));
        }
        Ok(())
    }
}

/// An invalid [`PolicyConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// Swappiness above 200.
    Swappiness(u8),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Swappiness(v) => write!(f, "swappiness {v} is out of range 0..=200"),
        }
    }
}

impl core::error::Error for ConfigError {}

/// What a policy leaves behind for an evicted page; the kernel stores it with the swapped-out
/// page (in the swap PTE or swap slot) and hands it back on fault-in.
///
/// Layout (32 bits): bits 30..32 name the policy (0 MGLRU, 1 LRU2, 2 CLOCK, 3 CLOCK-Pro) so a
/// token from another policy is ignored; bits 0..30 are the policy's payload:
/// * MGLRU: bits 6..30 the generation `seq` (mod 2^24) the page was evicted from, bit 5 the type
///   (1 = file), bits 0..5 the page's refs (access count, which gives its tier);
/// * LRU2: the eviction clock (non-resident age, mod 2^30) at eviction;
/// * CLOCK: always 0;
/// * CLOCK-Pro: 0, or 1 + the index of the ghost entry of a page evicted during its test period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ShadowToken(u32);

impl ShadowToken {
    const PAYLOAD_BITS: u32 = 30;
    /// Mask of the payload bits.
    pub(crate) const PAYLOAD_MASK: u32 = (1 << Self::PAYLOAD_BITS) - 1;

    /// The token as stored by the kernel.
    pub const fn to_raw(self) -> u32 {
        self.0
    }

    /// A token read back from storage.
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    pub(crate) const fn new(kind: PolicyKind, payload: u32) -> Self {
        Self((kind.token_tag() << Self::PAYLOAD_BITS) | (payload & Self::PAYLOAD_MASK))
    }

    /// The payload if this token was made by `kind`.
    pub(crate) const fn payload(self, kind: PolicyKind) -> Option<u32> {
        if self.0 >> Self::PAYLOAD_BITS == kind.token_tag() {
            Some(self.0 & Self::PAYLOAD_MASK)
        } else {
            None
        }
    }
}

/// A kernel call that breaks the protocol (bad frame number, wrong state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The frame number is past the end of the frame table.
    FrameOutOfRange {
        /// The frame given.
        frame: FrameId,
        /// Frames in the table.
        frames: u32,
    },
    /// `fault_in` for a frame the policy already tracks.
    AlreadyTracked(FrameId),
    /// `free` (or `evicted`/`putback`) for a frame the policy does not track.
    NotTracked(FrameId),
    /// `evicted`/`putback` for a tracked frame that was not isolated.
    NotIsolated(FrameId),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::FrameOutOfRange { frame, frames } => {
                write!(
                    f,
                    "frame {} is out of range (the table has {frames} frames)",
                    frame.0
                )
            }
            PolicyError::AlreadyTracked(frame) => {
                write!(f, "frame {} is already tracked by the policy", frame.0)
            }
            PolicyError::NotTracked(frame) => {
                write!(f, "frame {} is not tracked by the policy", frame.0)
            }
            PolicyError::NotIsolated(frame) => {
                write!(f, "frame {} was not isolated for eviction", frame.0)
            }
        }
    }
}

impl core::error::Error for PolicyError {}

/// Why [`ReclaimPolicy::isolate`] refuses to pick victims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReclaimError {
    /// The oldest generation is younger than `min_ttl_ms`: evicting would throw out the working
    /// set of the last `min_ttl_ms`. The kernel should fail the allocation (OOM) cleanly.
    Thrashing {
        /// Age of the oldest generation.
        oldest_age_ms: u64,
        /// The configured protection.
        min_ttl_ms: u64,
    },
}

impl fmt::Display for ReclaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReclaimError::Thrashing {
                oldest_age_ms,
                min_ttl_ms,
            } => write!(
                f,
                "thrashing: the oldest generation is {oldest_age_ms} ms old, younger than min_ttl {min_ttl_ms} ms"
            ),
        }
    }
}

impl core::error::Error for ReclaimError {}

/// A broken internal invariant, found by [`ReclaimPolicy::check_invariants`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvariantError {
    /// Policy that found it.
    pub policy: PolicyKind,
    /// What is wrong.
    pub what: &'static str,
    /// The frame concerned, if one.
    pub frame: Option<FrameId>,
}

impl fmt::Display for InvariantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} invariant broken: {}", self.policy, self.what)?;
        if let Some(frame) = self.frame {
            write!(f, " (frame {})", frame.0)?;
        }
        Ok(())
    }
}

impl core::error::Error for InvariantError {}

/// Counters every policy keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// `fault_in` calls.
    pub fault_ins: u64,
    /// Refaults the shadow token made the policy act on (MGLRU: evicted from the current oldest
    /// generation; LRU2: refault distance within the workingset; CLOCK-Pro: still in test).
    pub shadow_hits: u64,
    /// Frames examined by eviction scans.
    pub scanned: u64,
    /// PTE young bits tested (single PTEs, walks and look-arounds): the access-bit cost.
    pub ptes_tested: u64,
    /// Frames isolated for eviction.
    pub isolated: u64,
    /// Frames reported evicted.
    pub evicted: u64,
    /// Frames put back after failed eviction.
    pub putbacks: u64,
    /// Frames freed by the kernel.
    pub frees: u64,
}

/// Range check shared by the policies.
pub(crate) fn check_range(frames: &FrameTable, frame: FrameId) -> Result<(), PolicyError> {
    if frame.0 < frames.len() {
        Ok(())
    } else {
        Err(PolicyError::FrameOutOfRange {
            frame,
            frames: frames.len(),
        })
    }
}

/// Checks for `fault_in`: in range and untracked.
pub(crate) fn check_untracked(frames: &FrameTable, frame: FrameId) -> Result<(), PolicyError> {
    check_range(frames, frame)?;
    if frames.meta(frame.0).is_tracked() {
        Err(PolicyError::AlreadyTracked(frame))
    } else {
        Ok(())
    }
}

/// Checks for `evicted`/`putback`: in range, tracked and isolated.
pub(crate) fn check_isolated(frames: &FrameTable, frame: FrameId) -> Result<(), PolicyError> {
    check_tracked(frames, frame)?;
    if frames.meta(frame.0).is_isolated() {
        Ok(())
    } else {
        Err(PolicyError::NotIsolated(frame))
    }
}

/// Checks for `free`: in range and tracked.
pub(crate) fn check_tracked(frames: &FrameTable, frame: FrameId) -> Result<(), PolicyError> {
    check_range(frames, frame)?;
    if frames.meta(frame.0).is_tracked() {
        Ok(())
    } else {
        Err(PolicyError::NotTracked(frame))
    }
}

/// Any of the four policies, dispatched statically (no boxing), built by [`PolicyKind::build`].
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one policy per system: its size does not matter, a box would"
)]
pub enum AnyPolicy {
    /// Multi-generational LRU.
    Mglru(Mglru),
    /// Two-list LRU.
    Lru2(Lru2),
    /// CLOCK.
    Clock(Clock),
    /// CLOCK-Pro.
    ClockPro(ClockPro),
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            AnyPolicy::Mglru($p) => $e,
            AnyPolicy::Lru2($p) => $e,
            AnyPolicy::Clock($p) => $e,
            AnyPolicy::ClockPro($p) => $e,
        }
    };
}

impl ReclaimPolicy for AnyPolicy {
    fn kind(&self) -> PolicyKind {
        dispatch!(self, p => p.kind())
    }

    fn fault_in(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        frame: FrameId,
        owner: PageKey,
        shadow: Option<ShadowToken>,
    ) -> Result<(), PolicyError> {
        dispatch!(self, p => p.fault_in(frames, env, frame, owner, shadow))
    }

    fn isolate(
        &mut self,
        frames: &mut FrameTable,
        env: &mut dyn AccessEnv,
        victims: &mut [FrameId],
    ) -> Result<usize, ReclaimError> {
        dispatch!(self, p => p.isolate(frames, env, victims))
    }

    fn evicted(
        &mut self,
        frames: &mut FrameTable,
        frame: FrameId,
    ) -> Result<ShadowToken, PolicyError> {
        dispatch!(self, p => p.evicted(frames, frame))
    }

    fn putback(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        dispatch!(self, p => p.putback(frames, frame))
    }

    fn free(&mut self, frames: &mut FrameTable, frame: FrameId) -> Result<(), PolicyError> {
        dispatch!(self, p => p.free(frames, frame))
    }

    fn tracked(&self) -> u32 {
        dispatch!(self, p => p.tracked())
    }

    fn stats(&self) -> PolicyStats {
        dispatch!(self, p => p.stats())
    }

    fn write_debug(&self, now_ms: u64, out: &mut dyn fmt::Write) -> fmt::Result {
        dispatch!(self, p => p.write_debug(now_ms, out))
    }

    fn check_invariants(&self, frames: &FrameTable) -> Result<(), InvariantError> {
        dispatch!(self, p => p.check_invariants(frames))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn kinds_parse_by_name_and_reject_unknown_names() {
        for kind in PolicyKind::ALL {
            assert_eq!(kind.name().parse::<PolicyKind>(), Ok(kind));
        }
        let err = "lru".parse::<PolicyKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown reclaim policy `lru`; expected one of: mglru, lru2, clock, clockpro"
        );
        assert_eq!("MGLRU".parse::<PolicyKind>().unwrap_err().name, "MGLRU");
    }

    #[test]
    fn tokens_carry_their_policy_tag() {
        let token = ShadowToken::new(PolicyKind::Lru2, 12345);
        assert_eq!(token.payload(PolicyKind::Lru2), Some(12345));
        assert_eq!(token.payload(PolicyKind::Mglru), None);
        assert_eq!(ShadowToken::from_raw(token.to_raw()), token);
        assert_eq!(
            ShadowToken::new(PolicyKind::ClockPro, u32::MAX).payload(PolicyKind::ClockPro),
            Some((1 << 30) - 1)
        );
    }

    #[test]
    fn bad_swappiness_is_rejected() {
        let config = PolicyConfig {
            swappiness: 201,
            ..PolicyConfig::default()
        };
        let err = PolicyKind::Mglru.build(8, &config).unwrap_err();
        assert_eq!(err, ConfigError::Swappiness(201));
        assert_eq!(err.to_string(), "swappiness 201 is out of range 0..=200");
        assert_eq!(
            PolicyKind::Clock
                .build(8, &PolicyConfig::default())
                .map(|p| p.kind())
                .ok(),
            Some(PolicyKind::Clock)
        );
    }

    #[test]
    fn protocol_errors_have_clear_messages() {
        let cases = [
            (
                PolicyError::FrameOutOfRange {
                    frame: FrameId(9),
                    frames: 4,
                },
                "frame 9 is out of range (the table has 4 frames)",
            ),
            (
                PolicyError::AlreadyTracked(FrameId(1)),
                "frame 1 is already tracked by the policy",
            ),
            (
                PolicyError::NotTracked(FrameId(2)),
                "frame 2 is not tracked by the policy",
            ),
            (
                PolicyError::NotIsolated(FrameId(3)),
                "frame 3 was not isolated for eviction",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
        let thrash = ReclaimError::Thrashing {
            oldest_age_ms: 5,
            min_ttl_ms: 1000,
        };
        assert_eq!(
            thrash.to_string(),
            "thrashing: the oldest generation is 5 ms old, younger than min_ttl 1000 ms"
        );
    }
}
