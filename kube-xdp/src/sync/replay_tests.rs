//! The replay rules, one by one.

use super::*;

const E: u64 = 1_700_000_000_000_000_000;
const NONCE: u64 = 0x5eed;

/// A guard that took the peer's dump (epoch `E`, seq `seq`).
fn knowing(seq: u64) -> ReplayGuard {
    let mut g = ReplayGuard::new();
    g.expect_dump(NONCE);
    take(&mut g, E, seq, Kind::Dump, NONCE).unwrap();
    g
}

fn take(g: &mut ReplayGuard, epoch: u64, seq: u64, kind: Kind, nonce: u64) -> Result<(), Replay> {
    g.check(epoch, seq, kind, nonce)?;
    g.accept(epoch, seq, kind, nonce);
    Ok(())
}

fn flows(g: &mut ReplayGuard, epoch: u64, seq: u64) -> Result<(), Replay> {
    take(g, epoch, seq, Kind::Flows, 0)
}

#[test]
fn a_box_that_just_started_takes_only_the_dump_answering_its_hello() {
    let mut g = ReplayGuard::new();
    assert_eq!(flows(&mut g, E, 1), Err(Replay::UnknownPeer));
    assert_eq!(
        take(&mut g, E, 2, Kind::Dump, NONCE),
        Err(Replay::UnknownPeer)
    );
    g.expect_dump(NONCE);
    assert_eq!(
        take(&mut g, E, 3, Kind::Dump, NONCE + 1),
        Err(Replay::UnknownPeer)
    );
    assert_eq!(flows(&mut g, E, 4), Err(Replay::UnknownPeer));
    assert_eq!(g.epoch(), None, "refusals change nothing");
    assert_eq!(take(&mut g, E, 5, Kind::DumpEnd, NONCE), Ok(()));
    assert_eq!(g.epoch(), Some(E));
    // From then on the peer's flows count, and so do its earlier
    // datagrams still in the window.
    assert_eq!(flows(&mut g, E, 6), Ok(()));
    assert_eq!(flows(&mut g, E, 4), Ok(()));
    assert_eq!(flows(&mut g, E, 4), Err(Replay::Replayed { seq: 4 }));
}

#[test]
fn a_hello_is_always_answered_but_never_sets_the_first_epoch() {
    let mut g = ReplayGuard::new();
    assert_eq!(take(&mut g, E, 1, Kind::Hello, 9), Ok(()));
    assert_eq!(
        take(&mut g, E, 1, Kind::Hello, 9),
        Ok(()),
        "again: answered again"
    );
    assert_eq!(g.epoch(), None);
    let mut g = knowing(10);
    assert_eq!(
        take(&mut g, E - 1, 1, Kind::Hello, 9),
        Ok(()),
        "an old one too"
    );
    assert_eq!(g.epoch(), Some(E));
    assert_eq!(take(&mut g, E, 10, Kind::Hello, 9), Ok(()));
    // A Hello from a newer epoch: the peer restarted.
    assert_eq!(take(&mut g, E + 5, 1, Kind::Hello, 9), Ok(()));
    assert_eq!(g.epoch(), Some(E + 5));
    assert_eq!(flows(&mut g, E + 5, 1), Err(Replay::Replayed { seq: 1 }));
    assert_eq!(flows(&mut g, E + 5, 2), Ok(()));
}

#[test]
fn a_datagram_is_taken_once() {
    let mut g = knowing(1);
    assert_eq!(flows(&mut g, E, 1), Err(Replay::Replayed { seq: 1 }));
    assert_eq!(flows(&mut g, E, 2), Ok(()));
    assert_eq!(flows(&mut g, E, 2), Err(Replay::Replayed { seq: 2 }));
    assert_eq!(
        flows(&mut g, E, 0),
        Err(Replay::Replayed { seq: 0 }),
        "seq starts at 1"
    );
}

#[test]
fn check_alone_changes_nothing() {
    let g = knowing(1);
    let before = g.clone();
    assert_eq!(g.check(E, 2, Kind::Flows, 0), Ok(()));
    assert_eq!(g.check(E, 2, Kind::Flows, 0), Ok(()));
    assert_eq!(g, before);
}

#[test]
fn reordering_within_the_window_is_taken() {
    let mut g = knowing(1);
    for seq in [5, 3, 2, 4, 10, 7] {
        assert_eq!(flows(&mut g, E, seq), Ok(()), "seq {seq}");
    }
    for seq in [1, 2, 3, 4, 5, 7, 10] {
        assert_eq!(flows(&mut g, E, seq), Err(Replay::Replayed { seq }));
    }
    assert_eq!(flows(&mut g, E, 6), Ok(()));
    assert_eq!(flows(&mut g, E, 9), Ok(()));
}

