//! The sync datagram: layout, round trips, and refusal of everything else
//! (proptest: random bytes, truncations and bit flips never decode and
//! never panic).

use std::net::Ipv4Addr;

use kube_xdp_common::maps::{
    FLOW_COOKIE, FLOW_ESTABLISHED, FLOW_TS_REWRITE, FLOW_UDP, PROTO_TCP, PROTO_UDP,
};
use proptest::prelude::*;

use super::*;

fn key() -> SyncKey {
    SyncKey::new(b"0123456789abcdef0123456789abcdef")
}

fn be(a: Ipv4Addr) -> u32 {
    u32::from(a).to_be()
}

fn record() -> SyncRecord {
    SyncRecord {
        client: FlowKey {
            src_addr: be(Ipv4Addr::new(198, 18, 0, 100)),
            dst_addr: be(Ipv4Addr::new(198, 18, 0, 10)),
            src_port: 40000u16.to_be(),
            dst_port: 6443u16.to_be(),
            protocol: PROTO_TCP,
            _pad: [0; 3],
        },
        backend_addr: be(Ipv4Addr::new(198, 18, 0, 21)),
        backend_port: 6443u16.to_be(),
        snat_addr: be(Ipv4Addr::new(198, 18, 0, 9)),
        snat_port: 10001u16.to_be(),
        client_mac: [2, 0, 0, 0, 0, 0x64],
        state: FLOW_ESTABLISHED,
        // A flow opened by a SYN cookie, its translation in place.
        flags: FLOW_TS_REWRITE | FLOW_COOKIE,
        ts_offset: 0xdead_beef,
        seq_delta: 0x0102_0304,
        ts_peer_offset: 0x0a0b_0c0d,
        win_scale_backend: 9,
        win_scale_client_view: 7,
        interface: 0,
        created_age_ns: 5_000_000_000,
        idle_ns: 1_000_000,
    }
}

#[test]
fn max_records_fill_one_mtu() {
    assert_eq!(MAX_RECORDS, 21);
    let full = encode(Kind::Flows, 1, 1, 0, 0, &[record(); MAX_RECORDS], &key());
    assert_eq!(full.len(), 40 + 21 * 64 + 32);
    // One more would not fit.
    const { assert!(HEADER_LEN + (MAX_RECORDS + 1) * RECORD_LEN + TAG_LEN > MAX_DATAGRAM_LEN) };
    assert!(full.len() <= MAX_DATAGRAM_LEN);
}

