//! `kube-xdp top`: per-second rates between two [`Snapshot`]s, and the
//! text frame that shows them. Pure functions; the command samples the
//! pinned maps and prints.

use std::{fmt::Write as _, time::SystemTime};

use kube_xdp_common::stats::Counter as DpCounter;

use crate::view::{BackendView, ServiceView, Snapshot};

/// Per-second rates of one service or backend.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    pub packets: f64,
    pub bytes: f64,
    pub new_flows: f64,
}

/// `(cur - prev) / seconds`; 0 when the counter went backwards (the maps
/// were recreated, or a slot reused) or no time passed.
pub fn rate(prev: u64, cur: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    cur.saturating_sub(prev) as f64 / seconds
}

fn rates(prev: (u64, u64, u64), cur: (u64, u64, u64), seconds: f64) -> Rates {
    Rates {
        packets: rate(prev.0, cur.0, seconds),
        bytes: rate(prev.1, cur.1, seconds),
        new_flows: rate(prev.2, cur.2, seconds),
    }
}

/// One backend line.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendRow {
    pub name: String,
    pub address: String,
    pub state: &'static str,
    pub weight: Option<u32>,
    pub share: f64,
    pub flows: u64,
    /// `None` when the backend was not in the previous sample.
    pub rates: Option<Rates>,
}

/// One service line and its backends.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRow {
    pub name: String,
    /// `VIP:port/proto` or `VIP:first-last/proto`.
    pub address: String,
    pub usable: usize,
    pub backends_total: usize,
    pub flows: u64,
    pub rates: Option<Rates>,
    pub backends: Vec<BackendRow>,
}

/// Everything one frame shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Wall-clock time of the frame (shown as UTC).
    pub time: SystemTime,
    /// Seconds between the two samples.
    pub seconds: f64,
    pub live_flows: u64,
    pub capacity: u32,
    /// Packets per second sent out by the datapath (`XDP_TX` + redirect).
    pub forwarded: f64,
    /// Packets per second left to the kernel.
    pub passed: f64,
    /// Packets per second dropped (drop + aborted).
    pub dropped: f64,
    /// SYNs per second answered with a SYN cookie (`syn_cookie_sent`).
    pub cookies_sent: f64,
    /// SYNs per second dropped over the half-open limit
    /// (`half_open_limited`).
    pub half_open_limited: f64,
    /// Live half-open flows.
    pub half_open: u64,
    pub services: Vec<ServiceRow>,
}

fn same_service(a: &ServiceView, b: &ServiceView) -> bool {
    a.name == b.name && a.vip == b.vip && a.first_port == b.first_port && a.protocol == b.protocol
}

fn backend_address(b: &BackendView) -> String {
    match b.port {
        Some(p) => format!("{}:{p}", b.address),
        None => format!("{}:*", b.address),
    }
}

/// The rates between `prev` and `cur`, taken at `time`.
pub fn frame(prev: &Snapshot, cur: &Snapshot, time: SystemTime) -> Frame {
    let seconds = cur
        .taken
        .saturating_duration_since(prev.taken)
        .as_secs_f64();
    let global = |cs: &[DpCounter]| {
        let sum = |s: &Snapshot| cs.iter().map(|c| s.counter(*c)).sum::<u64>();
        rate(sum(prev), sum(cur), seconds)
    };
    let services = cur
        .services
        .iter()
        .map(|s| {
            let before = prev.services.iter().find(|p| same_service(p, s));
            let backends = s
                .backends
                .iter()
                .map(|b| {
                    let was = before.and_then(|p| {
                        p.backends
                            .iter()
                            .find(|x| x.name == b.name && x.address == b.address)
                    });
                    BackendRow {
                        name: b.name.clone(),
                        address: backend_address(b),
                        state: b.state.name(),
                        weight: b.weight,
                        share: b.share,
                        flows: b.active_flows,
                        rates: was.map(|w| {
                            rates(
                                (w.packets, w.bytes, w.new_flows),
                                (b.packets, b.bytes, b.new_flows),
                                seconds,
                            )
                        }),
                    }
                })
                .collect();
            let ports = if s.first_port == s.last_port {
                s.first_port.to_string()
            } else {
                format!("{}-{}", s.first_port, s.last_port)
            };
            ServiceRow {
                name: s.name.clone(),
                address: format!("{}:{ports}/{}", s.vip, s.protocol),
                usable: s.usable_backends(),
                backends_total: s.backends.len(),
                flows: s.backends.iter().map(|b| b.active_flows).sum(),
                rates: before.map(|p| {
                    rates(
                        (p.packets, p.bytes, p.new_flows),
                        (s.packets, s.bytes, s.new_flows),
                        seconds,
                    )
                }),
                backends,
            }
        })
        .collect();
    Frame {
        time,
        seconds,
        live_flows: cur.live_flows,
        capacity: cur.capacity,
        forwarded: global(&[DpCounter::VerdictTx, DpCounter::VerdictRedirect]),
        passed: global(&[DpCounter::VerdictPass]),
        dropped: global(&[DpCounter::VerdictDrop, DpCounter::VerdictAborted]),
        cookies_sent: global(&[DpCounter::CookieSent]),
        half_open_limited: global(&[DpCounter::HalfOpenLimited]),
        half_open: cur.half_open_flows(),
        services,
    }
}