#[test]
fn the_oldest_seq_in_the_window_is_taken_once_and_older_ones_never() {
    let mut g = knowing(1);
    flows(&mut g, E, 100).unwrap();
    // 100 - 63 is the oldest the window holds; 100 - 64 is out of it.
    assert_eq!(flows(&mut g, E, 37), Ok(()));
    assert_eq!(flows(&mut g, E, 37), Err(Replay::Replayed { seq: 37 }));
    assert_eq!(flows(&mut g, E, 36), Err(Replay::Replayed { seq: 36 }));
    // The window slides: 37 falls out when 101 comes.
    flows(&mut g, E, 101).unwrap();
    assert_eq!(flows(&mut g, E, 38), Ok(()));
    assert_eq!(flows(&mut g, E, 37), Err(Replay::Replayed { seq: 37 }));
}

#[test]
fn a_seq_far_ahead_is_taken_and_clears_the_window() {
    let mut g = knowing(1);
    for seq in 2..=10 {
        flows(&mut g, E, seq).unwrap();
    }
    assert_eq!(flows(&mut g, E, 1_000_000), Ok(()));
    assert_eq!(
        flows(&mut g, E, 1_000_000),
        Err(Replay::Replayed { seq: 1_000_000 })
    );
    assert_eq!(
        flows(&mut g, E, 11),
        Err(Replay::Replayed { seq: 11 }),
        "behind the window"
    );
    assert_eq!(flows(&mut g, E, 999_999), Ok(()));
    assert_eq!(flows(&mut g, E, 1_000_000 - 63), Ok(()));
}

#[test]
fn a_restarted_peer_starts_a_new_epoch_and_its_old_one_is_over() {
    let mut g = knowing(500);
    assert_eq!(flows(&mut g, E + 1, 1), Ok(()));
    assert_eq!(g.epoch(), Some(E + 1));
    assert_eq!(flows(&mut g, E + 1, 2), Ok(()));
    // The old run's datagrams, played again, whatever their seq.
    assert_eq!(
        flows(&mut g, E, 501),
        Err(Replay::OldEpoch {
            epoch: E,
            current: E + 1
        })
    );
    assert_eq!(
        take(&mut g, E, 502, Kind::Dump, 0),
        Err(Replay::OldEpoch {
            epoch: E,
            current: E + 1
        })
    );
}

#[test]
fn an_epoch_that_jumped_back_is_taken_only_from_the_dump_answering_our_hello() {
    let mut g = knowing(1);
    // The peer restarted with its clock set back: an older epoch.
    let back = E - 3_600_000_000_000;
    assert_eq!(
        flows(&mut g, back, 1),
        Err(Replay::OldEpoch {
            epoch: back,
            current: E
        })
    );
    assert_eq!(
        take(&mut g, back, 2, Kind::Dump, NONCE + 1),
        Err(Replay::OldEpoch {
            epoch: back,
            current: E
        }),
        "a dump answering another Hello"
    );
    // Our Hello's fresh nonce proves the answer is no recording.
    g.expect_dump(NONCE + 1);
    assert_eq!(take(&mut g, back, 3, Kind::Dump, NONCE + 1), Ok(()));
    assert_eq!(g.epoch(), Some(back));
    assert_eq!(flows(&mut g, back, 4), Ok(()));
    // The run before, played again, is not a restart now.
    assert_eq!(
        flows(&mut g, E, 2),
        Err(Replay::OldEpoch {
            epoch: E,
            current: back
        })
    );
    // A real restart past every epoch seen is.
    assert_eq!(flows(&mut g, E + 1, 1), Ok(()));
}

#[test]
fn admit_checks_then_takes_a_decoded_datagram() {
    let mut g = knowing(1);
    let d = Datagram {
        kind: Kind::Flows,
        epoch: E,
        seq: 2,
        nonce: 0,
        clock_ns: 0,
        records: Vec::new(),
    };
    assert_eq!(g.admit(&d), Ok(()));
    assert_eq!(g.admit(&d), Err(Replay::Replayed { seq: 2 }));
}

#[test]
fn hellos_start_at_most_one_dump_a_second() {
    let t0 = Instant::now();
    let mut limit = HelloLimiter::default();
    assert!(limit.allow(t0));
    assert!(!limit.allow(t0));
    assert!(!limit.allow(t0 + Duration::from_millis(999)));
    assert!(limit.allow(t0 + Duration::from_secs(1)));
    assert!(!limit.allow(t0 + Duration::from_millis(1500)));
    // A clock read before the last (another thread's Instant): refused,
    // not a panic.
    assert!(!limit.allow(t0));
    assert!(limit.allow(t0 + Duration::from_secs(2)));
}
