//! Packet-by-packet fixtures of the SNAT ports, through
//! `BPF_PROG_TEST_RUN`: when a closed flow's port goes to the next flow
//! (growing timestamps, flows older than half an hour), a reverse entry
//! taken by another flow, clients re-using their ports, the last free port
//! of a range.

use kube_xdp_common::{
    maps::{FLOW_ESTABLISHED, Flow, FlowKey, ReverseFlow},
    stats::Counter,
};
use kube_xdp_tests::{
    harness::{Harness, apiserver, backend_of, open, tx},
    packet::{ACK, CLIENT_IP, FIN, LB_IP, LB_MAC, Pkt, RST, SYN, Seen, VIP, backend_mac},
};

/// The apiserver service with one backend left, and SNAT ports `ports`.
fn one_backend(ports: std::ops::RangeInclusive<u16>) -> Harness {
    let mut h = apiserver();
    for id in 1..3 {
        h.dp.remove_backend(id).unwrap();
    }
    h.rebuild(0);
    let mut settings = kube_xdp_tests::harness::default_settings();
    settings.snat_port_min = *ports.start();
    settings.snat_port_max = *ports.end();
    h.dp.set_settings(&settings).unwrap();
    h
}

/// Closes the flow that `syn` (as the backend got it) opened from client
/// port `sport`: the client's FIN with TSval `tsval`, then the backend's
/// FIN echoing it, which must reach the client. Returns the client's FIN
/// as the backend got it.
fn close_both_ways(h: &Harness, sport: u16, syn: &Seen, tsval: u32) -> Seen {
    let client_fin = tx(
        h,
        &Pkt::tcp(sport, VIP, 6443, FIN | ACK)
            .seq_ack(1001, 1)
            .ts(Some((tsval, 9))),
    );
    let backend = backend_of(syn);
    let mut fin = Pkt::tcp(6443, LB_IP, syn.ports().0, FIN | ACK)
        .from(backend, backend_mac(backend))
        .seq_ack(1, 1002)
        .ts(Some((10, client_fin.ts().unwrap().0)));
    fin.dst_mac = LB_MAC;
    assert_eq!(tx(h, &fin).dst, CLIENT_IP);
    client_fin
}

#[test]
fn closed_flows_port_goes_to_the_next_flow_only_with_growing_timestamps() {
    // One backend, one SNAT port: every flow needs that port.
    let h = one_backend(20_000..=20_000);

    let first = open(&h, 48000);
    let (port, _) = first.ports();
    assert_eq!(port, 20_000);
    // Close it both ways: client FIN, backend FIN. The client's clock has
    // not ticked (it ticks at most every millisecond; this all takes
    // microseconds), so its FIN carries the SYN's TSval.
    let client_fin = close_both_ways(&h, 48000, &first, 100_000);
    let (last_tsval, _) = client_fin.ts().unwrap();

    // Right after the close, the port rests (the last ACK may still be on
    // its way): with no other port, a new SYN is refused.
    let early = tx(&h, &Pkt::tcp(48003, VIP, 6443, SYN).ts(Some((5, 0))));
    assert_eq!(early.tcp_flags(), RST | ACK, "the port is still resting");
    std::thread::sleep(std::time::Duration::from_millis(1100));

    // A new flow from another client whose clock is far *behind* the first
    // one's: the port is re-used a second after the close, and the backend's TIME_WAIT socket
    // for that 4-tuple sees a TSval above the last one it saw, so PAWS
    // accepts the SYN (tcp_timewait_state_process).
    let second = tx(&h, &Pkt::tcp(48001, VIP, 6443, SYN).ts(Some((5, 0))));
    assert_eq!(
        second.ports().0,
        20_000,
        "the finished flow's port is re-used"
    );
    let new = second.ts().unwrap().0;
    assert!(
        (new.wrapping_sub(last_tsval) as i32) > 0,
        "TSval {new} must come after {last_tsval}"
    );

    // Without a timestamp the backend's TIME_WAIT could refuse the SYN:
    // the port is held, and with no other port the SYN gets a RST.
    tx(&h, &Pkt::tcp(48001, VIP, 6443, RST).seq_ack(2, 0));
    let refused = tx(&h, &Pkt::tcp(48002, VIP, 6443, SYN).ts(None));
    assert_eq!(refused.tcp_flags(), RST | ACK);
    assert_eq!((refused.src, refused.dst), (VIP, CLIENT_IP));
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::SnatExhausted), 2);
}

/// The flow of client port `sport` as it stands in the table.
fn flow_of(h: &Harness, sport: u16) -> (FlowKey, Flow) {
    h.dp.flows()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.src_port == sport.to_be())
        .expect("the flow is in the table")
}

