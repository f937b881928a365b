//! The page as HTML: one self-contained document (inline style, no
//! script, nothing fetched from elsewhere) that reloads itself every
//! `stats_refresh` through `<meta http-equiv="refresh">`, laid out like
//! HAProxy's stats page: a header about the daemon, the totals, then one
//! table per service with a row per backend coloured by its state.

use std::fmt::Write as _;

use super::model::{BackendPage, Page, RatesPage, ServicePage};
use crate::metrics::top::human_rate;

const STYLE: &str = "\
body{font-family:sans-serif;font-size:13px;margin:12px;color:#111;background:#fff}\
h1{font-size:20px;margin:0 0 4px}\
h2{font-size:15px;margin:18px 0 4px}\
h2 .what{font-weight:normal;color:#333}\
.about{margin:0 0 10px;color:#333}\
.about b{color:#111}\
table{border-collapse:collapse;margin:4px 0}\
th,td{border:1px solid #999;padding:2px 6px;text-align:right;white-space:nowrap}\
th{background:#20407a;color:#fff;font-weight:bold}\
td.name,td.addr,td.check{text-align:left}\
td.state{text-align:center;font-weight:bold}\
tr.up td{background:#c4f0c4}\
tr.down td{background:#f6a8a8}\
tr.drain td{background:#b8d0f4}\
tr.total td,tr.total th{background:#e4e4e4;color:#111;font-weight:bold}\
table.totals th{text-align:left;background:#e4e4e4;color:#111}\
.none{color:#666}\
footer{margin-top:14px;color:#555}";

