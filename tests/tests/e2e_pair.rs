//! End to end: a pair of kube-xdp boxes on one segment, VRRPv3 between
//! them — the election, and the VIP moving when the master dies, stops or
//! comes back — as the client of the VIP and `kube-xdp ha` see it.

use kube_xdp::ha::vrrp::{Advert, MULTICAST_GROUP};
use kube_xdp_tests::{
    daemon::Daemon,
    e2e_util::{Service, connect_many, serial, tcp_servers, try_connect, vip, wait_for},
    pair::{PairCluster, SNAT_ADDR},
    require_root,
    topology::{CLIENT_ADDR, VIP, backend_addr},
};
use std::time::{Duration, Instant};

/// `[ha]` lines of a box: VRID 51, adverts every 100 ms, multicast.
fn ha(priority: u8, extra: &str) -> String {
    format!("virtual_router_id = 51\npriority = {priority}\nadvert_interval = \"100ms\"\n{extra}")
}

/// Both daemons up, `a` (priority 150) MASTER and `b` (100) BACKUP.
fn elected(p: &PairCluster, a_extra: &str) -> (Daemon, Daemon) {
    let services = Service::apiserver(2).toml();
    p.a.write_config(&ha(150, a_extra), &services);
    p.b.write_config(&ha(100, ""), &services);
    let da = p.start(&p.a).unwrap();
    let db = p.start(&p.b).unwrap();
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    p.wait_state(&p.a, "MASTER", Duration::from_secs(10), &logs);
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(5), &logs);
    (da, db)
}

/// Waits (at most 10 s) until a connection to the VIP succeeds: the
/// master's checks have passed.
fn wait_vip_answers(p: &PairCluster) {
    let answered = wait_for(Duration::from_secs(10), || {
        try_connect(&p.c, vip(6443), Duration::from_millis(200))
            .0
            .is_ok()
    });
    assert!(answered.is_some(), "the VIP never answered");
}

