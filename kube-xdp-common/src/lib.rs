//! Types and constants shared by the XDP program and the daemon.
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so both
//! sides agree on the layout byte for byte; the `user` feature adds the
//! `aya::Pod` impls the daemon needs. Addresses and ports are kept in
//! network byte order, as they stand in the packet, so the datapath never
//! swaps bytes.
#![no_std]

pub mod cookie;
pub mod flow;
pub mod hash;
pub mod maps;
pub mod stats;
#[cfg(feature = "user")]
mod user;

/// Names of the maps, as pinned under `pin_path`.
pub mod map_name {
    /// Per-CPU global counters, one slot per [`crate::stats::Counter`].
    pub const STATS: &str = "KXDP_STATS";
    /// (VIP, port, protocol) → service.
    pub const SERVICES: &str = "KXDP_SERVICES";
    /// VIP → number of `SERVICES` entries on it, one per port (to tell
    /// malformed traffic to a VIP from traffic that is none of our
    /// business).
    pub const VIPS: &str = "KXDP_VIPS";
    /// Service id → the pool's Maglev state (active half, table size).
    pub const POOLS: &str = "KXDP_POOLS";
    /// The Maglev lookup tables, two halves per pool.
    pub const MAGLEV: &str = "KXDP_MAGLEV";
    /// Backend id → backend.
    pub const BACKENDS: &str = "KXDP_BACKENDS";
    /// Client 5-tuple → flow.
    pub const FLOWS: &str = "KXDP_FLOWS";
    /// Backend-side 5-tuple of a reply → the client 5-tuple.
    pub const REVERSE: &str = "KXDP_REVERSE";
    /// First fragments' (src, dst, id, protocol) → their flow.
    pub const FRAGMENTS: &str = "KXDP_FRAGMENTS";
    /// The one [`crate::maps::Settings`] record.
    pub const SETTINGS: &str = "KXDP_SETTINGS";
    /// Ifindex → the interface's MAC: the only destination MAC whose frames
    /// the program handles on that interface, and the source of frames
    /// redirected to it.
    pub const INTERFACES: &str = "KXDP_INTERFACES";
    /// Devmap of the interfaces frames may be redirected to.
    pub const TX_PORTS: &str = "KXDP_TX_PORTS";
    /// Per-CPU traffic per service.
    pub const SERVICE_STATS: &str = "KXDP_SERVICE_STATS";
    /// Per-CPU traffic per backend.
    pub const BACKEND_STATS: &str = "KXDP_BACKEND_STATS";
    /// Layout version and sizes, checked before pins are re-used.
    pub const META: &str = "KXDP_META";
    /// Ring buffer of flow changes for the pair's flow sync. Not pinned:
    /// each program has its own, read by the daemon that loaded it.
    pub const SYNC_EVENTS: &str = "KXDP_SYNC_EVENTS";

    /// Per-CPU RST token bucket. Not pinned: a new program starts full.
    pub const RST_BUDGET: &str = "KXDP_RST_BUDGET";
    /// Per-CPU half-open token bucket. Not pinned: a new program starts
    /// full.
    pub const HALF_OPEN: &str = "KXDP_HALF_OPEN";
    /// When a SYN cookie was last sent. Not pinned.
    pub const COOKIE_CLOCK: &str = "KXDP_COOKIE_CLOCK";

    /// Every map the daemon pins (and re-uses on restart).
    pub const PINNED: &[&str] = &[
        STATS,
        SERVICES,
        VIPS,
        POOLS,
        MAGLEV,
        BACKENDS,
        FLOWS,
        REVERSE,
        FRAGMENTS,
        SETTINGS,
        INTERFACES,
        TX_PORTS,
        SERVICE_STATS,
        BACKEND_STATS,
        META,
    ];
}

/// Names of the programs in the eBPF object.
pub mod program_name {
    /// The load balancer.
    pub const LB: &str = "kube_xdp";
    /// Returns `XDP_PASS`; attached to the peer of a veth so that frames
    /// sent with `XDP_TX` reach it (see TOOLCHAIN.md).
    pub const PASS: &str = "kube_xdp_pass";
    /// Swaps MACs and returns `XDP_TX`: the floor the benchmarks compare with.
    pub const FLOOR: &str = "kube_xdp_floor";
}
