//! Whose frames the load balancer handles (#19 item 10): only those sent to
//! the receiving interface's own MAC. A frame that would be service
//! traffic but is addressed to another host (the master of a pair, whose
//! frames a switch floods to the backup too) or to a group address
//! (broadcast, multicast) is the kernel's, untouched: nothing is answered
//! from ff:ff:ff:ff:ff:ff, and the backup never forwards nor resets the
//! master's traffic.

use kube_xdp_common::{maps::PROTO_UDP, stats::Counter};
use kube_xdp_tests::{
    harness::{Harness, XDP_PASS, XDP_TX, apiserver, open, tx},
    packet::{
        ACK, CLIENT_MAC, LB_IP, LB_MAC, PSH, Pkt, SYN, VIP, backend_mac, fragment, icmp_error,
    },
};

const BROADCAST: [u8; 6] = [0xff; 6];
/// The group address of 224.0.0.10 (RFC 1112 §6.4).
const MULTICAST: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x0a];
/// The other box of a pair.
const MASTER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];

fn to_mac(mut pkt: Pkt, mac: [u8; 6]) -> Pkt {
    pkt.dst_mac = mac;
    pkt
}

/// Runs `frame`; expects `XDP_PASS` and the frame unchanged.
fn left_alone(h: &Harness, frame: &[u8], what: &str) {
    let (verdict, out) = h.run(frame);
    assert_eq!(verdict, XDP_PASS, "{what}");
    assert_eq!(out, frame, "{what}: unchanged");
}

#[test]
fn service_traffic_to_a_group_address_is_left_to_the_kernel() {
    let h = apiserver();
    for mac in [BROADCAST, MULTICAST] {
        let syn = to_mac(Pkt::tcp(40000, VIP, 6443, SYN), mac);
        left_alone(&h, &syn.build(), "a SYN to the VIP");
        // Ours, it would be answered with a RST (no flow).
        let stray = to_mac(Pkt::tcp(40001, VIP, 6443, ACK), mac);
        left_alone(&h, &stray.build(), "a segment of no flow");
    }
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::PassNotForUs), 4);
    assert_eq!(stats.get(Counter::VerdictPass), 4);
    assert_eq!(stats.get(Counter::VerdictTx), 0);
    assert_eq!(stats.get(Counter::NewFlow), 0);
    assert_eq!(stats.get(Counter::NoFlow), 0);
    // Sent to us, the same SYN opens its flow, from our own MAC.
    let out = open(&h, 40000);
    assert_eq!(out.src_mac, LB_MAC);
    let rst = tx(&h, &Pkt::tcp(40001, VIP, 6443, ACK));
    assert_eq!(rst.src_mac, LB_MAC, "a RST leaves from our own MAC");
    assert_eq!(rst.dst_mac, CLIENT_MAC);
}

#[test]
fn the_masters_frames_flooded_to_the_backup_are_left_alone() {
    let h = apiserver();
    // A flow this box knows too (as flow sync installs it on the backup).
    let syn = open(&h, 41000);
    let (backend, snat_port) = (syn.dst, syn.ports().0);
    let data = Pkt::tcp(41000, VIP, 6443, ACK | PSH)
        .seq_ack(1001, 5000)
        .payload(b"GET /readyz");
    left_alone(
        &h,
        &to_mac(data.clone(), MASTER_MAC).build(),
        "a client's packet of a known flow",
    );
    let reply = Pkt::tcp(6443, LB_IP, snat_port, ACK | PSH)
        .from(backend, backend_mac(backend))
        .seq_ack(5000, 1012);
    left_alone(
        &h,
        &to_mac(reply.clone(), MASTER_MAC).build(),
        "a backend's reply of a known flow",
    );
    left_alone(
        &h,
        &to_mac(Pkt::tcp(41001, VIP, 6443, ACK), MASTER_MAC).build(),
        "a segment of no flow",
    );
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::PassNotForUs), 3);
    assert_eq!(stats.get(Counter::ToBackend), 0);
    assert_eq!(stats.get(Counter::ToClient), 0);
    assert_eq!(stats.get(Counter::NoFlow), 0);
    // The flow is as it was: sent to us, both directions go through.
    assert_eq!(tx(&h, &data).dst, backend);
    let back = tx(&h, &to_mac(reply, LB_MAC));
    assert_eq!((back.src, back.src_mac), (VIP, LB_MAC));
}

#[test]
fn icmp_errors_and_fragments_to_another_host_are_left_to_the_kernel() {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(53), false);
    let payload: Vec<u8> = (0..200u8).collect();
    let (first, second) = fragment(&Pkt::udp(41500, VIP, 53, &payload).build(), 104);
    let (verdict, forwarded) = h.run(&first);
    assert_eq!(verdict, XDP_TX, "the first fragment, to us");
    // (A first fragment: its transport header is not checked here.)
    let backend: [u8; 4] = forwarded[30..34].try_into().unwrap();
    let mut later = second.clone();
    later[0..6].copy_from_slice(&BROADCAST);
    left_alone(&h, &later, "a later fragment to the broadcast address");
    // The backend complains about what it got (SNAT → backend).
    let icmp = icmp_error(
        (backend_mac(backend), MASTER_MAC),
        backend,
        LB_IP,
        3,
        4,
        [0, 0, 0x05, 0x78],
        &forwarded[14..14 + 28],
    );
    left_alone(&h, &icmp, "an ICMP error about a flow, to another host");
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::PassNotForUs), 2);
    assert_eq!(stats.get(Counter::FragmentTranslated), 0);
    assert_eq!(stats.get(Counter::IcmpToClient), 0);
    // Sent to us, both are translated.
    assert_eq!(h.run(&second).0, XDP_TX);
    let mut icmp = icmp;
    icmp[0..6].copy_from_slice(&LB_MAC);
    assert_eq!(h.run(&icmp).0, XDP_TX);
}
