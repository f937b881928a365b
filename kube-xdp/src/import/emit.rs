//! The document as kube-xdp.toml: the schema's keys in DESIGN.md's
//! order, the notes as comments above what they concern.

use std::fmt::Write as _;

use super::addr::human;
use super::model::{BackendOut, CheckOut, Document, ServiceOut, StatsPage};
use crate::config::{CheckKind, IMPORT_VIP_PLACEHOLDER};

/// Whether this version's `[daemon]` accepts the stats page's keys
/// (`stats_listen`, …). While it does not, they are written as comments;
/// a unit test compares this with what `Config::parse` accepts, so it
/// fails (and says to flip this and re-bless the corpus) once they land.
pub const STATS_KEYS_ACCEPTED: bool = true;

const WIDTH: usize = 78;

/// Writes `doc` as TOML.
pub fn toml(doc: &Document) -> String {
    let mut out = String::new();
    comment(
        &mut out,
        &format!(
            "kube-xdp.toml, translated from {} by `kube-xdp import-haproxy`. Check it with `kube-xdp check-config --config FILE` before use.",
            doc.source
        ),
    );
    for note in &doc.header {
        out.push_str("#\n");
        comment(&mut out, note);
    }
    out.push_str("\n[daemon]\n");
    for c in &doc.daemon_comments {
        comment(&mut out, c);
    }
    let interfaces: Vec<String> = doc.interfaces.iter().map(|i| format!("{i:?}")).collect();
    let _ = writeln!(out, "interfaces = [{}]", interfaces.join(", "));
    if let Some(listen) = &doc.metrics_listen {
        let _ = writeln!(out, "metrics_listen = {listen:?}");
    }
    if let Some(stats) = &doc.stats {
        stats_page(&mut out, stats);
    }
    if !doc.timeout_comments.is_empty() || doc.suggested_tcp_established.is_some() {
        out.push_str("\n[timeouts]\n");
        if let Some((text, idle)) = &doc.suggested_tcp_established {
            comment(&mut out, text);
            let _ = writeln!(out, "# tcp_established = {:?}", human(*idle));
        }
        for c in &doc.timeout_comments {
            comment(&mut out, c);
        }
    }
    for service in &doc.services {
        self::service(&mut out, service);
    }
    out
}

fn stats_page(out: &mut String, stats: &StatsPage) {
    out.push('\n');
    for c in &stats.comments {
        comment(out, c);
    }
    let prefix = if STATS_KEYS_ACCEPTED {
        ""
    } else {
        comment(
            out,
            "This version of kube-xdp does not accept the stats page's keys yet: uncomment them once `kube-xdp check-config` does.",
        );
        "# "
    };
    let _ = writeln!(out, "{prefix}stats_listen = {:?}", stats.listen);
    if let Some(uri) = &stats.uri {
        let _ = writeln!(out, "{prefix}stats_uri = {uri:?}");
    }
    if let Some(refresh) = stats.refresh {
        let _ = writeln!(out, "{prefix}stats_refresh = {:?}", human(refresh));
    }
    if let Some(auth) = &stats.auth {
        let _ = writeln!(out, "{prefix}stats_auth = {auth:?}");
    }
    if stats.hide_version {
        let _ = writeln!(out, "{prefix}stats_hide_version = true");
    }
}

fn service(out: &mut String, s: &ServiceOut) {
    out.push_str("\n[[service]]\n");
    for c in &s.comments {
        comment(out, c);
    }
    let _ = writeln!(out, "name = {:?}", s.name);
    if let Some(c) = &s.vip_comment {
        comment(out, c);
    }
    match s.vip {
        Some(vip) => {
            let _ = writeln!(out, "vip = \"{vip}\"");
        }
        None => {
            let _ = writeln!(out, "vip = {IMPORT_VIP_PLACEHOLDER:?}");
        }
    }
    if s.ports.first == s.ports.last {
        let _ = writeln!(out, "port = {}", s.ports.first);
    } else {
        let _ = writeln!(out, "ports = \"{}-{}\"", s.ports.first, s.ports.last);
    }
    out.push_str("protocol = \"tcp\"\n");
    if s.on_backend_down_reset {
        out.push_str("on_backend_down = \"reset\"\n");
    }
    check(out, &s.check);
    for b in &s.backends {
        backend(out, b);
    }
}

fn check(out: &mut String, c: &CheckOut) {
    out.push_str("\n[service.health_check]\n");
    for text in &c.comments {
        comment(out, text);
    }
    let _ = writeln!(out, "kind = {:?}", c.kind.as_str());
    if let Some(path) = &c.path {
        let _ = writeln!(out, "path = {path:?}");
    }
    if let Some(status) = c.expect_status {
        let _ = writeln!(out, "expect_status = {status}");
    }
    if c.kind == CheckKind::Https {
        if let Some(verify) = c.tls_verify {
            let _ = writeln!(out, "tls_verify = {verify}");
        }
        if let Some(ca) = &c.ca_file {
            let _ = writeln!(out, "ca_file = {ca:?}");
        }
        if let Some(name) = &c.server_name {
            let _ = writeln!(out, "server_name = {name:?}");
        }
    }
    let _ = writeln!(out, "interval = {:?}", human(c.interval));
    let _ = writeln!(out, "timeout = {:?}", human(c.timeout));
    let _ = writeln!(out, "fall = {}", c.fall);
    let _ = writeln!(out, "rise = {}", c.rise);
    if let Some(port) = c.port {
        let _ = writeln!(out, "port = {port}");
    }
}

fn backend(out: &mut String, b: &BackendOut) {
    out.push('\n');
    for c in &b.comments {
        comment(out, c);
    }
    let p = if b.commented_out { "# " } else { "" };
    let _ = writeln!(out, "{p}[[service.backend]]");
    let _ = writeln!(out, "{p}name = {:?}", b.name);
    let _ = writeln!(out, "{p}address = {:?}", b.address);
    if let Some(port) = b.port {
        let _ = writeln!(out, "{p}port = {port}");
    }
    if let Some(weight) = b.weight {
        let _ = writeln!(out, "{p}weight = {weight}");
    }
}

/// `text` as `# ` lines of at most [`WIDTH`] columns.
fn comment(out: &mut String, text: &str) {
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && 2 + line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "# {line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "# {line}");
    }
}
