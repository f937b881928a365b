//! `kube-xdp top --once` while traffic flows.

use kube_xdp_tests::{
    daemon::cli,
    require_root,
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use crate::{SERVICE, Traffic, config_text, servers, wait_all_up};

#[test]
fn top_once_shows_services_backends_and_rates() {
    require_root();
    let c = Cluster::new(3).unwrap();
    let _servers = servers(&c);
    std::fs::write(&c.config, config_text(&c, &[1, 1, 1])).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let traffic = Traffic::start(&c);
    let deadline = Instant::now() + Duration::from_secs(5);
    while traffic.count.load(Ordering::Relaxed) < 5 {
        assert!(
            Instant::now() < deadline,
            "no connection through the VIP\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let config = c.config.to_str().unwrap();
    let once = cli(
        &c.lb,
        &["top", "--once", "--interval", "1s", "--config", config],
    )
    .unwrap();
    let frames = cli(
        &c.lb,
        &[
            "top",
            "--frames",
            "2",
            "--interval",
            "300ms",
            "--config",
            config,
        ],
    )
    .unwrap();
    let made = traffic.count.load(Ordering::Relaxed);
    drop(traffic);
    let text = String::from_utf8_lossy(&once.stdout).into_owned();
    assert!(
        once.status.success(),
        "{}",
        String::from_utf8_lossy(&once.stderr)
    );
    eprintln!("--- kube-xdp top --once ({made} connections made meanwhile) ---\n{text}");

    assert!(!text.contains('\x1b'), "--once prints no escapes: {text:?}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("kube-xdp top "), "{text}");
    let forwarded: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(forwarded[..2], ["packets/s:", "forwarded"], "{text}");
    assert_ne!(forwarded[2], "0", "global forwarding rate\n{text}");
    // NAME ADDRESS STATE (WEIGHT SHARE) FLOWS PKT/S BYTES/S NEW/S
    let row = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}\n{text}"))
            .split_whitespace()
            .collect()
    };
    let service = row(SERVICE);
    assert_eq!(service[1], format!("{VIP}:6443/tcp"), "{text}");
    assert_eq!(service[2], "3/3", "{text}");
    let rates = &service[service.len() - 3..];
    assert!(
        rates.iter().all(|r| *r != "0" && *r != "-"),
        "service rates {rates:?}\n{text}"
    );
    let mut active = 0;
    for i in 0..3 {
        let r = row(&format!("cp{i}"));
        assert_eq!(r[1], format!("{}:6443", backend_addr(i)), "{text}");
        assert_eq!(r[2], "UP", "{text}");
        assert_eq!(r[3], "1", "weight\n{text}");
        active += usize::from(r[r.len() - 3] != "0");
    }
    assert!(active >= 2, "traffic reached most backends\n{text}");

    // --frames 2 to a pipe: two plain frames.
    let text = String::from_utf8_lossy(&frames.stdout);
    assert!(
        frames.status.success(),
        "{}",
        String::from_utf8_lossy(&frames.stderr)
    );
    assert_eq!(text.matches("kube-xdp top ").count(), 2, "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");
}
