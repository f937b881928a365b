//! `[ha]`: the load-balancer pair (VRRP version 3, RFC 5798).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use super::schema::Lines;

/// Default `advert_interval`: sub-second takeover (Master_Down ≈ 3.5 ×
/// this), where keepalived's `advert_int 1` takes about 3.6 s.
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_millis(100);

/// Default `sync_port`: the UDP port flow sync sends to and listens on
/// (the metrics port, 9437, plus one).
pub const DEFAULT_SYNC_PORT: u16 = 9438;

/// `[ha]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaConfig {
    /// Where advertisements go and the virtual addresses live; one of
    /// `[daemon] interfaces` (default: the first).
    pub interface: String,
    /// 1-255, the same on both boxes (and on a keepalived peer).
    pub virtual_router_id: u8,
    /// 1-254; the higher is master.
    pub priority: u8,
    /// 10ms..40.95s, in whole centiseconds.
    pub advert_interval: Duration,
    pub preempt: bool,
    /// Empty: multicast to 224.0.0.18.
    pub unicast_peers: Vec<Ipv4Addr>,
    /// The pair's SNAT address: floats with the VIPs.
    pub snat_address: Ipv4Addr,
    /// Services whose lack of a usable backend makes the box resign;
    /// `None`: all.
    pub track_services: Option<Vec<String>>,
    /// The UDP port flow sync uses on both boxes.
    pub sync_port: u16,
    /// The pair's shared flow-sync key (an absolute path); `None`: flow
    /// sync is off. Read, and judged, by the plan.
    pub sync_key_file: Option<PathBuf>,
    pub lines: Lines,
}
