//! End to end: the real daemon in the namespace topology, real TCP
//! servers, what a client observes.

use kube_xdp_tests::{
    e2e_util::{apiserver_config, wait_all_up},
    require_root,
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{collections::HashMap, net::SocketAddr, time::Duration};

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
