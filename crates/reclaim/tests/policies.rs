//! Behaviour of each policy on small scripted scenarios, through the kernel-facing protocol.

mod common;

use common::{Rig, page};
use reclaim::{
    AddressSpaceId, AnyPolicy, FrameFlags, FrameId, PageKey, PolicyConfig, PolicyError, PolicyKind,
    ReclaimError, ReclaimPolicy, ShadowToken,
};

fn mglru(rig: &Rig) -> &reclaim::Mglru {
    match &rig.policy {
        AnyPolicy::Mglru(p) => p,
        _ => panic!("not MGLRU"),
    }
}

#[test]
fn mglru_evicts_the_oldest_generation_and_promotes_what_was_used() {
    let mut rig = Rig::new(PolicyKind::Mglru, 16);
    for vpn in 0..8 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    // New faults enter the youngest generation (seq 3, list id 3 % 4 + 1).
    assert!((0..8).all(|f| rig.frames.get(FrameId(f)).unwrap().list_id() == 4));
    // The first reclaim ages twice (the young bits of the faults only clear FRESH), then evicts
    // the oldest fault first.
    assert_eq!(rig.isolate(1), [FrameId(0)]);
    assert_eq!(mglru(&rig).max_seq(), 5);
    assert_eq!(mglru(&rig).mglru_stats().agings, 2);
    rig.evict(FrameId(0));
    // Pages 1 and 2 are used again: page 1 is found young at the tail, promoted to the youngest
    // generation, and its look-around promotes page 2; 3 and 4 go.
    rig.env.touch(page(1));
    rig.env.touch(page(2));
    assert_eq!(rig.isolate(2), [FrameId(3), FrameId(4)]);
    let youngest = (5 % 4 + 1) as u8;
    assert_eq!(rig.frames.get(FrameId(1)).unwrap().list_id(), youngest);
    assert_eq!(rig.frames.get(FrameId(2)).unwrap().list_id(), youngest);
    let stats = mglru(&rig).mglru_stats();
    assert_eq!(
        (
            stats.activated,
            stats.look_arounds,
            stats.look_around_young,
            stats.sorted
        ),
        (1, 1, 1, 1)
    );
}

#[test]
fn mglru_debug_view_lists_generations_and_tiers() {
    let mut rig = Rig::new(PolicyKind::Mglru, 8);
    for vpn in 0..3 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    rig.env.now_ms = 250;
    let text = rig.debug();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "mglru max_seq 3 min_seq anon 0 file 0 tracked 3");
    assert_eq!(lines[1], "     seq     age_ms  nr_anon  nr_file");
    assert_eq!(lines[2], "       0        250        0        0");
    assert_eq!(lines[5], "       3        250        3        0");
    assert_eq!(
        lines[6],
        "tiers evicted up to: anon 3 file 3 (higher tiers are protected)"
    );
    assert_eq!(lines[7], "    tier type  refaulted    evicted  protected");
    assert_eq!(lines[8], "       0 anon          0          0          0");
    assert!(lines[16].starts_with("agings 0 walked 0 "), "{}", lines[16]);
}

#[test]
fn mglru_refault_in_window_counts_against_its_tier() {
    let mut rig = Rig::new(PolicyKind::Mglru, 8);
    for vpn in 0..4 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    let victim = rig.isolate(1)[0];
    let token = rig.evict(victim);
    assert_eq!(token.to_raw() >> 30, 0, "MGLRU tag");
    assert_eq!(token.to_raw() & 63, 0, "anon, refs 0");
    rig.fault(victim.0, page(0), Some(token));
    assert_eq!(rig.policy.stats().shadow_hits, 1);
    assert!(
        rig.debug()
            .contains("\n       0 anon          1          1          0\n"),
        "{}",
        rig.debug()
    );
    // A token from another policy, or from a generation long gone, is not counted.
    rig.policy.free(&mut rig.frames, victim).unwrap();
    rig.fault(victim.0, page(0), Some(ShadowToken::from_raw(1 << 30)));
    rig.policy.free(&mut rig.frames, victim).unwrap();
    let stale = (token.to_raw() & !((1 << 30) - 1)) | (((token.to_raw() >> 6) + 100) << 6);
    rig.fault(victim.0, page(0), Some(ShadowToken::from_raw(stale)));
    assert_eq!(rig.policy.stats().shadow_hits, 1);
}

