//! A `frontend` (or `listen`) and its backend become one service per
//! address and port range it binds; its servers become the backends.

use std::net::Ipv4Addr;

use super::addr::{self, Listen};
use super::model::{BackendOut, Document, NoteKind, ServiceOut};
use super::sections::Proxy;
use super::server::{self, Server};
use super::translate::{Translator, left_out_list};
use crate::config::{MAX_NAME_LEN, PortRange};

impl Translator<'_> {
    pub fn services(&mut self, frontend: &Proxy, backend: &Proxy, doc: &mut Document) {
        let from = if std::ptr::eq(frontend, backend) {
            frontend.label()
        } else {
            format!("{} + {}", frontend.label(), backend.label())
        };
        let (listens, bind_notes) = self.listens(frontend);
        if listens.is_empty() {
            let text = self.note(
                NoteKind::LeftOut,
                frontend.header.number,
                format!("{}: no bind that kube-xdp can serve", frontend.label()),
            );
            doc.header.push(text);
            return;
        }
        let mut common = bind_notes;
        let both: &[&Proxy] = if std::ptr::eq(frontend, backend) {
            &[frontend]
        } else {
            &[frontend, backend]
        };
        for proxy in both {
            if !proxy.settings.left_out.is_empty() {
                let text = format!(
                    "{}: {}",
                    proxy.label(),
                    left_out_list(&proxy.settings.left_out)
                );
                common.push(self.note(NoteKind::LeftOut, proxy.header.number, text));
            }
        }
        for line in &frontend.settings.use_backend {
            common.push(self.note(
                NoteKind::LeftOut,
                line.number,
                format!("`{}` (line {}): backends chosen by ACL have no layer-4 equivalent; everything goes to the default backend", line.text(), line.number),
            ));
        }
        if let Some(balance) = &backend.settings.balance {
            common.push(self.note(
                NoteKind::Approximated,
                balance.number,
                format!(
                    "`{}` (line {}) → Maglev consistent hashing: new flows spread by weight, a flow keeps its backend",
                    balance.text(),
                    balance.number
                ),
            ));
        }
        let servers: Vec<Server> = backend
            .settings
            .servers
            .iter()
            .map(|line| {
                // Only the default-server lines before a server apply to it.
                let defaults: Vec<_> = backend
                    .settings
                    .default_server
                    .iter()
                    .filter(|d| d.number < line.number)
                    .cloned()
                    .collect();
                server::server(line, &defaults)
            })
            .collect();
        let base = sanitize(&frontend.name);
        let several = listens.len() > 1;
        for (listen, bind_line) in listens {
            let range = listen.ports.first != listen.ports.last;
            if let Some(other) = doc.services.iter().find(|s| {
                s.vip == listen.addr.or(self.options.vip) && s.ports.overlaps(&listen.ports)
            }) {
                let text = format!(
                    "line {bind_line}: {}:{} is already served by service {:?}: a (VIP, port) belongs to one service",
                    vip_text(listen.addr),
                    ports_text(listen.ports),
                    other.name
                );
                let text = self.note(NoteKind::LeftOut, bind_line, text);
                doc.header.push(text);
                continue;
            }
            let name = self.service_name(&base, &listen, several);
            let mut comments = vec![self.note(
                NoteKind::Translated,
                frontend.header.number,
                format!("{from} → service {name:?}"),
            )];
            comments.extend(common.iter().cloned());
            let (vip, vip_comment) = match (listen.addr, self.options.vip) {
                (Some(a), _) => (Some(a), None),
                (None, Some(vip)) => (
                    Some(vip),
                    Some(self.note(
                        NoteKind::Approximated,
                        bind_line,
                        format!("line {bind_line} binds every address: the VIP {vip} is --vip's"),
                    )),
                ),
                (None, None) => (
                    None,
                    Some(self.note(
                        NoteKind::Approximated,
                        bind_line,
                        format!(
                            "line {bind_line} binds every address, so the VIP is unknown: set vip \
                             (or run import-haproxy with --vip); check-config refuses the placeholder"
                        ),
                    )),
                ),
            };
            let check = self.check(backend, &servers, listen.ports);
            let (backends, reset) = self.backends(backend, &servers, range);
            doc.services.push(ServiceOut {
                name,
                vip,
                vip_comment,
                ports: listen.ports,
                on_backend_down_reset: reset,
                comments,
                check,
                backends,
            });
        }
    }

    /// A unique, valid service name, recorded as taken.
    fn service_name(&mut self, base: &str, listen: &Listen, several: bool) -> String {
        let first = if several {
            format!("{base}-{}", ports_text(listen.ports))
        } else {
            base.to_owned()
        };
        let mut name = truncate(&first);
        let mut n = 2;
        while self.names.contains(&name) {
            name = truncate(&format!("{first}-{n}"));
            n += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// The frontend's binds kube-xdp can serve, each with its line; the
    /// others noted. A (VIP, port) already served is left out.
    fn listens(&mut self, frontend: &Proxy) -> (Vec<(Listen, usize)>, Vec<String>) {
        let mut out: Vec<(Listen, usize)> = Vec::new();
        let mut notes = Vec::new();
        for bind in &frontend.settings.binds {
            let n = bind.number;
            let options = bind.words.get(2..).unwrap_or_default();
            if options.iter().any(|o| o == "ssl") {
                notes.push(self.note(
                    NoteKind::LeftOut,
                    n,
                    format!("`{}` (line {n}): `ssl` terminates TLS, which kube-xdp does not (it forwards the TLS stream untouched)", bind.text()),
                ));
                continue;
            }
            if !options.is_empty() {
                notes.push(self.note(
                    NoteKind::LeftOut,
                    n,
                    format!(
                        "line {n}: bind options `{}` have no kube-xdp equivalent",
                        options.join(" ")
                    ),
                ));
            }
            for (element, parsed) in addr::bind_list(bind.word(1)) {
                match parsed {
                    Err(e) => {
                        notes.push(self.note(
                            NoteKind::LeftOut,
                            n,
                            format!("line {n}: bind {element}: {e}"),
                        ));
                    }
                    Ok(listen) => out.push((listen, n)),
                }
            }
        }
        (out, notes)
    }

    /// The servers as backends, and whether any asks for its sessions to
    /// be shut down when it goes DOWN (`on_backend_down = "reset"`).
    fn backends(
        &mut self,
        proxy: &Proxy,
        servers: &[Server],
        range: bool,
    ) -> (Vec<BackendOut>, bool) {
        let mut out: Vec<BackendOut> = Vec::new();
        let mut reset = false;
        let any_checked = servers.iter().any(|s| s.options.check);
        for s in servers {
            let n = s.line.number;
            let o = &s.options;
            let target = match &s.target {
                Ok(t) => t,
                Err(e) => {
                    self.note(
                        NoteKind::LeftOut,
                        n,
                        format!("server {} (line {n}): {e}", s.name),
                    );
                    continue;
                }
            };
            let mut comments = Vec::new();
            let mut port = target.port;
            if range && let Some(p) = port {
                comments.push(self.note(NoteKind::Approximated, n, format!(
                    "server {} (line {n}) sends the whole port range to port {p}; a kube-xdp port-range service keeps the client's port",
                    s.name
                )));
                port = None;
            }
            let key = (target.host.clone(), port);
            if let Some(other) = out.iter().find(|b| (b.address.clone(), b.port) == key) {
                self.note(NoteKind::LeftOut, n, format!(
                    "server {} (line {n}) has the address of {}: kube-xdp lists each backend once (raise its weight instead)",
                    s.name, other.name
                ));
                continue;
            }
            if any_checked && !o.check {
                comments.push(self.note(NoteKind::Approximated, n, format!(
                    "server {} (line {n}) has no `check`: kube-xdp checks every backend, this one like the others",
                    s.name
                )));
            }
            let mut weight = o.weight;
            if o.disabled {
                weight = Some(0);
                comments.push(self.note(NoteKind::Approximated, n, format!(
                    "server {} (line {n}) is `disabled`: weight = 0 (drain: no new flows; raise it to enable)",
                    s.name
                )));
            }
            if o.send_proxy {
                comments.push(self.note(NoteKind::LeftOut, n, format!(
                    "server {} (line {n}): send-proxy: kube-xdp forwards packets and sends no PROXY protocol header; turn it off on the backend",
                    s.name
                )));
            }
            if o.shutdown_sessions {
                reset = true;
            }
            if !o.ignored.is_empty() {
                comments.push(self.note(
                    NoteKind::LeftOut,
                    n,
                    format!(
                        "server {} (line {n}): left out `{}`",
                        s.name,
                        o.ignored.join(" ")
                    ),
                ));
            }
            if o.backup {
                comments.push(self.note(NoteKind::LeftOut, n, format!(
                    "server {} (line {n}) is a `backup`: kube-xdp has no backup tier, so it is written commented out; uncomment it to make it a regular backend",
                    s.name
                )));
            }
            let mut name = truncate(&sanitize(&s.name));
            let mut k = 2;
            while out.iter().any(|b| b.name == name) {
                name = truncate(&format!("{}-{k}", sanitize(&s.name)));
                k += 1;
            }
            out.push(BackendOut {
                name,
                address: target.host.clone(),
                port,
                weight,
                comments,
                commented_out: o.backup,
            });
        }
        if reset {
            self.note(
                NoteKind::Translated,
                proxy.header.number,
                format!(
                    "{}: on-marked-down shutdown-sessions → on_backend_down = \"reset\"",
                    proxy.label()
                ),
            );
        }
        (out, reset)
    }
}

/// A name kube-xdp accepts: letters, digits, '.', '_', '-'.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.is_empty() { "service".into() } else { s }
}

fn truncate(name: &str) -> String {
    name.chars().take(MAX_NAME_LEN).collect()
}

/// The ports a service serves, for messages.
pub fn ports_text(ports: PortRange) -> String {
    if ports.first == ports.last {
        ports.first.to_string()
    } else {
        format!("{}-{}", ports.first, ports.last)
    }
}

/// For messages: an address or `*`.
pub fn vip_text(vip: Option<Ipv4Addr>) -> String {
    vip.map_or_else(|| "*".to_owned(), |v| v.to_string())
}
