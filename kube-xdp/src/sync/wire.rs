//! The flow-sync datagram: a header, up to [`MAX_RECORDS`] flow records
//! and an HMAC-SHA256 tag, in one UDP datagram that fits a 1500-byte MTU
//! unfragmented.
//!
//! ```text
//! header (40 bytes; numbers big-endian)
//!   0  magic "KXS1"          4  version (2)      5  kind
//!   6  count (records)       8  epoch (u64)     16  seq (u64)    24  nonce (u64)
//!  32  clock_ns (u64): the sender's timestamp clock when it sent
//! record (64 bytes; addresses and ports in the packet's byte order, as in
//! the flow maps; other numbers big-endian)
//!   0  client src_addr       4  client dst_addr  8  src_port    10  dst_port
//!  12  protocol             13  state           14  flags       15  interface
//!  16  backend_addr         20  snat_addr       24  backend_port 26 snat_port
//!  28  ts_offset            32  client_mac (6)  38  win_scale_backend
//!  39  win_scale_client_view
//!  40  created_age_ns (u64) 48  idle_ns (u64)
//!  56  seq_delta            60  ts_peer_offset
//! tag (32 bytes): HMAC-SHA256 over header and records
//! ```
//!
//! Version 2 added the translation of a flow opened by a SYN cookie
//! (`FLOW_COOKIE`: `seq_delta`, `ts_peer_offset`, the window scales; 0 in
//! any other flow), so that the peer translates its sequence numbers after
//! a failover. A box of version 1 and one of version 2 refuse each other's
//! datagrams (`bad_version`): upgrade both boxes of a pair together.
//!
//! Times travel as ages (the sender's now minus the flow's time), since
//! the two boxes' monotonic clocks are unrelated; the receiver subtracts
//! them from its own now.

use kube_xdp_common::maps::{
    FLOW_CLOSING, FLOW_ESTABLISHED, FLOW_SYN_SENT, FLOW_UDP, Flow, FlowKey, PROTO_TCP, PROTO_UDP,
};
use ring::hmac;
use thiserror::Error;

use super::SyncKey;

/// The first four bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"KXS1";
/// The format this module reads and writes.
pub const VERSION: u8 = 2;
/// Bytes before the records.
pub const HEADER_LEN: usize = 40;
/// Bytes per record.
pub const RECORD_LEN: usize = 64;
/// Bytes of the HMAC-SHA256 tag after the records.
pub const TAG_LEN: usize = 32;
/// The largest datagram sent: a 1500-byte MTU less the IPv4 (20) and UDP
/// (8) headers.
pub const MAX_DATAGRAM_LEN: usize = 1472;
/// The most records one datagram carries (21).
pub const MAX_RECORDS: usize = (MAX_DATAGRAM_LEN - HEADER_LEN - TAG_LEN) / RECORD_LEN;
/// `SyncRecord::interface` when the sender does not know the flow's
/// interface.
pub const INTERFACE_UNKNOWN: u8 = 255;

/// What a datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// Flows pushed as they open and change state.
    Flows = 1,
    /// A box that starts asks its peer for the whole table (no records).
    Hello = 2,
    /// Part of the whole table, in answer to a Hello.
    Dump = 3,
    /// The last part of a dump (may carry records).
    DumpEnd = 4,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Flows,
            2 => Kind::Hello,
            3 => Kind::Dump,
            4 => Kind::DumpEnd,
            _ => return None,
        })
    }

    /// A Dump or a DumpEnd: an answer to a Hello.
    pub fn is_dump(self) -> bool {
        matches!(self, Kind::Dump | Kind::DumpEnd)
    }
}

