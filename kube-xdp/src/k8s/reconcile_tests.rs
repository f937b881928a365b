//! The controller's decisions, from Services and Nodes written as the API
//! serves them (JSON), without an API.

use std::{net::Ipv4Addr, path::Path};

use k8s_openapi::api::core::v1::{Node, Service};
use serde_json::{Value, json};

use super::reconcile::*;
use crate::config::{Config, KubernetesConfig, PortRange, Protocol};

const POOLS: &str = r#"
[[kubernetes.address_pool]]
name = "public"
addresses = ["198.18.100.0/30", "198.18.100.10-198.18.100.11"]

[[kubernetes.address_pool]]
name = "team-a"
addresses = ["198.18.101.0/31"]
namespaces = ["team-a"]

[[kubernetes.address_pool]]
name = "reserved"
addresses = ["198.18.102.0/30"]
auto_assign = false
"#;

fn config_with(extra: &str) -> KubernetesConfig {
    let text = format!("[daemon]\ninterfaces = [\"eth0\"]\n\n[kubernetes]\n{extra}\n{POOLS}");
    Config::parse(Path::new("kube-xdp.toml"), &text)
        .unwrap_or_else(|e| panic!("{e}"))
        .kubernetes
        .expect("[kubernetes] is there")
}

fn config() -> KubernetesConfig {
    config_with("")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A Service of type LoadBalancer with our class, ports 80/TCP → 30080
/// and 53/UDP → 30053, created at second `created`.
fn lb(namespace: &str, name: &str, created: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "namespace": namespace,
            "name": name,
            "creationTimestamp": format!("2026-01-01T00:00:{:02}Z", created),
        },
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "kube-xdp.io/lb",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053},
            ],
        },
    })
}

fn service(v: Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn with(mut v: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut v;
    for key in &path[..path.len() - 1] {
        at = at
            .as_object_mut()
            .unwrap()
            .entry(key.to_string())
            .or_insert_with(|| json!({}));
    }
    at[path[path.len() - 1]] = value;
    v
}

fn status_ip(v: Value, addr: &str) -> Value {
    with(
        v,
        &["status", "loadBalancer"],
        json!({"ingress": [{"ip": addr, "ipMode": "VIP"}]}),
    )
}

fn node(name: &str, addr: &str, ready: bool) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "addresses": [{"type": "InternalIP", "address": addr}, {"type": "Hostname", "address": name}],
        },
    }))
    .unwrap()
}

fn nodes() -> Vec<Node> {
    vec![
        node("worker-2", "198.18.0.22", true),
        node("worker-1", "198.18.0.21", true),
    ]
}

fn run(services: Vec<Value>) -> Outcome {
    let services: Vec<Service> = services.into_iter().map(service).collect();
    reconcile(&config(), &services, &nodes(), &[])
}

fn address_of(o: &Outcome, name: &str) -> Result<Ipv4Addr, Problem> {
    o.handled
        .iter()
        .find(|h| h.key.name == name)
        .unwrap_or_else(|| panic!("{name} is handled"))
        .address
        .clone()
}

#[test]
fn services_get_the_lowest_free_addresses_oldest_first() {
    let o = run(vec![lb("default", "web", 2), lb("default", "api", 1)]);
    assert_eq!(address_of(&o, "api"), Ok(ip("198.18.100.0")));
    assert_eq!(address_of(&o, "web"), Ok(ip("198.18.100.1")));
    assert_eq!(o.addresses(), vec![ip("198.18.100.0"), ip("198.18.100.1")]);
}

#[test]
fn each_port_becomes_a_service_to_every_usable_nodes_node_port() {
    let o = run(vec![lb("default", "web", 1)]);
    let services = cluster_services(&o);
    assert_eq!(services.len(), 2);
    let http = &services[0];
    assert_eq!(http.name, "default/web:80/tcp");
    assert_eq!(http.origin, "default/web");
    assert_eq!(
        (http.vip, http.port, http.protocol),
        (ip("198.18.100.0"), 80, Protocol::Tcp)
    );
    assert_eq!(
        http.backends
            .iter()
            .map(|(n, b)| (n.as_str(), *b))
            .collect::<Vec<_>>(),
        vec![
            ("worker-1", (ip("198.18.0.21"), 30080)),
            ("worker-2", (ip("198.18.0.22"), 30080))
        ]
    );
    assert_eq!(http.check_port, None, "kube-proxy's port, from the config");
    let dns = &services[1];
    assert_eq!((dns.port, dns.protocol), (53, Protocol::Udp));
    assert!(dns.backends.values().all(|(_, p)| *p == 30053));
}

