//! The pair's plan: floating addresses, the address adverts come from.

use super::*;

fn pair(host: &FakeHost) -> (String, PlanReport) {
    let text = format!(
        "{}\n[ha]\nvirtual_router_id = 51\npriority = 150\nsnat_address = \"10.4.0.7\"\n",
        service("", &backend("name = \"a\"\naddress = \"10.4.0.11\""))
    );
    let report = env(&text, host);
    (text, report)
}

#[test]
fn a_pair_floats_the_vips_and_its_snat_address() {
    let mut host = FakeHost::lb();
    // The operator no longer holds the VIP by hand: the master adds it.
    host.interfaces[1].1 = vec![Ipv4Addr::new(10, 4, 0, 9)];
    let (text, report) = pair(&host);
    assert!(report.is_ok(), "{report:?}");
    // No "VIP is not local" warning: in a pair it floats.
    assert_eq!(report.warnings().count(), 0, "{report:?}");
    let p = plan(&text, &host);
    let ha = p.ha.as_ref().unwrap();
    assert_eq!(ha.local, Ipv4Addr::new(10, 4, 0, 9));
    assert_eq!(
        ha.virtual_addresses,
        [Ipv4Addr::new(10, 4, 0, 10), Ipv4Addr::new(10, 4, 0, 7)]
    );
    assert_eq!(ha.track_services, ["api"]);
    assert_eq!(
        (ha.interface.name.as_str(), ha.interface.index),
        ("eth0", 2)
    );
    assert_eq!(p.snat_source, SnatSource::Floating);
    assert_eq!(
        p.settings().snat_addrs[0],
        u32::from(Ipv4Addr::new(10, 4, 0, 7)).to_be()
    );
    let out = p.summary();
    assert!(
        out.contains("snat_addresses   10.4.0.7 (floats with the VIPs"),
        "{out}"
    );
    assert!(
        out.contains("floating         10.4.0.10, 10.4.0.7"),
        "{out}"
    );
}

#[test]
fn a_pair_refuses_a_vip_the_box_holds_for_good() {
    // FakeHost::lb() has the VIP 10.4.0.10 on eth0 with its subnet prefix.
    let (_, report) = pair(&FakeHost::lb());
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert!(
        errors[0]
            .message
            .contains("10.4.0.10 is a fixed address of eth0"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].context, "ha");
}

