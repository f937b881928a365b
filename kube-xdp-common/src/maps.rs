//! Map keys, values and capacities.
//!
//! Memory at the defaults, as the kernel accounts it (`bytes_memlock` of
//! `bpftool map show`, measured on 6.18 with 2 CPUs: 128 B per flow entry
//! and 96 B per reverse entry, hash overhead included):
//!
//! | map | entries | memory |
//! |---|---|---|
//! | FLOWS (LRU hash) | `flow_table_size` = 1,048,576 | 128 MiB |
//! | REVERSE (LRU hash) | `flow_table_size` | 96 MiB |
//! | MAGLEV (array of 256 KiB tables) | 64 pools × 2 halves | 32 MiB |
//! | SERVICES (hash) | 16,384 | 1.25 MiB |
//! | FRAGMENTS (LRU hash) | 8,192 | 0.9 MiB |
//! | BACKENDS, POOLS, per-CPU counters, the rest | | ≈ 0.4 MiB |
//!
//! About 258 MiB in all; `flow_table_size` scales the first two.

/// Services the datapath can hold (each with its own pool).
pub const MAX_SERVICES: u32 = 64;
/// (VIP, port, protocol) entries: a port range takes one per port.
pub const MAX_SERVICE_PORTS: u32 = 16_384;
/// Backends over all services.
pub const MAX_BACKENDS: u32 = 4_096;
/// The largest Maglev table a pool may use (a prime).
pub const MAX_MAGLEV_TABLE: u32 = 65_537;
/// Default number of flows (forward and reverse each).
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = 1_048_576;
/// Fragment translations remembered at once.
pub const MAX_FRAGMENTS: u32 = 8_192;
/// How long a first fragment's translation is kept for the later ones.
pub const FRAGMENT_TIMEOUT_NS: u64 = 5_000_000_000;
/// Interfaces a frame may be redirected to.
pub const MAX_INTERFACES: u32 = 64;
/// SNAT addresses.
pub const MAX_SNAT_ADDRESSES: usize = 4;
/// RSTs the datapath sends per second and CPU at most (`reset.rs`): a
/// flood of segments that would each be refused — from spoofed sources, or
/// aimed at someone else through them — gets at most this many answers, the
/// rest are dropped (`rst_limited`). Clients of a live service see RSTs
/// only in small numbers: a SYN with no backend, a segment of a flow gone.
pub const RST_RATE_PER_CPU: u64 = 1_000;
/// RSTs a CPU may send at once after a quiet second (the bucket's depth).
pub const RST_BURST: u64 = 1_000;

/// Layout version of every map here; bumped on any change, so a new binary
/// never misreads an old binary's pins.
pub const LAYOUT_VERSION: u32 = 7;

/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;
/// `IPPROTO_UDP`.
pub const PROTO_UDP: u8 = 17;

/// A service's address: the key of `SERVICES`. A port range has one entry
/// per port, all with the same [`Service`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceKey {
    /// Network byte order.
    pub vip: u32,
    /// Network byte order.
    pub port: u16,
    pub protocol: u8,
    pub _pad: u8,
}

/// `Service::flags`: answer the next packet of a flow whose backend went
/// down (or draining) with a RST instead of forwarding it.
pub const SERVICE_RESET_ON_DOWN: u32 = 1;

/// The value of `SERVICES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Service {
    /// Index into `POOLS`, `SERVICE_STATS` (< [`MAX_SERVICES`]).
    pub id: u32,
    /// `SERVICE_*` bits.
    pub flags: u32,
}

/// The value of `POOLS` (indexed by service id): which half of the pool's
/// slice of `MAGLEV` is live. The daemon writes the idle half whole, then
/// flips `active` with one map update, so the datapath never sees a
/// half-written table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pool {
    /// 0 or 1.
    pub active: u32,
    /// Slots in the live table; 0 = no usable backend.
    pub table_size: u32,
    /// The service's `SERVICE_*` flags, and `POOL_REMOVED`: the established
    /// path reads them here (an array slot) instead of looking the service
    /// up again.
    pub flags: u32,
    pub _pad: u32,
}