#[test]
fn the_status_carries_the_address_as_a_vip_with_its_ports() {
    let o = run(vec![lb("default", "web", 1)]);
    let h = &o.handled[0];
    let ingress = h.desired_status().ingress.unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(ingress[0].ip.as_deref(), Some("198.18.100.0"));
    assert_eq!(ingress[0].ip_mode.as_deref(), Some("VIP"));
    let ports: Vec<(i32, String)> = ingress[0]
        .ports
        .iter()
        .flatten()
        .map(|p| (p.port, p.protocol.clone()))
        .collect();
    assert_eq!(ports, vec![(80, "TCP".into()), (53, "UDP".into())]);
    assert!(h.status_differs());
    assert!(!h.has_finalizer);

    // Written once, it is not written again.
    let status = serde_json::to_value(h.desired_status()).unwrap();
    let again = run(vec![with(
        lb("default", "web", 1),
        &["status", "loadBalancer"],
        status,
    )]);
    assert!(!again.handled[0].status_differs());
}

#[test]
fn an_address_is_read_back_from_the_status_after_a_restart() {
    // web got .3 from an earlier run (when .0-.2 were taken): it keeps it,
    // and the new Service gets the lowest free one.
    let o = run(vec![
        status_ip(lb("default", "web", 1), "198.18.100.3"),
        lb("default", "new", 2),
    ]);
    assert_eq!(address_of(&o, "web"), Ok(ip("198.18.100.3")));
    assert_eq!(address_of(&o, "new"), Ok(ip("198.18.100.0")));
}

#[test]
fn two_boxes_decide_the_same_whatever_order_they_list_in() {
    let services = vec![
        lb("default", "c", 5),
        lb("default", "a", 5),
        status_ip(lb("team-a", "b", 9), "198.18.101.1"),
        with(
            lb("default", "d", 1),
            &["spec", "loadBalancerIP"],
            json!("198.18.100.11"),
        ),
        lb("team-a", "e", 3),
    ];
    let first = run(services.clone());
    let mut reversed = services;
    reversed.reverse();
    let second = run(reversed);
    assert_eq!(first, second);
    assert_eq!(cluster_services(&first), cluster_services(&second));
}

#[test]
fn a_requested_address_is_taken_when_free_and_inside_a_pool() {
    let spec = with(
        lb("default", "a", 1),
        &["spec", "loadBalancerIP"],
        json!("198.18.100.10"),
    );
    let metallb = with(
        lb("default", "b", 2),
        &["metadata", "annotations"],
        json!({ METALLB_IPS: "2001:db8::1, 198.18.100.11" }),
    );
    let ours = with(
        lb("default", "c", 3),
        &["metadata", "annotations"],
        json!({ ANNOTATION_IPS: "198.18.102.1" }),
    );
    let o = run(vec![spec, metallb, ours]);
    assert_eq!(address_of(&o, "a"), Ok(ip("198.18.100.10")));
    assert_eq!(
        address_of(&o, "b"),
        Ok(ip("198.18.100.11")),
        "the first IPv4 address of the list"
    );
    assert_eq!(
        address_of(&o, "c"),
        Ok(ip("198.18.102.1")),
        "a pool without auto_assign serves those who ask for its addresses"
    );
}

#[test]
fn a_requested_address_outside_every_pool_gets_no_address() {
    let o = run(vec![with(
        lb("default", "a", 1),
        &["spec", "loadBalancerIP"],
        json!("198.18.200.1"),
    )]);
    let problem = address_of(&o, "a").unwrap_err();
    assert_eq!(
        problem,
        Problem::NotInPool {
            addr: ip("198.18.200.1")
        }
    );
    assert_eq!(problem.reason(), "AddressNotInPool");
    assert!(cluster_services(&o).is_empty());
    // Its status says nothing.
    assert_eq!(o.handled[0].desired_status().ingress, Some(vec![]));
    // A namespace's pool is outside for other namespaces.
    let o = run(vec![with(
        lb("default", "a", 1),
        &["spec", "loadBalancerIP"],
        json!("198.18.101.0"),
    )]);
    assert_eq!(
        address_of(&o, "a"),
        Err(Problem::NotInPool {
            addr: ip("198.18.101.0")
        })
    );
    let bad = run(vec![with(
        lb("default", "a", 1),
        &["spec", "loadBalancerIP"],
        json!("no"),
    )]);
    assert_eq!(
        address_of(&bad, "a").unwrap_err().reason(),
        "InvalidAddress"
    );
}

