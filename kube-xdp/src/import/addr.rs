//! HAProxy's values: durations (`2s`, `500`, `1m`), `bind` address lists
//! (`*:6443`, `198.18.0.10:80,198.18.0.10:443`, `:30000-32767`) and
//! server addresses (`198.18.0.11:6443`, `cp1.example:6443`, a bare
//! address that keeps the client's port).

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::config::PortRange;

/// A HAProxy time: a number with an optional unit (`us`, `ms`, `s`, `m`,
/// `h`, `d`; none means milliseconds).
pub fn duration(text: &str) -> Option<Duration> {
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().ok()?;
    Some(match unit {
        "" | "ms" => Duration::from_millis(n),
        "us" => Duration::from_micros(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        "d" => Duration::from_secs(n * 86400),
        _ => return None,
    })
}

/// A duration as kube-xdp's files write it: the largest whole unit.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return format!("{}us", d.as_micros());
    }
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Where a `bind` listens: one address (or every address) and its ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// `None`: every address (`*`, `0.0.0.0`, `::`, or none written).
    pub addr: Option<Ipv4Addr>,
    pub ports: PortRange,
}

/// Why a `bind` element cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    #[error("{0:?} is an IPv6 address: kube-xdp serves IPv4 only so far")]
    Ipv6(String),
    #[error(
        "{0:?} is not a network address (UNIX sockets and file descriptors have no kube-xdp equivalent)"
    )]
    NotInet(String),
    #[error("{0:?} has no port")]
    NoPort(String),
    #[error("{0:?} is not a port or port range")]
    BadPort(String),
    #[error("{0:?} is not an IPv4 address or host name")]
    BadAddress(String),
    #[error(
        "{0:?} is a port offset (`+N`/`-N`): kube-xdp forwards to a fixed port or the client's"
    )]
    PortOffset(String),
}

/// The elements of a `bind` address list, each parsed.
pub fn bind_list(list: &str) -> Vec<(String, Result<Listen, AddrError>)> {
    list.split(',')
        .filter(|e| !e.is_empty())
        .map(|element| (element.to_owned(), bind_element(element)))
        .collect()
}

fn bind_element(element: &str) -> Result<Listen, AddrError> {
    let (family, rest) = match element.split_once('@') {
        Some((family, rest)) => (family, rest),
        None => ("", element),
    };
    match family {
        "" | "ipv4" | "tcp" | "tcp4" => {}
        "ipv6" | "tcp6" => return Err(AddrError::Ipv6(element.to_owned())),
        _ => return Err(AddrError::NotInet(element.to_owned())),
    }
    let (host, ports) = rest
        .rsplit_once(':')
        .ok_or_else(|| AddrError::NoPort(element.to_owned()))?;
    let ports = match ports.split_once('-') {
        Some((a, b)) => a.parse().ok().zip(b.parse().ok()),
        None => ports.parse().ok().map(|p| (p, p)),
    }
    .and_then(|(a, b)| PortRange::new(a, b).ok())
    .filter(|r| r.first > 0)
    .ok_or_else(|| AddrError::BadPort(ports.to_owned()))?;
    let addr = match host {
        "" | "*" | "0.0.0.0" | "::" => None,
        h if h.contains(':') => return Err(AddrError::Ipv6(element.to_owned())),
        h => Some(
            h.parse::<Ipv4Addr>()
                .map_err(|_| AddrError::BadAddress(h.to_owned()))?,
        ),
    };
    Ok(Listen { addr, ports })
}

/// A server's address: an IPv4 address or a name, and a port (`None`:
/// the client's destination port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: Option<u16>,
}

pub fn server_address(text: &str) -> Result<Target, AddrError> {
    let rest = match text.split_once('@') {
        Some(("ipv4" | "tcp" | "tcp4", rest)) => rest,
        Some(("ipv6" | "tcp6", _)) => return Err(AddrError::Ipv6(text.to_owned())),
        Some(_) => return Err(AddrError::NotInet(text.to_owned())),
        None => text,
    };
    if rest.starts_with('/') {
        return Err(AddrError::NotInet(text.to_owned()));
    }
    if rest.matches(':').count() > 1 || rest.starts_with('[') {
        return Err(AddrError::Ipv6(text.to_owned()));
    }
    let (host, port) = match rest.split_once(':') {
        None => (rest, None),
        Some((_, port)) if port.starts_with(['+', '-']) => {
            return Err(AddrError::PortOffset(text.to_owned()));
        }
        Some((host, "")) => (host, None),
        Some((host, port)) => (
            host,
            Some(
                port.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| AddrError::BadPort(port.to_owned()))?,
            ),
        ),
    };
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if !valid {
        return Err(AddrError::BadAddress(host.to_owned()));
    }
    Ok(Target {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_default_to_milliseconds() {
        assert_eq!(duration("2000"), Some(Duration::from_secs(2)));
        assert_eq!(duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(duration("x"), None);
        assert_eq!(human(Duration::from_millis(1500)), "1500ms");
        assert_eq!(human(Duration::from_secs(7200)), "2h");
    }

    #[test]
    fn bind_lists_hold_addresses_ports_and_ranges() {
        let l = |a: Option<[u8; 4]>, first, last| {
            Ok(Listen {
                addr: a.map(Ipv4Addr::from),
                ports: PortRange { first, last },
            })
        };
        let parsed: Vec<_> = bind_list("*:6443,198.18.0.10:80,:30000-32767,ipv4@0.0.0.0:443")
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(
            parsed,
            vec![
                l(None, 6443, 6443),
                l(Some([198, 18, 0, 10]), 80, 80),
                l(None, 30000, 32767),
                l(None, 443, 443)
            ]
        );
        assert!(matches!(
            bind_element("2001:db8::1:6443"),
            Err(AddrError::Ipv6(_))
        ));
        assert_eq!(bind_element(":::6443").map(|l| l.addr), Ok(None));
        assert!(matches!(
            bind_element("unix@/x"),
            Err(AddrError::NotInet(_))
        ));
        assert!(matches!(bind_element("1.2.3.4"), Err(AddrError::NoPort(_))));
    }

    #[test]
    fn server_addresses_may_omit_the_port() {
        assert_eq!(
            server_address("198.18.0.11:6443").unwrap(),
            Target {
                host: "198.18.0.11".into(),
                port: Some(6443)
            }
        );
        assert_eq!(server_address("cp1.example").unwrap().port, None);
        assert!(server_address("198.18.0.11:+1000").is_err());
        assert!(server_address("${HOST1_ADDRESS}").is_err());
    }
}
