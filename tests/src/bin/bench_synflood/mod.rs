//! `bench synflood` (issue #18): kube-xdp, HAProxy and nftables NAT under a
//! spoofed SYN flood, in one run. The end-to-end section's topology and
//! load balancers (client, LB, three nginx backends on a bridge; the same
//! kube-xdp, HAProxy and nftables configurations, see `bench_e2e::lbs`)
//! plus a flood host on the segment running `synflood` at the VIP:80 from
//! random sources of 198.19.0.0/17: at 10,000 and 50,000 SYNs a second
//! (paced) and flat out (the highest rate this machine produces; what of
//! it reaches the LB is measured and reported), each for `secs` seconds.
//! During each flood the real client opens a connection every 20 ms
//! (connect, one HTTP request, the response read to the close; 3 s
//! bounds) and long-lived keep-alive connections, opened before the flood,
//! send a request every 100 ms.
//!
//! Recorded per load balancer and rate: the real client's success rate and
//! connect time (p50, p99), the long-lived connections that survive, the
//! LB's CPU (its receive queue's kernel thread and its process: see
//! `setup::threaded_receive_queue`), the machine's, and what reached the
//! LB. Every measurement gets a fresh topology (a load balancer's leftover
//! state — conntrack entries, TIME_WAIT sockets, half-open flows — must
//! not meet the next one), and the rows are interleaved: every load
//! balancer at one rate, then the next rate.
//!
//! Knobs, all optional: `BENCH_SYNFLOOD_SECS` (each flood's length,
//! default 60; `BENCH_SYNFLOOD_QUICK=1` makes it 10), `BENCH_SYNFLOOD_RATES`
//! (default `10000,50000,0`; 0 = flat out), `BENCH_SYNFLOOD_LBS` (default
//! `kube-xdp,haproxy,nftables`), `BENCH_SYNFLOOD_THREADS` (the generator's
//! sending threads, default 1: one thread sends 300,000-420,000 SYNs a
//! second here, several times what any LB's receive queue takes, and
//! leaves the other core to the LB, backends and clients; flat out from
//! two threads, HAProxy's LB received 141,000 a second instead of 202,000
//! and the machine was 99 % busy, in 10 s trials), `BENCH_SYNFLOOD_PROBE`
//! (a command run during each window, see [`start_probe`]). Markdown on
//! stdout, progress on stderr.
//! It reports; it never fails on a threshold.
//!
//! Network safety: every address is in 198.18.0.0/15, inside namespaces
//! this run creates and removes (guards, even on failure); `synflood`
//! itself refuses anything else and runs at most `secs` seconds (it is
//! killed on drop); every loop is bounded.

mod clients;
mod report;
mod setup;

use crate::bench_e2e::{
    counters::{conntrack_stats, kube_xdp_counters},
    host,
    lbs::{self, BACKENDS, HTTP_PORT, Lb},
    load,
    procs::{CpuTimes, delta, net_counters},
    servers,
};
use anyhow::{Context, bail};
use clients::{KeepAlive, LongLived, LongLivedEnd, Tally};
use kube_xdp_tests::{netns::Netns, observe::mac_of, topology::Cluster};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

/// The real client starts this long after the flood and stops starting
/// connections this long before its end.
const WARM_UP: Duration = Duration::from_secs(2);
/// Long-lived connections per measurement.
const LONG_LIVED: usize = 10;

pub struct Plan {
    pub secs: u32,
    /// SYNs a second asked of the generator; 0 = flat out.
    pub rates: Vec<u32>,
    pub lbs: Vec<Lb>,
    /// The generator's sending threads.
    pub threads: usize,
}

fn plan() -> Plan {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let secs = env("BENCH_SYNFLOOD_SECS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if env("BENCH_SYNFLOOD_QUICK").is_some() {
            10
        } else {
            60
        })
        .clamp(8, 600);
    let rates = env("BENCH_SYNFLOOD_RATES")
        .map(|v| v.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 50_000, 0]);
    let all = [Lb::KubeXdp, Lb::Haproxy, Lb::Nftables];
    let lbs = env("BENCH_SYNFLOOD_LBS").map_or(all.to_vec(), |v| {
        let keys: Vec<&str> = v.split(',').map(str::trim).collect();
        all.into_iter()
            .filter(|lb| keys.contains(&lb.key().as_str()))
            .collect()
    });
    let threads = env("BENCH_SYNFLOOD_THREADS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .clamp(1, 8);
    Plan {
        secs,
        rates,
        lbs,
        threads,
    }
}

/// What `synflood` reported.
#[derive(Debug, Clone, Default)]
pub struct FloodReport {
    pub sent: u64,
    pub elapsed_s: f64,
    pub threads: u64,
}

