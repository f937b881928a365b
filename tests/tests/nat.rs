//! Packet-by-packet fixtures of the load balancer's NAT forwarding,
//! through `BPF_PROG_TEST_RUN`: a packet in, the verdict and the exact
//! packet out, with every checksum recomputed from scratch by `etherparse`.
//! Here translation both ways and what backends going down, coming back
//! or missing do to flows; the SNAT ports' reuse is in `nat_snat_ports.rs`.

use kube_xdp::datapath::BackendState;
use kube_xdp_common::{maps::PROTO_UDP, stats::Counter};
use kube_xdp_tests::{
    harness::{
        Harness, SNAT_PORT_MAX, SNAT_PORT_MIN, XDP_DROP, XDP_PASS, apiserver, backend_of, open, tx,
    },
    packet::{
        ACK, BACKEND_IPS, CLIENT_IP, CLIENT_MAC, EXTRA_BACKEND_IP, LB_IP, LB_MAC, PSH, Pkt, RST,
        SYN, Transport, VIP, backend_mac,
    },
};

#[test]
fn new_tcp_flow_is_translated_to_a_backend() {
    let h = apiserver();
    let input = Pkt::tcp(40000, VIP, 6443, SYN).payload(b"");
    let out = tx(&h, &input);
    assert!(BACKEND_IPS.contains(&backend_of(&out)));
    assert_eq!(out.src_mac, LB_MAC, "sent from the LB's own MAC");
    assert_eq!(out.src, LB_IP, "SNAT to the LB's address, never the VIP");
    assert_eq!(out.ttl, 63);
    let (sport, dport) = out.ports();
    assert!((SNAT_PORT_MIN..=SNAT_PORT_MAX).contains(&sport), "{sport}");
    assert_eq!(dport, 6443);
    let Transport::Tcp { seq, flags, ts, .. } = out.transport else {
        panic!()
    };
    assert_eq!((seq, flags), (1000, SYN));
    let (tsval, tsecr) = ts.expect("timestamp kept");
    assert_ne!(tsval, 100_000, "the client's TSval is rewritten");
    assert_eq!(tsecr, 0);
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::NewFlow), 1);
    assert_eq!(stats.get(Counter::VerdictTx), 1);
    let traffic = h.dp.service_traffic(0).unwrap();
    assert_eq!((traffic.packets, traffic.new_flows), (1, 1));
}

#[test]
fn next_packet_of_a_flow_keeps_backend_snat_port_and_timestamp_offset() {
    let h = apiserver();
    let syn = open(&h, 40001);
    let data = Pkt::tcp(40001, VIP, 6443, ACK | PSH)
        .seq_ack(1001, 5000)
        .ts(Some((100_250, 7_000)))
        .payload(b"GET /readyz HTTP/1.1\r\n\r\n");
    let out = tx(&h, &data);
    assert_eq!(out.dst, syn.dst);
    assert_eq!(out.ports(), syn.ports());
    assert_eq!(out.payload, b"GET /readyz HTTP/1.1\r\n\r\n");
    let (syn_ts, _) = syn.ts().unwrap();
    let (ts, ecr) = out.ts().unwrap();
    assert_eq!(ts.wrapping_sub(syn_ts), 250, "the offset is fixed per flow");
    assert_eq!(ecr, 7_000, "TSecr towards the backend is left alone");
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::ToBackend), 1);
}

#[test]
fn backend_reply_is_translated_back_to_the_client() {
    let h = apiserver();
    let syn = open(&h, 40002);
    let backend = backend_of(&syn);
    let (snat_port, _) = syn.ports();
    let (rewritten_ts, _) = syn.ts().unwrap();
    let mut reply = Pkt::tcp(6443, LB_IP, snat_port, SYN | ACK)
        .from(backend, backend_mac(backend))
        .seq_ack(777, 1001)
        .ts(Some((55, rewritten_ts)));
    reply.dst_mac = LB_MAC;
    let out = tx(&h, &reply);
    assert_eq!(
        out.dst_mac, CLIENT_MAC,
        "to the MAC the client's frames came from"
    );
    assert_eq!(out.src_mac, LB_MAC);
    assert_eq!((out.src, out.dst), (VIP, CLIENT_IP));
    assert_eq!(out.ports(), (6443, 40002));
    assert_eq!(out.ttl, 63);
    assert_eq!(out.tcp_flags(), SYN | ACK);
    assert_eq!(
        out.ts(),
        Some((55, 100_000)),
        "the client sees its own TSval echoed"
    );
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::ToClient), 1);
}

#[test]
fn udp_flow_is_translated_both_ways_and_a_zero_checksum_stays_zero() {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(5353), false);
    let query = Pkt::udp(41000, VIP, 53, b"query");
    let out = tx(&h, &query);
    let backend = backend_of(&out);
    let (snat_port, dport) = out.ports();
    assert_eq!(dport, 5353, "the backend's own port");
    assert_eq!(out.src, LB_IP);
    assert!(matches!(
        out.transport,
        Transport::Udp {
            no_checksum: false,
            ..
        }
    ));

    let mut reply = Pkt::udp(5353, LB_IP, snat_port, b"answer").from(backend, backend_mac(backend));
    reply.dst_mac = LB_MAC;
    let out = tx(&h, &reply);
    assert_eq!((out.src, out.dst), (VIP, CLIENT_IP));
    assert_eq!(out.ports(), (53, 41000));
    assert_eq!(out.payload, b"answer");

    let mut bare = Pkt::udp(41001, VIP, 53, b"no checksum");
    bare.transport = Transport::Udp {
        sport: 41001,
        dport: 53,
        no_checksum: true,
    };
    let out = tx(&h, &bare);
    assert!(
        matches!(
            out.transport,
            Transport::Udp {
                no_checksum: true,
                ..
            }
        ),
        "a datagram sent without a checksum keeps none"
    );
}