/// 20 short connections through the VIP all succeed (`when` and `logs`
/// say what failed).
fn serves(p: &PairCluster, when: &str, logs: &str) {
    let seen = connect_many(&p.c, vip(6443), 20, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{when}: {e:#}\n{logs}"));
    assert_eq!(seen.values().sum::<usize>(), 20, "{when}");
}

/// Connects to the VIP every 10 ms from the client until `done` (at most
/// `limit`); returns the longest run of failed attempts, as a time.
fn longest_gap(p: &PairCluster, limit: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let mut gap_start: Option<Instant> = None;
    let mut longest = Duration::ZERO;
    while start.elapsed() < limit {
        let ok = try_connect(&p.c, vip(6443), Duration::from_millis(50))
            .0
            .is_ok();
        let now = Instant::now();
        match (ok, gap_start) {
            (false, None) => gap_start = Some(now),
            (true, Some(t)) => {
                longest = longest.max(now - t);
                gap_start = None;
            }
            _ => {}
        }
        if ok && done() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Some(t) = gap_start {
        longest = longest.max(Instant::now() - t);
    }
    longest
}

#[test]
fn the_higher_priority_is_master_and_the_vip_answers_through_it() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (da, db) = elected(&p, "");
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    assert!(p.holds(&p.a, VIP) && p.holds(&p.a, SNAT_ADDR), "{}", logs());
    assert!(
        !p.holds(&p.b, VIP) && !p.holds(&p.b, SNAT_ADDR),
        "{}",
        logs()
    );
    // Clients reach the backends through the master (its checks pass).
    assert!(
        wait_for(Duration::from_secs(10), || connect_many(
            &p.c,
            vip(6443),
            10,
            Duration::from_secs(2)
        )
        .is_ok())
        .is_some(),
        "{}",
        logs()
    );
    serves(&p, "through the master", &logs());
    // Each box knows the other.
    wait_for(Duration::from_secs(3), || {
        p.ha(&p.b)
            .is_some_and(|b| b["peers"][0]["address"] == "198.18.0.2")
    });
    let b = p.ha(&p.b).unwrap();
    assert_eq!(b["peers"][0]["address"], "198.18.0.2", "{b}");
    assert_eq!(b["peers"][0]["priority"], 150, "{b}");
    let a = p.ha(&p.a).unwrap();
    assert_eq!(a["effective_priority"], 150, "{a}");
    assert!(
        da.log()
            .contains("VRRP_Instance(VI_51) Entering MASTER STATE"),
        "{}",
        da.log()
    );
    assert!(
        db.log()
            .contains("VRRP_Instance(VI_51) Entering BACKUP STATE"),
        "{}",
        db.log()
    );
}

#[test]
fn the_backup_takes_over_when_the_master_dies_or_stops_and_the_master_takes_back() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (mut da, db) = elected(&p, "");
    let logs = |da: &Daemon| format!("A:\n{}\nB:\n{}", da.log(), db.log());
    wait_vip_answers(&p);

    // SIGKILL: no resignation; the backup waits out Master_Down.
    da.signal(libc::SIGKILL);
    let gap = longest_gap(&p, Duration::from_secs(10), || p.state(&p.b) == "MASTER");
    eprintln!("SIGKILL of the master: longest gap in new connections {gap:?}");
    p.wait_state(&p.b, "MASTER", Duration::from_secs(5), &|| logs(&da));
    assert!(p.holds(&p.b, VIP) && p.holds(&p.b, SNAT_ADDR));
    serves(&p, "through the new master", &logs(&da));

    // The old master comes back: it gives up the addresses it left, waits
    // for its checks, then (preempt) takes the VIP back.
    let _ = da.stop();
    da = p.start(&p.a).unwrap();
    p.wait_state(&p.a, "MASTER", Duration::from_secs(15), &|| logs(&da));
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(5), &|| logs(&da));
    assert!(!p.holds(&p.b, VIP));
    let a = p.ha(&p.a).unwrap();
    let went: Vec<&str> = a["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["to"].as_str().unwrap())
        .collect();
    assert_eq!(went, ["BACKUP", "MASTER"], "{a}");

    // A graceful stop: the master resigns (priority 0) and the backup
    // takes over after its skew time, not Master_Down.
    da.stop().unwrap();
    p.wait_state(&p.b, "MASTER", Duration::from_secs(5), &|| logs(&da));
    let b = p.ha(&p.b).unwrap();
    let last = b["transitions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["to"], "MASTER", "{b}");
    assert!(!p.holds(&p.a, VIP), "the stopped master gave the VIP up");
    serves(&p, "after the graceful stop", &logs(&da));
}

#[test]
fn a_master_whose_tracked_service_has_no_backend_on_it_hands_over() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (da, db) = elected(&p, "track_services = [\"kube-apiserver\"]");
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    // The master alone loses its backends (its checks are blackholed; the
    // backup's still pass): it resigns into FAULT, the backup takes over.
    for i in 0..2 {
        let host = format!("{}/32", backend_addr(i));
        p.c.lb.ip(&["route", "add", "blackhole", &host]).unwrap();
    }
    p.wait_state(&p.a, "FAULT", Duration::from_secs(10), &logs);
    p.wait_state(&p.b, "MASTER", Duration::from_secs(5), &logs);
    assert!(!p.holds(&p.a, VIP) && p.holds(&p.b, VIP), "{}", logs());
    let a = p.ha(&p.a).unwrap();
    let reason = a["transitions"].as_array().unwrap().last().unwrap()["reason"].clone();
    assert!(
        reason
            .as_str()
            .unwrap()
            .contains("no usable backend for kube-apiserver"),
        "{a}"
    );
    serves(&p, "through the backup", &logs());
    // Its backends back: checks pass, it is ready, and (preempt) master.
    for i in 0..2 {
        let host = format!("{}/32", backend_addr(i));
        p.c.lb.ip(&["route", "del", "blackhole", &host]).unwrap();
    }
    p.wait_state(&p.a, "MASTER", Duration::from_secs(15), &logs);
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(5), &logs);
}

