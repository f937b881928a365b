//! A plain-Rust reference model of the load balancer's forwarding decision,
//! for the differential test (`tests/differential.rs`).
//!
//! It is written from the behaviour specification alone, never from the
//! eBPF program, so that the two cannot agree by construction. It shares
//! with the datapath only what the specification names as shared: the
//! flow hash ([`flow_hash`](kube_xdp_common::hash::flow_hash)) and the
//! Maglev table ([`build_table`](kube_xdp::maglev::build_table)).
//! Checksums it computes from scratch with the test crate's
//! [`checksum`](crate::checksum) (the program only ever updates a sum it
//! found).
//!
//! The model reads raw frames (so that mutated, malformed frames need no
//! special case), predicts the verdict, the two counters the packet bumps
//! and the exact frame out, and compares them with what the program did.
//! The few things the specification leaves to the program — the SNAT port
//! and the TCP timestamp offset of a new flow, and some fields of a RST
//! answer — are taken from the program's output after checking what can be
//! checked about them (the SNAT port's range and uniqueness).
//!
//! One file per concern: the types here; `state.rs` the services, backends,
//! Maglev tables and flow table; `parse.rs` reading a frame; `decide.rs`
//! what it should get; `expect.rs` the frames expected out; `step.rs` the
//! comparison with the program and the flow table's update; `report.rs`
//! descriptions for failure reports.

mod decide;
mod expect;
mod parse;
mod report;
mod state;
mod step;

pub use report::{describe, flags_name, hex, verdict_name};

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
    ops::{Range, RangeInclusive},
    rc::Rc,
};

use kube_xdp_common::stats::Counter;

use report::proto_name;

/// Slots of every Maglev table (as `Harness::rebuild` builds them).
pub const MAGLEV_SIZE: u32 = 65_537;
const ETH: usize = 14;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_ICMP: u8 = 1;

/// A 5-tuple as it stands in a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tuple {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
}

impl std::fmt::Display for Tuple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{} -> {}:{} {}",
            Ipv4Addr::from(self.src),
            self.sport,
            Ipv4Addr::from(self.dst),
            self.dport,
            proto_name(self.proto)
        )
    }
}

/// A service as the test installs it (`Harness::service`): the three
/// fixture backends, ids `id * 10 + 0..3`.
#[derive(Clone, Debug)]
pub struct ServiceConf {
    pub id: u32,
    pub vip: [u8; 4],
    pub ports: RangeInclusive<u16>,
    pub protocol: u8,
    /// `None`: the client's destination port.
    pub backend_port: Option<u16>,
    pub reset_on_down: bool,
}

#[derive(Clone, Copy, Debug)]
struct BackendConf {
    service: u32,
    addr: [u8; 4],
    port: Option<u16>,
    up: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowState {
    SynSent,
    Established,
    Closing,
    Udp,
}

/// A flow, keyed by the client's 5-tuple.
#[derive(Clone, Debug)]
pub struct ModelFlow {
    pub service: u32,
    pub backend_id: u32,
    pub backend_addr: [u8; 4],
    pub backend_port: u16,
    pub snat_addr: [u8; 4],
    pub snat_port: u16,
    pub proto: u8,
    pub client_mac: [u8; 6],
    pub state: FlowState,
    /// Added to the client's TSval (when its SYN carried the option).
    pub ts_offset: Option<u32>,
}

impl ModelFlow {
    /// The 5-tuple of the backend's replies.
    pub fn backend_key(&self) -> Tuple {
        Tuple {
            src: self.backend_addr,
            dst: self.snat_addr,
            sport: self.backend_port,
            dport: self.snat_port,
            proto: self.proto,
        }
    }
}

/// What the program did with one packet.
pub struct Observed<'a> {
    pub verdict: u32,
    pub out: &'a [u8],
    /// How much each global counter grew.
    pub counters: &'a [(Counter, u64)],
}

pub struct Model {
    services: Vec<ServiceConf>,
    backends: BTreeMap<u32, BackendConf>,
    tables: HashMap<(u32, u32), Rc<Vec<u32>>>,
    flows: BTreeMap<Tuple, ModelFlow>,
    reverse: BTreeMap<Tuple, Tuple>,
    snat_addr: [u8; 4],
    snat_ports: RangeInclusive<u16>,
}

struct Decision {
    verdict: u32,
    reason: Counter,
    out: Out,
    effect: Effect,
    note: String,
}

enum Out {
    Unchanged,
    Frame(Expect),
}

/// An expected frame: `bytes`, except the `holes` (left to the program and
/// taken from its output), with the checksums recomputed after filling them.
struct Expect {
    bytes: Vec<u8>,
    holes: Vec<Range<usize>>,
    ip_sum: bool,
    l4_sum: L4Sum,
    /// The input's checksums were right (and its layout is one etherparse
    /// reads): the output must parse with `Seen::parse`, which checks every
    /// checksum from scratch.
    checksums_valid: bool,
}

#[derive(Clone, Copy)]
enum L4Sum {
    /// Recompute the TCP checksum over `len` bytes from `at`.
    Tcp { at: usize, len: usize },
    /// Recompute the UDP checksum over `len` (its length field) from `at`.
    Udp { at: usize, len: usize },
    /// As in `bytes` (a UDP checksum of 0, or a hole).
    Keep,
}

enum Effect {
    None,
    /// A client packet of a live flow went to its backend.
    ClientSegment {
        client: Tuple,
        closing: bool,
        establish: bool,
    },
    Closing(Tuple),
    NewFlow {
        client: Tuple,
        flow: ModelFlow,
        port_at: usize,
        /// Where the rewritten TSval is, and the client's TSval.
        ts: Option<(usize, u32)>,
    },
}

struct Parsed {
    ttl: u8,
    src: [u8; 4],
    dst: [u8; 4],
    /// Transport offset in the frame.
    t: usize,
    /// IP payload length (total length - IHL * 4).
    plen: usize,
    ip_sum_ok: bool,
    l4: L4,
}

enum L4 {
    Tcp(Tcp),
    Udp(Udp),
}

struct Tcp {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    doff: usize,
    /// Frame offset of the TSval of a timestamp option.
    ts_at: Option<usize>,
    sum_ok: bool,
}

struct Udp {
    sport: u16,
    dport: u16,
    ulen: usize,
    sum: u16,
    sum_ok: bool,
}

/// A rewrite of a packet being forwarded (either way).
struct Rewrite {
    eth_dst: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    /// `None`: chosen by the program (a new flow's SNAT port).
    sport: Option<u16>,
    dport: u16,
    ts: TsEdit,
}

enum TsEdit {
    None,
    /// Client to backend: TSval + offset.
    AddVal(u32),
    /// New flow: TSval + an offset the program chooses.
    ChooseVal,
    /// Backend to client (with ACK): TSecr - offset.
    SubEcr(u32),
}