#[test]
fn a_second_service_asking_for_a_taken_address_gets_an_event_and_no_address() {
    let o = run(vec![
        status_ip(lb("default", "first", 1), "198.18.100.2"),
        with(
            lb("default", "second", 2),
            &["spec", "loadBalancerIP"],
            json!("198.18.100.2"),
        ),
    ]);
    assert_eq!(address_of(&o, "first"), Ok(ip("198.18.100.2")));
    let problem = address_of(&o, "second").unwrap_err();
    assert_eq!(
        problem,
        Problem::AddressTaken {
            addr: ip("198.18.100.2"),
            by: Key {
                namespace: "default".into(),
                name: "first".into()
            }
        }
    );
    assert!(
        problem
            .to_string()
            .contains("already taken by Service default/first"),
        "{problem}"
    );
    // Even when the second is older: the holder keeps what it holds.
    let o = run(vec![
        status_ip(lb("default", "first", 5), "198.18.100.2"),
        with(
            lb("default", "second", 1),
            &["spec", "loadBalancerIP"],
            json!("198.18.100.2"),
        ),
    ]);
    assert_eq!(address_of(&o, "first"), Ok(ip("198.18.100.2")));
    assert!(address_of(&o, "second").is_err());
}

#[test]
fn a_held_address_that_is_no_longer_asked_for_is_given_up() {
    let o = run(vec![with(
        status_ip(lb("default", "a", 1), "198.18.100.1"),
        &["spec", "loadBalancerIP"],
        json!("198.18.100.10"),
    )]);
    assert_eq!(address_of(&o, "a"), Ok(ip("198.18.100.10")));
}

#[test]
fn pools_serve_their_namespaces_and_the_services_that_name_them() {
    let o = run(vec![
        lb("team-a", "x", 1),
        lb("team-a", "y", 2),
        lb("team-a", "z", 3),
    ]);
    // team-a's pool first (file order: public is first, but team-a's
    // Services may use both; the first pool with a free address wins).
    assert_eq!(address_of(&o, "x"), Ok(ip("198.18.100.0")));
    let named = with(
        lb("team-a", "n", 1),
        &["metadata", "annotations"],
        json!({ ANNOTATION_POOL: "team-a" }),
    );
    let o = run(vec![named]);
    assert_eq!(address_of(&o, "n"), Ok(ip("198.18.101.0")));

    let reserved = with(
        lb("default", "r", 1),
        &["metadata", "annotations"],
        json!({ ANNOTATION_POOL: "reserved" }),
    );
    let o = run(vec![reserved]);
    assert_eq!(
        address_of(&o, "r"),
        Ok(ip("198.18.102.0")),
        "asked for by name"
    );

    let wrong_ns = with(
        lb("default", "w", 1),
        &["metadata", "annotations"],
        json!({ ANNOTATION_POOL: "team-a" }),
    );
    let unknown = with(
        lb("default", "u", 2),
        &["metadata", "annotations"],
        json!({ ANNOTATION_POOL: "nope" }),
    );
    let o = run(vec![wrong_ns, unknown]);
    assert!(
        matches!(address_of(&o, "w"), Err(Problem::NoPool { why }) if why.contains("does not serve namespace \"default\""))
    );
    assert!(
        matches!(address_of(&o, "u"), Err(Problem::NoPool { why }) if why.contains("\"nope\""))
    );
}

#[test]
fn an_exhausted_pool_is_reported_and_changes_nothing_else() {
    // public holds 6 addresses.
    let services: Vec<Value> = (0..7).map(|i| lb("default", &format!("s{i}"), i)).collect();
    let o = run(services);
    for i in 0..6 {
        assert!(address_of(&o, &format!("s{i}")).is_ok());
    }
    let problem = address_of(&o, "s6").unwrap_err();
    assert_eq!(
        problem,
        Problem::PoolExhausted {
            pools: vec!["public".into()]
        }
    );
    assert_eq!(problem.reason(), "AllocationFailed");
    assert_eq!(cluster_services(&o).len(), 12);
    assert_eq!(
        o.addresses().last(),
        Some(&ip("198.18.100.11")),
        "the second range follows the first"
    );
}

