//! The typed, validated configuration: what the rest of the daemon reads.
//!
//! Every value here has passed validation (see `validate.rs`); defaults are
//! filled in. Each table keeps the lines its keys came from ([`Lines`]) so
//! that later checks (the plan's, a reload) can still point at the
//! file; lines never take part in equality. The keyword enums, port
//! ranges and backend addresses have their own files beside this one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::DEFAULT_PIN_PATH;
use super::backend_address::BackendAddress;
use super::keyword::{
    CheckKind, ForwardingMode, InitState, OnBackendDown, Protocol, SynCookies, XdpMode,
};
use super::port_range::PortRange;
use super::stats::StatsConfig;

/// Where the daemon keeps its pid file by default.
pub const DEFAULT_RUN_DIR: &str = "/run/kube-xdp";
/// Default flow table size (forward and reverse entries each).
pub const DEFAULT_FLOW_TABLE_SIZE: u32 = kube_xdp_common::maps::DEFAULT_FLOW_TABLE_SIZE;
/// Smallest accepted `flow_table_size`.
pub const MIN_FLOW_TABLE_SIZE: u32 = 1024;
/// Largest accepted `flow_table_size`.
pub const MAX_FLOW_TABLE_SIZE: u32 = 16_777_216;
/// Default `snat_ports`: below Linux's default `ip_local_port_range`
/// (32768-60999), so that the two never overlap out of the box.
pub const DEFAULT_SNAT_PORTS: PortRange = PortRange {
    first: 10000,
    last: 32767,
};
/// Default (and largest) Maglev table size.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = crate::maglev::DEFAULT_TABLE_SIZE;
/// Default `[syn_flood] half_open_limit`.
pub const DEFAULT_HALF_OPEN_LIMIT: u32 = 1024;
/// Largest `half_open_limit`: as many flows as the largest flow table.
pub const MAX_HALF_OPEN_LIMIT: u32 = MAX_FLOW_TABLE_SIZE;
/// Largest backend `weight`.
pub const MAX_WEIGHT: u32 = 256;
/// Longest service or backend name.
pub const MAX_NAME_LEN: usize = 63;

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from (named in messages).
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub timeouts: Timeouts,
    pub syn_flood: SynFlood,
    /// `[[service]]` tables, in file order.
    pub services: Vec<Service>,
    /// `[ha]`: one box of a pair; `None`: a single box.
    pub ha: Option<super::HaConfig>,
    /// `[kubernetes]`: Services of type LoadBalancer from the cluster;
    /// `None`: none.
    pub kubernetes: Option<super::KubernetesConfig>,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Interfaces to attach to (at least one; no duplicates).
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// Where maps and the link are pinned.
    pub pin_path: PathBuf,
    /// Prometheus `/metrics`; `None` (key absent) = no metrics endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// Where the pid file lives.
    pub run_dir: PathBuf,
    /// Entries of the flow maps (forward and reverse each).
    pub flow_table_size: u32,
    /// SNAT source addresses (at most 4); empty = the first IPv4 address
    /// of the interface.
    pub snat_addresses: Vec<Ipv4Addr>,
    /// Source ports handed to translated flows.
    pub snat_ports: PortRange,
    /// The stats page (`stats_*` keys).
    pub stats: StatsConfig,
    /// Lines of `[daemon]` and its keys (`interfaces[1]` for an element).
    pub lines: Lines,
}

/// A config with no interface: not valid as it stands (parsing rejects an
/// empty `interfaces`), but handy to build one in code.
impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            interfaces: Vec::new(),
            xdp_mode: XdpMode::Auto,
            pin_path: PathBuf::from(DEFAULT_PIN_PATH),
            metrics_listen: None,
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            flow_table_size: DEFAULT_FLOW_TABLE_SIZE,
            snat_addresses: Vec::new(),
            snat_ports: DEFAULT_SNAT_PORTS,
            stats: StatsConfig::default(),
            lines: Lines::default(),
        }
    }
}

/// `[timeouts]`: idle timeouts of flows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_established: Duration,
    /// After a FIN or RST.
    pub tcp_closing: Duration,
    /// A flow that has seen only its SYN.
    pub tcp_syn: Duration,
    pub udp: Duration,
    /// A UDP flow the backend has not answered (at most `udp`).
    pub udp_unanswered: Duration,
    /// How long a closed flow's SNAT port is held before reuse.
    pub tcp_time_wait: Duration,
    pub lines: Lines,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(24 * 3600),
            tcp_closing: Duration::from_secs(10),
            // A half-open flow is freed quickly: a client retransmits its
            // SYN after 1, 3 and 7 s (RFC 6298's 1 s initial RTO, doubled),
            // and each retransmit refreshes the flow.
            tcp_syn: Duration::from_secs(5),
            udp: Duration::from_secs(120),
            udp_unanswered: Duration::from_secs(30),
            tcp_time_wait: Duration::from_secs(60),
            lines: Lines::default(),
        }
    }
}

