//! Shared pieces of the end-to-end tests (`tests/tests/e2e*.rs`): service
//! configurations, `kube-xdp backends` as data, bounded waits, short and
//! long-lived client connections through the VIP.
//!
//! Every wait here is bounded in time and every loop in count; every
//! connection is made from the client namespace of the test's own
//! [`Cluster`], to addresses in 198.18.0.0/24.

use crate::{
    daemon::cli,
    servers::{TcpServer, whoami},
    topology::{Cluster, VIP, backend_addr},
};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// The spread test's service: kube-apiserver on VIP:6443 over `backends`
/// backends, TCP checks every 200 ms, fall 2, rise 1.
pub fn apiserver_config(backends: usize) -> String {
    let mut s = format!(
        "[[service]]\nname = \"kube-apiserver\"\nvip = \"{VIP}\"\nport = 6443\n\n\
         [service.health_check]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"100ms\"\nfall = 2\nrise = 1\n"
    );
    for i in 0..backends {
        s.push_str(&format!(
            "\n[[service.backend]]\nname = \"cp{i}\"\naddress = \"{}\"\n",
            backend_addr(i)
        ));
    }
    s
}

/// Health-check interval used by [`Service`]'s default check.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// One `[[service.backend]]`.
#[derive(Debug, Clone)]
pub struct Backend {
    pub name: String,
    pub address: String,
    pub port: Option<u16>,
    pub weight: Option<u32>,
}

/// One `[[service]]` with its health check and backends, as TOML.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// `port = 6443` or `ports = "30000-32767"`.
    pub ports: String,
    /// More service-level lines (`on_backend_down = "reset"`, …).
    pub extra: Vec<String>,
    /// The `[service.health_check]` body.
    pub check: Vec<String>,
    pub backends: Vec<Backend>,
}

impl Service {
    /// kube-apiserver on VIP:6443 over backends `cp0..cpN` (backend `i` at
    /// [`backend_addr`]`(i)`), TCP checks every 200 ms (timeout 100 ms),
    /// fall 2, rise 2.
    pub fn apiserver(backends: usize) -> Self {
        Service {
            name: "kube-apiserver".into(),
            ports: "port = 6443".into(),
            extra: Vec::new(),
            check: vec![
                "kind = \"tcp\"".into(),
                "interval = \"200ms\"".into(),
                "timeout = \"100ms\"".into(),
                "fall = 2".into(),
                "rise = 2".into(),
            ],
            backends: (0..backends)
                .map(|i| Backend {
                    name: format!("cp{i}"),
                    address: backend_addr(i),
                    port: None,
                    weight: None,
                })
                .collect(),
        }
    }

    /// Sets (or replaces) a health-check key.
    pub fn check(mut self, key: &str, value: &str) -> Self {
        let prefix = format!("{key} =");
        self.check.retain(|l| !l.starts_with(&prefix));
        self.check.push(format!("{key} = {value}"));
        self
    }

    /// Adds a service-level line.
    pub fn with(mut self, line: &str) -> Self {
        self.extra.push(line.into());
        self
    }

    pub fn toml(&self) -> String {
        let mut s = format!(
            "[[service]]\nname = \"{}\"\nvip = \"{VIP}\"\n{}\n",
            self.name, self.ports
        );
        for l in &self.extra {
            s.push_str(l);
            s.push('\n');
        }
        s.push_str("\n[service.health_check]\n");
        for l in &self.check {
            s.push_str(l);
            s.push('\n');
        }
        for b in &self.backends {
            s.push_str(&format!(
                "\n[[service.backend]]\nname = \"{}\"\naddress = \"{}\"\n",
                b.name, b.address
            ));
            if let Some(p) = b.port {
                s.push_str(&format!("port = {p}\n"));
            }
            if let Some(w) = b.weight {
                s.push_str(&format!("weight = {w}\n"));
            }
        }
        s
    }
}

/// `VIP:port`.
pub fn vip(port: u16) -> SocketAddr {
    format!("{VIP}:{port}").parse().unwrap()
}

/// `backend_addr(i):port`.
pub fn backend(i: usize, port: u16) -> SocketAddr {
    format!("{}:{port}", backend_addr(i)).parse().unwrap()
}

