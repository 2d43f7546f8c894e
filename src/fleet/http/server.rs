//! The HTTP/1.1 transport under the dashboard: accept, read one request, hand it to the
//! router, answer, close.
//!
//! Why our own and not a crate's: the dashboard port may face a whole network
//! (`http.listen = "0.0.0.0:8091"` for phones), and it shares the process's threads and
//! open files with the boards. The server it replaced (tiny_http 0.12) gave every
//! connection a thread with no cap and no read timeout, so idle connections alone could
//! take every open file of the process and keep boards out; and its accept thread ended
//! at the first accept error ("Too many open files"), after which the dashboard was gone
//! until a restart. Here:
//!
//! - at most `http.max_connections` connections are served at once (event streams
//!   included); the next is answered 503 at once and closed, and counted; at most
//!   `http.max_refusals_per_sec` of those a second, after which the accept loop pauses
//!   for the rest of the tenth of a second: a client that reconnects in a loop costs a
//!   bounded share of a CPU, and what it sends meanwhile waits in the kernel's queue;
//! - a client has `http.request_timeout_secs` to send its whole request head, however it
//!   trickles it in (one deadline, not a timeout per read), then gets 408;
//! - a request head over `http.max_request_bytes` gets 431, a malformed one 400;
//! - an accept error is logged (at most once a minute) and the loop goes on after a short
//!   pause: the listener lives as long as the daemon.
//!
//! One request per connection (`Connection: close`): a page load opens a handful, the
//! live updates are one long `/events` stream, and Prometheus scrapes every few
//! seconds, so keep-alive would save nothing worth its state. Only `GET` and `HEAD` are
//! served, so request bodies are never read.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::ratelog::RateLimitedLog;

/// Stack of a connection thread: a request head is read into the heap, and the handlers
/// build their answers there too.
const CONNECTION_STACK_BYTES: usize = 256 * 1024;
/// How long the accept loop pauses after an accept error (say, out of open files), so
/// that a connection the kernel keeps offering does not turn it into a busy loop.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);
/// How long a connection is kept after its response for the client to read it ([`linger`]).
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes read and thrown away while lingering.
const LINGER_BYTES: usize = 64 * 1024;
/// The period over which `http.max_refusals_per_sec` is counted.
const REFUSAL_TICK: Duration = Duration::from_millis(100);
/// How long [`Server::stop`] waits for the accept loop to notice.
const STOP_WAIT: Duration = Duration::from_secs(1);
/// How long writing a refusal (503) may take before the connection is dropped anyway.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_millis(200);

/// The limits of [`Server`], from `[http]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub request_timeout: Duration,
    pub max_request_bytes: usize,
    /// Connections answered 503 per second at most; past it, the accept loop pauses.
    pub max_refusals_per_sec: u32,
}

/// One request, as far as the router cares.
#[derive(Debug)]
pub struct Request {
    /// `GET` or `HEAD` (anything else is answered 405 before the router sees it).
    pub head_only: bool,
    /// The path and query, as sent (`/api/boards?series=1`).
    pub target: String,
}

/// The connection a request came on; answering consumes it.
pub struct Responder {
    stream: TcpStream,
    head_only: bool,
    peer: SocketAddr,
}

impl Responder {
    /// Sends a whole response and closes.
    pub fn respond(self, status: u16, content_type: &str, body: &[u8]) {
        // Head and body in two writes, the body not copied (`/api/boards?series=1` can be
        // hundreds of MB); the socket is TCP_NODELAY, so the body does not wait on the
        // head's acknowledgement.
        let head = response_head(status, content_type, body.len());
        let body = if self.head_only { &[][..] } else { body };
        let sent = (&self.stream)
            .write_all(head.as_bytes())
            .and_then(|()| (&self.stream).write_all(body));
        if let Err(e) = sent {
            log::debug!("HTTP: could not send a response to {}: {e}.", self.peer);
        }
        linger(&self.stream);
    }

