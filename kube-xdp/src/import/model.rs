//! What the translation produces before it is written as TOML: the
//! values of each table, and the comments to write above them.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::config::{CheckKind, PortRange};

/// How a piece of haproxy.cfg fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteKind {
    /// Carried over with the same meaning.
    Translated,
    /// Carried over with a different but close meaning, or a choice made
    /// where haproxy.cfg says nothing.
    Approximated,
    /// Not carried over.
    LeftOut,
}

/// One line of the summary: what happened to the haproxy.cfg line
/// `line` (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    pub line: usize,
    pub text: String,
}

/// `[daemon]`'s stats page (issue #20 part 2's keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatsPage {
    pub listen: String,
    pub uri: Option<String>,
    pub refresh: Option<Duration>,
    /// `user:$6$…` (the password hashed).
    pub auth: Option<String>,
    pub hide_version: bool,
    pub comments: Vec<String>,
}

/// The whole translated file.
#[derive(Debug, Clone, Default)]
pub struct Document {
    /// The input's file name (no directory), named in the header.
    pub source: String,
    pub header: Vec<String>,
    pub interfaces: Vec<String>,
    pub daemon_comments: Vec<String>,
    pub metrics_listen: Option<String>,
    pub stats: Option<StatsPage>,
    pub timeout_comments: Vec<String>,
    /// HAProxy's longest idle timeout, written as a commented-out
    /// `tcp_established`.
    pub suggested_tcp_established: Option<(String, Duration)>,
    pub services: Vec<ServiceOut>,
}

/// One `[[service]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOut {
    pub name: String,
    /// `None`: unknown (`bind *:PORT` and no `--vip`): a placeholder that
    /// `check-config` refuses is written.
    pub vip: Option<Ipv4Addr>,
    pub vip_comment: Option<String>,
    pub ports: PortRange,
    pub on_backend_down_reset: bool,
    pub comments: Vec<String>,
    pub check: CheckOut,
    pub backends: Vec<BackendOut>,
}

/// `[service.health_check]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOut {
    pub kind: CheckKind,
    pub path: Option<String>,
    pub expect_status: Option<u16>,
    pub tls_verify: Option<bool>,
    pub ca_file: Option<String>,
    pub server_name: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub fall: u32,
    pub rise: u32,
    pub port: Option<u16>,
    pub comments: Vec<String>,
}

/// One `[[service.backend]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendOut {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub weight: Option<u32>,
    pub comments: Vec<String>,
    /// Written as a comment (a `backup` server: kube-xdp has no backup
    /// tier).
    pub commented_out: bool,
}
