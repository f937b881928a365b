//! Malformed input gets a defined verdict: dropped when sent to a VIP, left
//! to the kernel otherwise — never a forwarded corrupt packet — and is
//! counted `malformed` either way, once per packet.

use kube_xdp_common::{maps::PROTO_UDP, stats::Counter};
use kube_xdp_tests::{
    checksum,
    harness::{Harness, XDP_DROP, XDP_PASS, XDP_TX},
    packet::{LB_IP, Pkt, SYN, Seen, VIP},
};

fn lb() -> Harness {
    let mut h = Harness::new();
    h.tcp_service(0, 6443..=6443, Some(6443));
    h.service(2, 53..=53, PROTO_UDP, Some(53), false);
    h
}

fn malformed_count(h: &Harness) -> u64 {
    h.dp.global_stats().unwrap().get(Counter::Malformed)
}

/// Runs a malformed `frame` and checks its verdict, that it leaves
/// unchanged, and that it is counted `malformed` (dropped at a VIP or left
/// to the kernel, it is counted all the same).
fn expect_malformed(h: &Harness, frame: &[u8], verdict: u32, what: &str) {
    let before = malformed_count(h);
    let (got, out) = h.run(frame);
    assert_eq!(got, verdict, "{what}");
    assert_eq!(out, frame, "{what}: not modified");
    assert_eq!(malformed_count(h), before + 1, "{what}: counted malformed");
}

#[test]
fn truncated_at_every_header_boundary() {
    let h = lb();
    let syn = Pkt::tcp(40000, VIP, 6443, SYN).build(); // 14 + 20 + 32
    // Before the destination address is complete the frame cannot be
    // known to be for a VIP: the kernel drops it.
    for len in [14, 14 + 10, 14 + 19] {
        expect_malformed(&h, &syn[..len], XDP_PASS, &format!("cut at {len}"));
    }
    // After it, the frame is ours to drop (the IPv4 total length no longer
    // fits, or the TCP header is cut).
    for len in [
        14 + 20,
        14 + 20 + 1,
        14 + 20 + 19,
        14 + 20 + 20,
        14 + 20 + 31,
    ] {
        expect_malformed(&h, &syn[..len], XDP_DROP, &format!("cut at {len}"));
    }
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::Malformed), 8);
    assert_eq!(stats.get(Counter::VerdictTx), 0);
}

#[test]
fn bad_ihl_is_dropped() {
    let h = lb();
    let syn = Pkt::tcp(40000, VIP, 6443, SYN).build();
    for vihl in [0x40, 0x44, 0x4f] {
        let mut f = syn.clone();
        f[14] = vihl;
        checksum::set_ipv4(&mut f);
        expect_malformed(&h, &f, XDP_DROP, &format!("vihl {vihl:#x}"));
    }
    let mut v6 = syn.clone();
    v6[14] = 0x65;
    expect_malformed(&h, &v6, XDP_DROP, "version 6 in an IPv4 ethertype");
}

#[test]
fn ip_options_are_honoured_and_kept() {
    let h = lb();
    let mut pkt = Pkt::tcp(40000, VIP, 6443, SYN);
    // Router alert (RFC 2113), 4 bytes.
    pkt.ip_options = vec![0x94, 0x04, 0x00, 0x00];
    let (verdict, out) = h.run(&pkt.build());
    assert_eq!(verdict, XDP_TX);
    assert_eq!(malformed_count(&h), 0, "options are no malformation");
    let seen = Seen::parse(&out);
    assert_eq!(seen.ip_options, vec![0x94, 0x04, 0x00, 0x00]);
    assert_eq!(seen.src, LB_IP);
    assert_eq!(seen.ports().1, 6443);
}

#[test]
fn bad_tcp_data_offset_is_dropped() {
    let h = lb();
    let syn = Pkt::tcp(40000, VIP, 6443, SYN).build();
    for doff in [0u8, 4, 9, 15] {
        let mut f = syn.clone();
        f[14 + 20 + 12] = doff << 4;
        expect_malformed(&h, &f, XDP_DROP, &format!("data offset {doff}"));
    }
}

#[test]
fn bad_udp_length_is_dropped() {
    let h = lb();
    let udp = Pkt::udp(40000, VIP, 53, b"hello").build();
    for len in [0u16, 7, 14] {
        let mut f = udp.clone();
        f[14 + 20 + 4..14 + 20 + 6].copy_from_slice(&len.to_be_bytes());
        expect_malformed(&h, &f, XDP_DROP, &format!("UDP length {len}"));
    }
}

#[test]
fn malformed_traffic_to_no_vip_is_left_to_the_kernel() {
    let h = lb();
    let syn = Pkt::tcp(40000, LB_IP, 6443, SYN).build();
    expect_malformed(&h, &syn[..14 + 20 + 10], XDP_PASS, "cut TCP header");
    let mut f = syn.clone();
    f[14 + 20 + 12] = 0x20;
    expect_malformed(&h, &f, XDP_PASS, "data offset 2");
    let mut f = syn.clone();
    f[14] = 0x43;
    checksum::set_ipv4(&mut f);
    expect_malformed(&h, &f, XDP_PASS, "IHL 3");
    // The same SYN unbroken is no malformation.
    let (verdict, _) = h.run(&syn);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(malformed_count(&h), 3, "a well-formed SYN is not counted");
}
