//! Syntax errors, unknown keys and tables, values of the wrong type or
//! keyword.

use super::*;

#[test]
fn unknown_key_is_named_with_its_line_and_a_suggestion() {
    let text = "[daemon]\ninterfaces = [\"eth0\"]\nxdp_mdoe = \"native\"\n";
    let i = issue(text);
    assert_issue(
        &i,
        text,
        "xdp_mdoe",
        "xdp_mdoe",
        "did you mean \"xdp_mode\"",
    );
    assert_eq!(i.context, "daemon");
    assert!(
        i.message.contains("snat_ports"),
        "lists the known keys: {i}"
    );
}

#[test]
fn unknown_key_in_a_backend_names_the_service_and_backend() {
    let text = service(
        "",
        &backend("name = \"bettley\"\naddress = \"10.4.0.11\"\nwieght = 2"),
    );
    let i = issue(&text);
    assert_issue(&i, &text, "wieght", "wieght", "did you mean \"weight\"");
    assert_eq!(i.context, "service \"api\" backend \"bettley\"");
}

#[test]
fn unknown_key_in_a_health_check_names_its_service() {
    let text = check("kind = \"http\"\nexpect = 200");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "expect = ",
        "expect",
        "did you mean \"expect_status\"",
    );
    assert_eq!(i.context, "service \"api\" health_check");
}

#[test]
fn unknown_table_is_rejected_with_its_line() {
    let text = format!("{DAEMON}\n[timeout]\nudp = \"1s\"\n");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[timeout]",
        "timeout",
        "did you mean \"timeouts\"",
    );

    let text = check("kind = \"tcp\"").replace("[service.health_check]", "[service.healthcheck]");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[service.healthcheck]",
        "healthcheck",
        "did you mean \"health_check\"",
    );
    assert_eq!(i.context, "service \"api\"");
}

#[test]
fn value_of_the_wrong_type_is_rejected_with_its_line() {
    let text =
        format!("{DAEMON}\n[[service]]\nname = \"api\"\nvip = \"10.4.0.10\"\nport = \"6443\"\n");
    let i = issue(&text);
    assert_issue(&i, &text, "port = \"6443\"", "port", "expected an integer");
    assert_eq!(i.context, "service \"api\"");

    let text = check("tls_verify = \"no\"");
    assert_issue(
        &issue(&text),
        &text,
        "tls_verify",
        "tls_verify",
        "expected a boolean",
    );

    let text = format!("{DAEMON}[timeouts]\nudp = 120\n");
    assert_issue(
        &issue(&text),
        &text,
        "udp = 120",
        "udp",
        "expected a string",
    );

    let text = service("health_check = 3", "");
    assert_issue(
        &issue(&text),
        &text,
        "health_check = 3",
        "health_check",
        "expected a table",
    );
}

#[test]
fn syntax_error_is_reported_with_its_line() {
    let text = "[daemon]\ninterfaces = [\"eth0\"\nxdp_mode = \"auto\"\n";
    let i = issue(text);
    assert_eq!(i.line, Some(3), "{i}");
    assert_eq!(i.key, "", "not blamed on xdp_mode: {i}");
    assert!(
        i.to_string()
            .starts_with("test.toml:3: daemon: TOML syntax error at column 1: "),
        "{i}"
    );

    let text = "[daemon]\ninterfaces = [\"eth0\"]\n[daemon]\n";
    let i = issue(text);
    assert_eq!(i.line, Some(3), "{i}");
    assert!(i.message.contains("duplicate key `daemon`"), "{i}");
}

#[test]
fn bad_keyword_values_are_rejected_naming_the_choices() {
    let cases = [
        (
            format!("{DAEMON}xdp_mode = \"fast\"\n"),
            "xdp_mode",
            "\"auto\", \"native\", \"generic\"",
        ),
        (
            service("protocol = \"sctp\"", ""),
            "protocol",
            "\"tcp\", \"udp\"",
        ),
        (service("mode = \"tunnel\"", ""), "mode", "\"nat\""),
        (
            service("on_backend_down = \"drop\"", ""),
            "on_backend_down",
            "\"keep\", \"reset\"",
        ),
        (
            check("kind = \"grpc\""),
            "kind",
            "\"tcp\", \"http\", \"https\"",
        ),
        (
            check("init_state = \"maybe\""),
            "init_state",
            "\"down\", \"up\"",
        ),
    ];
    for (text, key, choices) in cases {
        let i = issue(&text);
        assert_issue(&i, &text, &format!("{key} = "), key, choices);
    }
}

#[test]
fn dsr_mode_is_rejected_as_not_supported_yet() {
    let text = service("mode = \"dsr\"", "");
    let i = issue(&text);
    assert_issue(&i, &text, "mode = ", "mode", "not supported yet");
    assert!(i.message.contains("\"nat\""), "{i}");
}

#[test]
fn bad_duration_is_rejected_with_an_example() {
    let text = check("interval = \"2 seconds please\"");
    assert_issue(
        &issue(&text),
        &text,
        "interval",
        "interval",
        "is not a duration",
    );
    let text = service("drain_timeout = \"soon\"", "");
    assert_issue(
        &issue(&text),
        &text,
        "drain_timeout",
        "drain_timeout",
        "\"24h\"",
    );
    let text = format!("{DAEMON}[timeouts]\ntcp_syn = \"0s\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "tcp_syn",
        "tcp_syn",
        "must be longer than 0",
    );
}