/// Points the reverse entry of client port `sport`'s flow at another
/// client, as if another flow had been given its port, after `tweak` has
/// changed the flow; then the client's next segment must be refused like
/// one without a flow, never forwarded into that other flow's connection.
fn orphaned_flow_is_refused(h: &mut Harness, sport: u16, tweak: impl FnOnce(&mut Flow)) {
    let (key, mut flow) = flow_of(h, sport);
    let rkey = kube_xdp_common::flow::reverse_key(&key, &flow);
    let other = FlowKey {
        src_port: (sport + 1000).to_be(),
        ..key
    };
    h.set_reverse(
        &rkey,
        &ReverseFlow {
            client: other,
            claimed_ns: 0,
        },
    );
    tweak(&mut flow);
    h.set_flow(&key, &flow);
    let before = h.dp.global_stats().unwrap();
    let rst = tx(h, &Pkt::tcp(sport, VIP, 6443, ACK).seq_ack(1101, 1));
    assert_eq!(rst.tcp_flags(), RST, "refused, not sent to the backend");
    assert_eq!(rst.dst, CLIENT_IP);
    assert_eq!(rst.ports(), (6443, sport));
    let after = h.dp.global_stats().unwrap();
    assert_eq!(after.get(Counter::NoFlow), before.get(Counter::NoFlow) + 1);
    assert_eq!(
        after.get(Counter::ToBackend),
        before.get(Counter::ToBackend)
    );
}

/// A flow whose reverse entry went to another flow (the LRU evicted it
/// from a table fuller than its size and the port was handed out again, or
/// another CPU took it while the flow was being created) must not be
/// forwarded into that other flow's connection. The datapath confirms the
/// reverse entry on every packet of a flow before its handshake completes
/// or once it closes, and on an established flow's first packet of each
/// ~1 s epoch.
#[test]
fn flow_whose_reply_entry_went_to_another_flow_is_refused() {
    let mut h = apiserver();
    // Before the handshake's ACK: at once.
    open(&h, 40010);
    orphaned_flow_is_refused(&mut h, 40010, |_| {});

    // Closing (the client sent a FIN): at once.
    open(&h, 40011);
    tx(&h, &Pkt::tcp(40011, VIP, 6443, ACK).seq_ack(1001, 1));
    tx(&h, &Pkt::tcp(40011, VIP, 6443, FIN | ACK).seq_ack(1001, 1));
    orphaned_flow_is_refused(&mut h, 40011, |_| {});

    // Established: on its first packet of a new epoch. Its last packet is
    // set 1.5 s back (more than an epoch, far within its idle timeout).
    open(&h, 40012);
    tx(&h, &Pkt::tcp(40012, VIP, 6443, ACK).seq_ack(1001, 1));
    assert_eq!(flow_of(&h, 40012).1.state, FLOW_ESTABLISHED);
    orphaned_flow_is_refused(&mut h, 40012, |f| f.last_seen_ns -= 1_500_000_000);
}

/// The rewritten timestamps' signed comparison (the backend's PAWS check)
/// wraps after about 36.6 minutes: the port of a flow opened 30 minutes or
/// more ago is held after its close as if the flow had no timestamps
/// (`tcp_closing` + `tcp_time_wait`), not re-used after a second. Here the
/// flow is made to have opened at boot, so its age is the machine's uptime;
/// a second after its close, the next SYN gets its port only if that is
/// under 30 minutes.
#[test]
fn port_of_a_flow_older_than_half_an_hour_is_held_after_its_close() {
    let mut h = one_backend(20_000..=20_000);

    let half_hour = 30 * 60 * kube_xdp_tests::harness::SECOND;
    let mut uptime = flow_uptime(&mut h);
    if uptime.abs_diff(half_hour) < 5 * kube_xdp_tests::harness::SECOND {
        // Too close to call: let the machine's age pass the mark.
        std::thread::sleep(std::time::Duration::from_secs(10));
        uptime = flow_uptime(&mut h);
    }
    // A flow, closed both ways, its last packet 2 s ago, opened at boot.
    let syn = open(&h, 48500);
    close_both_ways(&h, 48500, &syn, 100_001);
    let (key, mut flow) = flow_of(&h, 48500);
    flow.created_ns = 0;
    flow.last_seen_ns -= 2 * kube_xdp_tests::harness::SECOND;
    h.set_flow(&key, &flow);

    let next = tx(&h, &Pkt::tcp(48501, VIP, 6443, SYN).ts(Some((5, 0))));
    if uptime > half_hour {
        assert_eq!(next.tcp_flags(), RST | ACK, "the old flow's port is held");
        assert_eq!(h.dp.global_stats().unwrap().get(Counter::SnatExhausted), 1);
    } else {
        assert_eq!(
            next.tcp_flags(),
            SYN,
            "a flow under 30 minutes old gives its port"
        );
        assert_eq!(next.ports().0, 20_000);
    }
}