/// `Pool::flags`: the service was removed; its flows stop at once.
pub const POOL_REMOVED: u32 = 2;

/// One Maglev lookup table: backend ids, the first `Pool::table_size`
/// slots used. A whole table is one map value, so the daemon writes a half
/// with one syscall.
pub type MaglevTable = [u32; MAX_MAGLEV_TABLE as usize];

/// Index into `MAGLEV` of a pool's table half.
#[inline(always)]
pub const fn maglev_index(service_id: u32, half: u32) -> u32 {
    service_id * 2 + half
}

/// Backend states (`Backend::state`).
pub const BACKEND_UP: u8 = 1;
/// Failed its health checks: no new flows.
pub const BACKEND_DOWN: u8 = 2;
/// Weight 0 or removed from the config: no new flows, its flows finish.
pub const BACKEND_DRAIN: u8 = 3;

/// The value of `BACKENDS` (indexed by backend id).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Backend {
    /// Network byte order; 0 = the slot is unused.
    pub addr: u32,
    /// Network byte order; 0 = the client's destination port (port
    /// ranges).
    pub port: u16,
    /// `BACKEND_*`.
    pub state: u8,
    pub _pad: u8,
    /// Next hop's MAC; all zero = not resolved yet (frames are dropped and
    /// counted `neighbour_miss`).
    pub mac: [u8; 6],
    pub _pad2: [u8; 2],
    /// Interface the next hop is on.
    pub ifindex: u32,
    /// The service it belongs to.
    pub service_id: u32,
}

/// A 5-tuple as it stands in a packet (addresses and ports in network byte
/// order). The key of `FLOWS` (client → VIP) and of `REVERSE` (backend →
/// SNAT address: the 5-tuple of the backend's replies).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src_addr: u32,
    pub dst_addr: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub _pad: [u8; 3],
}

/// TCP flow states (`Flow::state`).
pub const FLOW_SYN_SENT: u8 = 1;
pub const FLOW_ESTABLISHED: u8 = 2;
/// FIN or RST seen.
pub const FLOW_CLOSING: u8 = 3;
/// A UDP flow.
pub const FLOW_UDP: u8 = 4;

/// `Flow::flags`: the client's TCP timestamps are rewritten by
/// `ts_offset` (see [`Flow::ts_offset`]).
pub const FLOW_TS_REWRITE: u8 = 1;
/// `Flow::flags`: the client sent a FIN.
pub const FLOW_FIN_CLIENT: u8 = 2;
/// `Flow::flags`: the backend sent a FIN.
pub const FLOW_FIN_BACKEND: u8 = 4;
/// `Flow::flags`: either side sent a RST.
pub const FLOW_RST: u8 = 8;
/// `Flow::flags`: the backend answered: a UDP flow (until then it has the
/// short `udp_unanswered` timeout), or a TCP flow while half-open (its
/// SYN-ACK: the backend holds a connection in SYN-RECV).
pub const FLOW_REPLIED: u8 = 16;
/// `Flow::flags`: the flow was opened by a client's ACK of a SYN cookie
/// (the datapath answered its SYN statelessly): the backend's sequence
/// numbers, TSvals and windows are translated by `seq_delta`,
/// `ts_peer_offset` and the window scales, the client's ACK numbers, SACK
/// blocks and TSecrs back.
pub const FLOW_COOKIE: u8 = 32;
/// `Flow::flags`, with `FLOW_COOKIE`: the backend has not answered the SYN
/// sent on the client's behalf yet; until it does, `seq_delta` holds the
/// cookie and `ts_peer_offset` the TSval of the cookie SYN-ACK.
pub const FLOW_COOKIE_WAIT: u8 = 64;
/// `Flow::flags`, with `FLOW_REPLIED`: the backend sent its SYN-ACK again
/// while the flow was half-open, so it keeps the connection in SYN-RECV
/// (a backend answering with a SYN cookie of its own, under a flood,
/// sends one SYN-ACK and keeps nothing).
pub const FLOW_SYN_ACK_AGAIN: u8 = 128;

