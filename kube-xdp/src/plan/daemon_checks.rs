//! The `[daemon]` table against the host: the SNAT ports against the
//! kernel's local port range, the HTTP endpoints' exposure, the CPUs the
//! half-open limit is shared over.

use super::checks::Report;
use crate::config::{Config, Severity};
use crate::host::Host;

/// A warning for each HTTP endpoint bound to every address (0.0.0.0):
/// reachable from every network the host is on, the clients' and the
/// backends' included.
pub(super) fn warn_open_listeners(r: &mut Report<'_>, config: &Config) {
    let daemon = &config.daemon;
    let stats_auth = if daemon.stats.auth.is_some() {
        " (behind stats_auth, sent in clear over HTTP)"
    } else {
        " (no stats_auth: to anyone)"
    };
    for (key, listen, what, extra) in [
        (
            "metrics_listen",
            daemon.metrics_listen,
            "the metrics: service and backend names and addresses, health, traffic",
            "",
        ),
        (
            "stats_listen",
            daemon.stats.listen,
            "the stats page: backends, their addresses and states",
            stats_auth,
        ),
    ] {
        let Some(addr) = listen.filter(|a| a.ip().is_unspecified()) else {
            continue;
        };
        r.push(
            Severity::Warning,
            daemon.lines.of(key),
            "daemon",
            key,
            format!(
                "{addr} listens on every address of this host, so every network it is on can \
                 reach {what}{extra}; bind it to a management address or 127.0.0.1:{port}, or \
                 filter the port",
                port = addr.port()
            ),
        );
    }
}

/// `snat_ports` must stay clear of the host's own ephemeral ports.
pub(super) fn check_local_port_range(r: &mut Report<'_>, config: &Config, host: &dyn Host) {
    let daemon = &config.daemon;
    let Some(local) = host.local_port_range() else {
        return;
    };
    if !local.overlaps(&daemon.snat_ports) {
        return;
    }
    let snat = daemon.snat_ports;
    // The larger free side, from 10000 (as the default) where it fits.
    let below = u32::from(local.first).saturating_sub(1024);
    let above = u32::from(u16::MAX - local.last);
    let suggestion = if below > 0 && below >= above {
        let start = if local.first > 11000 { 10000 } else { 1024 };
        format!("\"{start}-{}\"", local.first - 1)
    } else if above > 0 {
        format!("\"{}-65535\"", local.last + 1)
    } else {
        "a range outside it".to_owned()
    };
    r.push(
        Severity::Error,
        daemon.lines.of("snat_ports"),
        "daemon",
        "snat_ports",
        format!(
            "{}-{} overlaps net.ipv4.ip_local_port_range {}-{}: the host's own connections (the \
             health checks among them) would collide with translated flows; change snat_ports \
             (e.g. {suggestion}) or the sysctl",
            snat.first, snat.last, local.first, local.last
        ),
    );
}

/// The host's possible CPUs (the datapath shares `half_open_limit` over
/// them); an error when the kernel does not say.
pub(super) fn possible_cpus(r: &mut Report<'_>, host: &dyn Host) -> u32 {
    match host.possible_cpus() {
        Ok(n) => n.max(1),
        Err(e) => {
            r.push(
                Severity::Error,
                0,
                "",
                "",
                format!(
                    "cannot count this host's CPUs ({e}): the datapath's per-CPU maps need \
                     /sys/devices/system/cpu/possible"
                ),
            );
            1
        }
    }
}

/// A warning when half-open flows alone could fill half the flow table: a
/// flood would then evict established flows (the table is an LRU).
pub(super) fn warn_half_open_limit(r: &mut Report<'_>, config: &Config) {
    let limit = config.syn_flood.half_open_limit;
    let table = config.daemon.flow_table_size;
    if u64::from(limit) * 2 <= u64::from(table) {
        return;
    }
    r.push(
        Severity::Warning,
        config.syn_flood.lines.of("half_open_limit"),
        "syn_flood",
        "half_open_limit",
        format!(
            "{limit} half-open flows would fill more than half of the flow table \
             (flow_table_size {table}): under a SYN flood they would evict established flows; \
             lower half_open_limit or raise flow_table_size"
        ),
    );
}
