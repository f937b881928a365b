//! The errors `toml` stops at (a syntax error, an unknown key, a value of
//! the wrong type), in the words of the file, with the key most likely
//! meant.

use std::path::Path;

use crate::config::raw::{line_of, locate};
use crate::config::{ConfigIssue, Severity};

/// A syntax error, an unknown key or a wrongly typed value, from `toml`.
pub(super) fn issue(path: &Path, text: &str, error: &toml::de::Error, syntax: bool) -> ConfigIssue {
    let offset = error.span().map(|span| span.start);
    let (context, mut key) = offset.map(|o| locate(text, o)).unwrap_or_default();
    let mut message = error.message().trim().replace('\n', ": ");
    if syntax {
        key.clear();
        let column = offset.map_or(0, |o| {
            let o = o.min(text.len());
            o - text[..o].rfind('\n').map_or(0, |nl| nl + 1) + 1
        });
        message = format!("TOML syntax error at column {column}: {message}");
    } else if let Some((unknown, known)) = unknown_field(&message) {
        key = unknown.clone();
        message = match closest(&unknown, &known) {
            Some(near) => format!(
                "unknown key; did you mean {near:?}? This table takes: {}",
                known.join(", ")
            ),
            None => format!("unknown key; this table takes: {}", known.join(", ")),
        };
    } else {
        message = friendly_types(&message);
    }
    ConfigIssue {
        severity: Severity::Error,
        path: path.to_owned(),
        line: offset.map(|o| line_of(text, o)),
        context,
        key,
        message,
    }
}

/// "unknown field `x`, expected one of `a`, `b`" → ("x", ["a", "b"]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let mut quoted = rest.split('`').step_by(2).map(str::to_owned);
    let name = quoted.next()?;
    Some((name, quoted.filter(|s| !s.is_empty()).collect()))
}

/// Serde's type names in the words of a TOML file.
fn friendly_types(message: &str) -> String {
    let mut out = message
        .replace("expected i64", "expected an integer")
        .replace("expected a sequence", "expected an array")
        .replace("expected a map", "expected a table");
    while let Some(at) = out.find("expected struct Raw") {
        let end = out[at..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != ' ')
            .map_or(out.len(), |e| at + e);
        out.replace_range(at..end, "expected a table");
    }
    out
}

/// The known key nearest to a mistyped one, if near enough to be meant.
fn closest(word: &str, known: &[String]) -> Option<String> {
    if word.len() >= 3
        && let Some(k) = known
            .iter()
            .find(|k| k.starts_with(word) || word.starts_with(k.as_str()))
    {
        return Some(k.clone());
    }
    known
        .iter()
        .map(|k| (edit_distance(word, k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}