/// One flow as the peer sends it: the maps' fields, with the times turned
/// into ages and the interface into its position in `[daemon]
/// interfaces` (ifindexes differ between boxes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncRecord {
    /// The flow's forward key (the client's 5-tuple, packet byte order).
    pub client: FlowKey,
    /// Network byte order, as in [`Flow`].
    pub backend_addr: u32,
    /// Network byte order.
    pub backend_port: u16,
    /// Network byte order.
    pub snat_addr: u32,
    /// Network byte order.
    pub snat_port: u16,
    /// Where the client's frames come from.
    pub client_mac: [u8; 6],
    /// `FLOW_SYN_SENT`, `FLOW_ESTABLISHED`, `FLOW_CLOSING` or `FLOW_UDP`.
    pub state: u8,
    /// `FLOW_TS_REWRITE`, `FLOW_FIN_*`, `FLOW_RST`, `FLOW_REPLIED`,
    /// `FLOW_COOKIE`, `FLOW_COOKIE_WAIT`.
    pub flags: u8,
    /// The TCP-timestamp offset (see [`Flow::ts_offset`]).
    pub ts_offset: u32,
    /// A cookie flow's translation, as in [`Flow`]: the sequence-number
    /// delta, the backend's TSval offset, the window scales.
    pub seq_delta: u32,
    pub ts_peer_offset: u32,
    pub win_scale_backend: u8,
    pub win_scale_client_view: u8,
    /// The flow's interface's position in the sender's `[daemon]
    /// interfaces`; [`INTERFACE_UNKNOWN`] when it has none there.
    pub interface: u8,
    /// The sender's now minus the flow's `created_ns`.
    pub created_age_ns: u64,
    /// The sender's now minus the flow's `last_seen_ns`.
    pub idle_ns: u64,
}

impl SyncRecord {
    /// The record of the flow `client` → `flow` at the sender's `now`
    /// (`CLOCK_MONOTONIC` ns, the maps' clock). A time after `now` (the
    /// maps' coarse clock against a precise now) is an age of 0.
    pub fn from_flow(client: &FlowKey, flow: &Flow, interface: u8, now: u64) -> SyncRecord {
        SyncRecord {
            client: FlowKey {
                _pad: [0; 3],
                ..*client
            },
            backend_addr: flow.backend_addr,
            backend_port: flow.backend_port,
            snat_addr: flow.snat_addr,
            snat_port: flow.snat_port,
            client_mac: flow.client_mac,
            state: flow.state,
            flags: flow.flags,
            ts_offset: flow.ts_offset,
            seq_delta: flow.seq_delta,
            ts_peer_offset: flow.ts_peer_offset,
            win_scale_backend: flow.win_scale_backend,
            win_scale_client_view: flow.win_scale_client_view,
            interface,
            created_age_ns: now.saturating_sub(flow.created_ns),
            idle_ns: now.saturating_sub(flow.last_seen_ns),
        }
    }

    /// The forward entry to install at the receiver's `now`, with the
    /// receiver's own ids for the backend and service and the ifindex of
    /// the interface the record names. Times are `now` less the ages, at
    /// least 0 and never after `now`.
    pub fn to_flow(
        &self,
        now: u64,
        backend_id: u16,
        service_id: u16,
        ifindex: u32,
    ) -> (FlowKey, Flow) {
        let flow = Flow {
            backend_addr: self.backend_addr,
            snat_addr: self.snat_addr,
            backend_port: self.backend_port,
            snat_port: self.snat_port,
            backend_id,
            service_id,
            client_mac: self.client_mac,
            state: self.state,
            flags: self.flags,
            ifindex,
            ts_offset: self.ts_offset,
            created_ns: now.saturating_sub(self.created_age_ns),
            last_seen_ns: now.saturating_sub(self.idle_ns),
            seq_delta: self.seq_delta,
            ts_peer_offset: self.ts_peer_offset,
            win_scale_backend: self.win_scale_backend,
            win_scale_client_view: self.win_scale_client_view,
            _pad: [0; 6],
        };
        (self.client, flow)
    }
}

/// A datagram that passed [`decode`]: authentic and well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// What it is.
    pub kind: Kind,
    /// The sender's epoch: its start time, ns since the Unix epoch.
    pub epoch: u64,
    /// The sender's datagram counter within its epoch, from 1.
    pub seq: u64,
    /// Hello: a random nonce; Dump/DumpEnd: the nonce of the Hello
    /// answered; Flows: 0.
    pub nonce: u64,
    /// The sender's clock of rewritten TCP timestamps when it sent
    /// (`CLOCK_MONOTONIC` plus `Settings::ts_clock_offset_ns`, ns): the
    /// receiver moves its own up to it (see `Settings::ts_clock_offset_ns`).
    pub clock_ns: u64,
    /// The flows it carries.
    pub records: Vec<SyncRecord>,
}