#[test]
fn mglru_min_ttl_reports_thrashing_instead_of_evicting() {
    let config = PolicyConfig {
        min_ttl_ms: 1000,
        ..PolicyConfig::default()
    };
    let mut rig = Rig::with_config(PolicyKind::Mglru, 8, config);
    for vpn in 0..4 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    rig.env.now_ms = 10;
    let mut victims = [FrameId(0); 2];
    let err = rig
        .policy
        .isolate(&mut rig.frames, &mut rig.env, &mut victims)
        .unwrap_err();
    assert_eq!(
        err,
        ReclaimError::Thrashing {
            oldest_age_ms: 10,
            min_ttl_ms: 1000
        }
    );
    assert_eq!(mglru(&rig).mglru_stats().thrash_reports, 1);
    assert_eq!(rig.policy.stats().isolated, 0);
    // Once the oldest generation is older than min_ttl, eviction proceeds.
    rig.env.now_ms = 2000;
    assert_eq!(rig.isolate(2).len(), 2);
}

#[test]
fn mglru_walks_only_address_spaces_that_ran() {
    let mut rig = Rig::new(PolicyKind::Mglru, 32);
    let key = |space: u16, vpn: u64| PageKey::new(AddressSpaceId(space), vpn);
    for vpn in 0..8 {
        rig.fault(vpn as u32, key(1, vpn), None);
        rig.fault(8 + vpn as u32, key(2, vpn), None);
    }
    // First reclaim: two agings. The first walks both spaces in full (new to the policy); the
    // second finds that neither ran since and skips both.
    rig.isolate(1);
    assert_eq!(rig.env.walked_spaces, [1, 2]);
    assert_eq!(mglru(&rig).mglru_stats().spaces_skipped, 2);
    // Only space 1 runs from now on: later walks visit it alone.
    for _ in 0..4 {
        rig.env.touch(key(1, 0));
        rig.env.touch(key(1, 1));
        let victims = rig.isolate(4);
        for victim in victims {
            rig.evict(victim);
        }
    }
    assert!(
        rig.env.walked_spaces[2..].iter().all(|&s| s == 1),
        "{:?}",
        rig.env.walked_spaces
    );
    assert!(rig.env.walked_spaces.len() > 2);
}

#[test]
fn mglru_bloom_filter_skips_tables_without_young_entries() {
    let mut rig = Rig::new(PolicyKind::Mglru, 64);
    // Table 0 holds pages 0..8, table 1 pages 512..520.
    for i in 0..8 {
        rig.fault(i, page(u64::from(i)), None);
        rig.fault(8 + i, page(512 + u64::from(i)), None);
    }
    rig.isolate(1);
    // Walk 1 scans everything (no filter yet) and finds both tables young; walk 2 skips the
    // space, which has not run since.
    let (t0, t1) = (page(0).leaf_table(), page(512).leaf_table());
    assert_eq!(rig.env.scanned_tables, [t0, t1]);
    // Keep only table 1's pages busy; reclaim until aging runs again.
    while mglru(&rig).mglru_stats().agings < 4 {
        for vpn in 512..520 {
            rig.env.touch(page(vpn));
        }
        let victims = rig.isolate(2);
        assert!(!victims.is_empty());
        for victim in victims {
            rig.evict(victim);
        }
    }
    // Table 0 is never scanned again; table 1 comes back through the eviction's look-around.
    assert!(
        !rig.env.scanned_tables[2..].contains(&t0),
        "{:?}",
        rig.env.scanned_tables
    );
    assert!(rig.env.skipped_tables.contains(&t0));
    assert!(
        rig.env.scanned_tables[2..].contains(&t1),
        "{:?}",
        rig.env.scanned_tables
    );
    assert!(mglru(&rig).mglru_stats().tables_skipped >= 1);
}