#[test]
fn a_pair_needs_an_address_of_its_own_to_advertise_from() {
    let mut host = FakeHost::lb();
    host.interfaces[1].1 = vec![];
    let (_, report) = pair(&host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert!(
        errors[0].message.contains("no address of its own"),
        "{}",
        errors[0]
    );
}

/// A pair's file with `sync` lines in `[ha]`, on a host where it plans.
fn synced(sync: &str, key: Result<(u32, &[u8]), &'static str>) -> (String, FakeHost) {
    let mut host = FakeHost::lb();
    host.interfaces[1].1 = vec![Ipv4Addr::new(10, 4, 0, 9)];
    host.small_files
        .push(("/etc/kube-xdp/sync.key", key.map(|(m, b)| (m, b.to_vec()))));
    let text = format!(
        "{}\n[ha]\nvirtual_router_id = 51\nsnat_address = \"10.4.0.7\"\n{sync}\n",
        service("", &backend("name = \"a\"\naddress = \"10.4.0.11\""))
    );
    (text, host)
}

const KEY_LINE: &str = "sync_key_file = \"/etc/kube-xdp/sync.key\"";

#[test]
fn without_a_key_file_flow_sync_is_off() {
    let (text, host) = synced("sync_port = 9500", Ok((0o600, b"0123456789abcdef")));
    let p = plan(&text, &host);
    assert_eq!(p.ha.as_ref().unwrap().sync, None);
    let out = p.summary();
    assert!(
        out.contains("flow sync        off (no sync_key_file)"),
        "{out}"
    );
}

#[test]
fn with_a_key_file_flow_sync_is_on_with_the_trimmed_key() {
    let (text, host) = synced(KEY_LINE, Ok((0o600, b"0123456789abcdefXYZ\n")));
    let p = plan(&text, &host);
    let sync = p.ha.as_ref().unwrap().sync.as_ref().unwrap();
    assert_eq!(sync.port, 9438);
    assert_eq!(sync.key, crate::sync::SyncKey::new(b"0123456789abcdefXYZ"));
    let out = p.summary();
    assert!(
        out.contains("flow sync        on, udp port 9438 (key /etc/kube-xdp/sync.key)"),
        "{out}"
    );
    assert!(
        !out.contains("0123456789abcdef"),
        "the key is not printed:\n{out}"
    );
    assert!(
        out.contains(
            "cookie key derived from sync_key_file (the pair checks each other's cookies)"
        ),
        "{out}"
    );
    assert!(
        !format!("{p:?}").contains("0123456789abcdef"),
        "nor in the plan's Debug"
    );
    // Owner-only with the execute bit too: fine.
    let (text, host) = synced(KEY_LINE, Ok((0o700, b"0123456789abcdef")));
    assert!(env(&text, &host).is_ok());
}

/// The one error of a pair whose key file is `key`.
fn key_error(key: Result<(u32, &[u8]), &'static str>) -> String {
    let (text, host) = synced(&format!("sync_port = 9500\n{KEY_LINE}"), key);
    let report = env(&text, &host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert_env(
        errors[0],
        &text,
        "sync_key_file",
        "sync_key_file",
        "/etc/kube-xdp/sync.key",
    );
    assert_eq!(errors[0].context, "ha");
    errors[0].message.clone()
}

#[test]
fn a_key_others_can_read_or_write_is_refused() {
    for mode in [0o640, 0o604, 0o620, 0o602, 0o644] {
        let message = key_error(Ok((mode, b"0123456789abcdef")));
        assert!(
            message.contains(&format!("(mode {mode:04o})"))
                && message.contains("can install NAT state")
                && message.contains("chmod 600 /etc/kube-xdp/sync.key"),
            "{message}"
        );
    }
}

#[test]
fn a_short_key_is_refused() {
    let message = key_error(Ok((0o600, b"0123456789abcde\n\n")));
    assert!(
        message.contains("/etc/kube-xdp/sync.key holds 15 bytes of key, fewer than 16"),
        "{message}"
    );
}

#[test]
fn a_key_file_that_is_no_regular_file_or_too_long_is_refused() {
    let message = key_error(Err("a FIFO"));
    assert_eq!(
        message,
        "/etc/kube-xdp/sync.key is a FIFO, not a regular file"
    );
    let long = vec![b'k'; 4097];
    let message = key_error(Ok((0o600, &long)));
    assert!(message.contains("is longer than 4096 bytes"), "{message}");
}

#[test]
fn a_missing_key_file_says_how_to_make_one() {
    let (text, mut host) = synced(KEY_LINE, Ok((0o600, b"0123456789abcdef")));
    host.small_files.clear();
    let report = env(&text, &host);
    let errors: Vec<_> = report.errors().collect();
    assert_eq!(errors.len(), 1, "{report:?}");
    assert!(
        errors[0].message.contains("does not exist: make one with `head -c 32 /dev/urandom | base64 > /etc/kube-xdp/sync.key && chmod 600 /etc/kube-xdp/sync.key`"),
        "{}",
        errors[0]
    );
}

#[test]
fn a_new_key_in_the_same_file_needs_a_restart() {
    let (text, host) = synced(KEY_LINE, Ok((0o600, b"0123456789abcdef")));
    let before = plan(&text, &host);
    let (_, host) = synced(KEY_LINE, Ok((0o600, b"0123456789abcdeX")));
    let after = plan(&text, &host);
    assert_eq!(before.config, after.config);
    assert!(before.restart_needed(&after));
    assert!(!before.restart_needed(&before.clone()));
}
