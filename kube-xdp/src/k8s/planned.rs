//! From the controller's [`ClusterService`]s to planned services, the
//! shape the daemon applies (with the file's, through one diff).

use std::{net::SocketAddr, sync::Arc};

use super::reconcile::{ClusterService, FileService};
use crate::{
    config::{
        Backend, BackendAddress, Config, DEFAULT_MAGLEV_TABLE_SIZE, ForwardingMode,
        KubernetesConfig, Lines, OnBackendDown, Service, ServicePort,
    },
    plan::{PlannedBackend, PlannedService},
};

/// How long the flows of a node that left a Service's backends may go on
/// (the file's `drain_timeout` default).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// The planned service of `cs`, checked as `config` says.
pub fn planned(cs: &ClusterService, config: &KubernetesConfig) -> PlannedService {
    let mut health_check = config.health_check.clone();
    if let Some(port) = cs.check_port {
        health_check.port = Some(port);
    }
    let backends: Vec<Backend> = cs
        .backends
        .iter()
        .map(|(name, (addr, node_port))| Backend {
            name: name.clone(),
            address: BackendAddress::Ip(*addr),
            port: Some(*node_port),
            weight: 1,
            lines: Lines::default(),
        })
        .collect();
    let service = Service {
        name: cs.name.clone(),
        vip: cs.vip,
        port: ServicePort::Single(cs.port),
        protocol: cs.protocol,
        mode: ForwardingMode::Nat,
        maglev_table_size: DEFAULT_MAGLEV_TABLE_SIZE,
        on_backend_down: OnBackendDown::Keep,
        drain_timeout: DRAIN_TIMEOUT,
        health_check,
        backends: backends.clone(),
        lines: Lines::default(),
    };
    let check = Arc::new(crate::plan::check_spec_of(&service));
    let planned_backends = backends
        .iter()
        .map(|b| {
            let BackendAddress::Ip(addr) = b.address else {
                unreachable!("node backends are addresses")
            };
            let mut p = PlannedBackend::new(&service, b, addr);
            p.check_addr = SocketAddr::from((addr, service.check_port(b)));
            p
        })
        .collect();
    PlannedService {
        config: service,
        check,
        backends: planned_backends,
        unresolved: Vec::new(),
        origin: Some(cs.origin.clone()),
    }
}

/// `cluster` less the services that overlap one of the file's `file`
/// (the same address and protocol, a port in common). The file's
/// services never depend on the cluster: a service of the file and one
/// of the cluster on the same address, protocol and port would share one
/// key of the datapath's service map, and removing the cluster's would
/// remove the file's. The controller gives such a Service no address
/// (`PortConflict`) once it sees the file; until then (a reload, a
/// restart with the last run's services) it is left out here.
pub fn beside_file(cluster: Vec<PlannedService>, file: &[PlannedService]) -> Vec<PlannedService> {
    cluster
        .into_iter()
        .filter(|c| {
            let shadowed = file.iter().find(|f| {
                f.config.vip == c.config.vip
                    && f.config.protocol == c.config.protocol
                    && f.config.port.range().overlaps(&c.config.port.range())
            });
            if let Some(f) = shadowed {
                tracing::warn!(
                    service = %c.config.name,
                    "kubernetes: {} is left out: the file's service {} has its address, protocol and port",
                    c.config.name,
                    f.config.name
                );
            }
            shadowed.is_none()
        })
        .collect()
}

