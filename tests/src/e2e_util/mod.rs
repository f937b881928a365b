//! Shared pieces of the end-to-end tests (`tests/tests/e2e*.rs`): service
//! configurations, `kube-xdp backends` as data, bounded waits, short and
//! long-lived client connections through the VIP.
//!
//! Every wait here is bounded in time and every loop in count; every
//! connection is made from the client namespace of the test's own
//! [`Cluster`], to addresses in 198.18.0.0/24.
//!
//! `mod.rs` holds the service configurations and addresses; `state.rs`
//! the daemon as the CLI shows it and the waits on it; `connections.rs`
//! the client connections.

mod connections;
pub mod kubernetes;
mod state;

pub use connections::{EchoConn, Pinger, connect_many, setsockopt_int, try_connect};
pub use state::{
    alive, backend_list, backends, backends_with, daemon_pid, reload, states, states_by_name,
    wait_all_up, wait_for, wait_out_of_pool, wait_state,
};

use crate::{
    servers::TcpServer,
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    net::SocketAddr,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

/// The spread test's service: kube-apiserver on VIP:6443 over `backends`
/// backends, TCP checks every 200 ms, fall 2, rise 1.
pub fn apiserver_config(backends: usize) -> String {
    let mut s = format!(
        "[[service]]\nname = \"kube-apiserver\"\nvip = \"{VIP}\"\nport = 6443\n\n\
         [service.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 1\n"
    );
    for i in 0..backends {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"cp{i}\"\naddress = \"{}\"\n",
            backend_addr(i)
        ));
    }
    s
}

/// Health-check interval used by [`Service`]'s default check.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// One `[[service.backend]]`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub weight: Option<u32>,
}

/// One `[[service]]` with its health check and backends, as TOML.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// `port = 6443` or `ports = "30000-32767"`.
    pub ports: String,
    /// More service-level lines (`on_backend_down = "reset"`, …).
    pub extra: Vec<String>,
    /// The `[service.health_check]` body.
    pub check: Vec<String>,
    pub backends: Vec<Backend>,
}

impl Service {
    /// kube-apiserver on VIP:6443 over backends `cp0..cpN` (backend `i` at
    /// [`backend_addr`]`(i)`), TCP checks every 200 ms (timeout 100 ms),
    /// fall 2, rise 2.
    pub fn apiserver(backends: usize) -> Self {
        Service {
            name: "kube-apiserver".into(),
            ports: "port = 6443".into(),
            extra: Vec::new(),
            check: vec![
                "kind = \"tcp\"".into(),
                "interval = \"200ms\"".into(),
                "timeout = \"100ms\"".into(),
                "fall = 2".into(),
                "rise = 2".into(),
            ],
            backends: (0..backends)
                .map(|i| Backend {
                    name: format!("cp{i}"),
                    address: backend_addr(i),
                    port: None,
                    weight: None,
                })
                .collect(),
        }
    }

    /// Sets (or replaces) a health-check key.
    pub fn check(mut self, key: &str, value: &str) -> Self {
        let prefix = format!("{key} =");
        self.check.retain(|l| !l.starts_with(&prefix));
        self.check.push(format!("{key} = {value}"));
        self
    }

    /// Adds a service-level line.
    pub fn with(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    pub fn toml(&self) -> String {
        let mut s = format!(
            "[[service]]\nname = \"{}\"\nvip = \"{VIP}\"\n{}\n",
            self.name, self.ports
        );
        for l in &self.extra {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[service.health_check]\n");
        for l in &self.check {
            s.push_str(l);
            s.push('\n');
        }
        for b in &self.backends {
            s.push_str(&format!(
                "\n[[service.backend]]\nname = \"{}\"\naddress = \"{}\"\n",
                b.name, b.address
            ));
            if let Some(p) = b.port {
                s.push_str(&format!("port = {p}\n"));
            }
            if let Some(w) = b.weight {
                s.push_str(&format!("weight = {w}\n"));
            }
        }
        s
    }
}

/// `VIP:port`.
pub fn vip(port: u16) -> SocketAddr {
    format!("{VIP}:{port}").parse().unwrap()
}

/// `backend_addr(i):port`.
pub fn backend(i: usize, port: u16) -> SocketAddr {
    format!("{}:{port}", backend_addr(i)).parse().unwrap()
}

/// One test of a test binary at a time, for tests that load the machine
/// or must not be slowed down by one that does.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One TCP server per backend on `port`, named `cpI`.
pub fn tcp_servers(c: &Cluster, port: u16) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| TcpServer::start(&c.backends[i], backend(i, port), &format!("cp{i}")).unwrap())
        .collect()
}
