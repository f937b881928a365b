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