/// What of the file a cluster Service must not collide with.
pub fn file_services(config: &Config) -> Vec<FileService> {
    config
        .services
        .iter()
        .map(|s| FileService {
            name: s.name.clone(),
            vip: s.vip,
            ports: s.port.range(),
            protocol: s.protocol,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CheckKind, Protocol};
    use std::{collections::BTreeMap, net::Ipv4Addr, path::Path};

    fn kubernetes() -> KubernetesConfig {
        let text = "[daemon]\ninterfaces = [\"eth0\"]\n\n[kubernetes]\n\n\
                    [[kubernetes.address_pool]]\nname = \"p\"\naddresses = [\"198.18.100.0/30\"]\n";
        Config::parse(Path::new("t.toml"), text)
            .unwrap()
            .kubernetes
            .unwrap()
    }

    fn cluster_service(check_port: Option<u16>) -> ClusterService {
        ClusterService {
            name: "default/web:80/tcp".into(),
            origin: "default/web".into(),
            vip: Ipv4Addr::new(198, 18, 100, 0),
            port: 80,
            protocol: Protocol::Tcp,
            backends: BTreeMap::from([
                ("worker-1".into(), (Ipv4Addr::new(198, 18, 0, 21), 30080)),
                ("worker-2".into(), (Ipv4Addr::new(198, 18, 0, 22), 30080)),
            ]),
            check_port,
        }
    }

    #[test]
    fn a_cluster_service_is_planned_to_the_node_ports_checked_on_kube_proxys_port() {
        let p = planned(&cluster_service(None), &kubernetes());
        assert_eq!(p.origin.as_deref(), Some("default/web"));
        assert_eq!(p.config.port, ServicePort::Single(80));
        assert_eq!(p.check.kind, crate::health::CheckKind::Http);
        assert_eq!(p.check.path, "/healthz");
        let backends: Vec<(String, Ipv4Addr, Option<u16>, SocketAddr)> = p
            .backends
            .iter()
            .map(|b| (b.name.clone(), b.addr, b.port, b.check_addr))
            .collect();
        assert_eq!(
            backends,
            vec![
                (
                    "worker-1".into(),
                    Ipv4Addr::new(198, 18, 0, 21),
                    Some(30080),
                    "198.18.0.21:10256".parse().unwrap()
                ),
                (
                    "worker-2".into(),
                    Ipv4Addr::new(198, 18, 0, 22),
                    Some(30080),
                    "198.18.0.22:10256".parse().unwrap()
                ),
            ]
        );
        assert_eq!(p.config.health_check.kind, CheckKind::Http);
    }

    #[test]
    fn a_local_traffic_policy_service_is_checked_on_its_health_check_node_port() {
        let p = planned(&cluster_service(Some(32001)), &kubernetes());
        assert!(p.backends.iter().all(|b| b.check_addr.port() == 32001));
    }

    #[test]
    fn a_cluster_service_on_a_file_services_address_protocol_and_port_is_left_out() {
        // The file: 10.4.0.10, 6443/tcp and 30000-32767/tcp.
        let plan = crate::plan::tests::sample_plan();
        let at = |vip: [u8; 4], port: u16, protocol: Protocol| {
            let mut cs = cluster_service(None);
            cs.vip = Ipv4Addr::from(vip);
            cs.port = port;
            cs.protocol = protocol;
            cs.name = format!("default/web:{port}/{}@{}", protocol.as_str(), cs.vip);
            planned(&cs, &kubernetes())
        };
        let cluster = vec![
            at([10, 4, 0, 10], 6443, Protocol::Tcp),
            at([10, 4, 0, 10], 31000, Protocol::Tcp),
            at([10, 4, 0, 10], 6443, Protocol::Udp),
            at([10, 4, 0, 10], 80, Protocol::Tcp),
            at([198, 18, 100, 0], 6443, Protocol::Tcp),
        ];
        let kept: Vec<String> = beside_file(cluster, &plan.services)
            .into_iter()
            .map(|s| s.config.name)
            .collect();
        assert_eq!(
            kept,
            vec![
                "default/web:6443/udp@10.4.0.10",
                "default/web:80/tcp@10.4.0.10",
                "default/web:6443/tcp@198.18.100.0",
            ]
        );
        // Nothing of the file: all kept.
        assert_eq!(
            beside_file(vec![at([10, 4, 0, 10], 6443, Protocol::Tcp)], &[]).len(),
            1
        );
    }

    #[test]
    fn a_cluster_service_is_applied_with_the_files_and_named_for_backends() {
        let mut plan = crate::plan::tests::sample_plan();
        let files = plan.desired_services().len();
        plan.cluster = vec![planned(&cluster_service(None), &kubernetes())];
        let desired = plan.desired_services();
        assert_eq!(desired.len(), files + 1);
        let web = desired.last().unwrap();
        assert_eq!(web.origin.as_deref(), Some("default/web"));
        assert_eq!(web.vip, Ipv4Addr::new(198, 18, 100, 0));
        assert_eq!(web.backends.len(), 2);
        assert!(
            plan.checkers()
                .iter()
                .any(|c| c.key.0 == "default/web:80/tcp")
        );
    }
}
