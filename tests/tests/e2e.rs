//! End to end: the real daemon in the namespace topology, real TCP
//! servers, what a client observes.

use kube_xdp_tests::{
    daemon::cli,
    require_root,
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

fn apiserver_config(backends: usize) -> String {
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

/// `kube-xdp backends --json`, from a second process.
fn backends(c: &Cluster) -> serde_json::Value {
    let out = cli(
        &c.lb,
        &["backends", "--json", "--config", c.config.to_str().unwrap()],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn states(c: &Cluster) -> Vec<String> {
    backends(c)[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits (bounded) until every backend is UP.
fn wait_all_up(c: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = states(c);
        if s.len() == n && s.iter().all(|s| s == "UP") {
            return;
        }
        assert!(Instant::now() < deadline, "backends not all UP: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn short_connections_spread_over_all_backends() {
    require_root();
    let c = Cluster::new(3).unwrap();
    let servers: Vec<TcpServer> = (0..3)
        .map(|i| {
            let addr: SocketAddr = format!("{}:6443", backend_addr(i)).parse().unwrap();
            TcpServer::start(&c.backends[i], addr, &format!("cp{i}")).unwrap()
        })
        .collect();
    c.write_config(&apiserver_config(3)).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);

    let vip: SocketAddr = format!("{VIP}:6443").parse().unwrap();
    let seen = c
        .client
        .run(move || {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for _ in 0..90 {
                let name = whoami(vip, Duration::from_secs(3))?;
                *seen.entry(name).or_default() += 1;
            }
            Ok(seen)
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.len(), 3, "all three backends reached: {seen:?}");
    assert!(seen.values().all(|n| *n <= 54), "none above 60%: {seen:?}");
    drop(servers);
}
