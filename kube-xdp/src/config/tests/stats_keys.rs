//! The stats page's keys of `[daemon]`.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;

/// `openssl passwd -6 -salt kubexdpstats secret`.
pub(crate) const SECRET_SHA512: &str = "$6$kubexdpstats$DyA/Xkq8A304GYRIJSNKj5lVirHUUL.sDSuCtlP7vY3qN4YfGkR2OTE9cukVDaOgx2QEpYBT4k3sGUakA6Wmm.";
/// `openssl passwd -5 -salt kubexdpstats secret`.
const SECRET_SHA256: &str = "$5$kubexdpstats$R44YfMHm/zWC5urV.dnk4ig8b3kv18Q/CbzmhtCN//9";

#[test]
fn stats_page_is_off_by_default_with_haproxy_like_defaults() {
    let s = parse(DAEMON).unwrap().daemon.stats;
    assert_eq!(s.listen, None);
    assert_eq!(s.uri, "/stats");
    assert_eq!(s.json_uri(), "/stats.json");
    assert_eq!(s.refresh, Duration::from_secs(10));
    assert_eq!(s.auth, None);
    assert!(!s.hide_version);
}

#[test]
fn stats_keys_parse() {
    let text = format!(
        "{DAEMON}stats_listen = \"0.0.0.0:8404\"\nstats_uri = \"/haproxy\"\nstats_refresh = \"5s\"\n\
         stats_auth = 'admin:{SECRET_SHA512}'\nstats_hide_version = true\n"
    );
    let s = parse(&text).unwrap().daemon.stats;
    assert_eq!(s.listen, Some(SocketAddr::from(([0, 0, 0, 0], 8404))));
    assert_eq!(s.uri, "/haproxy");
    assert_eq!(s.json_uri(), "/haproxy.json");
    assert_eq!(s.refresh, Duration::from_secs(5));
    let auth = s.auth.unwrap();
    assert_eq!(auth.user, "admin");
    assert!(s.hide_version);
    // The hash never shows in a debug print of the config.
    assert!(!format!("{auth:?}").contains("kubexdpstats"), "{auth:?}");
}

#[test]
fn stats_listen_port_alone_means_loopback() {
    for value in ["8404", ":8404", " 8404 "] {
        let text = format!("{DAEMON}stats_listen = \"{value}\"\n");
        assert_eq!(
            parse(&text).unwrap().daemon.stats.listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 8404))),
            "{value:?}"
        );
    }
}

#[test]
fn stats_listen_must_be_an_address_and_port_or_a_port() {
    for value in ["localhost", "0", ":0", "70000", "127.0.0.1"] {
        let text = format!("{DAEMON}stats_listen = \"{value}\"\n");
        let says = if value.ends_with('0') && !value.starts_with('7') {
            "the port must not be 0"
        } else {
            "or \"8404\" for loopback"
        };
        assert_issue(&issue(&text), &text, "stats_listen", "stats_listen", says);
    }
}

#[test]
fn stats_uri_must_be_a_plain_absolute_path() {
    for (value, says) in [
        ("stats", "must start with '/'"),
        ("/", "must name a page"),
        ("/stats/", "no trailing '/'"),
        ("/stats.json", "must not end in .json"),
        ("/stats?x=1", "must be a plain path"),
        ("/my stats", "must be a plain path"),
    ] {
        let text = format!("{DAEMON}stats_uri = \"{value}\"\n");
        assert_issue(&issue(&text), &text, "stats_uri", "stats_uri", says);
    }
}

#[test]
fn stats_refresh_is_a_duration_above_zero() {
    let text = format!("{DAEMON}stats_refresh = \"often\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "stats_refresh",
        "stats_refresh",
        "is not a duration",
    );
    let text = format!("{DAEMON}stats_refresh = \"0s\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "stats_refresh",
        "stats_refresh",
        "must be longer than 0",
    );
}

#[test]
fn stats_auth_refuses_a_clear_text_password_and_says_how_to_hash() {
    let text = format!("{DAEMON}stats_auth = \"admin:hunter2\"\n");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "stats_auth",
        "stats_auth",
        "looks like a clear-text password",
    );
    let shown = i.to_string();
    assert!(shown.contains("mkpasswd -m sha-512"), "{shown}");
    assert!(shown.contains("openssl passwd -6"), "{shown}");
    // The message never repeats what may be a password.
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn stats_auth_refuses_a_broken_hash_a_missing_user_or_colon() {
    for (value, says) in [
        ("admin:$6$salt", "is not a valid one"),
        ("admin:$6$salt$not-base64!", "is not a valid one"),
        (":$6$salt$abc", "must be non-empty"),
        ("admin", "no ':' found"),
        ("admin:$1$md5$hash", "is not a password hash"),
    ] {
        let text = format!("{DAEMON}stats_auth = '{value}'\n");
        let all = issues(&text);
        assert_eq!(all.len(), 1, "{value}: {}", list(&all));
        assert_issue(&all[0], &text, "stats_auth", "stats_auth", says);
    }
}

#[test]
fn stats_auth_checks_passwords_against_sha512_and_sha256_hashes() {
    for hash in [SECRET_SHA512, SECRET_SHA256] {
        let auth = StatsAuth::parse(&format!("admin:{hash}")).unwrap();
        assert!(auth.verify("admin", "secret"), "{hash}");
        assert!(!auth.verify("admin", "Secret"), "{hash}");
        assert!(!auth.verify("root", "secret"), "{hash}");
        assert!(!auth.verify("admin", ""), "{hash}");
    }
}

#[test]
fn several_stats_errors_are_reported_together_each_on_its_line() {
    let text =
        format!("{DAEMON}stats_listen = \"x\"\nstats_uri = \"stats\"\nstats_auth = \"a:b\"\n");
    let all = issues(&text);
    let keys: Vec<&str> = all.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(
        keys,
        ["stats_listen", "stats_uri", "stats_auth"],
        "{}",
        list(&all)
    );
}
