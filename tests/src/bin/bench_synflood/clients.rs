//! The real clients under the flood, from the client namespace: one new
//! connection every [`CLIENT_EVERY`] (connect, one HTTP request with
//! `Connection: close`, its response read to the server's close), and
//! long-lived keep-alive connections sending a request every
//! [`PING_EVERY`]. Every wait is bounded.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// One real connection every 20 ms.
pub const CLIENT_EVERY: Duration = Duration::from_millis(20);
/// A real connection's connect, and then its response, each get this long
/// (room for one SYN retransmit, which comes after 1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);
/// A long-lived connection's request interval.
pub const PING_EVERY: Duration = Duration::from_millis(100);

const REQUEST_CLOSE: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
const REQUEST_KEEP: &[u8] = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

/// "step: what went wrong", in a user's words.
fn fail(step: &str, e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let what = match e.kind() {
        ConnectionRefused => "refused".to_owned(),
        ConnectionReset => "reset".to_owned(),
        WouldBlock | TimedOut => "timed out".to_owned(),
        UnexpectedEof => "closed".to_owned(),
        other => format!("{other:?}"),
    };
    format!("{step}: {what}")
}

/// One attempt: how long its connect took (`None`: it never connected),
/// and whether the whole exchange succeeded.
struct Attempt {
    connect: Option<Duration>,
    /// The client's port, once connected.
    port: Option<u16>,
    result: Result<Duration, String>,
}

fn real_connection(addr: SocketAddr) -> Attempt {
    let start = Instant::now();
    let stream = match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            return Attempt {
                connect: None,
                port: None,
                result: Err(fail("connect", &e)),
            };
        }
    };
    let connect = Some(start.elapsed());
    let port = stream.local_addr().ok().map(|a| a.port());
    let result = exchange_once(stream).map(|()| start.elapsed());
    Attempt {
        connect,
        port,
        result,
    }
}

fn exchange_once(mut stream: TcpStream) -> Result<(), String> {
    let sock = |e: std::io::Error| fail("socket", &e);
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(sock)?;
    stream
        .set_write_timeout(Some(ANSWER_TIMEOUT))
        .map_err(sock)?;
    stream
        .write_all(REQUEST_CLOSE)
        .map_err(|e| fail("request", &e))?;
    let mut response = Vec::new();
    (&mut stream)
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(|e| fail("response", &e))?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        return Err(if text.is_empty() {
            "response: closed".into()
        } else {
            "response: not a 200".into()
        });
    }
    if !text.contains("backend-") {
        return Err("response: no backend's name".into());
    }
    Ok(())
}

/// What the real client saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub attempts: u64,
    pub ok: u64,
    /// Successes that took over a second (a SYN or segment retransmitted).
    pub slow: u64,
    /// Every attempt's connect time; `None` for one that never connected.
    pub connects: Vec<Option<Duration>>,
    /// Every attempt's whole time, connect to the response's end; `None`
    /// for one that failed.
    pub wholes: Vec<Option<Duration>>,
    pub failures: BTreeMap<String, u64>,
    /// The first failures of connections that connected: the client's
    /// port and what went wrong (to find them in a capture).
    pub failed_ports: Vec<(u16, String)>,
}

impl Tally {
    pub fn success(&self) -> f64 {
        self.ok as f64 / self.attempts.max(1) as f64
    }

    /// The `q` quantile (0..1) of every attempt's connect time, an attempt
    /// that never connected counting as longer than any that did (`None`).
    pub fn connect_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.connects, q)
    }

    /// The `q` quantile of every attempt's whole time, a failed attempt
    /// counting as longer than any success (`None`). A SYN cookie with a
    /// zero window (kube-xdp's) completes the client's connect before the
    /// backend is reached: this is where the wait shows.
    pub fn whole_quantile(&self, q: f64) -> Option<Duration> {
        quantile(&self.wholes, q)
    }
}

/// The `q` quantile (0..1) of `v`, `None` counting as longer than any
/// value.
fn quantile(v: &[Option<Duration>], q: f64) -> Option<Duration> {
    let mut v = v.to_vec();
    // `None` sorts first: put the failures last.
    v.sort_by_key(|c| c.map_or((1, Duration::ZERO), |d| (0, d)));
    let n = v.len();
    if n == 0 {
        return None;
    }
    let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
    v[i]
}

