//! Typed values out of raw fields: integers in a range, keywords,
//! durations, absolute paths, names and unicast addresses. Each records
//! the key's line and reports what is wrong with it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{At, Validator};
use crate::config::UnknownKeyword;
use crate::config::raw::Field;
use crate::config::schema::MAX_NAME_LEN;

/// The longest duration any key takes.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Validator<'_> {
    /// Records where `key` is and hands back its value and line.
    pub(super) fn take<T>(
        &self,
        at: &mut At<'_>,
        key: &str,
        field: Field<T>,
    ) -> Option<(T, usize)> {
        let field = field?;
        let line = self.line(field.span());
        at.lines.keys.insert(key.to_owned(), line);
        Some((field.into_inner(), line))
    }

    /// An integer within `min..=max` (`hint` follows the complaint).
    pub(super) fn int<T: TryFrom<i64>>(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<i64>,
        (min, max): (i64, i64),
        hint: &str,
    ) -> Option<T> {
        let (value, line) = self.take(at, key, field)?;
        let complaint = if value < min {
            format!("must be at least {min} (got {value})")
        } else if value > max {
            format!("must be at most {max} (got {value})")
        } else {
            return T::try_from(value).ok();
        };
        self.error(Some(line), &at.context, key, format!("{complaint}{hint}"));
        None
    }

    pub(super) fn keyword<T: FromStr<Err = UnknownKeyword>>(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<String>,
        default: T,
    ) -> T {
        let Some((text, line)) = self.take(at, key, field) else {
            return default;
        };
        match text.parse() {
            Ok(value) => value,
            Err(e) => {
                self.error(Some(line), &at.context, key, e.to_string());
                default
            }
        }
    }

    /// A duration such as "2s", "500ms", "24h" (humantime's syntax, as
    /// `humantime-serde` reads it).
    pub(super) fn duration(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<String>,
        default: Duration,
        allow_zero: bool,
    ) -> Duration {
        let Some((text, line)) = self.take(at, key, field) else {
            return default;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.error(Some(line), &at.context, key, "must be longer than 0");
                default
            }
            // Beyond that, timeouts add up past the datapath's u64
            // nanoseconds and timers past tokio's Instant.
            Ok(d) if d > MAX_DURATION => {
                self.error(
                    Some(line),
                    &at.context,
                    key,
                    format!("must be at most 30 days (got {})", text.trim()),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.error(
                    Some(line),
                    &at.context,
                    key,
                    format!("{text:?} is not a duration ({e}): write e.g. \"500ms\", \"2s\", \"10m\", \"24h\""),
                );
                default
            }
        }
    }

    /// An absolute path.
    pub(super) fn abs_path(
        &mut self,
        at: &mut At<'_>,
        key: &str,
        field: Field<String>,
        default: &str,
    ) -> PathBuf {
        let Some((text, line)) = self.take(at, key, field) else {
            return PathBuf::from(default);
        };
        if !text.starts_with('/') {
            self.error(
                Some(line),
                &at.context,
                key,
                format!("{text:?} must be an absolute path (the default is {default:?})"),
            );
            return PathBuf::from(default);
        }
        PathBuf::from(text)
    }

    /// A service or backend name: 1-63 letters, digits, '.', '_', '-'
    /// (it names things in logs, metrics and `kube-xdp backends`).
    pub(super) fn name(
        &mut self,
        at: &mut At<'_>,
        field: Field<String>,
        what: &str,
        example: &str,
    ) -> Option<String> {
        let table = at.lines.table;
        let Some((name, line)) = self.take(at, "name", field) else {
            self.error(
                Some(table),
                &at.context,
                "name",
                format!("is required: give the {what} a name, e.g. name = {example:?}"),
            );
            return None;
        };
        let problem = if name.is_empty() {
            Some("is empty".to_owned())
        } else if name.len() > MAX_NAME_LEN {
            Some(format!("is longer than {MAX_NAME_LEN} characters"))
        } else if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            Some("may only hold letters, digits, '.', '_' and '-'".to_owned())
        } else {
            None
        };
        match problem {
            Some(problem) => {
                self.error(
                    Some(line),
                    &at.context,
                    "name",
                    format!("{name:?} {problem} (it names the {what} in logs and metrics)"),
                );
                None
            }
            None => Some(name),
        }
    }
}

/// Not 0.0.0.0, loopback, multicast, broadcast or 240/4: an address a
/// packet on the wire can be from or to.
pub(crate) fn usable_unicast(addr: Ipv4Addr) -> bool {
    !(addr.octets()[0] == 0
        || addr.is_loopback()
        || addr.is_multicast()
        || addr.is_broadcast()
        || addr.octets()[0] >= 240)
}
