//! From the raw file to a [`Config`]: defaults, types, ranges and the
//! checks across tables, collecting every problem with its line and key.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use kube_xdp_common::maps::{
    MAX_BACKENDS, MAX_INTERFACES, MAX_MAGLEV_TABLE, MAX_SERVICE_PORTS, MAX_SERVICES,
    MAX_SNAT_ADDRESSES,
};
use toml::Spanned;

use super::raw::{
    Field, RawBackend, RawConfig, RawDaemon, RawHealthCheck, RawService, RawTimeouts, line_of,
    locate,
};
use super::schema::{
    Backend, BackendAddress, CheckKind, Config, DEFAULT_MAGLEV_TABLE_SIZE, DaemonConfig,
    ForwardingMode, HealthCheck, Lines, MAX_FLOW_TABLE_SIZE, MAX_NAME_LEN, MAX_WEIGHT,
    MIN_FLOW_TABLE_SIZE, PortRange, Service, ServicePort, Timeouts, UnknownKeyword,
    hostname_problem,
};
use super::short;
use super::{ConfigIssue, Severity};

/// Parses and validates; every problem found on failure.
pub(super) fn validate(path: &Path, text: &str) -> Result<Config, Vec<ConfigIssue>> {
    // Syntax first, so that a syntax error is not blamed on a key.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(vec![syntax_issue(path, text, &e, true)]);
    }
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| vec![syntax_issue(path, text, &e, false)])?;
    let mut v = Validator {
        path,
        text,
        issues: Vec::new(),
    };
    let daemon = v.daemon(raw.daemon);
    let timeouts = v.timeouts(raw.timeouts);
    let mut services = Vec::new();
    let mut facts = Vec::new();
    for (i, service) in raw.services.into_iter().enumerate() {
        let (service, fact) = v.service(i, service);
        services.push(service);
        facts.push(fact);
    }
    v.across_services(&services, &facts);
    v.snat_against_vips(&daemon, &services, &facts);
    if v.issues.is_empty() {
        Ok(Config {
            path: path.to_owned(),
            daemon,
            timeouts,
            services,
        })
    } else {
        // In file order; problems without a line first.
        v.issues.sort_by_key(|issue| issue.line);
        Err(v.issues)
    }
}

/// A syntax error, an unknown key or a wrongly typed value, from `toml`.
fn syntax_issue(path: &Path, text: &str, error: &toml::de::Error, syntax: bool) -> ConfigIssue {
    let offset = error.span().map(|span| span.start);
    let (context, mut key) = offset.map(|o| locate(text, o)).unwrap_or_default();
    let mut message = error.message().trim().replace('\n', ": ");
    if syntax {
        key.clear();
        let column = offset.map_or(0, |o| {
            let o = o.min(text.len());
            o - text[..o].rfind('\n').map_or(0, |nl| nl + 1) + 1
        });
        message = format!("TOML syntax error at column {column}: {message}");
    } else if let Some((unknown, known)) = unknown_field(&message) {
        key = unknown.clone();
        message = match closest(&unknown, &known) {
            Some(near) => format!(
                "unknown key; did you mean {near:?}? This table takes: {}",
                known.join(", ")
            ),
            None => format!("unknown key; this table takes: {}", known.join(", ")),
        };
    } else {
        message = friendly_types(&message);
    }
    ConfigIssue {
        severity: Severity::Error,
        path: path.to_owned(),
        line: offset.map(|o| line_of(text, o)),
        context,
        key,
        message,
    }
}

/// "unknown field `x`, expected one of `a`, `b`" → ("x", ["a", "b"]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let mut quoted = rest.split('`').step_by(2).map(str::to_owned);
    let name = quoted.next()?;
    Some((name, quoted.filter(|s| !s.is_empty()).collect()))
}

/// Serde's type names in the words of a TOML file.
fn friendly_types(message: &str) -> String {
    let mut out = message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    while let Some(at) = out.find("expected struct Raw") {
        let end = out[at..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != ' ')
            .map_or(out.len(), |e| at + e);
        out.replace_range(at..end, "expected a table");
    }
    out
}

