//! What kube-xdp reads of the cluster's objects: which Services are ours,
//! what a Service asks for and holds, its ports, and the nodes that serve.
//! The annotations, labels and the finalizer it knows by name are here.

use std::{fmt, net::Ipv4Addr};

use k8s_openapi::api::core::v1::{Node, Service};

use super::problem::Problem;
use crate::config::{KubernetesConfig, Protocol};

/// Put on every Service we handle, so that its deletion waits until its
/// address is released and its kube-xdp services are gone.
pub const FINALIZER: &str = "kube-xdp.io/load-balancer";
/// The addresses a Service asks for (comma-separated; the first IPv4 one
/// counts), our own spelling.
pub const ANNOTATION_IPS: &str = "kube-xdp.io/load-balancer-ips";
/// MetalLB's spelling of the same, which its users already write.
pub const METALLB_IPS: &str = "metallb.universe.tf/loadBalancerIPs";
/// The pool a Service asks for by name.
pub const ANNOTATION_POOL: &str = "kube-xdp.io/address-pool";
/// Nodes labelled so never serve load-balancer traffic (Kubernetes' own
/// label, honoured by every cloud provider's service controller).
pub const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

/// A Service, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn of(service: &Service) -> Key {
        Key {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One port of a handled Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: u16,
}

/// A usable node: Ready, not excluded, selected, with an IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBackend {
    pub name: String,
    pub addr: Ipv4Addr,
}

/// Whether a Service is ours: of type LoadBalancer, with our class (or
/// none, with `handle_classless`).
pub fn is_ours(config: &KubernetesConfig, service: &Service) -> bool {
    let Some(spec) = &service.spec else {
        return false;
    };
    if spec.type_.as_deref() != Some("LoadBalancer") {
        return false;
    }
    match spec.load_balancer_class.as_deref() {
        Some(class) => class == config.load_balancer_class,
        None => config.handle_classless,
    }
}

pub(super) fn has_finalizer(service: &Service) -> bool {
    service
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == FINALIZER))
}

/// The nodes that serve: Ready, without the exclusion label, matching the
/// selector, with an InternalIP (else ExternalIP) IPv4 address; by name.
pub fn usable_nodes(config: &KubernetesConfig, nodes: &[Node]) -> Vec<NodeBackend> {
    let mut out: Vec<NodeBackend> = nodes
        .iter()
        .filter(|n| n.metadata.deletion_timestamp.is_none())
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .filter(|n| {
            let labels = n.metadata.labels.as_ref();
            let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
            label(EXCLUDE_LABEL).is_none()
                && config
                    .node_selector
                    .as_ref()
                    .is_none_or(|s| s.matches(label))
        })
        .filter_map(|n| {
            let addresses = n.status.as_ref()?.addresses.as_ref()?;
            let of = |kind: &str| {
                addresses
                    .iter()
                    .filter(|a| a.type_ == kind)
                    .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
            };
            let addr = of("InternalIP").or_else(|| of("ExternalIP"))?;
            Some(NodeBackend {
                name: n.metadata.name.clone()?,
                addr,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

/// What a Service asks for: `spec.loadBalancerIP`, else our annotation,
/// else MetalLB's; the first IPv4 address of a list.
pub(super) fn requested(service: &Service) -> Option<Result<Ipv4Addr, Problem>> {
    let annotations = service.metadata.annotations.as_ref();
    let annotation = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .filter(|v| !v.trim().is_empty())
    };
    let text = service
        .spec
        .as_ref()
        .and_then(|s| s.load_balancer_ip.clone())
        .filter(|t| !t.trim().is_empty())
        .or_else(|| annotation(ANNOTATION_IPS).cloned())
        .or_else(|| annotation(METALLB_IPS).cloned())?;
    let first_v4 = text
        .split(',')
        .map(str::trim)
        .find(|t| !t.contains(':'))
        .map(|t| t.parse::<Ipv4Addr>());
    Some(match first_v4 {
        Some(Ok(addr)) => Ok(addr),
        _ => Err(Problem::BadRequest { text }),
    })
}

/// The address in the Service's status (what an earlier run gave it).
pub(super) fn status_address(service: &Service) -> Option<Ipv4Addr> {
    service
        .status
        .as_ref()?
        .load_balancer
        .as_ref()?
        .ingress
        .as_ref()?
        .iter()
        .find_map(|i| i.ip.as_deref()?.parse().ok())
}

pub(super) fn ports(service: &Service) -> Vec<Port> {
    let Some(spec) = &service.spec else {
        return Vec::new();
    };
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
                "TCP" => Protocol::Tcp,
                "UDP" => Protocol::Udp,
                _ => return None,
            };
            Some(Port {
                port: u16::try_from(p.port).ok().filter(|p| *p > 0)?,
                protocol,
                node_port: u16::try_from(p.node_port?).ok().filter(|p| *p > 0)?,
            })
        })
        .collect()
}
