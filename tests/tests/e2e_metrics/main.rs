//! End to end: observability. The daemon's Prometheus endpoint (scraped
//! from inside the LB namespace, where its loopback address is private to
//! the test), `kube-xdp top --once` while traffic flows, and the JSON event
//! log.
//!
//! Shared here: the configuration, the servers, the waits and the
//! background traffic; one file per surface: `prometheus.rs`, `top.rs`,
//! `event_log.rs`.

mod event_log;
mod prometheus;
mod top;

use kube_xdp_tests::{
    daemon::cli,
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Loopback of the LB namespace: every test has its own.
const METRICS: &str = "127.0.0.1:9437";
const SERVICE: &str = "kube-apiserver";

/// The whole configuration file: the `[daemon]` table of
/// `Cluster::write_config` plus `metrics_listen`, and kube-apiserver over
/// `backends` backends with fast TCP checks; `weights[i]` for backend `i`.
fn config_text(c: &Cluster, weights: &[u32]) -> String {
    let mut s = format!(
        "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\nsnat_ports = \"20000-29999\"\n\
         metrics_listen = \"{METRICS}\"\n\n\
         [[service]]\nname = \"{SERVICE}\"\nvip = \"{VIP}\"\nport = 6443\n\n\
         [service.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 1\n",
        c.pins.path().display(),
        c.run_dir.display()
    );
    for (i, w) in weights.iter().enumerate() {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"cp{i}\"\naddress = \"{}\"\nweight = {w}\n",
            backend_addr(i)
        ));
    }
    s
}

fn servers(c: &Cluster) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| {
            let addr: SocketAddr = format!("{}:6443", backend_addr(i)).parse().unwrap();
            TcpServer::start(&c.backends[i], addr, &format!("cp{i}")).unwrap()
        })
        .collect()
}

fn vip() -> SocketAddr {
    format!("{VIP}:6443").parse().unwrap()
}

/// Waits (at most 15 s) until `kube-xdp backends --json` shows `n`
/// backends, all UP.
fn wait_all_up(c: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = cli(
            &c.lb,
            &["backends", "--json", "--config", c.config.to_str().unwrap()],
        )
        .unwrap();
        let states: Vec<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v[0]["backends"].as_array().map(|a| {
                    a.iter()
                        .map(|b| b["state"].as_str().unwrap_or("?").to_owned())
                        .collect()
                })
            })
            .unwrap_or_default();
        if states.len() == n && states.iter().all(|s| s == "UP") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends not all UP within 15 s: {states:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connects to the VIP over and over from the client namespace until
/// stopped (or 30 s pass); counts the connections.
struct Traffic {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Traffic {
    fn start(c: &Cluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (flag, n) = (stop.clone(), count.clone());
        let thread = c.client.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if whoami(vip(), Duration::from_secs(2)).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        Traffic {
            stop,
            count,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
