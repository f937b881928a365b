//! Unit tests: no kernel, no maps — fabricated snapshots and events.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant, SystemTime},
};

use kube_xdp_common::stats::Counter as DpCounter;
use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, registry::Registry};

use super::{
    Metrics, fnv1a64,
    summary::Summary,
    top::{self, Rates},
};
use crate::{
    datapath::BackendState,
    health::{CheckEvent, Failure, Health, Transition},
    view::{BackendName, BackendView, Names, ServiceName, ServiceView, Snapshot},
};

fn backend(
    name: &str,
    last: u8,
    state: &'static str,
    share: f64,
    t: (u64, u64, u64),
) -> BackendView {
    BackendView {
        name: name.into(),
        address: Ipv4Addr::new(198, 18, 0, last),
        port: Some(6443),
        state: match state {
            "UP" => BackendState::Up,
            "DOWN" => BackendState::Down,
            _ => BackendState::Drain,
        },
        weight: Some(1),
        share,
        active_flows: t.2 / 2,
        packets: t.0,
        bytes: t.1,
        new_flows: t.2,
    }
}

fn service(backends: Vec<BackendView>) -> ServiceView {
    ServiceView {
        origin: None,
        name: "kube-apiserver".into(),
        vip: Ipv4Addr::new(198, 18, 0, 10),
        first_port: 6443,
        last_port: 6443,
        protocol: "tcp",
        mode: "nat",
        on_backend_down: "keep",
        packets: backends.iter().map(|b| b.packets).sum(),
        bytes: backends.iter().map(|b| b.bytes).sum(),
        new_flows: backends.iter().map(|b| b.new_flows).sum(),
        backends,
    }
}

pub(crate) fn snapshot(taken: Instant, scale: u64, cp1_state: &'static str) -> Snapshot {
    let cp1_share = if cp1_state == "UP" { 0.5 } else { 0.0 };
    let services = vec![service(vec![
        backend(
            "cp0",
            11,
            "UP",
            1.0 - cp1_share,
            (100 * scale, 6000 * scale, 10 * scale),
        ),
        backend(
            "cp1",
            12,
            cp1_state,
            cp1_share,
            (50 * scale, 3000 * scale, 4 * scale),
        ),
    ])];
    let counters = DpCounter::ALL
        .iter()
        .map(|c| {
            let v = match c {
                DpCounter::VerdictTx => 150 * scale,
                DpCounter::VerdictPass => 7 * scale,
                DpCounter::VerdictDrop => scale,
                DpCounter::NewFlow => 14 * scale,
                _ => 0,
            };
            (*c, v)
        })
        .collect();
    Snapshot {
        taken,
        counters,
        live_flows: services[0].backends.iter().map(|b| b.active_flows).sum(),
        live_by_state: [scale, 7 * scale - scale, 0, 0],
        services,
        flow_entries: 40 * scale,
        capacity: 1_048_576,
        read_duration: Duration::from_millis(3),
    }
}

fn set_counter(s: &mut Snapshot, counter: DpCounter, value: u64) {
    for (c, v) in &mut s.counters {
        if *c == counter {
            *v = value;
        }
    }
}

#[test]
fn fnv1a64_matches_the_reference_vectors() {
    assert_eq!(fnv1a64(b""), "cbf29ce484222325");
    assert_eq!(fnv1a64(b"a"), "af63dc4c8601ec8c");
    assert_eq!(fnv1a64(b"foobar"), "85944171f73967e8");
}

#[test]
fn rates_are_per_second_and_never_negative() {
    assert_eq!(top::rate(100, 300, 2.0), 100.0);
    assert_eq!(
        top::rate(300, 100, 2.0),
        0.0,
        "a reset counts as no traffic"
    );
    assert_eq!(top::rate(0, 10, 0.0), 0.0, "no time, no rate");
    assert_eq!(top::rate(0, 1, 0.5), 2.0);
}

#[test]
fn human_rate_is_compact() {
    assert_eq!(top::human_rate(0.0), "0");
    assert_eq!(top::human_rate(7.5), "7.5");
    assert_eq!(top::human_rate(812.0), "812.0");
    assert_eq!(top::human_rate(999.96), "1.0K");
    assert_eq!(top::human_rate(12_345.0), "12.3K");
    assert_eq!(top::human_rate(4_100_000.0), "4.1M");
    assert_eq!(top::human_rate(f64::NAN), "0");
}

