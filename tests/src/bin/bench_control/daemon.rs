//! `bench daemon`: the two control-plane figures only the real daemon can
//! give, measured in the namespace topology of the end-to-end tests
//! ([`Cluster`]: a client, the LB and three backends on a bridge, all in
//! 198.18.0.0/24, removed on drop even when a step fails):
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

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use kube_xdp::datapath::{BackendState, Datapath, be_addr};
use kube_xdp_common::{map_name, stats::Counter};
use kube_xdp_tests::{
    daemon::Daemon,
    e2e_util::{Backend, Service, backend, backends, reload, vip, wait_all_up, wait_for},
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    net::{Ipv4Addr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const BACKENDS: usize = 3;
/// Reload repetitions (each: add, then remove).
const RELOAD_REPS: usize = 5;
/// Failover repetitions per (interval, fall).
const FAILOVER_REPS: usize = 3;
/// (interval in ms, fall).
const SETTINGS: &[(u64, u32)] = &[(200, 2), (500, 3), (1000, 3)];
/// The NodePort range, and the ports the backends serve in it.
const FIRST_PORT: u16 = 30000;
const LAST_PORT: u16 = 32767;
const PORTS: usize = (LAST_PORT - FIRST_PORT) as usize + 1;

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
fn reload_nodeport() -> String {
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

/// One connection attempt from the client loop.
struct Attempt {
    at: Instant,
    /// `Some(name)` when a server answered, `None` when refused.
    outcome: Result<Option<String>, std::io::ErrorKind>,
}

/// One failover: times after t0 (the dead server's stop).
struct Failover {
    /// The last new connection that went to the dead backend (refused, or
    /// answered by it before its listener closed).
    last_to_dead: Duration,
    /// When the pinned backend map first showed it DOWN.
    down: Duration,
    attempts: usize,
    /// Attempts that failed other than by a refusal: timed out, reset
    /// after the connect (none expected).
    other_failures: Vec<String>,
}

/// New connections to VIP:6443, every 2 ms, until `stop` (bounded: 20 s,
/// 10,000 attempts).
fn hammer(
    c: &Cluster,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Vec<Attempt>>> {
    let vip = vip(6443);
    c.client.spawn(move || {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..10_000 {
            if stop.load(Ordering::Relaxed) || start.elapsed() > Duration::from_secs(20) {
                break;
            }
            let at = Instant::now();
            let outcome = match whoami(vip, Duration::from_millis(300)) {
                Ok(name) => Ok(Some(name)),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(None),
                Err(e) => Err(e.kind()),
            };
            out.push(Attempt { at, outcome });
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(out)
    })
}

/// The pinned backend entry at `addr` for the apiserver service (port
/// 6443), its state.
fn pinned_state(dp: &Datapath, addr: Ipv4Addr) -> Option<BackendState> {
    dp.backends()
        .ok()?
        .into_iter()
        .find(|(_, b)| b.addr == addr && b.port == Some(6443))
        .map(|(_, b)| b.state)
}

fn one_failover(
    c: &Cluster,
    daemon: &Daemon,
    dp: &Datapath,
    servers: &mut [TcpServer],
    interval: Duration,
    fall: u32,
) -> Failover {
    let dead_addr: Ipv4Addr = backend_addr(1).parse().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let client = hammer(c, stop.clone());
    // A baseline of connections spread over the three.
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    servers[1].stop();
    let stopped = t0.elapsed();
    // Poll the pinned backend map (what `kube-xdp backends` reads) every
    // 2 ms until DOWN; bounded.
    let limit = interval * (fall + 3);
    let mut down = None;
    for _ in 0..(limit.as_millis() / 2 + 2) {
        if pinned_state(dp, dead_addr) == Some(BackendState::Down) {
            down = Some(t0.elapsed());
            break;
        }
        if t0.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Keep connecting a while after the DOWN: any later connection to
    // the dead backend would show.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let attempts = client.join().expect("client thread").expect("client loop");
    let down = down.unwrap_or_else(|| {
        panic!(
            "{dead_addr} not DOWN within {limit:?} of its server's stop\n{}",
            daemon.log()
        )
    });
    // `kube-xdp backends` agrees.
    let states = backends(c)[0]["backends"].clone();
    let cp1 = states
        .as_array()
        .and_then(|b| b.iter().find(|b| b["name"] == "cp1"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(cp1["state"], "DOWN", "`kube-xdp backends`: {states}");
    assert_eq!(
        cp1["share"].as_f64(),
        Some(0.0),
        "`kube-xdp backends`: {states}"
    );

    let before: Vec<&Attempt> = attempts.iter().filter(|a| a.at < t0).collect();
    assert!(
        before.iter().any(|a| a.outcome == Ok(Some("cp1".into()))),
        "cp1 got no connection in the baseline: the measurement would be empty"
    );
    assert!(
        before.iter().all(|a| a.outcome != Ok(None)),
        "a connection was refused while every backend was UP"
    );
    let to_dead =
        |a: &&Attempt| matches!(&a.outcome, Ok(None)) || a.outcome == Ok(Some("cp1".into()));
    let last = attempts
        .iter()
        .filter(to_dead)
        .map(|a| a.at)
        .max()
        .expect("baseline");
    let after_down = attempts
        .iter()
        .filter(|a| a.at >= t0 + down + Duration::from_millis(5))
        .filter(to_dead)
        .count();
    assert_eq!(
        after_down, 0,
        "connections went to the dead backend after the pinned map said DOWN"
    );
    let failed: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            let kind = a.outcome.as_ref().err()?;
            let rel = a.at.saturating_duration_since(t0).as_secs_f64() * 1e3
                - t0.saturating_duration_since(a.at).as_secs_f64() * 1e3;
            Some(format!("{kind:?} at t0{rel:+.0} ms"))
        })
        .collect();
    eprintln!(
        "  interval {interval:?} fall {fall}: stop took {stopped:?}, last to the dead backend {:?}, DOWN {down:?}, {} attempts, failed otherwise: {failed:?}",
        last.saturating_duration_since(t0),
        attempts.len()
    );
    Failover {
        last_to_dead: last.saturating_duration_since(t0),
        down,
        attempts: attempts.len(),
        other_failures: failed,
    }
}

/// Kill a backend's server; when do new connections stop going to it?
fn failover() -> String {
    eprintln!("bench daemon: failover");
    let started = Instant::now();
    let mut rows = String::new();
    let mut no_backend_total = 0;
    let mut total_attempts = 0;
    let mut other_failures: Vec<String> = Vec::new();
    for &(interval_ms, fall) in SETTINGS {
        let interval = Duration::from_millis(interval_ms);
        let c = Cluster::new(BACKENDS).unwrap();
        let mut servers: Vec<TcpServer> = (0..BACKENDS)
            .map(|i| TcpServer::start(&c.backends[i], backend(i, 6443), &format!("cp{i}")).unwrap())
            .collect();
        let service = Service::apiserver(BACKENDS)
            .check("interval", &format!("\"{interval_ms}ms\""))
            .check("timeout", "\"100ms\"")
            .check("fall", &fall.to_string())
            .check("rise", "1");
        c.write_config(&service.toml()).unwrap();
        let daemon = c.start_daemon().unwrap();
        wait_all_up(&c, BACKENDS);
        let dp = Datapath::open_pinned(c.pins.path()).unwrap();
        let no_backend_before = dp.global_stats().unwrap().get(Counter::NoBackend);
        let mut runs = Vec::new();
        for _ in 0..FAILOVER_REPS {
            runs.push(one_failover(&c, &daemon, &dp, &mut servers, interval, fall));
            servers[1] = TcpServer::start(&c.backends[1], backend(1, 6443), "cp1").unwrap();
            let up = wait_for(Duration::from_secs(5), || {
                pinned_state(&dp, backend_addr(1).parse().unwrap()) == Some(BackendState::Up)
            });
            assert!(up.is_some(), "cp1 did not come back UP\n{}", daemon.log());
            // Let a check or two pass before the next repetition.
            std::thread::sleep(Duration::from_millis(200));
        }
        no_backend_total += dp.global_stats().unwrap().get(Counter::NoBackend) - no_backend_before;
        total_attempts += runs.iter().map(|r| r.attempts).sum::<usize>();
        for r in &runs {
            other_failures.extend(
                r.other_failures
                    .iter()
                    .map(|f| format!("{f} ({interval_ms} ms, fall {fall})")),
            );
        }
        drop(dp);
        drop(daemon);
        drop(servers);
        drop(c);
        let (lo, med) = min_median(runs.iter().map(|r| r.last_to_dead).collect());
        let (dlo, dmed) = min_median(runs.iter().map(|r| r.down).collect());
        rows.push_str(&format!(
            "| {interval_ms} ms | {fall} | {} ms | {} | {} | {} | {} |\n",
            interval_ms * u64::from(fall),
            ms(lo),
            ms(med),
            ms(dlo),
            ms(dmed)
        ));
    }
    eprintln!(
        "bench daemon: failover took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Failures other than a refusal: listed when few (a reset right at t0 is
    // a connection the stopping server never accepted).
    let failed = match other_failures.len() {
        0 => "none failed otherwise (timed out, or reset after the connect)".to_owned(),
        n if n <= 6 => format!(
            "{n} failed otherwise: {} (relative to that repetition's kill)",
            other_failures.join(", ")
        ),
        n => format!("{n} failed otherwise (timed out, or reset after the connect)"),
    };
    format!(
        "Failover: three backends serving VIP:6443, TCP checks (timeout 100 ms, rise 1); \
         for each (interval, fall), {FAILOVER_REPS} repetitions of: the client opens a new connection to the VIP \
         every 2 ms (300 ms timeout) from 300 ms before the kill until 500 ms after the DOWN; one backend's server is stopped \
         at t0 (its kernel then refuses, while the other two accept, so a refused connection is one that went to the \
         dead backend); the last connection refused by (or still answered by) the dead backend is noted, and when \
         the pinned backend map, polled every 2 ms, first showed it DOWN (`kube-xdp backends` is then checked to agree, \
         with a Maglev share of 0). No connection went to it once it was DOWN; \
         {total_attempts} attempts in all, {failed}, the LB refused {no_backend_total} for want of a \
         backend. A check that fails comes at most one interval after the kill, so DOWN is expected between \
         (fall − 1) × interval and fall × interval plus a check's own time.\n\n\
         | interval | fall | fall × interval | last connection to the dead backend min | median | DOWN min | median |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n{rows}"
    )
}
