//! The `[[service]]` tables.

use super::*;

#[test]
fn backwards_port_range_is_rejected_with_its_line() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"32767-30000\"\n[service.health_check]\nport = 10256\n"
    );
    let i = issue(&text);
    assert_issue(&i, &text, "ports = ", "ports", "backwards");
    assert!(
        i.message.contains("\"30000-32767\""),
        "suggests the fix: {i}"
    );
    assert_eq!(i.context, "service \"np\"");
}

#[test]
fn out_of_range_ports_are_rejected() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"30000-70000\"\n"
    );
    assert_issue(
        &issue(&text),
        &text,
        "ports = ",
        "ports",
        "port 70000 is out of range",
    );
    let text = service("", "").replace("port = 6443", "port = 0");
    assert_issue(
        &issue(&text),
        &text,
        "port = 0",
        "port",
        "must be at least 1 (got 0)",
    );
    let text = service("", "").replace("port = 6443", "port = 65536");
    assert_issue(
        &issue(&text),
        &text,
        "port = 65536",
        "port",
        "must be at most 65535 (got 65536)",
    );
}

#[test]
fn vip_that_is_not_an_address_is_rejected() {
    for (vip, says) in [
        ("kube-api", "\"kube-api\" is not an IPv4 address"),
        ("10.4.0.256", "is not an IPv4 address"),
        ("224.0.0.1", "cannot be a VIP"),
        ("0.0.0.0", "cannot be a VIP"),
    ] {
        let text = service("", "").replace("10.4.0.10", vip);
        assert_issue(&issue(&text), &text, "vip = ", "vip", says);
    }
}

#[test]
fn missing_name_vip_and_port_are_rejected_at_the_service_table() {
    let text = format!("{DAEMON}\n[[service]]\nprotocol = \"tcp\"\n");
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    for (i, key) in all.iter().zip(["name", "vip", "port"]) {
        assert_issue(i, &text, "[[service]]", key, "is required");
        assert_eq!(i.context, "service #1");
    }
}

#[test]
fn service_name_must_be_a_plain_word() {
    let text = service("", "").replace("name = \"api\"", "name = \"kube apiserver\"");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "name = ",
        "name",
        "may only hold letters, digits",
    );
    assert_eq!(i.context, "service #1");
    let text = service("", "").replace("name = \"api\"", "name = \"\"");
    assert_issue(&issue(&text), &text, "name = ", "name", "is empty");
}

#[test]
fn port_and_ports_together_are_rejected() {
    let text = service("ports = \"30000-32767\"", "");
    assert_issue(
        &issue(&text),
        &text,
        "ports = ",
        "ports",
        "either port (one port) or ports (a range), not both",
    );
}

#[test]
fn neither_port_nor_ports_is_rejected() {
    let text = service("", "").replace("port = 6443\n", "");
    assert_issue(
        &issue(&text),
        &text,
        "[[service]]",
        "port",
        "set port = 6443, or ports = \"30000-32767\"",
    );
}

#[test]
fn duplicate_vip_port_protocol_is_rejected_at_the_second_service() {
    let text = format!(
        "{}\n[[service]]\nname = \"api2\"\nvip = \"10.4.0.10\"\nport = 6443\n",
        service("", "")
    );
    let i = issue(&text);
    let n = text.lines().count();
    assert_eq!(i.line, Some(n), "{i}");
    assert_eq!(i.key, "port");
    assert_eq!(i.context, "service \"api2\"");
    assert!(
        i.to_string().starts_with(&format!(
            "test.toml:{n}: service \"api2\": port: 10.4.0.10:6443/tcp is already service \"api\" (line 4)"
        )),
        "{i}"
    );
}