/// `[syn_flood]`: the defence against SYN floods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynFlood {
    pub syn_cookies: SynCookies,
    /// The most half-open TCP flows (a SYN seen, no handshake yet) the
    /// box keeps across all its CPUs; past it, a SYN gets a cookie
    /// (`auto`) or is dropped (`never`). At least 1.
    pub half_open_limit: u32,
    pub lines: Lines,
}

impl Default for SynFlood {
    fn default() -> Self {
        SynFlood {
            syn_cookies: SynCookies::Auto,
            half_open_limit: DEFAULT_HALF_OPEN_LIMIT,
            lines: Lines::default(),
        }
    }
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Unique over the file.
    pub name: String,
    pub vip: Ipv4Addr,
    /// `port` or `ports`.
    pub port: ServicePort,
    pub protocol: Protocol,
    pub mode: ForwardingMode,
    /// A prime, at most 65537, at least the number of backends.
    pub maglev_table_size: u32,
    pub on_backend_down: OnBackendDown,
    /// How long flows of a removed backend may live.
    pub drain_timeout: Duration,
    /// The table's defaults (a TCP connect check) when it is absent.
    pub health_check: HealthCheck,
    /// `[[service.backend]]` tables, in file order (may be empty).
    pub backends: Vec<Backend>,
    pub lines: Lines,
}

impl Service {
    /// The port a backend is health-checked on: the check's `port`, else
    /// the backend's port. (A port-range service must set the check's
    /// `port`; should it not, the first port of the range.)
    pub fn check_port(&self, backend: &Backend) -> u16 {
        self.health_check
            .port
            .or(backend.port)
            .unwrap_or(self.port.range().first)
    }
}

/// A service's `port` (one port) or `ports` (a range whose backends keep
/// the client's destination port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServicePort {
    Single(u16),
    Range(PortRange),
}

impl ServicePort {
    /// The ports as a range (one port: a range of one).
    pub fn range(self) -> PortRange {
        match self {
            ServicePort::Single(port) => PortRange {
                first: port,
                last: port,
            },
            ServicePort::Range(range) => range,
        }
    }

    /// True for `ports = "A-B"`.
    pub fn is_range(self) -> bool {
        matches!(self, ServicePort::Range(_))
    }
}

impl fmt::Display for ServicePort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            ServicePort::Single(port) => port.to_string(),
            ServicePort::Range(range) => format!("{}-{}", range.first, range.last),
        };
        f.pad(&text)
    }
}

/// `[service.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// Request path (`http`, `https`).
    pub path: String,
    /// Expected HTTP status (`http`, `https`).
    pub expect_status: u16,
    /// Verify the backend's certificate (`https`).
    pub tls_verify: bool,
    /// CA bundle to verify against instead of the system roots (`https`).
    pub ca_file: Option<PathBuf>,
    /// TLS SNI and the name verified; `None` = the backend's address.
    pub server_name: Option<String>,
    pub interval: Duration,
    /// Shorter than `interval`.
    pub timeout: Duration,
    /// Consecutive failures that mark a backend DOWN (≥ 1).
    pub fall: u32,
    /// Consecutive successes that mark a backend UP (≥ 1).
    pub rise: u32,
    /// State before the first checks on a fresh start.
    pub init_state: InitState,
    /// Check this port instead of the backend's.
    pub port: Option<u16>,
    pub lines: Lines,
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            kind: CheckKind::Tcp,
            path: "/readyz".into(),
            expect_status: 200,
            tls_verify: true,
            ca_file: None,
            server_name: None,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            fall: 3,
            rise: 2,
            init_state: InitState::Down,
            port: None,
            lines: Lines::default(),
        }
    }
}

/// One `[[service.backend]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Unique within its service.
    pub name: String,
    pub address: BackendAddress,
    /// The port traffic goes to: the backend's `port`, else the service's
    /// port; `None` for a port-range service (the client's port is kept).
    pub port: Option<u16>,
    /// 0..=256; 0 = drain (no new flows).
    pub weight: u32,
    pub lines: Lines,
}

/// The lines a table and its keys came from (1-based). Keys are the TOML
/// key names; an array element is `key[i]`. Any two `Lines` compare equal,
/// so that moving a table within the file changes nothing that matters.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    /// The table's header (0 = not in the file).
    pub table: usize,
    pub keys: BTreeMap<String, usize>,
}

impl Lines {
    /// The line of `key`; for `key[i]` not recorded, that of `key`; for a
    /// key not in the file, the table's.
    pub fn of(&self, key: &str) -> usize {
        if let Some(line) = self.keys.get(key) {
            return *line;
        }
        if let Some((base, _)) = key.split_once('[')
            && let Some(line) = self.keys.get(base)
        {
            return *line;
        }
        self.table
    }

    /// The line of `key` if it is written in the file.
    pub fn get(&self, key: &str) -> Option<usize> {
        self.keys.get(key).copied()
    }
}

impl PartialEq for Lines {
    fn eq(&self, _: &Lines) -> bool {
        true
    }
}

impl Eq for Lines {}
