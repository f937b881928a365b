//! `kube-xdp top`: services and backends with per-second rates of packets,
//! bytes and new flows, refreshed like `top`. Reads the pinned maps, so it
//! works from any shell on the host, daemon running or not.

use crate::{Common, PinArgs};
use kube_xdp::{metrics::top as view, view::Names};
use std::{
    io::{IsTerminal, Write},
    time::{Duration, SystemTime},
};

/// Home the cursor and clear the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

pub fn top(
    common: &Common,
    pins: &PinArgs,
    once: bool,
    interval: Duration,
    frames: Option<u64>,
) -> anyhow::Result<()> {
    let (maps, names) = pins.open(common)?;
    let (run_dir, pin_path) = (common.run_dir(), pins.resolve(common));
    // Escapes only for a live view on a terminal; `--once` and pipes get
    // plain frames.
    let live = !once && std::io::stdout().is_terminal();
    let mut prev = maps.snapshot(names.as_ref())?;
    let mut shown = 0u64;
    loop {
        std::thread::sleep(interval);
        // Re-read the names each time: they follow a reload.
        let names = Names::load(&run_dir, &pin_path);
        let cur = maps.snapshot(names.as_ref())?;
        let text = view::render(&view::frame(&prev, &cur, SystemTime::now()));
        let mut out = std::io::stdout().lock();
        if live {
            write!(out, "{CLEAR}{text}")?;
        } else {
            if shown > 0 {
                writeln!(out)?;
            }
            write!(out, "{text}")?;
        }
        out.flush()?;
        shown += 1;
        if once || frames.is_some_and(|n| shown >= n) {
            return Ok(());
        }
        prev = cur;
    }
}
