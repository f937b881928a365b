//! `bench pair`: failover of a pair of load balancers — two kube-xdp
//! boxes (`[ha]`, VRRPv3) beside two keepalived + HAProxy boxes (Debian's
//! packages, the kubeadm HA guide's configuration) — in one topology
//! ([`PairCluster`]: a client, boxes a and b, two backends on a bridge,
//! all in 198.18.0.0/24, removed on drop even when a step fails).
//!
//! For each kind of pair (a fresh topology each: switching load balancers
//! that share an address trips PAWS on the backends, TOOLCHAIN.md) and
//! each event on the master (SIGKILL, link down, graceful stop), `ROUNDS`
//! rounds of: 50 long-lived echo connections through the VIP, a client
//! starting a new connection every 10 ms, the event at t0, then the longest
//! gap in successful new connections and how many long-lived connections
//! still echo once box b holds the VIP. Box a is then restored and master
//! again before the next round.
//!
//! Then flow sync (`survive.rs`): long-lived connections through a
//! failover that removes the master (SIGKILL and link down) for a kube-xdp
//! pair with flow sync, one without and keepalived + HAProxy; and
//! (`sync_rate.rs`) how many new flows a second the sync carries to the
//! backup at a few rates of short connections, and its bandwidth.
//!
//! Run alone: `KUBE_XDP_BIN=target/release/kube-xdp target/release/bench
//! pair` (`bench pair sync`: only the flow-sync tables). Markdown on stdout, progress on stderr. It reports; it never
//! fails on a threshold.
//!
//! `boxes.rs` runs the two kinds of pair, `probe.rs` the client side.

mod boxes;
mod probe;
mod survive;
mod sync_rate;

use boxes::{Event, Kind, Pair};
use kube_xdp_tests::{e2e_util::tcp_servers, pair::PairCluster};
use probe::{Gap, Prober, open_long_lived, still_echo};
use std::time::{Duration, Instant};

const BACKENDS: usize = 2;
const ROUNDS: usize = 3;
const LONG_LIVED: usize = 50;
/// How long a long-lived connection may take to echo a line.
const ECHO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long box b may take to hold the VIP after the event.
const TAKEOVER_LIMIT: Duration = Duration::from_secs(10);

const KINDS: [Kind; 4] = [
    Kind::KubeXdp("100ms"),
    Kind::KubeXdp("1s"),
    Kind::Keepalived("1"),
    Kind::Keepalived("0.01"),
];

struct Round {
    gap: Gap,
    /// When box b held the VIP, after t0.
    takeover: Option<Duration>,
    survived: usize,
}

fn round(pair: &mut Pair, event: Event) -> anyhow::Result<Round> {
    let c = &pair.p.c;
    let conns = open_long_lived(c, LONG_LIVED)?;
    let (before, conns) = still_echo(conns, ECHO_TIMEOUT);
    anyhow::ensure!(
        before == LONG_LIVED,
        "only {before} of {LONG_LIVED} long-lived connections echo before the event"
    );
    let prober = Prober::start(c);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    pair.hit(event)?;
    let mut takeover = None;
    for _ in 0..(TAKEOVER_LIMIT.as_millis() / 5) {
        if pair.b_holds() {
            takeover = Some(t0.elapsed());
            break;
        }
        if t0.elapsed() > TAKEOVER_LIMIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // New connections a while longer: the gap must have closed.
    std::thread::sleep(Duration::from_secs(1));
    let gap = prober.finish(t0);
    let (survived, _) = still_echo(conns, ECHO_TIMEOUT);
    pair.restore(event, BACKENDS)?;
    Ok(Round {
        gap,
        takeover,
        survived,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.0}", d.as_secs_f64() * 1e3)
}

fn min_median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[0], v[v.len() / 2])
}

/// One row of the table.
fn row(kind: Kind, event: Event, rounds: &[Round]) -> String {
    let gaps: Vec<Duration> = rounds.iter().map(|r| r.gap.longest).collect();
    let (lo, med) = min_median(gaps.clone());
    let each: Vec<String> = gaps.iter().map(|&g| ms(g)).collect();
    let takeovers: Vec<String> = rounds
        .iter()
        .map(|r| r.takeover.map_or("none".into(), ms))
        .collect();
    let survived: Vec<String> = rounds.iter().map(|r| r.survived.to_string()).collect();
    let unrecovered = rounds.iter().filter(|r| !r.gap.recovered).count();
    let note = if unrecovered > 0 {
        format!(" ({unrecovered} never recovered)")
    } else {
        String::new()
    };
    format!(
        "| {} | {} | {} | {} | {} | {}{note} | {} | {} / {} |\n",
        kind.name(),
        kind.interval(),
        event.name(kind),
        ms(lo),
        ms(med),
        each.join(", "),
        takeovers.join(", "),
        survived.join(", "),
        LONG_LIVED
    )
}

