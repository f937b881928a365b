//! The `[[service.backend]]` tables.

use super::*;

#[test]
fn weight_above_256_is_rejected_naming_service_and_backend() {
    let text = service(
        "",
        &backend("name = \"bettley\"\naddress = \"10.4.0.11\"\nweight = 300"),
    );
    let i = issue(&text);
    let n = line(&text, "weight = 300");
    assert_eq!(
        i.to_string(),
        format!(
            "test.toml:{n}: service \"api\" backend \"bettley\": weight: must be at most 256 (got 300); 0 drains the backend"
        )
    );
    let text = service(
        "",
        &backend("name = \"bettley\"\naddress = \"10.4.0.11\"\nweight = -1"),
    );
    assert_issue(
        &issue(&text),
        &text,
        "weight",
        "weight",
        "must be at least 0 (got -1)",
    );
}

#[test]
fn backend_address_neither_ipv4_nor_hostname_is_rejected() {
    for (address, says) in [
        ("10.4.0.300", "neither an IPv4 address nor a valid hostname"),
        ("cp_1.lab", "'_' is not allowed"),
        ("fd00::11", "IPv6 backends are not supported yet"),
        ("127.0.0.1", "cannot be a backend address"),
    ] {
        let text = service(
            "",
            &backend(&format!("name = \"b\"\naddress = \"{address}\"")),
        );
        assert_issue(&issue(&text), &text, "address", "address", says);
    }
}

#[test]
fn backend_without_name_or_address_is_rejected() {
    let text = service("", &backend("port = 6443"));
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert_issue(&all[0], &text, "[[service.backend]]", "name", "is required");
    assert_issue(
        &all[1],
        &text,
        "[[service.backend]]",
        "address",
        "is required",
    );
    assert_eq!(all[1].context, "service \"api\" backend #1");
}

#[test]
fn duplicate_backend_names_within_a_service_are_rejected() {
    let text = service(
        "",
        &format!(
            "{}{}",
            backend("name = \"bettley\"\naddress = \"10.4.0.11\""),
            backend("name = \"bettley\"\naddress = \"10.4.0.12\"")
        ),
    );
    let i = issue(&text);
    assert_eq!(i.key, "name");
    assert_eq!(i.line, Some(line(&text, "10.4.0.12") - 1), "{i}");
    assert!(i.message.contains("backend names must be unique"), "{i}");
}

#[test]
fn same_backend_in_two_services_is_accepted() {
    let text = format!(
        "{}\n[[service]]\nname = \"api2\"\nvip = \"10.4.0.20\"\nport = 6443\n{}",
        service("", &backend("name = \"bettley\"\naddress = \"10.4.0.11\"")),
        backend("name = \"bettley\"\naddress = \"10.4.0.11\"")
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn duplicate_backend_address_and_port_is_rejected() {
    let text = service(
        "",
        &format!(
            "{}{}{}",
            backend("name = \"a\"\naddress = \"10.4.0.11\""),
            backend("name = \"b\"\naddress = \"10.4.0.11\"\nport = 6443"),
            backend("name = \"c\"\naddress = \"10.4.0.11\"\nport = 16443"),
        ),
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "address = \"10.4.0.11\"\nport = 6443",
        "address",
        "10.4.0.11:6443 is already backend \"a\"",
    );
}

#[test]
fn backend_port_on_a_port_range_service_is_rejected() {
    let text = format!(
        "{DAEMON}\n[[service]]\nname = \"np\"\nvip = \"10.4.0.10\"\nports = \"30000-32767\"\n\
         [service.health_check]\nport = 10256\n{}",
        backend("name = \"w1\"\naddress = \"10.4.0.21\"\nport = 30080")
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "port = 30080",
        "port",
        "keep the client's destination port",
    );
    assert_eq!(i.context, "service \"np\" backend \"w1\"");
}

#[test]
fn this_network_addresses_are_not_backends() {
    let text = service("", &backend("name = \"a\"\naddress = \"0.1.2.3\""));
    assert_issue(
        &issue(&text),
        &text,
        "address",
        "address",
        "0.1.2.3 cannot be a backend address",
    );
}
