//! The translation: which proxies become services, the stats page, the
//! sections that have no equivalent. Services themselves are built in
//! `service.rs`, their checks in `check.rs`.

use std::collections::BTreeSet;

use super::Options;
use super::lex::Line;
use super::model::{Document, Note, NoteKind};
use super::sections::{Kind, Proxy, Section, Settings};

/// Collects the notes while the document is built.
pub struct Translator<'a> {
    pub options: &'a Options,
    pub notes: Vec<Note>,
    /// Service names given so far.
    pub names: BTreeSet<String>,
    /// Salt source for `stats auth` hashes.
    pub salt: &'a dyn Fn() -> String,
}

impl Translator<'_> {
    /// Records a note and hands back its text for a TOML comment.
    pub fn note(&mut self, kind: NoteKind, line: usize, text: impl Into<String>) -> String {
        let text = text.into();
        let note = Note {
            kind,
            line,
            text: text.clone(),
        };
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
        text
    }

    /// Builds the document from the sections (and the lines before the
    /// first one).
    pub fn document(
        &mut self,
        before: &[Line],
        sections: &[Section],
        proxies: &[Proxy],
    ) -> Document {
        let mut doc = Document::default();
        for line in before {
            let text = self.note(
                NoteKind::LeftOut,
                line.number,
                format!(
                    "`{}` (line {}) is outside any section",
                    line.text(),
                    line.number
                ),
            );
            doc.header.push(text);
        }
        for section in sections {
            self.section_left_out(section, &mut doc);
        }
        let interface = self.options.interface.clone();
        doc.interfaces = vec![interface.clone()];
        let chosen = self.note(
            NoteKind::Approximated,
            0,
            format!(
                "interfaces = [{interface:?}]: haproxy.cfg does not say which interface the VIPs \
                 arrive on ({}; `ip -br addr` lists them)",
                if self.options.interface_given {
                    "from --interface"
                } else {
                    "the default; set it with --interface"
                }
            ),
        );
        doc.daemon_comments.push(chosen);

        let mut used_backends: BTreeSet<String> = BTreeSet::new();
        for proxy in proxies {
            if proxy.kind == Kind::Backend {
                continue;
            }
            if proxy.settings.is_stats() {
                self.stats(proxy, &mut doc);
                continue;
            }
            if proxy.settings.is_http() {
                if self.prometheus(proxy, &mut doc) {
                    continue;
                }
                let mode = proxy.settings.mode.as_ref().map_or(0, |m| m.number);
                let text = self.note(
                    NoteKind::LeftOut,
                    proxy.header.number,
                    format!(
                        "{}: `mode http` (line {mode}) is layer 7 (HTTP routing, headers, \
                         cookies); kube-xdp forwards TCP only",
                        proxy.label()
                    ),
                );
                doc.header.push(text);
                continue;
            }
            let backend = match proxy.kind {
                Kind::Listen => Some(proxy),
                _ => self.default_backend(proxy, proxies, &mut doc),
            };
            let Some(backend) = backend else { continue };
            used_backends.insert(backend.name.clone());
            self.services(proxy, backend, &mut doc);
        }
        for proxy in proxies {
            if proxy.kind == Kind::Backend && !used_backends.contains(&proxy.name) {
                let text = self.note(
                    NoteKind::LeftOut,
                    proxy.header.number,
                    format!(
                        "{}: no translated frontend uses it as its default_backend",
                        proxy.label()
                    ),
                );
                doc.header.push(text);
            }
        }
        self.timeouts(proxies, &used_backends, &mut doc);
        doc
    }

    /// The backend a frontend sends to.
    fn default_backend<'p>(
        &mut self,
        frontend: &Proxy,
        proxies: &'p [Proxy],
        doc: &mut Document,
    ) -> Option<&'p Proxy> {
        let Some(line) = &frontend.settings.default_backend else {
            let text = self.note(
                NoteKind::LeftOut,
                frontend.header.number,
                format!(
                    "{}: no default_backend, so no servers to forward to{}",
                    frontend.label(),
                    if frontend.settings.use_backend.is_empty() {
                        ""
                    } else {
                        " (its use_backend rules choose by ACL, which kube-xdp does not do)"
                    }
                ),
            );
            doc.header.push(text);
            return None;
        };
        let name = line.word(1);
        let found = proxies
            .iter()
            .find(|p| p.name == name && matches!(p.kind, Kind::Backend | Kind::Listen));
        if found.is_none() {
            let text = self.note(
                NoteKind::LeftOut,
                line.number,
                format!(
                    "{}: default_backend {name} is not in the file",
                    frontend.label()
                ),
            );
            doc.header.push(text);
        }
        found
    }

    /// `global`, `defaults` and the other sections: what they hold that
    /// kube-xdp has no use for.
    fn section_left_out(&mut self, section: &Section, doc: &mut Document) {
        let at = section.header.number;
        let text = match section.kind {
            Kind::Global => {
                let mut words: Vec<String> = Vec::new();
                for line in &section.lines {
                    let w = if line.keyword() == "stats" {
                        format!("stats {}", line.word(1))
                    } else {
                        line.keyword().to_owned()
                    };
                    if !words.contains(&w) {
                        words.push(w);
                    }
                }
                if words.is_empty() {
                    return;
                }
                let socket = if words.iter().any(|w| w == "stats socket") {
                    " (for the runtime API's `show stat`/`show servers state`, use `kube-xdp backends` and `kube-xdp stats`)"
                } else {
                    ""
                };
                format!(
                    "global (line {at}): process settings with no kube-xdp equivalent: {}{socket}",
                    words.join(", ")
                )
            }
            Kind::Defaults => {
                let mut own = Settings::default();
                for line in &section.lines {
                    own.apply(line, true);
                }
                if own.left_out.is_empty() {
                    return;
                }
                format!(
                    "defaults{} (line {at}): {}",
                    if section.name.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", section.name)
                    },
                    left_out_list(&own.left_out)
                )
            }
            Kind::Other => format!(
                "{} {} (line {at}): no kube-xdp equivalent",
                section.header.keyword(),
                section.name
            ),
            Kind::Frontend | Kind::Backend | Kind::Listen => return,
        };
        let text = self.note(NoteKind::LeftOut, at, text);
        doc.header.push(text);
    }
}

