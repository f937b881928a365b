//! The controller's decisions, as plain functions of the cluster's state:
//! which Services are ours, which address each gets, which nodes serve,
//! what each Service's status should say, and what went wrong. No API,
//! no clock, no randomness: two boxes that see the same Services and
//! Nodes decide the same, and a restarted box reads its earlier choices
//! back from the Services' status (as MetalLB does).

use std::{
    collections::{BTreeMap, HashMap},
    net::Ipv4Addr,
};

use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Node, PortStatus, Service,
};

pub use super::objects::{
    ANNOTATION_IPS, ANNOTATION_POOL, EXCLUDE_LABEL, FINALIZER, Key, METALLB_IPS, NodeBackend, Port,
    is_ours, usable_nodes,
};
use super::objects::{has_finalizer, ports, requested, status_address};
pub use super::problem::Problem;
use crate::config::{AddressPool, KubernetesConfig, PortRange, Protocol};

/// A service of the file, as far as a cluster Service may collide with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileService {
    pub name: String,
    pub vip: Ipv4Addr,
    pub ports: PortRange,
    pub protocol: Protocol,
}

/// A Service we handle, and what it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    pub key: Key,
    pub address: Result<Ipv4Addr, Problem>,
    pub ports: Vec<Port>,
    /// `externalTrafficPolicy: Local`: nodes are checked on this port
    /// (kube-proxy answers 200 only where the Service has endpoints).
    pub health_check_node_port: Option<u16>,
    pub has_finalizer: bool,
    /// The status it has now, and the one it should have.
    pub status_now: Option<LoadBalancerStatus>,
}

impl Handled {
    /// `status.loadBalancer` as it should be: the address with
    /// `ipMode: VIP` and the ports, or nothing.
    pub fn desired_status(&self) -> LoadBalancerStatus {
        let Ok(ip) = &self.address else {
            return LoadBalancerStatus {
                ingress: Some(Vec::new()),
            };
        };
        LoadBalancerStatus {
            ingress: Some(vec![LoadBalancerIngress {
                ip: Some(ip.to_string()),
                ip_mode: Some("VIP".into()),
                ports: Some(
                    self.ports
                        .iter()
                        .map(|p| PortStatus {
                            port: i32::from(p.port),
                            protocol: p.protocol.as_str().to_uppercase(),
                            error: None,
                        })
                        .collect(),
                ),
                hostname: None,
            }]),
        }
    }

    /// Whether the status must be written.
    pub fn status_differs(&self) -> bool {
        let now = self
            .status_now
            .as_ref()
            .and_then(|s| s.ingress.clone())
            .unwrap_or_default();
        let want = self.desired_status().ingress.unwrap_or_default();
        now != want
    }
}

/// Everything decided from one look at the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// The Services we handle, in allocation order.
    pub handled: Vec<Handled>,
    /// Services that carry our finalizer but are ours no more (being
    /// deleted, or no longer of our type or class): once their kube-xdp
    /// services are gone, the finalizer goes and, unless deleted, their
    /// status is cleared.
    pub released: Vec<Released>,
    /// The nodes that serve, by name.
    pub nodes: Vec<NodeBackend>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub key: Key,
    pub deleting: bool,
    /// It still shows an address in its status.
    pub has_status: bool,
}

impl Outcome {
    /// The addresses handed out.
    pub fn addresses(&self) -> Vec<Ipv4Addr> {
        let mut a: Vec<Ipv4Addr> = self
            .handled
            .iter()
            .filter_map(|h| h.address.as_ref().ok().copied())
            .collect();
        a.sort();
        a
    }
}

/// The pools a Service may draw from, and whether allocation may pick
/// from each unasked (`auto_assign`, or the pool it names).
fn pools_for<'a>(
    config: &'a KubernetesConfig,
    service: &Service,
    namespace: &str,
) -> Result<Vec<(&'a AddressPool, bool)>, Problem> {
    let named = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_POOL));
    if let Some(name) = named {
        let Some(pool) = config.address_pools.iter().find(|p| &p.name == name) else {
            return Err(Problem::NoPool {
                why: format!(
                    "its annotation {ANNOTATION_POOL} names pool {name:?}, which kube-xdp does not have"
                ),
            });
        };
        if !pool.serves_namespace(namespace) {
            return Err(Problem::NoPool {
                why: format!("pool {name:?} does not serve namespace {namespace:?}"),
            });
        }
        return Ok(vec![(pool, true)]);
    }
    let pools: Vec<(&AddressPool, bool)> = config
        .address_pools
        .iter()
        .filter(|p| p.serves_namespace(namespace))
        .map(|p| (p, p.auto_assign))
        .collect();
    if pools.is_empty() {
        return Err(Problem::NoPool {
            why: format!("no pool serves namespace {namespace:?}"),
        });
    }
    Ok(pools)
}

