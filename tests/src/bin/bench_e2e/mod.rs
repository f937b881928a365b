//! `bench e2e`: the load balancers end to end in the namespace topology
//! (client, LB, three nginx backends joined by a bridge; XDP_PASS on the
//! LB's bridge port, threaded NAPI there, for every row: see host.rs), one
//! after another in one run: direct to one backend, kube-xdp, HAProxy,
//! nftables NAT, IPVS NAT where the kernel has it. wrk measures short-connection and keep-alive request
//! rates, iperf3 bulk throughput. Prints Markdown on stdout, progress on
//! stderr. Benchmarks report; they never fail on a threshold.
//!
//! Every measurement gets a freshly built topology: backends keep the
//! TIME_WAIT sockets of the previous load balancer's connections, and a
//! new SYN from the same SNAT address with other TCP timestamps is
//! rejected by PAWS (TOOLCHAIN.md). Repetitions are interleaved (all load
//! balancers once, then all again) so that drift in a shared machine's
//! load spreads over all of them.

pub(crate) mod counters;
pub(crate) mod host;
pub mod lbs;
pub(crate) mod live;
pub(crate) mod load;
pub(crate) mod procs;
mod report;
pub(crate) mod servers;

use counters::{
    BACKEND_COUNTERS, CLIENT_COUNTERS, KUBE_XDP_COUNTERS, backend_counters, conntrack_stats,
    kube_xdp_counters, moved,
};
use kube_xdp_tests::topology::Cluster;
use lbs::{BACKENDS, IPERF_PORT, Lb};
use load::Wrk;
use procs::{CpuTimes, TICKS_PER_SEC, delta, net_counters};
use servers::start_servers;
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

/// How long each measurement runs, and how often.
#[derive(Clone, Copy)]
struct Plan {
    /// wrk with short connections: 30 s, long enough to reuse SNAT ports.
    short_secs: u32,
    /// wrk with keep-alive.
    keepalive_secs: u32,
    /// iperf3, per stream count.
    iperf_secs: u32,
    /// Short-connection runs per load balancer (keep-alive and iperf3 run
    /// once, in the first round).
    reps: usize,
}

/// `BENCH_E2E_QUICK=1` shortens everything, to try the harness out; the
/// report says so.
fn plan() -> Plan {
    let mut plan = plan_default();
    if let Some(n) = std::env::var("BENCH_E2E_REPS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        plan.reps = n.clamp(1, 10);
    }
    plan
}

fn plan_default() -> Plan {
    if std::env::var_os("BENCH_E2E_QUICK").is_some() {
        Plan {
            short_secs: 5,
            keepalive_secs: 3,
            iperf_secs: 3,
            reps: 1,
        }
    } else {
        Plan {
            short_secs: 30,
            keepalive_secs: 10,
            // 5 s rather than 10: `cargo xtask bench` must stay within 15
            // minutes on a fresh 2-core machine, builds included.
            iperf_secs: 5,
            reps: 2,
        }
    }
}

/// `BENCH_E2E_ROWS=direct,kube-xdp,nftables` runs only those rows (keys:
/// direct, kube-xdp, haproxy, nftables, ipvs), to save time while
/// experimenting; the report says so.
fn rows_selected() -> Option<Vec<String>> {
    let v = std::env::var("BENCH_E2E_ROWS").ok()?;
    Some(v.split(',').map(|s| s.trim().to_owned()).collect())
}

/// One short-connection run.
struct Short {
    wrk: Wrk,
    syn_retrans: i64,
    active_opens: i64,
    /// CPU seconds of the LB's user-space process (HAProxy; kube-xdp's
    /// control-plane daemon), if it has one.
    lb_process_s: Option<f64>,
    /// The whole machine's softirq and system CPU seconds.
    softirq_s: f64,
    system_s: f64,
    idle_pct: f64,
    /// The machine's busy share over the second before the run, while the
    /// topology sat idle: what else this shared machine was doing.
    busy_before_pct: f64,
    /// The XDP programs' runs during the run, by name (`live`).
    live: BTreeMap<String, live::ProgramRuns>,
    /// kube-xdp's flow table when the run ended.
    occupancy: Option<live::Occupancy>,
    /// kube-xdp's established-flow and reply-path figures through
    /// `BPF_PROG_TEST_RUN`, measured just after the run.
    testrun_ns: Option<(f64, f64)>,
    notes: Vec<String>,
}

#[derive(Default)]
struct Row {
    shorts: Vec<Short>,
    keepalive: Option<Wrk>,
    /// Bulk throughput in bit/s, every run (1 and 4 streams).
    iperf1: Vec<f64>,
    iperf4: Vec<f64>,
    /// kube-xdp's bulk runs: (streams, bytes received per run of its XDP
    /// program during the run).
    bulk_bytes_per_run: Vec<(u32, f64)>,
    /// Every row's bulk runs: (streams, bytes per packet its LB interface
    /// received during the run).
    bulk_bytes_per_rx: Vec<(u32, f64)>,
    /// Errors of whole measurements (a row that could not run).
    failures: Vec<String>,
    notes: Vec<String>,
}