/// Why a datagram is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Shorter than a header and a tag.
    #[error("{len} bytes, shorter than a header and a tag")]
    TooShort {
        /// The datagram's length.
        len: usize,
    },
    /// Not a kube-xdp sync datagram.
    #[error("not a kube-xdp sync datagram (bad magic)")]
    BadMagic,
    /// A format version this build does not read.
    #[error("format version {version}; this kube-xdp reads {VERSION}")]
    BadVersion {
        /// The version byte.
        version: u8,
    },
    /// An unknown kind.
    #[error("unknown kind {kind}")]
    BadKind {
        /// The kind byte.
        kind: u8,
    },
    /// The length is not that of `count` records, or `count` is more than
    /// [`MAX_RECORDS`].
    #[error("{len} bytes do not hold a header, {count} records and a tag")]
    CountMismatch {
        /// The header's record count.
        count: u16,
        /// The datagram's length.
        len: usize,
    },
    /// The tag is not the HMAC of the contents under our key: not from
    /// the peer, or altered.
    #[error("authentication failed (not sent with this pair's sync_key_file, or altered)")]
    BadTag,
    /// An authentic Hello that carries records.
    #[error("a Hello with {count} records")]
    HelloWithRecords {
        /// The header's record count.
        count: u16,
    },
    /// A record whose protocol is neither TCP nor UDP.
    #[error("record {index}: protocol {protocol} is neither TCP nor UDP")]
    BadProtocol {
        /// The record's position.
        index: usize,
        /// Its protocol byte.
        protocol: u8,
    },
    /// A record whose state is no flow state, or not one of its protocol.
    #[error("record {index}: state {state} is not a flow state of protocol {protocol}")]
    BadState {
        /// The record's position.
        index: usize,
        /// Its state byte.
        state: u8,
        /// Its protocol byte.
        protocol: u8,
    },
    /// A record with a zero address or port where a flow has none.
    #[error("record {index}: {field} is 0")]
    ZeroField {
        /// The record's position.
        index: usize,
        /// The field's name.
        field: &'static str,
    },
}

impl WireError {
    /// An authentic datagram with a record no datapath makes (a bug or a
    /// version skew on the peer, not an attack).
    pub fn is_bad_record(&self) -> bool {
        matches!(
            self,
            WireError::HelloWithRecords { .. }
                | WireError::BadProtocol { .. }
                | WireError::BadState { .. }
                | WireError::ZeroField { .. }
        )
    }
}

/// The datagram of `records`, tagged with `key`.
///
/// # Panics
///
/// With more than [`MAX_RECORDS`] records, or records in a Hello: the
/// caller batches (see [`super::batch::Batcher`]).
pub fn encode(
    kind: Kind,
    epoch: u64,
    seq: u64,
    nonce: u64,
    clock_ns: u64,
    records: &[SyncRecord],
    key: &SyncKey,
) -> Vec<u8> {
    assert!(
        records.len() <= MAX_RECORDS,
        "{} records do not fit one datagram ({MAX_RECORDS})",
        records.len()
    );
    assert!(
        kind != Kind::Hello || records.is_empty(),
        "a Hello carries no records"
    );
    let mut out = Vec::with_capacity(HEADER_LEN + records.len() * RECORD_LEN + TAG_LEN);
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    // At most MAX_RECORDS, asserted above.
    out.extend_from_slice(&(records.len() as u16).to_be_bytes());
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&nonce.to_be_bytes());
    out.extend_from_slice(&clock_ns.to_be_bytes());
    for r in records {
        put_record(&mut out, r);
    }
    let tag = hmac::sign(key.hmac(), &out);
    out.extend_from_slice(tag.as_ref());
    out
}

/// `r` in its 64 bytes.
fn put_record(out: &mut Vec<u8>, r: &SyncRecord) {
    let start = out.len();
    // Addresses and ports are held in the packet's byte order: their
    // in-memory bytes are the wire's.
    out.extend_from_slice(&r.client.src_addr.to_ne_bytes());
    out.extend_from_slice(&r.client.dst_addr.to_ne_bytes());
    out.extend_from_slice(&r.client.src_port.to_ne_bytes());
    out.extend_from_slice(&r.client.dst_port.to_ne_bytes());
    out.extend_from_slice(&[r.client.protocol, r.state, r.flags, r.interface]);
    out.extend_from_slice(&r.backend_addr.to_ne_bytes());
    out.extend_from_slice(&r.snat_addr.to_ne_bytes());
    out.extend_from_slice(&r.backend_port.to_ne_bytes());
    out.extend_from_slice(&r.snat_port.to_ne_bytes());
    out.extend_from_slice(&r.ts_offset.to_be_bytes());
    out.extend_from_slice(&r.client_mac);
    out.extend_from_slice(&[r.win_scale_backend, r.win_scale_client_view]);
    out.extend_from_slice(&r.created_age_ns.to_be_bytes());
    out.extend_from_slice(&r.idle_ns.to_be_bytes());
    out.extend_from_slice(&r.seq_delta.to_be_bytes());
    out.extend_from_slice(&r.ts_peer_offset.to_be_bytes());
    debug_assert_eq!(out.len() - start, RECORD_LEN);
}