/// A rate, compactly: `0`, `7.5`, `812.0`, `12.3K`, `4.1M`, `2.0G`.
pub fn human_rate(v: f64) -> String {
    if v <= 0.0 || !v.is_finite() {
        return "0".to_owned();
    }
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = v;
    let mut unit = 0;
    while v >= 999.95 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// `HH:MM:SS` (UTC) of `time`.
pub fn clock(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

fn rate_cells(r: Option<Rates>) -> [String; 3] {
    match r {
        Some(r) => [
            human_rate(r.packets),
            human_rate(r.bytes),
            human_rate(r.new_flows),
        ],
        None => ["-".into(), "-".into(), "-".into()],
    }
}

/// The frame as text: a header (time, flows, global rates), then per
/// service a line of totals and one line per backend. No escape
/// sequences; lines end with `\n`.
pub fn render(f: &Frame) -> String {
    let mut out = String::new();
    let occupancy = if f.capacity == 0 {
        0.0
    } else {
        f.live_flows as f64 * 100.0 / f64::from(f.capacity)
    };
    let _ = writeln!(
        out,
        "kube-xdp top  {} UTC  rates over {:.1}s  flows {} live / {} ({:.1}%)",
        clock(f.time),
        f.seconds,
        f.live_flows,
        f.capacity,
        occupancy
    );
    let _ = writeln!(
        out,
        "packets/s: forwarded {}  passed {}  dropped {}",
        human_rate(f.forwarded),
        human_rate(f.passed),
        human_rate(f.dropped)
    );
    // Only while it matters: SYNs over the half-open limit.
    if f.cookies_sent > 0.0 || f.half_open_limited > 0.0 {
        let _ = writeln!(
            out,
            "SYN defence: cookies sent/s {}  dropped over the half-open limit/s {}  half-open flows {}",
            human_rate(f.cookies_sent),
            human_rate(f.half_open_limited),
            f.half_open
        );
    }
    let _ = writeln!(out);
    let name_w = f
        .services
        .iter()
        .flat_map(|s| {
            std::iter::once(s.name.len()).chain(s.backends.iter().map(|b| b.name.len() + 2))
        })
        .max()
        .unwrap_or(0)
        .max(16);
    let addr_w = f
        .services
        .iter()
        .flat_map(|s| {
            std::iter::once(s.address.len()).chain(s.backends.iter().map(|b| b.address.len()))
        })
        .max()
        .unwrap_or(0)
        .max(7);
    let _ = writeln!(
        out,
        "{:<name_w$}  {:<addr_w$}  {:<6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
        "NAME", "ADDRESS", "STATE", "WEIGHT", "SHARE", "FLOWS", "PKT/S", "BYTES/S", "NEW/S"
    );
    if f.services.is_empty() {
        let _ = writeln!(out, "(no services are programmed)");
    }
    for s in &f.services {
        let [p, b, n] = rate_cells(s.rates);
        let _ = writeln!(
            out,
            "{:<name_w$}  {:<addr_w$}  {:<6} {:>6} {:>6} {:>8} {:>8} {:>8} {:>8}",
            s.name,
            s.address,
            format!("{}/{}", s.usable, s.backends_total),
            "",
            "",
            s.flows,
            p,
            b,
            n
        );
        for be in &s.backends {
            let [p, b, n] = rate_cells(be.rates);
            let _ = writeln!(
                out,
                "{:<name_w$}  {:<addr_w$}  {:<6} {:>6} {:>5.1}% {:>8} {:>8} {:>8} {:>8}",
                format!("  {}", be.name),
                be.address,
                be.state,
                be.weight.map_or_else(|| "-".to_owned(), |w| w.to_string()),
                be.share * 100.0,
                be.flows,
                p,
                b,
                n
            );
        }
    }
    out
}
