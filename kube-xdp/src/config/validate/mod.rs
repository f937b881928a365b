//! From the raw file to a [`Config`]: defaults, types, ranges and the
//! checks across tables, collecting every problem with its line and key.
//!
//! One module per part of the file: `daemon` (`[daemon]`, `[timeouts]`
//! and `[syn_flood]`), `services` (each `[[service]]` and the checks across
//! services), `health_check`, `backends`; `fields` turns raw values into
//! typed ones (integers, keywords, durations, paths, names, addresses) and
//! `syntax` words the errors the TOML parser stops at.

mod backends;
mod daemon;
mod fields;
mod ha;
pub(crate) use fields::usable_unicast;
mod health_check;
mod kubernetes;
mod services;
mod stats;
mod syntax;

use std::ops::Range;
use std::path::Path;

use super::raw::{LineIndex, RawConfig};
use super::schema::{Config, Lines};
use super::{ConfigIssue, Severity};

/// Parses and validates; every problem found on failure.
pub(super) fn validate(path: &Path, text: &str) -> Result<Config, Vec<ConfigIssue>> {
    // Syntax first, so that a syntax error is not blamed on a key.
    if let Err(e) = text.parse::<toml::Table>() {
        return Err(vec![syntax::issue(path, text, &e, true)]);
    }
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| vec![syntax::issue(path, text, &e, false)])?;
    let mut v = Validator {
        path,
        lines: LineIndex::new(text),
        issues: Vec::new(),
    };
    let daemon = v.daemon(raw.daemon);
    let timeouts = v.timeouts(raw.timeouts);
    let syn_flood = v.syn_flood(raw.syn_flood);
    let mut services = Vec::new();
    let mut facts = Vec::new();
    for (i, service) in raw.services.into_iter().enumerate() {
        let (service, fact) = v.service(i, service);
        services.push(service);
        facts.push(fact);
    }
    v.across_services(&services, &facts);
    v.snat_against_vips(&daemon, &services, &facts);
    let ha = v.ha(raw.ha, &daemon, &services);
    let kubernetes = v.kubernetes(raw.kubernetes, &daemon, ha.as_ref(), &services);
    if v.issues.is_empty() {
        Ok(Config {
            path: path.to_owned(),
            daemon,
            timeouts,
            syn_flood,
            services,
            ha,
            kubernetes,
        })
    } else {
        // In file order; problems without a line first.
        v.issues.sort_by_key(|issue| issue.line);
        Err(v.issues)
    }
}

/// The file being validated, and every problem found so far.
struct Validator<'a> {
    path: &'a Path,
    lines: LineIndex,
    issues: Vec<ConfigIssue>,
}

/// Where a problem is: the table (as a person names it) and its lines.
struct At<'l> {
    context: String,
    lines: &'l mut Lines,
}

impl Validator<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.lines.line(span.start)
    }

    fn error(&mut self, line: Option<usize>, context: &str, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            severity: Severity::Error,
            path: self.path.to_owned(),
            line: line.filter(|l| *l > 0),
            context: context.to_owned(),
            key: key.to_owned(),
            message: message.into(),
        });
    }
}
