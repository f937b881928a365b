//! The XDP program run through `BPF_PROG_TEST_RUN`: a packet in, the
//! verdict and the packet out, and the counters it moved.

use aya::programs::{TestRun, TestRunOptions, Xdp};
use kube_xdp_common::{program_name, stats::Counter};
use kube_xdp_tests::{
    harness::{Harness, XDP_PASS},
    packet,
};

#[test]
fn tcp_to_no_service_passes_unchanged_and_is_counted() {
    let h = Harness::new();
    let input = packet::tcp_syn(packet::LB_IP, 40000, 6443);
    let (verdict, out) = h.run(&input);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, input, "a passed packet is not modified");
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::VerdictPass), 1);
    assert_eq!(stats.get(Counter::PassNoService), 1);
    assert_eq!(stats.get(Counter::Malformed), 0);
}

#[test]
fn udp_to_no_service_passes() {
    let h = Harness::new();
    let input = packet::udp(packet::LB_IP, 40000, 53, b"hello");
    assert_eq!(h.run(&input).0, XDP_PASS);
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::PassNoService), 1);
}

#[test]
fn truncated_packets_are_counted_malformed_at_every_header() {
    let h = Harness::new();
    let input = packet::tcp_syn(packet::LB_IP, 40000, 6443);
    // Cut right after the Ethernet header, inside the IPv4 header and
    // inside the TCP header. (BPF_PROG_TEST_RUN refuses XDP input shorter
    // than an Ethernet header, net/bpf/test_run.c, so a cut inside it
    // cannot be fed; the parser's bounds check covers it all the same.)
    for len in [14, 14 + 12, 14 + 20 + 10] {
        let (verdict, out) = h.run(&input[..len]);
        assert_eq!(verdict, XDP_PASS, "length {len}");
        assert_eq!(out, &input[..len]);
    }
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::Malformed), 3);
    assert_eq!(stats.get(Counter::VerdictPass), 3);
    assert_eq!(stats.get(Counter::PassNoService), 0);
}

#[test]
fn arp_is_passed_as_not_ipv4() {
    let h = Harness::new();
    let input = packet::arp_request(packet::LB_IP);
    let (verdict, out) = h.run(&input);
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(out, input);
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::PassNotIpv4), 1);
    assert_eq!(stats.get(Counter::VerdictPass), 1);
}

#[test]
fn floor_program_swaps_macs_and_transmits() {
    let mut h = Harness::new();
    let floor: &mut Xdp = h
        .bpf_mut()
        .program_mut(program_name::FLOOR)
        .unwrap()
        .try_into()
        .unwrap();
    floor.load().unwrap();
    let input = packet::tcp_syn(packet::LB_IP, 40000, 6443);
    let mut out = vec![0u8; input.len()];
    let result = floor
        .test_run(TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(result.return_value, 3, "XDP_TX");
    assert_eq!(out[0..6], input[6..12]);
    assert_eq!(out[6..12], input[0..6]);
    assert_eq!(out[12..], input[12..]);
}
