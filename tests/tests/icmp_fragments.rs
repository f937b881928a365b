//! ICMP errors about a translated flow, and IPv4 fragments, through
//! `BPF_PROG_TEST_RUN`.

use kube_xdp_common::{maps::PROTO_UDP, stats::Counter};
use kube_xdp_tests::{
    harness::{Harness, XDP_DROP, XDP_PASS, XDP_TX},
    packet::{
        ACK, CLIENT_IP, CLIENT_MAC, IcmpSeen, LB_IP, LB_MAC, Pkt, SYN, Seen, VIP, backend_mac,
        fragment, icmp_error, reassemble,
    },
};

const FRAG_NEEDED: (u8, u8) = (3, 4);
const MTU_1400: [u8; 4] = [0, 0, 0x05, 0x78];

/// The first 28 bytes of a frame's IP packet: what an ICMP error quotes at
/// the least (header + 8 bytes).
fn quote(frame: &[u8], len: usize) -> Vec<u8> {
    frame[14..14 + len].to_vec()
}

#[test]
fn frag_needed_from_a_backend_reaches_the_client_translated() {
    let mut h = Harness::new();
    h.tcp_service(0, 6443..=6443, Some(6443));
    let (verdict, forwarded) = h.run(&Pkt::tcp(40000, VIP, 6443, SYN).build());
    assert_eq!(verdict, XDP_TX);
    let fwd = Seen::parse(&forwarded);
    let backend = fwd.dst;
    let snat_port = fwd.ports().0;
    // The backend complains about the packet it got: SNAT → backend.
    let icmp = icmp_error(
        (backend_mac(backend), LB_MAC),
        backend,
        LB_IP,
        FRAG_NEEDED.0,
        FRAG_NEEDED.1,
        MTU_1400,
        &quote(&forwarded, 20 + 20),
    );
    let (verdict, out) = h.run(&icmp);
    assert_eq!(verdict, XDP_TX);
    let seen = IcmpSeen::parse(&out);
    assert_eq!((seen.src_mac, seen.dst_mac), (LB_MAC, CLIENT_MAC));
    assert_eq!((seen.src, seen.dst), (VIP, CLIENT_IP));
    assert_eq!((seen.kind, seen.code), FRAG_NEEDED);
    assert_eq!(
        (seen.quoted_src, seen.quoted_dst),
        (CLIENT_IP, VIP),
        "the quoted packet reads as the client sent it"
    );
    assert_eq!((seen.quoted_sport, seen.quoted_dport), (40000, 6443));
    assert_ne!(snat_port, 40000);
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::IcmpToClient), 1);
}

#[test]
fn icmp_error_from_the_client_side_reaches_the_backend_translated() {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(53), false);
    let (_, forwarded) = h.run(&Pkt::udp(41000, VIP, 53, b"q").build());
    let fwd = Seen::parse(&forwarded);
    let (backend, snat_port) = (fwd.dst, fwd.ports().0);
    let mut reply = Pkt::udp(53, LB_IP, snat_port, b"a reply").from(backend, backend_mac(backend));
    reply.dst_mac = LB_MAC;
    let (verdict, to_client) = h.run(&reply.build());
    assert_eq!(verdict, XDP_TX);
    // The client's host says the port is unreachable, quoting VIP → client
    // with the UDP header (checksum included).
    let icmp = icmp_error(
        (CLIENT_MAC, LB_MAC),
        CLIENT_IP,
        VIP,
        3,
        3,
        [0; 4],
        &quote(&to_client, 20 + 8 + 7),
    );
    let (verdict, out) = h.run(&icmp);
    assert_eq!(verdict, XDP_TX);
    let seen = IcmpSeen::parse(&out);
    assert_eq!(seen.dst_mac, backend_mac(backend));
    assert_eq!((seen.src, seen.dst), (LB_IP, backend));
    assert_eq!((seen.quoted_src, seen.quoted_dst), (backend, LB_IP));
    assert_eq!((seen.quoted_sport, seen.quoted_dport), (53, snat_port));
    // The quoted UDP checksum was updated too: check it against the quoted
    // datagram (header + 7 payload bytes, all quoted here).
    let quoted_udp = &seen.quoted_l4[..8 + 7];
    assert!(kube_xdp_tests::checksum::transport_ok(
        backend, LB_IP, 17, quoted_udp
    ));
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::IcmpToBackend), 1);
}

