//! How long after a backend dies new connections stop reaching it, for
//! several health-check intervals and `fall` counts.

use kube_xdp::datapath::{BackendState, Datapath};
use kube_xdp_common::stats::Counter;
use kube_xdp_tests::{
    daemon::Daemon,
    e2e_util::{Service, backend, backends, vip, wait_all_up, wait_for},
    servers::{TcpServer, whoami},
    topology::{Cluster, backend_addr},
};
use std::{
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use super::{BACKENDS, min_median, ms};

/// Failover repetitions per (interval, fall).
const FAILOVER_REPS: usize = 3;
/// (interval in ms, fall).
const SETTINGS: &[(u64, u32)] = &[(200, 2), (500, 3), (1000, 3)];

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
pub(super) fn failover() -> String {
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