#[test]
fn clock_is_utc_time_of_day() {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 365 + 3_723);
    assert_eq!(top::clock(t), "01:02:03");
}

#[test]
fn frame_computes_rates_between_samples() {
    let t0 = Instant::now();
    let prev = snapshot(t0, 1, "UP");
    let cur = snapshot(t0 + Duration::from_secs(2), 3, "UP");
    let f = top::frame(&prev, &cur, SystemTime::UNIX_EPOCH);
    assert_eq!(f.seconds, 2.0);
    // tx went 150 → 450 in 2 s.
    assert_eq!(f.forwarded, 150.0);
    assert_eq!(f.passed, 7.0);
    assert_eq!(f.dropped, 1.0);
    let s = &f.services[0];
    assert_eq!(s.address, "198.18.0.10:6443/tcp");
    assert_eq!((s.usable, s.backends_total), (2, 2));
    assert_eq!(
        s.rates,
        Some(Rates {
            packets: 150.0,
            bytes: 9000.0,
            new_flows: 14.0
        })
    );
    let cp0 = &s.backends[0];
    assert_eq!(cp0.address, "198.18.0.11:6443");
    assert_eq!(
        cp0.rates,
        Some(Rates {
            packets: 100.0,
            bytes: 6000.0,
            new_flows: 10.0
        })
    );
}

#[test]
fn a_backend_new_in_this_sample_has_no_rate_yet() {
    let t0 = Instant::now();
    let mut prev = snapshot(t0, 1, "UP");
    prev.services[0].backends.pop();
    let cur = snapshot(t0 + Duration::from_secs(1), 2, "UP");
    let f = top::frame(&prev, &cur, SystemTime::UNIX_EPOCH);
    assert!(f.services[0].backends[0].rates.is_some());
    assert_eq!(f.services[0].backends[1].rates, None);
    let text = top::render(&f);
    let cp1 = text
        .lines()
        .find(|l| l.trim_start().starts_with("cp1"))
        .unwrap();
    assert!(cp1.trim_end().ends_with("-        -        -"), "{text}");
}

#[test]
fn render_shows_header_services_and_backends() {
    let t0 = Instant::now();
    let prev = snapshot(t0, 1, "DOWN");
    let cur = snapshot(t0 + Duration::from_secs(1), 2, "DOWN");
    let text = top::render(&top::frame(
        &prev,
        &cur,
        SystemTime::UNIX_EPOCH + Duration::from_secs(3_600),
    ));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0]
            .starts_with("kube-xdp top  01:00:00 UTC  rates over 1.0s  flows 14 live / 1048576"),
        "{text}"
    );
    assert_eq!(
        lines[1],
        "packets/s: forwarded 150.0  passed 7.0  dropped 1.0"
    );
    assert!(lines[3].starts_with("NAME"), "{text}");
    let svc: Vec<&str> = lines[4].split_whitespace().collect();
    assert_eq!(
        svc,
        [
            "kube-apiserver",
            "198.18.0.10:6443/tcp",
            "1/2",
            "14",
            "150.0",
            "9.0K",
            "14.0"
        ],
        "{text}"
    );
    let cp1: Vec<&str> = lines[6].split_whitespace().collect();
    assert_eq!(
        cp1,
        [
            "cp1",
            "198.18.0.12:6443",
            "DOWN",
            "1",
            "0.0%",
            "4",
            "50.0",
            "3.0K",
            "4.0"
        ],
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no escapes in a rendered frame");
    // Columns line up: every table line is as wide as the header's.
    let width = lines[3].len();
    for l in &lines[4..] {
        assert_eq!(l.len(), width, "{text}");
    }
}

