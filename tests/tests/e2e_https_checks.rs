//! End to end: HTTPS `GET /readyz` health checks decide who gets new
//! connections through the VIP — a backend answering 500 goes DOWN while
//! its port stays open; the check verifies the CA file and server name.
//!
//! The tests of this file take a lock so that they run one at a time:
//! they use 100 ms check timeouts that a 2-core machine under the load of
//! another test could miss.

use kube_xdp_tests::{
    e2e_util::{
        Service, backend, backend_list, connect_many, serial, states, states_by_name, tcp_servers,
        try_connect, vip, wait_all_up, wait_for, wait_out_of_pool, wait_state,
    },
    require_root,
    servers::{TcpServer, whoami},
    tls_server::{ReadyzServer, SelfSigned},
    topology::Cluster,
};
use std::{
    io::ErrorKind,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

/// The apiserver service, checked with `GET /readyz` over TLS on 8443.
fn readyz_service(backends: usize) -> Service {
    Service::apiserver(backends)
        .check("kind", "\"https\"")
        .check("path", "\"/readyz\"")
        .check("port", "8443")
        .check("interval", "\"200ms\"")
        .check("timeout", "\"100ms\"")
        .check("fall", "2")
        .check("rise", "2")
}

/// A stand-in API server per backend: TCP :6443 answering its name and
/// HTTPS /readyz on :8443.
fn apiservers_with_readyz(c: &Cluster, cert: &SelfSigned) -> (Vec<TcpServer>, Vec<ReadyzServer>) {
    let api = tcp_servers(c, 6443);
    let readyz = (0..c.backends.len())
        .map(|i| ReadyzServer::start(&c.backends[i], backend(i, 8443), cert).unwrap())
        .collect();
    (api, readyz)
}

#[test]
fn https_readyz_500_marks_a_backend_down_while_its_port_stays_open() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(3).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let (_api, readyz) = apiservers_with_readyz(&c, &cert);
    c.write_config(&readyz_service(3).check("tls_verify", "false").toml())
        .unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let timeout = Duration::from_secs(3);
    let seen = connect_many(&c, vip(6443), 30, timeout)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert!(seen.contains_key("cp1"), "cp1 serves at first: {seen:?}");

    // cp1's /readyz answers 500 (an apiserver shutting down, or with
    // etcd gone): its :6443 stays open.
    let start = Instant::now();
    readyz[1].ready.store(false, Ordering::Relaxed);
    let took = wait_state(&c, "cp1", "DOWN", Duration::from_secs(5));
    wait_out_of_pool(&c, "cp1", Duration::from_secs(5));
    eprintln!(
        "cp1 DOWN {took:?} after /readyz turned 500, out of the table after {:?}",
        start.elapsed()
    );
    let s = states_by_name(&c);
    assert_eq!(
        (s["cp0"].as_str(), s["cp1"].as_str(), s["cp2"].as_str()),
        ("UP", "DOWN", "UP"),
        "only cp1 is DOWN"
    );
    // The port itself is open: a direct connection from the client works.
    let direct = c
        .client
        .run(move || Ok(whoami(backend(1, 6443), Duration::from_secs(3))?))
        .unwrap_or_else(|e| panic!("cp1:6443 should still accept: {e:#}"));
    assert_eq!(direct, "cp1");
    let seen = connect_many(&c, vip(6443), 30, timeout).unwrap_or_else(|e| {
        panic!(
            "a new connection failed with cp1 DOWN: {e:#}\n{}",
            daemon.log()
        )
    });
    assert_eq!(seen.values().sum::<usize>(), 30);
    assert!(
        !seen.contains_key("cp1"),
        "the backend whose /readyz fails got new connections: {seen:?}"
    );
    let log = daemon.log();
    assert!(
        log.contains("cp1") && log.contains("DOWN"),
        "the daemon logs cp1's state change:\n{log}"
    );

    // /readyz answers 200 again: cp1 comes back.
    readyz[1].ready.store(true, Ordering::Relaxed);
    let took = wait_state(&c, "cp1", "UP", Duration::from_secs(5));
    eprintln!("cp1 UP {took:?} after /readyz turned 200");
    // Wait until the table holds it again before counting.
    let back = wait_for(Duration::from_secs(5), || {
        backend_list(&c)
            .iter()
            .any(|b| b["name"] == "cp1" && b["share"].as_f64().is_some_and(|s| s > 0.0))
    });
    assert!(
        back.is_some(),
        "cp1 back in the table: {:?}",
        backend_list(&c)
    );
    let seen = connect_many(&c, vip(6443), 60, timeout)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 60);
    assert!(
        seen.get("cp1").copied().unwrap_or(0) >= 1,
        "cp1 gets connections again: {seen:?}"
    );
}

#[test]
fn https_check_verifying_the_ca_file_and_server_name_brings_backends_up() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(3).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let (_api, _readyz) = apiservers_with_readyz(&c, &cert);
    let ca = c.dir.path().join("ca.crt");
    std::fs::write(&ca, &cert.pem).unwrap();
    c.write_config(
        &readyz_service(3)
            .check("tls_verify", "true")
            .check("ca_file", &format!("\"{}\"", ca.display()))
            .check("server_name", "\"kubernetes\"")
            .toml(),
    )
    .unwrap();
    let daemon = c.start_daemon().unwrap();
    let mut last = Vec::new();
    let took = wait_for(Duration::from_secs(10), || {
        last = states(&c);
        last.len() == 3 && last.iter().all(|s| s == "UP")
    });
    assert!(
        took.is_some(),
        "backends not all UP with a verified certificate: {last:?}\n{}",
        daemon.log()
    );
    let seen = connect_many(&c, vip(6443), 30, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 30);
}

#[test]
fn https_check_with_a_server_name_the_certificate_lacks_keeps_backends_down() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(2).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let (_api, _readyz) = apiservers_with_readyz(&c, &cert);
    let ca = c.dir.path().join("ca.crt");
    std::fs::write(&ca, &cert.pem).unwrap();
    c.write_config(
        &readyz_service(2)
            .check("tls_verify", "true")
            .check("ca_file", &format!("\"{}\"", ca.display()))
            .check("server_name", "\"not-kubernetes.example\"")
            .toml(),
    )
    .unwrap();
    let daemon = c.start_daemon().unwrap();
    // 2 s is ten check intervals: rise = 2 would have passed long ago.
    let up = wait_for(Duration::from_secs(2), || {
        states(&c).iter().any(|s| s == "UP")
    });
    assert!(
        up.is_none(),
        "a backend came UP though its certificate does not name the server_name: {:?}\n{}",
        states(&c),
        daemon.log()
    );
    // No usable backend: a client is refused at once, not left hanging.
    let (r, took) = try_connect(&c, vip(6443), Duration::from_secs(3));
    assert!(
        r.as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused),
        "connection with every backend DOWN: {r:?} after {took:?}"
    );
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
}
