//! One health probe: a TCP connect, or an HTTP(S) `GET` whose status code is
//! compared with the expected one.
//!
//! A TCP check only proves that something listens: a hung apiserver still
//! completes the handshake (the kernel does it from the listen backlog, even
//! when the process never calls `accept`), which is why the design prefers
//! `https` checks of `/readyz` for control planes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt as _, stream::FuturesUnordered};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{CheckKind, CheckSpec};

/// The most we read looking for the end of the response headers. An
/// apiserver's `/readyz` headers are a few hundred bytes; anything larger is
/// not the endpoint the operator meant.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Headers we are willing to parse; more is treated as an invalid response.
const MAX_HEADERS: usize = 64;

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The backend answered the SYN with a RST: nothing listens there.
    Refused,
    /// The probe did not finish within the check's `timeout` (the value is
    /// that timeout).
    Timeout(Duration),
    /// Any other connect error (no route, network unreachable, …).
    Unreachable(String),
    /// The TLS handshake failed (certificate, protocol, reset mid-handshake).
    Tls(String),
    /// The answer was not an HTTP response we could read.
    Http(String),
    /// A valid HTTP response with a different status than expected.
    Status { got: u16, want: u16 },
    /// This host could not even try (out of file descriptors, buffers or
    /// memory): says nothing of the backend, so it is never counted for or
    /// against it.
    Local(String),
}

impl Failure {
    /// HAProxy's classification of a failed check, the "reason" of its log
    /// line ("Server k8s-api/bettley is DOWN, reason: Layer4 connection
    /// problem, info: ...").
    pub fn layer(&self) -> &'static str {
        match self {
            Self::Refused | Self::Unreachable(_) => "Layer4 connection problem",
            Self::Timeout(_) => "Check timeout",
            Self::Tls(_) => "Layer6 invalid response",
            Self::Http(_) => "Layer7 invalid response",
            Self::Status { .. } => "Layer7 wrong status",
            Self::Local(_) => "Local resource problem",
        }
    }

    /// A short stable label for metrics (`refused`, `timeout`, …).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Tls(_) => "tls",
            Self::Http(_) => "http",
            Self::Status { .. } => "status",
            Self::Local(_) => "local",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused => f.write_str("connection refused"),
            Self::Timeout(after) => {
                write!(f, "timeout after {}", humantime::format_duration(*after))
            }
            Self::Unreachable(e) => write!(f, "connection failed: {e}"),
            Self::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            Self::Http(e) => write!(f, "invalid HTTP response: {e}"),
            Self::Status { got, want } => write!(f, "HTTP status {got}, expected {want}"),
            Self::Local(e) => write!(f, "could not check from this host: {e}"),
        }
    }
}

impl std::error::Error for Failure {}

/// Runs one check of `addr` as `spec` says, bounded as a whole (connect, TLS,
/// request and response) by `spec.timeout`. Returns the time the check took.
///
/// `tls` is the client configuration from [`super::tls_config`]; it is needed
/// for `https` checks only (built once per pool, not per probe, because
/// loading trust anchors is expensive).
pub async fn probe(
    spec: &CheckSpec,
    tls: Option<&Arc<rustls::ClientConfig>>,
    addr: SocketAddr,
) -> Result<Duration, Failure> {
    let started = Instant::now();
    match tokio::time::timeout(spec.timeout, run(spec, tls, addr)).await {
        Ok(Ok(())) => Ok(started.elapsed()),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(Failure::Timeout(spec.timeout)),
    }
}

async fn run(
    spec: &CheckSpec,
    tls: Option<&Arc<rustls::ClientConfig>>,
    addr: SocketAddr,
) -> Result<(), Failure> {
    let mut tcp = connect(addr, spec.timeout).await?;
    // Checks are tiny request/response exchanges: do not let Nagle hold the
    // request back waiting for an ACK.
    let _ = tcp.set_nodelay(true);
    let host = match &spec.tls.server_name {
        Some(name) => name.clone(),
        None => addr.to_string(),
    };
    match spec.kind {
        // Dropping the stream closes the connection: a connect is the check.
        CheckKind::Tcp => Ok(()),
        CheckKind::Http => http_get(&mut tcp, &spec.path, &host, spec.expect_status).await,
        CheckKind::Https => {
            let config = tls.ok_or_else(|| {
                Failure::Tls("no TLS client configuration for this https check".into())
            })?;
            let name = server_name(spec.tls.server_name.as_deref(), addr)?;
            let connector = tokio_rustls::TlsConnector::from(Arc::clone(config));
            let mut stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| Failure::Tls(e.to_string()))?;
            http_get(&mut stream, &spec.path, &host, spec.expect_status).await
        }
    }
}

