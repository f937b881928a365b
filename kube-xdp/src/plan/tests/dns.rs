//! Hostname backends looked up again while the daemon runs: an address
//! stays while DNS still gives it (rotating A records do not flap the
//! backend), and what a name newly resolves to meets the rules of a
//! written address.

use std::net::{IpAddr, Ipv4Addr};

use super::{FakeHost, plan};
use crate::config::tests::{TWO_SERVICES, backend, service};
use crate::plan::Plan;

/// The address chenoweth (cp2.example.internal) is checked at.
fn chenoweth(p: &Plan) -> IpAddr {
    p.services[0]
        .backends
        .iter()
        .find(|b| b.name == "chenoweth")
        .unwrap()
        .check_addr
        .ip()
}

#[test]
fn an_address_still_among_the_answers_is_kept() {
    let mut host = FakeHost::lb();
    let a = Ipv4Addr::new(10, 4, 0, 12);
    let b = Ipv4Addr::new(10, 4, 0, 13);
    host.names = vec![("cp2.example.internal", a), ("cp2.example.internal", b)];
    let p = plan(TWO_SERVICES, &host);
    assert_eq!(chenoweth(&p), IpAddr::V4(a));
    // The resolver rotates its answers: the backend stays where it is.
    host.names = vec![("cp2.example.internal", b), ("cp2.example.internal", a)];
    let (next, failed) = p.reresolve(&host);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(chenoweth(&next), IpAddr::V4(a), "a rotated answer moved it");
    assert!(next == p, "a rotated answer changed the plan");
    // So does a reload of the same file.
    let config = crate::config::tests::parse(TWO_SERVICES).unwrap();
    let reloaded = Plan::build_after(&config, &host, Some(&p)).unwrap();
    assert_eq!(chenoweth(&reloaded), IpAddr::V4(a), "a reload moved it");
    // Its address is gone from the answers: it moves to the first.
    host.names = vec![("cp2.example.internal", b)];
    let (next, _) = p.reresolve(&host);
    assert_eq!(chenoweth(&next), IpAddr::V4(b));
}

#[test]
fn a_name_that_newly_resolves_to_the_load_balancer_keeps_its_address() {
    let mut host = FakeHost::lb();
    let text = service(
        "",
        &backend("name = \"a\"\naddress = \"cp2.example.internal\""),
    );
    let p = plan(&text, &host);
    for (to, says) in [
        (
            Ipv4Addr::new(10, 4, 0, 10),
            "resolves to 10.4.0.10, which is the VIP of service \"api\"",
        ),
        (
            Ipv4Addr::new(10, 4, 0, 8),
            "resolves to 10.4.0.8, which is an address of this host",
        ),
        (
            Ipv4Addr::new(127, 0, 1, 1),
            "resolves to 127.0.1.1, which cannot be a backend address",
        ),
    ] {
        host.names = vec![("cp2.example.internal", to)];
        let (next, failed) = p.reresolve(&host);
        assert!(next == p, "the backend moved to {to}");
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].contains(says), "{says:?} not in {failed:?}");
    }
    // One bad answer among good ones is skipped.
    let good = Ipv4Addr::new(10, 4, 0, 14);
    host.names = vec![
        ("cp2.example.internal", Ipv4Addr::new(10, 4, 0, 10)),
        ("cp2.example.internal", good),
    ];
    let (next, failed) = p.reresolve(&host);
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(next.services[0].backends[0].addr, good);
}

#[test]
fn a_reload_while_a_name_does_not_resolve_keeps_its_address() {
    let mut host = FakeHost::lb();
    let p = plan(TWO_SERVICES, &host);
    host.names.clear();
    let config = crate::config::tests::parse(TWO_SERVICES).unwrap();
    let reloaded = Plan::build_after(&config, &host, Some(&p)).unwrap();
    assert_eq!(chenoweth(&reloaded), chenoweth(&p));
    assert_eq!(reloaded.warnings.len(), 1, "{:?}", reloaded.warnings);
    let shown = reloaded.warnings[0].to_string();
    assert!(
        shown.contains("\"cp2.example.internal\" does not resolve")
            && shown.contains("keeping its address 10.4.0.12"),
        "{shown}"
    );
    // A first start has no address to keep: it starts without chenoweth.
    let fresh = Plan::build(&config, &host).unwrap();
    assert!(fresh.backend("kube-apiserver", "chenoweth").is_none());
    assert_eq!(fresh.services[0].unresolved, ["chenoweth"]);
}