#[test]
fn the_layout_is_the_documented_one() {
    let d = encode(
        Kind::Dump,
        0x0102_0304_0506_0708,
        9,
        0xabcd,
        0x1122,
        &[record()],
        &key(),
    );
    assert_eq!(&d[0..4], b"KXS1");
    assert_eq!((d[4], d[5]), (2, 3));
    assert_eq!(&d[6..8], &[0, 1]);
    assert_eq!(&d[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(&d[16..24], &9u64.to_be_bytes());
    assert_eq!(&d[24..32], &0xabcdu64.to_be_bytes());
    assert_eq!(&d[32..40], &0x1122u64.to_be_bytes());
    let r = &d[40..104];
    // The packet's byte order: 198.18.0.100:40000 → 198.18.0.10:6443.
    assert_eq!(&r[0..4], &[198, 18, 0, 100]);
    assert_eq!(&r[4..8], &[198, 18, 0, 10]);
    assert_eq!(&r[8..10], &40000u16.to_be_bytes());
    assert_eq!(&r[10..12], &6443u16.to_be_bytes());
    assert_eq!(
        &r[12..16],
        &[
            PROTO_TCP,
            FLOW_ESTABLISHED,
            FLOW_TS_REWRITE | FLOW_COOKIE,
            0
        ]
    );
    assert_eq!(&r[16..20], &[198, 18, 0, 21]);
    assert_eq!(&r[20..24], &[198, 18, 0, 9]);
    assert_eq!(&r[26..28], &10001u16.to_be_bytes());
    assert_eq!(&r[28..32], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&r[32..40], &[2, 0, 0, 0, 0, 0x64, 9, 7]);
    assert_eq!(&r[40..48], &5_000_000_000u64.to_be_bytes());
    assert_eq!(&r[48..56], &1_000_000u64.to_be_bytes());
    assert_eq!(&r[56..60], &[1, 2, 3, 4]);
    assert_eq!(&r[60..64], &[0x0a, 0x0b, 0x0c, 0x0d]);
    assert_eq!(d.len(), 104 + 32);
}

#[test]
fn a_datagram_round_trips() {
    let records = [
        record(),
        SyncRecord {
            interface: 1,
            ..record()
        },
    ];
    let d = decode(&encode(Kind::Flows, 7, 42, 0, 0, &records, &key()), &key()).unwrap();
    assert_eq!(
        d,
        Datagram {
            kind: Kind::Flows,
            epoch: 7,
            seq: 42,
            nonce: 0,
            clock_ns: 0,
            records: records.to_vec()
        }
    );
    let hello = decode(&encode(Kind::Hello, 7, 43, 99, 0, &[], &key()), &key()).unwrap();
    assert_eq!(
        (hello.kind, hello.nonce, hello.records.len()),
        (Kind::Hello, 99, 0)
    );
    let end = decode(&encode(Kind::DumpEnd, 7, 44, 99, 0, &[], &key()), &key()).unwrap();
    assert!(end.kind.is_dump() && end.records.is_empty());
}

#[test]
fn another_key_fails_authentication() {
    let d = encode(Kind::Flows, 1, 1, 0, 0, &[record()], &key());
    let other = SyncKey::new(b"0123456789abcdef0123456789abcdeX");
    assert_eq!(decode(&d, &other), Err(WireError::BadTag));
}

#[test]
fn each_header_fault_is_named() {
    let good = encode(Kind::Flows, 1, 1, 0, 0, &[record()], &key());
    let with = |at: usize, byte: u8| {
        let mut d = good.clone();
        d[at] = byte;
        decode(&d, &key())
    };
    assert_eq!(
        decode(&good[..63], &key()),
        Err(WireError::TooShort { len: 63 })
    );
    assert_eq!(decode(&[], &key()), Err(WireError::TooShort { len: 0 }));
    assert_eq!(with(0, b'X'), Err(WireError::BadMagic));
    // Version 1 (56-byte records, no cookie translation) is refused.
    assert_eq!(with(4, 1), Err(WireError::BadVersion { version: 1 }));
    assert_eq!(with(4, 3), Err(WireError::BadVersion { version: 3 }));
    assert_eq!(with(5, 0), Err(WireError::BadKind { kind: 0 }));
    assert_eq!(with(5, 5), Err(WireError::BadKind { kind: 5 }));
    assert_eq!(
        with(7, 2),
        Err(WireError::CountMismatch {
            count: 2,
            len: good.len()
        })
    );
    // A count past MAX_RECORDS is refused even when the length matches.
    let mut big = good[..32].to_vec();
    big[6..8].copy_from_slice(&22u16.to_be_bytes());
    big.resize(40 + 22 * 64 + 32, 0);
    assert_eq!(
        decode(&big, &key()),
        Err(WireError::CountMismatch {
            count: 22,
            len: big.len()
        })
    );
    // Any change to a signed byte: the tag no longer matches.
    assert_eq!(with(8, 1), Err(WireError::BadTag));
    assert_eq!(with(40, 1), Err(WireError::BadTag));
}

#[test]
fn authentic_records_no_datapath_makes_are_refused() {
    let bad = |r: SyncRecord| {
        decode(
            &encode(Kind::Flows, 1, 1, 0, 0, &[record(), r], &key()),
            &key(),
        )
    };
    let mut r = record();
    r.client.protocol = 1;
    assert_eq!(
        bad(r),
        Err(WireError::BadProtocol {
            index: 1,
            protocol: 1
        })
    );
    assert_eq!(
        bad(SyncRecord {
            state: 0,
            ..record()
        }),
        Err(WireError::BadState {
            index: 1,
            state: 0,
            protocol: PROTO_TCP
        })
    );
    assert_eq!(
        bad(SyncRecord {
            state: FLOW_UDP,
            ..record()
        }),
        Err(WireError::BadState {
            index: 1,
            state: FLOW_UDP,
            protocol: PROTO_TCP
        })
    );
    let mut udp = record();
    udp.client.protocol = PROTO_UDP;
    assert_eq!(
        bad(udp),
        Err(WireError::BadState {
            index: 1,
            state: FLOW_ESTABLISHED,
            protocol: PROTO_UDP
        })
    );
    udp.state = FLOW_UDP;
    udp.client.src_port = 0;
    assert!(bad(udp).is_ok(), "a UDP client may send from port 0");
    let mut r = record();
    r.client.src_addr = 0;
    assert_eq!(
        bad(r),
        Err(WireError::ZeroField {
            index: 1,
            field: "src_addr"
        })
    );
    assert_eq!(
        bad(SyncRecord {
            snat_port: 0,
            ..record()
        }),
        Err(WireError::ZeroField {
            index: 1,
            field: "snat_port"
        })
    );
    assert_eq!(
        bad(SyncRecord {
            backend_addr: 0,
            ..record()
        }),
        Err(WireError::ZeroField {
            index: 1,
            field: "backend_addr"
        })
    );
    assert!(
        bad(SyncRecord {
            state: 0,
            ..record()
        })
        .unwrap_err()
        .is_bad_record()
    );
    // A Hello with records is made by hand: encode refuses to.
    let mut d = encode(Kind::Flows, 1, 1, 0, 0, &[record()], &key());
    d[5] = Kind::Hello as u8;
    d.truncate(HEADER_LEN + RECORD_LEN);
    let tag = hmac::sign(key().hmac(), &d);
    d.extend_from_slice(tag.as_ref());
    assert_eq!(
        decode(&d, &key()),
        Err(WireError::HelloWithRecords { count: 1 })
    );
}

#[test]
#[should_panic(expected = "do not fit one datagram")]
fn encode_refuses_more_than_one_datagram_holds() {
    encode(
        Kind::Flows,
        1,
        1,
        0,
        0,
        &[record(); MAX_RECORDS + 1],
        &key(),
    );
}

#[test]
fn ages_become_times_on_the_receivers_clock() {
    let flow = Flow {
        backend_addr: 1,
        snat_addr: 2,
        backend_port: 3,
        snat_port: 4,
        backend_id: 5,
        service_id: 6,
        client_mac: [1, 2, 3, 4, 5, 6],
        state: FLOW_ESTABLISHED,
        flags: FLOW_TS_REWRITE,
        ifindex: 7,
        ts_offset: 8,
        created_ns: 1_000,
        last_seen_ns: 9_000,
        seq_delta: 0x8000_0001,
        ts_peer_offset: 12_345,
        win_scale_backend: 14,
        win_scale_client_view: 7,
        _pad: [0; 6],
    };
    let client = FlowKey {
        _pad: [1, 2, 3],
        ..record().client
    };
    let r = SyncRecord::from_flow(&client, &flow, 2, 10_000);
    assert_eq!(
        (r.created_age_ns, r.idle_ns, r.interface),
        (9_000, 1_000, 2)
    );
    assert_eq!(r.client._pad, [0; 3], "padding is not sent");
    assert_eq!(
        (
            r.seq_delta,
            r.ts_peer_offset,
            r.win_scale_backend,
            r.win_scale_client_view
        ),
        (0x8000_0001, 12_345, 14, 7),
        "a cookie flow's translation travels"
    );
    // The receiver's clock is far ahead: the same ages.
    let (key, got) = r.to_flow(1_000_000, 50, 60, 3);
    assert_eq!(
        key,
        FlowKey {
            _pad: [0; 3],
            ..client
        }
    );
    assert_eq!(
        got,
        Flow {
            backend_id: 50,
            service_id: 60,
            ifindex: 3,
            created_ns: 991_000,
            last_seen_ns: 999_000,
            ..flow
        }
    );
    // Its clock is behind the ages (it booted recently): 0, not a wrap.
    let (_, got) = r.to_flow(5_000, 50, 60, 3);
    assert_eq!((got.created_ns, got.last_seen_ns), (0, 4_000));
    // A flow time after the sender's now (the coarse clock): age 0.
    let r = SyncRecord::from_flow(
        &client,
        &Flow {
            last_seen_ns: 20_000,
            ..flow
        },
        0,
        10_000,
    );
    assert_eq!(r.idle_ns, 0);
    assert_eq!(
        r.to_flow(77, 0, 0, 0).1.last_seen_ns,
        77,
        "never in the future"
    );
}

fn any_record() -> impl Strategy<Value = SyncRecord> {
    let tcp = (Just(PROTO_TCP), 1u8..=3);
    let udp = (Just(PROTO_UDP), Just(FLOW_UDP));
    (
        (1u32.., 1u32.., any::<u16>(), 1u16.., prop_oneof![tcp, udp]),
        (1u32.., 1u16.., 1u32.., 1u16.., any::<[u8; 6]>()),
        (
            any::<u8>(),
            any::<u32>(),
            any::<u8>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (any::<u32>(), any::<u32>(), any::<u8>(), any::<u8>()),
    )
        .prop_map(|(c, f, t, k)| SyncRecord {
            client: FlowKey {
                src_addr: c.0,
                dst_addr: c.1,
                src_port: c.2,
                dst_port: c.3,
                protocol: c.4.0,
                _pad: [0; 3],
            },
            state: c.4.1,
            backend_addr: f.0,
            backend_port: f.1,
            snat_addr: f.2,
            snat_port: f.3,
            client_mac: f.4,
            flags: t.0,
            ts_offset: t.1,
            interface: t.2,
            created_age_ns: t.3,
            idle_ns: t.4,
            seq_delta: k.0,
            ts_peer_offset: k.1,
            win_scale_backend: k.2,
            win_scale_client_view: k.3,
        })
}

fn any_datagram() -> impl Strategy<Value = (Kind, u64, u64, u64, Vec<SyncRecord>)> {
    let kind = prop_oneof![
        Just(Kind::Flows),
        Just(Kind::Hello),
        Just(Kind::Dump),
        Just(Kind::DumpEnd)
    ];
    (
        kind,
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        prop::collection::vec(any_record(), 0..=MAX_RECORDS),
    )
        .prop_map(|(kind, epoch, seq, nonce, mut records)| {
            if kind == Kind::Hello {
                records.clear();
            }
            (kind, epoch, seq, nonce, records)
        })
}

proptest! {
    #[test]
    fn valid_datagrams_round_trip((kind, epoch, seq, nonce, records) in any_datagram()) {
        let bytes = encode(kind, epoch, seq, nonce, 0, &records, &key());
        prop_assert!(bytes.len() <= MAX_DATAGRAM_LEN);
        let d = decode(&bytes, &key()).unwrap();
        prop_assert_eq!(d, Datagram { kind, epoch, seq, nonce, clock_ns: 0, records });
    }

    #[test]
    fn random_bytes_never_decode(bytes in prop::collection::vec(any::<u8>(), 0..1600)) {
        prop_assert!(decode(&bytes, &key()).is_err());
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_decode(
        count in 0u16..=30,
        kind in 0u8..=5,
        body in prop::collection::vec(any::<u8>(), 0..1600),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[VERSION, kind]);
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&body);
        prop_assert!(decode(&bytes, &key()).is_err());
    }

    #[test]
    fn truncated_datagrams_never_decode(
        (kind, epoch, seq, nonce, records) in any_datagram(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = encode(kind, epoch, seq, nonce, 0, &records, &key());
        let cut = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..cut], &key()).is_err());
    }

    #[test]
    fn flipped_bits_never_decode(
        (kind, epoch, seq, nonce, records) in any_datagram(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut bytes = encode(kind, epoch, seq, nonce, 0, &records, &key());
        let at = at.index(bytes.len());
        bytes[at] ^= 1 << bit;
        prop_assert!(decode(&bytes, &key()).is_err());
    }
}