#[test]
fn nodeport_range_is_one_service_whose_backends_keep_the_clients_port() {
    let mut h = Harness::new();
    h.tcp_service(1, 30000..=32767, None);
    for port in [30000, 30080, 32000, 32767] {
        let out = tx(&h, &Pkt::tcp(42000, VIP, port, SYN));
        assert_eq!(out.ports().1, port);
        assert!(BACKEND_IPS.contains(&backend_of(&out)));
    }
    let (verdict, _) = h.run(&Pkt::tcp(42000, VIP, 29999, SYN).build());
    assert_eq!(verdict, XDP_PASS, "a port outside the range is no service");
}

#[test]
fn down_backend_keeps_its_established_flow_but_gets_no_new_ones() {
    let mut h = apiserver();
    let syn = open(&h, 43000);
    let down = backend_of(&syn);
    let id = BACKEND_IPS.iter().position(|b| *b == down).unwrap() as u32;
    h.set_backend(0, id, down, Some(6443), BackendState::Down);
    h.rebuild(0);

    let ack = Pkt::tcp(43000, VIP, 6443, ACK).seq_ack(1001, 1);
    assert_eq!(tx(&h, &ack).dst, down, "the established flow continues");
    for sport in 43001..43061 {
        assert_ne!(open(&h, sport).dst, down, "no new flow to a DOWN backend");
    }
}

#[test]
fn reset_mode_answers_a_down_backends_flow_with_a_rst() {
    let mut h = Harness::new();
    h.service(
        0,
        6443..=6443,
        kube_xdp_common::maps::PROTO_TCP,
        Some(6443),
        true,
    );
    let syn = open(&h, 43100);
    let down = backend_of(&syn);
    let id = BACKEND_IPS.iter().position(|b| *b == down).unwrap() as u32;
    h.set_backend(0, id, down, Some(6443), BackendState::Down);
    h.rebuild(0);

    let ack = Pkt::tcp(43100, VIP, 6443, ACK).seq_ack(1001, 4242);
    let rst = tx(&h, &ack);
    assert_eq!((rst.src, rst.dst), (VIP, CLIENT_IP));
    assert_eq!((rst.src_mac, rst.dst_mac), (LB_MAC, CLIENT_MAC));
    assert_eq!(rst.ports(), (6443, 43100));
    let Transport::Tcp { seq, flags, .. } = rst.transport else {
        panic!()
    };
    assert_eq!(flags, RST);
    assert_eq!(seq, 4242, "seq = the segment's ACK (RFC 9293)");
    assert!(rst.payload.is_empty());
    assert_eq!(
        h.dp.global_stats().unwrap().get(Counter::BackendDownReset),
        1
    );
}

#[test]
fn added_backend_leaves_established_flows_alone_and_takes_new_ones() {
    let mut h = apiserver();
    let before: Vec<[u8; 4]> = (44000..44030).map(|p| open(&h, p).dst).collect();
    h.set_backend(0, 3, EXTRA_BACKEND_IP, Some(6443), BackendState::Up);
    h.rebuild(0);
    for (i, sport) in (44000..44030).enumerate() {
        let ack = Pkt::tcp(sport, VIP, 6443, ACK).seq_ack(1001, 1);
        assert_eq!(tx(&h, &ack).dst, before[i], "flow {sport} kept its backend");
    }
    let new: Vec<[u8; 4]> = (44100..44200).map(|p| open(&h, p).dst).collect();
    assert!(
        new.contains(&EXTRA_BACKEND_IP),
        "new flows reach the new backend"
    );
}

#[test]
fn no_usable_backend_answers_syn_with_rst_and_drops_the_rest() {
    let mut h = apiserver();
    for (id, addr) in BACKEND_IPS.iter().enumerate() {
        h.set_backend(0, id as u32, *addr, Some(6443), BackendState::Down);
    }
    h.rebuild(0);
    let rst = tx(&h, &Pkt::tcp(45000, VIP, 6443, SYN));
    assert_eq!((rst.src, rst.dst), (VIP, CLIENT_IP));
    assert_eq!(rst.ports(), (6443, 45000));
    let Transport::Tcp {
        seq, ack, flags, ..
    } = rst.transport
    else {
        panic!()
    };
    assert_eq!(flags, RST | ACK);
    assert_eq!((seq, ack), (0, 1001), "ack = SYN's seq + 1");

    let (verdict, _) = h.run(&Pkt::tcp(45000, VIP, 6443, ACK).build());
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::NoBackend), 2);
}

#[test]
fn segment_without_a_flow_is_answered_with_rst() {
    let h = apiserver();
    let rst = tx(&h, &Pkt::tcp(46000, VIP, 6443, ACK).seq_ack(5, 999));
    assert_eq!(rst.tcp_flags(), RST);
    assert_eq!(rst.ports(), (6443, 46000));
    // A RST is never answered.
    let (verdict, _) = h.run(&Pkt::tcp(46000, VIP, 6443, RST).build());
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::NoFlow), 2);
}

#[test]
fn traffic_to_no_service_passes_unchanged() {
    let h = apiserver();
    for pkt in [
        Pkt::tcp(47000, VIP, 22, SYN),
        Pkt::tcp(47000, LB_IP, 6443, SYN),
        Pkt::udp(47000, VIP, 6443, b"x"),
    ] {
        let input = pkt.build();
        let (verdict, out) = h.run(&input);
        assert_eq!(verdict, XDP_PASS, "{pkt:?}");
        assert_eq!(out, input);
    }
}