#[test]
fn a_file_services_vip_is_never_handed_out_and_its_ports_are_refused() {
    let file = vec![FileService {
        name: "nodeports".into(),
        vip: ip("198.18.100.0"),
        ports: PortRange::new(30000, 32767).unwrap(),
        protocol: Protocol::Tcp,
    }];
    let services: Vec<Service> = vec![service(lb("default", "a", 1))];
    let o = reconcile(&config(), &services, &nodes(), &file);
    assert_eq!(address_of(&o, "a"), Ok(ip("198.18.100.1")));

    // Asked for, on ports the file service does not use: fine.
    let asks = |port: u16| {
        let mut v = with(
            lb("default", "a", 1),
            &["spec", "loadBalancerIP"],
            json!("198.18.100.0"),
        );
        v["spec"]["ports"][0]["port"] = json!(port);
        vec![service(v)]
    };
    let o = reconcile(&config(), &asks(80), &nodes(), &file);
    assert_eq!(address_of(&o, "a"), Ok(ip("198.18.100.0")));
    let o = reconcile(&config(), &asks(30500), &nodes(), &file);
    let problem = address_of(&o, "a").unwrap_err();
    assert_eq!(problem.reason(), "PortConflict");
    assert!(problem.to_string().contains("\"nodeports\""), "{problem}");
}

#[test]
fn only_ready_nodes_without_the_exclusion_label_that_match_the_selector_serve() {
    let mut excluded = node("worker-3", "198.18.0.23", true);
    excluded
        .metadata
        .labels
        .get_or_insert_default()
        .insert(EXCLUDE_LABEL.into(), "true".into());
    let external_only: Node = serde_json::from_value(json!({
        "metadata": {"name": "edge-1", "labels": {"role": "edge"}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "ExternalIP", "address": "198.18.0.31"}, {"type": "InternalIP", "address": "fd00::1"}],
        },
    }))
    .unwrap();
    let no_address: Node = serde_json::from_value(json!({
        "metadata": {"name": "ghost"},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap();
    let all = vec![
        node("worker-1", "198.18.0.21", true),
        node("worker-2", "198.18.0.22", false),
        excluded,
        external_only,
        no_address,
    ];
    let names = |c: &KubernetesConfig| -> Vec<(String, Ipv4Addr)> {
        usable_nodes(c, &all)
            .into_iter()
            .map(|n| (n.name, n.addr))
            .collect()
    };
    assert_eq!(
        names(&config()),
        vec![
            ("edge-1".into(), ip("198.18.0.31")),
            ("worker-1".into(), ip("198.18.0.21"))
        ]
    );
    let selected = config_with("node_selector = \"role=edge\"");
    assert_eq!(names(&selected), vec![("edge-1".into(), ip("198.18.0.31"))]);
    let not_edge = config_with("node_selector = \"!role\"");
    assert_eq!(
        names(&not_edge),
        vec![("worker-1".into(), ip("198.18.0.21"))]
    );

    // A node that turns NotReady leaves every Service's backends.
    let services = vec![service(lb("default", "web", 1))];
    let before = reconcile(&config(), &services, &nodes(), &[]);
    let after = reconcile(
        &config(),
        &services,
        &[
            node("worker-1", "198.18.0.21", true),
            node("worker-2", "198.18.0.22", false),
        ],
        &[],
    );
    assert_eq!(cluster_services(&before)[0].backends.len(), 2);
    let left: Vec<String> = cluster_services(&after)[0]
        .backends
        .keys()
        .cloned()
        .collect();
    assert_eq!(left, vec!["worker-1"]);
    assert_eq!(
        address_of(&after, "web"),
        address_of(&before, "web"),
        "the address stays"
    );
}

#[test]
fn external_traffic_policy_local_checks_the_health_check_node_port() {
    let mut v = lb("default", "local", 1);
    v["spec"]["externalTrafficPolicy"] = json!("Local");
    v["spec"]["healthCheckNodePort"] = json!(32001);
    let mut cluster = lb("default", "cluster", 2);
    cluster["spec"]["healthCheckNodePort"] = json!(32002);
    let o = run(vec![v, cluster]);
    let services = cluster_services(&o);
    assert!(
        services
            .iter()
            .filter(|s| s.origin == "default/local")
            .all(|s| s.check_port == Some(32001))
    );
    assert!(
        services
            .iter()
            .filter(|s| s.origin == "default/cluster")
            .all(|s| s.check_port.is_none())
    );
}

#[test]
fn ports_without_a_node_port_or_of_other_protocols_are_not_forwarded() {
    let mut v = lb("default", "a", 1);
    v["spec"]["ports"] = json!([
        {"port": 80, "protocol": "TCP", "nodePort": 30080},
        {"port": 9999, "protocol": "SCTP", "nodePort": 30999},
        {"port": 81, "protocol": "TCP"},
    ]);
    let o = run(vec![v]);
    let services = cluster_services(&o);
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].port, 80);
    let mut none = lb("default", "b", 1);
    none["spec"]["ports"] = json!([{"port": 80, "protocol": "TCP"}]);
    let o = run(vec![none]);
    assert_eq!(address_of(&o, "b"), Err(Problem::NoNodePorts));
    assert!(o.addresses().is_empty(), "no address is spent on it");
}

