//! The values the datapath API speaks in (services, backends, their
//! states) and their map encodings: addresses and ports in network byte
//! order, states as the common crate's constants.

use kube_xdp_common::maps::{BACKEND_DOWN, BACKEND_DRAIN, BACKEND_UP, Backend};
use std::{net::Ipv4Addr, ops::RangeInclusive};

/// Network byte order, as the datapath keeps it.
pub fn be_addr(addr: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(addr.octets())
}

pub fn addr_from_be(addr: u32) -> Ipv4Addr {
    Ipv4Addr::from(addr.to_ne_bytes())
}

pub fn be_port(port: u16) -> u16 {
    port.to_be()
}

/// A service as the datapath sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    pub vip: Ipv4Addr,
    /// One port, or a range (NodePorts) whose backends keep the client's
    /// destination port.
    pub ports: RangeInclusive<u16>,
    pub protocol: u8,
    pub reset_on_down: bool,
}

/// A backend's state. Shown by its [`name`](Self::name) (`UP`, `DOWN`,
/// `DRAIN`, as HAProxy shows them) and labelled in metrics by its
/// [`label`](Self::label) (`up`, `down`, `drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendState {
    Up,
    Down,
    /// No new flows (weight 0, or removed from the configuration); its
    /// flows finish.
    Drain,
}

impl serde::Serialize for BackendState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl BackendState {
    pub(super) fn raw(self) -> u8 {
        match self {
            BackendState::Up => BACKEND_UP,
            BackendState::Down => BACKEND_DOWN,
            BackendState::Drain => BACKEND_DRAIN,
        }
    }

    pub(super) fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            BACKEND_UP => Some(BackendState::Up),
            BACKEND_DOWN => Some(BackendState::Down),
            BACKEND_DRAIN => Some(BackendState::Drain),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BackendState::Up => "UP",
            BackendState::Down => "DOWN",
            BackendState::Drain => "DRAIN",
        }
    }

    /// Every state, in the order metrics list them.
    pub const ALL: [BackendState; 3] = [BackendState::Up, BackendState::Down, BackendState::Drain];

    /// The metric label: the name in lower case.
    pub fn label(self) -> &'static str {
        match self {
            BackendState::Up => "up",
            BackendState::Down => "down",
            BackendState::Drain => "drain",
        }
    }
}

/// A backend as the datapath sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    pub service_id: u32,
    pub addr: Ipv4Addr,
    /// `None`: the client's destination port (port-range services).
    pub port: Option<u16>,
    pub state: BackendState,
    /// The next hop's MAC; `None` until resolved.
    pub mac: Option<[u8; 6]>,
    /// The interface the next hop is on; 0 = the one the packet came in on.
    pub ifindex: u32,
}

impl BackendSpec {
    pub(super) fn raw(&self) -> Backend {
        Backend {
            addr: be_addr(self.addr),
            port: self.port.map_or(0, be_port),
            state: self.state.raw(),
            _pad: 0,
            mac: self.mac.unwrap_or([0; 6]),
            _pad2: [0; 2],
            ifindex: self.ifindex,
            service_id: self.service_id,
        }
    }

    pub(super) fn from_raw(raw: &Backend) -> Option<Self> {
        if raw.addr == 0 {
            return None;
        }
        Some(BackendSpec {
            service_id: raw.service_id,
            addr: addr_from_be(raw.addr),
            port: (raw.port != 0).then(|| u16::from_be(raw.port)),
            state: BackendState::from_raw(raw.state)?,
            mac: (raw.mac != [0; 6]).then_some(raw.mac),
            ifindex: raw.ifindex,
        })
    }
}