#[test]
fn same_port_on_another_vip_or_protocol_is_accepted() {
    let text = format!(
        "{}\n[[service]]\nname = \"api-udp\"\nvip = \"10.4.0.10\"\nport = 6443\nprotocol = \"udp\"\n\
         \n[[service]]\nname = \"api-b\"\nvip = \"10.4.0.20\"\nport = 6443\n",
        service("", "")
    );
    assert_eq!(parse(&text).unwrap().services.len(), 3);
}

#[test]
fn overlapping_port_ranges_on_one_vip_and_protocol_are_rejected() {
    let np = |name: &str, ports: &str| {
        format!(
            "\n[[service]]\nname = \"{name}\"\nvip = \"10.4.0.10\"\nports = \"{ports}\"\n[service.health_check]\nport = 10256\n"
        )
    };
    let text = format!(
        "{DAEMON}{}{}",
        np("a", "30000-31000"),
        np("b", "30500-32767")
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "ports = \"30500",
        "ports",
        "30500-32767/tcp overlaps 10.4.0.10:30000-31000/tcp of service \"a\"",
    );

    // A single port inside a range.
    let text = format!(
        "{DAEMON}{}\n[[service]]\nname = \"one\"\nvip = \"10.4.0.10\"\nport = 30080\n",
        np("a", "30000-32767")
    );
    assert_issue(&issue(&text), &text, "port = 30080", "port", "overlaps");

    // Adjacent ranges do not overlap.
    let text = format!(
        "{DAEMON}{}{}",
        np("a", "30000-31000"),
        np("b", "31001-32767")
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn duplicate_service_names_are_rejected() {
    let text = format!(
        "{}\n[[service]]\nname = \"api\"\nvip = \"10.4.0.10\"\nport = 443\n",
        service("", "")
    );
    let i = issue(&text);
    assert_eq!(i.line, Some(text.lines().count() - 2), "{i}");
    assert_eq!(i.key, "name");
    assert!(
        i.message
            .contains("already the name of the service at line 4"),
        "{i}"
    );
}

#[test]
fn maglev_table_size_must_be_a_prime_no_larger_than_65537() {
    let text = service("maglev_table_size = 65536", "");
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "must be a prime number (got 65536); 65521 is the nearest prime below",
    );
    let text = service("maglev_table_size = 131071", "");
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "must be at most 65537 (got 131071)",
    );
    let text = service("maglev_table_size = 0", "");
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "must be a prime number",
    );
    let config = parse(&service("maglev_table_size = 251", "")).unwrap();
    assert_eq!(config.services[0].maglev_table_size, 251);
}

#[test]
fn maglev_table_smaller_than_the_pool_is_rejected() {
    let backends: String = (1..=4)
        .map(|i| backend(&format!("name = \"b{i}\"\naddress = \"10.4.0.{i}\"")))
        .collect();
    let text = service("maglev_table_size = 3", &backends);
    assert_issue(
        &issue(&text),
        &text,
        "maglev_table_size",
        "maglev_table_size",
        "at least the number of backends, 4 (got 3)",
    );
}

#[test]
fn datapath_capacities_are_enforced() {
    let mut text = DAEMON.to_owned();
    for i in 1..=65 {
        text.push_str(&format!(
            "\n[[service]]\nname = \"s{i}\"\nvip = \"10.4.0.10\"\nport = {i}\n"
        ));
    }
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[[service]]\nname = \"s65\"",
        "",
        "too many services: the datapath holds at most 64",
    );
    assert_eq!(i.context, "service \"s65\"");

    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"a\"\nvip = \"10.4.0.10\"\nports = \"1-10000\"\n\
         [service.health_check]\nport = 22\n\n[[service]]\nname = \"b\"\nvip = \"10.4.0.20\"\n\
         ports = \"1-10000\"\n[service.health_check]\nport = 22\n"
    );
    let i = issue(&text);
    assert_eq!(i.line, Some(line(&text, "vip = \"10.4.0.20\"") + 1), "{i}");
    assert!(i.message.contains("20000 (vip, port) entries"), "{i}");
    assert!(i.message.contains("at most 16384"), "{i}");
}
