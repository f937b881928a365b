//! The load generators, run from the client namespace: wrk (HTTP request
//! rate and latency) and iperf3 (bulk throughput), and a readiness probe.

use anyhow::{Context, bail};
use kube_xdp_tests::netns::Netns;
use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// What one wrk run reports.
#[derive(Debug, Clone, Default)]
pub struct Wrk {
    pub rps: f64,
    pub requests: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub non_2xx: u64,
}

/// `wrk -t2 -c64 -dSECSs --latency [-H 'Connection: close'] URL` in `ns`,
/// killed if it runs 30 s over.
pub fn wrk(ns: &Netns, url: &str, secs: u32, close: bool) -> anyhow::Result<Wrk> {
    let duration = format!("{secs}s");
    let limit = (secs + 30).to_string();
    let mut args = vec![
        &limit[..],
        "wrk",
        "-t2",
        "-c64",
        "-d",
        &duration,
        "--latency",
    ];
    if close {
        args.extend(["-H", "Connection: close"]);
    }
    args.push(url);
    let out = ns.exec("timeout", &args)?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_wrk(&text).with_context(|| format!("parsing wrk's output:\n{text}"))
}

/// "2.49ms", "812.00us", "1.02s", "1.50m" → microseconds.
fn parse_time_us(s: &str) -> Option<f64> {
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n,
        "ms" => n * 1e3,
        "s" => n * 1e6,
        "m" => n * 60e6,
        "h" => n * 3600e6,
        _ => return None,
    })
}

pub fn parse_wrk(text: &str) -> anyhow::Result<Wrk> {
    let mut w = Wrk::default();
    let mut have_rps = false;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            w.rps = v.trim().parse()?;
            have_rps = true;
        } else if let Some(v) = line.strip_prefix("50%") {
            w.p50_us = parse_time_us(v.trim()).context("p50")?;
        } else if let Some(v) = line.strip_prefix("99%") {
            w.p99_us = parse_time_us(v.trim()).context("p99")?;
        } else if line.contains(" requests in ") {
            w.requests = line
                .split_whitespace()
                .next()
                .context("requests")?
                .parse()?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let mut it = part.split_whitespace();
                let (Some(kind), Some(n)) = (it.next(), it.next()) else {
                    continue;
                };
                let n: u64 = n.parse()?;
                match kind {
                    "connect" => w.connect_errors = n,
                    "read" => w.read_errors = n,
                    "write" => w.write_errors = n,
                    "timeout" => w.timeouts = n,
                    _ => {}
                }
            }
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            w.non_2xx = v.trim().parse()?;
        }
    }
    if !have_rps {
        bail!("no Requests/sec line");
    }
    Ok(w)
}

/// `iperf3 -c HOST -p PORT -t SECS -P STREAMS --json` in `ns`: the
/// receiver's bits per second. Killed if it runs 30 s over.
pub fn iperf3(ns: &Netns, host: &str, port: u16, secs: u32, streams: u32) -> anyhow::Result<f64> {
    let limit = (secs + 30).to_string();
    let (port, secs, streams) = (port.to_string(), secs.to_string(), streams.to_string());
    let out = ns
        .command("timeout")
        .args([&limit, "iperf3", "--connect-timeout", "3000"])
        .args([
            "-c", host, "-p", &port, "-t", &secs, "-P", &streams, "--json",
        ])
        .output()
        .context("running iperf3")?;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "iperf3 printed no JSON: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    if let Some(e) = json.get("error") {
        bail!("iperf3: {e}");
    }
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no end.sum_received.bits_per_second in iperf3's JSON")
}

/// One `GET /` with `Connection: close` from the current thread: the
/// response body's first line (the backend's name).
fn get_name(addr: SocketAddr) -> anyhow::Result<String> {
    let timeout = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut resp = String::new();
    s.take(64 * 1024).read_to_string(&mut resp)?;
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .context("no HTTP body")?;
    anyhow::ensure!(resp.starts_with("HTTP/1.1 200"), "not a 200: {resp:?}");
    Ok(body.lines().next().unwrap_or("").to_owned())
}

/// Sends HTTP requests to `addr` from `ns` (bounded: 10 s, at most 500
/// requests) until `want` distinct backends have answered; returns them.
pub fn wait_serving(ns: &Netns, addr: SocketAddr, want: usize) -> anyhow::Result<BTreeSet<String>> {
    ns.run(move || {
        let start = Instant::now();
        let mut seen = BTreeSet::new();
        let mut last_err = String::from("none");
        for _ in 0..500 {
            if start.elapsed() > Duration::from_secs(10) {
                break;
            }
            match get_name(addr) {
                Ok(name) => {
                    seen.insert(name);
                    if seen.len() >= want {
                        return Ok(seen);
                    }
                }
                Err(e) => {
                    last_err = format!("{e:#}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        bail!(
            "{addr} not serving from {want} backends within 10 s: saw {seen:?}, last error: {last_err}"
        )
    })
}