/// Escapes text for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `45s`, `3m12s`, `2h05m`, `3d04h`: two units at most.
pub fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// A count: exact below 100 000, else `123.4K`, `5.6M`.
fn count(n: u64) -> String {
    if n < 100_000 {
        n.to_string()
    } else {
        human_rate(n as f64)
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The three rate cells (packets/s, bytes/s, new flows/s), `-` without
/// an earlier sample.
fn rate_cells(out: &mut String, rates: Option<&RatesPage>) {
    match rates {
        Some(r) => {
            let _ = write!(
                out,
                "<td>{}</td><td>{}/s</td><td>{}</td>",
                human_rate(r.packets_per_second),
                bytes(r.bytes_per_second.round() as u64),
                human_rate(r.new_flows_per_second)
            );
        }
        None => out.push_str(
            "<td class=\"none\">-</td><td class=\"none\">-</td><td class=\"none\">-</td>",
        ),
    }
}

const COLUMNS: [&str; 13] = [
    "Backend",
    "Address",
    "State",
    "For",
    "Last check",
    "Weight",
    "Share",
    "Active flows",
    "Packets",
    "Bytes",
    "Packets/s",
    "Bytes/s",
    "New flows/s",
];

fn backend_row(out: &mut String, service: &ServicePage, b: &BackendPage) {
    let class = b.state.to_ascii_lowercase();
    let address = match b.port {
        Some(p) => format!("{}:{p}", b.address),
        None => format!("{}:*", b.address),
    };
    let (since, since_title) = if b.state_at_least {
        (
            format!("≥ {}", age(b.state_seconds)),
            "unchanged since the daemon started",
        )
    } else {
        (age(b.state_seconds), "since its last state change")
    };
    let check = match &b.last_check {
        Some(c) => format!(
            "<td class=\"check\" title=\"{}\">{} in {:.0} ms, {} ago</td>",
            escape(&c.reason),
            escape(&c.status),
            c.duration_ms,
            age(c.seconds_ago)
        ),
        None => "<td class=\"check none\">not checked yet</td>".to_owned(),
    };
    let _ = write!(
        out,
        "<tr class=\"backend {class}\" id=\"backend-{}-{}\"><td class=\"name\">{}</td>\
         <td class=\"addr\">{}</td><td class=\"state\">{}</td><td title=\"{since_title}\">{since}</td>{check}\
         <td>{}</td><td>{:.1}%</td><td>{}</td><td>{}</td><td>{}</td>",
        escape(&service.name),
        escape(&b.name),
        escape(&b.name),
        escape(&address),
        escape(&b.state),
        b.weight.map_or_else(|| "-".to_owned(), |w| w.to_string()),
        b.share * 100.0,
        count(b.active_flows),
        count(b.packets),
        bytes(b.bytes),
    );
    rate_cells(out, b.rates.as_ref());
    out.push_str("</tr>\n");
}

fn service_table(out: &mut String, s: &ServicePage) {
    let _ = write!(
        out,
        "<section class=\"service\" id=\"service-{}\">\n<h2>{} <span class=\"what\">\
         {}:{}/{} &middot; {} &middot; on_backend_down {} &middot; {} of {} backends usable</span></h2>\n\
         <table>\n<thead><tr>",
        escape(&s.name),
        escape(&s.name),
        escape(&s.vip),
        escape(&s.ports),
        escape(&s.protocol),
        escape(&s.mode),
        escape(&s.on_backend_down),
        s.usable_backends,
        s.backends_total
    );
    for c in COLUMNS {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    if s.backends.is_empty() {
        let _ = writeln!(
            out,
            "<tr><td class=\"name none\" colspan=\"{}\">no backends</td></tr>",
            COLUMNS.len()
        );
    }
    for b in &s.backends {
        backend_row(out, s, b);
    }
    let _ = write!(
        out,
        "</tbody>\n<tfoot><tr class=\"total\"><th class=\"name\">Total</th><td class=\"addr\"></td>\
         <td class=\"state\">{}/{}</td><td></td><td></td><td></td><td></td><td>{}</td><td>{}</td><td>{}</td>",
        s.usable_backends,
        s.backends_total,
        count(s.active_flows),
        count(s.packets),
        bytes(s.bytes),
    );
    rate_cells(out, s.rates.as_ref());
    out.push_str("</tr></tfoot>\n</table>\n</section>\n");
}

/// The HTML page; `json_uri` is linked from its footer.
pub fn render(page: &Page, json_uri: &str) -> String {
    let mut out = String::with_capacity(8192);
    let refresh = page.refresh_seconds.ceil().max(1.0) as u64;
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{refresh}\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>kube-xdp stats</title><style>{STYLE}</style></head>\n<body>\n<h1>kube-xdp stats</h1>\n<p class=\"about\">"
    );
    if let Some(v) = &page.version {
        let _ = write!(out, "version <b>{}</b> &middot; ", escape(v));
    }
    let _ = write!(
        out,
        "uptime <b>{}</b> &middot; config <b>{}</b> &middot; HA <b id=\"ha-state\">{}</b> &middot; \
         {} &middot; refreshes every {}",
        age(page.uptime_seconds),
        escape(&page.config_hash),
        escape(&page.ha.state),
        escape(&page.time),
        age(refresh)
    );
    match page.rates_over_seconds {
        Some(s) => {
            let _ = write!(out, " &middot; rates over {s:.1}s");
        }
        None => out.push_str(" &middot; rates from the next refresh on"),
    }
    out.push_str("</p>\n");
    let t = &page.totals;
    let occupancy = if t.flow_capacity == 0 {
        0.0
    } else {
        t.active_flows as f64 * 100.0 / f64::from(t.flow_capacity)
    };
    let per_second = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), human_rate);
    let _ = writeln!(
        out,
        "<table class=\"totals\" id=\"totals\">\
         <tr><th>Services</th><td>{}</td><th>Backends usable</th><td>{} of {} ({} UP)</td>\
         <th>Active flows</th><td>{} of {} ({occupancy:.1}%)</td></tr>\
         <tr><th>Packets</th><td>{}</td><th>Bytes</th><td>{}</td><th>New flows</th><td>{}</td></tr>\
         <tr><th>Forwarded/s</th><td>{}</td><th>Passed/s</th><td>{}</td><th>Dropped/s</th><td>{}</td></tr>\
         </table>",
        t.services,
        t.backends_usable,
        t.backends_total,
        t.backends_up,
        count(t.active_flows),
        t.flow_capacity,
        count(t.packets),
        bytes(t.bytes),
        count(t.new_flows),
        per_second(t.forwarded_per_second),
        per_second(t.passed_per_second),
        per_second(t.dropped_per_second),
    );
    if page.services.is_empty() {
        out.push_str("<p class=\"none\">No services are programmed.</p>\n");
    }
    for s in &page.services {
        service_table(&mut out, s);
    }
    let _ = write!(
        out,
        "<footer>The same data as JSON: <a href=\"{0}\">{0}</a></footer>\n</body></html>\n",
        escape(json_uri)
    );
    out
}
