//! The `[syn_flood]` table.

use super::*;

#[test]
fn syn_flood_takes_a_mode_and_a_limit() {
    for (mode, want, number) in [
        ("auto", SynCookies::Auto, 1),
        ("always", SynCookies::Always, 2),
        ("never", SynCookies::Never, 0),
    ] {
        let text = format!("{DAEMON}[syn_flood]\nsyn_cookies = \"{mode}\"\nhalf_open_limit = 1\n");
        let f = parse(&text).unwrap().syn_flood;
        assert_eq!((f.syn_cookies, f.half_open_limit), (want, 1), "{text}");
        assert_eq!(f.syn_cookies.number(), number);
        assert_eq!(
            f.lines.get("half_open_limit"),
            Some(line(&text, "half_open"))
        );
    }
    // One key alone: the other keeps its default.
    let f = parse(&format!("{DAEMON}[syn_flood]\nhalf_open_limit = 100000\n"))
        .unwrap()
        .syn_flood;
    assert_eq!(
        (f.syn_cookies, f.half_open_limit),
        (SynCookies::Auto, 100_000)
    );
    let f = parse(&format!("{DAEMON}[syn_flood]\n")).unwrap().syn_flood;
    assert_eq!(f, SynFlood::default());
}

#[test]
fn an_unknown_mode_names_the_three() {
    let text = format!("{DAEMON}[syn_flood]\nsyn_cookies = \"on\"\n");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "syn_cookies",
        "syn_cookies",
        "\"on\" is not one of \"auto\", \"always\", \"never\"",
    );
    assert_eq!(i.context, "syn_flood");
}

#[test]
fn a_zero_negative_or_huge_limit_is_refused() {
    for (value, says) in [
        ("0", "must be at least 1 (got 0)"),
        ("-5", "must be at least 1 (got -5)"),
        ("16777217", "must be at most 16777216 (got 16777217)"),
    ] {
        let text = format!("{DAEMON}[syn_flood]\nhalf_open_limit = {value}\n");
        let i = issue(&text);
        assert_issue(&i, &text, "half_open_limit", "half_open_limit", says);
        assert!(i.message.contains("half-open TCP flows"), "{i}");
    }
    // Wrong types and unknown keys, as everywhere.
    let text = format!("{DAEMON}[syn_flood]\nhalf_open_limit = \"8k\"\n");
    assert!(
        issue(&text).message.contains("expected an integer"),
        "{}",
        issue(&text)
    );
    let text = format!("{DAEMON}[syn_flood]\nsyn_cookie = \"auto\"\n");
    let i = issue(&text);
    assert_eq!(i.key, "syn_cookie");
    assert!(i.message.contains("did you mean \"syn_cookies\""), "{i}");
}

#[test]
fn every_bad_syn_flood_key_is_reported_at_once() {
    let text = format!(
        "{DAEMON}[timeouts]\ntcp_syn = \"0s\"\n[syn_flood]\nsyn_cookies = \"sometimes\"\nhalf_open_limit = 0\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_eq!(
        all.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(),
        ["tcp_syn", "syn_cookies", "half_open_limit"]
    );
}
