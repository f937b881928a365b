//! The generated input: proptest strategies for targets, endpoints,
//! segments and actions, and the frames built from them.

use kube_xdp_common::maps::PROTO_UDP;
use kube_xdp_tests::{
    fuzz::mutation,
    model::Tuple,
    packet::{ACK, CLIENT_MAC, FIN, LB_IP, LB_MAC, PSH, Pkt, RST, SYN, Transport, backend_mac},
};
use proptest::{prelude::*, sample::Index};

use super::{
    ALT_CLIENT_MAC, ALT_LB_MAC, Action, CLIENT_PORTS, CLIENTS, Case, Endpoint, OTHER_HOST, Seg,
    Target, Which,
};

pub(super) fn target() -> impl Strategy<Value = Target> {
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

pub(super) fn endpoint() -> impl Strategy<Value = Endpoint> {
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

pub(super) fn client_flags() -> impl Strategy<Value = u8> {
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

pub(super) fn reply_flags() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => Just(SYN | ACK),
        4 => Just(ACK),
        4 => Just(ACK | PSH),
        2 => Just(FIN | ACK),
        1 => Just(RST),
        1 => Just(RST | ACK),
    ]
}

pub(super) fn seg(flags: impl Strategy<Value = u8>) -> impl Strategy<Value = Seg> {
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

pub(super) fn action() -> impl Strategy<Value = Action> {
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

pub(super) fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(endpoint(), 1..=3),
        prop::collection::vec(action(), 1..=12),
    )
        .prop_map(|(endpoints, actions)| Case { endpoints, actions })
}

pub(super) fn client_pkt(ep: &Endpoint, seg: &Seg) -> Pkt {
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

pub(super) fn common(mut pkt: Pkt, seg: &Seg) -> Pkt {
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
pub(super) fn reply_pkt(key: &Tuple, seg: &Seg) -> Pkt {
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

/// A plain SYN (for frames whose transport is not the point).
pub(super) fn plain_seg() -> Seg {
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
