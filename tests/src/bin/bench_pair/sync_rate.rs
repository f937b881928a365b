//! How many new flows a second flow sync carries: short connections
//! through the master of a kube-xdp pair with sync at a few set rates,
//! and what the master's sync sent and the backup's installed
//! (`kube-xdp ha --json`'s `sync` on both boxes, the master's `stats`).

use crate::bench_pair::boxes::{Kind, Pair};
use anyhow::Context;
use kube_xdp::sync::wire::{HEADER_LEN, RECORD_LEN, TAG_LEN};
use kube_xdp_tests::{
    daemon::cli,
    e2e_util::{Service, backend, wait_for},
    netns::Netns,
    pair::{PairBox, PairCluster},
    short_conns::{Closer, ShortServer, prepare_client, short_connection_load},
};
use std::time::{Duration, Instant};

/// Backends: 3 × 10,000 SNAT ports (the pair's `snat_ports`) carry
/// 15,000 new connections a second (README: 0.5 × ports per backend).
const BACKENDS: usize = 3;
/// Connections a second asked of the client.
pub const RATES: [f64; 3] = [2_000.0, 5_000.0, 10_000.0];
/// Each rate runs this long.
pub const RUN: Duration = Duration::from_secs(5);
/// Client threads (each one connection at a time, paced).
pub const THREADS: usize = 8;
/// After a run, for the last batches and the closes to reach the backup.
const SETTLE: Duration = Duration::from_secs(2);
/// How long after a run the backup may take to receive every datagram
/// the master sent (its daemon may lag behind on a loaded machine).
const CATCH_UP_LIMIT: Duration = Duration::from_secs(20);
/// IP and UDP headers of a sync datagram.
const IP_UDP: usize = 28;

/// The counters read before and after a run.
#[derive(Default, Clone, Copy)]
struct Counters {
    new_flows: u64,
    sync_lost: u64,
    snat_exhausted: u64,
    sent_datagrams: u64,
    sent_records: u64,
    unsent_records: u64,
    received_datagrams: u64,
    installed_records: u64,
    skipped_records: u64,
    rejected: u64,
    /// The backup's UDP `RcvbufErrors` (its socket's buffer full).
    b_rcvbuf_errors: u64,
    /// The master's UDP `SndbufErrors`.
    a_sndbuf_errors: u64,
    /// Frames the machine's input backlogs dropped (`softnet_stat`, all
    /// hosts of the topology share them).
    softnet_dropped: u64,
    /// Progress-line diagnostics: the backup's UDP `InErrors`, the drops
    /// of its interface (rx) and of its bridge port (tx).
    b_in_errors: u64,
    b_rx_dropped: u64,
    port_tx_dropped: u64,
    /// The master's interface's tx drops (its peer, the bridge port, runs
    /// an XDP program: a full ring there drops).
    a_tx_dropped: u64,
    /// "Entering MASTER STATE" lines in box b's log.
    b_master: u64,
}

