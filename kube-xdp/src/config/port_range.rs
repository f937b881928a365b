//! Inclusive port ranges (`ports`, `snat_ports`), written `"A-B"` or `"A"`.

use std::fmt;
use std::str::FromStr;

/// An inclusive range of ports, `first <= last`, neither 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// The range `first..=last`.
    ///
    /// # Errors
    ///
    /// When a port is 0 or `first > last`.
    pub fn new(first: u16, last: u16) -> Result<PortRange, ParsePortRangeError> {
        if first == 0 || last == 0 {
            return Err(ParsePortRangeError(
                "port 0 is not a port: ports are 1-65535".into(),
            ));
        }
        if first > last {
            return Err(ParsePortRangeError(format!(
                "\"{first}-{last}\" is backwards: the first port must not be above the last \
                 (write \"{last}-{first}\")"
            )));
        }
        Ok(PortRange { first, last })
    }

    /// Number of ports (at least 1).
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// True when some port is in both.
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }

    /// The ports, in order.
    pub fn iter(&self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

/// Why a port range did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParsePortRangeError(pub String);

/// `"A-B"`, or `"A"` for a single port.
impl FromStr for PortRange {
    type Err = ParsePortRangeError;

    fn from_str(s: &str) -> Result<PortRange, ParsePortRangeError> {
        let text = s.trim();
        if text.is_empty() {
            return Err(ParsePortRangeError(
                "is empty: write a range like \"30000-32767\"".into(),
            ));
        }
        let port = |part: &str| -> Result<u16, ParsePortRangeError> {
            let part = part.trim();
            match part.parse::<u32>() {
                Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
                Ok(n) => Err(ParsePortRangeError(format!(
                    "port {n} is out of range: ports are 1-65535"
                ))),
                Err(_) => Err(ParsePortRangeError(format!(
                    "{s:?} is not a port range: write \"A-B\", e.g. \"30000-32767\""
                ))),
            }
        };
        let (first, last) = match text.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => {
                let p = port(text)?;
                (p, p)
            }
        };
        PortRange::new(first, last)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            f.pad(&self.first.to_string())
        } else {
            f.pad(&format!("{}-{}", self.first, self.last))
        }
    }
}
