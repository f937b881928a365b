//! The daemon as the tests see it: `kube-xdp backends --json` as data,
//! bounded waits on its backends' states, its pid and `reload`.

use crate::{daemon::cli, topology::Cluster};
use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

/// `kube-xdp backends --json --config FILE`, from a second process in the
/// LB namespace. Panics (with its stderr) when it fails.
pub fn backends(c: &Cluster) -> serde_json::Value {
    backends_with(c, &[])
}

/// Like [`backends`], with more arguments (`--pin-path DIR`: while the
/// file on disk is invalid, the CLI cannot take the pin path from it).
pub fn backends_with(c: &Cluster, more: &[&str]) -> serde_json::Value {
    let mut args = vec!["backends", "--json", "--config", c.config.to_str().unwrap()];
    args.extend_from_slice(more);
    let out = cli(&c.lb, &args).unwrap();
    assert!(
        out.status.success(),
        "kube-xdp backends failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-xdp backends --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The first service's backends, in the CLI's order.
pub fn backend_list(c: &Cluster) -> Vec<serde_json::Value> {
    backends(c)[0]["backends"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The first service's backend states (`UP`, `DOWN`, `DRAIN`).
pub fn states(c: &Cluster) -> Vec<String> {
    backend_list(c)
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Backend name → state, for the first service.
pub fn states_by_name(c: &Cluster) -> HashMap<String, String> {
    backend_list(c)
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits (at most `limit`) until `cond` holds; returns how long it took,
/// or `None` when it never did. Polls every 50 ms.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    // Bounded in count as well as in time.
    for _ in 0..(limit.as_millis() / 50 + 2) {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits (bounded, 15 s) until the first service has `n` backends, all UP.
pub fn wait_all_up(c: &Cluster, n: usize) {
    let mut last = Vec::new();
    let ok = wait_for(Duration::from_secs(15), || {
        last = states(c);
        last.len() == n && last.iter().all(|s| s == "UP")
    });
    assert!(ok.is_some(), "backends not all UP within 15 s: {last:?}");
}

/// Waits (bounded by `limit`) until backend `name` of the first service is
/// in `state`; returns how long that took.
pub fn wait_state(c: &Cluster, name: &str, state: &str, limit: Duration) -> Duration {
    let mut last = HashMap::new();
    wait_for(limit, || {
        last = states_by_name(c);
        last.get(name).is_some_and(|s| s == state)
    })
    .unwrap_or_else(|| panic!("{name} not {state} within {limit:?}: {last:?}"))
}

/// Waits (bounded by `limit`) until backend `name` of the first service is
/// DOWN *and* holds no slot of the pool's live Maglev table (`share` 0);
/// returns how long that took. The daemon rewrites the table before it
/// marks the backend DOWN (so that no new flow is refused meanwhile, see
/// `failover_never_refuses_a_new_connection_while_healthy_backends_remain`);
/// tests wait for both so that they never look between the two writes.
pub fn wait_out_of_pool(c: &Cluster, name: &str, limit: Duration) -> Duration {
    let mut last = Vec::new();
    wait_for(limit, || {
        last = backend_list(c);
        last.iter()
            .any(|b| b["name"] == name && b["state"] == "DOWN" && b["share"].as_f64() == Some(0.0))
    })
    .unwrap_or_else(|| panic!("{name} not DOWN with share 0 within {limit:?}: {last:?}"))
}

/// The daemon's pid, from the pid file in `run_dir`.
pub fn daemon_pid(c: &Cluster) -> Option<i32> {
    std::fs::read_to_string(c.run_dir.join("kube-xdp.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S …": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// `kube-xdp reload --config FILE` in the LB namespace: (success, stdout
/// and stderr together).
pub fn reload(c: &Cluster) -> (bool, String) {
    let out = cli(&c.lb, &["reload", "--config", c.config.to_str().unwrap()]).unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
