//! End to end: observability. The daemon's Prometheus endpoint (scraped
//! from inside the LB namespace, where its loopback address is private to
//! the test), `kube-xdp top --once` while traffic flows, and the JSON event
//! log.

use kube_xdp_tests::{
    daemon::{binary, cli},
    require_root,
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// Loopback of the LB namespace: every test has its own.
const METRICS: &str = "127.0.0.1:9437";
const SERVICE: &str = "kube-apiserver";

/// The whole configuration file: the `[daemon]` table of
/// `Cluster::write_config` plus `metrics_listen`, and kube-apiserver over
/// `backends` backends with fast TCP checks; `weights[i]` for backend `i`.
fn config_text(c: &Cluster, weights: &[u32]) -> String {
    let mut s = format!(
        "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\nsnat_ports = \"20000-29999\"\n\
         metrics_listen = \"{METRICS}\"\n\n\
         [[service]]\nname = \"{SERVICE}\"\nvip = \"{VIP}\"\nport = 6443\n\n\
         [service.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 1\n",
        c.pins.path().display(),
        c.run_dir.display()
    );
    for (i, w) in weights.iter().enumerate() {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"cp{i}\"\naddress = \"{}\"\nweight = {w}\n",
            backend_addr(i)
        ));
    }
    s
}

fn servers(c: &Cluster) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| {
            let addr: SocketAddr = format!("{}:6443", backend_addr(i)).parse().unwrap();
            TcpServer::start(&c.backends[i], addr, &format!("cp{i}")).unwrap()
        })
        .collect()
}

fn vip() -> SocketAddr {
    format!("{VIP}:6443").parse().unwrap()
}

/// Waits (at most 15 s) until `kube-xdp backends --json` shows `n`
/// backends, all UP.
fn wait_all_up(c: &Cluster, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = cli(
            &c.lb,
            &["backends", "--json", "--config", c.config.to_str().unwrap()],
        )
        .unwrap();
        let states: Vec<String> = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .ok()
            .and_then(|v| {
                v[0]["backends"].as_array().map(|a| {
                    a.iter()
                        .map(|b| b["state"].as_str().unwrap_or("?").to_owned())
                        .collect()
                })
            })
            .unwrap_or_default();
        if states.len() == n && states.iter().all(|s| s == "UP") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "backends not all UP within 15 s: {states:?}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request to the metrics endpoint, from the LB namespace:
/// (status line and headers, body).
fn http(c: &Cluster, method: &'static str, path: &'static str) -> (String, String) {
    c.lb.run(move || {
        let addr: SocketAddr = METRICS.parse()?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {METRICS}\r\nConnection: close\r\n\r\n"
        )?;
        let mut raw = String::new();
        s.read_to_string(&mut raw)?;
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow::anyhow!("no end of headers in {raw:?}"))?;
        Ok((head.to_owned(), body.to_owned()))
    })
    .unwrap()
}

/// `GET /metrics`, checked, as `name{labels}` → value.
fn scrape(c: &Cluster) -> (String, HashMap<String, f64>) {
    let (head, body) = http(c, "GET", "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (key, value) = l.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect();
    (body, samples)
}

fn get(m: &HashMap<String, f64>, key: &str, body: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key} in\n{body}"))
}

fn svc(name: &str) -> String {
    format!("{name}{{service=\"{SERVICE}\"}}")
}

fn be(name: &str, i: usize) -> String {
    format!("{name}{{service=\"{SERVICE}\",backend=\"cp{i}\"}}")
}

/// `n` short connections to the VIP from the client namespace.
fn connect(c: &Cluster, n: usize) -> anyhow::Result<()> {
    c.client.run(move || {
        for _ in 0..n {
            whoami(vip(), Duration::from_secs(3))?;
        }
        Ok(())
    })
}

fn reload(c: &Cluster) -> std::process::Output {
    cli(&c.lb, &["reload", "--config", c.config.to_str().unwrap()]).unwrap()
}

