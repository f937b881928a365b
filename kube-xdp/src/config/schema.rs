//! The typed, validated configuration: what the rest of the daemon reads.
//!
//! Every value here has passed validation (see `validate.rs`); defaults are
//! filled in. Each table keeps the lines its keys came from ([`Lines`]) so
//! that later checks (the plan's, a reload) can still point at the
//! file; lines never take part in equality.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use kube_xdp_common::maps::{PROTO_TCP, PROTO_UDP};

use super::DEFAULT_PIN_PATH;
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
    /// `[[service]]` tables, in file order.
    pub services: Vec<Service>,
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
    /// How long a closed flow's SNAT port is held before reuse.
    pub tcp_time_wait: Duration,
    pub lines: Lines,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_established: Duration::from_secs(24 * 3600),
            tcp_closing: Duration::from_secs(10),
            tcp_syn: Duration::from_secs(60),
            udp: Duration::from_secs(120),
            tcp_time_wait: Duration::from_secs(60),
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

/// A backend's `address`: an IPv4 address or a hostname (resolved at load
/// and periodically after).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendAddress {
    Ip(Ipv4Addr),
    Hostname(String),
}

impl FromStr for BackendAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(BackendAddress::Ip(ip));
        }
        if s.contains(':') {
            return Err(format!(
                "{s:?} is not an IPv4 address nor a hostname (IPv6 backends are not supported yet)"
            ));
        }
        match hostname_problem(s) {
            None => Ok(BackendAddress::Hostname(s.to_owned())),
            Some(why) => Err(format!(
                "{s:?} is neither an IPv4 address nor a valid hostname ({why})"
            )),
        }
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddress::Ip(ip) => f.pad(&ip.to_string()),
            BackendAddress::Hostname(name) => f.pad(name),
        }
    }
}

/// Why `name` is not a hostname by RFC 1123 (letters, digits and hyphens
/// in dot-separated labels of 1-63 characters, no label starting or ending
/// with a hyphen, at most 253 characters, an optional final dot), and not
/// a mistyped IPv4 address (an all-numeric last label, RFC 3696 §2).
pub(crate) fn hostname_problem(name: &str) -> Option<String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Some("it is empty".into());
    }
    if bare.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Some("it has an empty label".into());
        }
        if label.len() > 63 {
            return Some(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Some(format!("{c:?} is not allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label {label:?} starts or ends with '-'"));
        }
    }
    let last = bare.rsplit('.').next().unwrap_or(bare);
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Some("it looks like an IPv4 address but is not one".into());
    }
    None
}

/// An inclusive range of ports, `first <= last`, neither 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// The range `first..=last`.
    ///
    /// # Errors
    ///
    /// When a port is 0 or `first > last`.
    pub fn new(first: u16, last: u16) -> Result<PortRange, ParsePortRangeError> {
        if first == 0 || last == 0 {
            return Err(ParsePortRangeError(
                "port 0 is not a port: ports are 1-65535".into(),
            ));
        }
        if first > last {
            return Err(ParsePortRangeError(format!(
                "\"{first}-{last}\" is backwards: the first port must not be above the last \
                 (write \"{last}-{first}\")"
            )));
        }
        Ok(PortRange { first, last })
    }

    /// Number of ports (at least 1).
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// True when some port is in both.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The ports, in order.
    pub fn iter(&self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

/// Why a port range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParsePortRangeError(pub String);

/// `"A-B"`, or `"A"` for a single port.
impl FromStr for PortRange {
    type Err = ParsePortRangeError;

    fn from_str(s: &str) -> Result<PortRange, ParsePortRangeError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(ParsePortRangeError(
                "is empty: write a range like \"30000-32767\"".into(),
            ));
        }
        let port = |part: &str| -> Result<u16, ParsePortRangeError> {
            let part = part.trim();
            match part.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                Ok(n) => Err(ParsePortRangeError(format!(
                    "port {n} is out of range: ports are 1-65535"
                ))),
                Err(_) => Err(ParsePortRangeError(format!(
                    "{s:?} is not a port range: write \"A-B\", e.g. \"30000-32767\""
                ))),
            }
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        PortRange::new(first, last)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            f.pad(&self.first.to_string())
        } else {
            f.pad(&format!("{}-{}", self.first, self.last))
        }
    }
}

/// A word that is not one of a keyword key's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not one of {}", quote_list(.expected))]
pub struct UnknownKeyword {
    pub value: String,
    pub expected: &'static [&'static str],
}

pub(crate) fn quote_list(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| format!("{w:?}")).collect();
    quoted.join(", ")
}

/// An enum spelled as a lowercase word in the file.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every spelling, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The word as written in the file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownKeyword;

            fn from_str(s: &str) -> Result<Self, UnknownKeyword> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err(UnknownKeyword {
                        value: s.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}

keyword_enum! {
    /// How the program is attached.
    #[derive(Default)]
    pub enum XdpMode {
        /// Native, falling back to generic where the driver has no XDP
        /// support.
        #[default]
        Auto = "auto",
        Native = "native",
        Generic = "generic",
    }
}

keyword_enum! {
    /// A service's transport protocol.
    #[derive(Default)]
    pub enum Protocol {
        #[default]
        Tcp = "tcp",
        Udp = "udp",
    }
}

impl Protocol {
    /// The IP protocol number (`IPPROTO_TCP`, `IPPROTO_UDP`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => PROTO_TCP,
            Protocol::Udp => PROTO_UDP,
        }
    }

    /// The protocol of an IP protocol number, if it is one of ours.
    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            PROTO_TCP => Some(Protocol::Tcp),
            PROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

keyword_enum! {
    /// How packets reach backends. (`dsr` is a later mode.)
    #[derive(Default)]
    pub enum ForwardingMode {
        /// DNAT to the backend, SNAT to the load balancer's address.
        #[default]
        Nat = "nat",
    }
}

keyword_enum! {
    /// What happens to established flows of a backend that goes DOWN.
    #[derive(Default)]
    pub enum OnBackendDown {
        /// They continue (HAProxy's and Cilium's default).
        #[default]
        Keep = "keep",
        /// Their next packet is answered with a RST to the client.
        Reset = "reset",
    }
}

keyword_enum! {
    /// Health check kinds.
    #[derive(Default)]
    pub enum CheckKind {
        /// TCP connect.
        #[default]
        Tcp = "tcp",
        /// `GET path`, expect a status.
        Http = "http",
        /// The same over TLS.
        Https = "https",
    }
}

keyword_enum! {
    /// A backend's state before its first checks on a fresh start.
    #[derive(Default)]
    pub enum InitState {
        /// DOWN until `rise` checks pass.
        #[default]
        Down = "down",
        /// UP until `fall` checks fail.
        Up = "up",
    }
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