/// `stats64.DIRECTION.dropped` of `dev` in `ns` (`ip -s -j link`).
fn dropped(ns: &Netns, dev: &str, direction: &str) -> u64 {
    ns.ip(&["-s", "-j", "link", "show", "dev", dev])
        .ok()
        .and_then(|out| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
        .and_then(|v| v[0]["stats64"][direction]["dropped"].as_u64())
        .unwrap_or(0)
}

/// A `Udp:` counter of the namespace's `/proc/net/snmp`.
fn udp(ns: &Netns, name: &str) -> anyhow::Result<u64> {
    let out = ns.exec("cat", &["/proc/net/snmp"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("Udp: ")).collect();
    anyhow::ensure!(lines.len() == 2, "no Udp lines in /proc/net/snmp");
    let at = lines[0]
        .split_whitespace()
        .position(|f| f == name)
        .with_context(|| format!("no Udp {name}"))?;
    Ok(lines[1]
        .split_whitespace()
        .nth(at)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// The dropped column of `/proc/net/softnet_stat`, summed over CPUs.
fn softnet_dropped() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum()
}

fn sum(v: &serde_json::Value) -> u64 {
    v.as_object().map_or(0, |m| {
        m.values().filter_map(serde_json::Value::as_u64).sum()
    })
}

fn read(p: &PairCluster) -> anyhow::Result<Counters> {
    let a = p.ha(&p.a).context("kube-xdp ha on box a")?["sync"].clone();
    let b = p.ha(&p.b).context("kube-xdp ha on box b")?["sync"].clone();
    let stats = stats(p, &p.a)?;
    let n = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap_or(0);
    Ok(Counters {
        new_flows: stats["services"]
            .as_array()
            .map_or(0, |s| s.iter().map(|s| n(s, "new_flows")).sum()),
        sync_lost: n(&stats["counters"], "sync_lost"),
        snat_exhausted: n(&stats["counters"], "snat_exhausted"),
        sent_datagrams: n(&a, "sent_datagrams"),
        sent_records: n(&a, "sent_records"),
        unsent_records: n(&a, "unsent_records"),
        received_datagrams: n(&b, "received_datagrams"),
        installed_records: n(&b, "installed_records"),
        skipped_records: sum(&b["skipped_records"]),
        rejected: sum(&b["rejected"]),
        b_rcvbuf_errors: udp(p.ns(&p.b), "RcvbufErrors")?,
        a_sndbuf_errors: udp(p.ns(&p.a), "SndbufErrors")?,
        softnet_dropped: softnet_dropped(),
        b_in_errors: udp(p.ns(&p.b), "InErrors")?,
        b_rx_dropped: dropped(p.ns(&p.b), "eth0", "rx"),
        port_tx_dropped: dropped(&p.c.bridge, "plb2", "tx"),
        a_tx_dropped: dropped(p.ns(&p.a), "eth0", "tx"),
        b_master: std::fs::read_to_string(p.b.config.with_extension("log"))
            .unwrap_or_default()
            .matches("Entering MASTER STATE")
            .count() as u64,
    })
}

fn stats(p: &PairCluster, which: &PairBox) -> anyhow::Result<serde_json::Value> {
    let out = cli(
        p.ns(which),
        &["stats", "--json", "--config", which.config_str()],
    )?;
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// One rate's figures.
pub struct Run {
    rate: f64,
    /// Connections the client made (ok + failed) and how many failed.
    made: u64,
    failed: u64,
    elapsed: Duration,
    /// When the backup had received every datagram sent, after the run.
    caught_up: Option<Duration>,
    /// After − before.
    d: Counters,
}

impl Run {
    fn sub(after: Counters, before: Counters) -> Counters {
        Counters {
            new_flows: after.new_flows - before.new_flows,
            sync_lost: after.sync_lost - before.sync_lost,
            snat_exhausted: after.snat_exhausted - before.snat_exhausted,
            sent_datagrams: after.sent_datagrams - before.sent_datagrams,
            sent_records: after.sent_records - before.sent_records,
            unsent_records: after.unsent_records - before.unsent_records,
            received_datagrams: after.received_datagrams - before.received_datagrams,
            installed_records: after.installed_records - before.installed_records,
            skipped_records: after.skipped_records - before.skipped_records,
            rejected: after.rejected - before.rejected,
            b_rcvbuf_errors: after.b_rcvbuf_errors - before.b_rcvbuf_errors,
            a_sndbuf_errors: after.a_sndbuf_errors - before.a_sndbuf_errors,
            softnet_dropped: after.softnet_dropped - before.softnet_dropped,
            b_in_errors: after.b_in_errors - before.b_in_errors,
            b_rx_dropped: after.b_rx_dropped - before.b_rx_dropped,
            port_tx_dropped: after.port_tx_dropped - before.port_tx_dropped,
            a_tx_dropped: after.a_tx_dropped - before.a_tx_dropped,
            b_master: after.b_master - before.b_master,
        }
    }
}

/// Runs the rates on a fresh pair; returns one row per rate.
pub fn run() -> anyhow::Result<Vec<Run>> {
    eprintln!("bench pair: sync throughput");
    let p = PairCluster::new(BACKENDS)?;
    let _servers: Vec<ShortServer> = (0..BACKENDS)
        .map(|i| {
            ShortServer::start(
                &p.c.backends[i],
                backend(i, 6443),
                &format!("cp{i}"),
                Closer::Server,
            )
        })
        .collect::<anyhow::Result<_>>()?;
    // Checks a loaded 2-core machine does not fail (as the short-connection
    // tests have them): a flapping backend is not what this measures.
    let services = Service::apiserver(BACKENDS)
        .check("interval", "\"2s\"")
        .check("timeout", "\"1500ms\"")
        .check("fall", "3")
        .toml();
    let pair = Pair::start_with(Kind::KubeXdpSync("100ms"), p, BACKENDS, &services)?;
    let p = &pair.p;
    let peered = wait_for(Duration::from_secs(10), || {
        p.ha(&p.a).is_some_and(|v| !v["sync"]["peer"].is_null())
            && p.ha(&p.b)
                .is_some_and(|v| v["sync"]["table_received"] == true)
    });
    anyhow::ensure!(
        peered.is_some(),
        "the boxes' sync never paired\n{}",
        pair.logs()
    );
    prepare_client(&p.c, THREADS, Closer::Server)?;
    let mut runs = Vec::new();
    for rate in RATES {
        std::thread::sleep(SETTLE);
        let before = read(p)?;
        let (tallies, elapsed) =
            short_connection_load(&p.c, Closer::Server, THREADS, RUN, Some(rate));
        // At least SETTLE, then until the backup has received as many
        // datagrams as the master sent (bounded).
        let ended = Instant::now();
        let mut caught_up = None;
        let after = loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = read(p)?;
            let received = now.received_datagrams - before.received_datagrams;
            let sent = now.sent_datagrams - before.sent_datagrams;
            if received >= sent && ended.elapsed() >= SETTLE {
                caught_up = Some(ended.elapsed());
                break now;
            }
            if ended.elapsed() > CATCH_UP_LIMIT {
                break now;
            }
        };
        let ok: u64 = tallies.iter().map(|t| t.ok).sum();
        let failed: u64 = tallies.iter().map(|t| t.failed).sum();
        let run = Run {
            rate,
            made: ok + failed,
            failed,
            elapsed,
            caught_up,
            d: Run::sub(after, before),
        };
        eprintln!(
            "  {rate}/s asked: {} connections ({failed} failed) in {elapsed:.1?}, backup caught up after {caught_up:.1?}; new flows {}, sent {} records in {} datagrams, \
             backup received {} datagrams, installed {}, skipped {}, rejected {}; sync_lost {}, unsent {}, snat_exhausted {}; \
             backup UDP RcvbufErrors {}, InErrors {}, master SndbufErrors {}, softnet dropped {}, \
             backup eth0 rx dropped {}, its bridge port tx dropped {}, master eth0 tx dropped {}, backup became master {} times",
            run.made,
            run.d.new_flows,
            run.d.sent_records,
            run.d.sent_datagrams,
            run.d.received_datagrams,
            run.d.installed_records,
            run.d.skipped_records,
            run.d.rejected,
            run.d.sync_lost,
            run.d.unsent_records,
            run.d.snat_exhausted,
            run.d.b_rcvbuf_errors,
            run.d.b_in_errors,
            run.d.a_sndbuf_errors,
            run.d.softnet_dropped,
            run.d.b_rx_dropped,
            run.d.port_tx_dropped,
            run.d.a_tx_dropped,
            run.d.b_master
        );
        runs.push(run);
    }
    Ok(runs)
}

/// The table.
pub fn print(runs: &[Run]) {
    println!("### Flow sync throughput\n");
    println!(
        "A kube-xdp pair with flow sync (as above, `advert_interval = \"100ms\"`) in a fresh topology with {BACKENDS} backends \
         (single-threaded servers that write their name and close, like an HTTP server answering `Connection: close`; TCP \
         checks every 2 s); the client makes short connections through the VIP (connect, read the name, read to the server's \
         close) from {THREADS} threads, each one connection at a time, paced to the rate asked, for {} s per rate. Every \
         counter is the difference across the run and what follows it until the backup's daemon has received as many \
         datagrams as the master sent (polled every 200 ms, at least {} s, at most {} s: \"caught up after\", from the end \
         of the run — how far the backup lagged behind): new flows = the master's \
         `new_flows` (`kube-xdp stats`); records and datagrams sent = the master's sync (`kube-xdp ha --json`), received \
         and installed = the backup's. A short connection's flow is reported as it opens, establishes and closes (each close \
         seen is a change of its state or flags), but the daemon keeps only the latest record of a flow waiting in a \
         batch (≤ 10 ms), so records per flow depend on how a flow's changes fall into batches. Loss = 1 − installed / sent. The sync's \
         bandwidth counts every datagram's header ({HEADER_LEN} B), records ({RECORD_LEN} B each), tag ({TAG_LEN} B) and IP \
         + UDP headers ({IP_UDP} B), per second of the run. \"Lost before sending\": reports the master's ring buffer refused \
         (`sync_lost`) and records sent while no peer was known (`unsent_records`); \"skipped/rejected\" are the backup's. \
         Where datagrams went missing: datagrams sent by the master against those the backup's daemon received, the \
         backup's UDP `RcvbufErrors` (its socket's receive buffer full: the daemon did not read fast enough; the buffer is \
         capped at `net.core.rmem_max`, {} KiB here) and the input backlogs' drops (`/proc/net/softnet_stat`, the whole machine).\n",
        RUN.as_secs(),
        SETTLE.as_secs(),
        CATCH_UP_LIMIT.as_secs(),
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(0, |v| v / 1024)
    );
    println!(
        "| rate asked /s | connections made /s | failed | new flows on the master | records sent | records per flow | \
         datagrams sent /s | records per datagram | records installed on the backup | backup caught up after | loss | lost before sending | \
         backup skipped / rejected | datagrams sent / received | backup UDP rcvbuf drops | backlog drops | sync bandwidth |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in runs {
        let secs = r.elapsed.as_secs_f64();
        let d = &r.d;
        let bytes = d.sent_datagrams as usize * (HEADER_LEN + TAG_LEN + IP_UDP)
            + d.sent_records as usize * RECORD_LEN;
        let loss = if d.sent_records == 0 {
            "–".to_owned()
        } else {
            format!(
                "{:.4} %",
                100.0 * (1.0 - d.installed_records as f64 / d.sent_records as f64)
            )
        };
        println!(
            "| {:.0} | {:.0} | {} | {} | {} | {:.2} | {:.0} | {:.1} | {} | {} | {loss} | {} | {} / {} | {} / {} | {} | {} | {:.0} kB/s ({:.2} Mbit/s) |",
            r.rate,
            r.made as f64 / secs,
            r.failed,
            d.new_flows,
            d.sent_records,
            d.sent_records as f64 / d.new_flows.max(1) as f64,
            d.sent_datagrams as f64 / secs,
            d.sent_records as f64 / d.sent_datagrams.max(1) as f64,
            d.installed_records,
            r.caught_up.map_or_else(
                || format!("not within {} s", CATCH_UP_LIMIT.as_secs()),
                |t| format!("{:.1} s", t.as_secs_f64())
            ),
            d.sync_lost + d.unsent_records,
            d.skipped_records,
            d.rejected,
            d.sent_datagrams,
            d.received_datagrams,
            d.b_rcvbuf_errors,
            d.softnet_dropped,
            bytes as f64 / secs / 1e3,
            bytes as f64 * 8.0 / secs / 1e6
        );
    }
    println!();
}
