//! A plain-Rust reference model of the load balancer's forwarding decision,
//! for the differential test (`tests/differential.rs`).
//!
//! It is written from the behaviour specification alone, never from the
//! eBPF program, so that the two cannot agree by construction. It shares
//! with the datapath only what the specification names as shared: the
//! flow hash ([`flow_hash`]) and the Maglev table ([`build_table`]).
//! Checksums it computes from scratch with the test crate's [`checksum`]
//! (the program only ever updates a sum it found).
//!
//! The model reads raw frames (so that mutated, malformed frames need no
//! special case), predicts the verdict, the two counters the packet bumps
//! and the exact frame out, and compares them with what the program did.
//! The few things the specification leaves to the program — the SNAT port
//! and the TCP timestamp offset of a new flow, and some fields of a RST
//! answer — are taken from the program's output after checking what can be
//! checked about them (the SNAT port's range and uniqueness).

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::Ipv4Addr,
    ops::{Range, RangeInclusive},
    rc::Rc,
};

use kube_xdp::maglev::{MaglevBackend, build_table};
use kube_xdp_common::{
    hash::flow_hash,
    maps::{PROTO_TCP, PROTO_UDP},
    stats::Counter,
};

use crate::{
    checksum,
    harness::{XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX},
    packet::{ACK, BACKEND_IPS, FIN, PSH, RST, SYN, Seen, backend_mac},
};

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

// ---- what a packet should do ----

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

// ---- parsing (from the specification) ----

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

impl Parsed {
    fn sport(&self) -> u16 {
        match &self.l4 {
            L4::Tcp(t) => t.sport,
            L4::Udp(u) => u.sport,
        }
    }
    fn dport(&self) -> u16 {
        match &self.l4 {
            L4::Tcp(t) => t.dport,
            L4::Udp(u) => u.dport,
        }
    }
    fn proto(&self) -> u8 {
        match &self.l4 {
            L4::Tcp(_) => PROTO_TCP,
            L4::Udp(_) => PROTO_UDP,
        }
    }
    fn tuple(&self) -> Tuple {
        Tuple {
            src: self.src,
            dst: self.dst,
            sport: self.sport(),
            dport: self.dport(),
            proto: self.proto(),
        }
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn addr(b: &[u8], at: usize) -> [u8; 4] {
    b[at..at + 4].try_into().unwrap()
}

/// Where a TCP timestamp option's TSval is, walking the options
/// (`opts` = the bytes between the fixed header and the data offset).
fn find_timestamp(opts: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return None,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                if len < 2 || i + len > opts.len() {
                    return None;
                }
                if kind == 8 && len == 10 {
                    return Some(i + 2);
                }
                i += len;
            }
        }
    }
    None
}

/// The checksum a TCP segment or UDP datagram of `len` bytes at `at`
/// should carry, over the frame's IPv4 pseudo-header.
fn l4_checksum(frame: &[u8], at: usize, len: usize, proto: u8) -> u16 {
    let (src, dst) = checksum::addresses(frame);
    checksum::transport(src, dst, proto, &frame[at..at + len])
}

/// True if the checksum in the frame verifies.
fn l4_checksum_ok(frame: &[u8], at: usize, len: usize, proto: u8) -> bool {
    let (src, dst) = checksum::addresses(frame);
    checksum::transport_ok(src, dst, proto, &frame[at..at + len])
}

pub fn verdict_name(v: u32) -> &'static str {
    match v {
        XDP_ABORTED => "ABORTED",
        XDP_DROP => "DROP",
        XDP_PASS => "PASS",
        XDP_TX => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}

fn verdict_counter(v: u32) -> Counter {
    match v {
        XDP_ABORTED => Counter::VerdictAborted,
        XDP_DROP => Counter::VerdictDrop,
        XDP_PASS => Counter::VerdictPass,
        XDP_TX => Counter::VerdictTx,
        _ => Counter::VerdictRedirect,
    }
}

fn proto_name(p: u8) -> String {
    match p {
        PROTO_TCP => "TCP".into(),
        PROTO_UDP => "UDP".into(),
        PROTO_ICMP => "ICMP".into(),
        p => format!("proto {p}"),
    }
}

