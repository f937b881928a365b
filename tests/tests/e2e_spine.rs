//! End to end: the defects the architecture's spine removed, as an
//! operator would meet them — a reload that fails half-way through its
//! apply, and the inspection commands' independence from DNS.

use kube_xdp_tests::{
    daemon::binary,
    e2e_util::{Service, backend, backends, connect_many, reload, vip, wait_all_up, wait_for},
    require_root,
    servers::TcpServer,
    topology::{Cluster, LB_ADDR},
};
use std::{
    collections::BTreeMap,
    net::UdpSocket,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// Loopback of the LB namespace: every test has its own.
const METRICS: &str = "127.0.0.1:9437";

fn servers(c: &Cluster) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| TcpServer::start(&c.backends[i], backend(i, 6443), &format!("cp{i}")).unwrap())
        .collect()
}

/// The configuration: the topology's `[daemon]` table with metrics, then
/// `services`.
fn write_config(c: &Cluster, services: &str) {
    std::fs::write(
        &c.config,
        format!(
            "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\n\
             snat_ports = \"20000-29999\"\nmetrics_listen = \"{METRICS}\"\n\n{services}",
            c.pins.path().display(),
            c.run_dir.display()
        ),
    )
    .unwrap();
}

/// A service named `many` on VIP:7000 with `n` backends at addresses of
/// the benchmarking range that nothing routes to from the LB (their
/// checks fail at once, and they stay DOWN), from 198.19.`first`.0 on.
fn many(n: u32, first: u8) -> String {
    let mut s = "[[service]]\nname = \"many\"\nvip = \"198.18.0.10\"\nport = 7000\n\n\
                 [service.health_check]\nkind = \"tcp\"\ninterval = \"5s\"\ntimeout = \"1s\"\n"
        .to_owned();
    for i in 0..n {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"m{i}\"\naddress = \"198.19.{}.{}\"\n",
            u32::from(first) + i / 256,
            i % 256
        ));
    }
    s
}

/// `GET /metrics` from the LB namespace: the samples as `name{labels}` →
/// value.
fn scrape(c: &Cluster) -> BTreeMap<String, String> {
    let (_, body) = kube_xdp_tests::http::request(&c.lb, METRICS, "GET", "/metrics", &[]);
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains(' '))
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// What the datapath's programming shows in the metrics: every service
/// and backend series read from the maps (state, weight, Maglev share,
/// usable backends), and the running configuration's hash.
fn programmed(samples: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    samples
        .iter()
        .filter(|(k, _)| {
            [
                "kube_xdp_backend_state{",
                "kube_xdp_backend_up{",
                "kube_xdp_backend_weight{",
                "kube_xdp_backend_maglev_share{",
                "kube_xdp_service_usable_backends{",
                "kube_xdp_service_backends{",
                "kube_xdp_config_info{",
            ]
            .iter()
            .any(|p| k.starts_with(p))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn a_reload_whose_apply_fails_half_way_leaves_maps_metrics_and_backends_as_before() {
    require_root();
    let c = Cluster::new(2).unwrap();
    let _servers = servers(&c);
    let api = Service::apiserver(2);
    // 2,100 backends: re-addressing them all needs 2,100 new backend ids
    // while the old ones drain, more than the datapath's 4,096.
    write_config(&c, &format!("{}\n{}", api.toml(), many(2100, 0)));
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 2);
    let before = backends(&c);
    let metrics_before = scrape(&c);
    let shown_before = programmed(&metrics_before);
    assert!(
        shown_before.keys().any(|k| k.contains("backend=\"cp1\"")),
        "{shown_before:?}"
    );
    assert_eq!(before.as_array().unwrap().len(), 2, "{before}");

    // The first service changes (written first), then the second runs out
    // of backend ids half-way.
    let mut changed = api.clone();
    changed.backends[1].weight = Some(3);
    write_config(&c, &format!("{}\n{}", changed.toml(), many(2100, 64)));
    let (ok, out) = reload(&c);
    assert!(!ok, "the reload was accepted: {out}\n{}", daemon.log());
    assert!(out.contains("more than 4096 backends"), "{out}");

    assert_eq!(
        backends(&c),
        before,
        "kube-xdp backends after the failed reload"
    );
    let metrics_after = scrape(&c);
    assert_eq!(
        programmed(&metrics_after),
        shown_before,
        "the metrics after the failed reload"
    );
    assert_eq!(
        metrics_after
            .get("kube_xdp_reloads_total{result=\"failed\"}")
            .map(String::as_str),
        Some("1"),
        "{metrics_after:?}"
    );
    // The old plan is fully in force: it forwards, to both backends.
    let seen = connect_many(&c, vip(6443), 20, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert_eq!(seen.values().sum::<usize>(), 20, "{seen:?}");

    // The first half alone applies.
    write_config(&c, &format!("{}\n{}", changed.toml(), many(2100, 0)));
    let (ok, out) = reload(&c);
    assert!(ok, "{out}\n{}", daemon.log());
    let now = backends(&c);
    let cp1 = now[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "cp1")
        .unwrap()
        .clone();
    assert_eq!(cp1["weight"], 3, "{now}");
}

/// A nameserver in the LB namespace that never answers: it counts the
/// queries it gets.
struct SilentNameserver {
    queries: Arc<AtomicU64>,
    resolv_conf: std::path::PathBuf,
}

impl SilentNameserver {
    fn start(c: &Cluster) -> Self {
        let socket =
            c.lb.run(|| Ok(UdpSocket::bind(format!("{LB_ADDR}:53"))?))
                .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let queries = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&queries);
        // Bounded: the thread ends with the test process at the latest,
        // and reads at most 10 minutes.
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            let deadline = std::time::Instant::now() + Duration::from_secs(600);
            while std::time::Instant::now() < deadline {
                if socket.recv_from(&mut buf).is_ok() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        let resolv_conf = c.dir.path().join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            format!("nameserver {LB_ADDR}\noptions timeout:1 attempts:1\n"),
        )
        .unwrap();
        SilentNameserver {
            queries,
            resolv_conf,
        }
    }

    fn queries(&self) -> u64 {
        self.queries.load(Ordering::SeqCst)
    }

    /// Runs `kube-xdp ARGS` in the LB namespace with this nameserver as
    /// its resolver (a private mount namespace, so the host's
    /// `/etc/resolv.conf` is untouched; the bpffs stays the host's).
    fn cli(&self, c: &Cluster, args: &[&str]) -> std::process::Output {
        let script = format!(
            "mount --bind {} /etc/resolv.conf && exec nsenter --net={} {} \"$@\"",
            self.resolv_conf.display(),
            c.lb.path().display(),
            binary().display()
        );
        std::process::Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "kube-xdp",
            ])
            .args(args)
            .output()
            .unwrap()
    }
}

