//! The plan: a validated [`Config`] plus what the host says about it —
//! interfaces and their indexes, the SNAT addresses actually used, every
//! backend's address (hostnames resolved), the health-check specs. It is
//! everything the daemon applies, so `kube-xdp check-config` prints
//! exactly what `kube-xdp run` programs, and both refuse the same files
//! ([`Plan::build`] is the one judge). Desired state from other sources
//! (the Kubernetes controller, later) meets the file's here.

mod addresses;
mod checks;
mod daemon_checks;
mod desired;
mod ha;
mod summary;
#[cfg(test)]
pub(crate) mod tests;

pub use checks::PlanReport;
pub use desired::{BackendKey, Checker, DesiredBackend, DesiredService};
pub use ha::{HaPlan, SyncPlan};

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use kube_xdp_common::maps::{MAX_SNAT_ADDRESSES, Settings};

use crate::config::SynFlood;

use crate::{
    config::{BackendAddress, Config, ConfigError, ConfigIssue, Service},
    health::CheckSpec,
    host::Host,
};

/// The cookie SYN-ACK's MSS when no interface MTU is known (Ethernet's).
pub const DEFAULT_COOKIE_MSS: u16 = 1460;
/// The window scale a cookie SYN-ACK announces (RFC 7323): Linux's for a
/// default-sized receive buffer. The backend's own scale is learned from
/// its SYN-ACK and its windows rescaled to this one.
pub const COOKIE_WSCALE: u8 = 7;

/// What one half-open flow costs a budget holding `cpus × tcp_syn` of
/// credit (see `kube_xdp_common::maps::HalfOpenBudget`; the datapath's
/// one budget, shared by the CPUs, is `cpus` = 1), so that
/// `half_open_limit` flows fit; at least 1 ns (0 would mean no limit).
pub fn half_open_cost_ns(syn_flood: &SynFlood, tcp_syn: Duration, cpus: u32) -> u64 {
    let limit = u128::from(syn_flood.half_open_limit.max(1));
    let cost = tcp_syn.as_nanos() * u128::from(cpus.max(1)) / limit;
    u64::try_from(cost).unwrap_or(u64::MAX).max(1)
}

/// A service's health check as the checkers run it, without a CA file
/// (the Kubernetes controller's node checks; `[kubernetes.health_check]`
/// takes no `ca_file`).
pub fn check_spec_of(service: &Service) -> CheckSpec {
    checks::check_spec(service, None)
}

/// An interface the program attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedInterface {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// `None` when the host did not say.
    pub mtu: Option<u32>,
}

/// Where the SNAT addresses come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnatSource {
    /// `[daemon] snat_addresses`.
    Configured,
    /// The default: the first IPv4 address of this interface that is not a
    /// VIP.
    Interface(String),
    /// `[ha] snat_address`, which floats with the VIPs.
    Floating,
}

/// A backend with the address it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBackend {
    pub name: String,
    /// As written in the file (an address or a hostname).
    pub address: BackendAddress,
    /// What it stands for now (a hostname: its first IPv4 address).
    pub addr: Ipv4Addr,
    /// `None`: the service port, or the client's for a port range.
    pub port: Option<u16>,
    pub weight: u32,
    /// Where its health check connects.
    pub check_addr: SocketAddr,
}

/// A service with its backends resolved and its check spec built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedService {
    /// The `[[service]]` table (name, VIP, ports, flags).
    pub config: Service,
    pub check: Arc<CheckSpec>,
    pub backends: Vec<PlannedBackend>,
    /// Hostname backends (by name) whose name has not resolved since the
    /// daemon started: not in the datapath, not checked, looked up again
    /// with the others.
    pub unresolved: Vec<String>,
    /// The Kubernetes Service (`namespace/name`) it was made for; `None`
    /// for a service of the file.
    pub origin: Option<String>,
}

impl PlannedBackend {
    /// The backend `b` of `service` at `addr`.
    pub(crate) fn new(service: &Service, b: &crate::config::Backend, addr: Ipv4Addr) -> Self {
        PlannedBackend {
            name: b.name.clone(),
            address: b.address.clone(),
            addr,
            port: b.port,
            weight: b.weight,
            check_addr: SocketAddr::from((addr, service.check_port(b))),
        }
    }
}

impl PlannedService {
    pub fn name(&self) -> &str {
        &self.config.name
    }
}

/// Everything the daemon applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The file, validated.
    pub config: Arc<Config>,
    pub interfaces: Vec<PlannedInterface>,
    /// The SNAT addresses flows are translated to (1..=4).
    pub snat_addresses: Vec<Ipv4Addr>,
    pub snat_source: SnatSource,
    pub services: Vec<PlannedService>,
    /// The services of the cluster's Services of type LoadBalancer, as the
    /// Kubernetes controller last decided them (`crate::k8s`): applied
    /// with the file's, never part of the file's plan (`check-config`
    /// shows none, a reload keeps them).
    pub cluster: Vec<PlannedService>,
    /// One box of a pair: `None` for a single box.
    pub ha: Option<HaPlan>,
    /// What the operator should know (a VIP that is not local, a service
    /// with no usable backend), in file order.
    pub warnings: Vec<ConfigIssue>,
    /// The host's possible CPUs: the per-CPU maps' slots, over which the
    /// datapath shares `half_open_limit`.
    pub cpus: u32,
}

