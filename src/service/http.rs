//! The service's HTTP endpoints: /metrics (Prometheus text format), /healthz (the process is
//! alive), /readyz (config valid, store reachable, leader or standby known).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::service::metrics::Metrics;

/// What /readyz reports on; the service updates it.
#[derive(Debug, Clone, Default)]
pub struct Readiness {
    /// The store answered the last check (`None`: not checked yet).
    pub store: Option<Result<(), String>>,
    /// Leader election has decided (always true without leader election).
    pub role_known: bool,
}

/// Shared state of the endpoints.
pub struct State {
    /// The metrics to render.
    pub metrics: Arc<Metrics>,
    /// Readiness, updated by the service.
    pub readiness: tokio::sync::watch::Receiver<Readiness>,
}

/// Binds `addr` (fails at once if it cannot) and serves until `cancel`.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves connections from `listener` until `cancel`.
pub async fn serve(listener: TcpListener, state: Arc<State>, cancel: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "Accepting an HTTP connection failed.");
                    continue;
                }
            },
            _ = cancel.cancelled() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match req.uri().path() {
        "/metrics" => {
            let mut r = text(StatusCode::OK, state.metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let r = state.readiness.borrow().clone();
            let mut problems = Vec::new();
            match &r.store {
                None => problems.push("store: not checked yet".to_string()),
                Some(Err(e)) => problems.push(format!("store: {e}")),
                Some(Ok(())) => {}
            }
            if !r.role_known {
                problems.push("leader election: no decision yet".into());
            }
            if problems.is_empty() {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready\n{}\n", problems.join("\n")),
                )
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
