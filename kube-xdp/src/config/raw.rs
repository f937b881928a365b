//! The file as serde reads it: every table closed to unknown keys, every
//! value optional and wrapped in [`Spanned`] so that validation can name
//! the line of each problem and collect them all rather than stop at the
//! first. Values that need checking beyond their TOML type (addresses,
//! port ranges, durations, keywords) stay strings and integers here, and
//! `validate.rs` turns them into the types of `schema.rs`.

use serde::Deserialize;
use toml::Spanned;

pub(super) type Field<T> = Option<Spanned<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub daemon: Field<RawDaemon>,
    pub timeouts: Field<RawTimeouts>,
    pub syn_flood: Field<RawSynFlood>,
    #[serde(default, rename = "service")]
    pub services: Vec<Spanned<RawService>>,
    pub ha: Field<RawHa>,
    pub kubernetes: Field<RawKubernetes>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKubernetes {
    pub kubeconfig: Field<String>,
    pub load_balancer_class: Field<String>,
    pub handle_classless: Field<bool>,
    pub node_selector: Field<String>,
    #[serde(default, rename = "address_pool")]
    pub address_pools: Vec<Spanned<RawAddressPool>>,
    pub health_check: Field<RawHealthCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAddressPool {
    pub name: Field<String>,
    pub addresses: Field<Vec<Spanned<String>>>,
    pub namespaces: Field<Vec<Spanned<String>>>,
    pub auto_assign: Field<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    pub interface: Field<String>,
    pub virtual_router_id: Field<i64>,
    pub priority: Field<i64>,
    pub advert_interval: Field<String>,
    pub preempt: Field<bool>,
    pub unicast_peers: Field<Vec<Spanned<String>>>,
    pub snat_address: Field<String>,
    pub track_services: Field<Vec<Spanned<String>>>,
    pub sync_port: Field<i64>,
    pub sync_key_file: Field<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub interfaces: Field<Vec<Spanned<String>>>,
    pub xdp_mode: Field<String>,
    pub pin_path: Field<String>,
    pub metrics_listen: Field<String>,
    pub run_dir: Field<String>,
    pub flow_table_size: Field<i64>,
    pub snat_addresses: Field<Vec<Spanned<String>>>,
    pub snat_ports: Field<String>,
    pub stats_listen: Field<String>,
    pub stats_uri: Field<String>,
    pub stats_refresh: Field<String>,
    pub stats_auth: Field<String>,
    pub stats_hide_version: Field<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTimeouts {
    pub tcp_established: Field<String>,
    pub tcp_closing: Field<String>,
    pub tcp_syn: Field<String>,
    pub udp: Field<String>,
    pub udp_unanswered: Field<String>,
    pub tcp_time_wait: Field<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSynFlood {
    pub syn_cookies: Field<String>,
    pub half_open_limit: Field<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawService {
    pub name: Field<String>,
    pub vip: Field<String>,
    pub port: Field<i64>,
    pub ports: Field<String>,
    pub protocol: Field<String>,
    pub mode: Field<String>,
    pub maglev_table_size: Field<i64>,
    pub on_backend_down: Field<String>,
    pub drain_timeout: Field<String>,
    pub health_check: Field<RawHealthCheck>,
    #[serde(default, rename = "backend")]
    pub backends: Vec<Spanned<RawBackend>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealthCheck {
    pub kind: Field<String>,
    pub path: Field<String>,
    pub expect_status: Field<i64>,
    pub tls_verify: Field<bool>,
    pub ca_file: Field<String>,
    pub server_name: Field<String>,
    pub interval: Field<String>,
    pub timeout: Field<String>,
    pub fall: Field<i64>,
    pub rise: Field<i64>,
    pub init_state: Field<String>,
    pub port: Field<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub name: Field<String>,
    pub address: Field<String>,
    pub port: Field<i64>,
    pub weight: Field<i64>,
}

/// Where each line of a text ends, to find the line of many offsets
/// without counting from the start each time (a file with thousands of
/// backends has tens of thousands of keys).
pub(super) struct LineIndex(Vec<usize>);

impl LineIndex {
    pub(super) fn new(text: &str) -> Self {
        LineIndex(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The 1-based line of byte `offset`, as [`line_of`].
    pub(super) fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|nl| *nl < offset) + 1
    }
}

/// The 1-based line of byte `offset` in `text`.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Where in the file a serde or syntax error sits, for a message a person
/// recognises: the table as `service "kube-apiserver" backend "bettley"`
/// and the key on the error's line. Reads the text line by line (headers,
/// `name = "..."`), which is enough for labelling; the error itself comes
/// from `toml`.
pub(super) fn locate(text: &str, offset: usize) -> (String, String) {
    let lines: Vec<&str> = text.split('\n').collect();
    let target = line_of(text, offset) - 1;
    let mut table: Option<String> = None;
    let mut service: Option<(usize, usize)> = None; // (ordinal, line index)
    let mut services = 0;
    let mut backend: Option<(usize, usize)> = None;
    let mut backends = 0;
    let target_header = lines.get(target).and_then(|l| header(l));
    for (i, line) in lines.iter().enumerate().take(target) {
        let Some((name, array)) = header(line) else {
            continue;
        };
        if array && name == "service" {
            services += 1;
            service = Some((services, i));
            backend = None;
            backends = 0;
        } else if array && name == "service.backend" {
            backends += 1;
            backend = Some((backends, i));
        }
        table = Some(name);
    }
    let label = |kind: &str, at: Option<(usize, usize)>| match at {
        Some((ordinal, i)) => match block_name(&lines, i) {
            Some(name) => format!("{kind} {name:?}"),
            None => format!("{kind} #{ordinal}"),
        },
        None => kind.to_owned(),
    };
    let context_of = |table: &str| match table {
        "service" => label("service", service),
        "service.health_check" => format!("{} health_check", label("service", service)),
        "service.backend" => format!(
            "{} {}",
            label("service", service),
            label("backend", backend)
        ),
        other => other.to_owned(),
    };
    if let Some((name, _)) = target_header {
        // An error on a header: the key is its last part, the context the
        // table it sits in.
        return match name.rsplit_once('.') {
            Some((parent, key)) => (context_of(parent), key.to_owned()),
            None => (String::new(), name),
        };
    }
    let context = table.as_deref().map(context_of).unwrap_or_default();
    let key = lines
        .get(target)
        .and_then(|l| key_of(l))
        .unwrap_or_default();
    (context, key)
}

/// `[a.b]` → ("a.b", false), `[[a.b]]` → ("a.b", true).
fn header(line: &str) -> Option<(String, bool)> {
    let line = strip_comment(line).trim();
    let (inner, array) = if let Some(rest) = line.strip_prefix("[[") {
        (rest.strip_suffix("]]")?, true)
    } else {
        (line.strip_prefix('[')?.strip_suffix(']')?, false)
    };
    let name: Vec<&str> = inner.split('.').map(str::trim).collect();
    Some((name.join("."), array))
}

/// The bare key before `=` on a line.
fn key_of(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'))
    .then(|| key.to_owned())
}

/// The `name = "..."` of the table whose header is at line `start`.
fn block_name(lines: &[&str], start: usize) -> Option<String> {
    for line in lines.iter().skip(start + 1) {
        if header(line).is_some() {
            return None;
        }
        if key_of(line).as_deref() == Some("name") {
            let (_, value) = line.split_once('=')?;
            let value = strip_comment(value).trim();
            return Some(value.trim_matches(|c| c == '"' || c == '\'').to_owned());
        }
    }
    None
}

/// `line` without a trailing `# comment` (not looking into strings: good
/// enough for headers and names).
fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(i) if !line[..i].contains('"') => &line[..i],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_agrees_with_counting_at_every_offset() {
        for text in [
            "",
            "\n",
            "a",
            "a\nb",
            "[daemon]\ninterfaces = []\n\n\nx = 1",
            "\n\nab\n",
        ] {
            let index = LineIndex::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    index.line(offset),
                    line_of(text, offset),
                    "{text:?} @ {offset}"
                );
            }
        }
    }
}
