//! End to end: the stats page, read by a real browser. The daemon serves
//! it on the LB namespace's loopback (`stats_listen = "8404"`), behind
//! basic auth; headless chromium runs in that namespace while traffic
//! flows through the VIP and a backend goes down, and the test asserts
//! what a person would read: the backend's row says DOWN with its failed
//! check, and the flow counts moved.
//!
//! With `KUBE_XDP_SCREENSHOT=docs/stats-page.png` (a path from the
//! workspace root, or absolute) the browser also saves a screenshot of
//! the page there.

use kube_xdp_tests::{
    browser::{cell_after, dump_dom, row_cells, screenshot},
    daemon::Daemon,
    e2e_util::{
        EchoConn, Pinger, Service, connect_many, reload, vip, wait_all_up, wait_out_of_pool,
    },
    require_root,
    servers::TcpServer,
    topology::{Cluster, backend_addr},
};
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

/// `openssl passwd -6 -salt kubexdpstats secret`.
const HASH: &str = "$6$kubexdpstats$DyA/Xkq8A304GYRIJSNKj5lVirHUUL.sDSuCtlP7vY3qN4YfGkR2OTE9cukVDaOgx2QEpYBT4k3sGUakA6Wmm.";
/// `admin:secret`, base64.
const BASIC: &str = "YWRtaW46c2VjcmV0";
/// `stats_listen = "8404"`: loopback of the LB namespace.
const LISTEN: &str = "127.0.0.1:8404";
const PAGE: &str = "http://admin:secret@127.0.0.1:8404/stats";

fn config(c: &Cluster) -> String {
    format!(
        "[daemon]\ninterfaces = [\"eth0\"]\npin_path = \"{}\"\nrun_dir = \"{}\"\nsnat_ports = \"20000-29999\"\n\
         stats_listen = \"8404\"\nstats_refresh = \"2s\"\nstats_auth = '{}'\n\n{}",
        c.pins.path().display(),
        c.run_dir.display(),
        format_args!("admin:{HASH}"),
        Service::apiserver(3).toml()
    )
}

/// One request to the page from the LB namespace: (status line and
/// headers, body).
fn http(c: &Cluster, path: &'static str, authorization: Option<&str>) -> (String, String) {
    let auth: Vec<String> = authorization
        .map(|a| format!("Authorization: {a}"))
        .into_iter()
        .collect();
    kube_xdp_tests::http::request(&c.lb, LISTEN, "GET", path, &auth)
}

/// The page as chromium built it, checked to be the whole page.
fn page(c: &Cluster, daemon: &Daemon) -> String {
    let dom = dump_dom(&c.lb, PAGE).unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log()));
    assert!(
        dom.contains("<h1>kube-xdp stats</h1>") && dom.contains("</html>"),
        "not the stats page:\n{dom}"
    );
    dom
}

fn row(dom: &str, backend: &str) -> Vec<String> {
    row_cells(dom, &format!("backend-kube-apiserver-{backend}"))
        .unwrap_or_else(|| panic!("no row for {backend} in\n{dom}"))
}

fn number(cell: &str) -> u64 {
    cell.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a count: {cell:?}"))
}

/// `KUBE_XDP_SCREENSHOT`, from the workspace root when relative.
fn screenshot_path() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("KUBE_XDP_SCREENSHOT")?);
    Some(if p.is_absolute() {
        p
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(p)
    })
}

