//! Unit tests: the page from fabricated snapshots and check events, its
//! HTML and JSON, and basic auth. No kernel, no maps, no sockets.

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, Instant, SystemTime},
};

use base64::Engine as _;

use super::{StatsPage, build, escape, html, model::DaemonInfo, render, server::authorized};
use crate::{
    config::{StatsAuth, StatsConfig},
    health::{CheckEvent, Failure, Health, Transition},
    metrics::tests::snapshot,
};

fn info(version: Option<&str>) -> DaemonInfo {
    DaemonInfo {
        version: version.map(str::to_owned),
        uptime: Duration::from_secs(3725),
        config_hash: "0123456789abcdef".into(),
        refresh: Duration::from_secs(10),
        ha: None,
    }
}

fn check(backend: &str, result: Result<Duration, Failure>, to: Option<Health>) -> CheckEvent<()> {
    let passed = result.is_ok();
    CheckEvent {
        key: (),
        addr: SocketAddr::from(([198, 18, 0, 12], 6443)),
        duration: Duration::from_millis(if passed { 3 } else { 1 }),
        health: if passed { Health::Up } else { Health::Down },
        transition: to.map(|to| Transition {
            to,
            run: 2,
            needed: 2,
        }),
        reason: if passed {
            "Layer4 check passed, check duration: 3ms, 1/2 successes".into()
        } else {
            format!("Layer4 connection problem, info: \"connection refused\" <{backend}>")
        },
        result,
    }
}

/// cp0 UP, cp1 DOWN after a refused check that took it down; rates over
/// 10 s between the two snapshots.
fn page_with_cp1_down(version: Option<&str>) -> super::Page {
    let stats = StatsPage::new(StatsConfig::default());
    stats.record_check(
        "kube-apiserver",
        "cp0",
        &check("cp0", Ok(Duration::from_millis(3)), None),
    );
    stats.record_check(
        "kube-apiserver",
        "cp1",
        &check("cp1", Err(Failure::Refused), Some(Health::Down)),
    );
    let t0 = Instant::now();
    let before = snapshot(t0, 1, "UP");
    let now = snapshot(t0 + Duration::from_secs(10), 3, "DOWN");
    build(
        &now,
        Some(&before),
        &stats.health(),
        stats.started(),
        info(version),
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    )
}

/// The text of the `<tr>` whose id is `id`, tags stripped, cells joined
/// by `|` (what a person reads along the row).
fn row_text(html: &str, id: &str) -> String {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id} in\n{html}"));
    let start = start + html[start..].find('>').unwrap() + 1;
    let row = &html[start..start + html[start..].find("</tr>").unwrap()];
    let mut cells = Vec::new();
    for cell in row.split("</td>").filter(|c| !c.is_empty()) {
        let mut text = String::new();
        let mut in_tag = false;
        for c in cell.chars() {
            match c {
                '<' => in_tag = true,
                '>' => in_tag = false,
                c if !in_tag => text.push(c),
                _ => {}
            }
        }
        cells.push(text.trim().to_owned());
    }
    cells.join("|")
}

#[test]
fn page_shows_each_backend_state_last_check_and_rates() {
    let p = page_with_cp1_down(Some("0.1.0"));
    let svc = &p.services[0];
    assert_eq!(
        (svc.usable_backends, svc.backends_total),
        (1, 2),
        "cp1 is DOWN"
    );
    let cp1 = &svc.backends[1];
    assert_eq!(cp1.state, "DOWN");
    assert!(!cp1.state_at_least, "the daemon saw it go down");
    let check = cp1.last_check.as_ref().unwrap();
    assert_eq!((check.passed, check.status.as_str()), (false, "L4CON"));
    assert_eq!(check.duration_ms, 1.0);
    // cp0 never changed: its time is counted from the daemon's start.
    assert!(svc.backends[0].state_at_least);
    assert_eq!(svc.backends[0].last_check.as_ref().unwrap().status, "L4OK");
    // Rates: (3 - 1) × 100 packets over 10 s.
    let r = svc.backends[0].rates.unwrap();
    assert_eq!(r.packets_per_second, 20.0);
    assert_eq!(p.rates_over_seconds, Some(10.0));
    assert_eq!(p.totals.rates.unwrap().packets_per_second, 30.0);
    assert_eq!(p.totals.backends_total, 2);
}

