//! Packet-by-packet fixtures, through `BPF_PROG_TEST_RUN`, of the two cases
//! of issue #18 in which a re-used SNAT port could meet a backend socket of
//! the port's previous flow:
//!
//! - (b) clients with microsecond timestamps (Linux `tcp_usec_ts`): their
//!   TSvals run 2.4 % faster than the rewrite clock, so a long flow's last
//!   TSval may be ahead of it. Closed where the old flow's entry is still
//!   there (the common case): its port rests until the clock has caught
//!   up (the flow's length / 32).
//! - (a) a client's lost last ACK, the backend in LAST_ACK retransmitting
//!   its FIN: bounded, the load balancer cannot see the loss. The port
//!   rests a second after the flow's last packet, retransmitted FINs
//!   included.
//!
//! And the one way around both rests, bounded too: the port of a flow whose
//! client re-opened the same 5-tuple (README, SNAT capacity).
//!
//! Time is not slept through: a flow is moved into the past
//! ([`into_the_past`]), its clocks and its timestamp offset together.

use kube_xdp_common::{
    maps::{Flow, FlowKey},
    stats::Counter,
};
use kube_xdp_tests::{
    harness::{Harness, SECOND, backend_of, default_settings, open, tx},
    packet::{ACK, CLIENT_IP, FIN, LB_IP, LB_MAC, Pkt, RST, SYN, Seen, VIP, backend_mac},
};

const MS: u64 = 1_000_000;

/// Nanoseconds per tick of the clock the rewritten timestamps run on
/// (`nat::ts_clock`: `ns >> 10`), as
/// [`rewrite_clock_is_the_monotonic_clock_in_1024_ns_ticks`] checks.
const TS_TICK_NS: u64 = 1024;

/// The apiserver service with one backend left, and SNAT ports `ports`.
fn one_backend(ports: std::ops::RangeInclusive<u16>) -> Harness {
    let mut h = kube_xdp_tests::harness::apiserver();
    for id in 1..3 {
        h.dp.remove_backend(id).unwrap();
    }
    h.rebuild(0);
    set_ports(&mut h, ports);
    h
}

fn set_ports(h: &mut Harness, ports: std::ops::RangeInclusive<u16>) {
    let mut settings = default_settings();
    settings.snat_port_min = *ports.start();
    settings.snat_port_max = *ports.end();
    h.dp.set_settings(&settings).unwrap();
}

/// The flow of client port `sport` as it stands in the table.
fn flow_of(h: &Harness, sport: u16) -> (FlowKey, Flow) {
    h.dp.flows()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.src_port == sport.to_be())
        .expect("the flow is in the table")
}

/// Moves everything the flow of client port `sport` saw `by` ns into the
/// past: its times, its reverse entry's claim, and its timestamp offset
/// (the rewrite clock read `by` less when the flow opened). Returns how
/// much lower, then, the TSvals it sent the backend were.
fn into_the_past(h: &mut Harness, sport: u16, by: u64) -> u32 {
    let (key, mut flow) = flow_of(h, sport);
    assert!(
        flow.created_ns > by,
        "CLOCK_MONOTONIC ({} s) must be past {} s for this fixture",
        flow.created_ns / SECOND,
        by / SECOND
    );
    let rkey = kube_xdp_common::flow::reverse_key(&key, &flow);
    let mut reverse = h.dp.reverse(&rkey).unwrap().expect("a reverse entry");
    if reverse.client == key {
        reverse.claimed_ns -= by;
        h.set_reverse(&rkey, &reverse);
    }
    let ticks = (by / TS_TICK_NS) as u32;
    flow.created_ns -= by;
    flow.last_seen_ns -= by;
    flow.ts_offset = flow.ts_offset.wrapping_sub(ticks);
    h.set_flow(&key, &flow);
    ticks
}

