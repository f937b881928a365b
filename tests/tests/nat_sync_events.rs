//! Packet-by-packet fixtures of flow sync's reports, through
//! `BPF_PROG_TEST_RUN`: with sync on, the datapath hands the daemon each new
//! flow and each change of a flow's state or flags through its ring buffer,
//! and nothing for the packets that change neither; with sync off, nothing.
//! And a new flow's backend and SNAT port depend only on its 5-tuple and
//! the configuration, the same on both boxes of a pair.

use aya::maps::{MapData, RingBuf};
use kube_xdp::datapath::{BackendState, ServiceSpec};
use kube_xdp_common::maps::{
    FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_FIN_BACKEND, FLOW_FIN_CLIENT, FLOW_REPLIED,
    FLOW_SYN_ACK_AGAIN, FLOW_SYN_SENT, FLOW_UDP, PROTO_TCP, PROTO_UDP, SyncEvent,
};
use kube_xdp_tests::{
    harness::{Harness, apiserver, backend_of, default_settings, open, tx},
    packet::{ACK, BACKEND_IPS, CLIENT_IP, FIN, LB_IP, LB_MAC, Pkt, SYN, VIP, backend_mac},
};

/// The events waiting in the ring buffer, oldest first.
fn drain(ring: &mut RingBuf<MapData>) -> Vec<SyncEvent> {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        assert_eq!(item.len(), size_of::<SyncEvent>(), "one event per record");
        // SAFETY: `SyncEvent` is plain old data of that size.
        events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SyncEvent>()) });
    }
    events
}

fn with_sync(on: bool) -> (Harness, RingBuf<MapData>) {
    let mut h = apiserver();
    let mut settings = default_settings();
    settings.sync = u32::from(on);
    h.dp.set_settings(&settings).unwrap();
    let ring = h.sync_events();
    (h, ring)
}

/// (state, flags) of each event.
fn states(events: &[SyncEvent]) -> Vec<(u8, u8)> {
    events
        .iter()
        .map(|e| {
            (
                e.flow.state,
                e.flow.flags & (FLOW_FIN_CLIENT | FLOW_FIN_BACKEND),
            )
        })
        .collect()
}

#[test]
fn a_tcp_flow_is_reported_when_it_opens_and_when_its_state_changes_never_per_packet() {
    let (h, mut ring) = with_sync(true);
    let syn = open(&h, 48000);
    let events = drain(&mut ring);
    assert_eq!(states(&events), [(FLOW_SYN_SENT, 0)], "the new flow");
    let e = events[0];
    assert_eq!(u16::from_be(e.client.src_port), 48000);
    assert_eq!(e.client.src_addr, u32::from_ne_bytes(CLIENT_IP));
    assert_eq!(e.flow.backend_addr, u32::from_ne_bytes(backend_of(&syn)));
    assert_eq!(u16::from_be(e.flow.snat_port), syn.ports().0);

    // The backend's SYN-ACK changes nothing worth reporting.
    let backend = backend_of(&syn);
    let mut reply = Pkt::tcp(6443, LB_IP, syn.ports().0, ACK | 0x02)
        .from(backend, backend_mac(backend))
        .seq_ack(0, 1);
    reply.dst_mac = LB_MAC;
    assert_eq!(tx(&h, &reply).dst, CLIENT_IP);
    let events = drain(&mut ring);
    assert_eq!(
        events
            .iter()
            .map(|e| e.flow.flags & FLOW_REPLIED)
            .collect::<Vec<_>>(),
        [FLOW_REPLIED],
        "the backend's SYN-ACK is reported once (it answered: FLOW_REPLIED, and its ISN)"
    );
    assert_eq!(events[0].flow.seq_delta, 1);
    // Again: the backend keeps the half-open connection (reported once).
    tx(&h, &reply);
    let events = drain(&mut ring);
    assert_eq!(events.len(), 1);
    assert_ne!(events[0].flow.flags & FLOW_SYN_ACK_AGAIN, 0);
    tx(&h, &reply);
    assert!(
        drain(&mut ring).is_empty(),
        "a third SYN-ACK is not reported"
    );

    // The handshake's ACK establishes it: reported once; data is not.
    tx(&h, &Pkt::tcp(48000, VIP, 6443, ACK).seq_ack(1, 1));
    for i in 0..5 {
        tx(
            &h,
            &Pkt::tcp(48000, VIP, 6443, ACK)
                .seq_ack(1 + i * 10, 1)
                .payload(b"0123456789"),
        );
    }
    assert_eq!(states(&drain(&mut ring)), [(FLOW_ESTABLISHED, 0)]);

    // Each side's FIN is a change: closing, then finished.
    tx(&h, &Pkt::tcp(48000, VIP, 6443, FIN | ACK).seq_ack(51, 1));
    let mut fin = Pkt::tcp(6443, LB_IP, syn.ports().0, FIN | ACK)
        .from(backend, backend_mac(backend))
        .seq_ack(1, 52);
    fin.dst_mac = LB_MAC;
    tx(&h, &fin);
    tx(&h, &Pkt::tcp(48000, VIP, 6443, ACK).seq_ack(52, 2));
    assert_eq!(
        states(&drain(&mut ring)),
        [
            (FLOW_CLOSING, FLOW_FIN_CLIENT),
            (FLOW_CLOSING, FLOW_FIN_CLIENT | FLOW_FIN_BACKEND)
        ],
        "the last ACK changes nothing"
    );
}

