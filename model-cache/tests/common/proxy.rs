//! A counting TCP proxy between the cache and moto: logs every request line (moto has no
//! request counter), can slow responses down, cut every connection (a dead store), and point
//! at a new upstream (a restarted server).

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// One request as seen by the proxy.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub range: Option<String>,
}

#[derive(Default)]
struct State {
    upstream: AtomicU16,
    requests: Mutex<Vec<Request>>,
    throttle_bps: AtomicU64,
    response_bytes: AtomicU64,
    open: AtomicUsize,
    max_open: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
    down: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<State>,
}

impl Proxy {
    /// Starts on a free port, forwarding to `upstream` on 127.0.0.1.
    pub async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        state.upstream.store(upstream, Ordering::SeqCst);
        let proxy = Proxy { port, state };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let state = self.state.clone();
        let accept = tokio::spawn({
            let state = state.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let task = tokio::spawn(connection(client, state.clone()));
                    state.tasks.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        state.tasks.lock().unwrap().push(accept.abort_handle());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes the port and every connection: clients see a store that is down.
    pub fn stop(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        for t in self.state.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.state.down.store(false, Ordering::SeqCst);
        self.serve(listener);
    }

    pub fn set_upstream(&self, port: u16) {
        self.state.upstream.store(port, Ordering::SeqCst);
    }

    /// Limits each connection's response stream to `bps` bytes per second (0: unlimited).
    pub fn set_throttle(&self, bps: u64) {
        self.state.throttle_bps.store(bps, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.state.requests.lock().unwrap().clear();
        self.state.max_open.store(0, Ordering::SeqCst);
    }

    /// GETs of objects (not listings) whose path contains `needle`.
    pub fn object_gets(&self, needle: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.method == "GET" && !r.target.contains("list-type") && r.target.contains(needle)).collect()
    }

    pub fn response_bytes(&self) -> u64 {
        self.state.response_bytes.load(Ordering::SeqCst)
    }

    /// Most connections open at once since the last `clear`.
    pub fn max_open(&self) -> usize {
        self.state.max_open.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn connection(client: TcpStream, state: Arc<State>) {
    let upstream = match TcpStream::connect(("127.0.0.1", state.upstream.load(Ordering::SeqCst))).await {
        Ok(s) => s,
        Err(_) => return, // dropping the client connection: the store is unreachable
    };
    let open = state.open.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_open.fetch_max(open, Ordering::SeqCst);
    let (cr, cw) = client.into_split();
    let (ur, uw) = upstream.into_split();
    let up = requests(cr, uw, state.clone());
    let down = responses(ur, cw, state.clone());
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
    state.open.fetch_sub(1, Ordering::SeqCst);
}

/// Client to server: parses each request head to log it, then forwards head and body.
async fn requests(client: impl AsyncRead + Unpin, mut upstream: impl AsyncWrite + Unpin, state: Arc<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        loop {
            let n = reader.read_until(b'\n', &mut head).await?;
            if n == 0 {
                return Ok(());
            }
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let mut lines = text.split("\r\n");
        let mut first = lines.next().unwrap_or("").split(' ');
        let (method, target) = (first.next().unwrap_or("").to_string(), first.next().unwrap_or("").to_string());
        let mut length = 0u64;
        let mut range = None;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "range" => range = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        state.requests.lock().unwrap().push(Request { method, target, range });
        upstream.write_all(&head).await?;
        tokio::io::copy(&mut (&mut reader).take(length), &mut upstream).await?;
    }
}

/// Server to client: a plain copy, optionally throttled.
async fn responses(mut upstream: impl AsyncRead + Unpin, mut client: impl AsyncWrite + Unpin, state: Arc<State>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let bps = state.throttle_bps.load(Ordering::SeqCst);
        let cap = if bps > 0 { buf.len().min(16 * 1024) } else { buf.len() };
        let n = upstream.read(&mut buf[..cap]).await?;
        if n == 0 {
            return Ok(());
        }
        client.write_all(&buf[..n]).await?;
        state.response_bytes.fetch_add(n as u64, Ordering::SeqCst);
        if bps > 0 {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / bps as f64)).await;
        }
    }
}
