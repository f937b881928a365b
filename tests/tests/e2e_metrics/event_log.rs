//! The JSON event log (`--log-format json`).

use kube_xdp_tests::{daemon::binary, require_root, topology::Cluster};
use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use crate::{SERVICE, config_text, servers, wait_all_up};

/// A daemon started with `--log-format json`, killed on drop.
struct JsonDaemon {
    child: Child,
    log: std::path::PathBuf,
}

impl JsonDaemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for JsonDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn json_event_log_has_one_object_per_line_with_fields() {
    require_root();
    let c = Cluster::new(2).unwrap();
    let _servers = servers(&c);
    std::fs::write(&c.config, config_text(&c, &[1, 1])).unwrap();
    let log = c.config.with_extension("log");
    let child =
        c.lb.command(binary().to_str().unwrap())
            .args(["--log-format", "json", "run", "--config"])
            .arg(&c.config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
    let daemon = JsonDaemon { child, log };
    wait_all_up(&c, 2);
    // The UP lines are logged as the checks pass: wait for both (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let events = loop {
        let text = daemon.log();
        let events: Vec<serde_json::Value> = text
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{text}"))
            })
            .collect();
        let ups = events
            .iter()
            .filter(|e| e["state"] == "UP" && e["service"] == SERVICE)
            .count();
        if ups == 2 {
            break events;
        }
        assert!(Instant::now() < deadline, "no UP events\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    };
    for e in &events {
        assert!(e["timestamp"].is_string(), "{e}");
        assert!(e["level"].is_string(), "{e}");
        assert!(e["message"].is_string(), "{e}");
    }
    let up = events
        .iter()
        .find(|e| e["state"] == "UP" && e["backend"] == "cp0")
        .unwrap_or_else(|| panic!("no UP event for cp0: {events:?}"));
    if let Some(raw) = daemon
        .log()
        .lines()
        .find(|l| l.contains("Server kube-apiserver/cp0 is UP"))
    {
        eprintln!("{raw}");
    }
    assert_eq!(up["level"], "INFO");
    assert!(
        up["message"]
            .as_str()
            .unwrap()
            .starts_with("Server kube-apiserver/cp0 is UP, reason: Layer4 check passed"),
        "{up}"
    );
    assert!(
        events.iter().any(|e| e["message"] == "kube-xdp running"),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("serving Prometheus metrics")),
        "{events:?}"
    );
}