#[test]
fn metrics_count_traffic_health_checks_and_reloads() {
    require_root();
    let c = Cluster::new(3).unwrap();
    let _servers = servers(&c);
    std::fs::write(&c.config, config_text(&c, &[1, 1, 1])).unwrap();
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 3);
    let (_, before) = scrape(&c);

    connect(&c, 30).unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    let (body, after) = scrape(&c);
    let delta = |key: &str| get(&after, key, &body) - get(&before, key, &body);

    // Traffic through the VIP, per service and per backend.
    assert_eq!(
        delta(&svc("kube_xdp_service_new_flows_total")),
        30.0,
        "{body}"
    );
    assert!(
        delta(&svc("kube_xdp_service_packets_total")) >= 90.0,
        "SYN, ACK and the reply at least, per connection\n{body}"
    );
    assert!(
        delta(&svc("kube_xdp_service_bytes_total")) >= 90.0 * 54.0,
        "{body}"
    );
    let per_backend: f64 = (0..3)
        .map(|i| delta(&be("kube_xdp_backend_new_flows_total", i)))
        .sum();
    assert_eq!(per_backend, 30.0, "{body}");
    for i in 0..3 {
        assert!(
            delta(&be("kube_xdp_backend_packets_total", i)) > 0.0,
            "cp{i} forwarded nothing\n{body}"
        );
        assert!(
            delta(&be("kube_xdp_backend_bytes_total", i)) > 0.0,
            "{body}"
        );
    }
    assert_eq!(
        delta("kube_xdp_datapath_reason_packets_total{reason=\"new_flow\"}"),
        30.0,
        "{body}"
    );
    assert!(
        delta("kube_xdp_datapath_packets_total{verdict=\"tx\"}") >= 90.0,
        "{body}"
    );

    // Backend state and weight gauges, the pool's usable backends.
    for i in 0..3 {
        assert_eq!(get(&after, &be("kube_xdp_backend_up", i), &body), 1.0);
        let state = |s: &str| {
            format!(
                "kube_xdp_backend_state{{service=\"{SERVICE}\",backend=\"cp{i}\",state=\"{s}\"}}"
            )
        };
        assert_eq!(get(&after, &state("up"), &body), 1.0);
        assert_eq!(get(&after, &state("down"), &body), 0.0);
        assert_eq!(get(&after, &state("drain"), &body), 0.0);
        assert_eq!(get(&after, &be("kube_xdp_backend_weight", i), &body), 1.0);
        // Health checks passed, and were timed.
        assert!(
            get(
                &after,
                &be("kube_xdp_health_check_duration_seconds_count", i),
                &body
            ) >= 1.0,
            "{body}"
        );
        assert!(
            get(
                &after,
                &be("kube_xdp_health_check_duration_seconds_sum", i),
                &body
            ) > 0.0,
            "{body}"
        );
    }
    assert_eq!(
        get(&after, &svc("kube_xdp_service_usable_backends"), &body),
        3.0
    );
    assert_eq!(get(&after, &svc("kube_xdp_service_backends"), &body), 3.0);

    // The flow table: 30 flows (closing, still live), and its size.
    assert!(
        get(&after, "kube_xdp_flow_table_entries", &body) >= 30.0,
        "{body}"
    );
    assert!(
        get(&after, "kube_xdp_flow_table_live_flows", &body) >= 30.0,
        "{body}"
    );
    assert_eq!(
        get(&after, "kube_xdp_flow_table_capacity", &body),
        f64::from(kube_xdp::config::DEFAULT_FLOW_TABLE_SIZE)
    );
    assert_eq!(get(&after, "kube_xdp_datapath_up", &body), 1.0);

    // Build and configuration info.
    let version = format!(
        "kube_xdp_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(get(&after, &version, &body), 1.0);
    let hash = |path: &Path| kube_xdp::metrics::fnv1a64(&std::fs::read(path).unwrap());
    let first_hash = hash(&c.config);
    let info = |h: &str| format!("kube_xdp_config_info{{hash=\"{h}\"}}");
    assert_eq!(get(&after, &info(&first_hash), &body), 1.0, "{body}");
    assert_eq!(
        get(&after, "kube_xdp_reloads_total{result=\"ok\"}", &body),
        0.0
    );
    assert_eq!(
        get(&after, "kube_xdp_reloads_total{result=\"failed\"}", &body),
        0.0
    );

    // Anything but /metrics is 404; other methods are refused.
    let (head, _) = http(&c, "GET", "/");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http(&c, "POST", "/metrics");
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");

    // A reload that changes a weight: counted, new hash, new weight.
    std::fs::write(&c.config, config_text(&c, &[2, 1, 1])).unwrap();
    let out = reload(&c);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    let (body, m) = scrape(&c);
    let second_hash = hash(&c.config);
    assert_ne!(first_hash, second_hash);
    assert_eq!(get(&m, "kube_xdp_reloads_total{result=\"ok\"}", &body), 1.0);
    assert_eq!(get(&m, &info(&second_hash), &body), 1.0, "{body}");
    assert!(!m.contains_key(&info(&first_hash)), "{body}");
    assert_eq!(get(&m, &be("kube_xdp_backend_weight", 0), &body), 2.0);
    assert_eq!(
        get(&m, "kube_xdp_config_last_reload_successful", &body),
        1.0
    );

    // A file that does not validate: counted as failed, the running
    // configuration (and its hash) stay.
    std::fs::write(
        &c.config,
        config_text(&c, &[1, 1, 1]).replace("fall = 2", "fall = 0"),
    )
    .unwrap();
    let out = reload(&c);
    assert!(!out.status.success(), "the invalid file was accepted");
    let (body, m) = scrape(&c);
    assert_eq!(
        get(&m, "kube_xdp_reloads_total{result=\"failed\"}", &body),
        1.0
    );
    assert_eq!(get(&m, "kube_xdp_reloads_total{result=\"ok\"}", &body), 1.0);
    assert_eq!(
        get(&m, "kube_xdp_config_last_reload_successful", &body),
        0.0
    );
    assert_eq!(get(&m, &info(&second_hash), &body), 1.0, "{body}");

    eprintln!("--- scrape excerpt ---");
    for l in body.lines().filter(|l| {
        l.contains("cp0") && !l.contains("_bucket")
            || l.starts_with("kube_xdp_datapath_packets")
            || l.starts_with("kube_xdp_flow_table")
            || l.starts_with("kube_xdp_reloads")
            || l.contains("_info")
    }) {
        eprintln!("{l}");
    }
}

/// Connects to the VIP over and over from the client namespace until
/// stopped (or 30 s pass); counts the connections.
struct Traffic {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Traffic {
    fn start(c: &Cluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (flag, n) = (stop.clone(), count.clone());
        let thread = c.client.spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                if whoami(vip(), Duration::from_secs(2)).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(())
        });
        Traffic {
            stop,
            count,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

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