#[test]
fn without_preempt_a_returning_higher_priority_stays_backup() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let services = Service::apiserver(2).toml();
    p.a.write_config(&ha(150, "preempt = false"), &services);
    p.b.write_config(&ha(100, ""), &services);
    let db = p.start(&p.b).unwrap();
    p.wait_state(&p.b, "MASTER", Duration::from_secs(10), &|| db.log());
    let mut da = p.start(&p.a).unwrap();
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    p.wait_state(&p.a, "BACKUP", Duration::from_secs(10), &logs);
    // Well past Master_Down: still backup, the VIP where it was.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(p.state(&p.a), "BACKUP", "{}", logs());
    assert_eq!(p.state(&p.b), "MASTER", "{}", logs());
    assert!(p.holds(&p.b, VIP) && !p.holds(&p.a, VIP));
    // Only when the master goes does it take over.
    drop(db);
    p.wait_state(&p.a, "MASTER", Duration::from_secs(5), &|| da.log());
    let _ = da.stop();
}

/// Sends `message` as a VRRP packet (IP protocol 112) from the client to
/// the group, with `ttl`.
fn send_vrrp(p: &PairCluster, message: Vec<u8>, ttl: u32) {
    p.c.client
        .run(move || {
            use socket2::{Domain, Protocol, SockAddr, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112)))?;
            s.set_multicast_ttl_v4(ttl)?;
            s.set_multicast_if_v4(&CLIENT_ADDR.parse()?)?;
            let group: std::net::SocketAddr = "224.0.0.18:0".parse()?;
            s.send_to(&message, &SockAddr::from(group))?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn malformed_and_foreign_vrrp_packets_are_counted_and_change_nothing() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (da, db) = elected(&p, "");
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    let src: std::net::Ipv4Addr = CLIENT_ADDR.parse().unwrap();
    let group = MULTICAST_GROUP;
    // Each would make the master step down if it were taken: priority 254.
    let grab = |vrid: u8| Advert {
        vrid,
        priority: 254,
        interval: Duration::from_millis(100),
        addresses: vec![VIP.parse().unwrap()],
    };
    let mut version2 = grab(51).encode(src, group);
    version2[0] = 0x21;
    let mut bad_sum = grab(51).encode(src, group);
    bad_sum[6] ^= 0xff;
    for _ in 0..5 {
        send_vrrp(&p, grab(52).encode(src, group), 255); // another router's
        send_vrrp(&p, grab(51).encode(src, group), 64); // not from the link
        send_vrrp(&p, version2.clone(), 255);
        send_vrrp(&p, bad_sum.clone(), 255);
        send_vrrp(&p, vec![0x31, 51, 254], 255); // truncated
        std::thread::sleep(Duration::from_millis(50));
    }
    let counted = wait_for(Duration::from_secs(5), || {
        p.ha(&p.a).is_some_and(|a| {
            ["vrid", "ttl", "version", "checksum", "truncated"]
                .iter()
                .all(|r| a["rejected"][r] == 5)
        })
    });
    assert!(counted.is_some(), "{:?}\n{}", p.ha(&p.a), logs());
    assert_eq!(p.state(&p.a), "MASTER", "{}", logs());
    assert_eq!(p.state(&p.b), "BACKUP", "{}", logs());
    let a = p.ha(&p.a).unwrap();
    assert_eq!(
        a["transitions"].as_array().unwrap().len(),
        2,
        "no flip: {a}"
    );
    assert!(p.holds(&p.a, VIP));
}

#[test]
fn the_backup_takes_over_when_the_masters_link_goes_down() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let (da, db) = elected(&p, "");
    let logs = || format!("A:\n{}\nB:\n{}", da.log(), db.log());
    wait_vip_answers(&p);
    // Box death, as the network sees it.
    p.c.lb.ip(&["link", "set", "eth0", "down"]).unwrap();
    let gap = longest_gap(&p, Duration::from_secs(10), || p.state(&p.b) == "MASTER");
    eprintln!("link of the master down: longest gap in new connections {gap:?}");
    p.wait_state(&p.b, "MASTER", Duration::from_secs(5), &logs);
    serves(&p, "through the new master", &logs());
    // The link comes back: the old master (in FAULT while its checks
    // could not reach the backends) passes its checks again and, of the
    // higher priority, takes the VIP back; the other steps down.
    p.c.lb.ip(&["link", "set", "eth0", "up"]).unwrap();
    p.wait_state(&p.b, "BACKUP", Duration::from_secs(10), &logs);
    p.wait_state(&p.a, "MASTER", Duration::from_secs(2), &logs);
    assert!(!p.holds(&p.b, VIP));
    serves(&p, "through the old master again", &logs());
}
