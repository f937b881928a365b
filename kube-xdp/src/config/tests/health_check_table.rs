//! The `[service.health_check]` tables.

use super::*;

#[test]
fn fall_rise_and_interval_of_zero_are_rejected() {
    let text = check("interval = \"0s\"\nfall = 0\nrise = 0");
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "interval",
        "interval",
        "must be longer than 0",
    );
    assert_issue(&all[1], &text, "fall", "fall", "must be at least 1 (got 0)");
    assert!(all[1].message.contains("mark a backend DOWN"), "{}", all[1]);
    assert_issue(&all[2], &text, "rise", "rise", "must be at least 1 (got 0)");
    assert_eq!(all[1].context, "service \"api\" health_check");
}

#[test]
fn timeout_not_shorter_than_interval_is_rejected() {
    let text = check("interval = \"2s\"\ntimeout = \"2s\"");
    assert_issue(
        &issue(&text),
        &text,
        "timeout",
        "timeout",
        "timeout: 2s must be shorter than interval (2s)",
    );
    // Only the interval set, below the default timeout: its line.
    let text = check("interval = \"500ms\"");
    assert_issue(
        &issue(&text),
        &text,
        "interval",
        "interval",
        "interval: 500ms must be longer than timeout (1s)",
    );
}

#[test]
fn https_settings_on_a_tcp_check_are_rejected() {
    let text = check(
        "kind = \"tcp\"\ntls_verify = false\nca_file = \"/etc/ca.crt\"\nserver_name = \"kubernetes\"\npath = \"/readyz\"\nexpect_status = 200",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 5, "{}", list(&all));
    for (i, key) in all.iter().zip([
        "tls_verify",
        "ca_file",
        "server_name",
        "path",
        "expect_status",
    ]) {
        assert_issue(
            i,
            &text,
            &format!("{key} = "),
            key,
            "this check is kind = \"tcp\"",
        );
    }
    assert!(all[0].message.contains("kind = \"https\""), "{}", all[0]);
    assert!(
        all[3]
            .message
            .contains("kind = \"http\" or kind = \"https\""),
        "{}",
        all[3]
    );
}

#[test]
fn tls_settings_on_an_http_check_are_rejected() {
    let text = check("kind = \"http\"\nserver_name = \"kubernetes\"");
    assert_issue(
        &issue(&text),
        &text,
        "server_name",
        "server_name",
        "only used by kind = \"https\"",
    );
}

#[test]
fn checks_default_to_tcp_so_tls_settings_alone_are_rejected() {
    let text = check("tls_verify = false");
    assert_issue(
        &issue(&text),
        &text,
        "tls_verify",
        "tls_verify",
        "set the kind or remove tls_verify",
    );
}

#[test]
fn ca_file_with_tls_verify_off_is_rejected() {
    let text =
        check("kind = \"https\"\ntls_verify = false\nca_file = \"/etc/kubernetes/pki/ca.crt\"");
    assert_issue(
        &issue(&text),
        &text,
        "ca_file",
        "ca_file",
        "remove one of the two",
    );
}

#[test]
fn bad_path_status_and_server_name_are_rejected() {
    let text = check(
        "kind = \"https\"\npath = \"readyz\"\nexpect_status = 999\nserver_name = \"kube rnetes\"",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(&all[0], &text, "path", "path", "is not a request path");
    assert_issue(
        &all[1],
        &text,
        "expect_status",
        "expect_status",
        "must be at most 599 (got 999)",
    );
    assert_issue(
        &all[2],
        &text,
        "server_name",
        "server_name",
        "is not a DNS name",
    );
}

#[test]
fn port_range_service_needs_a_health_check_port() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"30000-32767\"\n"
    );
    assert_issue(
        &issue(&text),
        &text,
        "[[service]]",
        "health_check",
        "no single port to check",
    );
    let text = format!("{text}[service.health_check]\nkind = \"http\"\n");
    let i = issue(&text);
    assert_issue(&i, &text, "[service.health_check]", "port", "10256");
    assert_eq!(i.context, "service \"np\" health_check");
}