#[test]
fn lru2_gives_a_second_chance_and_activates_on_the_second_reference() {
    let mut rig = Rig::new(PolicyKind::Lru2, 8);
    for vpn in 0..4 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    // Every page is young from its fault: marked referenced and rotated once; then page 0 goes.
    assert_eq!(rig.isolate(1), [FrameId(0)]);
    rig.evict(FrameId(0));
    // Page 1 is referenced again: activated; page 2 is not: evicted.
    rig.env.touch(page(1));
    assert_eq!(rig.isolate(1), [FrameId(2)]);
    assert!(
        rig.debug().contains("anon         1       1"),
        "{}",
        rig.debug()
    );
}

#[test]
fn lru2_activates_refaults_within_the_workingset() {
    let mut rig = Rig::new(PolicyKind::Lru2, 8);
    for vpn in 0..4 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    rig.isolate(1);
    let token = rig.evict(FrameId(0));
    rig.env.touch(page(1));
    assert_eq!(rig.isolate(1), [FrameId(2)]);
    // One active page: a refault at distance 1 is within the workingset.
    rig.fault(0, page(0), Some(token));
    assert_eq!(rig.policy.stats().shadow_hits, 1);
    assert!(
        rig.debug().contains("anon         1       2"),
        "{}",
        rig.debug()
    );
}

#[test]
fn clock_clears_young_bits_then_evicts_in_order() {
    let mut rig = Rig::new(PolicyKind::Clock, 8);
    for vpn in 0..4 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    assert_eq!(rig.isolate(2), [FrameId(0), FrameId(1)]);
    rig.env.touch(page(2));
    assert_eq!(rig.isolate(1), [FrameId(3)]);
}

fn clockpro(rig: &Rig) -> &reclaim::ClockPro {
    match &rig.policy {
        AnyPolicy::ClockPro(p) => p,
        _ => panic!("not CLOCK-Pro"),
    }
}

#[test]
fn clockpro_turns_a_ghost_hit_into_a_hot_page() {
    let mut rig = Rig::new(PolicyKind::ClockPro, 8);
    for vpn in 0..4 {
        rig.fault(vpn as u32, page(vpn), None);
    }
    // Memory is filling for the first time: pages are hot up to the hot target, all but the
    // cold share (one page, the first fault).
    assert_eq!(clockpro(&rig).hot_pages(), 3);
    // Its fault's young bit buys it one more turn of the cold hand, then it goes.
    assert_eq!(rig.isolate(1), [FrameId(0)]);
    let token = rig.evict(FrameId(0));
    assert_eq!(token.to_raw() >> 30, 3);
    assert_ne!(
        token.to_raw() & ((1 << 30) - 1),
        0,
        "evicted in its test period: a ghost"
    );
    rig.fault(4, page(0), Some(token));
    assert_eq!(rig.policy.stats().shadow_hits, 1);
    // Hot, and the cold target grows; hot pages now exceed their target (4 resident - 2 cold),
    // so the hot hand demotes the two oldest hot pages once their young bits are spent.
    assert_eq!(
        rig.debug(),
        "clockpro: resident 4 hot 2 cold 2 cold_target 2 ghosts 0\n"
    );
    // Demoted pages are cold outside a test period: evicted, they leave no ghost.
    assert_eq!(rig.isolate(2), [FrameId(1), FrameId(2)]);
    for victim in [FrameId(1), FrameId(2)] {
        assert_eq!(rig.evict(victim).to_raw() & ((1 << 30) - 1), 0);
    }
    // A ghost token whose page is no longer the ghost's owner does not make a page hot.
    rig.policy.free(&mut rig.frames, FrameId(4)).unwrap();
    rig.fault(4, page(9), Some(token));
    assert_eq!(rig.policy.stats().shadow_hits, 1);
}

#[test]
fn every_policy_skips_pinned_and_under_io_frames() {
    for kind in PolicyKind::ALL {
        let mut rig = Rig::new(kind, 8);
        for vpn in 0..4 {
            rig.fault(vpn as u32, page(vpn), None);
        }
        rig.frames.insert_flags(FrameId(0), FrameFlags::PINNED);
        rig.frames.insert_flags(FrameId(1), FrameFlags::UNDER_IO);
        rig.frames.insert_flags(FrameId(2), FrameFlags::PINNED);
        let mut victims = Vec::new();
        for _ in 0..3 {
            victims.extend(rig.isolate(4));
        }
        assert_eq!(victims, [FrameId(3)], "{kind}");
    }
}

