//! End to end: flow sync between the boxes of a pair. The master's flows
//! reach the backup as they open, change state and close; a failover keeps
//! long-lived connections through the VIP, and so does the old master's
//! return; a box that starts gets its peer's whole table; datagrams that
//! are not the peer's change nothing.

use kube_xdp::sync::{
    SyncKey,
    wire::{Kind, SyncRecord, encode},
};
use kube_xdp_common::maps::{FLOW_ESTABLISHED, FlowKey, PROTO_TCP};
use kube_xdp_tests::{
    daemon::{Daemon, cli},
    e2e_util::{
        EchoConn, Pinger, Service, backend, serial, tcp_servers, try_connect, vip, wait_for,
    },
    pair::{PairBox, PairCluster},
    require_root,
    short_conns::{Closer, ShortServer, client_source, prepare_client, short_connection},
    topology::VIP,
};
use std::{
    net::{SocketAddr, SocketAddrV4, UdpSocket},
    os::unix::fs::PermissionsExt,
    time::{Duration, Instant},
};

/// The pair's sync port here.
const SYNC_PORT: u16 = 9438;

/// Writes the pair's key (mode 0600) and returns its path.
fn key_file(p: &PairCluster) -> String {
    let path = p.c.dir.path().join("sync.key");
    std::fs::write(&path, "c3luYy1rZXktb2YtdGhlLXRlc3QtcGFpci0wMTIzNDU2Nzg5\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `[ha]` lines: VRID 61, adverts every 100 ms, multicast, flow sync.
fn ha(priority: u8, key: &str) -> String {
    format!(
        "virtual_router_id = 61\npriority = {priority}\nadvert_interval = \"100ms\"\nsync_key_file = \"{key}\"\n"
    )
}

/// The box's flow sync status (`kube-xdp ha --json`'s `sync`).
fn sync(p: &PairCluster, which: &PairBox) -> serde_json::Value {
    p.ha(which)
        .map_or(serde_json::Value::Null, |v| v["sync"].clone())
}

/// The live flows a box holds to the VIP from the client, by state.
fn flows(p: &PairCluster, which: &PairBox) -> Vec<serde_json::Value> {
    let out = cli(
        p.ns(which),
        &["flows", "--json", "--config", which.config_str()],
    )
    .unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    all.into_iter()
        .filter(|f| f["vip"] == format!("{VIP}:6443"))
        .collect()
}

fn count_state(flows: &[serde_json::Value], state: &str) -> usize {
    flows.iter().filter(|f| f["state"] == state).count()
}

/// Both boxes up with sync, `a` (150) MASTER and `b` (100) BACKUP, and
/// `b` holding `a`'s table.
fn synced(p: &PairCluster) -> (Daemon, Daemon) {
    let key = key_file(p);
    let services = Service::apiserver(2).toml();
    p.a.write_config(&ha(150, &key), &services);
    p.b.write_config(&ha(100, &key), &services);
    let da = p.start(&p.a).unwrap();
    let logs = || da.log();
    p.wait_state(&p.a, "MASTER", Duration::from_secs(10), &logs);
    let db = p.start(&p.b).unwrap();
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(10), &logs);
    let got = wait_for(Duration::from_secs(5), || {
        sync(p, &p.b)["table_received"] == true
    });
    assert!(got.is_some(), "{}\n{}", sync(p, &p.b), logs());
    let answered = wait_for(Duration::from_secs(10), || {
        try_connect(&p.c, vip(6443), Duration::from_millis(200))
            .0
            .is_ok()
    });
    assert!(answered.is_some(), "the VIP never answered\n{}", logs());
    (da, db)
}

/// `n` long-lived connections through the VIP, each exchanging a line
/// every 50 ms.
fn pingers(p: &PairCluster, n: usize) -> Vec<Pinger> {
    (0..n)
        .map(|_| {
            let conn = EchoConn::open(&p.c, vip(6443)).expect("a connection through the VIP");
            Pinger::start(conn, Duration::from_millis(50))
        })
        .collect()
}

/// Every pinger still exchanging: none failed, and each made progress
/// since `before` (its count of exchanges then).
fn all_alive(pingers: &[Pinger], before: &[u64], when: &str, logs: &dyn Fn() -> String) {
    let failed: Vec<String> = pingers.iter().filter_map(Pinger::failure).collect();
    assert!(
        failed.is_empty(),
        "{when}: {} of {} connections failed: {:?}\n{}",
        failed.len(),
        pingers.len(),
        failed,
        logs()
    );
    for (p, b) in pingers.iter().zip(before) {
        assert!(p.ok() > *b, "{when}: a connection made no progress");
    }
}

#[test]
fn long_lived_connections_survive_the_masters_death_and_its_return() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (mut da, db) = synced(&p);
    let mut pingers = pingers(&p, 50);
    let logs = |da: &Daemon| format!("A:\n{}\nB:\n{}", da.log(), db.log());

    // The backup learns the 50 as they are established.
    let learnt = wait_for(Duration::from_secs(5), || {
        count_state(&flows(&p, &p.b), "ESTABLISHED") >= 50
    });
    assert!(
        learnt.is_some(),
        "the backup holds {:?}\n{}",
        flows(&p, &p.b).len(),
        logs(&da)
    );

    // The master dies: its daemon killed, its link down.
    da.signal(libc::SIGKILL);
    p.c.lb.ip(&["link", "set", "eth0", "down"]).unwrap();
    p.wait_state(&p.b, "MASTER", Duration::from_secs(5), &|| logs(&da));
    let before: Vec<u64> = pingers.iter().map(Pinger::ok).collect();
    std::thread::sleep(Duration::from_secs(2));
    all_alive(&pingers, &before, "after the takeover", &|| logs(&da));

    // It returns: its daemon starts (giving up the addresses the dead one
    // left), its link comes up; it gets the new master's table, then
    // (preempt, the higher priority) takes over again.
    let _ = da.stop();
    da = p.start(&p.a).unwrap();
    p.c.lb.ip(&["link", "set", "eth0", "up"]).unwrap();
    p.wait_state(&p.a, "MASTER", Duration::from_secs(15), &|| logs(&da));
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(5), &|| logs(&da));
    let a = sync(&p, &p.a);
    assert_eq!(a["table_received"], true, "{a}\n{}", logs(&da));
    assert!(a["table_flows"].as_u64().unwrap() >= 50, "{a}");
    let before: Vec<u64> = pingers.iter().map(Pinger::ok).collect();
    std::thread::sleep(Duration::from_secs(2));
    all_alive(&pingers, &before, "after the old master's return", &|| {
        logs(&da)
    });
    for pinger in &mut pingers {
        let (_, failure) = pinger.finish();
        assert!(failure.is_none(), "{failure:?}");
    }
}

