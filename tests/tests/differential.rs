//! Differential test: the reference model (`kube_xdp_tests::model`, written
//! from the behaviour specification) against the real XDP program under
//! `BPF_PROG_TEST_RUN`, over proptest-generated packet sequences. Every
//! packet's verdict, counters and output frame must agree.
//!
//! `KUBE_XDP_DIFF_CASES` sets the number of cases (default 10,000).

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt::Write as _,
    time::{Duration, Instant},
};

use kube_xdp::datapath::BackendState;
use kube_xdp_common::{
    maps::{PROTO_TCP, PROTO_UDP},
    stats::Counter,
};
use kube_xdp_tests::{
    checksum,
    fuzz::{Mutation, mutate, mutation},
    harness::{Harness, SNAT_PORT_MAX, SNAT_PORT_MIN},
    model::{self, Model, Observed, ServiceConf, Tuple},
    packet::{
        ACK, BACKEND_IPS, CLIENT_MAC, FIN, LB_IP, LB_MAC, PSH, Pkt, RST, SYN, Transport, VIP,
        arp_request, backend_mac,
    },
};
use proptest::{
    prelude::*,
    sample::Index,
    test_runner::{Config, TestCaseError, TestError, TestRunner},
};

const DEFAULT_CASES: u32 = 10_000;

/// Another MAC a client's frames may come from.
const ALT_CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x77];
/// Another MAC frames may be sent to.
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

// ---- generated input ----

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

fn target() -> impl Strategy<Value = Target> {
    let no_service = prop_oneof![
        prop::sample::select(vec![22u16, 53, 29999, 32768]).prop_map(Target::VipTcp),
        prop::sample::select(vec![6443u16, 54, 30000]).prop_map(Target::VipUdp),
        prop::sample::select(vec![
            (LB_IP, 6443u16),
            (OTHER_HOST, 6443),
            (OTHER_HOST, 30000)
        ])
        .prop_map(|(a, p)| Target::OtherTcp(a, p)),
        prop::sample::select(vec![(LB_IP, 53u16), (OTHER_HOST, 53)])
            .prop_map(|(a, p)| Target::OtherUdp(a, p)),
    ];
    prop_oneof![
        4 => Just(Target::S0),
        4 => prop::sample::select(vec![30000u16, 31234, 32767]).prop_map(Target::S1),
        3 => Just(Target::S2),
        2 => no_service,
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (
        prop_oneof![4 => Just(CLIENTS[0]), 1 => prop::sample::select(CLIENTS.to_vec())],
        prop::sample::select(CLIENT_PORTS.to_vec()),
        target(),
    )
        .prop_map(|(client, sport, target)| Endpoint {
            client,
            sport,
            target,
        })
}

fn client_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        7 => Just(SYN),
        4 => Just(ACK),
        4 => Just(ACK | PSH),
        2 => Just(FIN | ACK),
        2 => Just(RST),
        1 => Just(RST | ACK),
        1 => Just(SYN | ACK),
        1 => Just(FIN),
        1 => Just(PSH),
    ]
}

fn reply_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(SYN | ACK),
        4 => Just(ACK),
        4 => Just(ACK | PSH),
        2 => Just(FIN | ACK),
        1 => Just(RST),
        1 => Just(RST | ACK),
    ]
}

