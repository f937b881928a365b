//! A service's `[service.health_check]`.

use std::path::PathBuf;

use super::{At, Validator};
use crate::config::CheckKind;
use crate::config::backend_address::hostname_problem;
use crate::config::raw::{Field, RawHealthCheck};
use crate::config::schema::{HealthCheck, Lines, ServicePort};
use crate::human;

/// The shortest health-check interval.
const MIN_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

impl Validator<'_> {
    pub(super) fn health_check(
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
        // A check every few nanoseconds would spin the daemon.
        if let Some(line) = at.lines.get("interval")
            && check.interval < MIN_CHECK_INTERVAL
        {
            self.error(
                Some(line),
                &ctx,
                "interval",
                format!(
                    "must be at least 10ms (got {})",
                    humantime::format_duration(check.interval)
                ),
            );
            check.interval = MIN_CHECK_INTERVAL * 2;
        }
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
                        human::duration(check.timeout),
                        human::duration(check.interval)
                    )
                } else {
                    format!(
                        "{} must be longer than timeout ({}): a check must end before the next one starts",
                        human::duration(check.interval),
                        human::duration(check.timeout)
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
}
