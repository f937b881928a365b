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