/// `attempts` real connections to `addr`, one every [`CLIENT_EVERY`],
/// each on its own thread so that a slow one does not delay the next.
/// Runs in the calling thread's network namespace (new threads inherit
/// it).
pub fn real_clients(addr: SocketAddr, attempts: usize) -> Tally {
    let start = Instant::now();
    let mut threads: Vec<JoinHandle<Attempt>> = Vec::with_capacity(attempts);
    for n in 0..attempts {
        let at = start + CLIENT_EVERY * n as u32;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        threads.push(std::thread::spawn(move || real_connection(addr)));
    }
    let mut tally = Tally::default();
    for t in threads {
        tally.attempts += 1;
        let a = t.join().unwrap_or(Attempt {
            connect: None,
            port: None,
            result: Err("panicked".into()),
        });
        tally.connects.push(a.connect);
        tally.wholes.push(a.result.as_ref().ok().copied());
        match a.result {
            Ok(took) => {
                tally.ok += 1;
                tally.slow += u64::from(took > Duration::from_secs(1));
            }
            Err(e) => {
                if let Some(port) = a.port
                    && tally.failed_ports.len() < 20
                {
                    tally.failed_ports.push((port, e.clone()));
                }
                *tally.failures.entry(e).or_default() += 1;
            }
        }
    }
    tally
}

/// A keep-alive HTTP connection through the load balancer.
pub struct KeepAlive {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl KeepAlive {
    /// Connects from the calling thread's namespace and makes a first
    /// request.
    ///
    /// # Errors
    ///
    /// When the connection or its first response does not come within 3 s.
    pub fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut conn = KeepAlive {
            reader: BufReader::new(stream),
            writer,
        };
        conn.request()?;
        Ok(conn)
    }

    /// One request and its whole response (status 200, `Content-Length`
    /// bytes of body naming a backend).
    pub fn request(&mut self) -> std::io::Result<()> {
        let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        self.writer.write_all(REQUEST_KEEP)?;
        let mut line = String::new();
        let mut length = None;
        let mut status = None;
        // The status line and the headers: bounded.
        for _ in 0..64 {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the connection was closed",
                ));
            }
            let l = line.trim_end();
            if status.is_none() {
                status = Some(l.to_owned());
                continue;
            }
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse::<usize>().ok();
            }
        }
        let status = status.unwrap_or_default();
        if !status.starts_with("HTTP/1.1 200") {
            return Err(bad(format!("status {status:?}")));
        }
        let length = length.ok_or_else(|| bad("no Content-Length".into()))?;
        let mut body = vec![0u8; length.min(64 * 1024)];
        self.reader.read_exact(&mut body)?;
        if !body.starts_with(b"backend-") {
            return Err(bad("the body names no backend".into()));
        }
        Ok(())
    }
}

/// A [`KeepAlive`] connection sending a request every [`PING_EVERY`] on a
/// background thread until stopped or until its first failure (a broken
/// TCP connection stays broken).
pub struct LongLived {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    /// The longest request, in µs.
    longest_us: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

/// What one long-lived connection did.
pub struct LongLivedEnd {
    pub ok: u64,
    pub longest: Duration,
    pub failure: Option<String>,
}

impl LongLived {
    pub fn start(mut conn: KeepAlive) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let longest_us = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        let (s, o, l, f) = (
            stop.clone(),
            ok.clone(),
            longest_us.clone(),
            failure.clone(),
        );
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            // Bounded: 15 minutes' worth of requests at most.
            let max = 900_000 / PING_EVERY.as_millis() as u64;
            for _ in 0..max {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let t = Instant::now();
                match conn.request() {
                    Ok(()) => {
                        o.fetch_add(1, Ordering::Relaxed);
                        l.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *f.lock().unwrap() = Some(format!(
                            "{} after {:.1} s",
                            fail("request", &e),
                            started.elapsed().as_secs_f64()
                        ));
                        return;
                    }
                }
                std::thread::sleep(PING_EVERY);
            }
        });
        LongLived {
            stop,
            ok,
            longest_us,
            failure,
            thread: Some(thread),
        }
    }

    /// Stops the thread (bounded by the connection's timeouts).
    pub fn finish(mut self) -> LongLivedEnd {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        LongLivedEnd {
            ok: self.ok.load(Ordering::Relaxed),
            longest: Duration::from_micros(self.longest_us.load(Ordering::Relaxed)),
            failure: self.failure.lock().unwrap().clone(),
        }
    }
}

impl Drop for LongLived {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
