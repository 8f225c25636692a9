//! A TCP proxy that injects faults between lifeboat and a server: it can throttle, delay what
//! the server sends (latency, as of a slow server), cut every connection once it has carried a
//! number of bytes, stall (hold every byte, as a server that stops answering), or stop
//! altogether (refusing new connections), the way a crashed server or a dropped network looks
//! to a client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

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
    /// Server→client latency in microseconds: each chunk is delivered this long after the
    /// server sent it (0 = none).
    down_delay_us: AtomicU64,
    /// Hold every byte in both directions until released.
    stalled: AtomicBool,
    released: Notify,
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

    /// Delivers each chunk from the server `delay` after the server sent it (a slow server or
    /// link: latency, not a rate limit).
    pub fn delay_down(&self, delay: Duration) {
        self.state
            .down_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Holds every byte in both directions (new connections are accepted and held too), as a
    /// server that stops answering; [`Proxy::release`] lets them through again.
    pub fn stall(&self) {
        self.state.stalled.store(true, Ordering::SeqCst);
    }

    /// Ends a [`Proxy::stall`]: what was held is delivered.
    pub fn release(&self) {
        self.state.stalled.store(false, Ordering::SeqCst);
        self.state.released.notify_waiters();
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
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = forward(cr, sw, st.clone(), Direction::Up);
    let down = forward(sr, cw, st.clone(), Direction::Down);
    // The first direction to end (a cut, a close, or stop()) ends the whole connection: both
    // halves are dropped, which resets the sockets.
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = st.stop.notified() => {}
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// Carries one direction: a reader that applies the cut, and a writer that applies the delay,
/// the stall and the rate, joined by a queue so latency does not limit throughput.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    st: Arc<State>,
    dir: Direction,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(4);
    let reading = {
        let st = st.clone();
        async move {
            let mut buf = vec![0u8; if dir == Direction::Up { 64 } else { 16 } * 1024];
            let mut read = 0u64;
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let limit = match dir {
                    Direction::Up => st.cut_up_after.load(Ordering::SeqCst),
                    Direction::Down => st.cut_down_after.load(Ordering::SeqCst),
                };
                let n = if limit > 0 && read + n as u64 >= limit {
                    (limit - read) as usize
                } else {
                    n
                };
                if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                    return;
                }
                read += n as u64;
                if limit > 0 && read >= limit {
                    return;
                }
            }
        }
    };
    let writing = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            if dir == Direction::Down {
                let delay = st.down_delay_us.load(Ordering::SeqCst);
                tokio::time::sleep_until(read_at + Duration::from_micros(delay)).await;
            }
            while st.stalled.load(Ordering::SeqCst) {
                let released = st.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if !st.stalled.load(Ordering::SeqCst) {
                    break;
                }
                released.await;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            let n = chunk.len() as u64;
            match dir {
                Direction::Up => st.up_total.fetch_add(n, Ordering::SeqCst),
                Direction::Down => st.down_total.fetch_add(n, Ordering::SeqCst),
            };
            let rate = st.down_rate.load(Ordering::SeqCst);
            if dir == Direction::Down && rate > 0 {
                tokio::time::sleep(Duration::from_secs_f64(n as f64 / rate as f64)).await;
            }
        }
    };
    // The reader ending (a close or a cut) lets the writer deliver what was read, then end.
    tokio::join!(reading, writing);
}