/// A segment from the backend of `syn` (the SYN it got) to its SNAT port.
fn from_backend(syn: &Seen, flags: u8, seq: u32, ack: u32, tsecr: u32) -> Pkt {
    let backend = backend_of(syn);
    let mut pkt = Pkt::tcp(6443, LB_IP, syn.ports().0, flags)
        .from(backend, backend_mac(backend))
        .seq_ack(seq, ack)
        .ts(Some((10, tsecr)));
    pkt.dst_mac = LB_MAC;
    pkt
}

/// The backend closes the flow that `syn` opened from client port `sport`
/// first, so it is the backend that holds the 4-tuple's TIME_WAIT: its FIN,
/// the client's FIN carrying TSval `tsval`, the backend's last ACK. Returns
/// the last TSval the backend got (the client's FIN's): the `ts_recent` its
/// TIME_WAIT socket compares a new SYN's with.
fn backend_closes(h: &Harness, sport: u16, syn: &Seen, tsval: u32) -> u32 {
    let syn_ts = syn.ts().unwrap().0;
    assert_eq!(
        tx(h, &from_backend(syn, FIN | ACK, 1, 1001, syn_ts)).dst,
        CLIENT_IP
    );
    let fin = tx(
        h,
        &Pkt::tcp(sport, VIP, 6443, FIN | ACK)
            .seq_ack(1001, 2)
            .ts(Some((tsval, 10))),
    );
    let last = fin.ts().unwrap().0;
    assert_eq!(tx(h, &from_backend(syn, ACK, 2, 1002, last)).dst, CLIENT_IP);
    last
}

/// What the backend's TIME_WAIT socket on the 4-tuple of the previous flow,
/// which last got TSval `last`, does with `next` (a SYN as the backend got
/// it, or the RST that refused it): a SYN on that port must carry a newer
/// TSval, else PAWS rejects it (`tcp_timewait_state_process`: accepted
/// only if `(s32)(ts_recent - tsval) < 0`) and the client loses a round
/// trip or its SYN timeout.
fn paws_accepts(next: &Seen, port: u16, last: u32) {
    if next.tcp_flags() != SYN || next.ports().0 != port {
        return;
    }
    let tsval = next.ts().expect("the SYN carries a timestamp").0;
    assert!(
        (tsval.wrapping_sub(last) as i32) > 0,
        "SNAT port {port} re-used with TSval {tsval}, {} ticks below the {last} the backend's \
         TIME_WAIT socket last got: PAWS rejects the SYN",
        last.wrapping_sub(tsval)
    );
}

/// `CLOCK_MONOTONIC` now, the datapath's clock.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * SECOND + ts.tv_nsec as u64
}

/// The premise of case (b) and of [`into_the_past`]: a new flow's first
/// TSval is `CLOCK_MONOTONIC / 1024` (plus the pair's clock offset, 0
/// here), truncated to 32 bits — a 0.977 MHz clock, slower than the 1 MHz
/// of Linux's microsecond timestamps.
#[test]
fn rewrite_clock_is_the_monotonic_clock_in_1024_ns_ticks() {
    let h = one_backend(20_000..=20_001);
    let client_tsval = 123_456u32;
    let before = monotonic_ns();
    let syn = tx(
        &h,
        &Pkt::tcp(48600, VIP, 6443, SYN).ts(Some((client_tsval, 0))),
    );
    let after = monotonic_ns();
    // TSval + (clock - the SYN's TSval): the clock itself.
    let clock = syn.ts().unwrap().0;
    let (lo, hi) = ((before / TS_TICK_NS) as u32, (after / TS_TICK_NS) as u32);
    assert!(
        clock.wrapping_sub(lo) <= hi.wrapping_sub(lo),
        "the rewrite clock read {clock}, CLOCK_MONOTONIC / {TS_TICK_NS} was {lo}..={hi}"
    );
}