/// The known key nearest to a mistyped one, if near enough to be meant.
fn closest(word: &str, known: &[String]) -> Option<String> {
    if word.len() >= 3
        && let Some(k) = known
            .iter()
            .find(|k| k.starts_with(word) || word.starts_with(k.as_str()))
    {
        return Some(k.clone());
    }
    known
        .iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// What the checks across services need of each one: only the parts that
/// parsed.
struct ServiceFacts {
    vip: Option<Ipv4Addr>,
    port: Option<ServicePort>,
    /// `port` or `ports`.
    port_key: &'static str,
    name_ok: bool,
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
    issues: Vec<ConfigIssue>,
}

/// Where a problem is: the table (as a person names it) and its lines.
struct At<'l> {
    context: String,
    lines: &'l mut Lines,
}

impl Validator<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        line_of(self.text, span.start)
    }

    fn error(&mut self, line: Option<usize>, context: &str, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            severity: Severity::Error,
            path: self.path.to_owned(),
            line: line.filter(|l| *l > 0),
            context: context.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Records where `key` is and hands back its value and line.
    fn take<T>(&self, at: &mut At<'_>, key: &str, field: Field<T>) -> Option<(T, usize)> {
        let field = field?;
        let line = self.line(field.span());
        at.lines.keys.insert(key.to_owned(), line);
        Some((field.into_inner(), line))
    }

    /// An integer within `min..=max` (`hint` follows the complaint).
    fn int<T: TryFrom<i64>>(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<i64>,
        (min, max): (i64, i64),
        hint: &str,
    ) -> Option<T> {
        let (value, line) = self.take(at, key, field)?;
        let complaint = if value < min {
            format!("must be at least {min} (got {value})")
        } else if value > max {
            format!("must be at most {max} (got {value})")
        } else {
            return T::try_from(value).ok();
        };
        self.error(Some(line), &at.context, key, format!("{complaint}{hint}"));
        None
    }

    fn keyword<T: FromStr<Err = UnknownKeyword>>(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<String>,
        default: T,
    ) -> T {
        let Some((text, line)) = self.take(at, key, field) else {
            return default;
        };
        match text.parse() {
            Ok(value) => value,
            Err(e) => {
                self.error(Some(line), &at.context, key, e.to_string());
                default
            }
        }
    }

    /// A duration such as "2s", "500ms", "24h" (humantime's syntax, as
    /// `humantime-serde` reads it).
    fn duration(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<String>,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some((text, line)) = self.take(at, key, field) else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.error(Some(line), &at.context, key, "must be longer than 0");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(
                    Some(line),
                    &at.context,
                    key,
                    format!("{text:?} is not a duration ({e}): write e.g. \"500ms\", \"2s\", \"10m\", \"24h\""),
                );
                default
            }
        }
    }

    /// An absolute path.
    fn abs_path(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<String>,
        default: &str,
    ) -> PathBuf {
        let Some((text, line)) = self.take(at, key, field) else {
            return PathBuf::from(default);
        };
        if !text.starts_with('/') {
            self.error(
                Some(line),
                &at.context,
                key,
                format!("{text:?} must be an absolute path (the default is {default:?})"),
            );
            return PathBuf::from(default);
        }
        PathBuf::from(text)
    }

    fn daemon(&mut self, raw: Field<RawDaemon>) -> DaemonConfig {
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
        config.pin_path = self.abs_path(&mut at, "pin_path", raw.pin_path, super::DEFAULT_PIN_PATH);
        config.run_dir = self.abs_path(&mut at, "run_dir", raw.run_dir, super::DEFAULT_RUN_DIR);
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
        config.lines = lines;
        config
    }

    fn interfaces(&mut self, at: &mut At<'_>, field: Field<Vec<Spanned<String>>>) -> Vec<String> {
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

    fn snat_addresses(
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

    fn timeouts(&mut self, raw: Field<RawTimeouts>) -> Timeouts {
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

    /// A service or backend name: 1-63 letters, digits, '.', '_', '-'
    /// (it names things in logs, metrics and `kube-xdp backends`).
    fn name(
        &mut self,
        at: &mut At<'_>,
        field: Field<String>,
        what: &str,
        example: &str,
    ) -> Option<String> {
        let table = at.lines.table;
        let Some((name, line)) = self.take(at, "name", field) else {
            self.error(
                Some(table),
                &at.context,
                "name",
                format!("is required: give the {what} a name, e.g. name = {example:?}"),
            );
            return None;
        };
        let problem = if name.is_empty() {
            Some("is empty".to_owned())
        } else if name.len() > MAX_NAME_LEN {
            Some(format!("is longer than {MAX_NAME_LEN} characters"))
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            Some("may only hold letters, digits, '.', '_' and '-'".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.error(
                    Some(line),
                    &at.context,
                    "name",
                    format!("{name:?} {problem} (it names the {what} in logs and metrics)"),
                );
                None
            }
            None => Some(name),
        }
    }

    fn service(&mut self, index: usize, raw: Spanned<RawService>) -> (Service, ServiceFacts) {
        let mut lines = Lines {
            table: self.line(raw.span()),
            ..Lines::default()
        };
        let raw = raw.into_inner();
        let mut at = At {
            context: format!("service #{}", index + 1),
            lines: &mut lines,
        };
        let name = self.name(&mut at, raw.name, "service", "kube-apiserver");
        if let Some(name) = &name {
            at.context = format!("service {name:?}");
        }
        let ctx = at.context.clone();
        let table = at.lines.table;

        let vip = match self.take(&mut at, "vip", raw.vip) {
            None => {
                self.error(Some(table), &ctx, "vip", "is required: the virtual IPv4 address clients connect to, e.g. vip = \"10.4.0.10\"");
                None
            }
            Some((text, line)) => match text.parse::<Ipv4Addr>() {
                Ok(vip) if usable_unicast(vip) => Some(vip),
                Ok(vip) => {
                    self.error(Some(line), &ctx, "vip", format!("{vip} cannot be a VIP: use a unicast address on the interface's segment"));
                    None
                }
                Err(_) => {
                    self.error(
                        Some(line),
                        &ctx,
                        "vip",
                        format!("{text:?} is not an IPv4 address"),
                    );
                    None
                }
            },
        };

        let single = self.int::<u16>(&mut at, "port", raw.port, (1, 65535), "");
        let ports_line = raw.ports.as_ref().map(|p| self.line(p.span()));
        let had_port = at.lines.get("port").is_some();
        let (port, port_key) = match (had_port, self.take(&mut at, "ports", raw.ports)) {
            (true, Some(_)) => {
                self.error(
                    ports_line,
                    &ctx,
                    "ports",
                    "set either port (one port) or ports (a range), not both",
                );
                (None, "ports")
            }
            (false, None) => {
                self.error(
                    Some(table),
                    &ctx,
                    "port",
                    "is required: set port = 6443, or ports = \"30000-32767\" for a range",
                );
                (None, "port")
            }
            (true, None) => (single.map(ServicePort::Single), "port"),
            (false, Some((text, line))) => match text.parse::<PortRange>() {
                Ok(range) => (Some(ServicePort::Range(range)), "ports"),
                Err(e) => {
                    self.error(Some(line), &ctx, "ports", e.to_string());
                    (None, "ports")
                }
            },
        };

        let protocol = self.keyword(&mut at, "protocol", raw.protocol, Default::default());
        let mode = match raw.mode.as_ref().map(|m| m.get_ref().as_str()) {
            Some("dsr") => {
                let (_, line) = self.take(&mut at, "mode", raw.mode).expect("mode is set");
                self.error(
                    Some(line),
                    &ctx,
                    "mode",
                    "\"dsr\" is not supported yet: only \"nat\" is implemented; remove mode or set mode = \"nat\"",
                );
                ForwardingMode::Nat
            }
            _ => self.keyword(&mut at, "mode", raw.mode, ForwardingMode::Nat),
        };
        let on_backend_down = self.keyword(
            &mut at,
            "on_backend_down",
            raw.on_backend_down,
            Default::default(),
        );
        let drain_timeout = self.duration(
            &mut at,
            "drain_timeout",
            raw.drain_timeout,
            Duration::from_secs(3600),
            true,
        );
        let health_check = self.health_check(&ctx, table, raw.health_check, port);
        let backends = self.backends(&ctx, raw.backends, port);

        let maglev_table_size = match self.take(&mut at, "maglev_table_size", raw.maglev_table_size)
        {
            None => DEFAULT_MAGLEV_TABLE_SIZE,
            Some((size, line)) => {
                let max = i64::from(MAX_MAGLEV_TABLE);
                let problem = if size > max {
                    Some(format!("must be at most {max} (got {size})"))
                } else if size < 2 || !crate::maglev::is_prime(size as u32) {
                    let hint = match prime_at_most(size.clamp(2, max) as u32) {
                        Some(p) if size > 2 => format!("; {p} is the nearest prime below"),
                        _ => String::new(),
                    };
                    Some(format!(
                        "must be a prime number (got {size}){hint}; the default is {DEFAULT_MAGLEV_TABLE_SIZE}"
                    ))
                } else if (size as usize) < backends.len() {
                    Some(format!(
                        "must be at least the number of backends, {} (got {size}); the default {DEFAULT_MAGLEV_TABLE_SIZE} fits any pool",
                        backends.len()
                    ))
                } else {
                    None
                };
                match problem {
                    Some(problem) => {
                        self.error(Some(line), &ctx, "maglev_table_size", problem);
                        DEFAULT_MAGLEV_TABLE_SIZE
                    }
                    None => size as u32,
                }
            }
        };

        let service = Service {
            name: name.clone().unwrap_or_default(),
            vip: vip.unwrap_or(Ipv4Addr::UNSPECIFIED),
            port: port.unwrap_or(ServicePort::Single(0)),
            protocol,
            mode,
            maglev_table_size,
            on_backend_down,
            drain_timeout,
            health_check,
            backends,
            lines,
        };
        let facts = ServiceFacts {
            vip,
            port,
            port_key,
            name_ok: name.is_some(),
        };
        (service, facts)
    }

    fn health_check(
        &mut self,
        service_ctx: &str,
        service_line: usize,
        raw: Field<RawHealthCheck>,
        port: Option<ServicePort>,
    ) -> HealthCheck {
        let mut check = HealthCheck::default();
        let is_range = port.is_some_and(ServicePort::is_range);
        let Some(raw) = raw else {
            check.lines.table = service_line;
            if is_range {
                self.error(
                    Some(service_line),
                    service_ctx,
                    "health_check",
                    "a port-range service has no single port to check: add [service.health_check] \
                     with port = … (kube-proxy's /healthz is on 10256)",
                );
            }
            return check;
        };
        let mut lines = Lines {
            table: self.line(raw.span()),
            ..Lines::default()
        };
        let raw = raw.into_inner();
        let ctx = format!("{service_ctx} health_check");
        let mut at = At {
            context: ctx.clone(),
            lines: &mut lines,
        };
        check.kind = self.keyword(&mut at, "kind", raw.kind, check.kind);
        let kind = check.kind;

        // Keys that only some kinds use: an error rather than a warning,
        // since whoever wrote them meant a check the kind does not do (a
        // TCP connect never sees that the apiserver is hung).
        let only_for = |v: &mut Self, key: &str, line: Option<usize>, kinds: &[CheckKind]| {
            if let Some(line) = line
                && !kinds.contains(&kind)
            {
                let wanted: Vec<String> = kinds
                    .iter()
                    .map(|k| format!("kind = {:?}", k.as_str()))
                    .collect();
                v.error(
                    Some(line),
                    &ctx,
                    key,
                    format!(
                        "is only used by {}, and this check is kind = {:?}: set the kind or remove {key}",
                        wanted.join(" or "),
                        kind.as_str()
                    ),
                );
            }
        };
        let http = [CheckKind::Http, CheckKind::Https];
        let https = [CheckKind::Https];

        if let Some((path, line)) = self.take(&mut at, "path", raw.path) {
            only_for(self, "path", Some(line), &http);
            if !path.starts_with('/')
                || path.contains(|c: char| c.is_whitespace() || c.is_control())
            {
                self.error(
                    Some(line),
                    &ctx,
                    "path",
                    format!("{path:?} is not a request path: write e.g. \"/readyz\""),
                );
            } else {
                check.path = path;
            }
        }
        let status_line = raw.expect_status.as_ref().map(|s| self.line(s.span()));
        only_for(self, "expect_status", status_line, &http);
        if let Some(status) = self.int(
            &mut at,
            "expect_status",
            raw.expect_status,
            (100, 599),
            " (an HTTP status)",
        ) {
            check.expect_status = status;
        }
        let tls_verify = self.take(&mut at, "tls_verify", raw.tls_verify);
        only_for(self, "tls_verify", tls_verify.as_ref().map(|t| t.1), &https);
        if let Some((verify, _)) = tls_verify {
            check.tls_verify = verify;
        }
        if let Some((file, line)) = self.take(&mut at, "ca_file", raw.ca_file) {
            only_for(self, "ca_file", Some(line), &https);
            if file.is_empty() {
                self.error(
                    Some(line),
                    &ctx,
                    "ca_file",
                    "is empty: name a PEM file, e.g. \"/etc/kubernetes/pki/ca.crt\"",
                );
            } else if kind == CheckKind::Https && !check.tls_verify {
                self.error(
                    Some(line),
                    &ctx,
                    "ca_file",
                    "is not used with tls_verify = false: remove one of the two",
                );
            } else {
                check.ca_file = Some(PathBuf::from(file));
            }
        }
        if let Some((name, line)) = self.take(&mut at, "server_name", raw.server_name) {
            only_for(self, "server_name", Some(line), &https);
            match hostname_problem(&name) {
                Some(why) => self.error(
                    Some(line),
                    &ctx,
                    "server_name",
                    format!(
                        "{name:?} is not a DNS name ({why}): the TLS SNI name, e.g. \"kubernetes\""
                    ),
                ),
                None => check.server_name = Some(name),
            }
        }
        check.interval = self.duration(&mut at, "interval", raw.interval, check.interval, false);
        check.timeout = self.duration(&mut at, "timeout", raw.timeout, check.timeout, false);
        if check.timeout >= check.interval {
            // Point at whichever of the two the file sets, timeout first.
            let key = if at.lines.get("timeout").is_some() || at.lines.get("interval").is_none() {
                "timeout"
            } else {
                "interval"
            };
            self.error(
                Some(at.lines.of(key)),
                &ctx,
                key,
                if key == "timeout" {
                    format!(
                        "{} must be shorter than interval ({}): a check must end before the next one starts",
                        short(check.timeout),
                        short(check.interval)
                    )
                } else {
                    format!(
                        "{} must be longer than timeout ({}): a check must end before the next one starts",
                        short(check.interval),
                        short(check.timeout)
                    )
                },
            );
        }
        if let Some(fall) = self.int(
            &mut at,
            "fall",
            raw.fall,
            (1, i64::from(u32::MAX)),
            ": the number of consecutive failed checks that mark a backend DOWN",
        ) {
            check.fall = fall;
        }
        if let Some(rise) = self.int(
            &mut at,
            "rise",
            raw.rise,
            (1, i64::from(u32::MAX)),
            ": the number of consecutive passed checks that mark a backend UP",
        ) {
            check.rise = rise;
        }
        check.init_state = self.keyword(&mut at, "init_state", raw.init_state, check.init_state);
        check.port = self.int(&mut at, "port", raw.port, (1, 65535), "");
        if is_range && check.port.is_none() {
            self.error(
                Some(at.lines.table),
                &ctx,
                "port",
                "is required for a port-range service, which has no single port to check: \
                 e.g. port = 10256 (kube-proxy's /healthz)",
            );
        }
        check.lines = lines;
        check
    }

    fn backends(
        &mut self,
        service_ctx: &str,
        raw: Vec<Spanned<RawBackend>>,
        port: Option<ServicePort>,
    ) -> Vec<Backend> {
        let mut out: Vec<Backend> = Vec::new();
        for (i, raw) in raw.into_iter().enumerate() {
            let mut lines = Lines {
                table: self.line(raw.span()),
                ..Lines::default()
            };
            let raw = raw.into_inner();
            let mut at = At {
                context: format!("{service_ctx} backend #{}", i + 1),
                lines: &mut lines,
            };
            let name = self.name(&mut at, raw.name, "backend", "bettley");
            if let Some(name) = &name {
                at.context = format!("{service_ctx} backend {name:?}");
            }
            let ctx = at.context.clone();
            let table = at.lines.table;
            if let Some(name) = &name
                && let Some(other) = out.iter().find(|b| &b.name == name)
            {
                self.error(
                    at.lines.get("name"),
                    &ctx,
                    "name",
                    format!(
                        "{name:?} is already the name of the backend at line {}: backend names must be unique within a service",
                        other.lines.table
                    ),
                );
            }
            let address = match self.take(&mut at, "address", raw.address) {
                None => {
                    self.error(Some(table), &ctx, "address", "is required: the backend's IPv4 address or hostname, e.g. address = \"10.4.0.11\"");
                    None
                }
                Some((text, line)) => match text.parse::<BackendAddress>() {
                    Ok(BackendAddress::Ip(ip)) if !usable_unicast(ip) => {
                        self.error(
                            Some(line),
                            &ctx,
                            "address",
                            format!("{ip} cannot be a backend address"),
                        );
                        None
                    }
                    Ok(address) => Some(address),
                    Err(e) => {
                        self.error(Some(line), &ctx, "address", e);
                        None
                    }
                },
            };
            let backend_port = match port {
                Some(ServicePort::Range(range)) => {
                    if let Some((_, line)) = self.take(&mut at, "port", raw.port) {
                        self.error(
                            Some(line),
                            &ctx,
                            "port",
                            format!(
                                "must not be set for a port-range service (ports = \"{}-{}\"): \
                                 its backends keep the client's destination port; remove port",
                                range.first, range.last
                            ),
                        );
                    }
                    None
                }
                Some(ServicePort::Single(service_port)) => Some(
                    self.int(&mut at, "port", raw.port, (1, 65535), "")
                        .unwrap_or(service_port),
                ),
                None => self.int(&mut at, "port", raw.port, (1, 65535), ""),
            };
            let weight = self
                .int(
                    &mut at,
                    "weight",
                    raw.weight,
                    (0, i64::from(MAX_WEIGHT)),
                    "; 0 drains the backend",
                )
                .unwrap_or(1);
            if let Some(address) = &address
                && let Some(other) = out
                    .iter()
                    .find(|b| &b.address == address && b.port == backend_port)
            {
                let target = match backend_port {
                    Some(p) => format!("{address}:{p}"),
                    None => address.to_string(),
                };
                self.error(
                    at.lines.get("address"),
                    &ctx,
                    "address",
                    format!(
                        "{target} is already backend {:?} (line {}): list each backend once and use weight for a larger share",
                        other.name, other.lines.table
                    ),
                );
            }
            out.push(Backend {
                name: name.unwrap_or_default(),
                address: address.unwrap_or(BackendAddress::Ip(Ipv4Addr::UNSPECIFIED)),
                port: backend_port,
                weight,
                lines,
            });
        }
        out
    }

    /// Unique names; no two services on one (vip, port, protocol); the
    /// datapath's capacities.
    fn across_services(&mut self, services: &[Service], facts: &[ServiceFacts]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut total_ports: u32 = 0;
        let mut total_backends: usize = 0;
        for (j, (service, fact)) in services.iter().zip(facts).enumerate() {
            let ctx = format!("service {:?}", service.name);
            if fact.name_ok {
                if let Some(line) = names.get(service.name.as_str()) {
                    self.error(
                        service.lines.get("name"),
                        &ctx,
                        "name",
                        format!("{:?} is already the name of the service at line {line}: service names must be unique", service.name),
                    );
                } else {
                    names.insert(&service.name, service.lines.table);
                }
            }
            if j == MAX_SERVICES as usize {
                self.error(
                    Some(service.lines.table),
                    &ctx,
                    "",
                    format!("too many services: the datapath holds at most {MAX_SERVICES}"),
                );
            }
            if let Some(port) = fact.port {
                let before = total_ports;
                total_ports += port.range().len();
                if before <= MAX_SERVICE_PORTS && total_ports > MAX_SERVICE_PORTS {
                    self.error(
                        service.lines.get(fact.port_key),
                        &ctx,
                        fact.port_key,
                        format!(
                            "too many ports: with this service the file has {total_ports} (vip, port) entries; \
                             the datapath holds at most {MAX_SERVICE_PORTS}"
                        ),
                    );
                }
            }
            let before = total_backends;
            total_backends += service.backends.len();
            if before <= MAX_BACKENDS as usize && total_backends > MAX_BACKENDS as usize {
                self.error(
                    Some(service.lines.table),
                    &ctx,
                    "backend",
                    format!("too many backends: the datapath holds at most {MAX_BACKENDS} over all services"),
                );
            }
            let (Some(vip), Some(port)) = (fact.vip, fact.port) else {
                continue;
            };
            for (other, other_fact) in services[..j].iter().zip(&facts[..j]) {
                let (Some(other_vip), Some(other_port)) = (other_fact.vip, other_fact.port) else {
                    continue;
                };
                if other_vip != vip
                    || other.protocol != service.protocol
                    || !other_port.range().overlaps(&port.range())
                {
                    continue;
                }
                let what = if port == other_port {
                    format!(
                        "{vip}:{port}/{} is already service {:?}",
                        service.protocol, other.name
                    )
                } else {
                    format!(
                        "{vip}:{port}/{} overlaps {vip}:{other_port}/{} of service {:?}",
                        service.protocol, other.protocol, other.name
                    )
                };
                self.error(
                    service
                        .lines
                        .get(fact.port_key)
                        .or(Some(service.lines.table)),
                    &ctx,
                    fact.port_key,
                    format!(
                        "{what} (line {}): a (vip, port, protocol) belongs to one service only",
                        other.lines.table
                    ),
                );
            }
        }
    }

    /// SNAT must use the load balancer's own address, never a VIP.
    fn snat_against_vips(
        &mut self,
        daemon: &DaemonConfig,
        services: &[Service],
        facts: &[ServiceFacts],
    ) {
        for (i, addr) in daemon.snat_addresses.iter().enumerate() {
            let owner = services
                .iter()
                .zip(facts)
                .find(|(_, fact)| fact.vip == Some(*addr));
            if let Some((service, _)) = owner {
                self.error(
                    Some(daemon.lines.of(&format!("snat_addresses[{i}]"))),
                    "daemon",
                    "snat_addresses",
                    format!(
                        "{addr} is the VIP of service {:?} (line {}): SNAT must use an address of the \
                         load balancer itself, never a VIP",
                        service.name, service.lines.table
                    ),
                );
            }
        }
    }
}

/// Not 0.0.0.0, loopback, multicast, broadcast or 240/4: an address a
/// packet on the wire can be from or to.
fn usable_unicast(addr: Ipv4Addr) -> bool {
    !(addr.is_unspecified()
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_broadcast()
        || addr.octets()[0] >= 240)
}

/// The largest prime ≤ n.
fn prime_at_most(n: u32) -> Option<u32> {
    (2..=n).rev().find(|p| crate::maglev::is_prime(*p))
}
