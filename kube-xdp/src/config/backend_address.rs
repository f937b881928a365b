//! A backend's `address`: an IPv4 address or an RFC 1123 hostname.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// A backend's `address`: an IPv4 address or a hostname (resolved at load
/// and periodically after).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BackendAddress {
    Ip(Ipv4Addr),
    Hostname(String),
}

impl FromStr for BackendAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<Ipv4Addr>() {
            return Ok(BackendAddress::Ip(ip));
        }
        if s.contains(':') {
            return Err(format!(
                "{s:?} is not an IPv4 address nor a hostname (IPv6 backends are not supported yet)"
            ));
        }
        match hostname_problem(s) {
            None => Ok(BackendAddress::Hostname(s.to_owned())),
            Some(why) => Err(format!(
                "{s:?} is neither an IPv4 address nor a valid hostname ({why})"
            )),
        }
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendAddress::Ip(ip) => f.pad(&ip.to_string()),
            BackendAddress::Hostname(name) => f.pad(name),
        }
    }
}

/// Why `name` is not a hostname by RFC 1123 (letters, digits and hyphens
/// in dot-separated labels of 1-63 characters, no label starting or ending
/// with a hyphen, at most 253 characters, an optional final dot), and not
/// a mistyped IPv4 address (an all-numeric last label, RFC 3696 §2).
pub(crate) fn hostname_problem(name: &str) -> Option<String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Some("it is empty".into());
    }
    if bare.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Some("it has an empty label".into());
        }
        if label.len() > 63 {
            return Some(format!("label {label:?} is longer than 63 characters"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !c.is_ascii_alphanumeric() && *c != '-')
        {
            return Some(format!("{c:?} is not allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!("label {label:?} starts or ends with '-'"));
        }
    }
    let last = bare.rsplit('.').next().unwrap_or(bare);
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Some("it looks like an IPv4 address but is not one".into());
    }
    None
}
