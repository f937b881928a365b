//! Real TCP and UDP servers inside namespaces: each answers with its name,
//! so a client can tell which backend it reached.

use crate::netns::Netns;
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A TCP server on `addr` in a namespace: on accept it writes its name and
/// a newline, then echoes every line it reads, until the client closes.
/// Stopped (listener closed, connections dropped) on drop or `stop`.
pub struct TcpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TcpServer {
    /// # Errors
    ///
    /// When the port cannot be bound.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let name = name.to_owned();
        let thread = ns.spawn(move || {
            let listener = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return Ok(());
                }
            };
            listener.set_nonblocking(true)?;
            let _ = ready_tx.send(Ok(()));
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let name = name.clone();
                        let flag = flag.clone();
                        conns.push(std::thread::spawn(move || serve(stream, &name, &flag)));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
                conns.retain(|c| !c.is_finished());
            }
            drop(listener);
            for c in conns {
                let _ = c.join();
            }
            Ok(())
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(TcpServer {
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => anyhow::bail!("binding {addr}: {e}"),
            Err(_) => anyhow::bail!("server on {addr} did not start"),
        }
    }

    /// Closes the listener and every connection, and waits for that.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(stream: TcpStream, name: &str, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    if writeln!(writer, "{name}").is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if writer.write_all(line.as_bytes()).is_err() {
                    return;
                }
                line.clear();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
    let _ = writer.shutdown(std::net::Shutdown::Both);
}

/// A UDP server that answers every datagram with its name, a space, and
/// the datagram's length.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl UdpServer {
    /// # Errors
    ///
    /// When the port cannot be bound.
    pub fn start(ns: &Netns, addr: SocketAddr, name: &str) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let name = name.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let socket = UdpSocket::bind(addr)?;
            socket.set_read_timeout(Some(Duration::from_millis(20)))?;
            let _ = ready_tx.send(());
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(format!("{name} {n}").as_bytes(), from);
                }
            }
            Ok(())
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("UDP server on {addr} did not start"))?;
        Ok(UdpServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` (from the calling thread's namespace) and returns
/// the name the server sent, within `timeout`.
///
/// # Errors
///
/// Refused, timed out, or no name.
pub fn whoami(addr: SocketAddr, timeout: Duration) -> std::io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    if line.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before naming itself",
        ));
    }
    Ok(line.trim().to_owned())
}
