//! End to end: failover. Backends die, come back, fail their health check
//! while still serving; what a client of the VIP observes.

use kube_xdp_tests::{
    daemon::Daemon,
    e2e_util::{
        Backend, CHECK_INTERVAL, EchoConn, Service, backend, connect_many, states, states_by_name,
        try_connect, vip, wait_all_up, wait_for, wait_out_of_pool, wait_state,
    },
    require_root,
    servers::TcpServer,
    topology::{Cluster, backend_addr},
};
use std::time::{Duration, Instant};

const FALL: u32 = 2;
const RISE: u32 = 2;

/// One TCP server per backend on `port`, named `cpI`.
fn apiservers(c: &Cluster, port: u16) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| TcpServer::start(&c.backends[i], backend(i, port), &format!("cp{i}")).unwrap())
        .collect()
}

#[test]
fn killed_backend_gets_no_new_connections_after_fall_times_interval() {
    require_root();
    let c = Cluster::new(3).unwrap();
    let mut servers = apiservers(&c, 6443);
    c.write_config(&Service::apiserver(3).toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let timeout = Duration::from_secs(3);
    let seen = connect_many(&c, vip(6443), 30, timeout)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert!(seen.contains_key("cp1"), "cp1 serves at first: {seen:?}");

    // cp1 dies: its listener closes, its kernel refuses the checks.
    servers[1].stop();
    let took = wait_state(&c, "cp1", "DOWN", Duration::from_secs(5));
    let expected = CHECK_INTERVAL * FALL;
    eprintln!("cp1 DOWN {took:?} after it stopped (fall × interval = {expected:?})");
    // And out of the pool's table (see wait_out_of_pool).
    wait_out_of_pool(&c, "cp1", Duration::from_secs(5));
    assert!(
        took <= expected + Duration::from_millis(1500),
        "cp1 took {took:?} to go DOWN, fall × interval is {expected:?}\n{}",
        daemon.log()
    );
    let seen = connect_many(&c, vip(6443), 30, timeout).unwrap_or_else(|e| {
        panic!(
            "a new connection failed with cp1 DOWN: {e:#}\n{}",
            daemon.log()
        )
    });
    assert_eq!(seen.values().sum::<usize>(), 30);
    assert!(
        !seen.contains_key("cp1"),
        "the dead backend got connections: {seen:?}"
    );
    let s = states_by_name(&c);
    assert_eq!(s["cp1"], "DOWN", "{s:?}");
    assert_eq!(s["cp0"], "UP", "{s:?}");
    assert_eq!(s["cp2"], "UP", "{s:?}");

    // cp1 comes back on the same address.
    servers[1] = TcpServer::start(&c.backends[1], backend(1, 6443), "cp1").unwrap();
    let took = wait_state(&c, "cp1", "UP", Duration::from_secs(5));
    eprintln!(
        "cp1 UP {took:?} after it restarted (rise × interval = {:?})",
        CHECK_INTERVAL * RISE
    );
    let seen = connect_many(&c, vip(6443), 60, timeout)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 60);
    assert!(
        seen.get("cp1").copied().unwrap_or(0) >= 1,
        "the restored backend gets traffic again: {seen:?}"
    );
    drop(servers);
}

/// Three backends serving 6443 and checked on 8080 (a separate server per
/// backend), `on_backend_down` as given; a long-lived connection through
/// the VIP; then that connection's backend fails its check (only its 8080
/// server stops) while its 6443 server keeps serving. Returns the
/// connection, once `kube-xdp backends` shows its backend DOWN.
struct CheckPortSetup {
    conn: EchoConn,
    daemon: Daemon,
    _health: Vec<TcpServer>,
    _api: Vec<TcpServer>,
    c: Cluster,
}