#[test]
fn html_rows_read_as_a_person_reads_them() {
    let p = page_with_cp1_down(Some("0.1.0"));
    let html = render(&p, "/stats.json");
    let down = row_text(&html, "backend-kube-apiserver-cp1");
    assert!(
        down.starts_with(
            "cp1|198.18.0.12:6443|DOWN|0s|L4CON in 1 ms, 0s ago|1|0.0%|6|150|8.8 KiB|"
        ),
        "{down}"
    );
    // Rates of the DOWN backend: (150 - 50) packets over 10 s.
    assert!(down.ends_with("|10.0|600 B/s|0.8"), "{down}");
    let up = row_text(&html, "backend-kube-apiserver-cp0");
    assert!(
        up.starts_with("cp0|198.18.0.11:6443|UP|≥ 0s|L4OK in 3 ms"),
        "{up}"
    );
    // Colour by state.
    assert!(html.contains("<tr class=\"backend down\" id=\"backend-kube-apiserver-cp1\">"));
    assert!(html.contains("<tr class=\"backend up\" id=\"backend-kube-apiserver-cp0\">"));
    assert!(html.contains("tr.down td{background:#f6a8a8}"));
    // The service line, the header and the refresh.
    assert!(
        html.contains("198.18.0.10:6443/tcp &middot; nat &middot; on_backend_down keep &middot; 1 of 2 backends usable"),
        "{html}"
    );
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"10\">"));
    assert!(html.contains("version <b>0.1.0</b>"));
    assert!(html.contains("uptime <b>1h02m</b>"));
    assert!(html.contains("config <b>0123456789abcdef</b>"));
    assert!(html.contains("HA <b id=\"ha-state\">standalone</b>"));
    assert!(html.contains("2027-01-15T08:00:00Z"), "{html}");
    assert!(html.contains("rates over 10.0s"));
    assert!(html.contains("<a href=\"/stats.json\">"));
    // The full reason is there for a hover, escaped.
    assert!(html.contains(
        "title=\"Layer4 connection problem, info: &quot;connection refused&quot; &lt;cp1&gt;\""
    ));
}