pub fn flags_name(flags: u8) -> String {
    let names = [
        (SYN, "SYN"),
        (ACK, "ACK"),
        (PSH, "PSH"),
        (FIN, "FIN"),
        (RST, "RST"),
    ];
    let set: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "none".into()
    } else {
        set.join("|")
    }
}

/// A one-line summary of a frame, for failure reports.
pub fn describe(f: &[u8]) -> String {
    if f.len() < ETH {
        return format!("runt frame of {} bytes", f.len());
    }
    let ethertype = be16(f, 12);
    let macs = format!("{:02x?} -> {:02x?}", &f[6..12], &f[0..6]);
    if ethertype != ETHERTYPE_IPV4 {
        return format!("{macs} ethertype {ethertype:#06x}, {} bytes", f.len());
    }
    if f.len() < ETH + 20 {
        return format!("{macs} IPv4 cut at {} bytes", f.len());
    }
    let ihl = usize::from(f[ETH] & 0xf) * 4;
    let mut s = format!(
        "{macs} IPv4 vihl {:#04x} len {} ttl {} id {:#06x} {} -> {} {}",
        f[ETH],
        be16(f, ETH + 2),
        f[ETH + 8],
        be16(f, ETH + 4),
        Ipv4Addr::from(addr(f, ETH + 12)),
        Ipv4Addr::from(addr(f, ETH + 16)),
        proto_name(f[ETH + 9]),
    );
    let t = ETH + ihl;
    if ihl >= 20 && f.len() >= t + 8 {
        let _ = write!(s, " {} -> {}", be16(f, t), be16(f, t + 2));
        if f[ETH + 9] == PROTO_TCP && f.len() >= t + 20 {
            let doff = usize::from(f[t + 12] >> 4) * 4;
            let _ = write!(
                s,
                " [{}] seq {} ack {} doff {}",
                flags_name(f[t + 13]),
                be32(f, t + 4),
                be32(f, t + 8),
                doff
            );
            if doff > 20
                && f.len() >= t + doff
                && let Some(at) = find_timestamp(&f[t + 20..t + doff])
            {
                let at = t + 20 + at;
                let _ = write!(s, " ts ({}, {})", be32(f, at), be32(f, at + 4));
            }
        } else if f[ETH + 9] == PROTO_UDP {
            let _ = write!(s, " ulen {} sum {:#06x}", be16(f, t + 4), be16(f, t + 6));
        }
    }
    let _ = write!(s, ", {} bytes", f.len());
    s
}

/// Names the field at byte `i` of a frame whose transport header starts at
/// `t`, for failure reports.
fn field_at(f: &[u8], i: usize) -> String {
    let name = match i {
        0..6 => "eth dst",
        6..12 => "eth src",
        12..14 => "ethertype",
        14 => "ip version/ihl",
        15 => "ip tos",
        16..18 => "ip total length",
        18..20 => "ip id",
        20..22 => "ip flags/fragment",
        22 => "ip ttl",
        23 => "ip protocol",
        24..26 => "ip checksum",
        26..30 => "ip src",
        30..34 => "ip dst",
        _ => "",
    };
    if !name.is_empty() || f.len() < ETH + 20 {
        return name.to_string();
    }
    let t = ETH + usize::from(f[ETH] & 0xf) * 4;
    if i < t {
        return "ip options".into();
    }
    let o = i - t;
    let tcp = f[ETH + 9] == PROTO_TCP;
    let name = match (tcp, o) {
        (_, 0..2) => "sport",
        (_, 2..4) => "dport",
        (true, 4..8) => "tcp seq",
        (true, 8..12) => "tcp ack",
        (true, 12) => "tcp data offset",
        (true, 13) => "tcp flags",
        (true, 14..16) => "tcp window",
        (true, 16..18) => "tcp checksum",
        (true, 18..20) => "tcp urgent",
        (true, _) => {
            let doff = f.get(t + 12).map_or(20, |b| usize::from(b >> 4) * 4);
            if o < doff { "tcp options" } else { "payload" }
        }
        (false, 4..6) => "udp length",
        (false, 6..8) => "udp checksum",
        (false, _) => "payload",
    };
    name.to_string()
}

