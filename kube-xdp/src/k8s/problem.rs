//! What keeps a Service from getting its address, said as an Event's
//! reason and message.

use std::{fmt, net::Ipv4Addr};

use super::objects::Key;
use crate::config::Protocol;

/// What keeps a Service from getting its address: an Event on it (with
/// this reason) and a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Every address of the pools it may use is taken.
    PoolExhausted { pools: Vec<String> },
    /// No pool serves its namespace (or the pool it names does not exist,
    /// or does not serve it).
    NoPool { why: String },
    /// It asks for an address outside every pool it may use.
    NotInPool { addr: Ipv4Addr },
    /// It asks for an address another Service holds.
    AddressTaken { addr: Ipv4Addr, by: Key },
    /// Its address and a port of it are a file service's.
    PortConflict {
        addr: Ipv4Addr,
        port: u16,
        protocol: Protocol,
        file_service: String,
    },
    /// What it asks for is no IPv4 address.
    BadRequest { text: String },
    /// None of its ports has a NodePort to forward to (TCP or UDP with
    /// `allocateLoadBalancerNodePorts` left on).
    NoNodePorts,
    /// The datapath has no room left for its kube-xdp services (one per
    /// port) or their backends (one per node and port).
    NoRoom { services: usize, backends: usize },
}

impl Problem {
    /// The Event's reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Problem::PoolExhausted { .. } => "AllocationFailed",
            Problem::NoPool { .. } => "NoAddressPool",
            Problem::NotInPool { .. } => "AddressNotInPool",
            Problem::AddressTaken { .. } => "AddressTaken",
            Problem::PortConflict { .. } => "PortConflict",
            Problem::BadRequest { .. } => "InvalidAddress",
            Problem::NoNodePorts => "NoNodePorts",
            Problem::NoRoom { .. } => "CapacityExceeded",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::PoolExhausted { pools } => write!(
                f,
                "no address left in address pool {}: every address is taken; add addresses to the pool or delete a Service",
                pools.join(", ")
            ),
            Problem::NoPool { why } => write!(f, "no address pool for this Service: {why}"),
            Problem::NotInPool { addr } => write!(
                f,
                "the requested address {addr} is in no address pool this Service may use: ask for one inside a pool, or add it to one"
            ),
            Problem::AddressTaken { addr, by } => write!(
                f,
                "the requested address {addr} is already taken by Service {by}: ask for another one, or leave the choice to kube-xdp"
            ),
            Problem::PortConflict {
                addr,
                port,
                protocol,
                file_service,
            } => write!(
                f,
                "{addr}:{port}/{} is kube-xdp's file service {file_service:?}: ask for another address",
                protocol.as_str().to_uppercase()
            ),
            Problem::BadRequest { text } => write!(
                f,
                "the requested address {text:?} is not an IPv4 address (kube-xdp serves IPv4)"
            ),
            Problem::NoRoom { services, backends } => write!(
                f,
                "kube-xdp has no room for its {services} service(s) and {backends} backend(s): the datapath holds \
                 {} services (one per Service port, the file's included) and {} backends in all",
                kube_xdp_common::maps::MAX_SERVICES,
                kube_xdp_common::maps::MAX_BACKENDS
            ),
            Problem::NoNodePorts => write!(
                f,
                "no TCP or UDP port of this Service has a NodePort to forward to (allocateLoadBalancerNodePorts: false?)"
            ),
        }
    }
}
