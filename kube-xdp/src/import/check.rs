//! A backend's health check: HAProxy's check type (`option httpchk`,
//! `option tcp-check`, `option ssl-hello-chk`, plain `check`) and the
//! servers' `inter`, `fall`, `rise`, `port`, `check-ssl`, `verify`, as the
//! one `[service.health_check]` kube-xdp has per service.

use std::time::Duration;

use super::addr;
use super::model::{CheckOut, NoteKind};
use super::sections::Proxy;
use super::server::{Server, ServerOptions};
use super::translate::Translator;
use crate::config::{CheckKind, PortRange};

/// HAProxy's defaults for `inter`, `fall`, `rise` (the same as
/// kube-xdp's).
const INTER: Duration = Duration::from_secs(2);
const FALL: u32 = 3;
const RISE: u32 = 2;
/// kube-xdp's default check timeout.
const TIMEOUT: Duration = Duration::from_secs(1);

impl Translator<'_> {
    pub fn check(&mut self, proxy: &Proxy, servers: &[Server], ports: PortRange) -> CheckOut {
        let settings = &proxy.settings;
        let mut comments = Vec::new();
        let checked: Vec<&Server> = servers.iter().filter(|s| s.options.check).collect();
        let model: ServerOptions = match checked.first().copied().or(servers.first()) {
            Some(s) => s.options.clone(),
            None => ServerOptions::default(),
        };
        if checked.is_empty() && !servers.is_empty() {
            comments.push(self.note(
                NoteKind::Approximated,
                proxy.header.number,
                format!(
                    "{}: no server has `check`, but kube-xdp checks every backend (an unchecked backend that died would keep its share of new flows)",
                    proxy.label()
                ),
            ));
        }
        let differs = checked.iter().any(|s| {
            let o = &s.options;
            (
                o.inter,
                o.fall,
                o.rise,
                o.check_port,
                o.check_ssl,
                &o.verify,
            ) != (
                model.inter,
                model.fall,
                model.rise,
                model.check_port,
                model.check_ssl,
                &model.verify,
            )
        });
        if differs {
            comments.push(self.note(
                NoteKind::Approximated,
                proxy.header.number,
                format!(
                    "{}: the servers' check options differ; kube-xdp has one check per service, taken from server {} (line {})",
                    proxy.label(),
                    checked[0].name,
                    checked[0].line.number
                ),
            ));
        }
        let mut check = CheckOut {
            kind: CheckKind::Tcp,
            path: None,
            expect_status: None,
            tls_verify: None,
            ca_file: None,
            server_name: None,
            interval: model.inter.unwrap_or(INTER),
            timeout: TIMEOUT,
            fall: model.fall.unwrap_or(FALL).max(1),
            rise: model.rise.unwrap_or(RISE).max(1),
            port: model.check_port,
            comments: Vec::new(),
        };
        for old in &settings.overridden_checks {
            if let Some(new) = &settings.check_type {
                comments.push(self.note(
                    NoteKind::LeftOut,
                    old.number,
                    format!(
                        "`{}` (line {}) is replaced by `{}` (line {}): HAProxy keeps the last check type",
                        old.text(),
                        old.number,
                        new.text(),
                        new.number
                    ),
                ));
            }
        }
        match settings.check_type.as_ref().map(|l| (l, l.word(1))) {
            None => {}
            Some((_, "tcp-check")) => {
                for rule in &settings.tcp_check_rules {
                    let port = rule.words.iter().position(|w| w == "port");
                    match (
                        rule.word(1),
                        port.and_then(|i| rule.word(i + 1).parse().ok()),
                    ) {
                        ("connect", Some(p)) if check.port.is_none() => check.port = Some(p),
                        _ => comments.push(self.note(
                            NoteKind::LeftOut,
                            rule.number,
                            format!(
                                "`{}` (line {}): kube-xdp's tcp check only connects",
                                rule.text(),
                                rule.number
                            ),
                        )),
                    }
                }
            }
            Some((line, "httpchk")) => self.http(proxy, line, &model, &mut check, &mut comments),
            Some((line, other)) => {
                let what = if other == "ssl-hello-chk" {
                    "a TLS ClientHello check, which kube-xdp has not"
                } else {
                    "a protocol check kube-xdp has not"
                };
                comments.push(self.note(
                    NoteKind::Approximated,
                    line.number,
                    format!(
                        "`{}` (line {}) is {what}: approximated by a TCP connect check; for an API server, kind = \"https\" with path = \"/readyz\" and tls_verify = false checks far more",
                        line.text(),
                        line.number
                    ),
                ));
            }
        }
        if check.kind == CheckKind::Tcp && model.check_ssl && settings.check_type.is_none() {
            comments.push(self.note(
                NoteKind::Approximated,
                proxy.header.number,
                format!(
                    "{}: `check-ssl` without `option httpchk` checks a TLS handshake: approximated by a TCP connect check",
                    proxy.label()
                ),
            ));
        }
        self.check_timeout(proxy, &mut check, &mut comments);
        if ports.first != ports.last && check.port.is_none() {
            check.port = Some(ports.first);
            comments.push(self.note(
                NoteKind::Approximated,
                proxy.header.number,
                format!(
                    "{}: no check port (`check port N`) for a port range: checking port {} (kube-proxy's /healthz is on 10256)",
                    proxy.label(),
                    ports.first
                ),
            ));
        }
        check.comments = comments;
        check
    }

    /// `option httpchk [METHOD] [URI]`, `http-check send`, `http-check
    /// expect status N`, and TLS from the servers' `check-ssl`.
    fn http(
        &mut self,
        proxy: &Proxy,
        line: &super::lex::Line,
        model: &ServerOptions,
        check: &mut CheckOut,
        comments: &mut Vec<String>,
    ) {
        let settings = &proxy.settings;
        let n = line.number;
        // `option httpchk`, `option httpchk URI`, `option httpchk METH URI [VER]`.
        let (mut method, mut uri) = match line.words.len() {
            2 => ("OPTIONS".to_owned(), "/".to_owned()),
            3 => ("OPTIONS".to_owned(), line.word(2).to_owned()),
            _ => (line.word(2).to_owned(), line.word(3).to_owned()),
        };
        if let Some(send) = &settings.http_check_send {
            let value = |key: &str| {
                let i = send.words.iter().position(|w| w == key)?;
                send.words.get(i + 1).cloned()
            };
            method = value("meth").unwrap_or(method);
            uri = value("uri").unwrap_or(uri);
        }
        let connect_ssl = settings
            .http_check_connect
            .as_ref()
            .is_some_and(|c| c.words.iter().any(|w| w == "ssl"));
        check.kind = if model.check_ssl || connect_ssl {
            CheckKind::Https
        } else {
            CheckKind::Http
        };
        if uri.starts_with('/') && !uri.contains(char::is_whitespace) {
            check.path = Some(uri.clone());
        } else {
            comments.push(self.note(NoteKind::LeftOut, n, format!(
                "line {n}: the check URI {uri:?} is not a request path: kube-xdp's default /readyz is used"
            )));
        }
        if method != "GET" {
            comments.push(self.note(NoteKind::Approximated, n, format!(
                "line {n}: the check's {method} request → GET (kube-xdp's HTTP checks send GET {uri})"
            )));
        }
        check.expect_status = Some(200);
        if let Some(expect) = &settings.http_check_expect {
            let status = (expect.word(2) == "status")
                .then(|| expect.word(3).parse::<u16>().ok())
                .flatten()
                .filter(|s| (100..=599).contains(s));
            match status {
                Some(s) => check.expect_status = Some(s),
                None => comments.push(self.note(
                    NoteKind::Approximated,
                    expect.number,
                    format!(
                        "`{}` (line {}): kube-xdp expects one status: 200",
                        expect.text(),
                        expect.number
                    ),
                )),
            }
        } else if method != "GET" || line.words.len() < 4 {
            // HAProxy passes any 2xx or 3xx by default.
            comments.push(self.note(NoteKind::Approximated, n, format!(
                "line {n}: no `http-check expect`: HAProxy passed any 2xx or 3xx, kube-xdp expects 200"
            )));
        }
        if check.kind == CheckKind::Https {
            match model.verify.as_deref() {
                Some("none") => check.tls_verify = Some(false),
                _ => {
                    if let Some(ca) = &model.ca_file {
                        check.ca_file = Some(ca.clone());
                    }
                }
            }
            if let Some(sni) = &model.check_sni {
                check.server_name = Some(sni.clone());
            }
        }
    }

    /// `timeout check` → the check's `timeout`, which must be shorter
    /// than its interval.
    fn check_timeout(&mut self, proxy: &Proxy, check: &mut CheckOut, comments: &mut Vec<String>) {
        let configured = proxy
            .settings
            .timeout("check")
            .and_then(|l| Some((l, addr::duration(l.word(2))?)));
        let half = Duration::from_millis((check.interval.as_millis() / 2).max(1) as u64);
        match configured {
            Some((_, t)) if t < check.interval && !t.is_zero() => check.timeout = t,
            Some((line, _)) => {
                check.timeout = half;
                comments.push(self.note(NoteKind::Approximated, line.number, format!(
                    "`timeout check {}` (line {}) is not shorter than the interval ({}): clamped to {}, since a check must end before the next starts",
                    line.word(2),
                    line.number,
                    addr::human(check.interval),
                    addr::human(half)
                )));
            }
            None if check.interval <= TIMEOUT => check.timeout = half,
            None => {}
        }
    }
}
