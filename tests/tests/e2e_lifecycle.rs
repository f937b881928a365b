//! End to end: the daemon's life cycle — reloads, a SIGKILL and a restart
//! that adopts the pins, invalid reloads, stop and detach — as a client of
//! the VIP observes it.

use kube_xdp_tests::{
    daemon::{Daemon, cli},
    e2e_util::{
        CHECK_INTERVAL, EchoConn, Pinger, Service, alive, backend, backend_list, backends_with,
        connect_many, daemon_pid, reload, states, try_connect, vip, wait_all_up, wait_for,
    },
    require_root,
    servers::TcpServer,
    topology::Cluster,
};
use std::time::{Duration, Instant};

/// One TCP server per backend on `port`, named `cpI`.
fn apiservers(c: &Cluster, port: u16) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| TcpServer::start(&c.backends[i], backend(i, port), &format!("cp{i}")).unwrap())
        .collect()
}

/// Waits (bounded, 5 s) until the pinger has made 3 more exchanges, and
/// fails when it has failed.
fn still_echoing(pinger: &Pinger, when: &str, log: &dyn Fn() -> String) {
    let before = pinger.ok();
    let moved = wait_for(Duration::from_secs(5), || {
        pinger.failure().is_some() || pinger.ok() >= before + 3
    });
    if let Some(f) = pinger.failure() {
        panic!("the long-lived connection failed ({when}): {f}\n{}", log());
    }
    assert!(
        moved.is_some(),
        "the long-lived connection stalled ({when}): {} exchanges\n{}",
        pinger.ok(),
        log()
    );
}

#[test]
fn long_lived_connection_survives_reload_weight_change_and_daemon_sigkill() {
    require_root();
    let c = Cluster::new(4).unwrap();
    let servers = apiservers(&c, 6443);
    // A slow rise (8 × 200 ms): after the restart, a backend that had to
    // pass its checks again would leave the pool empty for over a second.
    const RISE: u32 = 8;
    let mut service = Service::apiserver(4).check("rise", &RISE.to_string());
    let fourth = service.backends.pop().unwrap();
    c.write_config(&service.toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let conn = EchoConn::open(&c, vip(6443)).unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    let mut pinger = Pinger::start(conn, Duration::from_millis(100));
    still_echoing(&pinger, "at first", &|| daemon.log());

    // (a) A fourth backend, by reload.
    service.backends.push(fourth);
    c.write_config(&service.toml()).unwrap();
    let (ok, out) = reload(&c);
    assert!(
        ok,
        "adding a backend: reload failed: {out}\n{}",
        daemon.log()
    );
    wait_all_up(&c, 4);
    still_echoing(&pinger, "after adding a backend", &|| daemon.log());

    // (b) A weight change, by reload.
    service.backends[0].weight = Some(3);
    c.write_config(&service.toml()).unwrap();
    let (ok, out) = reload(&c);
    assert!(
        ok,
        "changing a weight: reload failed: {out}\n{}",
        daemon.log()
    );
    let list = backend_list(&c);
    let cp0 = list.iter().find(|b| b["name"] == "cp0").unwrap();
    assert_eq!(cp0["weight"], 3, "{list:?}");
    let share = cp0["share"].as_f64().unwrap();
    assert!(
        (0.4..0.6).contains(&share),
        "cp0 has weight 3 of 6: {list:?}"
    );
    still_echoing(&pinger, "after a weight change", &|| daemon.log());

    // (c) SIGKILL: the program stays attached, the maps pinned.
    let pid = daemon_pid(&c).expect("the daemon's pid file");
    daemon.signal(libc::SIGKILL);
    assert!(
        wait_for(Duration::from_secs(5), || !alive(pid)).is_some(),
        "the daemon survived SIGKILL"
    );
    let old_log = daemon.log();
    let seen = connect_many(&c, vip(6443), 20, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("with the daemon dead: {e:#}\n{old_log}"));
    assert_eq!(seen.values().sum::<usize>(), 20);
    let s = states(&c);
    assert!(
        s.len() == 4 && s.iter().all(|s| s == "UP"),
        "`kube-xdp backends` reads the pins with the daemon dead: {s:?}"
    );
    still_echoing(&pinger, "with the daemon dead", &|| old_log.clone());

    // The daemon comes back and adopts the pinned states: no pool goes
    // empty while the checks would still be rising.
    let restart = Instant::now();
    let daemon2: Daemon = c
        .start_daemon()
        .unwrap_or_else(|e| panic!("restart: {e:#}\nbefore the kill:\n{old_log}"));
    let up_after = restart.elapsed();
    let right_after = Instant::now();
    let seen = connect_many(&c, vip(6443), 10, Duration::from_secs(1)).unwrap_or_else(|e| {
        panic!(
            "right after the restart: {e:#}\n{}\nbefore the kill:\n{old_log}",
            daemon2.log()
        )
    });
    let s = states(&c);
    let checked_within = right_after.elapsed();
    eprintln!(
        "restart took {up_after:?}; 10 connections and the states checked {checked_within:?} after it: {seen:?} {s:?}"
    );
    assert_eq!(seen.values().sum::<usize>(), 10);
    assert!(
        s.len() == 4 && s.iter().all(|s| s == "UP"),
        "the pinned states are adopted: {s:?}\n{}",
        daemon2.log()
    );
    assert!(
        checked_within < CHECK_INTERVAL * (RISE - 2),
        "too slow to tell adoption from rising checks: {checked_within:?}"
    );
    still_echoing(&pinger, "after the restart", &|| daemon2.log());
    std::thread::sleep(Duration::from_millis(500));
    let (exchanges, failure) = pinger.finish();
    eprintln!(
        "the long-lived connection to {} made {exchanges} exchanges",
        pinger.name
    );
    assert!(failure.is_none(), "{failure:?}\n{}", daemon2.log());
    drop(daemon);
    drop(servers);
}

/// The daemon's log lines mentioning a failed reload.
fn failed_reloads(log: &str) -> usize {
    log.lines().filter(|l| l.contains("reload failed")).count()
}

/// Two backends, serving; returns the cluster, the servers and the
/// daemon, and the valid service.
fn serving_two() -> (Cluster, Vec<TcpServer>, Daemon, Service) {
    require_root();
    let c = Cluster::new(2).unwrap();
    let servers = apiservers(&c, 6443);
    let service = Service::apiserver(2);
    c.write_config(&service.toml()).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 2);
    (c, servers, daemon, service)
}