/// One load balancer under one flood.
pub struct Run {
    pub lb: Lb,
    pub rate: u32,
    pub flood: FloodReport,
    /// Frames of the flood that the LB's interface received (its receive
    /// count less what the client and the backends sent it).
    pub reached: u64,
    /// Frames the LB's receive queue had no room for (its bridge port's TX
    /// drops), the flood's and any other.
    pub queue_drops: u64,
    pub tally: Tally,
    pub long_lived: Vec<LongLivedEnd>,
    /// The real client's window, over which the CPU times below run.
    pub window: Duration,
    /// CPU seconds of the LB's receive-queue kernel thread.
    pub queue_cpu_s: f64,
    /// CPU seconds of the LB's process (HAProxy, kube-xdp's daemon).
    pub process_cpu_s: Option<f64>,
    pub machine: CpuTimes,
    pub busy_before_pct: f64,
    pub notes: Vec<String>,
}

/// The `synflood` binary beside this one (`cargo xtask bench` builds
/// both), or `SYNFLOOD_BIN`.
fn synflood_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("SYNFLOOD_BIN") {
        return Ok(p.into());
    }
    let p = std::env::current_exe()?
        .parent()
        .context("the bench binary has no directory")?
        .join("synflood");
    anyhow::ensure!(
        p.exists(),
        "{} is missing: build it (cargo build --release -p kube-xdp-tests --bin synflood) or set SYNFLOOD_BIN",
        p.display()
    );
    Ok(p)
}

/// The running `synflood`, killed on drop.
struct Flood(Option<Child>);

impl Flood {
    fn start(ns: &Netns, lb_mac: [u8; 6], rate: u32, plan: &Plan) -> anyhow::Result<Flood> {
        let mac = lb_mac.map(|b| format!("{b:02x}")).join(":");
        let mut cmd = ns.command(synflood_bin()?.to_str().context("a non-UTF-8 path")?);
        cmd.args(["--iface", "eth0", "--dst-mac", &mac, "--dst"])
            .arg(kube_xdp_tests::topology::VIP)
            .args(["--dport", &HTTP_PORT.to_string()])
            .args(["--src-cidr", setup::FLOOD_SOURCES])
            .args(["--rate", &rate.to_string()])
            .args(["--duration", &plan.secs.to_string()])
            .args(["--threads", &plan.threads.to_string()]);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting synflood")?;
        Ok(Flood(Some(child)))
    }