/// `left out `option tcplog` (line 5), `log global` (line 6): why; …`,
/// grouped by the reason where one is known.
pub fn left_out_list(lines: &[Line]) -> String {
    let mut groups: Vec<(&'static str, Vec<String>)> = Vec::new();
    for l in lines {
        let why = why_left_out(l);
        let item = format!("`{}` (line {})", l.text(), l.number);
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, items)) => items.push(item),
            None => groups.push((why, vec![item])),
        }
    }
    let parts: Vec<String> = groups
        .into_iter()
        .map(|(why, items)| format!("{}{why}", items.join(", ")))
        .collect();
    format!("left out {}", parts.join("; "))
}

fn why_left_out(line: &Line) -> &'static str {
    match (line.keyword(), line.word(1)) {
        ("option", "tcplog" | "httplog" | "dontlognull" | "log-health-checks") | ("log", _) => {
            ": kube-xdp logs backend state changes, not connections; see its metrics"
        }
        ("acl", _) | ("tcp-request", _) | ("http-request", _) | ("http-response", _) => {
            ": rules and ACLs have no layer-4 equivalent"
        }
        ("stick-table", _) | ("stick", _) => {
            ": Maglev hashing keeps a client's flows on one backend"
        }
        ("maxconn", _) | ("fullconn", _) => ": XDP forwarding has no connection limit",
        ("retries", _) | ("option", "redispatch") => {
            ": a failed connection is the client's to retry"
        }
        ("option", "forwardfor" | "http-server-close" | "http-keep-alive" | "httpclose") => {
            ": HTTP option"
        }
        _ => "",
    }
}