#[test]
fn a_restarted_box_receives_the_whole_table_and_closed_flows_close_on_the_backup() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (da, mut db) = synced(&p);
    let logs = |db: &Daemon| format!("A:\n{}\nB:\n{}", da.log(), db.log());
    let mut conns: Vec<EchoConn> = (0..20)
        .map(|_| EchoConn::open(&p.c, vip(6443)).unwrap())
        .collect();
    for c in &mut conns {
        c.exchange().unwrap();
    }
    let on_a = wait_for(Duration::from_secs(5), || {
        count_state(&flows(&p, &p.a), "ESTABLISHED") == 20
    });
    assert!(on_a.is_some(), "{:?}", flows(&p, &p.a));

    // The backup restarts (its maps go with a detach): it asks the master
    // for the table and holds all 20 before it says it is ready.
    db.stop().unwrap();
    cli(p.ns(&p.b), &["detach", "--config", p.b.config_str()]).unwrap();
    db = p.start(&p.b).unwrap();
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(10), &|| logs(&db));
    let got = wait_for(Duration::from_secs(2), || {
        sync(&p, &p.b)["table_received"] == true
    });
    assert!(got.is_some(), "{}\n{}", sync(&p, &p.b), logs(&db));
    let b = sync(&p, &p.b);
    // The 20, and the connection `synced` tried (closing, still held).
    assert!(b["table_flows"].as_u64().unwrap() >= 20, "{b}");
    assert_eq!(count_state(&flows(&p, &p.b), "ESTABLISHED"), 20);
    let log = db.log();
    let installed = log.find("flow table from the peer 198.18.0.2 installed");
    let backup = log.find("Entering BACKUP STATE");
    assert!(
        installed.is_some() && installed < backup,
        "the table came in before the box was ready:\n{log}\nA:\n{}\nsync A {}\nsync B {}",
        da.log(),
        sync(&p, &p.a),
        sync(&p, &p.b)
    );

    // The client closes ten: the backup sees them closing within a second.
    let closed: Vec<EchoConn> = conns.drain(..10).collect();
    drop(closed);
    let gone = wait_for(Duration::from_secs(1), || {
        count_state(&flows(&p, &p.b), "ESTABLISHED") == 10
    });
    assert!(
        gone.is_some(),
        "the backup still holds {} established\n{}",
        count_state(&flows(&p, &p.b), "ESTABLISHED"),
        logs(&db)
    );
    assert!(count_state(&flows(&p, &p.b), "CLOSING") >= 10);
}

