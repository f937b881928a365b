//! Types and constants shared by the XDP program and the daemon.
//!
//! Every map key and value is `#[repr(C)]` with explicit padding so both
//! sides agree on the layout byte for byte; the `user` feature adds the
//! `aya::Pod` impls the daemon needs.
#![no_std]

pub mod stats;

/// Names of the maps as pinned under `pin_path`.
pub mod map_name {
    /// Per-CPU global counters, one slot per [`crate::stats::Counter`].
    pub const STATS: &str = "KXDP_STATS";

    /// Every map the daemon pins (and re-uses on restart).
    pub const PINNED: &[&str] = &[STATS];
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