/// The value of `FLOWS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Flow {
    /// Network byte order.
    pub backend_addr: u32,
    /// Network byte order.
    pub snat_addr: u32,
    /// Network byte order.
    pub backend_port: u16,
    /// Network byte order.
    pub snat_port: u16,
    pub backend_id: u16,
    pub service_id: u16,
    /// Where the client's frames come from, and on which interface: the
    /// reply path sends there without a lookup.
    pub client_mac: [u8; 6],
    /// `FLOW_SYN_SENT`, `FLOW_ESTABLISHED`, `FLOW_CLOSING` or `FLOW_UDP`.
    pub state: u8,
    /// `FLOW_TS_REWRITE`, what each side said (`FLOW_FIN_CLIENT`,
    /// `FLOW_FIN_BACKEND`, `FLOW_RST`), `FLOW_REPLIED`, `FLOW_COOKIE`,
    /// `FLOW_COOKIE_WAIT`.
    pub flags: u8,
    pub ifindex: u32,
    /// Added to the client's TSval on the way to the backend, taken from
    /// the backend's TSecr on the way back, so the backend sees timestamps
    /// that only grow per (SNAT address, backend) and its TIME_WAIT (PAWS)
    /// check accepts a SYN on a re-used SNAT port.
    pub ts_offset: u32,
    /// `bpf_ktime_get_coarse_ns()` when the flow opened: `CLOCK_MONOTONIC`
    /// read at the kernel's tick (a few ms), the clock of
    /// `bpf_ktime_get_ns()` less precisely.
    pub created_ns: u64,
    /// `bpf_ktime_get_coarse_ns()` of the last packet, either way.
    pub last_seen_ns: u64,
    /// `FLOW_COOKIE` flows: added to the backend's sequence numbers on the
    /// way to the client (the cookie minus the backend's ISN), taken from
    /// the client's ACK numbers and SACK blocks on the way back.
    pub seq_delta: u32,
    /// `FLOW_COOKIE` flows with timestamps: added to the backend's TSval on
    /// the way to the client (the cookie SYN-ACK's TSval minus the
    /// backend's), taken from the client's TSecr on the way back.
    pub ts_peer_offset: u32,
    /// `FLOW_COOKIE` flows: the window scale the backend announced, and the
    /// one the cookie SYN-ACK announced to the client (the backend's
    /// windows are rescaled from the first to the second).
    pub win_scale_backend: u8,
    pub win_scale_client_view: u8,
    pub _pad: [u8; 6],
}

/// The value of `REVERSE`: the client 5-tuple whose flow this is.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ReverseFlow {
    pub client: FlowKey,
    /// `bpf_ktime_get_coarse_ns()` when a flow claimed the entry. A CPU
    /// takes a stale entry over by compare-and-swap on this field, so two
    /// CPUs never both win it, and an entry claimed a moment ago is not
    /// judged stale before its flow's forward entry is in (see the
    /// datapath's `snat::claim`).
    pub claimed_ns: u64,
}

/// Bytes of the `SYNC_EVENTS` ring buffer: 4 MiB, about 47,000 events
/// (80 B each, 8 B of header): a quarter of a second of 50,000 new flows a
/// second with their state changes, while the daemon drains it every few
/// milliseconds.
pub const SYNC_RING_BYTES: u32 = 1 << 22;

/// A record of `SYNC_EVENTS`: a flow as it stands after it opened or
/// changed state or flags (a FIN or RST seen, the handshake done), for the
/// daemon to send to the pair's other box.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SyncEvent {
    pub client: FlowKey,
    pub flow: Flow,
}