    fn running(&mut self) -> bool {
        matches!(self.0.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Waits (bounded) for its end and reads its report.
    fn finish(&mut self, limit: Duration) -> anyhow::Result<FloodReport> {
        let deadline = Instant::now() + limit;
        while self.running() {
            if Instant::now() > deadline {
                bail!("synflood still running {limit:?} after it should have ended");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = self
            .0
            .take()
            .context("synflood already reaped")?
            .wait_with_output()?;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        if !out.status.success() {
            bail!("synflood failed ({}): {}", out.status, stderr.trim());
        }
        let v: serde_json::Value = serde_json::from_str(stdout.trim())
            .with_context(|| format!("synflood printed no JSON: {stdout:?} {stderr}"))?;
        Ok(FloodReport {
            sent: v["sent"].as_u64().unwrap_or(0),
            elapsed_s: v["elapsed_s"].as_f64().unwrap_or(0.0),
            threads: v["threads"].as_u64().unwrap_or(0),
        })
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Frame counts on the path: (the LB's eth0 received, the client's and
/// backends' eth0 sent, the LB's bridge port dropped for want of room in
/// the LB's receive queue).
fn frames(c: &Cluster) -> anyhow::Result<(u64, u64, u64)> {
    let (lb_rx, _, _) = setup::link_packets(&c.lb, "eth0")?;
    let (_, _, queue_drops) = setup::link_packets(&c.bridge, "plb")?;
    let mut others = setup::link_packets(&c.client, "eth0")?.1;
    for b in &c.backends {
        others += setup::link_packets(b, "eth0")?.1;
    }
    Ok((lb_rx, others, queue_drops))
}

/// The kernel's SYN-flood counters worth reporting where they moved: the
/// LB's (HAProxy's kernel answers the flood) and the backends' (nftables
/// forwards the flood to them).
const SYN_COUNTERS: &[&str] = &[
    "TcpExt:SyncookiesSent",
    "TcpExt:SyncookiesRecv",
    "TcpExt:SyncookiesFailed",
    "TcpExt:TCPReqQFullDoCookies",
    "TcpExt:TCPReqQFullDrop",
    "TcpExt:ListenOverflows",
    "TcpExt:ListenDrops",
    "TcpExt:TCPTimeouts",
];
const CLIENT_COUNTERS: &[&str] = &[
    "TcpExt:TCPSynRetrans",
    "Tcp:AttemptFails",
    "Tcp:EstabResets",
    "Tcp:RetransSegs",
];

fn backends_counters(c: &Cluster) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut sum = BTreeMap::new();
    for ns in &c.backends {
        for (k, v) in net_counters(ns)? {
            *sum.entry(k).or_insert(0) += v;
        }
    }
    Ok(sum)
}

fn moved(prefix: &str, d: &BTreeMap<String, i64>, keys: Option<&[&str]>) -> Vec<String> {
    d.iter()
        .filter(|(k, v)| **v != 0 && keys.is_none_or(|keys| keys.contains(&k.as_str())))
        .map(|(k, v)| format!("{prefix}{k} {v:+}"))
        .collect()
}

/// Lines of a load balancer's log saying a backend went DOWN.
fn down_events(lb: Lb, c: &Cluster, dir: &std::path::Path) -> usize {
    let log = match lb {
        Lb::KubeXdp => c.config.with_extension("log"),
        Lb::Haproxy => dir.join("haproxy.log"),
        _ => return 0,
    };
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(" is DOWN"))
        .count()
}

fn measure(plan: &Plan, lb: Lb, rate: u32) -> anyhow::Result<Run> {
    // Drop order is the reverse of declaration: the flood, the long-lived
    // connections, the load balancer, the servers, the flood host, then
    // the topology.
    let c = Cluster::new(BACKENDS)?;
    host::apply(&c)?;
    setup::threaded_receive_queue(&c)?;
    let flood_ns = setup::flood_host(&c)?;
    let dir = c.dir.path().to_owned();
    let _servers = servers::start_servers(&c, &dir, false)?;
    let mut running = lbs::start(lb, &c, &dir)?;
    if let Err(e) = load::wait_serving(&c.client, running.http, running.reach) {
        running.check_alive()?;
        return Err(e);
    }
    let queue_thread = setup::receive_thread(&c)?;
    let addr = running.http;
    let conns = c.client.run(move || {
        (0..LONG_LIVED)
            .map(|_| KeepAlive::open(addr))
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let long_lived: Vec<LongLived> = conns.into_iter().map(LongLived::start).collect();

    // What else the machine is doing (the topology idles, but for the
    // long-lived connections).
    let quiet0 = CpuTimes::now()?;
    std::thread::sleep(Duration::from_secs(1));
    let quiet = CpuTimes::now()?.since(&quiet0);
    let busy_before_pct = 100.0 - 100.0 * quiet.idle as f64 / quiet.total.max(1) as f64;

    let frames0 = frames(&c)?;
    let client0 = net_counters(&c.client)?;
    let lb0 = net_counters(&c.lb)?;
    let backends0 = backends_counters(&c)?;
    let kx0 = (lb == Lb::KubeXdp).then(|| kube_xdp_counters(&c));
    let ct0 = conntrack_stats(&c.lb);

    let mut flood = Flood::start(&flood_ns, mac_of(&c.lb, "eth0"), rate, plan)?;
    std::thread::sleep(WARM_UP);
    if !flood.running() {
        let r = flood.finish(Duration::ZERO);
        bail!("synflood stopped within its warm-up: {r:?}");
    }
    let window = Duration::from_secs(plan.secs.into()) - 2 * WARM_UP;
    let attempts = (window.as_millis() / clients::CLIENT_EVERY.as_millis()) as usize;
    let probe = start_probe(&c, lb, rate, window);
    let cpu0 = CpuTimes::now()?;
    let queue0 = setup::runtime_ns(queue_thread)?;
    let proc0 = running.cpu_pid.map(setup::runtime_ns).transpose()?;
    let t0 = Instant::now();
    let client = c
        .client
        .spawn(move || Ok(clients::real_clients(addr, attempts)));
    // The CPU window is the client's: from its first connection to the
    // start of its last.
    std::thread::sleep(window.saturating_sub(t0.elapsed()));
    let machine = CpuTimes::now()?.since(&cpu0);
    let queue1 = setup::runtime_ns(queue_thread)?;
    let proc1 = running.cpu_pid.map(setup::runtime_ns).transpose()?;
    let window = t0.elapsed();
    let tally = client
        .join()
        .map_err(|_| anyhow::anyhow!("the real client panicked"))??;
    if let Some(mut p) = probe {
        let _ = p.wait();
    }
    if !tally.failed_ports.is_empty() {
        let f: Vec<String> = tally
            .failed_ports
            .iter()
            .map(|(p, e)| format!("{p} {e}"))
            .collect();
        eprintln!("  failed connections (client port): {}", f.join(", "));
    }
    let flood_report =
        flood.finish(Duration::from_secs(plan.secs.into()) + Duration::from_secs(15))?;
    let long_lived: Vec<LongLivedEnd> = long_lived.into_iter().map(LongLived::finish).collect();
    let frames1 = frames(&c)?;
    running.check_alive()?;

    let mut notes = Vec::new();
    if !tally.failures.is_empty() {
        let f: Vec<String> = tally
            .failures
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        notes.push(format!("real client failures: {}", f.join(", ")));
    }
    if tally.slow > 0 {
        notes.push(format!("real connections over 1 s: {}", tally.slow));
    }
    for (i, l) in long_lived.iter().enumerate() {
        if let Some(f) = &l.failure {
            notes.push(format!("long-lived {i}: {f}"));
        }
    }
    notes.extend(moved(
        "client ",
        &delta(&client0, &net_counters(&c.client)?),
        Some(CLIENT_COUNTERS),
    ));
    notes.extend(moved(
        "LB ",
        &delta(&lb0, &net_counters(&c.lb)?),
        Some(SYN_COUNTERS),
    ));
    notes.extend(moved(
        "backends ",
        &delta(&backends0, &backends_counters(&c)?),
        Some(SYN_COUNTERS),
    ));
    if let Some(kx0) = kx0 {
        notes.extend(moved(
            "kube-xdp ",
            &delta(&kx0, &kube_xdp_counters(&c)),
            None,
        ));
    }
    if lb == Lb::Nftables {
        let ct1 = conntrack_stats(&c.lb);
        notes.extend(moved(
            "conntrack ",
            &delta(&ct0, &ct1),
            Some(&["insert_failed", "drop", "early_drop", "invalid"]),
        ));
        if let Some(e) = ct1.get("entries") {
            notes.push(format!("conntrack entries at the end {e}"));
        }
    }
    let downs = down_events(lb, &c, &dir);
    if downs > 0 {
        notes.push(format!("backends marked DOWN: {downs}"));
    }
    running.stop();
    let ns = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1e9;
    Ok(Run {
        lb,
        rate,
        reached: (frames1.0 - frames0.0).saturating_sub(frames1.1 - frames0.1),
        queue_drops: frames1.2 - frames0.2,
        flood: flood_report,
        tally,
        long_lived,
        window,
        queue_cpu_s: ns(queue0, queue1),
        process_cpu_s: proc0.zip(proc1).map(|(a, b)| ns(a, b)),
        machine,
        busy_before_pct,
        notes,
    })
}

/// `BENCH_SYNFLOOD_PROBE="command"`: a shell command run on the host
/// during the real client's window (a capture, say), with `BENCH_ROW`
/// (the load balancer's key), `BENCH_RATE`, `BENCH_SECS` (the window) and
/// the namespaces `BENCH_CLIENT_NS`, `BENCH_LB_NS`, `BENCH_BRIDGE_NS` in its
/// environment; killed 30 s after the window, waited for after it.
fn start_probe(c: &Cluster, lb: Lb, rate: u32, window: Duration) -> Option<Child> {
    let cmd = std::env::var("BENCH_SYNFLOOD_PROBE").ok()?;
    let secs = window.as_secs();
    std::process::Command::new("timeout")
        .args([&(secs + 30).to_string(), "sh", "-c", &cmd])
        .env("BENCH_ROW", lb.key())
        .env("BENCH_RATE", rate.to_string())
        .env("BENCH_SECS", secs.to_string())
        .env("BENCH_CLIENT_NS", c.client.name())
        .env("BENCH_LB_NS", c.lb.name())
        .env("BENCH_BRIDGE_NS", c.bridge.name())
        .spawn()
        .map_err(|e| eprintln!("bench synflood: probe: {e}"))
        .ok()
}

pub fn main() {
    let started = Instant::now();
    let plan = plan();
    let load_before = loadavg();
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for &rate in &plan.rates {
        for &lb in &plan.lbs {
            eprintln!(
                "bench synflood: {} under {} at {:.0} s",
                lb.name(),
                report::rate_name(rate),
                started.elapsed().as_secs_f64()
            );
            match measure(&plan, lb, rate) {
                Ok(run) => {
                    eprintln!("  {}", report::summary(&run));
                    runs.push(run);
                }
                Err(e) => {
                    let e = lbs::describe(&e);
                    eprintln!("bench synflood: {}: {e}", lb.name());
                    failures.push(format!(
                        "{} under {}: {e}",
                        lb.name(),
                        report::rate_name(rate)
                    ));
                }
            }
        }
    }
    let load = format!("{load_before} before, {} after", loadavg());
    report::report(&plan, &runs, &failures, &load, started.elapsed());
}

/// The first three fields of `/proc/loadavg`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