#[test]
fn inspection_never_asks_dns_even_when_the_file_names_a_hostname() {
    require_root();
    let c = Cluster::new(2).unwrap();
    let _servers = servers(&c);
    let api = Service::apiserver(2);
    write_config(&c, &api.toml());
    let daemon = c.start_daemon().unwrap();
    wait_all_up(&c, 2);
    let dns = SilentNameserver::start(&c);

    // The operator edits the file (not yet reloaded): cp1 becomes a name
    // only DNS knows, and DNS does not answer.
    let mut edited = api.clone();
    edited.backends[1].address = "cp1.kxdp.test".into();
    write_config(&c, &edited.toml());

    let config = c.config.to_str().unwrap();
    for args in [
        &["backends", "--json", "--config", config][..],
        &["stats", "--config", config],
        &["flows", "--config", config],
        &["top", "--once", "--interval", "100ms", "--config", config],
    ] {
        let out = dns.cli(&c, args);
        assert!(
            out.status.success(),
            "kube-xdp {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if args[0] == "backends" {
            // Named as the daemon programmed them, from what it wrote.
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(text.contains("\"name\": \"cp1\""), "{text}");
        }
    }
    let _ = scrape(&c);
    assert_eq!(
        dns.queries(),
        0,
        "an inspection command or a scrape asked DNS\n{}",
        daemon.log()
    );

    // The harness sees a lookup when there is one: check-config resolves
    // the file's hostnames, and warns for want of an answer (the daemon
    // would start without that backend).
    let out = dns.cli(&c, &["check-config", "--config", config]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\"cp1.kxdp.test\" does not resolve"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_for(Duration::from_secs(5), || dns.queries() > 0).is_some(),
        "check-config's lookup never reached the nameserver"
    );
    // Still forwarding, as programmed.
    let seen = connect_many(&c, vip(6443), 10, Duration::from_secs(5)).unwrap();
    assert_eq!(seen.values().sum::<usize>(), 10);
    drop(daemon);
}
