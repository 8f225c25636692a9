//! An HTTP-aware TCP proxy that misbehaves the way gateways and odd S3 servers do: it can drop
//! the `If-None-Match` header from requests (a store that ignores conditional writes), and stall
//! responses once, mid-body, for a while (a link that goes silent, then comes back).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Default)]
struct State {
    /// Rename `If-None-Match:` to a header no server knows, keeping the length.
    strip_if_none_match: AtomicBool,
    /// Server→client bytes (over all connections) after which the next read stalls once.
    stall_after: AtomicU64,
    /// How long the stall lasts, in milliseconds (0 = no stall).
    stall_ms: AtomicU64,
    stalled: AtomicBool,
    down_total: AtomicU64,
    stalls: AtomicU64,
}

/// A running proxy; it lives as long as the test's runtime.
#[derive(Clone)]
pub struct Tamper {
    pub port: u16,
    state: Arc<State>,
}

impl Tamper {
    /// Starts forwarding a free port to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Tamper {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await {
                        pump(client, server, st).await;
                    }
                });
            }
        });
        Tamper { port, state }
    }

    /// From now on, requests reach the server without `If-None-Match`.
    pub fn strip_if_none_match(&self) {
        self.state.strip_if_none_match.store(true, Ordering::SeqCst);
    }

    /// Once `after` response bytes have passed, hold the response for `pause`, once.
    pub fn stall_once(&self, after: u64, pause: Duration) {
        self.state.stall_after.store(after, Ordering::SeqCst);
        self.state
            .stall_ms
            .store(pause.as_millis() as u64, Ordering::SeqCst);
    }

    /// How many stalls happened.
    pub fn stalls(&self) -> u64 {
        self.state.stalls.load(Ordering::SeqCst)
    }

    /// Server→client bytes so far.
    pub fn down_total(&self) -> u64 {
        self.state.down_total.load(Ordering::SeqCst)
    }
}

async fn pump(client: TcpStream, server: TcpStream, st: Arc<State>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up_state = st.clone();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        // The end of the previous read, so a header split across two reads is still found.
        let mut tail: Vec<u8> = Vec::new();
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut chunk = buf[..n].to_vec();
            if up_state.strip_if_none_match.load(Ordering::SeqCst) {
                let mut joined = std::mem::take(&mut tail);
                let keep = joined.len();
                joined.extend_from_slice(&chunk);
                rename_header(&mut joined);
                chunk = joined.split_off(keep);
                tail = chunk[chunk.len().saturating_sub(16)..].to_vec();
            }
            if sw.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let total = st.down_total.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
            let pause = st.stall_ms.load(Ordering::SeqCst);
            if pause > 0
                && total >= st.stall_after.load(Ordering::SeqCst)
                && !st.stalled.swap(true, Ordering::SeqCst)
            {
                st.stalls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            if cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = cw.shutdown().await;
    };
    tokio::join!(up, down);
}

/// Renames every `If-None-Match:` header (any case) to `X-Ignored-Mtc:`, of the same length.
fn rename_header(bytes: &mut [u8]) {
    const NAME: &[u8] = b"\r\nif-none-match:";
    const REPLACEMENT: &[u8] = b"\r\nx-ignored-mtc:";
    let mut i = 0;
    while i + NAME.len() <= bytes.len() {
        if bytes[i..i + NAME.len()].eq_ignore_ascii_case(NAME) {
            bytes[i..i + NAME.len()].copy_from_slice(REPLACEMENT);
            i += NAME.len();
        } else {
            i += 1;
        }
    }
}