impl Plan {
    /// Checks `config` against the host and resolves what it names.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with every problem found (an interface
    /// that does not exist, a SNAT address that is not local, `snat_ports`
    /// overlapping the local port range, a hostname that does not resolve,
    /// a CA file that is not a regular PEM file of a usable CA), each with
    /// its line and key.
    pub fn build(config: &Config, host: &dyn Host) -> Result<Plan, ConfigError> {
        Plan::build_after(config, host, None)
    }

    /// [`Plan::build`] for a reload: a hostname backend keeps its address
    /// in `previous` while DNS still gives it.
    ///
    /// # Errors
    ///
    /// As [`Plan::build`].
    pub fn build_after(
        config: &Config,
        host: &dyn Host,
        previous: Option<&Plan>,
    ) -> Result<Plan, ConfigError> {
        let (plan, report) = checks::assess(config, host, previous);
        let warnings = report.into_result()?;
        let mut plan = plan.expect("a plan is built whenever there is no error");
        plan.warnings = warnings;
        Ok(plan)
    }

    /// Reads and validates the file at `path`, then builds its plan: what
    /// `check-config` prints and `run` applies.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is invalid, or does not fit the host.
    pub fn load(path: &std::path::Path, host: &dyn Host) -> Result<Plan, ConfigError> {
        Plan::build(&Config::load(path)?, host)
    }

    /// [`Plan::load`] for a reload (see [`Plan::build_after`]).
    ///
    /// # Errors
    ///
    /// As [`Plan::load`].
    pub fn load_after(
        path: &std::path::Path,
        host: &dyn Host,
        previous: Option<&Plan>,
    ) -> Result<Plan, ConfigError> {
        Plan::build_after(&Config::load(path)?, host, previous)
    }

    /// The planned backend `backend` of service `service`.
    pub fn backend(&self, service: &str, backend: &str) -> Option<&PlannedBackend> {
        self.services
            .iter()
            .chain(&self.cluster)
            .find(|s| s.config.name == service)?
            .backends
            .iter()
            .find(|b| b.name == backend)
    }

    /// The datapath's settings map value, but for what the daemon keeps
    /// beyond a plan: the clocks' offsets and the cookie key (see
    /// `daemon::control_loop`).
    pub fn settings(&self) -> Settings {
        let mut snat_addrs = [0u32; MAX_SNAT_ADDRESSES];
        for (slot, a) in snat_addrs.iter_mut().zip(&self.snat_addresses) {
            *slot = crate::datapath::be_addr(*a);
        }
        let d = &self.config.daemon;
        let t = &self.config.timeouts;
        let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
        Settings {
            snat_addrs,
            snat_count: self.snat_addresses.len().min(MAX_SNAT_ADDRESSES) as u32,
            snat_port_min: d.snat_ports.first,
            snat_port_max: d.snat_ports.last,
            tcp_established_ns: ns(t.tcp_established),
            tcp_closing_ns: ns(t.tcp_closing),
            tcp_syn_ns: ns(t.tcp_syn),
            udp_ns: ns(t.udp),
            udp_unanswered_ns: ns(t.udp_unanswered),
            tcp_time_wait_ns: ns(t.tcp_time_wait),
            sync: u32::from(self.ha.as_ref().is_some_and(|ha| ha.sync.is_some())),
            _pad: 0,
            ts_clock_offset_ns: 0,
            syn_cookies: self.config.syn_flood.syn_cookies.number(),
            cookie_mss: self.cookie_mss(),
            cookie_wscale: COOKIE_WSCALE,
            _pad2: 0,
            // One budget shared by the CPUs (a handshake's end may come on
            // another CPU than its SYN): the cost of one flow in `tcp_syn`.
            half_open_cost_ns: half_open_cost_ns(&self.config.syn_flood, t.tcp_syn, 1),
            // Unanswered UDP flows are bounded so that they never fill more
            // than a quarter of the flow table; answered ones are not.
            unanswered_cost_ns: half_open_cost_ns(
                &SynFlood {
                    half_open_limit: (d.flow_table_size / 4).max(1),
                    ..self.config.syn_flood.clone()
                },
                t.udp_unanswered.min(t.udp),
                1,
            ),
            cookie_key: [0; 2],
            cookie_clock_offset_ns: 0,
        }
    }