#[test]
fn stats_page_in_a_browser_shows_a_backend_going_down_while_traffic_flows() {
    require_root();
    let c = Cluster::new(3).unwrap();
    let mut servers: Vec<TcpServer> = (0..3)
        .map(|i| {
            let addr: SocketAddr = format!("{}:6443", backend_addr(i)).parse().unwrap();
            TcpServer::start(&c.backends[i], addr, &format!("cp{i}")).unwrap()
        })
        .collect();
    std::fs::write(&c.config, config(&c)).unwrap();
    let daemon = c.start_daemon().unwrap();
    assert!(
        daemon
            .log()
            .contains("serving the stats page at http://127.0.0.1:8404/stats"),
        "{}",
        daemon.log()
    );
    wait_all_up(&c, 3);

    // Basic auth: nothing without the user and password of the hash.
    let (head, _) = http(&c, "/stats", None);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(
        head.contains("www-authenticate: Basic realm=\"kube-xdp stats\""),
        "{head}"
    );
    let (head, _) = http(&c, "/stats", Some("Basic YWRtaW46d3Jvbmc="));
    assert!(head.starts_with("HTTP/1.1 401"), "wrong password: {head}");
    let (head, body) = http(&c, "/stats.json", Some(&format!("Basic {BASIC}")));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ha"]["state"], "standalone", "{json}");
    assert_eq!(json["services"][0]["backends"].as_array().unwrap().len(), 3);
    assert!(!daemon.log().contains(BASIC), "the header is never logged");

    // Traffic: long-lived connections and a burst of short ones.
    let mut pingers: Vec<Pinger> = (0..6)
        .map(|_| {
            Pinger::start(
                EchoConn::open(&c, vip(6443)).unwrap(),
                Duration::from_millis(100),
            )
        })
        .collect();
    connect_many(&c, vip(6443), 30, Duration::from_secs(3)).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let before = page(&c, &daemon);
    for b in ["cp0", "cp1", "cp2"] {
        assert_eq!(row(&before, b)[2], "UP", "{:?}", row(&before, b));
    }
    let new_flows_before = number(&cell_after(&before, "New flows").unwrap());
    assert!(new_flows_before >= 36, "{before}");
    assert_eq!(
        cell_after(&before, "Backends usable").unwrap(),
        "3 of 3 (3 UP)"
    );

    // cp1 dies; traffic goes on to the others.
    servers[1].stop();
    wait_out_of_pool(&c, "cp1", Duration::from_secs(10));
    connect_many(&c, vip(6443), 30, Duration::from_secs(3)).unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let after = page(&c, &daemon);
    let cp1 = row(&after, "cp1");
    eprintln!("cp1's row after it went down: {}", cp1.join(" | "));
    // Backend | Address | State | For | Last check | Weight | Share | …
    assert_eq!(cp1[0], "cp1");
    assert_eq!(cp1[1], "198.18.0.12:6443");
    assert_eq!(cp1[2], "DOWN", "{cp1:?}");
    assert!(
        !cp1[3].starts_with('≥'),
        "it went down while we watched: {cp1:?}"
    );
    assert!(cp1[4].starts_with("L4CON in "), "{cp1:?}");
    assert_eq!(cp1[6], "0.0%", "no Maglev share: {cp1:?}");
    assert!(
        after.contains("class=\"backend down\" id=\"backend-kube-apiserver-cp1\""),
        "the row is coloured as DOWN"
    );
    for b in ["cp0", "cp2"] {
        assert_eq!(row(&after, b)[2], "UP", "{:?}", row(&after, b));
    }
    assert!(after.contains("2 of 3 backends usable"), "{after}");
    assert_eq!(
        cell_after(&after, "Backends usable").unwrap(),
        "2 of 3 (2 UP)"
    );
    let new_flows_after = number(&cell_after(&after, "New flows").unwrap());
    assert!(
        new_flows_after >= new_flows_before + 30,
        "the flows count moved: {new_flows_before} -> {new_flows_after}"
    );
    // The survivors' packet rates are over a second of traffic.
    assert!(after.contains("rates over "), "{after}");
    assert!(
        after.contains("<meta http-equiv=\"refresh\" content=\"2\">"),
        "{after}"
    );

    // A reload applies the page's settings (stats_listen alone takes a
    // restart): a new refresh, and the page moves to a new path.
    std::fs::write(
        &c.config,
        config(&c)
            .replace("stats_refresh = \"2s\"", "stats_refresh = \"7s\"")
            .replace(
                "stats_listen = \"8404\"",
                "stats_listen = \"8404\"\nstats_uri = \"/lb\"",
            ),
    )
    .unwrap();
    let (ok, out) = reload(&c);
    assert!(ok, "{out}");
    let auth = format!("Basic {BASIC}");
    let (head, body) = http(&c, "/lb", Some(&auth));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}\n{body}");
    assert!(
        body.contains("<meta http-equiv=\"refresh\" content=\"7\">"),
        "{body}"
    );
    assert!(body.contains("<a href=\"/lb.json\">"), "{body}");
    let (head, _) = http(&c, "/stats", Some(&auth));
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    std::fs::write(&c.config, config(&c)).unwrap();
    assert!(reload(&c).0);

    if let Some(file) = screenshot_path() {
        screenshot(&c.lb, PAGE, &file, (1180, 320)).unwrap();
        eprintln!("screenshot: {}", file.display());
    }
    for p in &mut pingers {
        p.finish();
    }
    drop(daemon);
}
