//! `bench daemon`: the two control-plane figures only the real daemon can
//! give, measured in the namespace topology of the end-to-end tests
//! ([`Cluster`](kube_xdp_tests::topology::Cluster): a client, the LB and
//! three backends on a bridge, all in 198.18.0.0/24, removed on drop even
//! when a step fails):
//!
//! - how long `kube-xdp reload` takes to add, and to remove, a NodePort
//!   service `ports = "30000-32767"`, each reload checked in the pinned
//!   maps and by connections;
//! - how long after a backend dies new connections stop reaching it, for
//!   several health-check intervals and `fall` counts.
//!
//! Prints Markdown on stdout, progress on stderr. It reports; it never
//! fails on a threshold, but it does fail when a reload did not take
//! effect or a measurement did not happen as described.
//!
//! `reload.rs` measures the reloads, `failover.rs` the failovers.

mod failover;
mod reload;

use std::time::Duration;

use failover::failover;
use reload::reload_nodeport;

const BACKENDS: usize = 3;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn min_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

pub fn daemon() {
    let reload_md = reload_nodeport();
    let failover_md = failover();
    println!("### Control plane through the daemon\n\n{reload_md}\n{failover_md}");
}