pub fn main() {
    let started = Instant::now();
    let plan = plan();
    let load_before = loadavg();
    let mut lbs = vec![
        Lb::Direct,
        Lb::Router,
        Lb::KubeXdp,
        Lb::Haproxy,
        Lb::Nftables,
    ];
    let ipvs_skip = lbs::ipvs_unavailable();
    if ipvs_skip.is_none() {
        lbs.push(Lb::Ipvs);
    }
    if let Some(only) = rows_selected() {
        lbs.retain(|lb| only.contains(&lb.key()));
    }
    let mut rows: BTreeMap<usize, Row> = BTreeMap::new();
    for rep in 0..plan.reps {
        for (i, &lb) in lbs.iter().enumerate() {
            // The router row is a reference, not a contender: one round of
            // short connections keeps `cargo xtask bench` within its time
            // on a fresh machine.
            if lb == Lb::Router && rep > 0 {
                continue;
            }
            let row = rows.entry(i).or_default();
            eprintln!(
                "bench e2e: {} (round {} of {}) at {:.0} s",
                lb.name(),
                rep + 1,
                plan.reps,
                started.elapsed().as_secs_f64()
            );
            let full = rep == 0 && lb != Lb::Router;
            if let Err(e) = measure(&plan, lb, full, row) {
                let e = lbs::describe(&e);
                eprintln!("bench e2e: {}: {e}", lb.name());
                row.failures.push(format!("round {}: {e}", rep + 1));
            }
        }
    }
    let load = format!("{load_before} before, {} after", loadavg());
    report::report(
        &plan,
        &lbs,
        &rows,
        ipvs_skip.as_deref(),
        &load,
        started.elapsed(),
    );
}

/// iperf3 runs of each stream count per load balancer and round.
const BULK_RUNS_PER_ROUND: usize = 2;

