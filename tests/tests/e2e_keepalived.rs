//! End to end: a mixed pair — one kube-xdp box, one keepalived box
//! (Debian's keepalived 2.2, `vrrp_version 3`, its configuration written
//! here) — the migration path of replacing one HAProxy box of a pair at a
//! time. Each is master in turn, and the VIP moves both ways.

use kube_xdp_tests::{
    e2e_util::{Service, serial, tcp_servers, wait_for},
    pair::{PairCluster, SNAT_ADDR},
    require_root,
    topology::VIP,
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Stdio},
    time::Duration,
};

/// keepalived running in the second LB namespace; killed on drop.
struct Keepalived {
    child: Child,
    log: PathBuf,
}

impl Keepalived {
    fn start(p: &PairCluster, priority: u8) -> Self {
        Self::start_with(p, priority, "")
    }

    /// With `extra` lines in the instance (`unicast_peer { … }`).
    fn start_with(p: &PairCluster, priority: u8, extra: &str) -> Self {
        let dir = p.c.dir.path();
        let conf = dir.join("keepalived.conf");
        std::fs::write(
            &conf,
            format!(
                "global_defs {{\n  vrrp_version 3\n  router_id kxdp_test\n}}\n\
                 vrrp_instance VI_51 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  \
                 priority {priority}\n  advert_int 0.1\n{extra}  virtual_ipaddress {{\n    {VIP}/32\n    {SNAT_ADDR}/32\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let log = dir.join("keepalived.log");
        let child = p
            .lb2
            .command("keepalived")
            .args(["-n", "-l", "-D", "-P", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(dir.join("keepalived.pid"))
            .arg("-r")
            .arg(dir.join("keepalived-vrrp.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("keepalived (Debian package keepalived; cargo xtask setup installs it)");
        Keepalived { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = wait_for(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten().is_some()
        });
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn a_kube_xdp_box_and_a_keepalived_box_form_one_pair_and_the_vip_moves_both_ways() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    let services = Service::apiserver(2).toml();
    p.a.write_config(
        "virtual_router_id = 51\npriority = 150\nadvert_interval = \"100ms\"",
        &services,
    );

    // kube-xdp (150) master, keepalived (100) backup.
    let keepalived = Keepalived::start(&p, 100);
    let mut daemon = p.start(&p.a).unwrap();
    let logs = |k: &Keepalived, d: &kube_xdp_tests::daemon::Daemon| {
        format!("kube-xdp:\n{}\nkeepalived:\n{}", d.log(), k.log())
    };
    let master = wait_for(Duration::from_secs(10), || {
        p.state(&p.a) == "MASTER" && !p.holds(&p.b, VIP)
    });
    assert!(master.is_some(), "{}", logs(&keepalived, &daemon));
    assert!(p.holds(&p.a, VIP), "{}", logs(&keepalived, &daemon));
    assert!(
        wait_for(Duration::from_secs(5), || keepalived
            .log()
            .contains("Entering BACKUP STATE"))
        .is_some(),
        "{}",
        logs(&keepalived, &daemon)
    );
    // kube-xdp heard keepalived's advertisements.
    assert!(
        wait_for(Duration::from_secs(3), || p
            .ha(&p.a)
            .is_some_and(|a| a["peers"][0]["priority"] == 100))
        .is_some(),
        "{:?}",
        p.ha(&p.a)
    );

    // keepalived took our advertisements as they are (a bad checksum, a
    // wrong interval or address list would be logged).
    let seen = keepalived.log().to_lowercase();
    for complaint in ["invalid", "checksum", "mismatch", "error"] {
        assert!(
            !seen.contains(complaint),
            "keepalived says {complaint}:\n{seen}"
        );
    }

    // kube-xdp stops: keepalived takes the VIP.
    daemon.stop().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || p.holds(&p.b, VIP)
            && p.holds(&p.b, SNAT_ADDR))
        .is_some(),
        "keepalived did not take over:\n{}",
        logs(&keepalived, &daemon)
    );
    assert!(!p.holds(&p.a, VIP));
    assert!(keepalived.log().contains("Entering MASTER STATE"));

    // kube-xdp comes back with the higher priority: it takes the VIP
    // back once its backends passed their checks.
    daemon = p.start(&p.a).unwrap();
    let back = wait_for(Duration::from_secs(15), || {
        p.state(&p.a) == "MASTER" && !p.holds(&p.b, VIP)
    });
    assert!(back.is_some(), "{}", logs(&keepalived, &daemon));
    assert!(p.holds(&p.a, VIP));
    keepalived.stop();

    // And the other way round: keepalived with the higher priority is
    // master, kube-xdp its backup.
    daemon.stop().unwrap();
    let keepalived = Keepalived::start(&p, 200);
    assert!(
        wait_for(Duration::from_secs(5), || p.holds(&p.b, VIP)).is_some(),
        "{}",
        keepalived.log()
    );
    let daemon = p.start(&p.a).unwrap();
    let backup = wait_for(Duration::from_secs(10), || p.state(&p.a) == "BACKUP");
    assert!(backup.is_some(), "{}", logs(&keepalived, &daemon));
    // It stays backup: keepalived's advertisements keep coming.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(p.state(&p.a), "BACKUP", "{}", logs(&keepalived, &daemon));
    assert!(!p.holds(&p.a, VIP) && p.holds(&p.b, VIP));
    let a = p.ha(&p.a).unwrap();
    assert_eq!(a["peers"][0]["priority"], 200, "{a}");
    assert_eq!(a["rejected"], serde_json::json!({}), "{a}");
    let _ = log_of(&p.a.config);
}

#[test]
fn a_mixed_pair_works_over_unicast_too() {
    require_root();
    let _serial = serial();
    let p = PairCluster::new(2).unwrap();
    let _servers = tcp_servers(&p.c, 6443);
    p.a.write_config(
        &format!(
            "virtual_router_id = 51\npriority = 150\nadvert_interval = \"100ms\"\nunicast_peers = [\"{}\"]",
            p.b.addr
        ),
        &Service::apiserver(2).toml(),
    );
    let keepalived = Keepalived::start_with(
        &p,
        100,
        &format!(
            "  unicast_src_ip {}\n  unicast_peer {{\n    {}\n  }}\n",
            p.b.addr, p.a.addr
        ),
    );
    let mut daemon = p.start(&p.a).unwrap();
    let logs = |k: &Keepalived, d: &kube_xdp_tests::daemon::Daemon| {
        format!("kube-xdp:\n{}\nkeepalived:\n{}", d.log(), k.log())
    };
    assert!(
        wait_for(Duration::from_secs(10), || p.state(&p.a) == "MASTER"
            && !p.holds(&p.b, VIP))
        .is_some(),
        "{}",
        logs(&keepalived, &daemon)
    );
    assert!(
        wait_for(Duration::from_secs(3), || p
            .ha(&p.a)
            .is_some_and(|a| a["peers"][0]["address"] == "198.18.0.3"))
        .is_some(),
        "kube-xdp hears keepalived over unicast: {:?}",
        p.ha(&p.a)
    );
    daemon.stop().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || p.holds(&p.b, VIP)).is_some(),
        "{}",
        logs(&keepalived, &daemon)
    );
    daemon = p.start(&p.a).unwrap();
    assert!(
        wait_for(Duration::from_secs(15), || p.state(&p.a) == "MASTER"
            && !p.holds(&p.b, VIP))
        .is_some(),
        "{}",
        logs(&keepalived, &daemon)
    );
    let seen = keepalived.log().to_lowercase();
    for complaint in ["invalid", "checksum", "mismatch", "error"] {
        assert!(
            !seen.contains(complaint),
            "keepalived says {complaint}:\n{seen}"
        );
    }
}
