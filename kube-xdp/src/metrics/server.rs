//! `GET /metrics` over HTTP/1.1 on `metrics_listen`.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ALLOW, CONTENT_TYPE},
};
use tokio::task::JoinHandle;
use tracing::info;

use super::Metrics;

/// What prometheus-client's text encoder produces.
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` and serves `GET /metrics` from `metrics` until the
/// returned task is aborted (or the runtime stops). Binding happens before
/// this returns, so a taken port is an error at start-up.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> anyhow::Result<JoinHandle<()>> {
    let (task, local) = crate::http_server::serve(addr, "metrics_listen", move |req| {
        handle(req, Arc::clone(&metrics))
    })
    .await?;
    info!(listen = %local, "serving Prometheus metrics at http://{local}/metrics");
    Ok(task)
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("a valid header"),
    );
    r
}

async fn handle(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: try /metrics\n"));
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n");
            r.headers_mut()
                .insert(ALLOW, "GET, HEAD".parse().expect("a valid header"));
            return Ok(r);
        }
    };
    // Reading the maps is blocking work (and walks the flow table).
    let body = match tokio::task::spawn_blocking(move || metrics.encode()).await {
        Ok(Ok(text)) => text,
        Ok(Err(_)) | Err(_) => {
            return Ok(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "encoding the metrics failed\n",
            ));
        }
    };
    let mut r = Response::new(Full::new(if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    }));
    r.headers_mut().insert(
        CONTENT_TYPE,
        CONTENT_TYPE_OPENMETRICS.parse().expect("a valid header"),
    );
    Ok(r)
}
