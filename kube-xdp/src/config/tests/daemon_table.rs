//! The `[daemon]` table.

use std::net::SocketAddr;

use super::*;

#[test]
fn missing_daemon_table_is_rejected() {
    let i = issue("[timeouts]\nudp = \"1s\"\n");
    assert_eq!(i.line, None);
    assert_eq!(i.context, "daemon");
    assert!(i.to_string().starts_with("test.toml: daemon: "), "{i}");
    assert!(i.message.contains("interfaces = [\"eth0\"]"), "{i}");
}

#[test]
fn missing_interfaces_are_rejected_at_the_daemon_table() {
    let text = "# kube-xdp\n[daemon]\nxdp_mode = \"auto\"\n";
    assert_issue(&issue(text), text, "[daemon]", "interfaces", "is required");
}

#[test]
fn empty_interface_list_is_rejected() {
    let text = "[daemon]\ninterfaces = []\n";
    assert_issue(
        &issue(text),
        text,
        "interfaces",
        "interfaces",
        "name at least one interface",
    );
}

#[test]
fn bad_or_repeated_interface_names_are_rejected_each_on_its_line() {
    let text = "[daemon]\ninterfaces = [\n  \"eth0\",\n  \"a-very-long-interface-name\",\n  \"eth0\",\n  \"br/0\",\n]\n";
    let all = issues(text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        text,
        "a-very-long",
        "interfaces",
        "longer than 15 characters",
    );
    assert_issue(
        &all[1],
        text,
        "\"eth0\",\n  \"br",
        "interfaces",
        "listed twice",
    );
    assert_issue(&all[2], text, "br/0", "interfaces", "may not hold '/'");
}

#[test]
fn relative_paths_are_rejected() {
    let text = format!("{DAEMON}pin_path = \"bpf/kube-xdp\"\nrun_dir = \"run\"\n");
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "pin_path",
        "pin_path",
        "must be an absolute path",
    );
    assert_issue(
        &all[1],
        &text,
        "run_dir",
        "run_dir",
        "must be an absolute path",
    );
}

#[test]
fn metrics_listen_must_be_an_address_and_port() {
    let text = format!("{DAEMON}metrics_listen = \"localhost\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "metrics_listen",
        "metrics_listen",
        "remove the key to turn metrics off",
    );
    let config = parse(&format!("{DAEMON}metrics_listen = \"0.0.0.0:9100\"\n")).unwrap();
    assert_eq!(
        config.daemon.metrics_listen,
        Some(SocketAddr::from(([0, 0, 0, 0], 9100)))
    );
}

#[test]
fn flow_table_size_out_of_bounds_is_rejected() {
    let text = format!("{DAEMON}flow_table_size = 1000\n");
    assert_issue(
        &issue(&text),
        &text,
        "flow_table_size",
        "flow_table_size",
        "must be at least 1024 (got 1000)",
    );
    let text = format!("{DAEMON}flow_table_size = 16777217\n");
    assert_issue(
        &issue(&text),
        &text,
        "flow_table_size",
        "flow_table_size",
        "must be at most 16777216 (got 16777217)",
    );
    for ok in [1024, 16_777_216] {
        let config = parse(&format!("{DAEMON}flow_table_size = {ok}\n")).unwrap();
        assert_eq!(config.daemon.flow_table_size, ok);
    }
}

#[test]
fn snat_addresses_must_be_few_distinct_unicast_addresses() {
    let text = format!(
        "{DAEMON}snat_addresses = [\n\"10.4.0.1\",\n\"10.4.0.2\",\n\"10.4.0.3\",\n\"10.4.0.4\",\n\"10.4.0.5\",\n]\n"
    );
    assert_issue(
        &issue(&text),
        &text,
        "snat_addresses",
        "snat_addresses",
        "at most 4 addresses (got 5)",
    );

    let text = format!(
        "{DAEMON}snat_addresses = [\n\"10.4.0.1\",\n\"lb-1\",\n\"0.0.0.0\",\n\"10.4.0.1\",\n]\n"
    );
    let all = issues(&text);
    assert_eq!(all.len(), 3, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "\"lb-1\"",
        "snat_addresses",
        "\"lb-1\" is not an IPv4 address",
    );
    assert_issue(
        &all[1],
        &text,
        "\"0.0.0.0\"",
        "snat_addresses",
        "cannot be a source address",
    );
    assert_issue(
        &all[2],
        &text,
        "\"10.4.0.1\",\n]",
        "snat_addresses",
        "listed twice",
    );
}

#[test]
fn snat_address_equal_to_a_vip_is_rejected() {
    let text = service("", "").replace(
        "interfaces = [\"eth0\"]\n",
        "interfaces = [\"eth0\"]\nsnat_addresses = [\"10.4.0.9\", \"10.4.0.10\"]\n",
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "snat_addresses",
        "snat_addresses",
        "10.4.0.10 is the VIP of service \"api\"",
    );
    assert!(i.message.contains("never a VIP"), "{i}");
}

#[test]
fn empty_or_backwards_snat_ports_are_rejected() {
    let text = format!("{DAEMON}snat_ports = \"\"\n");
    assert_issue(&issue(&text), &text, "snat_ports", "snat_ports", "is empty");
    let text = format!("{DAEMON}snat_ports = \"32767-10000\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "snat_ports",
        "snat_ports",
        "backwards",
    );
    let text = format!("{DAEMON}snat_ports = \"0-1000\"\n");
    assert_issue(
        &issue(&text),
        &text,
        "snat_ports",
        "snat_ports",
        "ports are 1-65535",
    );
}