/// The datapath's clock now (a flow's `last_seen_ns` right after a packet),
/// through a throw-away flow.
fn flow_uptime(h: &mut Harness) -> u64 {
    open(h, 48599);
    let (_, flow) = flow_of(h, 48599);
    h.clear_flows();
    flow.last_seen_ns
}

/// A busy client re-uses each of its ports about once a second (Linux's
/// `tcp_tw_reuse`), so a finished flow's SNAT port is often released by
/// the client's next flow on the same 5-tuple. That port must be free for
/// the next new flow at once (timestamps rewritten on both): here three
/// client ports share four SNAT ports, round after round, 60 ms apart (just
/// past the 50 ms in which a fresh claim is left to settle; a real client
/// waits a second), and no SYN is refused.
#[test]
fn client_reusing_its_ports_does_not_run_the_snat_ports_out() {
    let h = one_backend(20_000..=20_003);

    for round in 0..10u32 {
        if round > 0 {
            std::thread::sleep(std::time::Duration::from_millis(60));
        }
        for client_port in 48100..48103u16 {
            let tsval = 100_000 + round * 10;
            let syn = tx(
                &h,
                &Pkt::tcp(client_port, VIP, 6443, SYN).ts(Some((tsval, 0))),
            );
            assert_eq!(
                syn.tcp_flags(),
                SYN,
                "round {round}, client port {client_port}: {:?}",
                h.dp.global_stats().unwrap().get(Counter::SnatExhausted)
            );
            // The client closes first, the backend answers: finished.
            close_both_ways(&h, client_port, &syn, tsval + 1);
        }
    }
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::SnatExhausted), 0);
    assert_eq!(stats.get(Counter::NewFlow), 30);
}

/// With an odd number of SNAT ports, a new flow still finds the one free
/// port, whatever its hash: its probes move from port to port.
#[test]
fn a_new_flow_finds_the_last_free_port_of_an_odd_range() {
    let mut h = one_backend(20_000..=20_002);
    for candidate in 0..30u16 {
        h.clear_flows();
        // Two open flows hold two of the three ports.
        let taken = [open(&h, 48200).ports().0, open(&h, 48201).ports().0];
        let syn = tx(&h, &Pkt::tcp(48300 + candidate, VIP, 6443, SYN));
        assert_eq!(
            syn.tcp_flags(),
            SYN,
            "client port {}: refused with a port free",
            48300 + candidate
        );
        assert!(!taken.contains(&syn.ports().0));
    }
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::SnatExhausted), 0);
}

/// `CLOCK_MONOTONIC` now, the datapath's clock.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[test]
fn a_port_claimed_a_moment_ago_waits_for_its_flow() {
    // One backend, one SNAT port.
    let mut h = one_backend(20_000..=20_000);
    let (key, flow) = {
        open(&h, 48000);
        flow_of(&h, 48000)
    };
    let rkey = kube_xdp_common::flow::reverse_key(&key, &flow);
    h.clear_flows();
    // Another CPU has just claimed the port for client port 48500 and not
    // yet written that flow's forward entry: the reverse entry has no
    // forward entry to agree with, which once made it look abandoned.
    let claimer = FlowKey {
        src_port: 48500u16.to_be(),
        ..key
    };
    let claim = |at| ReverseFlow {
        client: claimer,
        claimed_ns: at,
    };
    h.set_reverse(&rkey, &claim(monotonic_ns()));
    let before = h.dp.global_stats().unwrap().get(Counter::SnatExhausted);
    let refused = tx(&h, &Pkt::tcp(48001, VIP, 6443, SYN));
    assert_eq!(refused.tcp_flags(), RST | ACK, "the port is being claimed");
    assert_eq!(
        h.dp.global_stats().unwrap().get(Counter::SnatExhausted),
        before + 1
    );
    assert_eq!(h.dp.reverse(&rkey).unwrap().unwrap().client, claimer);

    // The same entry claimed a second ago with still no forward entry is
    // abandoned: the next flow takes the port over.
    h.set_reverse(&rkey, &claim(monotonic_ns() - 1_000_000_000));
    let taken = tx(&h, &Pkt::tcp(48001, VIP, 6443, SYN));
    assert_eq!(taken.tcp_flags(), SYN);
    assert_eq!(taken.ports().0, 20_000);
    let now = h.dp.reverse(&rkey).unwrap().unwrap();
    assert_eq!(now.client.src_port, 48001u16.to_be());
    assert!(
        now.claimed_ns > monotonic_ns() - 1_000_000_000,
        "claimed afresh"
    );
}
