//! A TCP proxy that injects faults between lifeboat and a server: it can throttle, cut every
//! connection once it has carried a number of bytes, or stop altogether (refusing new
//! connections), the way a crashed server or a dropped network looks to a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    /// Bytes client→server after which a connection is cut (0 = never).
    cut_up_after: AtomicU64,
    /// Bytes server→client after which a connection is cut (0 = never).
    cut_down_after: AtomicU64,
    /// Server→client bytes per second per connection (0 = unlimited).
    down_rate: AtomicU64,
    stopped: AtomicBool,
    up_total: AtomicU64,
    down_total: AtomicU64,
    stop: Notify,
}

/// A running proxy; dropped with the test's runtime.
#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Starts a proxy on a free port forwarding to `127.0.0.1:upstream`.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if st.stopped.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let st = st.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    pump(client, server, st).await;
                });
            }
        });
        Proxy { port, state }
    }

    /// Cuts every connection once it has sent `n` bytes towards the server.
    pub fn cut_up_after(&self, n: u64) {
        self.state.cut_up_after.store(n, Ordering::SeqCst);
    }

    /// Cuts every connection once it has received `n` bytes from the server.
    pub fn cut_down_after(&self, n: u64) {
        self.state.cut_down_after.store(n, Ordering::SeqCst);
    }

    /// Limits server→client bytes per second on each connection.
    pub fn throttle_down(&self, bytes_per_sec: u64) {
        self.state.down_rate.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Drops every open connection and refuses new ones.
    pub fn stop(&self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.state.stop.notify_waiters();
    }

    /// Lets connections through again.
    pub fn resume(&self) {
        self.state.stopped.store(false, Ordering::SeqCst);
    }

    /// Bytes carried towards the server so far.
    pub fn up_total(&self) -> u64 {
        self.state.up_total.load(Ordering::SeqCst)
    }

    /// Bytes carried from the server so far.
    pub fn down_total(&self) -> u64 {
        self.state.down_total.load(Ordering::SeqCst)
    }
}

async fn pump(client: TcpStream, server: TcpStream, st: Arc<State>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = {
        let st = st.clone();
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            loop {
                let n = match cr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let limit = st.cut_up_after.load(Ordering::SeqCst);
                let n = if limit > 0 && sent + n as u64 >= limit {
                    (limit - sent) as usize
                } else {
                    n
                };
                if sw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                sent += n as u64;
                st.up_total.fetch_add(n as u64, Ordering::SeqCst);
                if limit > 0 && sent >= limit {
                    return;
                }
            }
        }
    };
    let down = {
        let st = st.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut sent = 0u64;
            loop {
                let n = match sr.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let limit = st.cut_down_after.load(Ordering::SeqCst);
                let n = if limit > 0 && sent + n as u64 >= limit {
                    (limit - sent) as usize
                } else {
                    n
                };
                if cw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                sent += n as u64;
                st.down_total.fetch_add(n as u64, Ordering::SeqCst);
                if limit > 0 && sent >= limit {
                    return;
                }
                let rate = st.down_rate.load(Ordering::SeqCst);
                if rate > 0 {
                    tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
                }
            }
        }
    };
    // The first direction to end (a cut, a close, or stop()) ends the whole connection: both
    // halves are dropped, which resets the sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = st.stop.notified() => {}
    }
}
