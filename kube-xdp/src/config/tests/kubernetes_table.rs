//! The `[kubernetes]` table and its `[[kubernetes.address_pool]]`s.

use super::*;
use std::net::Ipv4Addr;
use std::time::Duration;

const POOL: &str =
    "[[kubernetes.address_pool]]\nname = \"default\"\naddresses = [\"198.18.100.0/28\"]\n";

fn with_kubernetes(fields: &str, rest: &str) -> String {
    format!("{DAEMON}\n[kubernetes]\n{fields}\n{rest}")
}

#[test]
fn kubernetes_parses_with_its_defaults() {
    let config = parse(&with_kubernetes("", POOL)).unwrap();
    let k = config.kubernetes.unwrap();
    assert_eq!(k.kubeconfig, None);
    assert_eq!(k.load_balancer_class, "kube-xdp.io/lb");
    assert!(!k.handle_classless);
    assert_eq!(k.node_selector, None);
    assert_eq!(k.address_pools.len(), 1);
    let pool = &k.address_pools[0];
    assert_eq!(pool.name, "default");
    assert_eq!(pool.addresses().count(), 16);
    assert!(pool.namespaces.is_empty() && pool.auto_assign);
    // kube-proxy's health endpoint, trusted until it fails.
    let hc = &k.health_check;
    assert_eq!(hc.kind, CheckKind::Http);
    assert_eq!(hc.path, "/healthz");
    assert_eq!(hc.port, Some(10256));
    assert_eq!(hc.init_state, InitState::Up);
    assert_eq!(hc.interval, Duration::from_secs(2));
    assert!(parse(DAEMON).unwrap().kubernetes.is_none());
}

#[test]
fn every_kubernetes_key_is_read() {
    let text = with_kubernetes(
        "kubeconfig = \"/etc/kube-xdp/kubeconfig\"\nload_balancer_class = \"example.com/lb\"\n\
         handle_classless = true\nnode_selector = \"node-role.kubernetes.io/worker, !spot\"\n\n\
         [kubernetes.health_check]\ninterval = \"500ms\"\ntimeout = \"200ms\"\nrise = 1\nfall = 2\ninit_state = \"down\"\n",
        "[[kubernetes.address_pool]]\nname = \"a\"\naddresses = [\"198.18.100.0/30\", \"198.18.100.9-198.18.100.10\", \"198.18.100.20\"]\n\
         namespaces = [\"team-a\", \"team-b\"]\nauto_assign = false\n",
    );
    let k = parse(&text)
        .unwrap_or_else(|e| panic!("{e}"))
        .kubernetes
        .unwrap();
    assert_eq!(
        k.kubeconfig.as_deref(),
        Some(Path::new("/etc/kube-xdp/kubeconfig"))
    );
    assert_eq!(k.load_balancer_class, "example.com/lb");
    assert!(k.handle_classless);
    assert_eq!(k.node_selector.unwrap().terms.len(), 2);
    let hc = &k.health_check;
    assert_eq!(
        (hc.kind, hc.port, hc.rise, hc.fall),
        (CheckKind::Http, Some(10256), 1, 2)
    );
    assert_eq!(hc.interval, Duration::from_millis(500));
    assert_eq!(hc.init_state, InitState::Down);
    let pool = &k.address_pools[0];
    let all: Vec<Ipv4Addr> = pool.addresses().collect();
    assert_eq!(all.len(), 7);
    assert_eq!(all[4], Ipv4Addr::new(198, 18, 100, 9));
    assert_eq!(pool.namespaces, vec!["team-a", "team-b"]);
    assert!(!pool.auto_assign);
}

#[test]
fn a_tcp_node_check_needs_no_path() {
    let text = with_kubernetes(
        "[kubernetes.health_check]\nkind = \"tcp\"\nport = 30080\n",
        POOL,
    );
    let hc = parse(&text)
        .unwrap_or_else(|e| panic!("{e}"))
        .kubernetes
        .unwrap()
        .health_check;
    assert_eq!((hc.kind, hc.port), (CheckKind::Tcp, Some(30080)));
}

#[test]
fn kubernetes_without_a_pool_is_refused() {
    let text = with_kubernetes("", "");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[kubernetes]",
        "address_pool",
        "at least one [[kubernetes.address_pool]]",
    );
}

#[test]
fn bad_pools_are_refused_with_their_line() {
    let text = with_kubernetes(
        "",
        "[[kubernetes.address_pool]]\nname = \"a\"\naddresses = [\"198.18.100.1/28\"]\n",
    );
    let i = issue(&text);
    assert_issue(&i, &text, "198.18.100.1/28", "addresses", "host bits set");

    let text = with_kubernetes(
        "",
        &format!(
            "{POOL}[[kubernetes.address_pool]]\nname = \"b\"\naddresses = [\"198.18.100.8-198.18.100.20\"]\n"
        ),
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "addresses = [\"198.18.100.8",
        "addresses",
        "overlaps pool \"default\"",
    );

    let text = with_kubernetes("", &format!("{POOL}{POOL}"));
    let all = issues(&text);
    assert!(
        list(&all).contains("is the name of another pool too"),
        "{}",
        list(&all)
    );

    let text = with_kubernetes(
        "",
        "[[kubernetes.address_pool]]\nname = \"a\"\naddresses = [\"10.0.0.0/8\"]\n",
    );
    let i = issue(&text);
    assert!(i.message.contains("more than the 65536"), "{i}");

    let text = with_kubernetes("", "[[kubernetes.address_pool]]\nname = \"a\"\n");
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "[[kubernetes.address_pool]]",
        "addresses",
        "is required",
    );

    let text = with_kubernetes(
        "",
        "[[kubernetes.address_pool]]\nname = \"a\"\naddresses = [\"198.18.100.0/30\"]\nnamespaces = [\"Not_A_Namespace\"]\n",
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "Not_A_Namespace",
        "namespaces",
        "is not a namespace name",
    );
}

#[test]
fn a_pool_holding_a_snat_address_is_refused() {
    let text = format!(
        "[daemon]\ninterfaces = [\"eth0\"]\nsnat_addresses = [\"198.18.100.3\"]\n\n[kubernetes]\n{POOL}"
    );
    let i = issue(&text);
    assert!(i.message.contains("198.18.100.3, a SNAT address"), "{i}");
}

#[test]
fn bad_kubernetes_keys_are_refused_with_their_line() {
    let text = with_kubernetes("kubeconfig = \"kubeconfig\"", POOL);
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "kubeconfig =",
        "kubeconfig",
        "must be an absolute path",
    );

    let text = with_kubernetes("node_selector = \"zone in (a, b)\"", POOL);
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "node_selector",
        "node_selector",
        "set-based terms",
    );

    let text = with_kubernetes("load_balancer_class = \"\"", POOL);
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "load_balancer_class",
        "load_balancer_class",
        "is not a class name",
    );

    let text = with_kubernetes("pools = []", POOL);
    let i = issue(&text);
    assert!(i.to_string().contains("pools"), "{i}");

    let text = with_kubernetes(
        "[kubernetes.health_check]\nkind = \"https\"\nca_file = \"/etc/ca.pem\"\n",
        POOL,
    );
    let i = issue(&text);
    assert_issue(
        &i,
        &text,
        "ca_file",
        "ca_file",
        "not supported for node checks",
    );
}