#[test]
fn a_udp_flow_is_reported_once() {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(5353), false);
    let mut settings = default_settings();
    settings.sync = 1;
    h.dp.set_settings(&settings).unwrap();
    let mut ring = h.sync_events();
    for _ in 0..3 {
        tx(&h, &Pkt::udp(41000, VIP, 53, b"query"));
    }
    let events = drain(&mut ring);
    assert_eq!(states(&events), [(FLOW_UDP, 0)], "the new flow only");
    assert_eq!(u16::from_be(events[0].flow.backend_port), 5353);
}

#[test]
fn nothing_is_reported_with_sync_off() {
    let (h, mut ring) = with_sync(false);
    open(&h, 48000);
    tx(&h, &Pkt::tcp(48000, VIP, 6443, ACK).seq_ack(1, 1));
    assert!(drain(&mut ring).is_empty());
}

#[test]
fn both_boxes_give_a_new_flow_the_same_backend_and_snat_port() {
    // Box a: the fixture backends with ids 0, 1, 2. Box b: the same
    // backends under other ids (another history of reloads), added in
    // another order. A flow that opens in the moment before a failover,
    // not yet synced, meets on the other box the same choice, so its next
    // segments (or a retransmitted SYN) still reach the backend on the
    // same 4-tuple.
    let a = apiserver();
    let mut b = Harness::new();
    let spec = ServiceSpec {
        vip: VIP.into(),
        ports: 6443..=6443,
        protocol: PROTO_TCP,
        reset_on_down: false,
    };
    b.dp.set_service(0, &spec).unwrap();
    for (id, i) in [(2, 2), (0, 1), (1, 0)] {
        b.set_backend(0, id, BACKEND_IPS[i], Some(6443), BackendState::Up);
    }
    b.rebuild(0);
    let mut backends = std::collections::HashSet::new();
    for sport in 40_000..40_060 {
        let syn = Pkt::tcp(sport, VIP, 6443, SYN);
        let (on_a, on_b) = (tx(&a, &syn), tx(&b, &syn));
        assert_eq!(on_a.dst, on_b.dst, "client port {sport}: the same backend");
        assert_eq!(
            on_a.ports(),
            on_b.ports(),
            "client port {sport}: the same SNAT port"
        );
        backends.insert(on_a.dst);
    }
    assert_eq!(backends.len(), 3, "the flows spread over every backend");
}
