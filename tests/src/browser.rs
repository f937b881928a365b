//! A real browser for the tests: Debian's `chromium` in headless mode,
//! run inside a namespace (`nsenter --net`) so that it reaches what
//! listens on that namespace's loopback. `cargo xtask setup` installs it.
//!
//! Each run gets a profile directory of its own (removed afterwards) and
//! is bounded by `timeout`, so a hung browser fails the test instead of
//! hanging it.

use crate::netns::Netns;
use anyhow::{Context, bail};
use std::path::Path;

/// The longest a browser run may take.
const LIMIT_SECONDS: &str = "60";

fn chromium(ns: &Netns, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let profile = tempfile::Builder::new().prefix("kxdp-chromium").tempdir()?;
    let out = ns
        .command("timeout")
        .args(["-k", "5", LIMIT_SECONDS, "chromium"])
        // As root there is no user namespace sandbox to drop into; the
        // browser only ever loads the test's own loopback page.
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .args([
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .output()
        .context("running chromium (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!(
            "chromium {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The page at `url` as the browser built it (`--dump-dom`: the DOM after
/// the page loaded, serialized).
///
/// # Errors
///
/// When chromium is missing, fails, or takes over a minute.
pub fn dump_dom(ns: &Netns, url: &str) -> anyhow::Result<String> {
    let out = chromium(ns, &["--dump-dom", url])?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A PNG of the page at `url` in a `width`×`height` window, written to
/// `file`.
///
/// # Errors
///
/// When chromium is missing, fails, or writes no file.
pub fn screenshot(
    ns: &Netns,
    url: &str,
    file: &Path,
    (width, height): (u32, u32),
) -> anyhow::Result<()> {
    chromium(
        ns,
        &[
            &format!("--screenshot={}", file.display()),
            &format!("--window-size={width},{height}"),
            url,
        ],
    )?;
    anyhow::ensure!(file.exists(), "chromium wrote no {}", file.display());
    Ok(())
}

/// The text of each cell of the element whose `id` is `id` (a table row):
/// tags dropped, entities left as the DOM serializes them, whitespace
/// trimmed — what a person reads along the row. `None` without such an
/// element.
pub fn row_cells(dom: &str, id: &str) -> Option<Vec<String>> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let start = start + dom[start..].find('>')? + 1;
    let end = start + dom[start..].find("</tr>")?;
    let mut cells: Vec<String> = dom[start..end].split("</td>").map(text).collect();
    // What follows the last cell.
    cells.pop();
    Some(cells)
}

/// The text of the cell right after the header cell `<th>label</th>`.
pub fn cell_after(dom: &str, label: &str) -> Option<String> {
    let start = dom.find(&format!("<th>{label}</th><td>"))? + label.len() + 13;
    let end = start + dom[start..].find("</td>")?;
    Some(text(&dom[start..end]))
}

/// `html` without its tags, trimmed.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}
