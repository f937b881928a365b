//! The `stats_*` keys of `[daemon]`.

use super::{At, Validator};
use crate::config::raw::Field;
use crate::config::stats::{self, StatsAuth, StatsConfig};

/// The raw `stats_*` fields of `[daemon]`.
pub(super) struct RawStats {
    pub listen: Field<String>,
    pub uri: Field<String>,
    pub refresh: Field<String>,
    pub auth: Field<String>,
    pub hide_version: Field<bool>,
}

impl Validator<'_> {
    pub(super) fn stats(&mut self, at: &mut At<'_>, raw: RawStats) -> StatsConfig {
        let mut config = StatsConfig::default();
        if let Some((text, line)) = self.take(at, "stats_listen", raw.listen) {
            match stats::parse_listen(text.trim()) {
                Ok(addr) => config.listen = Some(addr),
                Err(e) => self.error(Some(line), "daemon", "stats_listen", e),
            }
        }
        if let Some((text, line)) = self.take(at, "stats_uri", raw.uri) {
            match stats::check_uri(&text) {
                Ok(()) => config.uri = text,
                Err(e) => self.error(Some(line), "daemon", "stats_uri", e),
            }
        }
        config.refresh = self.duration(at, "stats_refresh", raw.refresh, config.refresh, false);
        if let Some((text, line)) = self.take(at, "stats_auth", raw.auth) {
            match StatsAuth::parse(&text) {
                Ok(auth) => config.auth = Some(auth),
                Err(e) => self.error(Some(line), "daemon", "stats_auth", e),
            }
        }
        if let Some((hide, _)) = self.take(at, "stats_hide_version", raw.hide_version) {
            config.hide_version = hide;
        }
        config
    }
}
