//! The client's side of a failover: new connections started every 10 ms
//! (each on its own thread, so one that hangs does not delay the next),
//! and long-lived echo connections opened before the event and tried once
//! after it.

use kube_xdp_tests::{
    e2e_util::{EchoConn, vip},
    servers::whoami,
    topology::Cluster,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Time between the starts of two new connections.
pub const EVERY: Duration = Duration::from_millis(10);
/// How long a new connection may take to connect and read the server's
/// name: shorter than the first SYN retransmission (1 s), so a SYN lost
/// in the takeover fails the attempt instead of hiding the gap.
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// Bound on one prober's run.
const MAX_RUN: Duration = Duration::from_secs(30);

type Attempt = JoinHandle<anyhow::Result<bool>>;

/// New connections to VIP:6443 from the client namespace, every
/// [`EVERY`], until stopped (bounded: [`MAX_RUN`]).
pub struct Prober {
    stop: Arc<AtomicBool>,
    launcher: Option<JoinHandle<Vec<(Instant, Attempt)>>>,
}

/// What a prober saw around an event at `t0`.
pub struct Gap {
    /// The longest time between the starts of two successive successful
    /// connections, from the last success before `t0` on (the end of the
    /// run counts as a success, so a gap still open shows).
    pub longest: Duration,
    pub attempts: usize,
    pub failed: usize,
    /// Whether a connection succeeded after `t0` at all.
    pub recovered: bool,
}

impl Prober {
    pub fn start(c: &Cluster) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let client = c.client.path();
        let launcher = std::thread::spawn(move || {
            let addr = vip(6443);
            let started = Instant::now();
            let mut attempts = Vec::new();
            let max = (MAX_RUN.as_millis() / EVERY.as_millis()) as usize;
            for i in 0..max {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                let at = Instant::now();
                let ns = client.clone();
                attempts.push((
                    at,
                    std::thread::spawn(move || {
                        let file = std::fs::File::open(&ns)?;
                        enter(&file)?;
                        Ok(whoami(addr, TIMEOUT).is_ok())
                    }),
                ));
                // Start times on a fixed schedule.
                let next = started + EVERY * (i as u32 + 1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            attempts
        });
        Prober {
            stop,
            launcher: Some(launcher),
        }
    }

    /// Stops launching, waits for the attempts in flight (each bounded by
    /// [`TIMEOUT`]) and measures around `t0`.
    pub fn finish(mut self, t0: Instant) -> Gap {
        self.stop.store(true, Ordering::Relaxed);
        let attempts = self.launcher.take().unwrap().join().unwrap_or_default();
        let end = Instant::now();
        let results: Vec<(Instant, bool)> = attempts
            .into_iter()
            .map(|(at, h)| (at, h.join().ok().and_then(Result::ok).unwrap_or(false)))
            .collect();
        let ok: Vec<Instant> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
        let from = ok.iter().rev().find(|&&at| at <= t0).copied().unwrap_or(t0);
        let mut points: Vec<Instant> = ok.into_iter().filter(|&at| at >= from).collect();
        let recovered = points.iter().any(|&at| at > t0);
        points.push(end);
        let longest = points
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        Gap {
            longest,
            attempts: results.len(),
            failed: results.iter().filter(|r| !r.1).count(),
            recovered,
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(l) = self.launcher.take() {
            let _ = l.join();
        }
    }
}

/// Joins this thread to the network namespace `file`.
fn enter(file: &std::fs::File) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid namespace fd; setns affects only this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        anyhow::bail!("setns: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// `n` long-lived echo connections through VIP:6443.
///
/// # Errors
///
/// When one cannot be opened (3 s each at most).
pub fn open_long_lived(c: &Cluster, n: usize) -> anyhow::Result<Vec<EchoConn>> {
    (0..n).map(|_| EchoConn::open(c, vip(6443))).collect()
}

/// Exchanges one line on every connection at once (each read bounded by
/// `timeout`); the connections that echoed it back, and those that did.
pub fn still_echo(conns: Vec<EchoConn>, timeout: Duration) -> (usize, Vec<EchoConn>) {
    let handles: Vec<JoinHandle<Option<EchoConn>>> = conns
        .into_iter()
        .map(|mut conn| {
            std::thread::spawn(move || {
                conn.set_read_timeout(timeout).ok()?;
                conn.exchange().ok()?;
                Some(conn)
            })
        })
        .collect();
    let alive: Vec<EchoConn> = handles
        .into_iter()
        .filter_map(|h| h.join().ok().flatten())
        .collect();
    (alive.len(), alive)
}
