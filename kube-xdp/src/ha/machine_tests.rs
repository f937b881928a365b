//! The state machine against RFC 5798 §6.4, without sockets or clocks.

use super::*;

const ME: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
const MS: Duration = Duration::from_millis(1);

fn params(priority: u8, preempt: bool) -> Params {
    Params {
        vrid: 51,
        priority,
        interval: 100 * MS,
        preempt,
        local: ME,
    }
}

fn advert(priority: u8, interval: Duration) -> Advert {
    Advert {
        vrid: 51,
        priority,
        interval,
        addresses: vec![],
    }
}

/// A ready machine in BACKUP at `t0`.
fn backup(priority: u8, preempt: bool) -> (Machine, Instant) {
    let t0 = Instant::now();
    let mut m = Machine::new(params(priority, preempt), t0);
    assert_eq!(m.state(), State::Init);
    assert!(m.set_ready(true, "ready", t0).is_empty());
    assert_eq!(m.state(), State::Backup);
    (m, t0)
}

#[test]
fn timers_follow_the_rfc() {
    let (m, _) = backup(150, true);
    // Skew = (256 - 150) × 100 ms / 256 = 41.40625 ms.
    assert_eq!(m.skew(), Duration::from_nanos(41_406_250));
    assert_eq!(m.master_down_interval(), 300 * MS + m.skew());
}

#[test]
fn a_lone_backup_becomes_master_after_master_down() {
    let (mut m, t0) = backup(150, true);
    let down = m.master_down_interval();
    assert!(m.tick(t0 + down - MS).is_empty());
    assert_eq!(m.next_deadline(), Some(t0 + down));
    let out = m.tick(t0 + down);
    assert_eq!(out, [Action::Send(150), Action::Claim]);
    assert_eq!(m.state(), State::Master);
    // Then an advertisement every interval, and the ARPs again after 5 s.
    assert_eq!(m.tick(t0 + down + 100 * MS), [Action::Send(150)]);
    let again = m.tick(t0 + down + ANNOUNCE_AGAIN);
    assert!(again.contains(&Action::Announce), "{again:?}");
    assert_eq!(m.history().last().unwrap().to, State::Master);
}

