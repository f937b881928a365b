//! The daemon's small HTTP/1.1 servers (metrics, the stats page): bind,
//! accept, one hyper connection per client with a header timeout. What a
//! server answers is its handler's business.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tracing::{debug, warn};

/// Connections served at once: beyond, new ones are closed at once, so
/// that a flood of connections cannot take the daemon's file descriptors
/// (its health checks need them).
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` (the value of the key `key`, named in the error) and
/// serves each request with `handler` until the returned task is aborted.
/// Binding happens before this returns, so a taken port is an error at
/// start-up. Returns the task and the address bound.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn serve<H, F>(
    addr: SocketAddr,
    key: &'static str,
    handler: H,
) -> anyhow::Result<(JoinHandle<()>, SocketAddr)>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    serve_capped(addr, key, MAX_CONNECTIONS, handler).await
}

/// [`serve`] with at most `cap` connections at once.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn serve_capped<H, F>(
    addr: SocketAddr,
    key: &'static str,
    cap: usize,
    handler: H,
) -> anyhow::Result<(JoinHandle<()>, SocketAddr)>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(cap));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{key} = \"{addr}\": cannot listen there"))?;
    let local = listener.local_addr().unwrap_or(addr);
    let task = tokio::spawn(async move {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    warn!("{key}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                debug!(%peer, "{key}: {cap} connections already: closing this one");
                drop(stream);
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let _slot = slot;
                let result = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service_fn(handler))
                    .await;
                if let Err(e) = result {
                    debug!(%peer, "{key} connection: {e}");
                }
            });
        }
    });
    Ok((task, local))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_at_once() {
        let (task, addr) = serve_capped(
            "127.0.0.1:0".parse().unwrap(),
            "test_listen",
            2,
            |_req| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            },
        )
        .await
        .unwrap();
        // Two idle connections hold both slots (no request yet).
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let mut buf = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut buf))
            .await
            .expect("closed, not left hanging")
            .unwrap_or(0);
        assert_eq!(
            n,
            0,
            "the third connection was served: {:?}",
            String::from_utf8_lossy(&buf)
        );
        // Once one goes, a new one is served.
        drop(_a);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut d = tokio::net::TcpStream::connect(addr).await.unwrap();
        d.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), d.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf).ends_with("ok"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        task.abort();
    }
}
