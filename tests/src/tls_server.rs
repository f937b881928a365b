//! A stand-in for an API server's health endpoint: HTTPS with a
//! self-signed certificate (made here with rcgen), answering `GET /readyz`
//! with 200 or 500 as the test decides.

use crate::netns::Netns;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::{
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// A self-signed certificate for "kubernetes" and the given addresses.
pub struct SelfSigned {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
    pub pem: String,
}

impl SelfSigned {
    /// # Errors
    ///
    /// When rcgen refuses the names.
    pub fn new(names: &[&str]) -> anyhow::Result<Self> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(SelfSigned {
            cert: certified.cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
            pem: certified.cert.pem(),
        })
    }
}

/// HTTPS `/readyz` on `addr` in a namespace; `ready` decides 200 or 500.
pub struct ReadyzServer {
    pub ready: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl ReadyzServer {
    /// # Errors
    ///
    /// When TLS cannot be set up or the port bound.
    pub fn start(ns: &Netns, addr: SocketAddr, cert: &SelfSigned) -> anyhow::Result<Self> {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.clone()],
            PrivateKeyDer::Pkcs8(cert.key.clone_key()),
        )?;
        let config = Arc::new(config);
        let ready = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_flag, stop_flag) = (ready.clone(), stop.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = ns.spawn(move || {
            let listener = TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            let _ = tx.send(());
            while !stop_flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let _ = tcp.set_nonblocking(false);
                        let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
                        let ok = ready_flag.load(Ordering::Relaxed);
                        let config = config.clone();
                        std::thread::spawn(move || {
                            let _ = answer(config, tcp, ok);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            Ok(())
        });
        rx.recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow::anyhow!("readyz server on {addr} did not start"))?;
        Ok(ReadyzServer {
            ready,
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ReadyzServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(
    config: Arc<rustls::ServerConfig>,
    tcp: std::net::TcpStream,
    ok: bool,
) -> anyhow::Result<()> {
    let conn = rustls::ServerConnection::new(config)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut request_line = String::new();
    let mut reader = BufReader::new(&mut tls);
    reader.read_line(&mut request_line)?;
    // Drain the headers.
    let mut line = String::new();
    for _ in 0..64 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
    }
    let (status, body) = if !request_line.starts_with("GET /readyz") {
        ("404 Not Found", "not found")
    } else if ok {
        ("200 OK", "ok")
    } else {
        (
            "500 Internal Server Error",
            "[-]etcd failed: reason withheld\nreadyz check failed",
        )
    };
    write!(
        tls,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    tls.conn.send_close_notify();
    let _ = tls.flush();
    Ok(())
}