/// `kube-xdp backends --json --config FILE`, from a second process in the
/// LB namespace. Panics (with its stderr) when it fails.
pub fn backends(c: &Cluster) -> serde_json::Value {
    backends_with(c, &[])
}

/// Like [`backends`], with more arguments (`--pin-path DIR`: while the
/// file on disk is invalid, the CLI cannot take the pin path from it).
pub fn backends_with(c: &Cluster, more: &[&str]) -> serde_json::Value {
    let mut args = vec!["backends", "--json", "--config", c.config.to_str().unwrap()];
    args.extend_from_slice(more);
    let out = cli(&c.lb, &args).unwrap();
    assert!(
        out.status.success(),
        "kube-xdp backends failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kube-xdp backends --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The first service's backends, in the CLI's order.
pub fn backend_list(c: &Cluster) -> Vec<serde_json::Value> {
    backends(c)[0]["backends"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The first service's backend states (`UP`, `DOWN`, `DRAIN`).
pub fn states(c: &Cluster) -> Vec<String> {
    backend_list(c)
        .iter()
        .map(|b| b["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Backend name → state, for the first service.
pub fn states_by_name(c: &Cluster) -> HashMap<String, String> {
    backend_list(c)
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_owned(),
                b["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits (at most `limit`) until `cond` holds; returns how long it took,
/// or `None` when it never did. Polls every 50 ms.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    // Bounded in count as well as in time.
    for _ in 0..(limit.as_millis() / 50 + 2) {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits (bounded, 15 s) until the first service has `n` backends, all UP.
pub fn wait_all_up(c: &Cluster, n: usize) {
    let mut last = Vec::new();
    let ok = wait_for(Duration::from_secs(15), || {
        last = states(c);
        last.len() == n && last.iter().all(|s| s == "UP")
    });
    assert!(ok.is_some(), "backends not all UP within 15 s: {last:?}");
}

/// Waits (bounded by `limit`) until backend `name` of the first service is
/// in `state`; returns how long that took.
pub fn wait_state(c: &Cluster, name: &str, state: &str, limit: Duration) -> Duration {
    let mut last = HashMap::new();
    wait_for(limit, || {
        last = states_by_name(c);
        last.get(name).is_some_and(|s| s == state)
    })
    .unwrap_or_else(|| panic!("{name} not {state} within {limit:?}: {last:?}"))
}

/// Waits (bounded by `limit`) until backend `name` of the first service is
/// DOWN *and* holds no slot of the pool's live Maglev table (`share` 0);
/// returns how long that took. The daemon rewrites the table before it
/// marks the backend DOWN (so that no new flow is refused meanwhile, see
/// `failover_never_refuses_a_new_connection_while_healthy_backends_remain`);
/// tests wait for both so that they never look between the two writes.
pub fn wait_out_of_pool(c: &Cluster, name: &str, limit: Duration) -> Duration {
    let mut last = Vec::new();
    wait_for(limit, || {
        last = backend_list(c);
        last.iter()
            .any(|b| b["name"] == name && b["state"] == "DOWN" && b["share"].as_f64() == Some(0.0))
    })
    .unwrap_or_else(|| panic!("{name} not DOWN with share 0 within {limit:?}: {last:?}"))
}

/// `n` short connections to `addr` from the client namespace; the names
/// of the servers that answered, with counts. Fails on the first
/// connection that does not get a name within `timeout`.
pub fn connect_many(
    c: &Cluster,
    addr: SocketAddr,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<HashMap<String, usize>> {
    c.client.run(move || {
        let mut seen: HashMap<String, usize> = HashMap::new();
        for i in 0..n {
            let name = whoami(addr, timeout)
                .map_err(|e| anyhow::anyhow!("connection {i} of {n} to {addr}: {e}"))?;
            *seen.entry(name).or_default() += 1;
        }
        Ok(seen)
    })
}

/// One connection attempt from the client namespace: its outcome and how
/// long it took.
pub fn try_connect(
    c: &Cluster,
    addr: SocketAddr,
    timeout: Duration,
) -> (std::io::Result<()>, Duration) {
    c.client
        .run(move || {
            let start = Instant::now();
            let r = TcpStream::connect_timeout(&addr, timeout).map(drop);
            Ok((r, start.elapsed()))
        })
        .unwrap()
}

/// A long-lived connection through the VIP: opened from the client
/// namespace (the socket stays there whichever thread uses it), it has read
/// the server's name and then exchanges echoed lines.
pub struct EchoConn {
    pub name: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    sent: u64,
}

impl EchoConn {
    /// # Errors
    ///
    /// When the connection or the name does not come within 3 s.
    pub fn open(c: &Cluster, addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = c
            .client
            .run(move || Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(3))?))?;
        stream.set_read_timeout(Some(Duration::from_secs(3)))?;
        stream.set_write_timeout(Some(Duration::from_secs(3)))?;
        stream.set_nodelay(true)?;
        let writer = stream.try_clone()?;
        let mut reader = BufReader::new(stream);
        let mut name = String::new();
        reader.read_line(&mut name)?;
        anyhow::ensure!(!name.is_empty(), "closed before naming itself");
        Ok(EchoConn {
            name: name.trim().to_owned(),
            reader,
            writer,
            sent: 0,
        })
    }

    /// The read timeout of later exchanges.
    pub fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        self.writer.set_read_timeout(Some(timeout))
    }

    /// Writes one line and reads it back. An EOF is an error
    /// (`UnexpectedEof`), a wrong echo too (`InvalidData`).
    pub fn exchange(&mut self) -> std::io::Result<()> {
        self.sent += 1;
        let line = format!("ping {} from the long-lived connection\n", self.sent);
        self.writer.write_all(line.as_bytes())?;
        let mut back = String::new();
        let n = self.reader.read_line(&mut back)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the connection was closed",
            ));
        }
        if back != line {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("echo {back:?} for {line:?}"),
            ));
        }
        Ok(())
    }
}

/// An [`EchoConn`] exchanging a line every `every` on a background thread
/// until stopped or until the first failure (a broken TCP connection stays
/// broken), which it records with its time.
pub struct Pinger {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
    pub name: String,
}

impl Pinger {
    pub fn start(mut conn: EchoConn, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(Mutex::new(None));
        let name = conn.name.clone();
        let (s, o, f) = (stop.clone(), ok.clone(), failure.clone());
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            // Bounded: 10 minutes' worth of exchanges at most.
            let max = (600_000 / every.as_millis().max(1)) as u64;
            for _ in 0..max {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let t = Instant::now();
                match conn.exchange() {
                    Ok(()) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        *f.lock().unwrap() = Some(format!(
                            "exchange {} failed {:?} after the start (it took {:?}): {e} ({:?})",
                            o.load(Ordering::Relaxed) + 1,
                            started.elapsed(),
                            t.elapsed(),
                            e.kind()
                        ));
                        return;
                    }
                }
                std::thread::sleep(every);
            }
        });
        Pinger {
            stop,
            ok,
            failure,
            thread: Some(thread),
            name,
        }
    }

    /// Successful exchanges so far.
    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// The failure, if one happened.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().unwrap().clone()
    }

    /// Stops the thread (bounded by the connection's read timeout) and
    /// returns the successful exchanges and the failure, if any.
    pub fn finish(&mut self) -> (u64, Option<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.ok(), self.failure())
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The daemon's pid, from the pid file in `run_dir`.
pub fn daemon_pid(c: &Cluster) -> Option<i32> {
    std::fs::read_to_string(c.run_dir.join("kube-xdp.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S …": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// `kube-xdp reload --config FILE` in the LB namespace: (success, stdout
/// and stderr together).
pub fn reload(c: &Cluster) -> (bool, String) {
    let out = cli(&c.lb, &["reload", "--config", c.config.to_str().unwrap()]).unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// One test of a test binary at a time, for tests that load the machine
/// or must not be slowed down by one that does.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One TCP server per backend on `port`, named `cpI`.
pub fn tcp_servers(c: &Cluster, port: u16) -> Vec<TcpServer> {
    (0..c.backends.len())
        .map(|i| TcpServer::start(&c.backends[i], backend(i, port), &format!("cp{i}")).unwrap())
        .collect()
}

pub fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32) -> std::io::Result<()> {
    // SAFETY: a valid fd and a pointer to a live c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
