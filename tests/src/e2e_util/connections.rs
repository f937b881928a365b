//! Client connections through the VIP, from the client namespace: many
//! short ones, one attempt timed, long-lived ones exchanging echoed lines.

use crate::{servers::whoami, topology::Cluster};
use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

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

    /// The client's end (address and port) of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.writer.local_addr().expect("a connected socket")
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