#[test]
fn render_shows_the_syn_flood_line_only_while_syns_are_over_the_limit() {
    let t0 = Instant::now();
    let prev = snapshot(t0, 1, "UP");
    let mut cur = snapshot(t0 + Duration::from_secs(2), 1, "UP");
    let quiet = top::render(&top::frame(&prev, &cur, SystemTime::UNIX_EPOCH));
    assert!(!quiet.contains("SYN defence"), "{quiet}");
    set_counter(&mut cur, DpCounter::CookieSent, 5_000);
    set_counter(&mut cur, DpCounter::HalfOpenLimited, 20);
    let f = top::frame(&prev, &cur, SystemTime::UNIX_EPOCH);
    assert_eq!((f.cookies_sent, f.half_open_limited), (2_500.0, 10.0));
    let text = top::render(&f);
    assert_eq!(
        text.lines().nth(2),
        Some(
            "SYN defence: cookies sent/s 2.5K  dropped over the half-open limit/s 10.0  half-open flows 1"
        ),
        "{text}"
    );
}

#[test]
fn render_says_when_nothing_is_programmed() {
    let t0 = Instant::now();
    let mut s = snapshot(t0, 1, "UP");
    s.services.clear();
    let text = top::render(&top::frame(&s, &s, SystemTime::UNIX_EPOCH));
    assert!(text.contains("(no services are programmed)"), "{text}");
}

#[test]
fn summary_counts_since_the_last_one() {
    let t0 = Instant::now();
    let prev = snapshot(t0, 1, "UP");
    let cur = snapshot(t0 + Duration::from_secs(60), 4, "DOWN");
    let s = Summary::between(&prev, &cur);
    assert_eq!(s.forwarded, 450);
    assert_eq!(s.new_flows, 42);
    assert_eq!(s.passed, 21);
    assert_eq!(s.dropped, 3);
    assert_eq!((s.backends_up, s.backends_total), (1, 2));
    assert!(s.no_usable_backend.is_empty());
    assert!(!s.is_warning());
    assert_eq!(s.message(), "summary");
    assert_eq!(s.seconds, 60.0);
    assert_eq!(s.live_flows, 28);

    let mut full = cur.clone();
    full.capacity = 30;
    for b in &mut full.services[0].backends {
        b.share = 0.0;
    }
    let s = Summary::between(&prev, &full);
    assert!(s.is_warning());
    assert_eq!(
        s.message(),
        "summary: the flow table is 93% full (over 80%): raise flow_table_size; \
         no usable backend: kube-apiserver"
    );
}

/// Encodes a fixed snapshot the way the daemon's collector does.
#[derive(Debug)]
struct Fixed(Option<Snapshot>);

impl Collector for Fixed {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        super::collector::encode_snapshot(&mut encoder, self.0.as_ref(), "0123456789abcdef")
    }
}

fn exposition(snapshot: Option<Snapshot>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Fixed(snapshot)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out
}

fn has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in\n{text}"
    );
}