/// The file service that `addr` with `ports` would collide with.
fn conflict(addr: Ipv4Addr, ports: &[Port], file: &[FileService]) -> Option<Problem> {
    ports.iter().find_map(|p| {
        file.iter()
            .find(|f| f.vip == addr && f.protocol == p.protocol && f.ports.contains(p.port))
            .map(|f| Problem::PortConflict {
                addr,
                port: p.port,
                protocol: p.protocol,
                file_service: f.name.clone(),
            })
    })
}

/// Decides everything from the cluster's Services and Nodes and the
/// file's services.
pub fn reconcile(
    config: &KubernetesConfig,
    services: &[Service],
    nodes: &[Node],
    file: &[FileService],
) -> Outcome {
    reconcile_within(config, services, nodes, file, Room::UNLIMITED)
}

/// What the datapath has room for beside the file's services: kube-xdp
/// services (one per Service port) and backends (one per node and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    pub services: usize,
    pub backends: usize,
}

impl Room {
    pub const UNLIMITED: Room = Room {
        services: usize::MAX,
        backends: usize::MAX,
    };
}

/// [`reconcile`] where the datapath has `room`: Services that would not
/// fit (the newest, in allocation order) get no address and an Event,
/// rather than the datapath refusing every change.
pub fn reconcile_within(
    config: &KubernetesConfig,
    services: &[Service],
    nodes: &[Node],
    file: &[FileService],
    room: Room,
) -> Outcome {
    let mut ours: Vec<&Service> = Vec::new();
    let mut released = Vec::new();
    for s in services {
        let deleting = s.metadata.deletion_timestamp.is_some();
        if is_ours(config, s) && !deleting {
            ours.push(s);
        } else if has_finalizer(s) {
            released.push(Released {
                key: Key::of(s),
                deleting,
                has_status: status_address(s).is_some(),
            });
        }
    }
    released.sort_by(|a, b| a.key.cmp(&b.key));
    // The oldest first, then by name: the same order on every box.
    ours.sort_by(|a, b| {
        let created = |s: &Service| s.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| Key::of(a).cmp(&Key::of(b)))
    });

    let mut decided: Vec<Option<Result<Ipv4Addr, Problem>>> = vec![None; ours.len()];
    let mut taken: HashMap<Ipv4Addr, Key> = HashMap::new();
    let all_ports: Vec<Vec<Port>> = ours.iter().map(|s| ports(s)).collect();
    let pools: Vec<Result<Vec<(&AddressPool, bool)>, Problem>> = ours
        .iter()
        .map(|s| pools_for(config, s, &Key::of(s).namespace))
        .collect();
    let requests: Vec<Option<Result<Ipv4Addr, Problem>>> =
        ours.iter().map(|s| requested(s)).collect();

    for i in 0..ours.len() {
        if all_ports[i].is_empty() {
            decided[i] = Some(Err(Problem::NoNodePorts));
        } else if let Err(p) = &pools[i] {
            decided[i] = Some(Err(p.clone()));
        } else if let Some(Err(p)) = &requests[i] {
            decided[i] = Some(Err(p.clone()));
        }
    }
    // 1. What they hold: the address in their status, kept while it is
    //    still what they ask for (if they ask) and inside a pool of theirs.
    for (i, s) in ours.iter().enumerate() {
        if decided[i].is_some() {
            continue;
        }
        let Some(held) = status_address(s) else {
            continue;
        };
        let asked = match &requests[i] {
            Some(Ok(addr)) => Some(*addr),
            _ => None,
        };
        let in_pool = pools[i]
            .as_ref()
            .is_ok_and(|p| p.iter().any(|(pool, _)| pool.contains(held)));
        if asked.is_none_or(|a| a == held)
            && in_pool
            && !taken.contains_key(&held)
            && conflict(held, &all_ports[i], file).is_none()
        {
            taken.insert(held, Key::of(s));
            decided[i] = Some(Ok(held));
        }
    }
    // 2. What they ask for.
    for (i, s) in ours.iter().enumerate() {
        if decided[i].is_some() {
            continue;
        }
        let Some(Ok(addr)) = requests[i] else {
            continue;
        };
        let in_pool = pools[i]
            .as_ref()
            .is_ok_and(|p| p.iter().any(|(pool, _)| pool.contains(addr)));
        decided[i] = Some(if let Some(by) = taken.get(&addr) {
            Err(Problem::AddressTaken {
                addr,
                by: by.clone(),
            })
        } else if !in_pool {
            Err(Problem::NotInPool { addr })
        } else if let Some(c) = conflict(addr, &all_ports[i], file) {
            Err(c)
        } else {
            taken.insert(addr, Key::of(s));
            Ok(addr)
        });
    }
    // 3. The rest: the lowest free address of the first pool that has
    //    one, never a file service's VIP.
    for (i, s) in ours.iter().enumerate() {
        if decided[i].is_some() {
            continue;
        }
        let Ok(candidates) = &pools[i] else {
            continue;
        };
        let auto: Vec<&AddressPool> = candidates
            .iter()
            .filter(|(_, auto)| *auto)
            .map(|(p, _)| *p)
            .collect();
        if auto.is_empty() {
            decided[i] = Some(Err(Problem::NoPool {
                why: format!(
                    "the pools serving namespace {:?} hand out addresses only to Services that ask for them \
                     (auto_assign = false): set {ANNOTATION_POOL} or ask for an address",
                    Key::of(s).namespace
                ),
            }));
            continue;
        }
        let free = auto.iter().find_map(|pool| {
            pool.addresses()
                .find(|a| !taken.contains_key(a) && !file.iter().any(|f| f.vip == *a))
        });
        decided[i] = Some(match free {
            Some(addr) => {
                taken.insert(addr, Key::of(s));
                Ok(addr)
            }
            None => Err(Problem::PoolExhausted {
                pools: auto.iter().map(|p| p.name.clone()).collect(),
            }),
        });
    }

    // What fits, in allocation order.
    let usable = usable_nodes(config, nodes);
    let (mut services_left, mut backends_left) = (room.services, room.backends);
    for (i, d) in decided.iter_mut().enumerate() {
        if !matches!(d, Some(Ok(_))) {
            continue;
        }
        let need = all_ports[i].len();
        let need_backends = need.saturating_mul(usable.len());
        if need > services_left || need_backends > backends_left {
            *d = Some(Err(Problem::NoRoom {
                services: need,
                backends: need_backends,
            }));
        } else {
            services_left -= need;
            backends_left -= need_backends;
        }
    }
    let handled = ours
        .iter()
        .zip(decided)
        .zip(all_ports)
        .map(|((s, address), ports)| {
            let spec = s.spec.as_ref();
            let local = spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local");
            Handled {
                key: Key::of(s),
                address: address.expect("every Service is decided"),
                ports,
                health_check_node_port: spec
                    .and_then(|s| s.health_check_node_port)
                    .filter(|_| local)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p > 0),
                has_finalizer: has_finalizer(s),
                status_now: s.status.as_ref().and_then(|st| st.load_balancer.clone()),
            }
        })
        .collect();
    Outcome {
        handled,
        released,
        nodes: usable,
    }
}

