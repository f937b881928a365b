//! The `[timeouts]` table.

use super::*;

#[test]
fn zero_timeouts_are_rejected_except_time_wait() {
    let text = format!(
        "{DAEMON}[timeouts]\ntcp_established = \"0s\"\ntcp_closing = \"0s\"\nudp = \"0ms\"\ntcp_time_wait = \"0s\"\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "tcp_established",
        "tcp_established",
        "longer than 0",
    );
    assert_issue(
        &all[1],
        &text,
        "tcp_closing",
        "tcp_closing",
        "longer than 0",
    );
    assert_issue(&all[2], &text, "udp", "udp", "longer than 0");
    assert_eq!(all[0].context, "timeouts");
}

#[test]
fn durations_are_bounded_so_nothing_wraps_or_spins() {
    let text = format!(
        "{DAEMON}[timeouts]\ntcp_established = \"1000years\"\ntcp_time_wait = \"31days\"\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "tcp_established",
        "tcp_established",
        "at most 30 days",
    );
    assert_issue(
        &all[1],
        &text,
        "tcp_time_wait",
        "tcp_time_wait",
        "at most 30 days",
    );
    // 30 days itself is fine.
    parse(&format!(
        "{DAEMON}[timeouts]\ntcp_established = \"30days\"\n"
    ))
    .unwrap();

    let text = check("interval = \"1ns\"\ntimeout = \"0s\"");
    let all = issues(&text);
    assert!(
        all.iter()
            .any(|i| i.key == "interval" && i.message.contains("at least 10ms")),
        "{}",
        list(&all)
    );
    let text = check("interval = \"500000000000years\"");
    assert!(
        issues(&text)
            .iter()
            .any(|i| i.key == "interval" && i.message.contains("at most 30 days")),
        "{}",
        list(&issues(&text))
    );
}
