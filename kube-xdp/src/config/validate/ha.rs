//! `[ha]`: what the file alone can say is wrong with a pair's settings.
//! (Whether the addresses fit the host is the plan's to check.)

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::fields::usable_unicast;
use super::{At, Validator};
use crate::config::raw::{Field, RawHa};
use crate::config::schema::{DaemonConfig, Lines, Service};
use crate::config::{DEFAULT_ADVERT_INTERVAL, DEFAULT_SYNC_PORT, HaConfig};

const MIN_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_millis(40_950);

impl Validator<'_> {
    pub(super) fn ha(
        &mut self,
        raw: Field<RawHa>,
        daemon: &DaemonConfig,
        services: &[Service],
    ) -> Option<HaConfig> {
        let raw = raw?;
        let table_line = self.line(raw.span());
        let raw = raw.into_inner();
        let mut lines = Lines {
            table: table_line,
            ..Lines::default()
        };
        let mut at = At {
            context: "ha".into(),
            lines: &mut lines,
        };
        let interface = match self.take(&mut at, "interface", raw.interface) {
            Some((name, line)) => {
                if !daemon.interfaces.is_empty() && !daemon.interfaces.contains(&name) {
                    self.error(
                        Some(line),
                        "ha",
                        "interface",
                        format!(
                            "{name:?} is not one of [daemon] interfaces ({}): the VIPs live where the program is attached",
                            daemon.interfaces.join(", ")
                        ),
                    );
                }
                name
            }
            None => daemon.interfaces.first().cloned().unwrap_or_default(),
        };
        let vrid = self.int(
            &mut at,
            "virtual_router_id",
            raw.virtual_router_id,
            (1, 255),
            " (the same on both boxes of the pair, and on a keepalived peer)",
        );
        if vrid.is_none() && at.lines.get("virtual_router_id").is_none() {
            self.error(
                Some(table_line),
                "ha",
                "virtual_router_id",
                "is required: the pair's VRRP id, 1-255, the same on both boxes (keepalived's virtual_router_id)",
            );
        }
        let priority = self.int(
            &mut at,
            "priority",
            raw.priority,
            (1, 254),
            " (255 belongs to a router that owns the addresses; kube-xdp never owns its VIPs)",
        );
        let advert_interval = self.duration(
            &mut at,
            "advert_interval",
            raw.advert_interval,
            DEFAULT_ADVERT_INTERVAL,
            false,
        );
        if let Some(line) = at.lines.get("advert_interval")
            && (advert_interval < MIN_INTERVAL
                || advert_interval > MAX_INTERVAL
                || !advert_interval.as_nanos().is_multiple_of(10_000_000))
        {
            self.error(
                Some(line),
                "ha",
                "advert_interval",
                format!(
                    "must be whole centiseconds from 10ms to 40.95s, as VRRPv3 carries it (got {})",
                    humantime::format_duration(advert_interval)
                ),
            );
        }
        let preempt = self
            .take(&mut at, "preempt", raw.preempt)
            .is_none_or(|(p, _)| p);
        let unicast_peers = self.address_list(&mut at, "unicast_peers", raw.unicast_peers);
        let snat_address = match self.take(&mut at, "snat_address", raw.snat_address) {
            Some((text, line)) => match text.parse::<Ipv4Addr>() {
                Ok(addr) if usable_unicast(addr) => Some(addr),
                _ => {
                    self.error(
                        Some(line),
                        "ha",
                        "snat_address",
                        format!("{text:?} is not a unicast IPv4 address"),
                    );
                    None
                }
            },
            None => {
                self.error(
                    Some(table_line),
                    "ha",
                    "snat_address",
                    "is required: the address flows are translated to, floating with the VIPs so \
                     that the backends' replies reach whichever box is master",
                );
                None
            }
        };
        if !daemon.snat_addresses.is_empty() {
            self.error(
                Some(daemon.lines.of("snat_addresses")),
                "daemon",
                "snat_addresses",
                "cannot be set with [ha]: the pair translates flows to [ha] snat_address, which \
                 moves with the VIPs",
            );
        }
        if let Some(addr) = snat_address
            && let Some(s) = services.iter().find(|s| s.vip == addr)
        {
            self.error(
                at.lines.get("snat_address"),
                "ha",
                "snat_address",
                format!(
                    "{addr} is the VIP of service {:?}: use an address of its own",
                    s.name
                ),
            );
        }
        let track_services = self
            .take(&mut at, "track_services", raw.track_services)
            .map(|(names, _)| {
                names
                    .into_iter()
                    .filter_map(|name| {
                        let line = self.line(name.span());
                        let name = name.into_inner();
                        if services.iter().any(|s| s.name == name) {
                            Some(name)
                        } else {
                            self.error(
                                Some(line),
                                "ha",
                                "track_services",
                                format!("there is no service {name:?}"),
                            );
                            None
                        }
                    })
                    .collect()
            });
        let sync_port = self
            .int(
                &mut at,
                "sync_port",
                raw.sync_port,
                (1, 65535),
                " (the UDP port flow sync uses, the same on both boxes)",
            )
            .unwrap_or(DEFAULT_SYNC_PORT);
        let sync_key_file = self
            .take(&mut at, "sync_key_file", raw.sync_key_file)
            .and_then(|(text, line)| {
                if text.starts_with('/') {
                    return Some(PathBuf::from(text));
                }
                self.error(
                    Some(line),
                    "ha",
                    "sync_key_file",
                    format!(
                        "{text:?} must be an absolute path, e.g. \"/etc/kube-xdp/sync.key\" \
                         (omit the key to run the pair without flow sync)"
                    ),
                );
                None
            });
        Some(HaConfig {
            interface,
            virtual_router_id: vrid.unwrap_or(1),
            priority: priority.unwrap_or(100),
            advert_interval,
            preempt,
            unicast_peers,
            snat_address: snat_address.unwrap_or(Ipv4Addr::UNSPECIFIED),
            track_services,
            sync_port,
            sync_key_file,
            lines,
        })
    }

    /// A list of distinct unicast IPv4 addresses.
    fn address_list(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<Vec<Spanned<String>>>,
    ) -> Vec<Ipv4Addr> {
        let Some((list, _)) = self.take(at, key, field) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, text) in list.into_iter().enumerate() {
            let line = self.line(text.span());
            at.lines.keys.insert(format!("{key}[{i}]"), line);
            let text = text.into_inner();
            match text.parse::<Ipv4Addr>() {
                Ok(addr) if !usable_unicast(addr) => self.error(
                    Some(line),
                    &at.context,
                    key,
                    format!("{addr} is not a unicast address"),
                ),
                Ok(addr) if out.contains(&addr) => self.error(
                    Some(line),
                    &at.context,
                    key,
                    format!("{addr} is listed twice"),
                ),
                Ok(addr) => out.push(addr),
                Err(_) => self.error(
                    Some(line),
                    &at.context,
                    key,
                    format!("{text:?} is not an IPv4 address"),
                ),
            }
        }
        out
    }
}
