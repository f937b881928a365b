//! Sustained short connections through the VIP: servers that close first
//! or last, client threads making connections as fast as they go or at a
//! set rate, and what each thread saw.

use crate::{
    e2e_util::setsockopt_int,
    netns::Netns,
    topology::{Cluster, VIP},
};
use std::{
    collections::HashMap,
    io::{ErrorKind, Read, Write},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// Who closes a short connection first, and so holds its TIME_WAIT.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Closer {
    /// The client reads the name and closes; the server closes on EOF.
    Client,
    /// The server writes its name and closes at once (like an HTTP server
    /// answering `Connection: close`); the client reads to EOF.
    Server,
}

/// A single-threaded short-connection server: writes its name and a
/// newline on accept, then closes as `closer` says. Stopped on drop.
pub struct ShortServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ShortServer {
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str, closer: Closer) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let line = format!("{name}\n").into_bytes();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            // A deep accept queue: std's 128 can overflow for a moment
            // when this thread waits for a core (client, load balancer and
            // backends share two), and a dropped SYN would read as the load
            // balancer's fault.
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            socket.bind(&addr.into())?;
            socket.listen(4096)?;
            let listener: TcpListener = socket.into();
            listener.set_nonblocking(true)?;
            let _ = tx.send(());
            let mut open: Vec<TcpStream> = Vec::new();
            let mut buf = [0u8; 256];
            while !flag.load(Ordering::Relaxed) {
                let mut fds: Vec<libc::pollfd> = std::iter::once(listener.as_raw_fd())
                    .chain(open.iter().map(AsRawFd::as_raw_fd))
                    .map(|fd| libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                // SAFETY: a valid array of pollfd of that length.
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 20) };
                // Connections that said something or closed: read; at EOF
                // (or an error) close them.
                let mut keep = Vec::with_capacity(open.len());
                for (mut stream, pfd) in open.drain(..).zip(&fds[1..]) {
                    if pfd.revents == 0 {
                        keep.push(stream);
                        continue;
                    }
                    match stream.read(&mut buf) {
                        Ok(0) => {}
                        Ok(_) => keep.push(stream),
                        Err(e) if e.kind() == ErrorKind::WouldBlock => keep.push(stream),
                        Err(_) => {}
                    }
                }
                open = keep;
                if fds[0].revents != 0 {
                    for _ in 0..1024 {
                        match listener.accept() {
                            Ok((mut stream, _)) => {
                                let _ = stream.set_nonblocking(true);
                                if stream.write_all(&line).is_err() {
                                    continue;
                                }
                                if closer == Closer::Client {
                                    open.push(stream);
                                }
                                // Closer::Server: dropped here, FIN at once.
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("short server on {addr} did not start"))?;
        Ok(ShortServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ShortServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A blocking TCP connection from `src` (its port chosen at connect time,
/// so ports in TIME_WAIT towards other destinations stay usable), with
/// `timeout` on the connect.
pub fn connect_from(
    src: Ipv4Addr,
    dst: SocketAddrV4,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    // SAFETY: plain socket call; the fd is owned at once by the stream.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1)?;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid fd and a timeval of that size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let sockaddr = |a: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(a).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sockaddr(src, 0);
    // SAFETY: a valid fd and a sockaddr_in of that size.
    if unsafe { libc::bind(fd, (&raw const local).cast(), len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let remote = sockaddr(*dst.ip(), dst.port());
    // SAFETY: as above. A blocking connect honours SO_SNDTIMEO.
    if unsafe { libc::connect(fd, (&raw const remote).cast(), len) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINPROGRESS) {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                "connect timed out",
            ));
        }
        return Err(e);
    }
    Ok(stream)
}

/// One short connection: connect, read the name line, close as `closer`
/// says. Returns the name.
pub fn short_connection(
    src: Ipv4Addr,
    dst: SocketAddrV4,
    closer: Closer,
) -> std::io::Result<String> {
    let timeout = Duration::from_secs(3);
    let mut stream = connect_from(src, dst, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while !buf[..got].contains(&b'\n') {
        if got == buf.len() {
            return Err(std::io::Error::new(ErrorKind::InvalidData, "no newline"));
        }
        let n = stream.read(&mut buf[got..])?;
        if n == 0 {
            return Err(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "closed before naming itself",
            ));
        }
        got += n;
    }
    if closer == Closer::Server {
        // Read to the server's FIN, so that the server closed first.
        let mut rest = [0u8; 16];
        if stream.read(&mut rest)? != 0 {
            return Err(std::io::Error::new(
                ErrorKind::InvalidData,
                "more than the name",
            ));
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    Ok(line.trim().to_owned())
}

/// What one client thread saw.
#[derive(Default, Debug)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    /// Connections that took more than 900 ms (a SYN retransmit waits 1 s).
    pub slow: u64,
    pub max: Duration,
    pub errors: Vec<String>,
    pub names: HashMap<String, u64>,
}

/// The client's source address of thread `i`: extra addresses of the
/// client host (198.18.0.101 and up), so that the client's own TIME_WAIT
/// sockets (when it closes first) do not run it out of ports.
pub fn client_source(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, 101 + i as u8)
}

/// Gives the client the source addresses of `threads` load threads and a
/// wide port range, and makes one connection from each.
pub fn prepare_client(c: &Cluster, threads: usize, closer: Closer) -> anyhow::Result<()> {
    for i in 0..threads {
        c.client.ip(&[
            "addr",
            "add",
            &format!("{}/32", client_source(i)),
            "dev",
            "eth0",
        ])?;
    }
    c.client
        .sysctl("net.ipv4.ip_local_port_range", "1024 65000")?;
    let dst = SocketAddrV4::new(VIP.parse().unwrap(), 6443);
    for i in 0..threads {
        let src = client_source(i);
        c.client
            .run(move || Ok(short_connection(src, dst, closer)?))
            .map_err(|e| anyhow::anyhow!("warm-up from {src}: {e:#}"))?;
    }
    Ok(())
}

/// `threads` client threads making short connections to VIP:6443 for
/// `run`, as fast as they go or, with `rate`, paced to that many
/// connections per second in all. Returns what each saw and how long it
/// took.
pub fn short_connection_load(
    c: &Cluster,
    closer: Closer,
    threads: usize,
    run: Duration,
    rate: Option<f64>,
) -> (Vec<Tally>, Duration) {
    let dst = SocketAddrV4::new(VIP.parse().unwrap(), 6443);
    let start = Instant::now();
    let deadline = start + run;
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let src = client_source(i);
            c.client.spawn(move || {
                let mut t = Tally::default();
                // Bounded by the deadline, and in count.
                for k in 0..5_000_000u64 {
                    if let Some(rate) = rate {
                        // Connection k of this thread is due at
                        // (k × threads + i) / rate.
                        let due = start
                            + Duration::from_secs_f64(
                                (k as f64 * threads as f64 + i as f64) / rate,
                            );
                        if due >= deadline {
                            break;
                        }
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                    let began = Instant::now();
                    let r = short_connection(src, dst, closer);
                    let took = began.elapsed();
                    t.max = t.max.max(took);
                    if took > Duration::from_millis(900) {
                        t.slow += 1;
                    }
                    match r {
                        Ok(name) => {
                            t.ok += 1;
                            *t.names.entry(name).or_default() += 1;
                        }
                        Err(e) => {
                            t.failed += 1;
                            if t.errors.len() < 10 {
                                t.errors.push(format!(
                                    "{src} after {:?}: {e} ({:?}, took {took:?})",
                                    start.elapsed(),
                                    e.kind()
                                ));
                            }
                        }
                    }
                }
                Ok(t)
            })
        })
        .collect();
    let tallies = handles
        .into_iter()
        .map(|t| t.join().expect("client thread panicked").unwrap())
        .collect();
    (tallies, start.elapsed())
}
