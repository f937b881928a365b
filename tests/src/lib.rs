//! Helpers for kube-xdp's end-to-end tests and demo: network namespaces
//! and veth pairs that clean up after themselves, the daemon as a child
//! process, and packet fixtures.
//!
//! Every test address comes from the benchmarking range 198.18.0.0/15
//! (RFC 2544); nothing here sends traffic anywhere else.

pub mod browser;
pub mod checksum;
pub mod daemon;
pub mod e2e_util;
pub mod fuzz;
pub mod harness;
pub mod http;
pub mod kube_api;
pub mod model;
pub mod netns;
pub mod observe;
pub mod packet;
pub mod pair;
pub mod servers;
pub mod short_conns;
pub mod synflood;
pub mod tls_server;
pub mod topology;

/// Fails (never skips) when not run as root: these tests attach XDP
/// programs and create namespaces, which only root can do.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (it loads BPF programs and creates network namespaces): run `cargo xtask test` as root"
    );
}

/// A name prefix unique to this process and call, short enough that
/// interface names built from it stay within IFNAMSIZ (15 bytes).
pub fn unique_prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("kx{}{}", std::process::id() % 100_000, n)
}
