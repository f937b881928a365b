//! The file-wide parts: a stats page (→ `[daemon] stats_*`), HAProxy's
//! Prometheus exporter (→ `metrics_listen`), and the connection timeouts
//! (→ comments in `[timeouts]`).

use std::collections::BTreeSet;
use std::time::Duration;

use super::addr;
use super::lex::Line;
use super::model::{Document, NoteKind, StatsPage};
use super::sections::Proxy;
use super::translate::Translator;

impl Translator<'_> {
    /// A stats proxy (`stats enable` or `stats uri`) → the stats page.
    pub fn stats(&mut self, proxy: &Proxy, doc: &mut Document) {
        let label = proxy.label();
        if let Some(first) = &doc.stats {
            let text = self.note(
                NoteKind::LeftOut,
                proxy.header.number,
                format!(
                    "{label}: a second stats page; kube-xdp serves one ({})",
                    first.listen
                ),
            );
            doc.header.push(text);
            return;
        }
        let Some(listen) = first_listen(proxy) else {
            let text = self.note(
                NoteKind::LeftOut,
                proxy.header.number,
                format!("{label}: a stats page with no usable bind"),
            );
            doc.header.push(text);
            return;
        };
        let mut page = StatsPage {
            listen,
            ..StatsPage::default()
        };
        let mut parts = vec![format!("stats_listen {}", page.listen)];
        for line in &proxy.settings.stats {
            let n = line.number;
            match line.word(1) {
                "enable" => {}
                "uri" => {
                    page.uri = Some(line.word(2).to_owned());
                    parts.push(format!("stats_uri {}", line.word(2)));
                }
                "refresh" => match addr::duration(line.word(2)) {
                    Some(d) => {
                        page.refresh = Some(d);
                        parts.push(format!("stats_refresh {}", addr::human(d)));
                    }
                    None => {
                        self.note(
                            NoteKind::LeftOut,
                            n,
                            format!("line {n}: {:?} is not a time", line.word(2)),
                        );
                    }
                },
                "hide-version" => {
                    page.hide_version = true;
                    parts.push("stats_hide_version".into());
                }
                "auth" if page.auth.is_none() => match line.word(2).split_once(':') {
                    Some((user, password)) => {
                        page.auth = Some(format!("{user}:{}", hash(password, &(self.salt)())));
                        page.comments.push(self.note(
                            NoteKind::Translated,
                            n,
                            format!("`stats auth {user}:…` (line {n}) → stats_auth, the password hashed (SHA-512 crypt)"),
                        ));
                    }
                    None => {
                        self.note(
                            NoteKind::LeftOut,
                            n,
                            format!("line {n}: stats auth wants USER:PASSWORD"),
                        );
                    }
                },
                "auth" => page.comments.push(self.note(
                    NoteKind::LeftOut,
                    n,
                    format!("line {n}: a second `stats auth` user: kube-xdp's stats page has one"),
                )),
                other => page.comments.push(self.note(
                    NoteKind::LeftOut,
                    n,
                    format!("`stats {other}` (line {n}) has no kube-xdp equivalent"),
                )),
            }
        }
        page.comments.insert(
            0,
            self.note(
                NoteKind::Translated,
                proxy.header.number,
                format!("{label} → the stats page: {}", parts.join(", ")),
            ),
        );
        doc.stats = Some(page);
        self.prometheus(proxy, doc);
    }

    /// `http-request use-service prometheus-exporter` → `metrics_listen`
    /// (kube-xdp serves `/metrics` on its own address).
    pub fn prometheus(&mut self, proxy: &Proxy, doc: &mut Document) -> bool {
        let Some(line) = proxy
            .settings
            .left_out
            .iter()
            .find(|l| l.words.iter().any(|w| w == "prometheus-exporter"))
        else {
            return false;
        };
        let Some(listen) = first_listen(proxy) else {
            return false;
        };
        if doc.metrics_listen.is_some() {
            return false;
        }
        let text = self.note(
            NoteKind::Translated,
            line.number,
            format!(
                "{}: the Prometheus exporter (line {}) → metrics_listen = {listen:?} (kube-xdp's metrics, at /metrics)",
                proxy.label(),
                line.number
            ),
        );
        doc.daemon_comments.push(text);
        doc.metrics_listen = Some(listen);
        true
    }

    /// The connection timeouts of the translated proxies, as advice in
    /// `[timeouts]`.
    pub fn timeouts(&mut self, proxies: &[Proxy], used: &BTreeSet<String>, doc: &mut Document) {
        let translated = proxies.iter().filter(|p| {
            !p.settings.is_http()
                && (p.kind != super::sections::Kind::Backend || used.contains(&p.name))
        });
        let mut idle: Vec<(Duration, &Line)> = Vec::new();
        let mut connect: Option<&Line> = None;
        for proxy in translated {
            for name in ["client", "server", "tunnel"] {
                if let Some(line) = proxy.settings.timeout(name)
                    && let Some(d) = addr::duration(line.word(2))
                    && !idle.iter().any(|(_, l)| l.number == line.number)
                {
                    idle.push((d, line));
                }
            }
            connect = connect.or(proxy.settings.timeout("connect"));
        }
        if doc.services.is_empty() {
            return;
        }
        if let Some((longest, _)) = idle.iter().max_by_key(|(d, _)| *d) {
            let lines: Vec<String> = idle
                .iter()
                .map(|(_, l)| format!("`{}` (line {})", l.text(), l.number))
                .collect();
            let text = self.note(
                NoteKind::Approximated,
                idle[0].1.number,
                format!(
                    "{}: HAProxy closed connections idle that long; kube-xdp keeps an idle established flow for tcp_established, left at its default (24h: API server watches stay idle for long). To cut idle flows as HAProxy did, set tcp_established = {:?} (written as a comment in [timeouts])",
                    lines.join(", "),
                    addr::human(*longest)
                ),
            );
            doc.suggested_tcp_established = Some((text, *longest));
        }
        if let Some(line) = connect {
            let text = self.note(
                NoteKind::LeftOut,
                line.number,
                format!(
                    "`{}` (line {}) bounds HAProxy's own connect to a server; kube-xdp does not connect (it forwards the client's SYN)",
                    line.text(),
                    line.number
                ),
            );
            doc.timeout_comments.push(text);
        }
    }
}