fn long_lived_connection_whose_backend_goes_down(on_backend_down: Option<&str>) -> CheckPortSetup {
    require_root();
    let c = Cluster::new(3).unwrap();
    let api = apiservers(&c, 6443);
    let mut health = apiservers(&c, 8080);
    let mut service = Service::apiserver(3).check("port", "8080");
    if let Some(mode) = on_backend_down {
        service = service.with(&format!("on_backend_down = \"{mode}\""));
    }
    c.write_config(&service.toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);

    let mut conn =
        EchoConn::open(&c, vip(6443)).unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    for _ in 0..3 {
        conn.exchange()
            .unwrap_or_else(|e| panic!("echo before the failure: {e}\n{}", daemon.log()));
    }
    let i: usize = conn
        .name
        .strip_prefix("cp")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected name {:?}", conn.name));
    health[i].stop();
    wait_out_of_pool(&c, &conn.name, Duration::from_secs(5));
    CheckPortSetup {
        conn,
        daemon,
        _health: health,
        _api: api,
        c,
    }
}

#[test]
fn long_lived_connection_survives_its_backend_going_down_under_keep() {
    // Bound in this order so that they drop in reverse: the connection
    // and the daemon first, the namespaces last.
    let CheckPortSetup {
        c,
        _api,
        _health,
        daemon,
        mut conn,
    } = long_lived_connection_whose_backend_goes_down(None);
    let down = conn.name.clone();
    // The established connection keeps being served for a while after the
    // DOWN (default keep), like HAProxy and Cilium.
    for k in 0..15 {
        conn.exchange().unwrap_or_else(|e| {
            panic!(
                "exchange {k} after {down} went DOWN failed ({:?}): {e}\n{}",
                e.kind(),
                daemon.log()
            )
        });
        std::thread::sleep(Duration::from_millis(100));
    }
    // New connections avoid the DOWN backend, although its 6443 server
    // still answers.
    let seen = connect_many(&c, vip(6443), 30, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert!(!seen.contains_key(&down), "{down} is DOWN: {seen:?}");
    assert_eq!(states_by_name(&c)[&down], "DOWN");
    conn.exchange()
        .unwrap_or_else(|e| panic!("the long-lived connection broke: {e}\n{}", daemon.log()));
}

#[test]
fn long_lived_connection_is_reset_when_its_backend_goes_down_under_reset() {
    // Bound in this order so that they drop in reverse: the connection
    // and the daemon first, the namespaces last.
    let CheckPortSetup {
        c,
        _api,
        _health,
        daemon,
        mut conn,
    } = long_lived_connection_whose_backend_goes_down(Some("reset"));
    let down = conn.name.clone();
    conn.set_read_timeout(Duration::from_secs(2)).unwrap();
    // The next packet of the flow is answered with a RST: the next
    // exchange fails promptly (not a timeout). The first write may be
    // accepted by the local socket before the RST comes back, so allow a
    // second exchange.
    let start = Instant::now();
    let mut outcome = Ok(());
    for _ in 0..2 {
        outcome = conn.exchange();
        if outcome.is_err() {
            break;
        }
    }
    let took = start.elapsed();
    let err = match outcome {
        Ok(()) => panic!(
            "the connection to {down} still echoes after {down} went DOWN under on_backend_down = \"reset\"\n{}",
            daemon.log()
        ),
        Err(e) => e,
    };
    eprintln!(
        "the connection to the DOWN backend failed after {took:?}: {err} ({:?})",
        err.kind()
    );
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionAborted
        ),
        "expected a reset, got {err} ({:?}) after {took:?}\n{}",
        err.kind(),
        daemon.log()
    );
    assert!(took < Duration::from_secs(1), "reset took {took:?}");
    // New connections still work, and avoid the DOWN backend.
    let seen = connect_many(&c, vip(6443), 20, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert!(!seen.contains_key(&down), "{down} is DOWN: {seen:?}");
}

