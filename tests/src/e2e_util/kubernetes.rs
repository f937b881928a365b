//! The Kubernetes side of the end-to-end tests (`e2e_kubernetes`): Nodes
//! and Services as the API serves them, the node namespaces serving
//! NodePorts, the `[kubernetes]` section, and the client's view of a
//! Service's VIP. Every wait is the caller's, bounded.

use crate::{
    kube_api::Emulator,
    servers::{TcpServer, UdpServer, whoami},
    topology::{Cluster, backend_addr},
};
use serde_json::{Value, json};
use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

/// The first address of the tests' pool (`kubernetes_section`).
pub const POOL_FIRST: &str = "198.18.0.100";

pub fn addr(ip: &str, port: u16) -> SocketAddr {
    format!("{ip}:{port}").parse().unwrap()
}

pub fn node(name: &str, ip: &str, ready: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "addresses": [{"type": "InternalIP", "address": ip}],
        },
    })
}

pub fn service(name: &str, request: Option<&str>) -> Value {
    let mut s = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": "kube-xdp.io/lb",
            "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080},
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353, "nodePort": 30053},
            ],
        },
    });
    if let Some(ip) = request {
        s["spec"]["loadBalancerIP"] = json!(ip);
    }
    s
}

pub fn ingress_ip(svc: &Value) -> Option<String> {
    svc["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .map(str::to_owned)
}

/// From the client: the name of the node behind `ip:80`.
pub fn tcp_name(c: &Cluster, ip: &str) -> anyhow::Result<String> {
    let a = addr(ip, 80);
    c.client
        .run(move || Ok(whoami(a, Duration::from_millis(500))?))
}

/// From the client: the UDP answer of `ip:53`.
pub fn udp_answer(c: &Cluster, ip: &str) -> anyhow::Result<String> {
    let a = addr(ip, 53);
    c.client.run(move || {
        let sock = UdpSocket::bind("198.18.0.1:0")?;
        sock.set_read_timeout(Some(Duration::from_millis(500)))?;
        sock.send_to(b"hello", a)?;
        let mut buf = [0u8; 128];
        let (n, _) = sock.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// The Events about the Service `name` (none when the emulator does not
/// answer: callers poll, and try again).
pub fn events_of(api: &Emulator, name: &str) -> Vec<Value> {
    let Ok(list) = api.ok(
        "GET",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        None,
    ) else {
        return Vec::new();
    };
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

/// Two nodes: NodePorts 30080/TCP and 30053/UDP, kube-proxy's health
/// port (checked over TCP in these tests), and an apiserver on 6443 for
/// the file's service.
pub fn node_servers(c: &Cluster) -> (Vec<TcpServer>, Vec<UdpServer>) {
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for i in 0..2 {
        let ns = &c.backends[i];
        let ip = backend_addr(i);
        tcp.push(TcpServer::start(ns, addr(&ip, 30080), &format!("node-{i}")).unwrap());
        tcp.push(TcpServer::start(ns, addr(&ip, 10256), "healthz").unwrap());
        tcp.push(TcpServer::start(ns, addr(&ip, 6443), &format!("apiserver-{i}")).unwrap());
        udp.push(UdpServer::start(ns, addr(&ip, 30053), &format!("node-{i}")).unwrap());
    }
    (tcp, udp)
}

/// `[kubernetes]` for these tests: the emulator's kubeconfig, fast TCP
/// node checks, four addresses from 198.18.0.100.
pub fn kubernetes_section(kubeconfig: &std::path::Path) -> String {
    format!(
        r#"
[kubernetes]
kubeconfig = "{}"

[kubernetes.health_check]
kind = "tcp"
interval = "200ms"
timeout = "100ms"
fall = 2
rise = 1

[[kubernetes.address_pool]]
name = "test"
addresses = ["198.18.0.100-198.18.0.103"]
"#,
        kubeconfig.display()
    )
}
