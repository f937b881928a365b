//! Values as a person writes them, shared by the configuration's error
//! messages and the plan `kube-xdp check-config` prints, so that both say
//! a duration the way the file does.

use std::fmt::Write;
use std::time::Duration;

/// "24h", "10s", "1m30s", "500ms": the largest units that divide exactly.
pub(crate) fn duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d.subsec_nanos() != 0 {
        return humantime::format_duration(d).to_string().replace(' ', "");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            let _ = write!(out, "{value}{unit}");
        }
    }
    out
}