    /// The raw stream, for a response that is written as it goes (`/events`). Writes
    /// are bounded by the request timeout, so a client that stops reading is dropped.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// The running server; [`Server::stop`] ends it.
pub struct Server {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    acceptor: JoinHandle<()>,
}

impl Server {
    /// Binds `listen` and serves each request with `route` on a thread of its own;
    /// connections answered 503 because `http.max_connections` were open are counted in
    /// `refused`.
    pub fn start<F>(listen: SocketAddr, limits: Limits, refused: Arc<AtomicU64>, route: F) -> std::io::Result<Server>
    where
        F: Fn(Request, Responder) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let stopping = Arc::clone(&stopping);
            let route = Arc::new(route);
            std::thread::Builder::new()
                .name("http-accept".into())
                .spawn(move || accept_loop(&listener, limits, &stopping, &refused, &route))?
        };
        Ok(Server {
            addr,
            stopping,
            acceptor,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits (a second at most) for the accept loop. Connections in
    /// progress finish on their own threads (each is bounded by the request timeout, an
    /// event stream by the daemon's shutdown flag).
    pub fn stop(self) {
        self.stopping.store(true, Ordering::Release);
        // The loop sees the flag when its blocked accept returns. The waking connection
        // can fail (out of open files, say): then the loop is left to the process's exit
        // rather than holding up shutdown.
        crate::shutdown::wake_listener(self.addr);
        let deadline = Instant::now() + STOP_WAIT;
        while !self.acceptor.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if self.acceptor.is_finished() {
            let _ = self.acceptor.join();
        }
    }
}

/// One of a bounded number of places counted in an atomic (`http.max_connections`
/// connections, `http.max_event_clients` streams); given back on drop, so an early
/// return or a panicking handler cannot leak it.
pub struct Place(Arc<AtomicUsize>);

impl Place {
    /// A place, if fewer than `max` are taken.
    pub fn try_take(count: &Arc<AtomicUsize>, max: usize) -> Option<Place> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| Place(Arc::clone(count)))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn accept_loop<F>(listener: &TcpListener, limits: Limits, stopping: &AtomicBool, refused: &AtomicU64, route: &Arc<F>)
where
    F: Fn(Request, Responder) + Send + Sync + 'static,
{
    // Connections being served; each holds a `Place`.
    let open = Arc::new(AtomicUsize::new(0));
    let accept_errors = RateLimitedLog::new(Duration::from_secs(60));
    let refusals = RateLimitedLog::new(Duration::from_secs(60));
    // Refusals in the current REFUSAL_TICK; past a tick's share of
    // http.max_refusals_per_sec, the loop sleeps out the tick.
    let (mut tick, mut refused_this_tick) = (Instant::now(), 0);
    while !stopping.load(Ordering::Acquire) {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                accept_errors.log(|n| {
                    log::warn!(
                        "The dashboard cannot accept a connection: {e} ({n} such errors so far). It keeps trying. If this says 'Too many open files', raise the open-files limit (ulimit -n, LimitNOFILE=) or lower server.max_connections and http.max_connections."
                    )
                });
                std::thread::sleep(ACCEPT_ERROR_PAUSE);
                continue;
            }
        };
        if stopping.load(Ordering::Acquire) {
            break;
        }
        let Some(place) = Place::try_take(&open, limits.max_connections) else {
            refused.fetch_add(1, Ordering::Relaxed);
            refusals.log(|n| {
                log::warn!(
                    "Refused a dashboard connection from {peer}: http.max_connections = {} are open ({n} refused so far). If these are your own tabs and scrapers, raise http.max_connections; otherwise something is flooding the HTTP port.",
                    limits.max_connections
                )
            });
            refuse(&stream, 503, "too many connections (http.max_connections)\n");
            if tick.elapsed() >= REFUSAL_TICK {
                (tick, refused_this_tick) = (Instant::now(), 0);
            }
            refused_this_tick += 1;
            if refused_this_tick >= limits.max_refusals_per_sec.div_ceil(10) {
                // Enough said this tick: the rest wait in the kernel's queue, where they
                // cost nothing, until the tick is over.
                std::thread::sleep(REFUSAL_TICK.saturating_sub(tick.elapsed()));
            }
            continue;
        };
        let route = Arc::clone(route);
        let spawned = std::thread::Builder::new()
            .name("http-conn".into())
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _place = place;
                serve(stream, peer, limits, &*route);
            });
        if let Err(e) = spawned {
            // The place was released with the closure; the stream with it.
            log::warn!("Could not start a thread for a dashboard connection from {peer}: {e}.");
        }
    }
}

/// Reads one request head within the limits and routes it.
fn serve(stream: TcpStream, peer: SocketAddr, limits: Limits, route: &dyn Fn(Request, Responder)) {
    let _ = stream.set_write_timeout(Some(limits.request_timeout));
    let _ = stream.set_nodelay(true);
    match read_head(&stream, limits).and_then(|head| parse_request_line(&head)) {
        Ok(request) => {
            let head_only = request.head_only;
            route(
                request,
                Responder {
                    stream,
                    head_only,
                    peer,
                },
            )
        }
        Err(Refusal { status: 0, .. }) => {} // the client is gone
        Err(Refusal { status, why }) => {
            log::debug!("HTTP: refused a request from {peer} ({status}: {why}).");
            let responder = Responder {
                stream,
                head_only: false,
                peer,
            };
            responder.respond(status, "text/plain; charset=utf-8", format!("{why}\n").as_bytes());
        }
    }
}