/// A flow of the client's (port `sport`) to the first backend, as a
/// record of the sync.
fn record(sport: u16) -> SyncRecord {
    SyncRecord {
        client: FlowKey {
            src_addr: u32::from_ne_bytes([198, 18, 0, 1]),
            dst_addr: u32::from_ne_bytes([198, 18, 0, 10]),
            src_port: sport.to_be(),
            dst_port: 6443u16.to_be(),
            protocol: PROTO_TCP,
            _pad: [0; 3],
        },
        backend_addr: u32::from_ne_bytes([198, 18, 0, 11]),
        backend_port: 6443u16.to_be(),
        snat_addr: u32::from_ne_bytes([198, 18, 0, 9]),
        snat_port: 21000u16.to_be(),
        client_mac: [2, 0, 0, 0, 0, 1],
        state: FLOW_ESTABLISHED,
        flags: 0,
        ts_offset: 0,
        interface: 0,
        created_age_ns: 0,
        idle_ns: 0,
        ..SyncRecord::default()
    }
}

/// Sends each datagram from the client to the backup's sync port.
fn send_to_backup(p: &PairCluster, datagrams: Vec<Vec<u8>>) {
    let target: SocketAddr = format!("{}:{SYNC_PORT}", p.b.addr).parse().unwrap();
    p.c.client
        .run(move || {
            let s = UdpSocket::bind("198.18.0.1:0")?;
            for d in &datagrams {
                s.send_to(d, target)?;
            }
            Ok(())
        })
        .unwrap();
}

fn rejected(p: &PairCluster, reason: &str) -> u64 {
    sync(p, &p.b)["rejected"][reason].as_u64().unwrap_or(0)
}

#[test]
fn datagrams_that_are_not_the_peers_change_nothing() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (da, db) = synced(&p);
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    let holds = |sport: u16| {
        flows(&p, &p.b)
            .iter()
            .any(|f| f["client"] == format!("198.18.0.1:{sport}"))
    };

    // Not the pair's key, cut short, another format version, garbage.
    let wrong_key = SyncKey::new(b"not-the-pair-key-0123456789abcdef");
    let forged = encode(Kind::Flows, u64::MAX, 1, 0, 0, &[record(40000)], &wrong_key);
    let mut truncated = forged.clone();
    truncated.truncate(100);
    let mut old_format = forged.clone();
    old_format[4] = 0;
    let mut bad: Vec<Vec<u8>> = Vec::new();
    for _ in 0..5 {
        bad.extend([
            forged.clone(),
            truncated.clone(),
            old_format.clone(),
            b"garbage".to_vec(),
            vec![0u8; 1400],
        ]);
    }
    send_to_backup(&p, bad);
    let counted = wait_for(Duration::from_secs(3), || {
        [
            "bad_tag",
            "count_mismatch",
            "bad_version",
            "too_short",
            "bad_magic",
        ]
        .iter()
        .all(|r| rejected(&p, r) == 5)
    });
    assert!(counted.is_some(), "{}\n{}", sync(&p, &p.b), logs());
    assert!(!holds(40000), "nothing installed");

    // A datagram of the pair's (its key, as if captured on the way) is
    // taken once: played again, or under an older epoch, it is refused.
    let key = SyncKey::from_file_bytes(&std::fs::read(key_file(&p)).unwrap()).unwrap();
    let epoch = u64::MAX / 2;
    let genuine = encode(Kind::Flows, epoch, 1, 0, 0, &[record(40001)], &key);
    send_to_backup(&p, vec![genuine.clone()]);
    let taken = wait_for(Duration::from_secs(3), || holds(40001));
    assert!(taken.is_some(), "{}\n{}", sync(&p, &p.b), logs());
    let older = encode(Kind::Flows, epoch - 1, 2, 0, 0, &[record(40002)], &key);
    send_to_backup(&p, vec![genuine.clone(), genuine, older]);
    let counted = wait_for(Duration::from_secs(3), || {
        rejected(&p, "replayed") == 2 && rejected(&p, "old_epoch") >= 1
    });
    assert!(counted.is_some(), "{}\n{}", sync(&p, &p.b), logs());
    assert!(!holds(40002), "nothing more installed");
    assert_eq!(p.state(&p.b), "BACKUP", "{}", logs());

    // The daemon is up and the pair still syncs (the backup learns the
    // master's epoch again by asking): a new connection reaches it.
    let mut c = EchoConn::open(&p.c, vip(6443)).unwrap();
    c.exchange().unwrap();
    let learnt = wait_for(Duration::from_secs(5), || {
        flows(&p, &p.b)
            .iter()
            .any(|f| f["client"] == c.local_addr().to_string() && f["state"] == "ESTABLISHED")
    });
    assert!(learnt.is_some(), "{}\n{}", sync(&p, &p.b), logs());
}