/// `bench pair`: every table; `bench pair sync`: only flow sync's two.
pub fn main() {
    let started = Instant::now();
    if std::env::args().nth(2).as_deref() == Some("sync") {
        let survival = survive::run();
        let sync_runs = sync_rate::run().unwrap_or_else(|e| panic!("sync throughput: {e:#}"));
        survive::print(&survival);
        sync_rate::print(&sync_runs);
        let took = started.elapsed().as_secs_f64();
        eprintln!("bench pair sync: took {took:.0} s");
        println!("The flow-sync part took {took:.0} s.\n");
        return;
    }
    let mut rows = String::new();
    let (mut attempts, mut failed) = (0, 0);
    for kind in KINDS {
        eprintln!("bench pair: {} {}", kind.name(), kind.interval());
        let p = PairCluster::new(BACKENDS).expect("pair topology");
        let servers = tcp_servers(&p.c, 6443);
        let mut pair = Pair::start(kind, p, BACKENDS).expect("pair up");
        for event in Event::ALL {
            let mut rounds = Vec::new();
            for r in 0..ROUNDS {
                let done = round(&mut pair, event)
                    .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", event.name(kind), pair.logs()));
                eprintln!(
                    "  {} round {}: gap {} ms, b holds the VIP after {:?}, {} of {LONG_LIVED} long-lived survive, {} of {} new connections failed",
                    event.name(kind),
                    r + 1,
                    ms(done.gap.longest),
                    done.takeover,
                    done.survived,
                    done.gap.failed,
                    done.gap.attempts
                );
                attempts += done.gap.attempts;
                failed += done.gap.failed;
                rounds.push(done);
            }
            rows.push_str(&row(kind, event, &rounds));
        }
        drop(pair);
        drop(servers);
    }
    let survival = survive::run();
    let sync_runs = sync_rate::run().unwrap_or_else(|e| panic!("sync throughput: {e:#}"));
    let took = started.elapsed().as_secs_f64();
    eprintln!("bench pair: took {took:.0} s");
    println!("### Failover of a pair: kube-xdp beside keepalived + HAProxy\n");
    println!(
        "Two load-balancer boxes a (priority 150, master) and b (priority 100) on one bridge with a client and {BACKENDS} backends \
         (TCP servers that name themselves, then echo lines), VIP:6443 floating between the boxes; a fresh topology for each kind of pair. \
         The kube-xdp pair: `kube-xdp run` on both, `[ha]` with `virtual_router_id = 51` and the interval shown (100 ms is the default; \
         1 s compares like with like with keepalived's default), TCP checks every 200 ms; its connections are SNATed from the pair's \
         floating address. The keepalived + HAProxy pair: Debian's keepalived 2.2.7 (`vrrp_version 3`, `virtual_ipaddress {{ VIP/32 }}`, \
         the interval shown: 1 s as shipped and 0.01 s, the smallest keepalived accepts for VRRPv3) and HAProxy 2.6 (kubeadm HA guide: \
         `mode tcp`, `bind VIP:6443` with `ip_nonlocal_bind`, `option tcp-check`, `check fall 3 rise 2 inter 2s`) on both boxes; \
         keepalived's `track_script` (a curl of the API server every 3 s) is left out, it plays no part in these events. \
         The bridge does not flood unknown unicast to the boxes' ports, as their NICs' MAC filters would not pass it: a veth hands \
         every frame to XDP, and with flooding on, box b's program (a backup, not holding the VIP) forwarded the frames the bridge \
         flooded once box a's link was down, which hid the link-down gap entirely.\n"
    );
    println!(
        "Each row: {ROUNDS} rounds of: {LONG_LIVED} long-lived connections opened through the VIP (all checked to echo); from 0.5 s before \
         the event on box a, the client starts a new connection every {} ms (each on its own thread, {} ms to connect and read the \
         server's name); box b is polled every 5 ms until it holds the VIP (\"b holds the VIP\", after the event) and new connections \
         go on for 1 s more; then one line is sent on every long-lived connection ({} s to echo it back). Gap = the longest time between \
         the starts of two successful new connections from the last one before the event on (≈ 10 ms when nothing is interrupted). \
         Box a is then restored (link up, or its processes restarted; a keepalived killed with -9 leaves the VIP on the interface, \
         which is removed as a reboot would) and waited for as master before the next round. \
         {attempts} new connections in all, {failed} failed.\n",
        probe::EVERY.as_millis(),
        probe::TIMEOUT.as_millis(),
        ECHO_TIMEOUT.as_secs()
    );
    println!(
        "| pair | interval | event on the master | gap ms min | median | each round | b holds the VIP after (ms) | long-lived connections that survive |"
    );
    println!("|---|---|---|---:|---:|---|---|---|");
    print!("{rows}");
    println!(
        "\nNeither pair here carries established connections over: HAProxy's are terminated on the box that dies, and these \
         kube-xdp boxes run without flow sync (no `sync_key_file`), so the backup does not know the old master's flows and \
         answers their next segment with a RST (clients reconnect at once). The next table has the pair with flow sync.\n"
    );
    survive::print(&survival);
    sync_rate::print(&sync_runs);
    println!("The pair part took {took:.0} s.\n");
}