#[test]
fn no_backend_refuses_connections_fast() {
    require_root();
    let c = Cluster::new(2).unwrap();
    c.write_config(&Service::apiserver(2).toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    let refused_fast = |when: &str| {
        for k in 0..5 {
            let (r, took) = try_connect(&c, vip(6443), Duration::from_secs(3));
            let e = r.err().unwrap_or_else(|| {
                panic!(
                    "{when}: connection {k} to the VIP succeeded\n{}",
                    daemon.log()
                )
            });
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{when}: connection {k}: {e} after {took:?}\n{}",
                daemon.log()
            );
            assert!(
                took < Duration::from_millis(500),
                "{when}: refused only after {took:?}"
            );
            eprintln!("{when}: refused in {took:?}");
        }
    };

    // A fresh start with nothing listening: every backend is DOWN.
    let s = states(&c);
    assert!(s.len() == 2 && s.iter().all(|s| s == "DOWN"), "{s:?}");
    refused_fast("no backend ever up");

    // Backends come up, serve, then all die.
    let mut servers = apiservers(&c, 6443);
    wait_all_up(&c, 2);
    connect_many(&c, vip(6443), 5, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    for s in &mut servers {
        s.stop();
    }
    let mut last = Vec::new();
    let all_down = wait_for(Duration::from_secs(5), || {
        last = states(&c);
        last.iter().all(|s| s == "DOWN")
    });
    assert!(all_down.is_some(), "not all DOWN: {last:?}");
    refused_fast("every backend went DOWN");
    drop(servers);
}

#[test]
fn nodeport_range_reaches_workers_on_the_same_port() {
    require_root();
    let c = Cluster::new(2).unwrap();
    let ports = [30080u16, 32000];
    let mut servers = Vec::new();
    for i in 0..2 {
        for port in ports {
            servers.push(
                TcpServer::start(&c.backends[i], backend(i, port), &format!("w{i}-{port}"))
                    .unwrap(),
            );
        }
    }
    let service = Service {
        name: "nodeports".into(),
        ports: "ports = \"30000-32767\"".into(),
        extra: Vec::new(),
        check: Service::apiserver(0).check("port", "30080").check,
        backends: (0..2)
            .map(|i| Backend {
                name: format!("w{i}"),
                address: backend_addr(i),
                port: None,
                weight: None,
            })
            .collect(),
    };
    c.write_config(&service.toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 2);
    for port in ports {
        let seen = connect_many(&c, vip(port), 30, Duration::from_secs(3))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
        assert_eq!(seen.values().sum::<usize>(), 30);
        for name in seen.keys() {
            assert!(
                name.ends_with(&format!("-{port}")),
                "VIP:{port} answered by {name}: {seen:?}"
            );
        }
        assert_eq!(seen.len(), 2, "both workers reached on {port}: {seen:?}");
    }
    drop(servers);
}

/// `kube-xdp stats --json`: the global `no_backend` counter.
fn no_backend(c: &Cluster) -> u64 {
    let out = kube_xdp_tests::daemon::cli(
        &c.lb,
        &["stats", "--json", "--config", c.config.to_str().unwrap()],
    )
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["counters"]["no_backend"].as_u64().unwrap()
}

#[test]
fn failover_never_refuses_a_new_connection_while_healthy_backends_remain() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    require_root();
    let c = Cluster::new(3).unwrap();
    let mut servers = apiservers(&c, 6443);
    c.write_config(&Service::apiserver(3).toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    assert_eq!(no_backend(&c), 0);

    // New connections all the time, from two client threads. Those that
    // reach cp1 between its death and its DOWN are refused by cp1's own
    // kernel; the LB itself must never refuse one for want of a backend
    // (`no_backend`) while cp0 and cp2 are UP.
    let stop = Arc::new(AtomicBool::new(false));
    let vip = vip(6443);
    let hammers: Vec<_> = (0..2)
        .map(|_| {
            let flag = stop.clone();
            c.client.spawn(move || {
                let mut made = 0u64;
                for _ in 0..200_000 {
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = std::net::TcpStream::connect_timeout(&vip, Duration::from_millis(300));
                    made += 1;
                }
                Ok(made)
            })
        })
        .collect();
    let mut per_round = Vec::new();
    for _ in 0..4 {
        let before = no_backend(&c);
        servers[1].stop();
        wait_state(&c, "cp1", "DOWN", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(200));
        per_round.push(no_backend(&c) - before);
        servers[1] = TcpServer::start(&c.backends[1], backend(1, 6443), "cp1").unwrap();
        wait_state(&c, "cp1", "UP", Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let made: u64 = hammers
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .sum();
    let refused = no_backend(&c);
    eprintln!(
        "{made} connections; refused by the LB for want of a backend: {refused} (per DOWN: {per_round:?})"
    );
    assert_eq!(
        refused,
        0,
        "the LB refused new connections (no_backend) while two backends were UP (per DOWN: {per_round:?})\n{}",
        daemon.log()
    );
    drop(servers);
}