/// Why a request is not served: the status to answer (0: the client is gone, say
/// nothing) and a line for the body.
#[derive(Debug, PartialEq, Eq)]
struct Refusal {
    status: u16,
    why: String,
}

fn refusal(status: u16, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
    }
}

/// The request head (up to its blank line), read before one deadline.
fn read_head(mut stream: &TcpStream, limits: Limits) -> Result<Vec<u8>, Refusal> {
    let deadline = Instant::now() + limits.request_timeout;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Err(timed_out(limits));
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Err(refusal(0, "closed")),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(timed_out(limits))
            }
            Err(_) => return Err(refusal(0, "read failed")),
        };
        // Look for the blank line from a little before the new bytes (it may straddle).
        let from = head.len().saturating_sub(3);
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = end_of_head(&head[from..]) {
            head.truncate(from + end);
            return Ok(head);
        }
        if head.len() > limits.max_request_bytes {
            return Err(refusal(
                431,
                format!(
                    "request head over {} bytes (http.max_request_bytes)",
                    limits.max_request_bytes
                ),
            ));
        }
    }
}

fn timed_out(limits: Limits) -> Refusal {
    refusal(
        408,
        format!(
            "request not complete within {} s (http.request_timeout_secs)",
            limits.request_timeout.as_secs()
        ),
    )
}

/// Where the head's blank line starts (`\r\n\r\n`, or `\n\n` from a lenient client).
fn end_of_head(b: &[u8]) -> Option<usize> {
    let crlf = b.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = b.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `METHOD SP /target SP HTTP/1.x` from the head's first line.
fn parse_request_line(head: &[u8]) -> Result<Request, Refusal> {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end])
        .map_err(|_| refusal(400, "the request line is not text"))?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refusal(400, "not an HTTP request line (METHOD /path HTTP/1.1)"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(refusal(505, "only HTTP/1.x is served"));
    }
    if !target.starts_with('/') {
        return Err(refusal(400, "the target must be a path starting with /"));
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(refusal(405, "only GET and HEAD")),
    };
    Ok(Request {
        head_only,
        target: target.to_string(),
    })
}

/// Ends a connection after its response so that the client can read it: closing a
/// socket with unread input makes the kernel send a reset, and a reset can make the
/// client drop the response before reading it (a request we did not read to its end: a
/// head over the limit, or one still trickling in at the deadline). So: half-close, then
/// read and discard until the client closes, for [`LINGER`] and [`LINGER_BYTES`] at most.
fn linger(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER;
    let mut buf = [0u8; 4096];
    let mut total = 0;
    while total < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match (&*stream).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}

/// Answers without waiting on the client: a refused connection must not hold up the
/// accept loop. What the client already sent is read first (without waiting), for the
/// reason [`linger`] gives.
fn refuse(stream: &TcpStream, status: u16, body: &str) {
    let _ = stream.set_write_timeout(Some(REFUSAL_WRITE_TIMEOUT));
    let reply = response_head(status, "text/plain; charset=utf-8", body.len()) + body;
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        if !matches!((&*stream).read(&mut buf), Ok(1..)) {
            break;
        }
    }
    let _ = (&*stream).write_all(reply.as_bytes());
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// The status line and headers of every answer: its length known, never cached, and the
/// connection closed after it.
fn response_head(status: u16, content_type: &str, content_length: usize) -> String {
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status)
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let ok = parse_request_line(b"GET /api/boards?series=1 HTTP/1.1\r\nHost: x").unwrap();
        assert_eq!((ok.head_only, ok.target.as_str()), (false, "/api/boards?series=1"));
        assert!(parse_request_line(b"HEAD / HTTP/1.0").unwrap().head_only);
        let status = |line: &[u8]| parse_request_line(line).unwrap_err().status;
        assert_eq!(status(b"POST / HTTP/1.1"), 405);
        assert_eq!(status(b"GET / HTTP/2.0"), 505);
        assert_eq!(status(b"GET  / HTTP/1.1"), 400);
        assert_eq!(status(b"GET http://x/ HTTP/1.1"), 400);
        assert_eq!(status(b"\xff\xfe / HTTP/1.1"), 400);
        assert_eq!(status(b""), 400);
    }

    #[test]
    fn the_blank_line_ends_the_head_with_or_without_carriage_returns() {
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(20));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\nA: b\n\n"), Some(19));
        assert_eq!(end_of_head(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
