//! `[kubernetes]`: Services of type LoadBalancer from the cluster — how to
//! reach the API server, which Services to take, the address pools their
//! addresses come from, how node backends are checked, which nodes serve.

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;

use super::schema::{HealthCheck, Lines};

/// Default `load_balancer_class`: the Services that name it are ours.
pub const DEFAULT_LOAD_BALANCER_CLASS: &str = "kube-xdp.io/lb";
/// kube-proxy's health endpoint on every node (`--healthz-bind-address`).
pub const KUBE_PROXY_HEALTHZ_PORT: u16 = 10256;
/// The most addresses one pool may hold (a /16): allocation walks them.
pub const MAX_POOL_ADDRESSES: u64 = 65_536;

/// `[kubernetes]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// `None`: in-cluster config, else `$KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Services whose `spec.loadBalancerClass` is this are handled.
    pub load_balancer_class: String,
    /// Also take Services of type LoadBalancer without a class.
    pub handle_classless: bool,
    /// Only nodes matching this label selector serve (on top of Ready and
    /// not excluded); `None`: every node.
    pub node_selector: Option<LabelSelector>,
    /// `[[kubernetes.address_pool]]`, in file order (the order allocation
    /// tries them in).
    pub address_pools: Vec<AddressPool>,
    /// How node backends are checked (default: kube-proxy's
    /// `http://NODE:10256/healthz`); for `externalTrafficPolicy: Local`
    /// the port is the Service's `healthCheckNodePort`.
    pub health_check: HealthCheck,
    pub lines: Lines,
}

/// One `[[kubernetes.address_pool]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    pub name: String,
    /// The addresses, in the order written; disjoint from every other
    /// pool's.
    pub ranges: Vec<AddressRange>,
    /// Only Services in these namespaces; empty: any namespace.
    pub namespaces: Vec<String>,
    /// `false`: only Services that ask for this pool (the
    /// `kube-xdp.io/address-pool` annotation) or for one of its addresses.
    pub auto_assign: bool,
    pub lines: Lines,
}

impl AddressPool {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        self.ranges.iter().any(|r| r.contains(addr))
    }

    /// Every address, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ranges.iter().flat_map(|r| r.iter())
    }

    /// Whether a Service in `namespace` may draw from it.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}

/// An inclusive range of IPv4 addresses, written `"10.0.0.0/28"` or
/// `"10.0.0.5-10.0.0.9"` (or one address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRange {
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
}

impl AddressRange {
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        (u32::from(self.first)..=u32::from(self.last)).contains(&u32::from(addr))
    }

    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.last) - u32::from(self.first)) + 1
    }

    /// Always false: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn overlaps(&self, other: &AddressRange) -> bool {
        u32::from(self.first) <= u32::from(other.last)
            && u32::from(other.first) <= u32::from(self.last)
    }

    pub fn iter(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.first)..=u32::from(self.last)).map(Ipv4Addr::from)
    }
}

impl FromStr for AddressRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let addr = |s: &str| {
            s.trim()
                .parse::<Ipv4Addr>()
                .map_err(|_| format!("{:?} is not an IPv4 address", s.trim()))
        };
        if let Some((base, len)) = text.split_once('/') {
            let base = addr(base)?;
            let len: u32 = len
                .trim()
                .parse()
                .ok()
                .filter(|l| *l <= 32)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0-32"))?;
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            if u32::from(base) & !mask != 0 {
                return Err(format!(
                    "{text:?} has host bits set: the network is {}/{len}",
                    Ipv4Addr::from(u32::from(base) & mask)
                ));
            }
            return Ok(AddressRange {
                first: base,
                last: Ipv4Addr::from(u32::from(base) | !mask),
            });
        }
        if let Some((a, b)) = text.split_once('-') {
            let (first, last) = (addr(a)?, addr(b)?);
            if u32::from(first) > u32::from(last) {
                return Err(format!("{text:?} is backwards: write \"{last}-{first}\""));
            }
            return Ok(AddressRange { first, last });
        }
        let one = addr(text).map_err(|_| {
            format!(
                "{text:?} is not an address range: write \"10.0.0.0/28\" or \"10.0.0.5-10.0.0.9\""
            )
        })?;
        Ok(AddressRange {
            first: one,
            last: one,
        })
    }
}