/// Case (b): a client whose TSval ticks every microsecond (Linux
/// `tcp_usec_ts`) gains 2.4 % on the rewrite clock; after a 100 s flow its
/// last TSval is 2.3 s of the clock ahead. The backend closed first and
/// holds the TIME_WAIT: a SYN on the port a second after the close would
/// carry a TSval below that one (PAWS). The port rests until the clock has
/// passed it: the flow's length / 32 after its last packet (3.1 s here).
#[test]
fn port_of_a_long_flow_with_microsecond_timestamps_rests_until_the_rewrite_clock_passed_them() {
    let mut h = one_backend(20_000..=20_000);
    let length = 100 * SECOND;
    let t0 = 7_000_000u32;
    let syn = tx(&h, &Pkt::tcp(48700, VIP, 6443, SYN).ts(Some((t0, 0))));
    assert_eq!(syn.ports().0, 20_000);
    tx(
        &h,
        &Pkt::tcp(48700, VIP, 6443, ACK)
            .seq_ack(1001, 1)
            .ts(Some((t0 + 200, syn.ts().unwrap().0))),
    );
    // Opened `length` ago, busy since; its client's clock at 1 MHz.
    into_the_past(&mut h, 48700, length);
    let mut last = backend_closes(&h, 48700, &syn, t0 + (length / 1000) as u32);

    // A second and a bit after the close, another client's SYN (its clock
    // far behind: clients' clocks are unrelated).
    last = last.wrapping_sub(into_the_past(&mut h, 48700, 1_100 * MS));
    let next = tx(&h, &Pkt::tcp(48701, VIP, 6443, SYN).ts(Some((5, 0))));
    paws_accepts(&next, 20_000, last);
    assert_eq!(
        next.tcp_flags(),
        RST | ACK,
        "the port rests while the rewrite clock is behind the flow's last TSval"
    );
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::SnatExhausted), 1);

    // 3.3 s after the close: the clock has passed it, the port is free.
    last = last.wrapping_sub(into_the_past(&mut h, 48700, 2_200 * MS));
    let next = tx(&h, &Pkt::tcp(48701, VIP, 6443, SYN).ts(Some((5, 0))));
    assert_eq!(next.tcp_flags(), SYN, "the port is free again");
    assert_eq!(next.ports().0, 20_000);
    paws_accepts(&next, 20_000, last);
}

/// Case (a), bounded. The client closed first; its last ACK went through
/// the load balancer and was lost after it, so the backend stays in
/// LAST_ACK and retransmits its FIN (RTO 200 ms and up, doubling). The
/// load balancer cannot see the loss; the port rests a second after the
/// flow's last packet either way, and each retransmitted FIN starts that
/// second again. So a new flow's SYN meets the LAST_ACK socket only if the
/// backend's next retransmission is more than a second away: the last ACK
/// and the answers to three retransmissions lost (at Linux's 200 ms
/// minimum RTO, doubling), or a path whose RTO exceeds its round trip by
/// more than a second. Then the socket answers with an ACK of the old
/// connection, the new flow's client answers with a RST of exactly the
/// sequence number the socket expects, which closes it (RFC 5961 3.2),
/// and the client sends its SYN again — Linux (since 2020) 2 jiffies
/// later (`tcp_rcv_synsent_state_process`), others after their SYN
/// timeout — from a port other than the reset flow's, which rests.
#[test]
fn backend_in_last_ack_meets_a_syn_only_after_a_second_without_its_fin() {
    let mut h = one_backend(20_000..=20_000);
    let syn = open(&h, 48800);
    assert_eq!(syn.ports().0, 20_000);
    tx(&h, &Pkt::tcp(48800, VIP, 6443, ACK).seq_ack(1001, 1));
    tx(&h, &Pkt::tcp(48800, VIP, 6443, FIN | ACK).seq_ack(1001, 1));
    let backend_fin = from_backend(&syn, FIN | ACK, 1, 1002, 100_000);
    assert_eq!(tx(&h, &backend_fin).dst, CLIENT_IP);
    // The last ACK: forwarded, then lost.
    tx(&h, &Pkt::tcp(48800, VIP, 6443, ACK).seq_ack(1002, 2));

    let refused = |h: &Harness| {
        let syn = tx(h, &Pkt::tcp(48801, VIP, 6443, SYN));
        assert_eq!(syn.tcp_flags(), RST | ACK, "the port rests");
    };
    into_the_past(&mut h, 48800, 900 * MS);
    refused(&h);
    // The retransmitted FIN reaches the client, whose TIME_WAIT would
    // answer it; the port's second starts again.
    assert_eq!(tx(&h, &backend_fin).dst, CLIENT_IP);
    into_the_past(&mut h, 48800, 900 * MS);
    refused(&h);

    // A second without one: the port goes to the next flow. The bounded
    // case is a backend still in LAST_ACK here.
    into_the_past(&mut h, 48800, 200 * MS);
    let taken = tx(&h, &Pkt::tcp(48801, VIP, 6443, SYN));
    assert_eq!((taken.tcp_flags(), taken.ports().0), (SYN, 20_000));
    // Its ACK of the old connection goes to the new flow's client...
    let stale_ack = tx(&h, &from_backend(&syn, ACK, 2, 1002, 100_000));
    assert_eq!(
        (stale_ack.dst, stale_ack.ports()),
        (CLIENT_IP, (6443, 48801))
    );
    // ...whose RST (of that ACK's number, no timestamp) closes the socket...
    let rst = tx(
        &h,
        &Pkt::tcp(48801, VIP, 6443, RST).seq_ack(1002, 0).ts(None),
    );
    assert_eq!((rst.dst, rst.ports()), (backend_of(&syn), (20_000, 6443)));
    assert_eq!(rst.tcp_flags(), RST);
    // ...and whose SYN again gets another port.
    set_ports(&mut h, 20_000..=20_001);
    let retry = tx(&h, &Pkt::tcp(48801, VIP, 6443, SYN));
    assert_eq!((retry.tcp_flags(), retry.ports().0), (SYN, 20_001));
}