/// Connection attempts of one check: the first, and those started when
/// the ones before have had no answer for a third of the check's timeout.
const CONNECT_ATTEMPTS: u32 = 3;

/// Connects to `addr` for a check bounded by `timeout`. The kernel sends a
/// SYN again only after a second (its initial retransmission timeout),
/// which is the whole default `timeout`: one lost SYN or SYN-ACK (a lossy
/// link, or the load balancer's own receive queue overflowing under a SYN
/// flood) would fail the check, and three in a row would take a healthy
/// backend DOWN. So when an attempt has had no answer for a third of
/// `timeout`, another starts on a new socket (a new source port) while the
/// first goes on, up to [`CONNECT_ATTEMPTS`]; the first to connect is the
/// check's connection (the others are closed), and the first definite
/// answer (a refusal: the backend's RST) fails it at once. A backend
/// slower than a third of `timeout` still passes: the first attempt runs
/// until the check's end.
async fn connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, Failure> {
    let step = timeout / CONNECT_ATTEMPTS;
    let mut attempts = FuturesUnordered::new();
    attempts.push(TcpStream::connect(addr));
    for _ in 1..CONNECT_ATTEMPTS {
        tokio::select! {
            Some(result) = attempts.next() => return result.map_err(connect_failure),
            () = tokio::time::sleep(step) => attempts.push(TcpStream::connect(addr)),
        }
    }
    match attempts.next().await {
        Some(result) => result.map_err(connect_failure),
        // Never: an attempt ends only by returning above.
        None => Err(Failure::Timeout(timeout)),
    }
}

pub(super) fn connect_failure(e: io::Error) -> Failure {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::ConnectionRefused, _) => Failure::Refused,
        // The socket could not be made here: the backend was never asked.
        (_, Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) => {
            Failure::Local(e.to_string())
        }
        _ => Failure::Unreachable(e.to_string()),
    }
}

/// The name the certificate must be valid for, and the SNI we send:
/// `server_name` when configured, else the backend's IP address (rustls
/// sends no SNI for an IP, and checks the certificate's IP SANs).
fn server_name(configured: Option<&str>, addr: SocketAddr) -> Result<ServerName<'static>, Failure> {
    match configured {
        Some(name) => ServerName::try_from(name.to_owned())
            .map_err(|_| Failure::Tls(format!("invalid server name {name:?}"))),
        None => Ok(ServerName::IpAddress(addr.ip().into())),
    }
}

/// Sends the `GET` and reads until the response head parses.
async fn http_get<S>(stream: &mut S, path: &str, host: &str, want: u16) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // `Connection: close` so that the server ends the exchange; we stop
    // reading at the end of the headers anyway, the body is never needed.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-xdp-health\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| Failure::Http(format!("sending the request: {e}")))?;
    stream
        .flush()
        .await
        .map_err(|e| Failure::Http(format!("sending the request: {e}")))?;

    let got = read_status(stream).await?;
    // Close politely (a TLS close_notify), so that servers do not log a
    // truncated connection for every check. Its outcome does not matter.
    let _ = stream.shutdown().await;
    if got == want {
        Ok(())
    } else {
        Err(Failure::Status { got, want })
    }
}

