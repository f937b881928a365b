//! Differential test: the reference model (`kube_xdp_tests::model`, written
//! from the behaviour specification) against the real XDP program under
//! `BPF_PROG_TEST_RUN`, over proptest-generated packet sequences. Every
//! packet's verdict, counters and output frame must agree.
//!
//! `KUBE_XDP_DIFF_CASES` sets the number of cases (default 10,000).
//!
//! The cases and the types they are made of are here; `input.rs`
//! generates them and builds their frames; `lab.rs` runs them through the
//! program and the model side by side.

mod input;
mod lab;

use std::{cell::RefCell, time::Instant};

use kube_xdp_common::maps::{PROTO_TCP, PROTO_UDP};
use kube_xdp_tests::{fuzz::Mutation, model::ServiceConf, packet::VIP};
use proptest::{
    sample::Index,
    test_runner::{Config, TestCaseError, TestError, TestRunner},
};

use input::case;
use lab::Lab;

const DEFAULT_CASES: u32 = 10_000;

/// Another MAC a client's frames may come from.
const ALT_CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x77];
/// Another host's MAC frames may be sent to: not ours to handle.
const ALT_LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x99];
const CLIENTS: [[u8; 4]; 4] = [
    [198, 18, 0, 1],
    [198, 18, 1, 5],
    [198, 18, 1, 6],
    [198, 19, 200, 7],
];
const CLIENT_PORTS: [u16; 3] = [40000, 40001, 55555];
const OTHER_HOST: [u8; 4] = [198, 18, 5, 5];

/// S0, S1, S2 of the specification.
fn services() -> Vec<ServiceConf> {
    vec![
        ServiceConf {
            id: 0,
            vip: VIP,
            ports: 6443..=6443,
            protocol: PROTO_TCP,
            backend_port: Some(6443),
            reset_on_down: false,
        },
        ServiceConf {
            id: 1,
            vip: VIP,
            ports: 30000..=32767,
            protocol: PROTO_TCP,
            backend_port: None,
            reset_on_down: true,
        },
        ServiceConf {
            id: 2,
            vip: VIP,
            ports: 53..=53,
            protocol: PROTO_UDP,
            backend_port: Some(5353),
            reset_on_down: false,
        },
    ]
}

/// Where a client sends.
#[derive(Clone, Copy, Debug)]
enum Target {
    S0,
    /// S1, the port range.
    S1(u16),
    S2,
    /// The VIP, on a port or protocol with no service.
    VipTcp(u16),
    VipUdp(u16),
    /// Not a VIP.
    OtherTcp([u8; 4], u16),
    OtherUdp([u8; 4], u16),
}

impl Target {
    /// (dst, dport, UDP?)
    fn resolve(self) -> ([u8; 4], u16, bool) {
        match self {
            Target::S0 => (VIP, 6443, false),
            Target::S1(port) => (VIP, port, false),
            Target::S2 => (VIP, 53, true),
            Target::VipTcp(port) => (VIP, port, false),
            Target::VipUdp(port) => (VIP, port, true),
            Target::OtherTcp(a, port) => (a, port, false),
            Target::OtherUdp(a, port) => (a, port, true),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Endpoint {
    client: [u8; 4],
    sport: u16,
    target: Target,
}

/// One TCP segment or UDP datagram (UDP ignores the TCP fields).
#[derive(Clone, Debug)]
struct Seg {
    flags: u8,
    ts: Option<(u32, u32)>,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
    ttl: u8,
    id: u16,
    ip_options: Option<Vec<u8>>,
    alt_src_mac: bool,
    alt_dst_mac: bool,
    udp_no_checksum: bool,
    mutation: Option<Mutation>,
}

#[derive(Clone, Debug)]
enum Action {
    /// From one of the case's endpoints.
    Client {
        endpoint: Index,
        seg: Seg,
    },
    /// From anywhere to anywhere (a stray packet).
    Stray {
        endpoint: Endpoint,
        seg: Seg,
    },
    /// From the backend side of a flow the model knows (live or not;
    /// skipped while it knows none); `wrong_port` makes it match no flow.
    Reply {
        flow: Index,
        seg: Seg,
        wrong_port: bool,
    },
    /// Another ethertype (an IPv4 packet to a service behind it, after a
    /// VLAN tag for 802.1Q and 802.1ad), or ARP.
    NotIpv4 {
        ethertype: Option<u16>,
        endpoint: Index,
    },
    /// A service packet with another IP protocol number.
    OtherProtocol {
        endpoint: Index,
        proto: u8,
    },
    Backend {
        which: Which,
        up: bool,
    },
}

/// Which backends a [`Action::Backend`] changes.
#[derive(Clone, Debug)]
enum Which {
    /// Backend `index` (0..3) of a service.
    One { service: u32, index: u32 },
    /// The backend of a flow the model knows (or backend 0 of S0).
    OfFlow(Index),
    /// Every backend of a service.
    All { service: u32 },
}

#[derive(Clone, Debug)]
struct Case {
    endpoints: Vec<Endpoint>,
    actions: Vec<Action>,
}

#[test]
fn model_and_program_agree() {
    let cases = std::env::var("KUBE_XDP_DIFF_CASES")
        .ok()
        .map(|v| v.parse().expect("KUBE_XDP_DIFF_CASES is a number"))
        .unwrap_or(DEFAULT_CASES);
    let start = Instant::now();
    let lab = RefCell::new(Lab::new());
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_time: 120_000,
        ..Config::default()
    });
    let result = runner.run(&case(), |case| {
        lab.borrow_mut()
            .run_case(&case)
            .map_err(TestCaseError::fail)
    });
    let lab = lab.into_inner();
    println!(
        "differential: {cases} cases, {} packets (with any shrinking) in {:.1?} ({:.1?} writing Maglev tables)",
        lab.packets,
        start.elapsed(),
        lab.table_time
    );
    for (outcome, n) in &lab.outcomes {
        println!("  {n:>8}  {outcome}");
    }
    match result {
        Ok(()) => {}
        Err(TestError::Fail(why, case)) => {
            panic!("the model and the program disagree\n{why}\nminimal case: {case:#?}")
        }
        Err(e) => panic!("{e}"),
    }
}