fn seg(flags: impl Strategy<Value = u8>) -> impl Strategy<Value = Seg> {
    (
        (
            flags,
            prop::option::weighted(0.7, (any::<u32>(), any::<u32>())),
            any::<u32>(),
            any::<u32>(),
            prop_oneof![Just(Vec::new()), prop::collection::vec(any::<u8>(), 1..40)],
            prop_oneof![20 => Just(64u8), 1 => Just(0), 2 => Just(1), 1 => Just(2), 1 => Just(255)],
        ),
        (
            any::<u16>(),
            prop::option::weighted(
                0.08,
                prop::sample::select(vec![vec![0x94, 0x04, 0, 0], vec![1, 1, 1, 1, 1, 1, 1, 0]]),
            ),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.3),
            prop::option::weighted(0.1, mutation()),
        ),
    )
        .prop_map(
            |(
                (flags, ts, seq, ack, payload, ttl),
                (id, ip_options, alt_src_mac, alt_dst_mac, udp_no_checksum, mutation),
            )| Seg {
                flags,
                ts,
                seq,
                ack,
                payload,
                ttl,
                id,
                ip_options,
                alt_src_mac,
                alt_dst_mac,
                udp_no_checksum,
                mutation,
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        60 => (any::<Index>(), seg(client_flags()))
            .prop_map(|(endpoint, seg)| Action::Client { endpoint, seg }),
        5 => (endpoint(), seg(client_flags()))
            .prop_map(|(endpoint, seg)| Action::Stray { endpoint, seg }),
        22 => (any::<Index>(), seg(reply_flags()), prop::bool::weighted(0.1))
            .prop_map(|(flow, seg, wrong_port)| Action::Reply { flow, seg, wrong_port }),
        2 => (
            prop::option::of(prop::sample::select(vec![0x86ddu16, 0x8100, 0x88a8, 0x88cc, 0x0801])),
            any::<Index>(),
        )
            .prop_map(|(ethertype, endpoint)| Action::NotIpv4 { ethertype, endpoint }),
        2 => (any::<Index>(), prop::sample::select(vec![0u8, 2, 4, 41, 47, 50, 89, 132, 255]))
            .prop_map(|(endpoint, proto)| Action::OtherProtocol { endpoint, proto }),
        5 => (
            prop_oneof![
                2 => (0u32..3, 0u32..3).prop_map(|(service, index)| Which::One { service, index }),
                3 => any::<Index>().prop_map(Which::OfFlow),
                1 => (0u32..3).prop_map(|service| Which::All { service }),
            ],
            prop::bool::weighted(0.35),
        )
            .prop_map(|(which, up)| Action::Backend { which, up }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(endpoint(), 1..=3),
        prop::collection::vec(action(), 1..=12),
    )
        .prop_map(|(endpoints, actions)| Case { endpoints, actions })
}

// ---- building frames ----

fn client_pkt(ep: &Endpoint, seg: &Seg) -> Pkt {
    let (dst, dport, udp) = ep.target.resolve();
    let mut pkt = if udp {
        let mut p = Pkt::udp(ep.sport, dst, dport, &seg.payload);
        p.transport = Transport::Udp {
            sport: ep.sport,
            dport,
            no_checksum: seg.udp_no_checksum,
        };
        p
    } else {
        Pkt::tcp(ep.sport, dst, dport, seg.flags)
            .seq_ack(seg.seq, seg.ack)
            .ts(seg.ts)
            .payload(&seg.payload)
    };
    pkt.src = ep.client;
    pkt.src_mac = if seg.alt_src_mac {
        ALT_CLIENT_MAC
    } else {
        CLIENT_MAC
    };
    common(pkt, seg)
}

fn common(mut pkt: Pkt, seg: &Seg) -> Pkt {
    if seg.alt_dst_mac {
        pkt.dst_mac = ALT_LB_MAC;
    }
    pkt.ttl = seg.ttl;
    pkt.id = seg.id;
    if let Some(opts) = &seg.ip_options {
        pkt.ip_options = opts.clone();
    }
    pkt
}

/// A reply on the backend side of `key` (backend → SNAT address).
fn reply_pkt(key: &Tuple, seg: &Seg) -> Pkt {
    let mut pkt = if key.proto == PROTO_UDP {
        let mut p = Pkt::udp(key.sport, key.dst, key.dport, &seg.payload);
        p.transport = Transport::Udp {
            sport: key.sport,
            dport: key.dport,
            no_checksum: seg.udp_no_checksum,
        };
        p
    } else {
        Pkt::tcp(key.sport, key.dst, key.dport, seg.flags)
            .seq_ack(seg.seq, seg.ack)
            .ts(seg.ts)
            .payload(&seg.payload)
    }
    .from(key.src, backend_mac(key.src));
    pkt.dst_mac = LB_MAC;
    common(pkt, seg)
}

// ---- the Maglev tables ----

/// Writes pool tables through the daemon's own API (one map update per
/// table half), after checking that the harness left every service's
/// all-up table live.
struct Pools;

impl Pools {
    fn open(h: &mut Harness, model: &mut Model) -> Pools {
        for service in model.services().iter().map(|s| s.id).collect::<Vec<_>>() {
            assert_eq!(
                h.dp.pool_table(service).unwrap(),
                *model.table(service),
                "the all-up table"
            );
        }
        Pools
    }

    fn set(&mut self, h: &mut Harness, service: u32, table: &[u32], _all_up: bool) {
        h.dp.set_pool_table(service, table).unwrap();
    }
}

// ---- the test ----

struct Lab {
    h: Harness,
    pools: Pools,
    model: Model,
    stats: Vec<(Counter, u64)>,
    /// Services whose backends changed in this case.
    dirty: [bool; 3],
    packets: u64,
    /// How often each (verdict, reason) came up.
    outcomes: BTreeMap<String, u64>,
    table_time: Duration,
}

impl Lab {
    fn new() -> Lab {
        let mut h = Harness::new();
        let services = services();
        for s in &services {
            h.service(
                s.id,
                s.ports.clone(),
                s.protocol,
                s.backend_port,
                s.reset_on_down,
            );
        }
        let mut model = Model::new(services, LB_IP, SNAT_PORT_MIN..=SNAT_PORT_MAX);
        let pools = Pools::open(&mut h, &mut model);
        let stats = h.dp.global_stats().unwrap().counters;
        let mut lab = Lab {
            h,
            pools,
            model,
            stats,
            dirty: [false; 3],
            packets: 0,
            outcomes: BTreeMap::new(),
            table_time: Duration::ZERO,
        };
        // The fast writer leaves the tables Harness::rebuild would.
        for (service, downs) in [(0, &[1][..]), (1, &[0, 2]), (0, &[0, 1, 2]), (0, &[2])] {
            lab.reset();
            let changes: Vec<(u32, bool)> = downs.iter().map(|i| (*i, false)).collect();
            lab.set_backends(service, &changes);
            assert_eq!(
                lab.h.dp.pool_table(service).unwrap(),
                *lab.model.table(service),
                "service {service} with backends {downs:?} down"
            );
        }
        lab.reset();
        for service in 0..3 {
            assert_eq!(
                lab.h.dp.pool_table(service).unwrap(),
                *lab.model.table(service)
            );
        }
        lab
    }

    /// Sets backends (`index` in 0..3) of a service up or down, then its
    /// table.
    fn set_backends(&mut self, service: u32, changes: &[(u32, bool)]) {
        let port = self.model.services()[service as usize].backend_port;
        for &(index, up) in changes {
            let id = service * 10 + index;
            let state = if up {
                BackendState::Up
            } else {
                BackendState::Down
            };
            self.h
                .set_backend(service, id, BACKEND_IPS[index as usize], port, state);
            self.model.set_backend_up(id, up);
        }
        let start = Instant::now();
        let table = self.model.table(service);
        let all_up = (0..3).all(|i| self.model.backend_up(service * 10 + i));
        self.pools.set(&mut self.h, service, &table, all_up);
        self.table_time += start.elapsed();
        self.dirty[service as usize] = true;
    }

    /// No flows, every backend up.
    fn reset(&mut self) {
        self.h.clear_flows();
        for service in 0..3u32 {
            if self.dirty[service as usize] {
                let changes: Vec<(u32, bool)> = (0..3)
                    .filter(|i| !self.model.backend_up(service * 10 + i))
                    .map(|i| (i, true))
                    .collect();
                self.set_backends(service, &changes);
                self.dirty[service as usize] = false;
            }
        }
        self.model.reset();
    }

    /// Runs one frame through the program and the model.
    fn packet(&mut self, frame: &[u8]) -> Result<String, String> {
        let (verdict, out) = self.h.run(frame);
        self.packets += 1;
        let stats = self.h.dp.global_stats().unwrap().counters;
        let grew: Vec<(Counter, u64)> = stats
            .iter()
            .zip(&self.stats)
            .map(|((c, now), (_, before))| (*c, now - before))
            .collect();
        self.stats = stats;
        self.model.step(
            frame,
            &Observed {
                verdict,
                out: &out,
                counters: &grew,
            },
        )
    }

    fn run_case(&mut self, case: &Case) -> Result<(), String> {
        self.reset();
        let mut log = String::new();
        for (n, action) in case.actions.iter().enumerate() {
            let (pkt, mutation) = match action {
                Action::Backend { which, up } => {
                    let (service, indices) = match which {
                        Which::One { service, index } => (*service, vec![*index]),
                        Which::All { service } => (*service, vec![0, 1, 2]),
                        Which::OfFlow(flow) => {
                            let flows: Vec<_> = self.model.flows().values().collect();
                            if flows.is_empty() {
                                (0, vec![0])
                            } else {
                                let f = flow.get(&flows);
                                (f.service, vec![f.backend_id - f.service * 10])
                            }
                        }
                    };
                    let changes: Vec<(u32, bool)> = indices.iter().map(|i| (*i, *up)).collect();
                    self.set_backends(service, &changes);
                    let ids: Vec<u32> = indices.iter().map(|i| service * 10 + i).collect();
                    let _ = writeln!(
                        log,
                        "#{n} backends {ids:?} of service {service} {}",
                        if *up { "UP" } else { "DOWN" }
                    );
                    continue;
                }
                Action::Client { endpoint, seg } => {
                    let ep = endpoint.get(&case.endpoints);
                    (client_pkt(ep, seg), seg.mutation.clone())
                }
                Action::Stray { endpoint, seg } => {
                    (client_pkt(endpoint, seg), seg.mutation.clone())
                }
                Action::Reply {
                    flow,
                    seg,
                    wrong_port,
                } => {
                    let keys = self.model.reply_keys();
                    if keys.is_empty() {
                        // No flow to reply on (`wrong_port` replies cover
                        // replies of no flow).
                        let _ = writeln!(log, "#{n} reply: no flow yet, skipped");
                        continue;
                    }
                    let mut key = *flow.get(&keys);
                    if *wrong_port {
                        key.dport ^= 0x8000;
                    }
                    (reply_pkt(&key, seg), seg.mutation.clone())
                }
                Action::NotIpv4 {
                    ethertype,
                    endpoint,
                } => {
                    let ep = endpoint.get(&case.endpoints);
                    let frame = match ethertype {
                        None => arp_request(ep.target.resolve().0),
                        Some(t) => {
                            let mut f = client_pkt(ep, &plain_seg()).build();
                            if matches!(t, 0x8100 | 0x88a8) {
                                // A VLAN tag (TCI 0x0064), then IPv4.
                                f.splice(12..12, [0, 0, 0, 0x64]);
                            }
                            f[12..14].copy_from_slice(&t.to_be_bytes());
                            f
                        }
                    };
                    let _ = writeln!(log, "#{n} {action:?}\n    {}", model::hex(&frame));
                    let result = self.packet(&frame);
                    self.note(&mut log, result)?;
                    continue;
                }
                Action::OtherProtocol { endpoint, proto } => {
                    let ep = endpoint.get(&case.endpoints);
                    let mut f = client_pkt(ep, &plain_seg()).build();
                    f[23] = *proto;
                    checksum::set_ipv4(&mut f);
                    let _ = writeln!(log, "#{n} {action:?}\n    {}", model::hex(&f));
                    let result = self.packet(&f);
                    self.note(&mut log, result)?;
                    continue;
                }
            };
            let mut frame = pkt.build();
            if let Some(m) = &mutation {
                mutate(&mut frame, m);
            }
            let _ = writeln!(
                log,
                "#{n} {pkt:?}{}\n    {}",
                mutation.map_or(String::new(), |m| format!(" mutated by {m:?}")),
                model::hex(&frame)
            );
            let result = self.packet(&frame);
            self.note(&mut log, result)?;
        }
        Ok(())
    }

    fn note(&mut self, log: &mut String, result: Result<String, String>) -> Result<(), String> {
        match result {
            Ok(line) => {
                let outcome = line.split(':').next().unwrap_or_default().to_string();
                *self.outcomes.entry(outcome).or_default() += 1;
                let _ = writeln!(log, "    -> {line}");
                Ok(())
            }
            Err(e) => Err(format!(
                "{log}FIRST DISAGREEMENT at the last packet above:\n{e}"
            )),
        }
    }
}

/// A plain SYN (for frames whose transport is not the point).
fn plain_seg() -> Seg {
    Seg {
        flags: SYN,
        ts: None,
        seq: 1,
        ack: 0,
        payload: Vec::new(),
        ttl: 64,
        id: 7,
        ip_options: None,
        alt_src_mac: false,
        alt_dst_mac: false,
        udp_no_checksum: false,
        mutation: None,
    }
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