/// The first bind of `proxy` as `ADDR:PORT` (`*` → `0.0.0.0`).
fn first_listen(proxy: &Proxy) -> Option<String> {
    proxy.settings.binds.iter().find_map(|b| {
        addr::bind_list(b.word(1)).into_iter().find_map(|(_, r)| {
            let l = r.ok()?;
            let a = l.addr.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
            Some(format!("{a}:{}", l.ports.first))
        })
    })
}

/// `$6$SALT$HASH`: SHA-512 crypt with the default 5000 rounds, as
/// `mkpasswd -m sha-512` and `openssl passwd -6` write it.
pub fn hash(password: &str, salt: &str) -> String {
    let params = sha_crypt::Sha512Params::new(sha_crypt::ROUNDS_DEFAULT)
        .expect("the default rounds are valid");
    let b64 = sha_crypt::sha512_crypt_b64(password.as_bytes(), salt.as_bytes(), &params)
        .expect("SHA-512 crypt of a valid salt");
    format!("$6${salt}${b64}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn hash_matches_openssl_passwd() {
        // `openssl passwd -6 -salt saltsaltsaltsalt secret`
        assert_eq!(
            super::hash("secret", "saltsaltsaltsalt"),
            "$6$saltsaltsaltsalt$ph0yGsyjzqdeFaon7.gJZo8eAG5/rj9/JdzOu1Rl7dKzBYg3xgvl7T2VQ2Rt81bc5AXkdA54r0p8QvC1omD6R1"
        );
    }
}