/// The key of `FRAGMENTS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FragmentKey {
    pub src_addr: u32,
    pub dst_addr: u32,
    /// The IPv4 identification, as in the packet.
    pub id: u16,
    pub protocol: u8,
    pub _pad: u8,
}

/// Fragment directions (`Fragment::direction`).
pub const FRAGMENT_TO_BACKEND: u32 = 1;
pub const FRAGMENT_TO_CLIENT: u32 = 2;

/// The value of `FRAGMENTS`: the flow whose translation later fragments
/// get.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    pub client: FlowKey,
    /// `FRAGMENT_TO_*`.
    pub direction: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_coarse_ns()` when the first fragment went through.
    pub seen_ns: u64,
}

/// The value of `SETTINGS` (one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Network byte order; the first `snat_count` are used.
    pub snat_addrs: [u32; MAX_SNAT_ADDRESSES],
    pub snat_count: u32,
    /// Host byte order, inclusive.
    pub snat_port_min: u16,
    pub snat_port_max: u16,
    pub tcp_established_ns: u64,
    pub tcp_closing_ns: u64,
    pub tcp_syn_ns: u64,
    pub udp_ns: u64,
    /// How long a closed flow's SNAT port stays with its backend when the
    /// SYN carries no timestamp to rewrite.
    pub tcp_time_wait_ns: u64,
    /// 1: report new flows and their state changes in `SYNC_EVENTS` for
    /// the pair's flow sync; 0: not (no peer to send them to).
    pub sync: u32,
    pub _pad: u32,
    /// Added to `CLOCK_MONOTONIC` for the rewritten TCP timestamps' clock:
    /// the pair runs theirs together (the daemon moves it forward to the
    /// peer's, never back), so a flow opened after a failover sends the
    /// backends timestamps above those of the other box's flows on the same
    /// SNAT 4-tuple.
    pub ts_clock_offset_ns: u64,
    /// The idle timeout of a UDP flow the backend has not answered
    /// (spoofed or scanning datagrams): short, so they hold neither a
    /// SNAT port nor a flow entry for long.
    pub udp_unanswered_ns: u64,
    /// `SYN_COOKIES_*`: when a SYN is answered with a SYN cookie instead
    /// of opening a flow.
    pub syn_cookies: u32,
    /// The MSS the cookie SYN-ACK announces (the interfaces' MTU − 40).
    pub cookie_mss: u16,
    /// The window scale the cookie SYN-ACK announces to a client that
    /// offered one.
    pub cookie_wscale: u8,
    pub _pad2: u8,
    /// What one half-open flow costs the `HalfOpenBudget`:
    /// `tcp_syn / half_open_limit`; 0: no limit.
    pub half_open_cost_ns: u64,
    /// The SipHash key of the cookies (the pair's boxes share it).
    pub cookie_key: [u64; 2],
    /// Added to `CLOCK_MONOTONIC` for the cookies' clock: the realtime
    /// clock, so that the pair's boxes agree on the cookie period.
    pub cookie_clock_offset_ns: u64,
    /// What one unanswered UDP flow costs the `HalfOpenBudget` (slot
    /// [`BUDGET_UDP`]): `udp_unanswered / (flow_table_size / 4)`; 0: no
    /// limit.
    pub unanswered_cost_ns: u64,
}

/// `HALF_OPEN` slot of half-open TCP flows.
pub const BUDGET_TCP: u32 = 0;
/// `HALF_OPEN` slot of UDP flows the backend has not answered.
pub const BUDGET_UDP: u32 = 1;

/// `Settings::syn_cookies`: never; a SYN over the half-open limit is
/// dropped (`half_open_limited`).
pub const SYN_COOKIES_NEVER: u32 = 0;
/// `Settings::syn_cookies`: a SYN over the half-open limit is answered
/// with a cookie.
pub const SYN_COOKIES_AUTO: u32 = 1;
/// `Settings::syn_cookies`: every SYN to a service is answered with a
/// cookie.
pub const SYN_COOKIES_ALWAYS: u32 = 2;

impl Settings {
    /// The idle timeout of a flow in `state` (`FLOW_*`) with `flags`
    /// (`FLOW_REPLIED` matters to UDP flows).
    #[inline(always)]
    pub const fn idle_timeout_ns(&self, state: u8, flags: u8) -> u64 {
        match state {
            FLOW_SYN_SENT => self.tcp_syn_ns,
            FLOW_ESTABLISHED => self.tcp_established_ns,
            FLOW_CLOSING => self.tcp_closing_ns,
            _ if flags & FLOW_REPLIED == 0 && self.udp_unanswered_ns < self.udp_ns => {
                self.udp_unanswered_ns
            }
            _ => self.udp_ns,
        }
    }
}

/// The value of `INTERFACES`, keyed by ifindex: each interface the program
/// is attached to or redirects to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interface {
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// The value of `RST_BUDGET` (one per CPU): a token bucket counted in
/// nanoseconds, one RST costing `1 s / RST_RATE_PER_CPU`. Not pinned: a new
/// program starts with a full bucket. All zero is a valid start (it fills
/// at once).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RstBudget {
    /// Nanoseconds of credit, at most `RST_BURST` RSTs' worth.
    pub credit_ns: u64,
    /// When the credit was last brought up to date (coarse monotonic clock).
    pub refilled_ns: u64,
}

/// A value of `HALF_OPEN` (shared by the CPUs; slots [`BUDGET_TCP`], [`BUDGET_UDP`]):
/// a token bucket of half-open flows, counted in nanoseconds like
/// [`RstBudget`]. A SYN that opens a flow takes
/// `Settings::half_open_cost_ns`; the handshake's end (or the flow's close
/// before it) gives it back; time gives it back at one flow's worth per
/// cost, as if every half-open flow expired after `tcp_syn`. Holds at most
/// `tcp_syn` (`half_open_limit` flows). A UDP flow's
/// first datagram takes `unanswered_cost_ns` from the UDP slot, the
/// backend's first answer gives it back, and it refills over
/// `udp_unanswered`. Not pinned; all zero is a valid start.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct HalfOpenBudget {
    pub credit_ns: u64,
    pub refilled_ns: u64,
}

/// The value of `COOKIE_CLOCK` (one entry, shared by the CPUs): when a SYN
/// cookie was last sent (coarse monotonic clock, updated at most once a
/// second), so a stray ACK with no flow is judged as a cookie only while
/// cookies are in use.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CookieClock {
    pub last_sent_ns: u64,
}

/// Per-CPU traffic of a service or a backend.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
}

/// The value of `META` (one entry).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Meta {
    pub layout_version: u32,
    pub flow_table_size: u32,
}

// The layouts above have no implicit padding: pin their sizes so a field
// added without its padding fails to build on both sides.
const _: () = {
    use core::mem::size_of;
    assert!(size_of::<ServiceKey>() == 8);
    assert!(size_of::<Service>() == 8);
    assert!(size_of::<Pool>() == 16);
    assert!(size_of::<Backend>() == 24);
    assert!(size_of::<FlowKey>() == 16);
    assert!(size_of::<Flow>() == 64);
    assert!(size_of::<ReverseFlow>() == 24);
    assert!(size_of::<FragmentKey>() == 12);
    assert!(size_of::<Fragment>() == 32);
    assert!(size_of::<Settings>() == 136);
    assert!(size_of::<SyncEvent>() == 80);
    assert!(size_of::<HalfOpenBudget>() == 16);
    assert!(size_of::<CookieClock>() == 8);
    assert!(size_of::<Interface>() == 8);
    assert!(size_of::<Traffic>() == 24);
    assert!(size_of::<RstBudget>() == 16);
    assert!(size_of::<Meta>() == 8);
};
