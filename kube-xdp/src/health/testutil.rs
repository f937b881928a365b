//! Test fixtures: tiny HTTP(S) responders on 127.0.0.1, certificates and
//! temporary files. Every server task is aborted when its handle drops, and
//! every per-connection step is bounded in time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, CertifiedKey, DnType, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::{CheckKind, CheckSpec, TlsSettings};

pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Bound on each step of serving one connection, so that a confused test
/// never leaves a task waiting forever.
const STEP: Duration = Duration::from_secs(5);

pub fn tcp_spec() -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Tcp,
        path: String::new(),
        expect_status: 200,
        tls: TlsSettings {
            verify: false,
            ca_file: None,
            server_name: None,
        },
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(2),
        fall: 3,
        rise: 2,
    }
}

pub fn http_spec() -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Http,
        path: "/readyz".into(),
        ..tcp_spec()
    }
}

pub fn https_spec(tls: TlsSettings) -> CheckSpec {
    CheckSpec {
        kind: CheckKind::Https,
        tls,
        ..http_spec()
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A self-signed certificate for "kubernetes" and 127.0.0.1, with a unique
/// subject so that two of them never look like each other's issuer.
pub fn self_signed() -> CertifiedKey<KeyPair> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let mut params =
        CertificateParams::new(vec!["kubernetes".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("kube-xdp test {n}"));
    let signing_key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&signing_key).unwrap();
    CertifiedKey { cert, signing_key }
}

fn private_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

fn server_config() -> rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
}

/// A file under the temporary directory, removed on drop.
pub struct TempFile {
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, contents: &str) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let n = SERIAL.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("kube-xdp-health-{}-{n}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self { path }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a test server does with each connection.
#[derive(Clone)]
enum Behaviour {
    /// Read the request head, send these bytes, close.
    Answer(&'static [u8]),
    /// Accept and hold the connection without a word.
    Silent,
}

/// A loopback server, stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
    last_request: Arc<Mutex<String>>,
}

impl Server {
    pub async fn http(response: &'static [u8]) -> Self {
        Self::http_on("127.0.0.1:0".parse().unwrap(), response).await
    }

    /// An HTTP responder on a given address (to restart one where a stopped
    /// one was).
    pub async fn http_on(addr: SocketAddr, response: &'static [u8]) -> Self {
        Self::start(addr, None, Behaviour::Answer(response)).await
    }

    pub async fn silent() -> Self {
        Self::start("127.0.0.1:0".parse().unwrap(), None, Behaviour::Silent).await
    }

    pub async fn https(cert: &CertifiedKey<KeyPair>, response: &'static [u8]) -> Self {
        let config = server_config()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.cert.der().clone()],
                private_key(&cert.signing_key),
            )
            .unwrap();
        Self::start(
            "127.0.0.1:0".parse().unwrap(),
            Some(TlsAcceptor::from(Arc::new(config))),
            Behaviour::Answer(response),
        )
        .await
    }

    /// An HTTPS server presenting `cert` but signing with `key`'s key, which
    /// `with_single_cert` would refuse, hence the resolver.
    pub async fn https_mismatched_key(
        cert: &CertifiedKey<KeyPair>,
        key: &CertifiedKey<KeyPair>,
        response: &'static [u8],
    ) -> Self {
        let signer =
            rustls::crypto::ring::sign::any_supported_type(&private_key(&key.signing_key)).unwrap();
        let resolver = FixedCert(Arc::new(sign::CertifiedKey::new(
            vec![cert.cert.der().clone()],
            signer,
        )));
        let config = server_config()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        Self::start(
            "127.0.0.1:0".parse().unwrap(),
            Some(TlsAcceptor::from(Arc::new(config))),
            Behaviour::Answer(response),
        )
        .await
    }

    async fn start(addr: SocketAddr, tls: Option<TlsAcceptor>, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let last_request = Arc::new(Mutex::new(String::new()));
        let seen = Arc::clone(&last_request);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                // An accept error ends the server rather than spinning.
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                match (&behaviour, &tls) {
                    (Behaviour::Silent, _) => held.push(tcp),
                    (Behaviour::Answer(response), None) => {
                        let mut tcp = tcp;
                        serve(&mut tcp, response, &seen).await;
                    }
                    (Behaviour::Answer(response), Some(acceptor)) => {
                        if let Ok(Ok(mut stream)) =
                            tokio::time::timeout(STEP, acceptor.accept(tcp)).await
                        {
                            serve(&mut stream, response, &seen).await;
                        }
                    }
                }
            }
        });
        Self {
            addr,
            task,
            last_request,
        }
    }

    /// The head of the last request received.
    pub fn last_request(&self) -> String {
        self.last_request.lock().unwrap().clone()
    }

    /// Stops the server and waits until its listener is closed.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head, records it, answers, closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    response: &[u8],
    seen: &Mutex<String>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match tokio::time::timeout(STEP, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => head.extend_from_slice(&buf[..n]),
            _ => return,
        }
    }
    *seen.lock().unwrap() = String::from_utf8_lossy(&head).into_owned();
    let _ = tokio::time::timeout(STEP, async {
        stream.write_all(response).await?;
        stream.shutdown().await
    })
    .await;
}

#[derive(Debug)]
struct FixedCert(Arc<sign::CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}
