//! What the file exposes to the network: listeners on every address are
//! worth a warning (check-config prints it, run logs it).

use super::{FakeHost, assert_env, env};
use crate::config::tests::DAEMON;

#[test]
fn metrics_and_stats_on_every_address_are_warnings() {
    let text =
        format!("{DAEMON}metrics_listen = \"0.0.0.0:9100\"\nstats_listen = \"0.0.0.0:8404\"\n");
    let report = env(&text, &FakeHost::lb());
    assert!(report.is_ok(), "{report:?}");
    let warnings: Vec<_> = report.warnings().collect();
    assert_eq!(warnings.len(), 2, "{report:?}");
    assert_env(
        warnings[0],
        &text,
        "metrics_listen",
        "metrics_listen",
        "0.0.0.0:9100 listens on every address of this host",
    );
    assert_env(
        warnings[1],
        &text,
        "stats_listen",
        "stats_listen",
        "0.0.0.0:8404 listens on every address of this host",
    );
    assert!(
        warnings[1].message.contains("no stats_auth"),
        "{}",
        warnings[1]
    );
}

#[test]
fn metrics_and_stats_on_one_address_are_fine() {
    let text = format!("{DAEMON}metrics_listen = \"10.4.0.9:9100\"\nstats_listen = \"8404\"\n");
    let report = env(&text, &FakeHost::lb());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.warnings().count(), 0, "{report:?}");
}