/// One kube-xdp service of a cluster Service: one port of it on its
/// address, to every usable node's NodePort.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterService {
    /// `namespace/name:port/protocol`: how `kube-xdp backends`, the logs
    /// and the metrics name it.
    pub name: String,
    /// The Service, `namespace/name`.
    pub origin: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// By node name: (address, NodePort).
    pub backends: BTreeMap<String, (Ipv4Addr, u16)>,
    /// `Some`: the Service's `healthCheckNodePort`
    /// (`externalTrafficPolicy: Local`); `None`: the configured check port.
    pub check_port: Option<u16>,
}

/// The kube-xdp services the outcome asks for.
pub fn cluster_services(outcome: &Outcome) -> Vec<ClusterService> {
    let mut out = Vec::new();
    for h in &outcome.handled {
        let Ok(vip) = h.address else {
            continue;
        };
        for p in &h.ports {
            out.push(ClusterService {
                name: format!("{}:{}/{}", h.key, p.port, p.protocol.as_str()),
                origin: h.key.to_string(),
                vip,
                port: p.port,
                protocol: p.protocol,
                backends: outcome
                    .nodes
                    .iter()
                    .map(|n| (n.name.clone(), (n.addr, p.node_port)))
                    .collect(),
                check_port: h.health_check_node_port,
            });
        }
    }
    out
}
