//! `[daemon]`, `[timeouts]` and `[syn_flood]`.

use std::net::{Ipv4Addr, SocketAddr};

use kube_xdp_common::maps::{MAX_INTERFACES, MAX_SNAT_ADDRESSES};
use toml::Spanned;

use super::fields::usable_unicast;
use super::stats::RawStats;
use super::{At, Validator};
use crate::config::PortRange;
use crate::config::raw::{Field, RawDaemon, RawSynFlood, RawTimeouts};
use crate::config::schema::{
    DaemonConfig, Lines, MAX_FLOW_TABLE_SIZE, MAX_HALF_OPEN_LIMIT, MIN_FLOW_TABLE_SIZE, SynFlood,
    Timeouts,
};
use crate::config::{DEFAULT_PIN_PATH, DEFAULT_RUN_DIR};

impl Validator<'_> {
    pub(super) fn daemon(&mut self, raw: Field<RawDaemon>) -> DaemonConfig {
        let mut config = DaemonConfig::default();
        let Some(raw) = raw else {
            self.error(
                None,
                "daemon",
                "",
                "the [daemon] table is missing: add one naming the interfaces to attach to, \
                 e.g. [daemon] interfaces = [\"eth0\"]",
            );
            return config;
        };
        let table_line = self.line(raw.span());
        let raw = raw.into_inner();
        let mut lines = Lines {
            table: table_line,
            ..Lines::default()
        };
        let mut at = At {
            context: "daemon".into(),
            lines: &mut lines,
        };
        config.interfaces = self.interfaces(&mut at, raw.interfaces);
        config.xdp_mode = self.keyword(&mut at, "xdp_mode", raw.xdp_mode, config.xdp_mode);
        config.pin_path = self.abs_path(&mut at, "pin_path", raw.pin_path, DEFAULT_PIN_PATH);
        config.run_dir = self.abs_path(&mut at, "run_dir", raw.run_dir, DEFAULT_RUN_DIR);
        if let Some((text, line)) = self.take(&mut at, "metrics_listen", raw.metrics_listen) {
            match text.parse::<SocketAddr>() {
                Ok(addr) => config.metrics_listen = Some(addr),
                Err(_) => self.error(
                    Some(line),
                    "daemon",
                    "metrics_listen",
                    format!(
                        "{text:?} is not an address:port: write e.g. \"127.0.0.1:9437\", \
                         or remove the key to turn metrics off"
                    ),
                ),
            }
        }
        if let Some(size) = self.int(
            &mut at,
            "flow_table_size",
            raw.flow_table_size,
            (
                i64::from(MIN_FLOW_TABLE_SIZE),
                i64::from(MAX_FLOW_TABLE_SIZE),
            ),
            " (flows held at once, forward and reverse entries each)",
        ) {
            config.flow_table_size = size;
        }
        config.snat_addresses = self.snat_addresses(&mut at, raw.snat_addresses);
        if let Some((text, line)) = self.take(&mut at, "snat_ports", raw.snat_ports) {
            match text.parse::<PortRange>() {
                Ok(range) => config.snat_ports = range,
                Err(e) => self.error(Some(line), "daemon", "snat_ports", e.to_string()),
            }
        }
        config.stats = self.stats(
            &mut at,
            RawStats {
                listen: raw.stats_listen,
                uri: raw.stats_uri,
                refresh: raw.stats_refresh,
                auth: raw.stats_auth,
                hide_version: raw.stats_hide_version,
            },
        );
        config.lines = lines;
        config
    }

    pub(super) fn interfaces(
        &mut self,
        at: &mut At<'_>,
        field: Field<Vec<Spanned<String>>>,
    ) -> Vec<String> {
        let table = at.lines.table;
        let Some((list, line)) = self.take(at, "interfaces", field) else {
            self.error(
                Some(table),
                "daemon",
                "interfaces",
                "is required: name the interfaces to attach to, e.g. interfaces = [\"eth0\"]",
            );
            return Vec::new();
        };
        if list.is_empty() {
            self.error(
                Some(line),
                "daemon",
                "interfaces",
                "is empty: name at least one interface to attach to, e.g. interfaces = [\"eth0\"]",
            );
        }
        if list.len() > MAX_INTERFACES as usize {
            self.error(
                Some(line),
                "daemon",
                "interfaces",
                format!("at most {MAX_INTERFACES} interfaces (got {})", list.len()),
            );
        }
        let mut names: Vec<String> = Vec::new();
        for (i, name) in list.into_iter().enumerate() {
            let line = self.line(name.span());
            at.lines.keys.insert(format!("interfaces[{i}]"), line);
            let name = name.into_inner();
            // The kernel's dev_valid_name().
            let problem = if name.is_empty() || name == "." || name == ".." {
                Some("is not an interface name".to_owned())
            } else if name.len() > 15 {
                Some("is longer than 15 characters, the kernel's limit for interface names".into())
            } else if name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace()) {
                Some("is not an interface name: it may not hold '/', ':' or spaces".into())
            } else if names.contains(&name) {
                Some("is listed twice".into())
            } else {
                None
            };
            if let Some(problem) = problem {
                self.error(
                    Some(line),
                    "daemon",
                    "interfaces",
                    format!("{name:?} {problem}"),
                );
            }
            names.push(name);
        }
        names
    }

    pub(super) fn snat_addresses(
        &mut self,
        at: &mut At<'_>,
        field: Field<Vec<Spanned<String>>>,
    ) -> Vec<Ipv4Addr> {
        let Some((list, line)) = self.take(at, "snat_addresses", field) else {
            return Vec::new();
        };
        if list.len() > MAX_SNAT_ADDRESSES {
            self.error(
                Some(line),
                "daemon",
                "snat_addresses",
                format!(
                    "at most {MAX_SNAT_ADDRESSES} addresses (got {})",
                    list.len()
                ),
            );
        }
        let mut out = Vec::new();
        for (i, text) in list.into_iter().enumerate() {
            let line = self.line(text.span());
            at.lines.keys.insert(format!("snat_addresses[{i}]"), line);
            let text = text.into_inner();
            match text.parse::<Ipv4Addr>() {
                Ok(addr) if !usable_unicast(addr) => self.error(
                    Some(line),
                    "daemon",
                    "snat_addresses",
                    format!("{addr} cannot be a source address: use an address of this host on the interface"),
                ),
                Ok(addr) if out.contains(&addr) => {
                    self.error(Some(line), "daemon", "snat_addresses", format!("{addr} is listed twice"));
                }
                Ok(addr) => out.push(addr),
                Err(_) => self.error(
                    Some(line),
                    "daemon",
                    "snat_addresses",
                    format!("{text:?} is not an IPv4 address"),
                ),
            }
        }
        out
    }

    pub(super) fn timeouts(&mut self, raw: Field<RawTimeouts>) -> Timeouts {
        let mut timeouts = Timeouts::default();
        let Some(raw) = raw else {
            return timeouts;
        };
        let mut lines = Lines {
            table: self.line(raw.span()),
            ..Lines::default()
        };
        let raw = raw.into_inner();
        let mut at = At {
            context: "timeouts".into(),
            lines: &mut lines,
        };
        let t = &mut timeouts;
        t.tcp_established = self.duration(
            &mut at,
            "tcp_established",
            raw.tcp_established,
            t.tcp_established,
            false,
        );
        t.tcp_closing = self.duration(
            &mut at,
            "tcp_closing",
            raw.tcp_closing,
            t.tcp_closing,
            false,
        );
        t.tcp_syn = self.duration(&mut at, "tcp_syn", raw.tcp_syn, t.tcp_syn, false);
        t.udp = self.duration(&mut at, "udp", raw.udp, t.udp, false);
        t.udp_unanswered = self.duration(
            &mut at,
            "udp_unanswered",
            raw.udp_unanswered,
            t.udp_unanswered,
            false,
        );
        // 0 = a closed flow's port may be reused at once.
        t.tcp_time_wait = self.duration(
            &mut at,
            "tcp_time_wait",
            raw.tcp_time_wait,
            t.tcp_time_wait,
            true,
        );
        timeouts.lines = lines;
        timeouts
    }

    pub(super) fn syn_flood(&mut self, raw: Field<RawSynFlood>) -> SynFlood {
        let mut syn_flood = SynFlood::default();
        let Some(raw) = raw else {
            return syn_flood;
        };
        let mut lines = Lines {
            table: self.line(raw.span()),
            ..Lines::default()
        };
        let raw = raw.into_inner();
        let mut at = At {
            context: "syn_flood".into(),
            lines: &mut lines,
        };
        syn_flood.syn_cookies = self.keyword(
            &mut at,
            "syn_cookies",
            raw.syn_cookies,
            syn_flood.syn_cookies,
        );
        if let Some(limit) = self.int(
            &mut at,
            "half_open_limit",
            raw.half_open_limit,
            (1, i64::from(MAX_HALF_OPEN_LIMIT)),
            " (half-open TCP flows the box keeps, across all CPUs, before it answers SYNs with \
             cookies or drops them; there is no \"unlimited\": a flood would fill the flow table)",
        ) {
            syn_flood.half_open_limit = limit;
        }
        syn_flood.lines = lines;
        syn_flood
    }
}
