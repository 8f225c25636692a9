//! HTTP glue: a plain-HTTP/1.1 hyper server on 127.0.0.1 with a free port, running on its own
//! thread and current-thread Tokio runtime (so it serves sync tests, async tests and child
//! processes like kubectl alike), turning requests into [`Call`]s and recording them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use super::format::{path_decode, url_decode};
use super::handlers::{Call, Reply, dispatch};
use super::status::ApiError;
use super::store::State;

/// How much of a request body the log keeps.
const LOGGED_BODY_BYTES: usize = 64 * 1024;

/// One request as the server saw it, for tests that assert what a client sent.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    pub method: String,
    /// Percent-decoded path.
    pub path: String,
    /// The raw query string (empty when there was none).
    pub query: String,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    /// The body as text (lossy UTF-8), cut at 64 KiB.
    pub body: String,
    /// The status code the server answered with.
    pub status: u16,
}

/// The running server; stops (and joins its thread) when dropped.
pub(super) struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds 127.0.0.1:0 and serves `state` until the returned [`Server`] is dropped.
pub(super) fn spawn(state: Arc<Mutex<State>>) -> std::io::Result<Server> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let (tx, rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("kube-api-test-{}", addr.port()))
        .spawn(move || runtime.block_on(accept_loop(listener, state, rx)))?;
    Ok(Server {
        addr,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn accept_loop(
    listener: std::net::TcpListener,
    state: Arc<Mutex<State>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kube_api test server: cannot register the listener with Tokio: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { Ok::<_, Infallible>(respond(&state, req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

async fn respond(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let call = Call {
        method: parts.method.as_str().to_string(),
        path: path_decode(parts.uri.path()),
        query: parse_query(parts.uri.query()),
        accept: header(ACCEPT),
        content_type: header(CONTENT_TYPE),
        user_agent: header(USER_AGENT),
        host: header(HOST),
        body: body.to_vec(),
    };
    let reply = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        let reply =
            catch_unwind(AssertUnwindSafe(|| dispatch(&mut state, &call))).unwrap_or_else(|_| {
                Reply::error(&ApiError::internal(
                    "the test server panicked while handling this request (a bug in kube_api)",
                ))
            });
        if state.record {
            let logged = &call.body[..call.body.len().min(LOGGED_BODY_BYTES)];
            state.log.push(RequestRecord {
                method: call.method.clone(),
                path: call.path.clone(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                accept: call.accept.clone(),
                content_type: call.content_type.clone(),
                user_agent: call.user_agent.clone(),
                body: String::from_utf8_lossy(logged).into_owned(),
                status: reply.code,
            });
        }
        reply
    };
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(reply.code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = reply.content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, v);
    }
    response
}
