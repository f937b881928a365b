//! Long-lived connections through a failover that removes the master for
//! good (its processes SIGKILLed, then its link down): a kube-xdp pair
//! with flow sync, one without, and keepalived + HAProxy.

use crate::bench_pair::{
    BACKENDS, TAKEOVER_LIMIT,
    boxes::{Event, Kind, Pair},
    ms,
    probe::open_long_lived,
};
use kube_xdp_tests::{
    daemon::cli,
    e2e_util::{Pinger, tcp_servers},
    pair::PairCluster,
    topology::VIP,
};
use std::time::{Duration, Instant};

pub const KINDS: [Kind; 3] = [
    Kind::KubeXdpSync("100ms"),
    Kind::KubeXdp("100ms"),
    Kind::Keepalived("1"),
];
pub const ROUNDS: usize = 3;
pub const CONNECTIONS: usize = 50;
/// Each connection exchanges a line this often.
pub const EVERY: Duration = Duration::from_millis(50);
/// The connections ping this long before the event.
pub const BEFORE: Duration = Duration::from_secs(1);
/// A survivor keeps echoing this long after the takeover.
pub const AFTER: Duration = Duration::from_secs(2);

pub struct Round {
    /// When box b held the VIP, after the event.
    pub takeover: Option<Duration>,
    /// The established flows to the VIP box b held at the event (kube-xdp).
    pub backup_held: Option<usize>,
    pub survived: usize,
    /// Connections that failed (reset or closed) after the event.
    pub failed: usize,
}

/// The established flows to VIP:6443 box b holds.
fn backup_established(pair: &Pair) -> usize {
    let p = &pair.p;
    let Ok(out) = cli(
        p.ns(&p.b),
        &["flows", "--json", "--config", p.b.config_str()],
    ) else {
        return 0;
    };
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.iter()
        .filter(|f| f["vip"] == format!("{VIP}:6443") && f["state"] == "ESTABLISHED")
        .count()
}

fn round(pair: &mut Pair) -> anyhow::Result<Round> {
    let conns = open_long_lived(&pair.p.c, CONNECTIONS)?;
    let mut pingers: Vec<Pinger> = conns.into_iter().map(|c| Pinger::start(c, EVERY)).collect();
    std::thread::sleep(BEFORE);
    let failed: Vec<String> = pingers.iter().filter_map(Pinger::failure).collect();
    anyhow::ensure!(
        failed.is_empty() && pingers.iter().all(|p| p.ok() > 0),
        "not every long-lived connection echoes before the event: {failed:?}"
    );
    let backup_held = pair.kind.kube_xdp().then(|| backup_established(pair));
    let t0 = Instant::now();
    pair.hit(Event::KillAndLinkDown)?;
    let mut takeover = None;
    while t0.elapsed() < TAKEOVER_LIMIT {
        if pair.b_holds() {
            takeover = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // Alive AFTER past the takeover: never failed, and still echoing in
    // its last second.
    std::thread::sleep(AFTER - Duration::from_secs(1));
    let mid: Vec<u64> = pingers.iter().map(Pinger::ok).collect();
    std::thread::sleep(Duration::from_secs(1));
    let survived = if takeover.is_some() {
        pingers
            .iter()
            .zip(&mid)
            .filter(|(p, m)| p.failure().is_none() && p.ok() > **m)
            .count()
    } else {
        0
    };
    let failed = pingers.iter().filter(|p| p.failure().is_some()).count();
    for p in &mut pingers {
        p.finish();
    }
    drop(pingers);
    pair.restore(Event::KillAndLinkDown, BACKENDS)?;
    Ok(Round {
        takeover,
        backup_held,
        survived,
        failed,
    })
}

/// Runs every kind; returns the table's rows.
pub fn run() -> String {
    let mut rows = String::new();
    for kind in KINDS {
        eprintln!("bench pair: survival, {}", kind.name());
        let p = PairCluster::new(BACKENDS).expect("pair topology");
        let servers = tcp_servers(&p.c, 6443);
        let mut pair = Pair::start(kind, p, BACKENDS).expect("pair up");
        let mut rounds = Vec::new();
        for r in 0..ROUNDS {
            let done = round(&mut pair).unwrap_or_else(|e| panic!("{e:#}\n{}", pair.logs()));
            eprintln!(
                "  round {}: b holds the VIP after {:?}, backup held {:?}, {} of {CONNECTIONS} survive, {} failed",
                r + 1,
                done.takeover,
                done.backup_held,
                done.survived,
                done.failed
            );
            rounds.push(done);
        }
        rows.push_str(&row(kind, &rounds));
        drop(pair);
        drop(servers);
    }
    rows
}

fn row(kind: Kind, rounds: &[Round]) -> String {
    let list = |f: &dyn Fn(&Round) -> String| -> String {
        rounds.iter().map(f).collect::<Vec<_>>().join(", ")
    };
    let name = match kind {
        Kind::KubeXdp(_) => "kube-xdp pair without sync",
        _ => kind.name(),
    };
    format!(
        "| {name} | {} | {} | {} | {} | {} / {CONNECTIONS} | {} |\n",
        kind.interval(),
        Event::KillAndLinkDown.name(kind),
        list(&|r| r.takeover.map_or("none".into(), ms)),
        list(&|r| r.backup_held.map_or("–".into(), |n| n.to_string())),
        list(&|r| r.survived.to_string()),
        list(&|r| r.failed.to_string()),
    )
}

/// The table, with `rows` from [`run`].
pub fn print(rows: &str) {
    println!("### Long-lived connections through a failover: flow sync\n");
    println!(
        "The same topology and pairs as above, a fresh one for each row; the kube-xdp pair with flow sync adds \
         `sync_key_file` (a 0600 file shared by both boxes) to `[ha]`. Each row: {ROUNDS} rounds of: {CONNECTIONS} long-lived \
         connections opened through the VIP, each exchanging a line every {} ms (sent, then its echo read back; 3 s to read it) \
         from its own thread; after {} s (every connection checked to echo), box a's processes are SIGKILLed and its link taken \
         down at once — the box is gone, as in a power failure; box b is polled every 5 ms until it holds the VIP. \
         A connection survives when it never failed (no reset, no close) and still echoed a line in the second that ends {} s \
         after box b held the VIP. \"Backup held\": the established flows to VIP:6443 that box b's table held at the event \
         (`kube-xdp flows`). Box a is then restarted (processes, then link) and waited for as master before the next round.\n",
        EVERY.as_millis(),
        BEFORE.as_secs(),
        AFTER.as_secs()
    );
    println!(
        "| pair | interval | event on the master | b holds the VIP after (ms) | backup held (of {CONNECTIONS}) | long-lived connections that survive | failed after the event |"
    );
    println!("|---|---|---|---|---|---|---|");
    print!("{rows}");
    println!();
}
