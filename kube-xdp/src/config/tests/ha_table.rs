//! The `[ha]` table.

use super::*;
use std::net::Ipv4Addr;
use std::time::Duration;

/// The service file of `service()` plus an `[ha]` table with `fields`.
fn with_ha(fields: &str) -> String {
    format!(
        "{}\n[ha]\n{fields}\n",
        service("", &backend("name = \"a\"\naddress = \"10.4.0.11\""))
    )
}

#[test]
fn a_pair_parses_with_its_defaults() {
    let config = parse(&with_ha(
        "virtual_router_id = 51\npriority = 150\nsnat_address = \"10.4.0.9\"",
    ))
    .unwrap();
    let ha = config.ha.unwrap();
    assert_eq!(ha.interface, "eth0");
    assert_eq!((ha.virtual_router_id, ha.priority), (51, 150));
    assert_eq!(ha.advert_interval, Duration::from_millis(100));
    assert!(ha.preempt);
    assert!(ha.unicast_peers.is_empty());
    assert_eq!(ha.snat_address, Ipv4Addr::new(10, 4, 0, 9));
    assert_eq!(ha.track_services, None);
    assert_eq!(ha.sync_port, 9438);
    assert_eq!(ha.sync_key_file, None);
    assert!(parse(DAEMON).unwrap().ha.is_none());
}

#[test]
fn the_issue_example_parses() {
    let text = with_ha(
        "interface = \"eth0\"\nvirtual_router_id = 51\npriority = 150\nadvert_interval = \"100ms\"\n\
         preempt = true\nunicast_peers = [\"198.18.0.3\"]\nsnat_address = \"198.18.0.9\"\n\
         track_services = [\"api\"]",
    );
    let ha = parse(&text).unwrap().ha.unwrap();
    assert_eq!(ha.unicast_peers, [Ipv4Addr::new(198, 18, 0, 3)]);
    assert_eq!(ha.track_services, Some(vec!["api".to_owned()]));
}

#[test]
fn bad_pair_settings_are_each_reported_with_their_line() {
    let text = with_ha(
        "interface = \"eth7\"\nvirtual_router_id = 256\npriority = 255\nadvert_interval = \"15ms\"\n\
         unicast_peers = [\"224.0.0.18\", \"10.4.0.3\", \"10.4.0.3\"]\nsnat_address = \"10.4.0.10\"\n\
         track_services = [\"nope\"]",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 8, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "interface =",
        "interface",
        "not one of [daemon] interfaces",
    );
    assert_issue(
        &all[1],
        &text,
        "virtual_router_id",
        "virtual_router_id",
        "at most 255",
    );
    assert_issue(
        &all[2],
        &text,
        "priority = 255",
        "priority",
        "never owns its VIPs",
    );
    assert_issue(
        &all[3],
        &text,
        "advert_interval",
        "advert_interval",
        "whole centiseconds",
    );
    assert_issue(
        &all[4],
        &text,
        "unicast_peers",
        "unicast_peers",
        "not a unicast address",
    );
    assert!(all[5].message.contains("listed twice"), "{}", all[5]);
    assert_issue(
        &all[6],
        &text,
        "snat_address =",
        "snat_address",
        "is the VIP of service \"api\"",
    );
    assert_issue(
        &all[7],
        &text,
        "track_services",
        "track_services",
        "no service \"nope\"",
    );
    assert_eq!(all[0].context, "ha");
}

#[test]
fn a_pair_needs_its_id_and_its_floating_snat_address() {
    let text = with_ha("priority = 100");
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert!(
        all.iter().all(|i| i.line == Some(line(&text, "[ha]"))),
        "{}",
        list(&all)
    );
    assert!(
        all[0].message.contains("the pair's VRRP id")
            || all[1].message.contains("the pair's VRRP id")
    );
}

#[test]
fn a_pair_translates_only_to_its_floating_address() {
    let text = with_ha("virtual_router_id = 51\nsnat_address = \"10.4.0.9\"").replace(
        "[daemon]\ninterfaces = [\"eth0\"]\n",
        "[daemon]\ninterfaces = [\"eth0\"]\nsnat_addresses = [\"10.4.0.8\"]\n",
    );
    assert_issue(
        &issue(&text),
        &text,
        "snat_addresses",
        "snat_addresses",
        "cannot be set with [ha]",
    );
}

#[test]
fn flow_sync_takes_a_port_and_a_key_file() {
    let text = with_ha(
        "virtual_router_id = 51\nsnat_address = \"10.4.0.9\"\nsync_port = 19438\n\
         sync_key_file = \"/etc/kube-xdp/sync.key\"",
    );
    let ha = parse(&text).unwrap().ha.unwrap();
    assert_eq!(ha.sync_port, 19438);
    assert_eq!(
        ha.sync_key_file.as_deref(),
        Some(std::path::Path::new("/etc/kube-xdp/sync.key"))
    );
    assert_eq!(
        ha.lines.get("sync_key_file"),
        Some(line(&text, "sync_key_file"))
    );
}

#[test]
fn bad_flow_sync_settings_are_each_reported_with_their_line() {
    let text = with_ha(
        "virtual_router_id = 51\nsnat_address = \"10.4.0.9\"\nsync_port = 0\n\
         sync_key_file = \"sync.key\"",
    );
    let all = issues(&text);
    assert_eq!(all.len(), 2, "{}", list(&all));
    assert_issue(
        &all[0],
        &text,
        "sync_port",
        "sync_port",
        "must be at least 1 (got 0)",
    );
    assert_issue(
        &all[1],
        &text,
        "sync_key_file",
        "sync_key_file",
        "\"sync.key\" must be an absolute path",
    );
    let text = with_ha("virtual_router_id = 51\nsnat_address = \"10.4.0.9\"\nsync_port = 65536");
    assert_issue(
        &issue(&text),
        &text,
        "sync_port",
        "sync_port",
        "at most 65535",
    );
}

#[test]
fn flow_sync_keys_of_the_wrong_type_or_name_are_located() {
    let text = with_ha("virtual_router_id = 51\nsnat_address = \"10.4.0.9\"\nsync_port = \"9438\"");
    let i = issue(&text);
    assert_issue(&i, &text, "sync_port", "sync_port", "expected an integer");
    let text =
        with_ha("virtual_router_id = 51\nsnat_address = \"10.4.0.9\"\nsync_key = \"/etc/k\"");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "sync_key =",
        "sync_key",
        "did you mean \"sync_key_file\"",
    );
    assert_eq!(i.context, "ha");
}
