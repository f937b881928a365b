//! How long `kube-xdp reload` takes to add, and to remove, a NodePort
//! service `ports = "30000-32767"`, each reload checked in the pinned maps
//! and by connections.

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use kube_xdp::datapath::be_addr;
use kube_xdp_common::map_name;
use kube_xdp_tests::{
    daemon::Daemon,
    e2e_util::{Backend, Service, backend, backends, reload, vip, wait_all_up, wait_for},
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    net::{Ipv4Addr, TcpStream},
    time::{Duration, Instant},
};

use super::{BACKENDS, min_median, ms};

/// Reload repetitions (each: add, then remove).
const RELOAD_REPS: usize = 5;
/// The NodePort range, and the ports the backends serve in it.
const FIRST_PORT: u16 = 30000;
const LAST_PORT: u16 = 32767;
const PORTS: usize = (LAST_PORT - FIRST_PORT) as usize + 1;

/// The service entries the pinned `VIPS` map counts for the VIP: one per
/// (port, protocol) of every service on it, written by the daemon after
/// the service entries themselves.
fn vip_entries(c: &Cluster) -> u32 {
    let path = c.pins.path().join(map_name::VIPS);
    let data = MapData::from_pin(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let map: BpfHashMap<MapData, u32, u32> = Map::from_map_data(data)
        .and_then(BpfHashMap::try_from)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let vip: Ipv4Addr = VIP.parse().unwrap();
    map.get(&be_addr(vip), 0).unwrap_or(0)
}

/// The seconds since midnight (UTC) of a tracing text log line
/// (`2025-01-01T12:34:56.123456Z  INFO …`).
fn log_time(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split_once('T')?.1;
    let t = t.trim_end_matches('Z');
    let mut parts = t.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The daemon's own time for its last reload: from its "reload requested"
/// log line to the "reload applied" line after it.
fn daemon_side(log: &str) -> Option<Duration> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.iter().rposition(|l| l.contains("reload requested"))?;
    let end = lines[start..]
        .iter()
        .find(|l| l.contains("reload applied"))?;
    let mut d = log_time(end)? - log_time(lines[start])?;
    if d < 0.0 {
        d += 86_400.0;
    }
    Some(Duration::from_secs_f64(d))
}

/// The NodePort service: backends `wI` at the cluster's backend addresses,
/// the client's port kept, TCP checks on 30000 (every 200 ms, fall 2,
/// rise 1).
fn nodeports() -> Service {
    Service {
        name: "nodeports".into(),
        ports: format!("ports = \"{FIRST_PORT}-{LAST_PORT}\""),
        extra: Vec::new(),
        check: Service::apiserver(0)
            .check("port", &FIRST_PORT.to_string())
            .check("rise", "1")
            .check,
        backends: (0..BACKENDS)
            .map(|i| Backend {
                name: format!("w{i}"),
                address: backend_addr(i),
                port: None,
                weight: None,
            })
            .collect(),
    }
}

/// The NodePort service as `kube-xdp backends --json` shows it, if there.
fn nodeport_view(c: &Cluster) -> Option<serde_json::Value> {
    backends(c)
        .as_array()?
        .iter()
        .find(|s| s["first_port"] == FIRST_PORT)
        .cloned()
}

fn timed_reload(c: &Cluster, daemon: &Daemon, what: &str) -> (Duration, Duration) {
    let t = Instant::now();
    let (ok, out) = reload(c);
    let took = t.elapsed();
    assert!(ok, "{what}: reload failed: {out}\n{}", daemon.log());
    let inside = daemon_side(&daemon.log())
        .unwrap_or_else(|| panic!("{what}: no reload in the daemon's log\n{}", daemon.log()));
    (took, inside)
}

/// Adding and removing a 2768-port NodePort service by `kube-xdp reload`.
pub(super) fn reload_nodeport() -> String {
    eprintln!("bench daemon: reloading a {PORTS}-port NodePort service");
    let c = Cluster::new(BACKENDS).unwrap();
    let mut servers = Vec::new();
    for i in 0..BACKENDS {
        servers
            .push(TcpServer::start(&c.backends[i], backend(i, 6443), &format!("cp{i}")).unwrap());
        for port in [FIRST_PORT, LAST_PORT] {
            servers.push(
                TcpServer::start(&c.backends[i], backend(i, port), &format!("w{i}-{port}"))
                    .unwrap(),
            );
        }
    }
    let base = Service::apiserver(BACKENDS).toml();
    let with = format!("{base}\n{}", nodeports().toml());
    c.write_config(&base).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, BACKENDS);
    assert_eq!(vip_entries(&c), 1, "only VIP:6443 at first");

    let (mut add, mut add_inside, mut remove, mut remove_inside) = (vec![], vec![], vec![], vec![]);
    for rep in 0..RELOAD_REPS {
        // Add: the reload must have written every port's entry, and the
        // service must serve on both ends of the range once its backends'
        // first check passed.
        c.write_config(&with).unwrap();
        let (took, inside) = timed_reload(&c, &daemon, "adding the NodePort service");
        let entries = vip_entries(&c);
        assert_eq!(
            entries as usize,
            1 + PORTS,
            "rep {rep}: right after the reload the VIP has {entries} service entries\n{}",
            daemon.log()
        );
        let view = nodeport_view(&c).expect("the NodePort service in `kube-xdp backends`");
        assert_eq!(view["last_port"], LAST_PORT, "{view}");
        assert_eq!(view["backends"].as_array().map(Vec::len), Some(BACKENDS));
        add.push(took);
        add_inside.push(inside);
        let up = wait_for(Duration::from_secs(5), || {
            nodeport_view(&c).is_some_and(|v| {
                v["backends"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|b| b["state"] == "UP"))
            })
        });
        assert!(
            up.is_some(),
            "rep {rep}: the NodePort backends never came UP\n{}",
            daemon.log()
        );
        for port in [FIRST_PORT, LAST_PORT] {
            let name = c
                .client
                .run(move || Ok(whoami(vip(port), Duration::from_secs(2))?))
                .unwrap_or_else(|e| panic!("rep {rep}: VIP:{port}: {e:#}\n{}", daemon.log()));
            assert!(
                name.ends_with(&format!("-{port}")),
                "VIP:{port} answered by {name}"
            );
        }

        // Remove: every entry gone; VIP:30000 reaches the LB's own kernel,
        // where nothing listens.
        c.write_config(&base).unwrap();
        let (took, inside) = timed_reload(&c, &daemon, "removing the NodePort service");
        let entries = vip_entries(&c);
        assert_eq!(
            entries,
            1,
            "rep {rep}: right after the removal the VIP has {entries} service entries\n{}",
            daemon.log()
        );
        assert!(nodeport_view(&c).is_none(), "the NodePort service is gone");
        let refused = c
            .client
            .run(|| {
                Ok(TcpStream::connect_timeout(
                    &vip(FIRST_PORT),
                    Duration::from_secs(2),
                ))
            })
            .unwrap();
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
            "rep {rep}: VIP:{FIRST_PORT} after the removal: {refused:?}"
        );
        remove.push(took);
        remove_inside.push(inside);
    }
    drop(daemon);
    drop(servers);
    drop(c);

    let row = |what: &str, cli: Vec<Duration>, inside: Vec<Duration>| {
        let (lo, med) = min_median(cli);
        let (ilo, imed) = min_median(inside);
        format!(
            "| {what} | {} | {} | {} | {} |\n",
            ms(lo),
            ms(med),
            ms(ilo),
            ms(imed)
        )
    };
    format!(
        "Applying a reload of a NodePort service `ports = \"{FIRST_PORT}-{LAST_PORT}\"` ({PORTS} service entries, {BACKENDS} backends) \
         through the running daemon, {RELOAD_REPS} repetitions: the daemon starts with only the kube-apiserver service \
         (VIP:6443, three backends UP); the file then gains the NodePort service and `kube-xdp reload` is timed, \
         then loses it and the reload is timed again. `kube-xdp reload` returns once the daemon has applied the file \
         (it sends SIGHUP, then polls the daemon's status file every 20 ms: its time is the CLI's own start plus whole \
         polling intervals); the daemon's own time runs from its `reload requested` to its `reload applied` log line. \
         After every reload the pinned `VIPS` map is read: it counts {} service entries for the VIP after the addition \
         and 1 after the removal. After each addition both ends of the range serve through the VIP once the backends' \
         first check passed; after each removal VIP:{FIRST_PORT} is refused by the LB's own kernel.\n\n\
         | reload | `kube-xdp reload` min | median | in the daemon min | median |\n|---|---:|---:|---:|---:|\n{}{}",
        1 + PORTS,
        row("add the NodePort service", add, add_inside),
        row("remove it", remove, remove_inside),
    )
}
