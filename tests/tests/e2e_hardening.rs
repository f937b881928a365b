//! End to end: what a careless operator can no longer do with the real
//! binary — aim `detach` at a directory that is not kube-xdp's pins, or
//! keep the pid file where anyone can write — and a CA rotated in place
//! that a reload picks up.

use kube_xdp_tests::{
    daemon::{cli, cli_here},
    e2e_util::{Service, backend, reload, serial, states, tcp_servers, wait_all_up, wait_for},
    require_root,
    tls_server::{ReadyzServer, SelfSigned},
    topology::Cluster,
};
use std::time::Duration;

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn detach_removes_nothing_that_is_not_kube_xdps() {
    require_root();
    // A directory elsewhere than on a bpffs (`--pin-path /etc` by mistake):
    // refused, its contents untouched.
    let dir = tempfile::Builder::new()
        .prefix("kxdp-notpins")
        .tempdir()
        .unwrap();
    let precious = dir.path().join("precious");
    std::fs::write(&precious, "keep me").unwrap();
    let out = cli_here(&["detach", "--pin-path", dir.path().to_str().unwrap()]).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not on a BPF filesystem"),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");

    // The daemon's pins with another program's directory among them:
    // kube-xdp's go, the other stays, and so does the directory.
    let _serial = serial();
    let c = Cluster::new(1).unwrap();
    let _servers = tcp_servers(&c, 6443);
    c.write_config(&Service::apiserver(1).toml()).unwrap();
    let mut daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 1);
    daemon.stop().unwrap();
    let foreign = c.pins.path().join("someone-elses");
    std::fs::create_dir(&foreign).unwrap();
    let out = cli(&c.lb, &["detach", "--config", c.config.to_str().unwrap()]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("someone-elses"), "{}", text(&out));
    assert!(foreign.exists(), "another program's pin was removed");
    let left: Vec<String> = std::fs::read_dir(c.pins.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["someone-elses"], "kube-xdp's pins are gone");
    std::fs::remove_dir(&foreign).unwrap();
}

#[test]
fn check_config_refuses_a_run_dir_others_can_write() {
    require_root();
    let dir = tempfile::Builder::new()
        .prefix("kxdp-rundir")
        .tempdir()
        .unwrap();
    let config = dir.path().join("kube-xdp.toml");
    std::fs::write(
        &config,
        "[daemon]\ninterfaces = [\"lo\"]\nrun_dir = \"/tmp\"\nsnat_ports = \"10000-20000\"\n",
    )
    .unwrap();
    let out = cli_here(&["check-config", "--config", config.to_str().unwrap()]).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kube-xdp.toml:3: daemon: run_dir: /tmp can be written by others"),
        "{}",
        text(&out)
    );
    // Its own directory is fine.
    let own = dir.path().join("run");
    std::fs::write(
        &config,
        format!(
            "[daemon]\ninterfaces = [\"lo\"]\nrun_dir = \"{}\"\nsnat_ports = \"10000-20000\"\n",
            own.display()
        ),
    )
    .unwrap();
    let out = cli_here(&["check-config", "--config", config.to_str().unwrap()]).unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn signals_during_start_wait_and_systemd_hears_when_it_is_ready() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(1).unwrap();
    let _servers = tcp_servers(&c, 6443);
    c.write_config(&Service::apiserver(1).toml()).unwrap();
    // A stand-in for systemd's notify socket.
    let notify_path = c.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    let log = c.dir.path().join("hup.log");
    let mut child =
        c.lb.command(kube_xdp_tests::daemon::binary().to_str().unwrap())
            .args(["run", "--config", c.config.to_str().unwrap()])
            .env("NOTIFY_SOCKET", &notify_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
    // `systemctl reload` while it starts, again and again: before, the
    // first SIGHUP killed it. (From the moment the process is kube-xdp's
    // and has SIGHUP ignored or caught: before that it is nsenter, whose
    // death is no concern of ours.)
    let pid = child.id() as i32;
    let hup_handled = || {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status.lines().any(|l| {
            (l.starts_with("SigIgn:") || l.starts_with("SigCgt:"))
                && u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16)
                    .is_ok_and(|mask| mask & 1 != 0)
        })
    };
    assert!(
        kube_xdp_tests::e2e_util::wait_for(std::time::Duration::from_secs(10), hup_handled)
            .is_some(),
        "the daemon never handled SIGHUP"
    );
    let mut ready = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline && ready.is_empty() {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGHUP) };
        let mut buf = [0u8; 256];
        if let Ok(n) = notify.recv(&mut buf) {
            let said = String::from_utf8_lossy(&buf[..n]).into_owned();
            if said.contains("READY=1") {
                ready = said;
            }
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the daemon died of a SIGHUP during its start:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    assert!(
        !ready.is_empty(),
        "no READY=1 within 20 s:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    wait_all_up(&c, 1);

    // A second daemon on the same run_dir is refused; the first serves on.
    let out = cli(&c.lb, &["run", "--config", c.config.to_str().unwrap()]).unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("another kube-xdp daemon (pid {pid})")),
        "{}",
        text(&out)
    );
    assert!(child.try_wait().unwrap().is_none());
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let _ = child.wait();
}

#[test]
fn a_reload_trusts_a_ca_file_rotated_in_place() {
    require_root();
    let _serial = serial();
    let c = Cluster::new(2).unwrap();
    let cert = SelfSigned::new(&["kubernetes"]).unwrap();
    let _api = tcp_servers(&c, 6443);
    let _readyz: Vec<ReadyzServer> = (0..2)
        .map(|i| ReadyzServer::start(&c.backends[i], backend(i, 8443), &cert).unwrap())
        .collect();
    // The file still holds the CA before the rotation: no backend's
    // certificate verifies.
    let ca = c.dir.path().join("ca.crt");
    std::fs::write(&ca, SelfSigned::new(&["kubernetes"]).unwrap().pem).unwrap();
    let config = Service::apiserver(2)
        .check("kind", "\"https\"")
        .check("path", "\"/readyz\"")
        .check("port", "8443")
        .check("interval", "\"300ms\"")
        .check("timeout", "\"250ms\"")
        .check("fall", "2")
        .check("rise", "2")
        .check("ca_file", &format!("\"{}\"", ca.display()))
        .check("server_name", "\"kubernetes\"")
        .toml();
    c.write_config(&config).unwrap();
    let daemon = c.start_daemon().unwrap();
    let up = wait_for(Duration::from_secs(2), || {
        states(&c).iter().any(|s| s == "UP")
    });
    assert!(
        up.is_none(),
        "a backend came UP with a CA that did not sign its certificate: {:?}\n{}",
        states(&c),
        daemon.log()
    );

    // The CA is rotated in place (same path, same configuration file), and
    // the operator reloads.
    std::fs::write(&ca, &cert.pem).unwrap();
    let (ok, said) = reload(&c);
    assert!(ok, "reload: {said}\n{}", daemon.log());
    let mut last = Vec::new();
    let took = wait_for(Duration::from_secs(10), || {
        last = states(&c);
        last.len() == 2 && last.iter().all(|s| s == "UP")
    });
    assert!(
        took.is_some(),
        "backends still not UP after a reload with the rotated CA: {last:?}\n{}",
        daemon.log()
    );

    // A CA file that is no longer a certificate: the reload is refused,
    // naming the file, and the backends stay UP on the CA in force.
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let (ok, said) = reload(&c);
    assert!(
        !ok,
        "a reload with a CA file holding no certificate succeeded"
    );
    assert!(
        said.contains(&format!("CA file {}: no certificate", ca.display())),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(states(&c), ["UP", "UP"], "{}", daemon.log());
}
