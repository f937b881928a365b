//! The rules a backend's address meets, written or resolved, and which of
//! a name's DNS answers a backend takes.

use std::io;
use std::net::Ipv4Addr;

use crate::config::Config;

/// Why `addr` cannot be a backend address (it would point the load
/// balancer at itself, or is no unicast host), or `None`. `local` holds
/// the host's addresses.
pub(super) fn address_problem(
    config: &Config,
    local: &[Ipv4Addr],
    addr: Ipv4Addr,
) -> Option<String> {
    if !crate::config::usable_unicast(addr) {
        Some("cannot be a backend address".to_owned())
    } else if let Some(s) = config.services.iter().find(|s| s.vip == addr) {
        Some(format!(
            "is the VIP of service {:?}: the load balancer would forward to itself",
            s.name
        ))
    } else if local.contains(&addr) {
        Some("is an address of this host: the load balancer would forward to itself".to_owned())
    } else {
        None
    }
}

/// Why none of a name's answers will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unusable {
    /// No answer: the name does not resolve (now), or has no IPv4
    /// address.
    NoAnswer(String),
    /// Every answer is an address a backend may not have.
    Forbidden(String),
}

impl Unusable {
    pub(super) fn message(&self) -> &str {
        match self {
            Unusable::NoAnswer(m) | Unusable::Forbidden(m) => m,
        }
    }
}

/// The address a hostname backend takes from DNS's `answers`: `current`
/// while it is still among them and still allowed (a resolver that
/// rotates its A records must not move the backend: each move drains it
/// and starts it DOWN), else the first answer that may be a backend
/// address.
///
/// # Errors
///
/// Why none of the answers will do, in the operator's words.
pub(super) fn pick_address(
    config: &Config,
    local: &[Ipv4Addr],
    name: &str,
    answers: &io::Result<Vec<Ipv4Addr>>,
    current: Option<Ipv4Addr>,
) -> Result<Ipv4Addr, Unusable> {
    let answers = match answers {
        Ok(answers) if !answers.is_empty() => answers,
        Ok(_) => return Err(Unusable::NoAnswer(format!("{name:?} has no IPv4 address"))),
        Err(e) => {
            return Err(Unusable::NoAnswer(format!(
                "{name:?} does not resolve ({e})"
            )));
        }
    };
    let allowed = |addr: Ipv4Addr| address_problem(config, local, addr).is_none();
    if let Some(current) = current
        && answers.contains(&current)
        && allowed(current)
    {
        return Ok(current);
    }
    if let Some(addr) = answers.iter().copied().find(|a| allowed(*a)) {
        return Ok(addr);
    }
    let first = answers[0];
    let why = address_problem(config, local, first).unwrap_or_default();
    Err(Unusable::Forbidden(format!(
        "{name:?} resolves to {first}, which {why}"
    )))
}
