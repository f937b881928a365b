//! The daemon's small HTTP/1.1 servers (metrics, the stats page): bind,
//! accept, one hyper connection per client with a header timeout. What a
//! server answers is its handler's business.

use std::{convert::Infallible, future::Future, net::SocketAddr, time::Duration};

use anyhow::Context;
use http_body_util::Full;
use hyper::{
    Request, Response,
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{debug, warn};

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
            let handler = handler.clone();
            tokio::spawn(async move {
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