/// Reads, authenticates and checks a datagram. Cheap checks (length,
/// magic, version, kind, count) come first so that garbage costs no HMAC;
/// records are judged only once the tag is verified. Never panics.
///
/// # Errors
///
/// [`WireError`] saying what is wrong.
pub fn decode(bytes: &[u8], key: &SyncKey) -> Result<Datagram, WireError> {
    let len = bytes.len();
    let Some((header, rest)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::TooShort { len });
    };
    if rest.len() < TAG_LEN {
        return Err(WireError::TooShort { len });
    }
    if header[0..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(WireError::BadVersion { version: header[4] });
    }
    let kind = Kind::from_u8(header[5]).ok_or(WireError::BadKind { kind: header[5] })?;
    let count = u16::from_be_bytes([header[6], header[7]]);
    let body_len = usize::from(count) * RECORD_LEN;
    if usize::from(count) > MAX_RECORDS || rest.len() != body_len + TAG_LEN {
        return Err(WireError::CountMismatch { count, len });
    }
    let (signed, tag) = bytes.split_at(HEADER_LEN + body_len);
    hmac::verify(key.hmac(), signed, tag).map_err(|_| WireError::BadTag)?;
    if kind == Kind::Hello && count > 0 {
        return Err(WireError::HelloWithRecords { count });
    }
    let records = rest[..body_len]
        .chunks_exact(RECORD_LEN)
        .enumerate()
        .map(|(index, chunk)| record(index, chunk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Datagram {
        kind,
        epoch: be_u64(header, 8),
        seq: be_u64(header, 16),
        nonce: be_u64(header, 24),
        clock_ns: be_u64(header, 32),
        records,
    })
}

/// The `N` bytes at `at` (`b` is long enough: the callers' offsets are
/// within a header or a record).
fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes_at(b, at))
}

/// Record `index` out of its 64 bytes, checked.
fn record(index: usize, b: &[u8]) -> Result<SyncRecord, WireError> {
    let addr = |at| u32::from_ne_bytes(bytes_at(b, at));
    let port = |at| u16::from_ne_bytes(bytes_at(b, at));
    let r = SyncRecord {
        client: FlowKey {
            src_addr: addr(0),
            dst_addr: addr(4),
            src_port: port(8),
            dst_port: port(10),
            protocol: b[12],
            _pad: [0; 3],
        },
        state: b[13],
        flags: b[14],
        interface: b[15],
        backend_addr: addr(16),
        snat_addr: addr(20),
        backend_port: port(24),
        snat_port: port(26),
        ts_offset: u32::from_be_bytes(bytes_at(b, 28)),
        client_mac: bytes_at(b, 32),
        win_scale_backend: b[38],
        win_scale_client_view: b[39],
        created_age_ns: be_u64(b, 40),
        idle_ns: be_u64(b, 48),
        seq_delta: u32::from_be_bytes(bytes_at(b, 56)),
        ts_peer_offset: u32::from_be_bytes(bytes_at(b, 60)),
    };
    let protocol = r.client.protocol;
    let state_fits = match protocol {
        PROTO_TCP => matches!(r.state, FLOW_SYN_SENT | FLOW_ESTABLISHED | FLOW_CLOSING),
        PROTO_UDP => r.state == FLOW_UDP,
        _ => return Err(WireError::BadProtocol { index, protocol }),
    };
    if !state_fits {
        return Err(WireError::BadState {
            index,
            state: r.state,
            protocol,
        });
    }
    // A client may send from port 0 (UDP allows it); nothing else in a
    // flow the datapath made is 0.
    let zero = [
        ("src_addr", r.client.src_addr == 0),
        ("dst_addr", r.client.dst_addr == 0),
        ("dst_port", r.client.dst_port == 0),
        ("backend_addr", r.backend_addr == 0),
        ("backend_port", r.backend_port == 0),
        ("snat_addr", r.snat_addr == 0),
        ("snat_port", r.snat_port == 0),
    ];
    if let Some((field, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
        return Err(WireError::ZeroField { index, field });
    }
    Ok(r)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