    /// The MSS a SYN cookie's SYN-ACK announces: what the smallest MTU of
    /// the interfaces carries (MTU − 20 bytes of IPv4 − 20 of TCP header),
    /// 1460 when no MTU is known.
    pub fn cookie_mss(&self) -> u16 {
        self.interfaces
            .iter()
            .filter_map(|i| i.mtu)
            .min()
            .map_or(DEFAULT_COOKIE_MSS, |mtu| {
                // An IPv4 link carries at least 68 bytes (RFC 791).
                u16::try_from(mtu.saturating_sub(40).max(28)).unwrap_or(u16::MAX)
            })
    }

    /// The plan printed for `kube-xdp check-config`, laid out like
    /// `ipvsadm -Ln`.
    pub fn summary(&self) -> String {
        summary::summary(self)
    }

    /// The hostnames the plan's backends name, each once.
    pub fn hostnames(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for s in &self.services {
            let waiting = s.unresolved.iter().filter_map(|n| {
                s.config
                    .backends
                    .iter()
                    .find(|b| &b.name == n)
                    .map(|b| &b.address)
            });
            for address in s.backends.iter().map(|b| &b.address).chain(waiting) {
                if let BackendAddress::Hostname(name) = address
                    && !names.contains(name)
                {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// The same plan with hostname backends looked up again (see
    /// [`Plan::with_answers`]).
    pub fn reresolve(&self, host: &dyn Host) -> (Plan, Vec<String>) {
        let answers: Vec<(String, std::io::Result<Vec<Ipv4Addr>>)> = self
            .hostnames()
            .into_iter()
            .map(|name| {
                let answer = host.resolve(&name);
                (name, answer)
            })
            .collect();
        self.with_answers(&answers, &host.local_addresses())
    }

    /// The same plan with each hostname backend's address taken from DNS's
    /// `answers` (by name), checked against `local` (the host's
    /// addresses): it keeps its address while the answers still hold it,
    /// and moves to an answer only if that answer meets the rules of a
    /// written address. A name that no longer resolves (or has no answer
    /// here: its lookup timed out), or only to addresses it may not use,
    /// keeps its last address. Returns the new plan and, for each backend
    /// that kept its address for want of a usable answer, why.
    pub fn with_answers(
        &self,
        answers: &[(String, std::io::Result<Vec<Ipv4Addr>>)],
        local: &[Ipv4Addr],
    ) -> (Plan, Vec<String>) {
        let mut next = self.clone();
        let mut failed = Vec::new();
        for s in &mut next.services {
            let service = s.config.name.clone();
            for b in &mut s.backends {
                let BackendAddress::Hostname(name) = &b.address else {
                    continue;
                };
                let Some((_, answer)) = answers.iter().find(|(n, _)| n == name) else {
                    continue;
                };
                match addresses::pick_address(&self.config, local, name, answer, Some(b.addr)) {
                    Ok(addr) => {
                        b.addr = addr;
                        b.check_addr.set_ip(addr.into());
                    }
                    Err(why) => failed.push(format!("{service}/{}: {}", b.name, why.message())),
                }
            }
            // Those that never resolved join once they do, in file order.
            let config = s.config.clone();
            let mut joined = false;
            s.unresolved.retain(|backend| {
                let Some(b) = config.backends.iter().find(|b| &b.name == backend) else {
                    return false;
                };
                let BackendAddress::Hostname(name) = &b.address else {
                    return false;
                };
                let Some((_, answer)) = answers.iter().find(|(n, _)| n == name) else {
                    return true;
                };
                match addresses::pick_address(&self.config, local, name, answer, None) {
                    Ok(addr) => {
                        s.backends.push(PlannedBackend::new(&config, b, addr));
                        joined = true;
                        false
                    }
                    Err(why) => {
                        failed.push(format!("{service}/{backend}: {}", why.message()));
                        true
                    }
                }
            });
            if joined {
                let order =
                    |b: &PlannedBackend| config.backends.iter().position(|c| c.name == b.name);
                s.backends.sort_by_key(order);
            }
        }
        (next, failed)
    }

    /// Settings that only a restart applies (the interfaces, the pins, the
    /// table size, the metrics and stats listeners, the pair and its sync
    /// key) differ between the two plans.
    pub fn restart_needed(&self, next: &Plan) -> bool {
        let (a, b) = (&self.config.daemon, &next.config.daemon);
        a.interfaces != b.interfaces
            || a.pin_path != b.pin_path
            || a.flow_table_size != b.flow_table_size
            || a.xdp_mode != b.xdp_mode
            || a.metrics_listen != b.metrics_listen
            || self.config.ha != next.config.ha
            // The same key file may hold a new key.
            || self.ha.as_ref().map(|h| &h.sync) != next.ha.as_ref().map(|h| &h.sync)
            || a.stats.listen != b.stats.listen
            || self.config.kubernetes.as_ref().map(|k| &k.kubeconfig)
                != next.config.kubernetes.as_ref().map(|k| &k.kubeconfig)
    }
}