#[test]
fn exposition_of_the_maps() {
    let mut s = snapshot(Instant::now(), 2, "DOWN");
    set_counter(&mut s, DpCounter::CookieSent, 1000);
    set_counter(&mut s, DpCounter::CookieValid, 6);
    let text = exposition(Some(s));
    let svc = "service=\"kube-apiserver\"";
    for line in [
        "# TYPE kube_xdp_service_packets counter".to_owned(),
        format!("kube_xdp_service_packets_total{{{svc}}} 300"),
        format!("kube_xdp_service_bytes_total{{{svc}}} 18000"),
        format!("kube_xdp_service_new_flows_total{{{svc}}} 28"),
        format!("kube_xdp_service_backends{{{svc}}} 2"),
        format!("kube_xdp_service_usable_backends{{{svc}}} 1"),
        format!("kube_xdp_backend_packets_total{{{svc},backend=\"cp0\"}} 200"),
        format!("kube_xdp_backend_bytes_total{{{svc},backend=\"cp1\"}} 6000"),
        format!("kube_xdp_backend_new_flows_total{{{svc},backend=\"cp1\"}} 8"),
        format!("kube_xdp_backend_up{{{svc},backend=\"cp0\"}} 1"),
        format!("kube_xdp_backend_up{{{svc},backend=\"cp1\"}} 0"),
        format!("kube_xdp_backend_state{{{svc},backend=\"cp1\",state=\"down\"}} 1"),
        format!("kube_xdp_backend_state{{{svc},backend=\"cp1\",state=\"up\"}} 0"),
        format!("kube_xdp_backend_state{{{svc},backend=\"cp1\",state=\"drain\"}} 0"),
        format!("kube_xdp_backend_weight{{{svc},backend=\"cp0\"}} 1"),
        format!("kube_xdp_backend_maglev_share{{{svc},backend=\"cp0\"}} 1.0"),
        format!("kube_xdp_backend_active_flows{{{svc},backend=\"cp0\"}} 10"),
        "kube_xdp_datapath_packets_total{verdict=\"tx\"} 300".to_owned(),
        "kube_xdp_datapath_packets_total{verdict=\"pass\"} 14".to_owned(),
        "kube_xdp_datapath_reason_packets_total{reason=\"new_flow\"} 28".to_owned(),
        "kube_xdp_datapath_reason_packets_total{reason=\"neighbour_miss\"} 0".to_owned(),
        "kube_xdp_datapath_reason_packets_total{reason=\"flow_table_full\"} 0".to_owned(),
        "kube_xdp_flow_table_entries 80".to_owned(),
        "kube_xdp_flow_table_live_flows 14".to_owned(),
        "kube_xdp_flow_table_live_flows_by_state{state=\"syn_sent\"} 2".to_owned(),
        "kube_xdp_flow_table_live_flows_by_state{state=\"established\"} 12".to_owned(),
        "kube_xdp_flow_table_live_flows_by_state{state=\"closing\"} 0".to_owned(),
        "kube_xdp_flow_table_live_flows_by_state{state=\"udp\"} 0".to_owned(),
        // The SYN-flood counters, with the other reasons.
        "kube_xdp_datapath_reason_packets_total{reason=\"syn_cookie_sent\"} 1000".to_owned(),
        "kube_xdp_datapath_reason_packets_total{reason=\"syn_cookie_valid\"} 6".to_owned(),
        "kube_xdp_datapath_reason_packets_total{reason=\"half_open_limited\"} 0".to_owned(),
        "kube_xdp_datapath_reason_packets_total{reason=\"syn_cookie_early\"} 0".to_owned(),
        "kube_xdp_flow_table_capacity 1048576".to_owned(),
        "kube_xdp_config_info{hash=\"0123456789abcdef\"} 1".to_owned(),
        "kube_xdp_datapath_up 1".to_owned(),
        "# EOF".to_owned(),
    ] {
        has_line(&text, &line);
    }
    // Verdicts are not repeated as reasons.
    assert!(!text.contains("reason=\"verdict_tx\""), "{text}");
}

#[test]
fn exposition_without_maps_says_so() {
    let text = exposition(None);
    has_line(&text, "kube_xdp_datapath_up 0");
    has_line(&text, "kube_xdp_config_info{hash=\"0123456789abcdef\"} 1");
    assert!(!text.contains("kube_xdp_service_packets"), "{text}");
}

/// The names of a daemon that programmed kube-apiserver with `backends`.
fn names(backends: &[&str]) -> Names {
    Names {
        pin_path: "/nonexistent/kube-xdp-metrics-test".into(),
        services: [(
            0,
            ServiceName {
                name: "kube-apiserver".into(),
                origin: None,
                backends: backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| {
                        (
                            i as u32,
                            BackendName {
                                name: (*b).into(),
                                weight: 1,
                            },
                        )
                    })
                    .collect(),
            },
        )]
        .into(),
    }
}

fn event(
    result: Result<Duration, Failure>,
    transition: Option<Transition>,
) -> CheckEvent<(String, String)> {
    CheckEvent {
        key: ("kube-apiserver".into(), "cp0".into()),
        addr: SocketAddr::from(([198, 18, 0, 11], 6443)),
        duration: Duration::from_millis(2),
        health: if result.is_ok() {
            Health::Up
        } else {
            Health::Down
        },
        result,
        transition,
        reason: String::new(),
    }
}