impl fmt::Display for AddressRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A label selector as `kubectl -l` takes it, equality- and set-less:
/// `key=value`, `key==value`, `key!=value`, `key` (exists), `!key` (does
/// not), comma-separated; every term must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    pub text: String,
    pub terms: Vec<LabelTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelTerm {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

impl LabelSelector {
    /// Whether a node with `labels` matches.
    pub fn matches<'a>(&self, mut label: impl FnMut(&str) -> Option<&'a str>) -> bool {
        self.terms.iter().all(|t| match t {
            LabelTerm::Equals(k, v) => label(k) == Some(v.as_str()),
            LabelTerm::NotEquals(k, v) => label(k) != Some(v.as_str()),
            LabelTerm::Exists(k) => label(k).is_some(),
            LabelTerm::NotExists(k) => label(k).is_none(),
        })
    }
}

impl FromStr for LabelSelector {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let key_ok = |k: &str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        };
        let value_ok = |v: &str| {
            v.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        };
        let mut terms = Vec::new();
        for term in text.split(',') {
            let term = term.trim();
            let parsed = if let Some((k, v)) = term.split_once("!=") {
                LabelTerm::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                LabelTerm::Equals(k.trim().into(), v.trim().into())
            } else if let Some(k) = term.strip_prefix('!') {
                LabelTerm::NotExists(k.trim().into())
            } else {
                LabelTerm::Exists(term.into())
            };
            let (key, value) = match &parsed {
                LabelTerm::Equals(k, v) | LabelTerm::NotEquals(k, v) => (k, Some(v)),
                LabelTerm::Exists(k) | LabelTerm::NotExists(k) => (k, None),
            };
            if !key_ok(key) || !value.is_none_or(|v| value_ok(v)) {
                return Err(format!(
                    "{term:?} is not a label selector term: write key=value, key!=value, key or !key, \
                     separated by commas (set-based terms such as `in (...)` are not supported)"
                ));
            }
            terms.push(parsed);
        }
        Ok(LabelSelector {
            text: text.trim().to_owned(),
            terms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> Result<AddressRange, String> {
        s.parse()
    }

    #[test]
    fn address_ranges_are_cidrs_dash_ranges_or_one_address() {
        let r = range("198.18.100.0/30").unwrap();
        assert_eq!(
            r.iter().collect::<Vec<_>>(),
            [
                "198.18.100.0",
                "198.18.100.1",
                "198.18.100.2",
                "198.18.100.3"
            ]
            .map(|a| a.parse::<Ipv4Addr>().unwrap())
        );
        assert_eq!(range("198.18.100.5-198.18.100.9").unwrap().len(), 5);
        assert_eq!(range("198.18.100.7").unwrap().len(), 1);
        assert_eq!(range("198.18.100.7/32").unwrap().len(), 1);
        assert!(range("198.18.100.1/30").unwrap_err().contains("host bits"));
        assert!(
            range("198.18.100.9-198.18.100.5")
                .unwrap_err()
                .contains("backwards")
        );
        assert!(range("198.18.100.0/33").is_err());
        assert!(range("pool").unwrap_err().contains("not an address range"));
        assert!(range("198.18.100.0-x").unwrap_err().contains("not an IPv4"));
    }

    #[test]
    fn label_selectors_take_kubectls_equality_terms() {
        let s: LabelSelector = "role=lb, zone!=b,edge,!excluded".parse().unwrap();
        let labels = [("role", "lb"), ("zone", "a"), ("edge", "")];
        let get = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v);
        assert!(s.matches(get));
        let labels = [("role", "lb"), ("zone", "b"), ("edge", "")];
        let get = |k: &str| labels.iter().find(|(l, _)| *l == k).map(|(_, v)| *v);
        assert!(!s.matches(get));
        assert!("a in (b)".parse::<LabelSelector>().is_err());
        assert!("=x".parse::<LabelSelector>().is_err());
    }
}
