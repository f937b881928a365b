//! `kube-xdp import-haproxy`: an existing haproxy.cfg as kube-xdp.toml.
//!
//! Pure: text in, TOML and notes out; the environment (for `${VAR}`) and
//! the salt of password hashes are handed in. The stages: `lex` (words,
//! quoting, continuations, variables) → `sections` (proxies with their
//! `defaults` applied) → `translate` (services from `service.rs`, checks
//! from `check.rs`, the stats page and timeouts from `daemon.rs`, each
//! choice recorded as a [`Note`]) → `emit` (the TOML, the notes as
//! comments). The result parses with [`crate::config::Config::parse`].

mod addr;
mod check;
mod daemon;
mod emit;
mod lex;
mod model;
mod sections;
mod server;
mod service;
mod translate;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

pub use emit::STATS_KEYS_ACCEPTED;
pub use model::{Note, NoteKind};

/// What the file cannot say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The VIP for binds on every address (`bind *:6443`); `None`: a
    /// placeholder `check-config` refuses.
    pub vip: Option<Ipv4Addr>,
    /// `[daemon] interfaces`.
    pub interface: String,
    /// Whether `interface` was given (else it is the default, eth0).
    pub interface_given: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            vip: None,
            interface: "eth0".into(),
            interface_given: false,
        }
    }
}

/// A translated file.
#[derive(Debug, Clone)]
pub struct Import {
    /// kube-xdp.toml.
    pub toml: String,
    /// What was translated, approximated and left out, in file order.
    pub notes: Vec<Note>,
    pub services: usize,
    pub backends: usize,
}

/// Why nothing could be written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{source_name}: no TCP frontend or listen section with a bind kube-xdp can serve: nothing to translate\n{summary}"
    )]
    NothingUsable {
        source_name: String,
        /// The notes, as [`Import::summary`] writes them.
        summary: String,
    },
}

/// Translates haproxy.cfg `text`, read from a file named `source_name`
/// (named in the header comment and the summary).
///
/// # Errors
///
/// [`ImportError::NothingUsable`] when no service could be made.
pub fn import(
    source_name: &str,
    text: &str,
    options: &Options,
    env: &dyn Fn(&str) -> Option<String>,
    salt: &dyn Fn() -> String,
) -> Result<Import, ImportError> {
    let lexed = lex::lex(text, env);
    let mut t = translate::Translator {
        options,
        notes: Vec::new(),
        names: BTreeSet::new(),
        salt,
    };
    let mut unset_notes = Vec::new();
    for (name, line) in &lexed.unset {
        unset_notes.push(t.note(
            NoteKind::LeftOut,
            *line,
            format!("${{{name}}} (line {line}) is not set in the environment: export it and import again"),
        ));
    }
    let (before, sections) = sections::sections(lexed.lines);
    let proxies = sections::proxies(&sections);
    let mut doc = t.document(&before, &sections, &proxies);
    doc.source = source_name.to_owned();
    doc.header.splice(0..0, unset_notes);
    let mut notes = t.notes;
    notes.sort_by_key(|n| n.line);
    let import = Import {
        toml: emit::toml(&doc),
        services: doc.services.len(),
        backends: doc
            .services
            .iter()
            .map(|s| s.backends.iter().filter(|b| !b.commented_out).count())
            .sum(),
        notes,
    };
    if import.services == 0 {
        return Err(ImportError::NothingUsable {
            source_name: source_name.to_owned(),
            summary: import.summary(source_name),
        });
    }
    Ok(import)
}

impl Import {
    /// The summary for stderr: the notes grouped as translated,
    /// approximated and left out, each with its line.
    pub fn summary(&self, source_name: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{source_name}: {} service{}, {} backend{}",
            self.services,
            if self.services == 1 { "" } else { "s" },
            self.backends,
            if self.backends == 1 { "" } else { "s" },
        );
        for (kind, title) in [
            (NoteKind::Translated, "translated"),
            (NoteKind::Approximated, "approximated (check these)"),
            (NoteKind::LeftOut, "left out"),
        ] {
            let notes: Vec<&Note> = self.notes.iter().filter(|n| n.kind == kind).collect();
            if notes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "{title}:");
            for n in notes {
                if n.line > 0 {
                    let _ = writeln!(out, "  {source_name}:{}: {}", n.line, n.text);
                } else {
                    let _ = writeln!(out, "  {}", n.text);
                }
            }
        }
        out
    }
}

/// 16 characters for a SHA-512 crypt salt from the kernel's random
/// source.
///
/// # Errors
///
/// When /dev/urandom cannot be read.
pub fn random_salt() -> std::io::Result<String> {
    use std::io::Read as _;
    const ALPHABET: &[u8] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}
