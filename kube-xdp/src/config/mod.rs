//! The configuration file (`/etc/kube-xdp/kube-xdp.toml`).
//!
//! [`Config::parse`] reads the TOML with serde (`raw.rs`: every table
//! closed to unknown keys, every value carrying its position), then
//! validates it into the typed [`Config`] (`validate.rs`), collecting every
//! problem it finds rather than the first: each names the file, the line
//! and the key. This module is pure: it asks nothing of the host (no DNS,
//! no interfaces). The checks that need the host, and what the file means
//! on it, are the plan's (`crate::plan`). Defaults live in `schema.rs`.

mod backend_address;
mod ha;
mod keyword;
mod kubernetes;
mod port_range;
mod raw;
mod schema;
mod stats;
mod validate;

pub(crate) use validate::usable_unicast;

#[cfg(test)]
pub(crate) mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

pub use backend_address::BackendAddress;
pub use ha::{DEFAULT_ADVERT_INTERVAL, DEFAULT_SYNC_PORT, HaConfig};
pub use keyword::{
    CheckKind, ForwardingMode, InitState, OnBackendDown, Protocol, SynCookies, UnknownKeyword,
    XdpMode,
};
pub use kubernetes::{
    AddressPool, AddressRange, DEFAULT_LOAD_BALANCER_CLASS, KUBE_PROXY_HEALTHZ_PORT,
    KubernetesConfig, LabelSelector, LabelTerm, MAX_POOL_ADDRESSES,
};
pub use port_range::{ParsePortRangeError, PortRange};
pub use schema::{
    Backend, Config, DEFAULT_FLOW_TABLE_SIZE, DEFAULT_HALF_OPEN_LIMIT, DEFAULT_MAGLEV_TABLE_SIZE,
    DEFAULT_RUN_DIR, DEFAULT_SNAT_PORTS, DaemonConfig, HealthCheck, Lines, MAX_FLOW_TABLE_SIZE,
    MAX_HALF_OPEN_LIMIT, MAX_NAME_LEN, MAX_WEIGHT, MIN_FLOW_TABLE_SIZE, Service, ServicePort,
    SynFlood, Timeouts,
};
pub use stats::{
    DEFAULT_STATS_REFRESH, DEFAULT_STATS_URI, StatsAuth, StatsConfig, check_uri, parse_listen,
};

/// Where `kube-xdp` looks for its configuration by default.
pub const DEFAULT_CONFIG: &str = "/etc/kube-xdp/kube-xdp.toml";
/// The `vip` that `kube-xdp import-haproxy` writes when haproxy.cfg binds
/// every address (`bind *:6443`) and no `--vip` was given: validation
/// refuses it and says what to write instead.
pub const IMPORT_VIP_PLACEHOLDER: &str = "REPLACE-WITH-VIP";
/// Where maps and links are pinned by default.
pub const DEFAULT_PIN_PATH: &str = "/sys/fs/bpf/kube-xdp";

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Syntax, schema, validation or environment errors: every one found,
    /// printed one per line.
    #[error("{}", IssueList(.issues))]
    Invalid { issues: Vec<ConfigIssue> },
}

impl ConfigError {
    /// The problems found (empty for [`ConfigError::Read`]).
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { issues } => issues,
        }
    }
}

struct IssueList<'a>(&'a [ConfigIssue]);

impl fmt::Display for IssueList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

/// How bad an issue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The configuration cannot be used.
    Error,
    /// It can, but probably does not do what was meant.
    Warning,
}

/// One problem, located in the file:
/// `kube-xdp.toml:12: service "kube-apiserver" backend "bettley": weight: must be at most 256 (got 300)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub severity: Severity,
    pub path: PathBuf,
    /// 1-based; `None` when the problem has no place in the file (a
    /// missing `[daemon]`).
    pub line: Option<usize>,
    /// The table, as a person names it: `daemon`, `timeouts`,
    /// `service "kube-apiserver"`, `service "kube-apiserver" health_check`,
    /// `service "kube-apiserver" backend "bettley"` (`service #2` when it
    /// has no usable name). Empty at the top level.
    pub context: String,
    /// The key within the table (`weight`, `snat_addresses`); may be empty.
    pub key: String,
    /// What is wrong and what to do.
    pub message: String,
}

impl ConfigIssue {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        for part in [&self.context, &self.key] {
            if !part.is_empty() {
                write!(f, "{part}: ")?;
            }
        }
        write!(f, "{}", self.message)
    }
}

impl Config {
    /// Parses and validates a configuration held in `text`, read from
    /// `path` (named in errors). Checks nothing on the host: see
    /// `crate::plan::Plan::build`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem found, each with its
    /// line and key. (A syntax error, an unknown key or a value of the
    /// wrong TOML type stops parsing: that one is reported alone.)
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        validate::validate(path, text).map_err(|issues| ConfigError::Invalid { issues })
    }

    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }
}
