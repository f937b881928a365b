//! Packet-by-packet fixtures, through `BPF_PROG_TEST_RUN`, of the cases
//! of issue #18 in which a re-used SNAT port could meet a backend socket of
//! the port's previous flow:
//!
//! - (b) clients with microsecond timestamps (Linux `tcp_usec_ts`): their
//!   TSvals run 2.4 % faster than the rewrite clock, so a long flow's last
//!   TSval may be ahead of it. Closed: such a port rests until the clock
//!   has caught up (the flow's length / 32).
//!
//! Time is not slept through: a flow is moved into the past
//! ([`into_the_past`]), its clocks and its timestamp offset together.

use kube_xdp_common::{
    maps::{Flow, FlowKey},
    stats::Counter,
};
use kube_xdp_tests::{
    harness::{Harness, SECOND, backend_of, default_settings, tx},
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
