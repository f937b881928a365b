//! The kube-xdp XDP program: the maps and the entry points. `ingress` is
//! the packet's path, top to bottom; each step it takes is a module of its
//! own: `parse`; `conntrack` (the flow table and its state machine, both
//! directions); `service` (lookup, backend pick) and `snat` (the port) for
//! new flows; `nat` (rewrite and checksums); `forward` (send, remember a
//! first fragment, count in `stats`). `frag` (later fragments), `icmp`
//! (errors about a flow) and `reset` (refusals) are the side paths; `l2`
//! says whether a frame is ours to act on; `sync` reports flow changes for
//! the pair;
//! `cookie` answers SYNs statelessly over the half-open limit and opens
//! their flows from the client's ACK (`segment` writes those segments);
//! `verdict`, `field`, `csum` and `tcpopt` are what the steps share.
#![no_std]
#![no_main]
// `atomic_cxchg`: `AtomicU64::compare_exchange` is missing on this target
// (its spec says no compare-and-swap), though LLVM emits BPF_CMPXCHG.
#![expect(internal_features, reason = "core::intrinsics::atomic_cxchg")]
#![feature(core_intrinsics)]

mod conntrack;
mod cookie;
mod csum;
mod field;
mod forward;
mod frag;
mod icmp;
mod ingress;
mod l2;
mod nat;
mod parse;
mod reset;
mod segment;
mod service;
mod snat;
mod stats;
mod sync;
mod tcpopt;
mod verdict;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
    programs::XdpContext,
};
use kube_xdp_common::{
    maps::{
        Backend, CookieClock, DEFAULT_FLOW_TABLE_SIZE, Flow, FlowKey, Fragment, FragmentKey,
        HalfOpenBudget, Interface, MAX_BACKENDS, MAX_FRAGMENTS, MAX_INTERFACES, MAX_SERVICE_PORTS,
        MAX_SERVICES, MaglevTable, Meta, Pool, ReverseFlow, RstBudget, SYNC_RING_BYTES, Service,
        ServiceKey, Settings, Traffic,
    },
    stats::COUNTER_SLOTS,
};

// Names match `kube_xdp_common::map_name`; the daemon opens them by name.

#[map(name = "KXDP_STATS")]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);
#[map(name = "KXDP_SERVICES")]
static SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICE_PORTS, 0);
#[map(name = "KXDP_VIPS")]
static VIPS: HashMap<u32, u32> = HashMap::with_max_entries(MAX_SERVICES, 0);
#[map(name = "KXDP_POOLS")]
static POOLS: Array<Pool> = Array::with_max_entries(MAX_SERVICES, 0);
#[map(name = "KXDP_MAGLEV")]
static MAGLEV: Array<MaglevTable> = Array::with_max_entries(MAX_SERVICES * 2, 0);
#[map(name = "KXDP_BACKENDS")]
static BACKENDS: Array<Backend> = Array::with_max_entries(MAX_BACKENDS, 0);
// LRU so that dead entries (flows that ended, never looked up again) make
// room by themselves; sized so that live flows are not evicted.
#[map(name = "KXDP_FLOWS")]
static FLOWS: LruHashMap<FlowKey, Flow> = LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);
#[map(name = "KXDP_REVERSE")]
static REVERSE: LruHashMap<FlowKey, ReverseFlow> =
    LruHashMap::with_max_entries(DEFAULT_FLOW_TABLE_SIZE, 0);
#[map(name = "KXDP_FRAGMENTS")]
static FRAGMENTS: LruHashMap<FragmentKey, Fragment> =
    LruHashMap::with_max_entries(MAX_FRAGMENTS, 0);
#[map(name = "KXDP_SETTINGS")]
static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);
#[map(name = "KXDP_INTERFACES")]
static INTERFACES: HashMap<u32, Interface> = HashMap::with_max_entries(MAX_INTERFACES, 0);
#[map(name = "KXDP_TX_PORTS")]
static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);
#[map(name = "KXDP_SERVICE_STATS")]
static SERVICE_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);
#[map(name = "KXDP_BACKEND_STATS")]
static BACKEND_STATS: PerCpuArray<Traffic> = PerCpuArray::with_max_entries(MAX_BACKENDS, 0);
#[map(name = "KXDP_META")]
static META: Array<Meta> = Array::with_max_entries(1, 0);
#[map(name = "KXDP_RST_BUDGET")]
static RST_BUDGET: PerCpuArray<RstBudget> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "KXDP_HALF_OPEN")]
// Shared by the CPUs, not per CPU: a handshake's end often comes on
// another CPU than its SYN. Updated without atomics: a lost update between
// two CPUs is a small error, never a drift.
static HALF_OPEN: Array<HalfOpenBudget> = Array::with_max_entries(2, 0);
#[map(name = "KXDP_COOKIE_CLOCK")]
static COOKIE_CLOCK: Array<CookieClock> = Array::with_max_entries(1, 0);
#[map(name = "KXDP_SCAN")]
static SCAN: PerCpuArray<tcpopt::Scan> = PerCpuArray::with_max_entries(1, 0);
#[map(name = "KXDP_PROGRAMS")]
static PROGRAMS: ProgramArray = ProgramArray::with_max_entries(1, 0);
/// The cookie program's slot in `PROGRAMS`.
const PROGRAM_COOKIES: u32 = 0;
#[map(name = "KXDP_SYNC_EVENTS")]
static SYNC_EVENTS: RingBuf = RingBuf::with_byte_size(SYNC_RING_BYTES, 0);

/// The load balancer's entry point.
///
/// `inline(always)` puts the body in the program's entry (the `xdp`
/// macro wraps it in one), not in a BPF function of its own: the kernel
/// allows a tail call (`cookie::hand_over`) only there.
#[xdp]
#[inline(always)]
pub fn kube_xdp(ctx: XdpContext) -> u32 {
    let (verdict, reason) = ingress::process::<false>(&ctx);
    stats::count(verdict, reason);
    verdict
}

/// The SYN-cookie paths (`cookie`), entered by tail call from `kube_xdp`
/// (never attached): the same path, with the cookie paths in it.
#[xdp]
#[inline(always)]
pub fn kube_xdp_cookie(ctx: XdpContext) -> u32 {
    let (verdict, reason) = ingress::process::<true>(&ctx);
    stats::count(verdict, reason);
    verdict
}

/// Returns `XDP_PASS`. Attached to the peer of a veth whose other end sends
/// with `XDP_TX`: without an XDP program there, the peer drops such frames
/// (kernel 6.18, see TOOLCHAIN.md).
#[xdp]
pub fn kube_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmark floor: swap the Ethernet addresses and send the frame back.
#[xdp]
pub fn kube_xdp_floor(ctx: XdpContext) -> u32 {
    match parse::swap_macs(&ctx) {
        Some(()) => xdp_action::XDP_TX,
        None => xdp_action::XDP_DROP,
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
