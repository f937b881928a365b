//! Packet-by-packet fixtures of UDP flow state, through
//! `BPF_PROG_TEST_RUN`: a flow the backend never answered (spoofed or
//! scanning datagrams) lives only `udp_unanswered`, an answered one the
//! whole `udp` timeout, and an expired UDP flow's SNAT port is free at once
//! (UDP has no TIME_WAIT to wait out).

use kube_xdp_common::{maps::PROTO_UDP, stats::Counter};
use kube_xdp_tests::{
    harness::{Harness, backend_of, default_settings, pin_to_cpu0, tx},
    packet::{LB_IP, LB_MAC, Pkt, VIP, backend_mac},
};
use std::time::Duration;

const UNANSWERED: Duration = Duration::from_millis(300);

/// A UDP service on VIP:53 (backends on 5353), with `udp_unanswered` =
/// 300 ms and the SNAT ports `ports`.
fn dns(ports: std::ops::RangeInclusive<u16>) -> Harness {
    let mut h = Harness::new();
    h.service(2, 53..=53, PROTO_UDP, Some(5353), false);
    let mut settings = default_settings();
    settings.udp_unanswered_ns = UNANSWERED.as_nanos() as u64;
    settings.snat_port_min = *ports.start();
    settings.snat_port_max = *ports.end();
    h.dp.set_settings(&settings).unwrap();
    h
}

fn new_flows(h: &Harness) -> u64 {
    h.dp.global_stats().unwrap().get(Counter::NewFlow)
}

#[test]
fn an_unanswered_udp_flow_lives_udp_unanswered_an_answered_one_udp() {
    let h = dns(20_000..=29_999);
    // Unanswered: after 300 ms idle the next datagram opens a new flow.
    tx(&h, &Pkt::udp(41000, VIP, 53, b"query"));
    assert_eq!(new_flows(&h), 1);
    std::thread::sleep(UNANSWERED + Duration::from_millis(200));
    tx(&h, &Pkt::udp(41000, VIP, 53, b"query"));
    assert_eq!(new_flows(&h), 2, "the unanswered flow expired");

    // Answered: the backend's reply gives it the whole `udp` timeout.
    let out = tx(&h, &Pkt::udp(41001, VIP, 53, b"query"));
    assert_eq!(new_flows(&h), 3);
    let backend = backend_of(&out);
    let mut reply =
        Pkt::udp(5353, LB_IP, out.ports().0, b"answer").from(backend, backend_mac(backend));
    reply.dst_mac = LB_MAC;
    tx(&h, &reply);
    std::thread::sleep(UNANSWERED + Duration::from_millis(200));
    let again = tx(&h, &Pkt::udp(41001, VIP, 53, b"query"));
    assert_eq!(new_flows(&h), 3, "the answered flow is still live");
    assert_eq!(again.ports(), out.ports(), "on the same SNAT port");
}

#[test]
fn an_expired_udp_flows_port_is_free_at_once() {
    // One backend port, one SNAT port: every flow needs that port.
    let mut h = dns(20_000..=20_000);
    for id in 21..23 {
        h.dp.remove_backend(id).unwrap();
    }
    h.rebuild(2);
    let first = tx(&h, &Pkt::udp(41000, VIP, 53, b"query"));
    assert_eq!(first.ports().0, 20_000);
    std::thread::sleep(UNANSWERED + Duration::from_millis(200));
    // Another client: the port is free, no TIME_WAIT hold for UDP.
    let second = tx(&h, &Pkt::udp(41002, VIP, 53, b"query"));
    assert_eq!(second.ports().0, 20_000);
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::SnatExhausted), 0);
    assert_eq!(stats.get(Counter::NewFlow), 2);
}

#[test]
fn over_the_unanswered_limit_a_new_udp_flow_is_dropped_and_an_answer_makes_room() {
    pin_to_cpu0();
    let mut h = dns(20_000..=29_999);
    // Room for two unanswered flows on this CPU.
    let mut settings = h.dp.settings().unwrap();
    settings.unanswered_cost_ns = settings.udp_unanswered_ns / 2;
    h.dp.set_settings(&settings).unwrap();
    let first = tx(&h, &Pkt::udp(41000, VIP, 53, b"query"));
    tx(&h, &Pkt::udp(41001, VIP, 53, b"query"));
    let (verdict, _) = h.run(&Pkt::udp(41002, VIP, 53, b"query").build());
    assert_eq!(verdict, 1, "XDP_DROP: over the limit");
    let stats = h.dp.global_stats().unwrap();
    assert_eq!(stats.get(Counter::UdpUnansweredLimited), 1);
    assert_eq!(stats.get(Counter::NewFlow), 2);
    // An established flow's datagrams are not limited.
    tx(&h, &Pkt::udp(41000, VIP, 53, b"again"));
    // The first flow's backend answers: its place is free.
    let backend = backend_of(&first);
    let mut reply =
        Pkt::udp(5353, LB_IP, first.ports().0, b"answer").from(backend, backend_mac(backend));
    reply.dst_mac = LB_MAC;
    tx(&h, &reply);
    tx(&h, &Pkt::udp(41003, VIP, 53, b"query"));
    assert_eq!(h.dp.global_stats().unwrap().get(Counter::NewFlow), 3);
}
