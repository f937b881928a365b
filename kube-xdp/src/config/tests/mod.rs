//! Unit tests of the configuration file, one file per table or concern.
//! The helpers and fixtures here are shared with `crate::plan`'s tests.

mod backend_table;
mod daemon_table;
mod ha_table;
mod health_check_table;
mod kubernetes_table;
mod many_at_once;
mod parsing;
mod service_table;
pub(crate) mod stats_keys;
mod syn_flood_table;
mod syntax;
mod timeouts_table;

use std::path::Path;

use super::*;

/// The kubeadm HAProxy setup: the apiserver on 6443 and the NodePort range
/// to the workers.
pub(crate) const TWO_SERVICES: &str = r#"[daemon]
interfaces = ["eth0", "eth1"]
xdp_mode = "native"
snat_addresses = ["10.4.0.9", "10.4.0.8"]

[[service]]
name = "kube-apiserver"
vip = "10.4.0.10"
port = 6443
on_backend_down = "reset"

[service.health_check]
kind = "https"
ca_file = "/etc/kubernetes/pki/ca.crt"
server_name = "kubernetes"

[[service.backend]]
name = "bettley"
address = "10.4.0.11"

[[service.backend]]
name = "chenoweth"
address = "cp2.example.internal"
port = 16443
weight = 0

[[service]]
name = "nodeports"
vip = "10.4.0.10"
ports = "30000-32767"
protocol = "tcp"

[service.health_check]
kind = "http"
path = "/healthz"
port = 10256

[[service.backend]]
name = "worker-1"
address = "10.4.0.21"
weight = 2

[[service.backend]]
name = "worker-2"
address = "10.4.0.22"
"#;

pub(crate) const DAEMON: &str = "[daemon]\ninterfaces = [\"eth0\"]\n";

pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("test.toml"), text)
}

/// Every issue of a file that must not parse.
pub(crate) fn issues(text: &str) -> Vec<ConfigIssue> {
    match parse(text) {
        Ok(_) => panic!("parsed, but should not have:\n{text}"),
        Err(e) => e.issues().to_vec(),
    }
}

/// The one issue of a file that must not parse.
pub(crate) fn issue(text: &str) -> ConfigIssue {
    let mut all = issues(text);
    assert_eq!(all.len(), 1, "expected one issue, got:\n{}", list(&all));
    all.remove(0)
}

pub(crate) fn list(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The 1-based line of the first occurrence of `needle`.
pub(crate) fn line(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

/// `issue` is at `needle`'s line, names `key` (in its key and in its
/// message line), and says `says`.
#[track_caller]
pub(crate) fn assert_issue(issue: &ConfigIssue, text: &str, needle: &str, key: &str, says: &str) {
    let shown = issue.to_string();
    let want_line = line(text, needle);
    assert_eq!(issue.line, Some(want_line), "wrong line: {shown}");
    assert_eq!(issue.key, key, "wrong key: {shown}");
    assert!(
        shown.starts_with(&format!("test.toml:{want_line}: ")),
        "no file:line: {shown}"
    );
    assert!(
        shown.contains(&format!("{key}: ")),
        "key not shown: {shown}"
    );
    assert!(shown.contains(says), "{says:?} not in: {shown}");
    assert!(issue.is_error(), "not an error: {shown}");
}

/// DAEMON plus one service "api" on 10.4.0.10:6443 with `extra` lines in
/// the service table, and `rest` after it.
pub(crate) fn service(extra: &str, rest: &str) -> String {
    format!(
        "{DAEMON}\n[[service]]\nname = \"api\"\nvip = \"10.4.0.10\"\nport = 6443\n{extra}\n{rest}"
    )
}

pub(crate) fn backend(fields: &str) -> String {
    format!("[[service.backend]]\n{fields}\n")
}

pub(crate) fn check(fields: &str) -> String {
    service("", &format!("[service.health_check]\n{fields}\n"))
}