/// Reads the response head (at most [`MAX_RESPONSE_HEAD`] bytes) and returns
/// its status code.
async fn read_status<S: AsyncRead + Unpin>(stream: &mut S) -> Result<u16, Failure> {
    let mut buf = vec![0u8; MAX_RESPONSE_HEAD];
    let mut len = 0;
    loop {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|e| Failure::Http(format!("reading the response: {e}")))?;
        if n == 0 {
            return Err(Failure::Http(if len == 0 {
                "connection closed without a response".into()
            } else {
                "connection closed in the middle of the response headers".into()
            }));
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                // `Complete` always carries the status code.
                return response
                    .code
                    .ok_or_else(|| Failure::Http("no status code".into()));
            }
            Ok(httparse::Status::Partial) if len == buf.len() => {
                return Err(Failure::Http(format!(
                    "response headers longer than {} KiB",
                    MAX_RESPONSE_HEAD / 1024
                )));
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(Failure::Http(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{Server, free_port, http_spec, tcp_spec};
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    const ERROR: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n";

    #[tokio::test]
    async fn tcp_listening_port_passes() {
        let server = Server::http(OK).await;
        let latency = probe(&tcp_spec(), None, server.addr).await.unwrap();
        assert!(latency < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn tcp_closed_port_is_refused() {
        let addr = free_port();
        assert_eq!(probe(&tcp_spec(), None, addr).await, Err(Failure::Refused));
    }

    #[tokio::test]
    async fn tcp_passes_even_if_the_server_never_accepts() {
        // The kernel completes the handshake from the listen backlog: this
        // is the blind spot of TCP checks that the https kind covers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(probe(&tcp_spec(), None, addr).await.is_ok());
        drop(listener);
    }

    #[tokio::test]
    async fn a_lost_syn_costs_no_failed_check() {
        // A listener whose accept queue is full drops SYNs (Linux, with or
        // without SYN cookies): the check's first SYN is lost as on a
        // lossy link, and the kernel would send it again only after a
        // second, the check's whole timeout.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(1).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..2 {
            fillers.push(TcpStream::connect(addr).await.unwrap());
        }
        let spec = CheckSpec {
            timeout: Duration::from_secs(1),
            ..tcp_spec()
        };
        let check = tokio::spawn(async move { probe(&spec, None, addr).await });
        // The first attempt's SYN meets the full queue; then room is made.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut accepted = Vec::new();
        for _ in 0..2 {
            accepted.push(listener.accept().await.unwrap());
        }
        let result = check.await.unwrap();
        assert!(result.is_ok(), "{result:?}");
        drop((fillers, accepted));
    }

    #[tokio::test]
    async fn http_200_passes() {
        let server = Server::http(OK).await;
        assert!(probe(&http_spec(), None, server.addr).await.is_ok());
        // The request line, Host and User-Agent are as documented.
        let request = server.last_request();
        assert!(
            request.starts_with(&format!(
                "GET /readyz HTTP/1.1\r\nHost: {}\r\nUser-Agent: kube-xdp-health\r\n",
                server.addr
            )),
            "{request:?}"
        );
    }

    #[tokio::test]
    async fn http_500_is_a_wrong_status() {
        let server = Server::http(ERROR).await;
        let failure = probe(&http_spec(), None, server.addr).await.unwrap_err();
        assert_eq!(
            failure,
            Failure::Status {
                got: 500,
                want: 200
            }
        );
        assert_eq!(failure.to_string(), "HTTP status 500, expected 200");
        assert_eq!(failure.layer(), "Layer7 wrong status");
    }

    #[tokio::test]
    async fn http_expect_status_is_honoured() {
        let server = Server::http(ERROR).await;
        let mut spec = http_spec();
        spec.expect_status = 500;
        assert!(probe(&spec, None, server.addr).await.is_ok());
    }

    #[tokio::test]
    async fn http_garbage_is_invalid() {
        let server = Server::http(b"SSH-2.0-OpenSSH_9.6\r\n\r\n").await;
        let failure = probe(&http_spec(), None, server.addr).await.unwrap_err();
        assert!(matches!(failure, Failure::Http(_)), "{failure:?}");
        assert!(failure.to_string().starts_with("invalid HTTP response: "));
    }

    #[tokio::test]
    async fn http_close_without_answer_is_invalid() {
        let server = Server::http(b"").await;
        let failure = probe(&http_spec(), None, server.addr).await.unwrap_err();
        assert_eq!(
            failure,
            Failure::Http("connection closed without a response".into())
        );
    }

    #[tokio::test]
    async fn http_silent_server_times_out() {
        let server = Server::silent().await;
        let mut spec = http_spec();
        spec.timeout = Duration::from_millis(200);
        let started = Instant::now();
        let failure = probe(&spec, None, server.addr).await.unwrap_err();
        let took = started.elapsed();
        assert_eq!(failure, Failure::Timeout(Duration::from_millis(200)));
        assert_eq!(failure.to_string(), "timeout after 200ms");
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn failure_texts() {
        assert_eq!(Failure::Refused.to_string(), "connection refused");
        assert_eq!(
            Failure::Timeout(Duration::from_secs(1)).to_string(),
            "timeout after 1s"
        );
        assert_eq!(Failure::Refused.layer(), "Layer4 connection problem");
        assert_eq!(
            Failure::Tls("x".into()).to_string(),
            "TLS handshake failed: x"
        );
    }
}

#[cfg(test)]
mod local_tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_here_is_not_the_backends_failure() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let f = connect_failure(io::Error::from_raw_os_error(errno));
            assert!(matches!(f, Failure::Local(_)), "{errno}: {f:?}");
            assert_eq!(f.label(), "local");
        }
        assert_eq!(
            connect_failure(io::Error::from(io::ErrorKind::ConnectionRefused)),
            Failure::Refused
        );
        assert!(matches!(
            connect_failure(io::Error::from_raw_os_error(libc::ENETUNREACH)),
            Failure::Unreachable(_)
        ));
    }
}