#[test]
fn a_backup_hearing_a_master_stays_backup_and_learns_its_interval() {
    let (mut m, t0) = backup(100, true);
    let t = t0 + 200 * MS;
    assert!(
        m.advert(PEER, &advert(150, Duration::from_secs(1)), t)
            .is_empty()
    );
    assert_eq!(m.master_interval(), Duration::from_secs(1));
    // Master_Down now counts in the master's interval.
    assert!(m.tick(t + 3 * Duration::from_secs(1)).is_empty());
    assert_eq!(m.state(), State::Backup);
    assert_eq!(m.peers()[0].priority, 150);
    assert!(!m.tick(t + m.master_down_interval()).is_empty());
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_resigning_master_is_replaced_after_the_skew_only() {
    let (mut m, t0) = backup(100, true);
    m.advert(PEER, &advert(150, 100 * MS), t0);
    m.advert(PEER, &advert(0, 100 * MS), t0 + 50 * MS);
    let skew = m.skew();
    assert!(m.tick(t0 + 50 * MS + skew - MS).is_empty());
    let out = m.tick(t0 + 50 * MS + skew);
    assert_eq!(out, [Action::Send(100), Action::Claim]);
}

#[test]
fn with_preempt_a_higher_backup_ignores_a_lower_master_and_takes_over() {
    let (mut m, t0) = backup(200, true);
    let mut t = t0;
    for _ in 0..10 {
        t += 100 * MS;
        m.advert(PEER, &advert(100, 100 * MS), t);
        if m.state() == State::Master {
            break;
        }
        m.tick(t);
    }
    assert_eq!(
        m.state(),
        State::Master,
        "{:?}",
        m.history().collect::<Vec<_>>()
    );
}

#[test]
fn without_preempt_a_higher_backup_stays_backup() {
    let (mut m, t0) = backup(200, false);
    let mut t = t0;
    for _ in 0..50 {
        t += 100 * MS;
        m.advert(PEER, &advert(100, 100 * MS), t);
        assert!(m.tick(t).is_empty());
    }
    assert_eq!(m.state(), State::Backup);
}

fn master(priority: u8) -> (Machine, Instant) {
    let (mut m, t0) = backup(priority, true);
    let t = t0 + m.master_down_interval();
    m.tick(t);
    assert_eq!(m.state(), State::Master);
    (m, t)
}

#[test]
fn a_master_yields_to_a_higher_priority_and_releases() {
    let (mut m, t) = master(100);
    let out = m.advert(PEER, &advert(150, 100 * MS), t);
    assert_eq!(out, [Action::Release]);
    assert_eq!(m.state(), State::Backup);
    assert!(m.history().last().unwrap().reason.contains("priority 150"));
}

#[test]
fn equal_priorities_go_to_the_higher_address() {
    let (mut m, t) = master(100);
    // PEER (.3) is above ME (.2): it wins the tie.
    assert_eq!(m.advert(PEER, &advert(100, 100 * MS), t), [Action::Release]);
    let (mut m, t) = master(100);
    let lower = Ipv4Addr::new(198, 18, 0, 1);
    assert_eq!(
        m.advert(lower, &advert(100, 100 * MS), t),
        [Action::Send(100), Action::Announce]
    );
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_master_hearing_a_lower_master_asserts_itself() {
    let (mut m, t) = master(150);
    let out = m.advert(PEER, &advert(100, 100 * MS), t);
    assert_eq!(out, [Action::Send(150), Action::Announce]);
    assert_eq!(m.state(), State::Master);
}

#[test]
fn a_master_answers_a_resignation_with_an_advert() {
    let (mut m, t) = master(150);
    assert_eq!(m.advert(PEER, &advert(0, 100 * MS), t), [Action::Send(150)]);
}

#[test]
fn a_box_that_cannot_serve_resigns_and_comes_back_as_backup() {
    let (mut m, t) = master(150);
    let out = m.set_ready(false, "service kube-apiserver has no usable backend", t);
    assert_eq!(out, [Action::Send(0), Action::Release]);
    assert_eq!(m.state(), State::Fault);
    assert_eq!(m.effective_priority(), 0);
    assert_eq!(m.next_deadline(), None);
    // In FAULT it ignores the link.
    assert!(m.advert(PEER, &advert(100, 100 * MS), t).is_empty());
    assert!(m.tick(t + Duration::from_secs(10)).is_empty());
    assert!(m.set_ready(true, "ready", t + 20 * MS).is_empty());
    assert_eq!(m.state(), State::Backup);
}

#[test]
fn shutdown_resigns_a_master_and_quietly_stops_a_backup() {
    let (mut m, t) = master(150);
    assert_eq!(m.shutdown(t), [Action::Send(0), Action::Release]);
    assert_eq!(m.state(), State::Init);
    let (mut b, t) = backup(100, true);
    assert!(b.shutdown(t).is_empty());
    assert_eq!(b.state(), State::Init);
}

#[test]
fn our_own_advertisements_are_not_a_peer() {
    let (mut m, t) = master(150);
    assert!(m.advert(ME, &advert(200, 100 * MS), t).is_empty());
    assert!(m.peers().is_empty());
    assert_eq!(m.state(), State::Master);
}

/// Drives a pair over an ideal link for `until`, `a` dead or alive.
fn run(a: &mut Machine, b: &mut Machine, t: &mut Instant, until: Duration, a_alive: bool) {
    let end = *t + until;
    while *t < end {
        *t += 10 * MS;
        let from_a = if a_alive { a.tick(*t) } else { vec![] };
        let from_b = b.tick(*t);
        for act in from_a {
            if let Action::Send(p) = act {
                b.advert(ME, &advert(p, 100 * MS), *t);
            }
        }
        for act in from_b {
            if let Action::Send(p) = act
                && a_alive
            {
                a.advert(PEER, &advert(p, 100 * MS), *t);
            }
        }
    }
}

#[test]
fn two_machines_elect_one_master_and_fail_over() {
    let t0 = Instant::now();
    let mut a = Machine::new(params(150, true), t0);
    let mut b = Machine::new(
        Params {
            local: PEER,
            ..params(100, true)
        },
        t0,
    );
    a.set_ready(true, "ready", t0);
    b.set_ready(true, "ready", t0);
    let mut t = t0;
    run(&mut a, &mut b, &mut t, Duration::from_secs(2), true);
    assert_eq!((a.state(), b.state()), (State::Master, State::Backup));
    // A dies: B takes over within Master_Down (+ one step).
    let died = t;
    run(&mut a, &mut b, &mut t, Duration::from_secs(1), false);
    assert_eq!(b.state(), State::Master);
    let took = b.since() - died;
    assert!(took <= b.master_down_interval() + 10 * MS, "{took:?}");
}