#[test]
fn only_services_of_our_class_are_handled() {
    let mut other = lb("default", "other", 1);
    other["spec"]["loadBalancerClass"] = json!("example.com/other");
    let mut classless = lb("default", "classless", 2);
    classless["spec"]
        .as_object_mut()
        .unwrap()
        .remove("loadBalancerClass");
    let mut cluster_ip = lb("default", "clusterip", 3);
    cluster_ip["spec"]["type"] = json!("ClusterIP");
    let services: Vec<Service> = [other, classless, cluster_ip, lb("default", "ours", 4)]
        .into_iter()
        .map(service)
        .collect();
    let o = reconcile(&config(), &services, &nodes(), &[]);
    let handled: Vec<&str> = o.handled.iter().map(|h| h.key.name.as_str()).collect();
    assert_eq!(handled, vec!["ours"]);
    let o = reconcile(
        &config_with("handle_classless = true"),
        &services,
        &nodes(),
        &[],
    );
    let handled: Vec<&str> = o.handled.iter().map(|h| h.key.name.as_str()).collect();
    assert_eq!(handled, vec!["classless", "ours"]);
}

#[test]
fn a_deleted_service_or_one_no_longer_ours_is_released() {
    let finalized = |v: Value| {
        with(
            v,
            &["metadata", "finalizers"],
            json!(["other.io/keep", FINALIZER]),
        )
    };
    let deleting = with(
        status_ip(finalized(lb("default", "gone", 1)), "198.18.100.0"),
        &["metadata", "deletionTimestamp"],
        json!("2026-01-01T01:00:00Z"),
    );
    let mut changed = status_ip(finalized(lb("default", "changed", 2)), "198.18.100.1");
    changed["spec"]["type"] = json!("NodePort");
    let o = run(vec![deleting, changed, lb("default", "new", 3)]);
    assert_eq!(
        o.released,
        vec![
            Released {
                key: Key {
                    namespace: "default".into(),
                    name: "changed".into()
                },
                deleting: false,
                has_status: true,
            },
            Released {
                key: Key {
                    namespace: "default".into(),
                    name: "gone".into()
                },
                deleting: true,
                has_status: true,
            },
        ]
    );
    assert_eq!(
        address_of(&o, "new"),
        Ok(ip("198.18.100.0")),
        "the released address is free again"
    );
    // Without our finalizer, nothing to release.
    let o = run(vec![with(
        lb("default", "x", 1),
        &["metadata", "deletionTimestamp"],
        json!("2026-01-01T01:00:00Z"),
    )]);
    assert!(o.released.is_empty() && o.handled.is_empty());
}

#[test]
fn services_beyond_the_datapaths_room_get_an_event_not_a_refused_apply() {
    let services: Vec<Service> = (0..3)
        .map(|i| service(lb("default", &format!("s{i}"), i)))
        .collect();
    // Room for 5 services (ports) and 8 backends: s0 (2 ports × 2 nodes)
    // and s1 fit, s2 does not.
    let room = Room {
        services: 5,
        backends: 8,
    };
    let o = reconcile_within(&config(), &services, &nodes(), &[], room);
    assert!(address_of(&o, "s0").is_ok() && address_of(&o, "s1").is_ok());
    let problem = address_of(&o, "s2").unwrap_err();
    assert_eq!(
        problem,
        Problem::NoRoom {
            services: 2,
            backends: 4
        }
    );
    assert_eq!(problem.reason(), "CapacityExceeded");
    assert_eq!(cluster_services(&o).len(), 4);
    let tight = Room {
        services: 100,
        backends: 6,
    };
    let o = reconcile_within(&config(), &services, &nodes(), &[], tight);
    assert_eq!(cluster_services(&o).len(), 2, "backends are the limit");
}
