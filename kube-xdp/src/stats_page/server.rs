//! `GET <stats_uri>` (HTML) and `GET <stats_uri>.json` over HTTP/1.1 on
//! `stats_listen`, behind HTTP basic auth when `stats_auth` is set.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::SystemTime};

use base64::Engine as _;
use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ALLOW, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE},
};
use tokio::task::JoinHandle;
use tracing::info;

use super::{StatsPage, html, model};
use crate::{config::StatsAuth, metrics::Metrics, view::Pins};

/// Binds `addr` and serves the page until the returned task is aborted
/// (or the runtime stops). Binding happens before this returns, so a taken
/// port is an error at start-up.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    page: Arc<StatsPage>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<JoinHandle<()>> {
    let uri = page.settings().uri;
    let (task, local) = crate::http_server::serve(addr, "stats_listen", move |req| {
        handle(req, Arc::clone(&page), Arc::clone(&metrics))
    })
    .await?;
    info!(listen = %local, "serving the stats page at http://{local}{uri}");
    Ok(task)
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Reply {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, content_type.parse().expect("a valid header"));
    // Always the maps as they are now.
    h.insert(CACHE_CONTROL, "no-store".parse().expect("a valid header"));
    r
}

fn plain(status: StatusCode, text: String) -> Reply {
    reply(status, "text/plain; charset=utf-8", Bytes::from(text))
}

/// Whether an `Authorization` header value carries `auth`'s user and a
/// password its hash was made from. The header is never logged.
pub(super) fn authorized(auth: &StatsAuth, header: Option<&str>) -> bool {
    let Some((scheme, token)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    text.split_once(':')
        .is_some_and(|(user, password)| auth.verify(user, password))
}

async fn handle(
    req: Request<Incoming>,
    page: Arc<StatsPage>,
    metrics: Arc<Metrics>,
) -> Result<Reply, Infallible> {
    let settings = page.settings();
    let path = req.uri().path();
    let json_uri = settings.json_uri();
    let json = if path == settings.uri {
        false
    } else if path == json_uri {
        true
    } else {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!("not found: the stats page is at {}\n", settings.uri),
        ));
    };
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "GET or HEAD\n".into());
            r.headers_mut()
                .insert(ALLOW, "GET, HEAD".parse().expect("a valid header"));
            return Ok(r);
        }
    };
    if let Some(auth) = settings.auth.clone() {
        let header = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // SHA-crypt runs thousands of rounds: off the executor.
        let ok = tokio::task::spawn_blocking(move || authorized(&auth, header.as_deref()))
            .await
            .unwrap_or(false);
        if !ok {
            let mut r = plain(
                StatusCode::UNAUTHORIZED,
                "the stats page needs a user and password (stats_auth)\n".into(),
            );
            r.headers_mut().insert(
                WWW_AUTHENTICATE,
                "Basic realm=\"kube-xdp stats\", charset=\"UTF-8\""
                    .parse()
                    .expect("a valid header"),
            );
            return Ok(r);
        }
    }
    let p = match read_page(&page, &metrics, &settings).await {
        Ok(p) => p,
        Err(e) => {
            return Ok(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("reading the pinned maps: {e}\n"),
            ));
        }
    };
    let (content_type, body) = if json {
        (
            "application/json",
            serde_json::to_string_pretty(&p).unwrap_or_default() + "\n",
        )
    } else {
        ("text/html; charset=utf-8", html::render(&p, &json_uri))
    };
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(body)
    };
    Ok(reply(StatusCode::OK, content_type, body))
}

/// One read of the maps (off the executor: it walks the flow table).
async fn snapshot(metrics: &Arc<Metrics>) -> anyhow::Result<crate::view::Snapshot> {
    let metrics = Arc::clone(metrics);
    tokio::task::spawn_blocking(move || {
        let names = metrics.names();
        Ok(Pins::open(metrics.pin_path())?.snapshot(Some(&names))?)
    })
    .await?
}

/// The page now, with rates since an earlier read (on the very first
/// request, one taken a second before).
async fn read_page(
    page: &Arc<StatsPage>,
    metrics: &Arc<Metrics>,
    settings: &crate::config::StatsConfig,
) -> anyhow::Result<model::Page> {
    let mut cur = snapshot(metrics).await?;
    let mut base = page.rate_base(&cur);
    if base.is_none() {
        tokio::time::sleep(super::MIN_RATE_WINDOW).await;
        cur = snapshot(metrics).await?;
        base = page.rate_base(&cur);
    }
    let info = model::DaemonInfo {
        version: (!settings.hide_version).then(|| env!("CARGO_PKG_VERSION").to_owned()),
        uptime: page.uptime(),
        config_hash: metrics.config_hash(),
        refresh: settings.refresh,
        ha: metrics.ha_current().map(|s| s.name().to_owned()),
    };
    Ok(model::build(
        &cur,
        base.as_ref(),
        &page.health(),
        page.started(),
        info,
        SystemTime::now(),
    ))
}
