//! The daemon's Prometheus endpoint, scraped from inside the LB namespace
//! (where its loopback address is private to the test): traffic, health
//! checks and reloads counted.

use kube_xdp_tests::{daemon::cli, require_root, servers::whoami, topology::Cluster};
use std::{collections::HashMap, path::Path, time::Duration};

use crate::{METRICS, SERVICE, config_text, servers, vip, wait_all_up};

/// One HTTP/1.1 request to the metrics endpoint, from the LB namespace:
/// (status line and headers, body).
fn http(c: &Cluster, method: &'static str, path: &'static str) -> (String, String) {
    kube_xdp_tests::http::request(&c.lb, METRICS, method, path, &[])
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