#[test]
fn every_policy_takes_back_a_failed_eviction() {
    for kind in PolicyKind::ALL {
        let mut rig = Rig::new(kind, 8);
        for vpn in 0..4 {
            rig.fault(vpn as u32, page(vpn), None);
        }
        let victim = rig.isolate(1)[0];
        assert!(rig.frames.get(victim).unwrap().is_isolated());
        rig.policy.putback(&mut rig.frames, victim).unwrap();
        rig.check();
        let meta = rig.frames.get(victim).unwrap();
        assert!(meta.is_tracked() && !meta.is_isolated(), "{kind}");
        assert_eq!(rig.policy.tracked(), 4);
        assert_eq!(rig.policy.stats().putbacks, 1);
        assert_eq!(
            rig.policy.evicted(&mut rig.frames, victim),
            Err(PolicyError::NotIsolated(victim)),
            "{kind}"
        );
        // It can be chosen again later, and nothing was lost.
        let mut seen = Vec::new();
        for _ in 0..6 {
            for v in rig.isolate(4) {
                seen.push(v);
                rig.evict(v);
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            [FrameId(0), FrameId(1), FrameId(2), FrameId(3)],
            "{kind}"
        );
        assert_eq!(rig.policy.tracked(), 0);
    }
}

#[test]
fn every_policy_forgets_frames_freed_at_any_time() {
    for kind in PolicyKind::ALL {
        let mut rig = Rig::new(kind, 8);
        for vpn in 0..6 {
            rig.fault(vpn as u32, page(vpn), None);
        }
        rig.policy.free(&mut rig.frames, FrameId(4)).unwrap();
        rig.check();
        let victim = rig.isolate(1)[0];
        rig.policy.free(&mut rig.frames, victim).unwrap();
        rig.check();
        assert_eq!(rig.policy.tracked(), 4, "{kind}");
        assert_eq!(rig.policy.stats().frees, 2);
        assert!(!rig.frames.get(victim).unwrap().is_tracked());
        assert_eq!(
            rig.policy.evicted(&mut rig.frames, victim),
            Err(PolicyError::NotTracked(victim))
        );
        assert_eq!(
            rig.policy.free(&mut rig.frames, FrameId(4)),
            Err(PolicyError::NotTracked(FrameId(4)))
        );
        // The freed frame can hold a new page.
        rig.fault(4, page(40), None);
        assert_eq!(rig.policy.tracked(), 5);
    }
}

#[test]
fn every_policy_rejects_protocol_errors() {
    for kind in PolicyKind::ALL {
        let mut rig = Rig::new(kind, 4);
        rig.fault(0, page(0), None);
        let err = rig
            .policy
            .fault_in(&mut rig.frames, &mut rig.env, FrameId(0), page(1), None);
        assert_eq!(err, Err(PolicyError::AlreadyTracked(FrameId(0))), "{kind}");
        let err = rig
            .policy
            .fault_in(&mut rig.frames, &mut rig.env, FrameId(4), page(1), None);
        assert_eq!(
            err,
            Err(PolicyError::FrameOutOfRange {
                frame: FrameId(4),
                frames: 4
            }),
            "{kind}"
        );
        assert_eq!(
            rig.policy.putback(&mut rig.frames, FrameId(0)),
            Err(PolicyError::NotIsolated(FrameId(0)))
        );
        assert_eq!(
            rig.policy.free(&mut rig.frames, FrameId(1)),
            Err(PolicyError::NotTracked(FrameId(1)))
        );
        assert_eq!(
            rig.policy.free(&mut rig.frames, FrameId(9)),
            Err(PolicyError::FrameOutOfRange {
                frame: FrameId(9),
                frames: 4
            })
        );
        assert_eq!(
            rig.policy.isolate(&mut rig.frames, &mut rig.env, &mut []),
            Ok(0)
        );
        rig.check();
        assert_eq!(rig.policy.tracked(), 1);
    }
}

#[test]
fn every_policy_writes_a_debug_view() {
    for kind in PolicyKind::ALL {
        let mut rig = Rig::new(kind, 4);
        rig.fault(0, page(0), None);
        assert!(
            rig.debug().starts_with(kind.name()),
            "{kind}: {}",
            rig.debug()
        );
    }
}