/// The one way a closed flow's port goes to another flow before its rest
/// is over: its client re-opened the same 5-tuple (which then got another
/// port). Its side of the old connection is gone, and the old flow's times
/// went with its forward entry, so the port is free at once. Cases (a) and
/// (b) stay bounded there: a backend still in LAST_ACK (the last ACK lost,
/// the FIN not yet retransmitted), or the last TSval of a client whose
/// timestamps run ahead of the rewrite clock, meets the next flow's SYN.
/// Both need a client that picks the same source port for the same
/// VIP:port again within the old flow's rest. Linux walks its port range
/// for connections to one destination, so only a client that cycles
/// through it within seconds (thousands of connections a second to the
/// VIP from one address) does; and it re-uses a port it holds in TIME_WAIT
/// (case a: it closed first) only with `tcp_tw_reuse = 1`, not the default
/// beyond loopback, and recent kernels only a second after entering
/// TIME_WAIT (`tcp_tw_reuse_delay`), by when the backend has retransmitted
/// its FIN unless the conditions of case (a) above hold anyway. Clients
/// that do not outrun the rewrite clock (1 kHz timestamps, as here) keep
/// PAWS satisfied.
#[test]
fn port_goes_at_once_to_the_next_flow_when_its_client_reopened_the_5_tuple() {
    let mut h = one_backend(20_000..=20_001);
    let syn = open(&h, 48900);
    let old_port = syn.ports().0;
    tx(&h, &Pkt::tcp(48900, VIP, 6443, ACK).seq_ack(1001, 1));
    let last = backend_closes(&h, 48900, &syn, 100_000);
    into_the_past(&mut h, 48900, 500 * MS);

    // Half a second after the close, the client opens the same 5-tuple
    // again: the old port rests, the new flow gets the other one.
    let reopened = open(&h, 48900);
    assert_eq!(reopened.tcp_flags(), SYN);
    assert_ne!(reopened.ports().0, old_port);
    // The old port goes to the next flow at once.
    let next = tx(&h, &Pkt::tcp(48901, VIP, 6443, SYN).ts(Some((5, 0))));
    assert_eq!((next.tcp_flags(), next.ports().0), (SYN, old_port));
    paws_accepts(&next, old_port, last);
}