/// Alive, still both backends UP, and new connections work.
fn still_serving(c: &Cluster, daemon: &Daemon, pid: i32, when: &str) {
    assert!(alive(pid), "{when}: the daemon died\n{}", daemon.log());
    // The file on disk may be the invalid one: name the pins explicitly.
    let pins = c.pins.path().to_str().unwrap();
    let s: Vec<String> = backends_with(c, &["--pin-path", pins])[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(s, ["UP", "UP"], "{when}\n{}", daemon.log());
    let seen = connect_many(c, vip(6443), 10, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("{when}: {e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 10);
}

/// SIGHUP with an invalid file: logged, ignored; the old config serves.
fn invalid_file_on_sighup(c: &Cluster, daemon: &Daemon, service: &Service, pid: i32) {
    let before = failed_reloads(&daemon.log());
    c.write_config(&service.clone().check("another_unknown_key", "7").toml())
        .unwrap();
    daemon.signal(libc::SIGHUP);
    let logged = wait_for(Duration::from_secs(5), || {
        failed_reloads(&daemon.log()) > before
    });
    assert!(
        logged.is_some(),
        "no failed reload logged after SIGHUP with an invalid file\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("another_unknown_key"),
        "the log names the bad key\n{}",
        daemon.log()
    );
    still_serving(c, daemon, pid, "after SIGHUP with an invalid file");
}

/// The (1-based) number of the config file's first line containing
/// `text`.
fn line_of(c: &Cluster, text: &str) -> String {
    let file = std::fs::read_to_string(&c.config).unwrap();
    let n = file.lines().position(|l| l.contains(text)).unwrap() + 1;
    n.to_string()
}

/// Whether `out` names line `line` (`FILE:LINE` or `line LINE`).
fn names_line(out: &str, line: &str) -> bool {
    [
        format!(":{line}:"),
        format!(":{line} "),
        format!("line {line}"),
    ]
    .iter()
    .any(|p| out.contains(p.as_str()))
}

#[test]
fn invalid_reload_keeps_the_old_config_serving() {
    let (c, servers, daemon, mut service) = serving_two();
    let pid = daemon_pid(&c).expect("the daemon's pid file");
    let config = c.config.display().to_string();

    // An unknown key.
    c.write_config(&service.clone().with("no_such_key = 1").toml())
        .unwrap();
    let (ok, out) = reload(&c);
    assert!(!ok, "a file with an unknown key was accepted: {out}");
    let line = line_of(&c, "no_such_key");
    assert!(
        out.contains("no_such_key") && out.contains(&config) && names_line(&out, &line),
        "the error names the file, the line ({line}) and the key: {out}\n{}",
        daemon.log()
    );
    still_serving(&c, &daemon, pid, "after an unknown key");

    // A port range backwards.
    let mut backwards = service.clone().check("port", "6443");
    backwards.ports = "ports = \"32767-30000\"".into();
    c.write_config(&backwards.toml()).unwrap();
    let (ok, out) = reload(&c);
    assert!(!ok, "a backwards port range was accepted: {out}");
    let line = line_of(&c, "ports = \"32767-30000\"");
    assert!(
        out.contains("ports") && out.contains(&config) && names_line(&out, &line),
        "the error names the file, the line ({line}) and the key: {out}\n{}",
        daemon.log()
    );
    still_serving(&c, &daemon, pid, "after a backwards port range");

    invalid_file_on_sighup(&c, &daemon, &service, pid);

    // A valid file again, with a visible change.
    service.backends[1].weight = Some(2);
    c.write_config(&service.toml()).unwrap();
    let (ok, out) = reload(&c);
    assert!(ok, "a valid file was rejected: {out}\n{}", daemon.log());
    let list = backend_list(&c);
    let cp1 = list.iter().find(|b| b["name"] == "cp1").unwrap();
    assert_eq!(cp1["weight"], 2, "the valid reload applied: {list:?}");
    still_serving(&c, &daemon, pid, "after a valid reload");
    drop(servers);
}

/// `ip -n LB link show eth0`.
fn lb_link(c: &Cluster) -> String {
    let out = c.lb.ip(&["link", "show", "eth0"]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn detach_removes_the_program_and_the_pins() {
    require_root();
    let c = Cluster::new(2).unwrap();
    let servers = apiservers(&c, 6443);
    c.write_config(&Service::apiserver(2).toml()).unwrap();
    let mut daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 2);
    assert!(lb_link(&c).contains("xdp"), "{}", lb_link(&c));

    // SIGTERM: the daemon exits, the program stays and keeps forwarding.
    let status = daemon.stop().unwrap();
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        daemon.log()
    );
    let link = lb_link(&c);
    assert!(link.contains("xdp"), "still attached after SIGTERM: {link}");
    let seen = connect_many(&c, vip(6443), 10, Duration::from_secs(3))
        .unwrap_or_else(|e| panic!("with the daemon stopped: {e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 10);
    assert!(c.pins.path().exists());

    // detach: program and pins gone; the kernel now answers for the VIP,
    // where nothing listens on 6443.
    let out = cli(&c.lb, &["detach", "--config", c.config.to_str().unwrap()]).unwrap();
    assert!(
        out.status.success(),
        "detach failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut link = String::new();
    let gone = wait_for(Duration::from_secs(3), || {
        link = lb_link(&c);
        !link.contains("xdp")
    });
    assert!(gone.is_some(), "still attached after detach: {link}");
    assert!(
        !c.pins.path().exists(),
        "{} still exists",
        c.pins.path().display()
    );
    let (r, took) = try_connect(&c, vip(6443), Duration::from_secs(3));
    let Err(e) = r else {
        panic!("a connection to the VIP succeeded after detach")
    };
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{e} after {took:?}"
    );
    drop(servers);
}