/// One short connection of the load: when it began (since the load's
/// start) and what it got.
struct Attempt {
    began: Duration,
    error: Option<String>,
}

#[test]
fn short_connections_through_a_failover_fail_only_if_opened_in_its_last_10_ms() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers: Vec<ShortServer> = (0..2)
        .map(|i| {
            ShortServer::start(
                &p.c.backends[i],
                backend(i, 6443),
                &format!("cp{i}"),
                Closer::Client,
            )
            .unwrap()
        })
        .collect();
    let (da, db) = synced(&p);
    const THREADS: usize = 4;
    const RATE: f64 = 5_000.0;
    prepare_client(&p.c, THREADS, Closer::Client).unwrap_or_else(|e| panic!("{e:#}"));

    // 5,000 short connections a second, paced, for 4 s; the master's link
    // goes down (the box is gone) 1.5 s in.
    let start = Instant::now();
    let run = Duration::from_secs(4);
    let dst = SocketAddrV4::new(VIP.parse().unwrap(), 6443);
    let loads: Vec<_> = (0..THREADS)
        .map(|i| {
            let src = client_source(i);
            p.c.client.spawn(move || {
                let mut attempts = Vec::new();
                for k in 0..100_000u64 {
                    let due = start
                        + Duration::from_secs_f64((k as f64 * THREADS as f64 + i as f64) / RATE);
                    if due >= start + run {
                        break;
                    }
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    let began = start.elapsed();
                    let error = short_connection(src, dst, Closer::Client)
                        .err()
                        .map(|e| format!("{e} ({:?})", e.kind()));
                    attempts.push(Attempt { began, error });
                }
                Ok(attempts)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let failed_at = start.elapsed();
    p.c.lb.ip(&["link", "set", "eth0", "down"]).unwrap();
    let down_at = start.elapsed();
    da.signal(libc::SIGKILL);
    let attempts: Vec<Attempt> = loads
        .into_iter()
        .flat_map(|h| h.join().unwrap().unwrap())
        .collect();
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    assert_eq!(p.state(&p.b), "MASTER", "{}", logs());

    let failures: Vec<&Attempt> = attempts.iter().filter(|a| a.error.is_some()).collect();
    let window = failed_at.saturating_sub(Duration::from_millis(10))..=down_at;
    let outside: Vec<String> = failures
        .iter()
        .filter(|a| !window.contains(&a.began))
        .map(|a| format!("began {:?}: {}", a.began, a.error.as_deref().unwrap_or("")))
        .collect();
    let rate = attempts.len() as f64 / run.as_secs_f64();
    eprintln!(
        "{} connections ({rate:.0}/s), the master's link down at {failed_at:?}..{down_at:?}: \
         {} failed, {} of them opened outside the last 10 ms before it",
        attempts.len(),
        failures.len(),
        outside.len()
    );
    assert!(
        rate > 2_000.0,
        "the load ran at {rate:.0}/s only: the test says nothing"
    );
    assert!(
        outside.is_empty(),
        "{} connections opened outside the last 10 ms before the failure failed: {:?}\n{}",
        outside.len(),
        &outside[..outside.len().min(20)],
        logs()
    );
}
