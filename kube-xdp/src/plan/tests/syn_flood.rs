//! `[syn_flood]` on the host: the datapath's settings of the SYN-cookie
//! defence, the CPUs its limit is shared over, the warnings.

use std::time::Duration;

use kube_xdp_common::maps::{SYN_COOKIES_ALWAYS, SYN_COOKIES_AUTO, SYN_COOKIES_NEVER};

use super::*;
use crate::config::SynFlood;

#[test]
fn the_settings_carry_the_mode_the_mss_the_scale_and_the_cost() {
    let p = plan(TWO_SERVICES, &FakeHost::lb());
    let s = p.settings();
    assert_eq!(s.syn_cookies, SYN_COOKIES_AUTO);
    // eth0 (MTU 9000) and eth1 (1500): the smaller, less IPv4 and TCP
    // headers.
    assert_eq!(s.cookie_mss, 1460);
    assert_eq!(s.cookie_wscale, 7);
    // tcp_syn 5 s / 1024 flows (one budget, shared by the CPUs).
    assert_eq!(s.tcp_syn_ns, 5_000_000_000);
    assert_eq!(s.half_open_cost_ns, 5_000_000_000 / 1024);
    // Unanswered UDP flows: at most a quarter of the flow table.
    assert_eq!(
        s.unanswered_cost_ns,
        30_000_000_000 / u64::from(p.config.daemon.flow_table_size / 4)
    );
    // What only the daemon knows is left to it.
    assert_eq!(
        (s.cookie_key, s.cookie_clock_offset_ns, s.ts_clock_offset_ns),
        ([0, 0], 0, 0)
    );

    // eth0 alone: jumbo frames.
    let p = plan(DAEMON, &FakeHost::lb());
    assert_eq!(p.settings().cookie_mss, 8960);
    // No MTU known: Ethernet's.
    let host = FakeHost {
        mtus: Vec::new(),
        ..FakeHost::lb()
    };
    assert_eq!(plan(DAEMON, &host).settings().cookie_mss, 1460);

    for (mode, number) in [("always", SYN_COOKIES_ALWAYS), ("never", SYN_COOKIES_NEVER)] {
        let text = format!(
            "{DAEMON}[timeouts]\ntcp_syn = \"3s\"\n[syn_flood]\nsyn_cookies = \"{mode}\"\nhalf_open_limit = 1000\n"
        );
        let s = plan(&text, &FakeHost::lb()).settings();
        assert_eq!(s.syn_cookies, number);
        assert_eq!(s.half_open_cost_ns, 3_000_000_000 / 1000);
    }
}

#[test]
fn the_half_open_cost_shares_the_limit_over_the_cpus_and_is_never_0() {
    let limit = |half_open_limit| SynFlood {
        half_open_limit,
        ..SynFlood::default()
    };
    let second = Duration::from_secs(1);
    // Each CPU's budget holds tcp_syn: 2 CPUs × 1 s / 1000 ns = 2000 flows.
    assert_eq!(
        super::super::half_open_cost_ns(&limit(2000), second, 2),
        1_000_000
    );
    assert_eq!(
        super::super::half_open_cost_ns(&limit(1), second, 1),
        1_000_000_000
    );
    // A limit above what nanoseconds can split: 1 ns, still a limit.
    assert_eq!(
        super::super::half_open_cost_ns(&limit(16_777_216), Duration::from_nanos(1), 1),
        1
    );
    // Huge products do not wrap.
    assert_eq!(
        super::super::half_open_cost_ns(&limit(1), Duration::from_secs(30 * 24 * 3600), u32::MAX),
        u64::MAX
    );
}

#[test]
fn uncountable_cpus_are_an_error() {
    let host = FakeHost {
        cpus: None,
        ..FakeHost::lb()
    };
    let report = env(DAEMON, &host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert!(
        errors[0].message.contains("cannot count this host's CPUs"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_limit_over_half_the_flow_table_is_a_warning() {
    let text = "[daemon]\ninterfaces = [\"eth0\"]\nflow_table_size = 16384\n\
                [syn_flood]\nhalf_open_limit = 8193\n"
        .to_owned();
    let report = env(&text, &FakeHost::lb());
    assert!(report.is_ok(), "{report:?}");
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 1, "{report:?}");
    let w = warnings[0];
    assert_eq!(w.line, Some(line(&text, "half_open_limit")));
    assert_eq!(
        (w.context.as_str(), w.key.as_str()),
        ("syn_flood", "half_open_limit")
    );
    assert!(w.message.contains("evict established flows"), "{w}");
    // Half the table exactly: fine.
    let text = text.replace("8193", "8192");
    assert_eq!(env(&text, &FakeHost::lb()).warnings().count(), 0);
}

#[test]
fn the_summary_says_what_a_syn_over_the_limit_gets() {
    let out = plan(TWO_SERVICES, &FakeHost::lb()).summary();
    for needle in [
        "SYN flood\n  syn_cookies auto  half_open_limit 1024 (one budget, shared by the CPUs)\n",
        "  a SYN over the limit gets a cookie (MSS 1460, window scale 7); cookie key random, this box's own\n",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    let text = format!("{DAEMON}[syn_flood]\nsyn_cookies = \"never\"\nhalf_open_limit = 10\n");
    let out = plan(&text, &FakeHost::lb()).summary();
    assert!(
        out.contains("syn_cookies never  half_open_limit 10 (one budget, shared by the CPUs)"),
        "{out}"
    );
    assert!(
        out.contains("  a SYN over the limit is dropped (half_open_limited)\n"),
        "{out}"
    );
    let text = format!("{DAEMON}[syn_flood]\nsyn_cookies = \"always\"\n");
    let out = plan(&text, &FakeHost::lb()).summary();
    assert!(
        out.contains(
            "every SYN gets a cookie (MSS 8960, window scale 7): no half-open flow is kept"
        ),
        "{out}"
    );
}