#[test]
fn frag_needed_from_the_client_itself_is_dropped_from_a_router_translated() {
    let mut h = Harness::new();
    h.tcp_service(0, 6443..=6443, Some(6443));
    let (_, forwarded) = h.run(&Pkt::tcp(40500, VIP, 6443, SYN).build());
    let fwd = Seen::parse(&forwarded);
    let (backend, snat_port) = (fwd.dst, fwd.ports().0);
    let mut reply = Pkt::tcp(6443, LB_IP, snat_port, SYN | ACK)
        .from(backend, backend_mac(backend))
        .payload(&[0x5a; 1200]);
    reply.dst_mac = LB_MAC;
    let (verdict, to_client) = h.run(&reply.build());
    assert_eq!(verdict, XDP_TX);
    // "Fragmentation needed" about VIP → client, claimed by the client
    // itself: it would lower the backend's path MTU towards the SNAT
    // address, for every client.
    let from = |src: [u8; 4]| {
        icmp_error(
            (CLIENT_MAC, LB_MAC),
            src,
            VIP,
            FRAG_NEEDED.0,
            FRAG_NEEDED.1,
            [0, 0, 0x02, 0x40],
            &quote(&to_client, 20 + 20),
        )
    };
    let (verdict, out) = h.run(&from(CLIENT_IP));
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(out, from(CLIENT_IP), "left as it was");
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::IcmpSpoofed), 1);
    assert_eq!(stats.get(Counter::IcmpToBackend), 0);
    // The same from a router on the path goes on to the backend.
    let router = [198, 18, 0, 254];
    let (verdict, out) = h.run(&from(router));
    assert_eq!(verdict, XDP_TX);
    let seen = IcmpSeen::parse(&out);
    assert_eq!((seen.src, seen.dst), (LB_IP, backend));
    assert_eq!((seen.kind, seen.code), FRAG_NEEDED);
    assert_eq!((seen.quoted_src, seen.quoted_dst), (backend, LB_IP));
    assert_eq!((seen.quoted_sport, seen.quoted_dport), (6443, snat_port));
    // Other errors from the client itself still go through (a port
    // unreachable is what a host says about packets to itself).
    let unreachable = icmp_error(
        (CLIENT_MAC, LB_MAC),
        CLIENT_IP,
        VIP,
        3,
        3,
        [0; 4],
        &quote(&to_client, 20 + 20),
    );
    assert_eq!(h.run(&unreachable).0, XDP_TX);
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::IcmpSpoofed), 1);
    assert_eq!(stats.get(Counter::IcmpToBackend), 2);
}

#[test]
fn icmp_echo_to_the_vip_and_errors_about_no_flow_are_the_kernels() {
    let mut h = Harness::new();
    h.tcp_service(0, 6443..=6443, Some(6443));
    let echo = icmp_error(
        (CLIENT_MAC, LB_MAC),
        CLIENT_IP,
        VIP,
        8,
        0,
        [0, 1, 0, 1],
        b"ping",
    );
    let (verdict, out) = h.run(&echo);
    assert_eq!((verdict, out), (XDP_PASS, echo));
    let stray = icmp_error(
        (CLIENT_MAC, LB_MAC),
        CLIENT_IP,
        VIP,
        3,
        3,
        [0; 4],
        &quote(&Pkt::tcp(6443, VIP, 1, SYN).build(), 28),
    );
    assert_eq!(h.run(&stray).0, XDP_PASS);
}

#[test]
fn fragments_of_one_datagram_are_translated_alike_and_reassemble_whole() {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(5353), false);
    let payload: Vec<u8> = (0..200u8).collect();
    let whole = Pkt::udp(41500, VIP, 53, &payload).build();
    let (first, second) = fragment(&whole, 104);
    let (v1, out1) = h.run(&first);
    let (v2, out2) = h.run(&second);
    assert_eq!((v1, v2), (XDP_TX, XDP_TX));
    assert_eq!(out1[0..6], out2[0..6], "both to the same backend MAC");
    let datagram = Seen::parse(&reassemble(&out1, &out2));
    assert_eq!(datagram.src, LB_IP);
    assert_eq!(datagram.ports().1, 5353);
    assert_eq!(datagram.payload, payload, "the checksum covers it whole");
    assert_eq!(
        h.dp.global_stats()
            .unwrap()
            .get(Counter::FragmentTranslated),
        1
    );
}

#[test]
fn a_later_fragment_without_its_first_is_dropped() {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(53), false);
    let payload = [7u8; 120];
    let (_, second) = fragment(&Pkt::udp(41600, VIP, 53, &payload).build(), 64);
    assert_eq!(h.run(&second).0, XDP_DROP);
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::FragmentOrphan), 1);
    // Not to a VIP: the kernel's business.
    let (_, other) = fragment(&Pkt::udp(41600, LB_IP, 53, &payload).build(), 64);
    assert_eq!(h.run(&other).0, XDP_PASS);
}