/// Compares two frames byte by byte; describes the differences.
fn frame_diff(expected: &[u8], actual: &[u8]) -> Option<String> {
    if expected == actual {
        return None;
    }
    let mut s = String::new();
    if expected.len() != actual.len() {
        let _ = writeln!(
            s,
            "    length: expected {} got {}",
            expected.len(),
            actual.len()
        );
    }
    let mut last = String::new();
    for i in 0..expected.len().min(actual.len()) {
        if expected[i] != actual[i] {
            let field = field_at(expected, i);
            if field != last {
                let _ = writeln!(s, "    differs in {field} (from byte {i})");
                last = field;
            }
        }
    }
    let _ = writeln!(s, "    expected {}", describe(expected));
    let _ = writeln!(s, "    actual   {}", describe(actual));
    let _ = writeln!(s, "    expected {}", hex(expected));
    let _ = write!(s, "    actual   {}", hex(actual));
    Some(s)
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Expect {
    /// Fills the holes from `actual`, recomputes the checksums.
    fn filled(&self, actual: &[u8]) -> Vec<u8> {
        let mut b = self.bytes.clone();
        for hole in &self.holes {
            if hole.end <= actual.len() {
                b[hole.clone()].copy_from_slice(&actual[hole.clone()]);
            }
        }
        if self.ip_sum {
            checksum::set_ipv4(&mut b);
        }
        match self.l4_sum {
            L4Sum::Tcp { at, len } => {
                let sum = l4_checksum(&b, at, len, PROTO_TCP);
                b[at + 16..at + 18].copy_from_slice(&sum.to_be_bytes());
            }
            L4Sum::Udp { at, len } => {
                let sum = l4_checksum(&b, at, len, PROTO_UDP);
                b[at + 6..at + 8].copy_from_slice(&sum.to_be_bytes());
            }
            L4Sum::Keep => {}
        }
        b
    }
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

fn forward_frame(f: &[u8], p: &Parsed, rw: &Rewrite) -> Expect {
    let mut b = f.to_vec();
    let mut holes = Vec::new();
    b[0..6].copy_from_slice(&rw.eth_dst);
    b[6..12].copy_from_slice(&f[0..6]);
    b[ETH + 8] = p.ttl - 1;
    b[ETH + 12..ETH + 16].copy_from_slice(&rw.src);
    b[ETH + 16..ETH + 20].copy_from_slice(&rw.dst);
    if !p.ip_sum_ok {
        holes.push(ETH + 10..ETH + 12);
    }
    let t = p.t;
    match rw.sport {
        Some(port) => b[t..t + 2].copy_from_slice(&port.to_be_bytes()),
        None => holes.push(t..t + 2),
    }
    b[t + 2..t + 4].copy_from_slice(&rw.dport.to_be_bytes());
    let (l4_sum, valid) = match &p.l4 {
        L4::Tcp(tcp) => {
            if let Some(at) = tcp.ts_at {
                match rw.ts {
                    TsEdit::None => {}
                    TsEdit::AddVal(off) => {
                        let v = be32(f, at).wrapping_add(off);
                        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
                    }
                    TsEdit::ChooseVal => holes.push(at..at + 4),
                    TsEdit::SubEcr(off) => {
                        let v = be32(f, at + 4).wrapping_sub(off);
                        b[at + 4..at + 8].copy_from_slice(&v.to_be_bytes());
                    }
                }
            }
            if tcp.sum_ok {
                (L4Sum::Tcp { at: t, len: p.plen }, true)
            } else {
                holes.push(t + 16..t + 18);
                (L4Sum::Keep, false)
            }
        }
        L4::Udp(udp) => {
            if udp.sum == 0 {
                (L4Sum::Keep, true)
            } else if udp.sum_ok {
                (
                    L4Sum::Udp {
                        at: t,
                        len: udp.ulen,
                    },
                    true,
                )
            } else {
                holes.push(t + 6..t + 8);
                (L4Sum::Keep, false)
            }
        }
    };
    // `Seen::parse` (etherparse) checks a UDP checksum over the whole IP
    // payload: it cannot read a datagram shorter than its IP payload (the
    // byte comparison still checks such a frame's checksum).
    let whole = !matches!(&p.l4, L4::Udp(udp) if udp.ulen != p.plen);
    Expect {
        bytes: b,
        holes,
        ip_sum: true,
        l4_sum,
        checksums_valid: valid && p.ip_sum_ok && whole,
    }
}

/// The RST that answers TCP segment `tcp` (sent back from where it went).
fn rst_answer(f: &[u8], p: &Parsed, tcp: &Tcp) -> Expect {
    let mut b = vec![0u8; ETH + 40];
    b[0..6].copy_from_slice(&f[6..12]);
    b[6..12].copy_from_slice(&f[0..6]);
    b[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    b[ETH] = 0x45;
    b[ETH + 2..ETH + 4].copy_from_slice(&40u16.to_be_bytes());
    b[ETH + 6] = 0x40; // DF
    b[ETH + 8] = 64;
    b[ETH + 9] = PROTO_TCP;
    b[ETH + 12..ETH + 16].copy_from_slice(&p.dst);
    b[ETH + 16..ETH + 20].copy_from_slice(&p.src);
    let t = ETH + 20;
    b[t..t + 2].copy_from_slice(&tcp.dport.to_be_bytes());
    b[t + 2..t + 4].copy_from_slice(&tcp.sport.to_be_bytes());
    // Left to the program: TOS, identification, window, urgent pointer,
    // and the acknowledgment field of a RST without ACK.
    let mut holes = vec![
        ETH + 1..ETH + 2,
        ETH + 4..ETH + 6,
        t + 14..t + 16,
        t + 18..t + 20,
    ];
    if tcp.flags & ACK != 0 {
        b[t + 4..t + 8].copy_from_slice(&tcp.ack.to_be_bytes());
        holes.push(t + 8..t + 12);
        b[t + 13] = RST;
    } else {
        let payload = p.plen - tcp.doff;
        let ack = tcp
            .seq
            .wrapping_add(payload as u32)
            .wrapping_add(u32::from(tcp.flags & SYN != 0))
            .wrapping_add(u32::from(tcp.flags & FIN != 0));
        b[t + 8..t + 12].copy_from_slice(&ack.to_be_bytes());
        b[t + 13] = RST | ACK;
    }
    b[t + 12] = 5 << 4;
    Expect {
        bytes: b,
        holes,
        ip_sum: true,
        l4_sum: L4Sum::Tcp { at: t, len: 20 },
        checksums_valid: true,
    }
}

fn decision(verdict: u32, reason: Counter, note: impl Into<String>) -> Decision {
    Decision {
        verdict,
        reason,
        out: Out::Unchanged,
        effect: Effect::None,
        note: note.into(),
    }
}

impl Model {
    /// The model of a datapath holding `services` (each with the three
    /// fixture backends, all up), SNAT-ing to `snat_addr`:`snat_ports`.
    pub fn new(
        services: Vec<ServiceConf>,
        snat_addr: [u8; 4],
        snat_ports: RangeInclusive<u16>,
    ) -> Model {
        let mut model = Model {
            services,
            backends: BTreeMap::new(),
            tables: HashMap::new(),
            flows: BTreeMap::new(),
            reverse: BTreeMap::new(),
            snat_addr,
            snat_ports,
        };
        model.reset();
        model
    }

    /// No flows; every backend up.
    pub fn reset(&mut self) {
        self.flows.clear();
        self.reverse.clear();
        self.backends.clear();
        for s in &self.services {
            for (i, addr) in BACKEND_IPS.iter().enumerate() {
                self.backends.insert(
                    s.id * 10 + i as u32,
                    BackendConf {
                        service: s.id,
                        addr: *addr,
                        port: s.backend_port,
                        up: true,
                    },
                );
            }
        }
    }

    pub fn services(&self) -> &[ServiceConf] {
        &self.services
    }

    pub fn set_backend_up(&mut self, id: u32, up: bool) {
        self.backends.get_mut(&id).expect("a fixture backend").up = up;
    }

    pub fn backend_up(&self, id: u32) -> bool {
        self.backends[&id].up
    }

    /// The Maglev table of a service over its up backends, as
    /// `Harness::rebuild` builds it (empty: no usable backend).
    pub fn table(&mut self, service: u32) -> Rc<Vec<u32>> {
        let usable: Vec<MaglevBackend> = self
            .backends
            .iter()
            .filter(|(_, b)| b.service == service && b.up)
            .map(|(id, b)| MaglevBackend {
                id: *id,
                addr: Ipv4Addr::from(b.addr),
                port: b.port.unwrap_or(0),
                weight: 1,
            })
            .collect();
        let mask = usable
            .iter()
            .fold(0u32, |m, b| m | 1 << (b.id - service * 10));
        self.tables
            .entry((service, mask))
            .or_insert_with(|| Rc::new(build_table(&usable, MAGLEV_SIZE)))
            .clone()
    }

    /// The backend-side 5-tuples the model knows (live or not), for
    /// building replies.
    pub fn reply_keys(&self) -> Vec<Tuple> {
        self.reverse.keys().copied().collect()
    }

    pub fn flows(&self) -> &BTreeMap<Tuple, ModelFlow> {
        &self.flows
    }

    /// The flow of client 5-tuple `c`, if live: present and its reverse
    /// mapping still points back to it.
    pub fn live(&self, c: &Tuple) -> Option<&ModelFlow> {
        let flow = self.flows.get(c)?;
        (self.reverse.get(&flow.backend_key()) == Some(c)).then_some(flow)
    }

    fn is_vip(&self, a: [u8; 4]) -> bool {
        self.services.iter().any(|s| s.vip == a)
    }

    fn service_of(&self, dst: [u8; 4], dport: u16, proto: u8) -> Option<&ServiceConf> {
        self.services
            .iter()
            .find(|s| s.vip == dst && s.protocol == proto && s.ports.contains(&dport))
    }

    /// Parses per the specification, or decides (malformed, not IPv4, …).
    fn parse(&self, f: &[u8]) -> Result<Parsed, Box<Decision>> {
        if f.len() < ETH || be16(f, 12) != ETHERTYPE_IPV4 {
            return Err(Box::new(decision(
                XDP_PASS,
                Counter::PassNotIpv4,
                "not IPv4",
            )));
        }
        if f.len() < ETH + 20 {
            return Err(Box::new(decision(
                XDP_PASS,
                Counter::Malformed,
                "IPv4 header cut",
            )));
        }
        let dst = addr(f, ETH + 16);
        let malformed = |why: &str| -> Box<Decision> {
            Box::new(if self.is_vip(dst) {
                decision(
                    XDP_DROP,
                    Counter::Malformed,
                    format!("malformed ({why}) to a VIP"),
                )
            } else {
                decision(
                    XDP_PASS,
                    Counter::Malformed,
                    format!("malformed ({why}), no VIP"),
                )
            })
        };
        let version = f[ETH] >> 4;
        let ihl = usize::from(f[ETH] & 0x0f) * 4;
        let total = usize::from(be16(f, ETH + 2));
        if version != 4 {
            return Err(malformed("version"));
        }
        if ihl < 20 {
            return Err(malformed("IHL < 5"));
        }
        if total < ihl {
            return Err(malformed("total length < IHL"));
        }
        if total > f.len() - ETH {
            return Err(malformed("total length > frame"));
        }
        let proto = f[ETH + 9];
        assert_ne!(proto, PROTO_ICMP, "ICMP is not modelled");
        if proto != PROTO_TCP && proto != PROTO_UDP {
            return Err(Box::new(decision(
                XDP_PASS,
                Counter::PassOtherProtocol,
                "other protocol",
            )));
        }
        let fragment = be16(f, ETH + 6) & 0x3fff;
        assert_eq!(fragment, 0, "fragments are not modelled");
        let t = ETH + ihl;
        let plen = total - ihl;
        let ip_sum_ok = checksum::inet(&f[ETH..t]) == 0;
        let l4 = if proto == PROTO_TCP {
            if f.len() - t < 20 {
                return Err(malformed("TCP header cut"));
            }
            let doff = usize::from(f[t + 12] >> 4) * 4;
            if doff < 20 {
                return Err(malformed("TCP data offset < 5"));
            }
            if t + doff > f.len() {
                return Err(malformed("TCP data offset beyond the frame"));
            }
            if doff > plen {
                return Err(malformed("TCP data offset beyond the IP payload"));
            }
            L4::Tcp(Tcp {
                sport: be16(f, t),
                dport: be16(f, t + 2),
                seq: be32(f, t + 4),
                ack: be32(f, t + 8),
                flags: f[t + 13],
                doff,
                ts_at: find_timestamp(&f[t + 20..t + doff]).map(|at| t + 20 + at),
                sum_ok: l4_checksum_ok(f, t, plen, PROTO_TCP),
            })
        } else {
            if f.len() - t < 8 {
                return Err(malformed("UDP header cut"));
            }
            let ulen = usize::from(be16(f, t + 4));
            if ulen < 8 {
                return Err(malformed("UDP length < 8"));
            }
            if ulen > plen {
                return Err(malformed("UDP length beyond the IP payload"));
            }
            let sum = be16(f, t + 6);
            L4::Udp(Udp {
                sport: be16(f, t),
                dport: be16(f, t + 2),
                ulen,
                sum,
                sum_ok: sum != 0 && l4_checksum_ok(f, t, ulen, PROTO_UDP),
            })
        };
        Ok(Parsed {
            ttl: f[ETH + 8],
            src: addr(f, ETH + 12),
            dst,
            t,
            plen,
            ip_sum_ok,
            l4,
        })
    }

    /// The decision for one frame (the state is not changed).
    fn decide(&mut self, f: &[u8]) -> Decision {
        let p = match self.parse(f) {
            Ok(p) => p,
            Err(d) => return *d,
        };
        let key = p.tuple();
        if let Some(svc) = self.service_of(p.dst, key.dport, key.proto).cloned() {
            return self.decide_service(f, &p, key, &svc);
        }
        // A backend's reply?
        let Some(client) = self.reverse.get(&key).copied() else {
            return decision(XDP_PASS, Counter::PassNoService, "no service");
        };
        let Some(flow) = self
            .flows
            .get(&client)
            .filter(|flow| flow.backend_key() == key)
            .cloned()
        else {
            return decision(
                XDP_PASS,
                Counter::NoFlow,
                format!("reply of {client}, whose forward entry is gone or disagrees"),
            );
        };
        if p.ttl <= 1 {
            return decision(XDP_DROP, Counter::TtlExceeded, "reply with TTL <= 1");
        }
        let mut ts = TsEdit::None;
        let mut closing = false;
        if let L4::Tcp(tcp) = &p.l4 {
            if let Some(off) = flow.ts_offset
                && tcp.flags & ACK != 0
            {
                ts = TsEdit::SubEcr(off);
            }
            closing = tcp.flags & (FIN | RST) != 0;
        }
        let rw = Rewrite {
            eth_dst: flow.client_mac,
            src: client.dst,
            dst: client.src,
            sport: Some(client.dport),
            dport: client.sport,
            ts,
        };
        Decision {
            verdict: XDP_TX,
            reason: Counter::ToClient,
            out: Out::Frame(forward_frame(f, &p, &rw)),
            effect: if closing {
                Effect::Closing(client)
            } else {
                Effect::None
            },
            note: format!("reply of {client} to the client"),
        }
    }

    fn decide_service(
        &mut self,
        f: &[u8],
        p: &Parsed,
        client: Tuple,
        svc: &ServiceConf,
    ) -> Decision {
        if p.ttl <= 1 {
            return decision(XDP_DROP, Counter::TtlExceeded, "to a service with TTL <= 1");
        }
        let tcp = match &p.l4 {
            L4::Tcp(tcp) => Some(tcp),
            L4::Udp(_) => None,
        };
        let is_syn = tcp.is_some_and(|t| t.flags & SYN != 0 && t.flags & ACK == 0);
        if let Some(flow) = self.live(&client).cloned()
            && !(is_syn && flow.state == FlowState::Closing)
        {
            let backend = self.backends[&flow.backend_id];
            if let Some(tcp) = tcp
                && !backend.up
                && svc.reset_on_down
            {
                // The specification says "answer with a RST" here and "a RST
                // is never answered" only for segments of no flow; the
                // fixtures (nat.rs) state the latter as a rule: a RST is
                // dropped, the flow closes all the same.
                if tcp.flags & RST != 0 {
                    return Decision {
                        verdict: XDP_DROP,
                        reason: Counter::BackendDownReset,
                        out: Out::Unchanged,
                        effect: Effect::Closing(client),
                        note: format!(
                            "flow {client}: backend {} is down, its RST is not answered",
                            flow.backend_id
                        ),
                    };
                }
                return Decision {
                    verdict: XDP_TX,
                    reason: Counter::BackendDownReset,
                    out: Out::Frame(rst_answer(f, p, tcp)),
                    effect: Effect::Closing(client),
                    note: format!("flow {client}: backend {} is down, reset", flow.backend_id),
                };
            }
            let ts = match (tcp, flow.ts_offset) {
                (Some(_), Some(off)) => TsEdit::AddVal(off),
                _ => TsEdit::None,
            };
            let rw = Rewrite {
                eth_dst: backend_mac(flow.backend_addr),
                src: flow.snat_addr,
                dst: flow.backend_addr,
                sport: Some(flow.snat_port),
                dport: flow.backend_port,
                ts,
            };
            let effect = match tcp {
                Some(tcp) => Effect::ClientSegment {
                    client,
                    closing: tcp.flags & (FIN | RST) != 0,
                    establish: !is_syn && flow.state == FlowState::SynSent,
                },
                None => Effect::None,
            };
            return Decision {
                verdict: XDP_TX,
                reason: Counter::ToBackend,
                out: Out::Frame(forward_frame(f, p, &rw)),
                effect,
                note: format!(
                    "flow {client} ({:?}) to backend {} snat port {}",
                    flow.state, flow.backend_id, flow.snat_port
                ),
            };
        }
        let table = self.table(svc.id);
        if let Some(tcp) = tcp
            && !is_syn
        {
            if table.is_empty() {
                return decision(XDP_DROP, Counter::NoBackend, "no flow, no backend");
            }
            if tcp.flags & RST != 0 {
                return decision(XDP_DROP, Counter::NoFlow, "RST of no flow");
            }
            return Decision {
                verdict: XDP_TX,
                reason: Counter::NoFlow,
                out: Out::Frame(rst_answer(f, p, tcp)),
                effect: Effect::None,
                note: "no flow: reset".into(),
            };
        }
        if table.is_empty() {
            return match tcp {
                Some(tcp) => Decision {
                    verdict: XDP_TX,
                    reason: Counter::NoBackend,
                    out: Out::Frame(rst_answer(f, p, tcp)),
                    effect: Effect::None,
                    note: "SYN, no backend: reset".into(),
                },
                None => decision(XDP_DROP, Counter::NoBackend, "datagram, no backend"),
            };
        }
        let hash = flow_hash(
            u32::from_ne_bytes(client.src),
            u32::from_ne_bytes(client.dst),
            client.sport.to_be(),
            client.dport.to_be(),
            client.proto,
        );
        let backend_id = table[(hash % MAGLEV_SIZE) as usize];
        let backend = self.backends[&backend_id];
        let backend_port = backend.port.unwrap_or(client.dport);
        let ts_at = tcp.and_then(|t| t.ts_at);
        let rw = Rewrite {
            eth_dst: backend_mac(backend.addr),
            src: self.snat_addr,
            dst: backend.addr,
            sport: None,
            dport: backend_port,
            ts: if ts_at.is_some() {
                TsEdit::ChooseVal
            } else {
                TsEdit::None
            },
        };
        let flow = ModelFlow {
            service: svc.id,
            backend_id,
            backend_addr: backend.addr,
            backend_port,
            snat_addr: self.snat_addr,
            snat_port: 0,
            proto: client.proto,
            client_mac: f[6..12].try_into().unwrap(),
            state: if tcp.is_some() {
                FlowState::SynSent
            } else {
                FlowState::Udp
            },
            ts_offset: None,
        };
        Decision {
            verdict: XDP_TX,
            reason: Counter::NewFlow,
            out: Out::Frame(forward_frame(f, p, &rw)),
            effect: Effect::NewFlow {
                client,
                flow,
                port_at: p.t,
                ts: ts_at.map(|at| (at, be32(f, at))),
            },
            note: format!(
                "new flow {client} -> backend {backend_id} ({}:{backend_port})",
                Ipv4Addr::from(backend.addr)
            ),
        }
    }

    /// Checks the program's handling of `frame` against the model's and,
    /// when they agree, moves the model on. Returns what the model
    /// predicted (a line for logs), or every disagreement.
    pub fn step(&mut self, frame: &[u8], obs: &Observed) -> Result<String, String> {
        let d = self.decide(frame);
        let mut errors = Vec::new();
        let summary = format!(
            "{} {}: {}",
            verdict_name(d.verdict),
            d.reason.name(),
            d.note
        );
        if obs.verdict != d.verdict {
            errors.push(format!(
                "verdict: expected {} got {}",
                verdict_name(d.verdict),
                verdict_name(obs.verdict)
            ));
        }
        let wanted = [verdict_counter(d.verdict), d.reason];
        for (counter, grew) in obs.counters {
            let expected = u64::from(wanted.contains(counter));
            if *grew != expected {
                errors.push(format!(
                    "counter {}: expected +{expected} got +{grew}",
                    counter.name()
                ));
            }
        }
        let mut new_flow_port = None;
        let mut new_flow_ts = None;
        match &d.out {
            Out::Unchanged => {
                if let Some(diff) = frame_diff(frame, obs.out) {
                    errors.push(format!("output: expected the frame unchanged\n{diff}"));
                }
            }
            Out::Frame(expect) if obs.verdict == XDP_TX => {
                if let Effect::NewFlow {
                    flow, port_at, ts, ..
                } = &d.effect
                    && obs.out.len() >= port_at + 2
                {
                    let port = be16(obs.out, *port_at);
                    if let Err(e) = self.check_snat_port(flow, port) {
                        errors.push(e);
                    }
                    new_flow_port = Some(port);
                    if let Some((at, tsval)) = ts
                        && obs.out.len() >= at + 4
                    {
                        new_flow_ts = Some(be32(obs.out, *at).wrapping_sub(*tsval));
                    }
                }
                let expected = expect.filled(obs.out);
                if let Some(diff) = frame_diff(&expected, obs.out) {
                    errors.push(format!("output frame differs\n{diff}"));
                }
                if expect.checksums_valid {
                    let out = obs.out.to_vec();
                    if let Err(panic) = std::panic::catch_unwind(move || Seen::parse(&out)) {
                        let why = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        errors.push(format!("Seen::parse rejects the output: {why}"));
                    }
                }
            }
            Out::Frame(expect) => {
                errors.push(format!(
                    "output: expected the frame {}",
                    describe(&expect.bytes)
                ));
            }
        }
        if !errors.is_empty() {
            return Err(format!(
                "model: {summary}\n  {}\n  program: {} out {}",
                errors.join("\n  "),
                verdict_name(obs.verdict),
                describe(obs.out)
            ));
        }
        let mut summary = summary;
        match d.effect {
            Effect::None => {}
            Effect::ClientSegment {
                client,
                closing,
                establish,
            } => {
                let flow = self.flows.get_mut(&client).unwrap();
                if closing {
                    flow.state = FlowState::Closing;
                } else if establish {
                    flow.state = FlowState::Established;
                }
            }
            Effect::Closing(client) => {
                self.flows.get_mut(&client).unwrap().state = FlowState::Closing;
            }
            Effect::NewFlow {
                client, mut flow, ..
            } => {
                flow.snat_port = new_flow_port.expect("a TX frame with ports");
                flow.ts_offset = new_flow_ts;
                let _ = write!(summary, ", SNAT port {}", flow.snat_port);
                if let Some(off) = flow.ts_offset {
                    let _ = write!(summary, ", TS offset {off}");
                }
                self.reverse.insert(flow.backend_key(), client);
                self.flows.insert(client, flow);
            }
        }
        Ok(summary)
    }

    /// The SNAT port of a new flow: in range, and no other open flow to
    /// the same backend address and port uses it.
    fn check_snat_port(&self, new: &ModelFlow, port: u16) -> Result<(), String> {
        if !self.snat_ports.contains(&port) {
            return Err(format!("SNAT port {port} outside {:?}", self.snat_ports));
        }
        for (client, flow) in &self.flows {
            if flow.state != FlowState::Closing
                && flow.backend_addr == new.backend_addr
                && flow.backend_port == new.backend_port
                && flow.proto == new.proto
                && flow.snat_addr == new.snat_addr
                && flow.snat_port == port
                && self.live(client).is_some()
            {
                return Err(format!(
                    "SNAT port {port} is already used by the open flow {client} to the same backend"
                ));
            }
        }
        Ok(())
    }
}