/// One load balancer in a fresh topology: the short-connection run, in
/// the first round keep-alive as well, and iperf3 in every round (not for
/// the router row).
fn measure(plan: &Plan, lb: Lb, full: bool, row: &mut Row) -> anyhow::Result<()> {
    // Drop order is the reverse of declaration: the load balancer, then the
    // servers, then the topology.
    let c = Cluster::new(BACKENDS)?;
    host::apply(&c)?;
    let dir = c.dir.path().to_owned();
    // The client is one host opening thousands of connections a second to
    // one VIP:port. Where it closes first (wrk does when the response is
    // complete before the server's FIN is forwarded, as through HAProxy)
    // its ephemeral ports fill with TIME_WAIT sockets and every connect()
    // scans them: measured here, 3,200 req/s through HAProxy with 88 % of
    // the machine in system time, 13,400 with reuse. Let the load generator
    // reuse them, so that the load balancer is what is measured.
    c.client.sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let _servers = start_servers(&c, &dir, full)?;
    let mut running = lbs::start(lb, &c, &dir)?;
    let seen = match load::wait_serving(&c.client, running.http, running.reach) {
        Ok(seen) => seen,
        Err(e) => {
            // A load balancer that exited says why.
            running.check_alive()?;
            return Err(e);
        }
    };
    let url = format!("http://{}/", running.http);

    // What else the machine is doing (nothing of ours runs now).
    let quiet0 = CpuTimes::now()?;
    std::thread::sleep(Duration::from_secs(1));
    let quiet = CpuTimes::now()?.since(&quiet0);
    let busy_before_pct = 100.0 - 100.0 * quiet.idle as f64 / quiet.total.max(1) as f64;

    // Short connections.
    let client0 = net_counters(&c.client)?;
    let backends0 = backend_counters(&c)?;
    let kx0 = (lb == Lb::KubeXdp).then(|| kube_xdp_counters(&c));
    let conntrack = matches!(lb, Lb::Nftables | Lb::Ipvs);
    let ct0 = conntrack_stats(&c.lb);
    let proc0 = running
        .cpu_pid
        .and_then(|p| procs::process_cpu_ticks(p).ok());
    let drops0 = procs::backlog_drops();
    let cpu0 = CpuTimes::now()?;
    let probe = start_probe(lb, plan.short_secs);
    let accounting = live::start();
    let wrk = load::wrk(&c.client, &url, plan.short_secs, true)?;
    let cpu = CpuTimes::now()?.since(&cpu0);
    let live = accounting.map(live::Accounting::finish).unwrap_or_default();
    let occupancy = (lb == Lb::KubeXdp)
        .then(|| live::occupancy(c.pins.path()))
        .flatten();
    let testrun_ns = (lb == Lb::KubeXdp).then(crate::established_testrun_ns);
    if let Some(mut p) = probe {
        let _ = p.wait();
    }
    let drops = procs::backlog_drops() - drops0;
    let client_tw = procs::time_wait(&c.client);
    let proc1 = running
        .cpu_pid
        .and_then(|p| procs::process_cpu_ticks(p).ok());
    let client = delta(&client0, &net_counters(&c.client)?);
    let backends = delta(&backends0, &backend_counters(&c)?);
    running.check_alive()?;

    let mut notes = moved("client ", &client, CLIENT_COUNTERS);
    if let Some(n) = client_tw.filter(|n| *n > 1000) {
        notes.push(format!("client TIME_WAIT sockets at the end {n}"));
    }
    if drops != 0 {
        notes.push(format!("machine softnet backlog drops {drops:+}"));
    }
    notes.extend(moved("backends ", &backends, BACKEND_COUNTERS));
    if let Some(kx0) = kx0 {
        notes.extend(moved(
            "kube-xdp ",
            &delta(&kx0, &kube_xdp_counters(&c)),
            KUBE_XDP_COUNTERS,
        ));
    }
    let ct1 = conntrack_stats(&c.lb);
    if conntrack {
        notes.extend(moved(
            "conntrack ",
            &delta(&ct0, &ct1),
            &["insert_failed", "drop", "early_drop", "invalid"],
        ));
        if let Some(e) = ct1.get("entries") {
            notes.push(format!("conntrack entries at the end {e}"));
        }
    }
    let s = |ticks: u64| ticks as f64 / TICKS_PER_SEC;
    row.shorts.push(Short {
        syn_retrans: client.get("TcpExt:TCPSynRetrans").copied().unwrap_or(0),
        active_opens: client.get("Tcp:ActiveOpens").copied().unwrap_or(0),
        lb_process_s: match (proc0, proc1) {
            (Some(a), Some(b)) => Some(s(b - a)),
            _ => None,
        },
        softirq_s: s(cpu.softirq),
        system_s: s(cpu.system),
        idle_pct: 100.0 * cpu.idle as f64 / cpu.total.max(1) as f64,
        busy_before_pct,
        live,
        occupancy,
        testrun_ns,
        wrk,
        notes,
    });
    // The router row measures short connections only.
    if lb == Lb::Router {
        running.stop();
        return Ok(());
    }
    if full {
        row.notes.push(format!(
            "answered by {}",
            seen.into_iter().collect::<Vec<_>>().join(", ")
        ));
        // Keep-alive.
        match load::wrk(&c.client, &url, plan.keepalive_secs, false) {
            Ok(w) => row.keepalive = Some(w),
            Err(e) => row
                .failures
                .push(format!("keep-alive: {}", lbs::describe(&e))),
        }
    }
    // Bulk throughput: in every round (so interleaved with the other load
    // balancers), each stream count [`BULK_RUNS_PER_ROUND`] times.
    let host = running.iperf.ip().to_string();
    for _ in 0..BULK_RUNS_PER_ROUND {
        for (streams, slot) in [(1, &mut row.iperf1), (4, &mut row.iperf4)] {
            let accounting = (lb == Lb::KubeXdp).then(live::start).flatten();
            let rx0 = live::lb_rx(&c.lb);
            match load::iperf3(&c.client, &host, IPERF_PORT, plan.iperf_secs, streams) {
                Ok(bps) => {
                    slot.push(bps);
                    if let (Some((p0, b0)), Some((p1, b1))) = (rx0, live::lb_rx(&c.lb))
                        && p1 > p0
                    {
                        row.bulk_bytes_per_rx
                            .push((streams, (b1 - b0) as f64 / (p1 - p0) as f64));
                    }
                    let runs = accounting
                        .map(live::Accounting::finish)
                        .and_then(|r| r.get("kube_xdp").copied());
                    if let Some(r) = runs.filter(|r| r.runs > 0) {
                        let bytes = bps / 8.0 * f64::from(plan.iperf_secs);
                        row.bulk_bytes_per_run
                            .push((streams, bytes / r.runs as f64));
                    }
                }
                Err(e) => row
                    .failures
                    .push(format!("iperf3 -P {streams}: {}", lbs::describe(&e))),
            }
        }
    }
    running.check_alive()?;
    running.stop();
    Ok(())
}

/// `BENCH_E2E_PROBE="command"`: a shell command run on the host while the
/// short-connection run goes on (a profiler, say), with `BENCH_ROW` (the
/// row's key) and `BENCH_SECS` in its environment; waited for afterwards.
fn start_probe(lb: Lb, secs: u32) -> Option<std::process::Child> {
    let cmd = std::env::var("BENCH_E2E_PROBE").ok()?;
    std::process::Command::new("timeout")
        .args([&(secs + 30).to_string(), "sh", "-c", &cmd])
        .env("BENCH_ROW", lb.key())
        .env("BENCH_SECS", secs.to_string())
        .spawn()
        .map_err(|e| eprintln!("bench e2e: probe: {e}"))
        .ok()
}

/// The first three fields of `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