#[test]
fn html_is_one_self_contained_page() {
    let html = render(&page_with_cp1_down(None), "/stats.json");
    for banned in [
        "<script", "src=", "<link", "url(", "@import", "http://", "https://",
    ] {
        assert!(!html.contains(banned), "{banned} in\n{html}");
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
}

#[test]
fn hidden_version_is_left_off_the_page_and_the_json() {
    let p = page_with_cp1_down(None);
    assert!(!render(&p, "/stats.json").contains("version"));
    let json = serde_json::to_value(&p).unwrap();
    assert!(json.get("version").is_none(), "{json}");
    let p = page_with_cp1_down(Some("0.1.0"));
    assert_eq!(serde_json::to_value(&p).unwrap()["version"], "0.1.0");
}

#[test]
fn json_holds_the_same_data_with_ha_standalone() {
    let json = serde_json::to_value(page_with_cp1_down(Some("0.1.0"))).unwrap();
    assert_eq!(json["ha"], serde_json::json!({"state": "standalone"}));
    assert_eq!(json["config_hash"], "0123456789abcdef");
    assert_eq!(json["uptime_seconds"], 3725);
    let cp1 = &json["services"][0]["backends"][1];
    assert_eq!(cp1["name"], "cp1");
    assert_eq!(cp1["state"], "DOWN");
    assert_eq!(cp1["last_check"]["status"], "L4CON");
    assert_eq!(cp1["last_check"]["passed"], false);
    assert_eq!(cp1["rates"]["packets_per_second"], 10.0);
    assert_eq!(json["services"][0]["usable_backends"], 1);
    assert_eq!(json["totals"]["flow_capacity"], 1_048_576);
}

#[test]
fn first_sample_has_no_rates_and_says_so() {
    let stats = StatsPage::new(StatsConfig::default());
    let cur = snapshot(Instant::now(), 1, "UP");
    assert!(stats.rate_base(&cur).is_none());
    let p = build(
        &cur,
        None,
        &stats.health(),
        stats.started(),
        info(None),
        SystemTime::now(),
    );
    assert!(p.rates_over_seconds.is_none());
    assert!(p.services[0].backends[0].rates.is_none());
    let html = render(&p, "/stats.json");
    assert!(html.contains("rates from the next refresh on"));
    assert!(row_text(&html, "backend-kube-apiserver-cp0").ends_with("|-|-|-"));
    let json = serde_json::to_value(&p).unwrap();
    assert!(json["services"][0]["backends"][0].get("rates").is_none());
}

#[test]
fn rates_are_taken_over_at_least_a_second() {
    let stats = StatsPage::new(StatsConfig::default());
    let t0 = Instant::now();
    let first = snapshot(t0, 1, "UP");
    assert!(stats.rate_base(&first).is_none());
    let second = snapshot(t0 + Duration::from_secs(2), 2, "UP");
    assert_eq!(stats.rate_base(&second).unwrap().taken, t0);
    // 100 ms later (the page's JSON right after the page): against the
    // sample before, not over 100 ms.
    let third = snapshot(t0 + Duration::from_millis(2100), 3, "UP");
    assert_eq!(stats.rate_base(&third).unwrap().taken, t0);
    let fourth = snapshot(t0 + Duration::from_secs(5), 4, "UP");
    assert_eq!(
        stats.rate_base(&fourth).unwrap().taken,
        t0 + Duration::from_secs(2)
    );
}

#[test]
fn last_check_is_named_in_haproxys_short_words() {
    let stats = StatsPage::new(StatsConfig::default());
    let cases = [
        (Err(Failure::Refused), "L4CON"),
        (Err(Failure::Unreachable("no route".into())), "L4CON"),
        (Err(Failure::Timeout(Duration::from_secs(1))), "L4TOUT"),
        (Err(Failure::Tls("bad certificate".into())), "L6RSP"),
        (Err(Failure::Http("not HTTP".into())), "L7RSP"),
        (
            Err(Failure::Status {
                got: 500,
                want: 200,
            }),
            "L7STS",
        ),
        (Ok(Duration::from_millis(1)), "L4OK"),
    ];
    for (result, want) in cases {
        stats.record_check("svc", "a", &check("a", result, None));
        let h = stats.health();
        assert_eq!(
            h[&("svc".to_owned(), "a".to_owned())]
                .last
                .as_ref()
                .unwrap()
                .status,
            want
        );
    }
    let mut http_ok = check("a", Ok(Duration::from_millis(1)), None);
    http_ok.reason = "Layer7 check passed, code: 200, check duration: 1ms, 2/2 successes".into();
    stats.record_check("svc", "a", &http_ok);
    let h = stats.health();
    assert_eq!(
        h[&("svc".to_owned(), "a".to_owned())]
            .last
            .as_ref()
            .unwrap()
            .status,
        "L7OK"
    );
}

#[test]
fn removed_backends_are_forgotten() {
    let stats = StatsPage::new(StatsConfig::default());
    stats.record_check("svc", "a", &check("a", Ok(Duration::ZERO), None));
    stats.record_check("svc", "b", &check("b", Ok(Duration::ZERO), None));
    stats.retain(&HashSet::from([("svc".to_owned(), "a".to_owned())]));
    let h = stats.health();
    assert_eq!(h.len(), 1);
    assert!(h.contains_key(&("svc".to_owned(), "a".to_owned())));
}

#[test]
fn basic_auth_accepts_only_the_user_and_password_of_the_hash() {
    let auth = StatsAuth::parse(&format!(
        "admin:{}",
        crate::config::tests::stats_keys::SECRET_SHA512
    ))
    .unwrap();
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    assert!(authorized(&auth, Some(&basic("admin:secret"))));
    assert!(authorized(
        &auth,
        Some(&basic("admin:secret").replace("Basic", "basic"))
    ));
    for wrong in [
        Some(basic("admin:wrong")),
        Some(basic("root:secret")),
        Some(basic("adminsecret")),
        Some("Bearer abc".to_owned()),
        Some("Basic !!!".to_owned()),
        None,
    ] {
        assert!(!authorized(&auth, wrong.as_deref()), "{wrong:?}");
    }
}

#[test]
fn escape_and_units_read_well() {
    assert_eq!(
        escape("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
    assert_eq!(html::age(45), "45s");
    assert_eq!(html::age(192), "3m12s");
    assert_eq!(html::age(7500), "2h05m");
    assert_eq!(html::age(3 * 86_400 + 4 * 3600), "3d04h");
    assert_eq!(html::bytes(512), "512 B");
    assert_eq!(html::bytes(1536), "1.5 KiB");
    assert_eq!(html::bytes(12 * 1024 * 1024), "12.0 MiB");
}