#[test]
fn daemon_metrics_record_checks_reloads_and_build_info() {
    let m = Metrics::new(
        "/nonexistent/kube-xdp-metrics-test".into(),
        names(&["cp0", "cp1"]),
        "aaaa".into(),
    );
    m.record_check(
        "kube-apiserver",
        "cp0",
        &event(Ok(Duration::from_micros(700)), None),
    );
    m.record_check(
        "kube-apiserver",
        "cp0",
        &event(Ok(Duration::from_millis(3)), None),
    );
    m.record_check(
        "kube-apiserver",
        "cp0",
        &event(
            Err(Failure::Refused),
            Some(Transition {
                to: Health::Down,
                run: 1,
                needed: 1,
            }),
        ),
    );
    // Not programmed: ignored.
    m.record_check(
        "kube-apiserver",
        "gone",
        &event(Err(Failure::Refused), None),
    );
    m.reload_failed();
    let text = m.encode().unwrap();
    let be = "service=\"kube-apiserver\",backend=\"cp0\"";
    for line in [
        format!(
            "kube_xdp_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE kube_xdp_health_check_duration_seconds histogram".to_owned(),
        "# UNIT kube_xdp_health_check_duration_seconds seconds".to_owned(),
        format!("kube_xdp_health_check_duration_seconds_count{{{be}}} 2"),
        format!("kube_xdp_health_check_duration_seconds_bucket{{le=\"0.001\",{be}}} 1"),
        format!("kube_xdp_health_check_duration_seconds_bucket{{le=\"0.005\",{be}}} 2"),
        format!("kube_xdp_health_check_failures_total{{{be},reason=\"refused\"}} 1"),
        format!("kube_xdp_backend_transitions_total{{{be},to=\"down\"}} 1"),
        "kube_xdp_reloads_total{result=\"ok\"} 0".to_owned(),
        "kube_xdp_reloads_total{result=\"failed\"} 1".to_owned(),
        "kube_xdp_config_last_reload_successful 0".to_owned(),
        "kube_xdp_config_info{hash=\"aaaa\"} 1".to_owned(),
        // The pins of this configuration do not exist.
        "kube_xdp_datapath_up 0".to_owned(),
    ] {
        has_line(&text, &line);
    }
    assert!(!text.contains("backend=\"gone\""), "{text}");
    has_line(&text, "# TYPE kube_xdp_syn_flood_defence gauge");
    has_line(&text, "kube_xdp_syn_flood_defence 0");
    m.set_syn_flood_defence(true);
    has_line(&m.encode().unwrap(), "kube_xdp_syn_flood_defence 1");

    // A reload that drops cp0 drops its series, and shows the new hash.
    m.set_names(names(&["cp1"]));
    m.reload_ok("bbbb".into());
    let text = m.encode().unwrap();
    has_line(&text, "kube_xdp_reloads_total{result=\"ok\"} 1");
    has_line(&text, "kube_xdp_config_last_reload_successful 1");
    has_line(&text, "kube_xdp_config_info{hash=\"bbbb\"} 1");
    assert!(!text.contains("backend=\"cp0\""), "{text}");
}

#[test]
fn the_flow_syncs_counters_are_exposed_as_its_task_published_them() {
    let metrics = super::Metrics::new(
        "/nonexistent/kube-xdp-pins".into(),
        crate::view::Names::default(),
        "0".into(),
    );
    let text = metrics.encode().unwrap();
    assert!(
        !text.contains("kube_xdp_sync_datagrams"),
        "no pair, no sync"
    );
    let mut status = crate::sync::task::SyncStatus {
        sent_datagrams: 7,
        received_datagrams: 9,
        sent_records: 120,
        installed_records: 110,
        ..Default::default()
    };
    status.rejected.insert("bad_tag".into(), 5);
    status.skipped_records.insert("unknown_backend".into(), 2);
    metrics.set_sync(&status);
    let text = metrics.encode().unwrap();
    for line in [
        "kube_xdp_sync_datagrams_total{direction=\"sent\"} 7",
        "kube_xdp_sync_datagrams_total{direction=\"received\"} 9",
        "kube_xdp_sync_records_total{what=\"sent\"} 120",
        "kube_xdp_sync_records_total{what=\"installed\"} 110",
        "kube_xdp_sync_rejected_datagrams_total{reason=\"bad_tag\"} 5",
        "kube_xdp_sync_skipped_records_total{reason=\"unknown_backend\"} 2",
    ] {
        has_line(&text, line);
    }
}
