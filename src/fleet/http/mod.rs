//! The HTTP side: live dashboard, Prometheus metrics, health probes and a JSON API.
//!
//! ```text
//!   GET /            dashboard (embedded HTML/CSS/JS, uPlot vendored: works offline)
//!   GET /events      Server-Sent Events: the dashboard's data once a second
//!   GET /api/boards  the same as JSON for scripts (?series=1 adds the chart points)
//!   GET /metrics     Prometheus text exposition (prometheus-client)
//!   GET /healthz     200 while the process serves HTTP
//!   GET /readyz      200 when the CSV is writable and the uploader is not stalled
//! ```
//!
//! Why `tiny_http`: it is std-threads-only, like the rest of the daemon (no async
//! runtime for a handful of requests). [`HTTP_WORKERS`] named threads take requests from
//! it; each `/events` stream gets its own thread, at most `http.max_event_clients` of
//! them (an `EventSlot` guard holds the count), and a stream past the cap gets 503.
//!
//! It can never block or slow ingest: every answer is built from relaxed atomic
//! counters ([`crate::stats`]) and from short snapshots of [`crate::fleet::boards::Boards`]
//! (bounded rings in memory). Nothing here reads the CSV file or touches a board's socket.

pub mod api;
pub mod dashboard;
pub mod metrics;
pub mod settings;
pub mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, Server};

use crate::shutdown::Shutdown;
use state::{HttpState, DASHBOARD_MAX_BOARDS};

/// Threads answering requests (an `/events` stream moves to its own thread).
pub const HTTP_WORKERS: usize = 2;
/// Period of the `/events` stream.
pub const EVENT_PERIOD: Duration = Duration::from_secs(1);
impl HttpState {
    /// The `/events` payload, rebuilt at most twice per [`EVENT_PERIOD`].
    fn event_payload(&self) -> Arc<String> {
        let mut cache = self.event_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, payload)) = cache.as_ref() {
            if at.elapsed() < EVENT_PERIOD / 2 {
                return Arc::clone(payload);
            }
        }
        let payload = Arc::new(api::overview_json(self, false, DASHBOARD_MAX_BOARDS));
        *cache = Some((Instant::now(), Arc::clone(&payload)));
        payload
    }
}

/// The running server; [`HttpServer::stop`] ends it.
pub struct HttpServer {
    server: Arc<Server>,
    workers: Vec<JoinHandle<()>>,
    state: Arc<HttpState>,
    pub addr: SocketAddr,
}

/// Binds `listen` and starts the worker threads.
pub fn start(listen: SocketAddr, state: Arc<HttpState>, shutdown: &Arc<Shutdown>) -> std::io::Result<HttpServer> {
    let server = Arc::new(Server::http(listen).map_err(std::io::Error::other)?);
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| std::io::Error::other("not an IP listener"))?;
    let mut workers = Vec::new();
    for n in 0..HTTP_WORKERS {
        let (server, state, shutdown) = (Arc::clone(&server), Arc::clone(&state), Arc::clone(shutdown));
        workers.push(
            std::thread::Builder::new()
                .name(format!("http-{n}"))
                .stack_size(256 * 1024)
                .spawn(move || worker(&server, &state, &shutdown))?,
        );
    }
    Ok(HttpServer {
        server,
        workers,
        state,
        addr,
    })
}

impl HttpServer {
    /// Stops taking requests; waits (2 s at most) for `/events` streams to notice shutdown.
    pub fn stop(self) {
        for _ in &self.workers {
            self.server.unblock();
        }
        for w in self.workers {
            let _ = w.join();
        }
        let deadline = Instant::now() + 2 * EVENT_PERIOD;
        while self.state.event_clients.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn worker(server: &Server, state: &Arc<HttpState>, shutdown: &Arc<Shutdown>) {
    while !shutdown.is_requested() {
        match server.recv_timeout(Duration::from_millis(250)) {
            Ok(Some(rq)) => handle(rq, state, shutdown),
            Ok(None) => {}
            Err(e) => {
                log::debug!("HTTP: could not read a request: {e}.");
            }
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

fn respond(rq: Request, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
    let resp = Response::from_data(body.into())
        .with_status_code(status)
        .with_header(header("Content-Type", content_type))
        .with_header(header("Cache-Control", "no-store"));
    if let Err(e) = rq.respond(resp) {
        log::debug!("HTTP: could not send a response: {e}.");
    }
}

fn handle(rq: Request, state: &Arc<HttpState>, shutdown: &Arc<Shutdown>) {
    if !matches!(rq.method(), Method::Get | Method::Head) {
        return respond(rq, 405, "text/plain; charset=utf-8", "only GET\n");
    }
    let url = rq.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let flag = |name: &str| query.split('&').any(|kv| kv == name || kv == format!("{name}=1"));
    match path {
        "/" | "/index.html" => respond(rq, 200, "text/html; charset=utf-8", dashboard::INDEX_HTML),
        "/healthz" => respond(rq, 200, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            let problems = api::readiness(state);
            if problems.is_empty() {
                respond(rq, 200, "text/plain; charset=utf-8", "ready\n")
            } else {
                respond(
                    rq,
                    503,
                    "text/plain; charset=utf-8",
                    format!("not ready: {}\n", problems.join("; ")),
                )
            }
        }
        "/metrics" => match metrics::render(state) {
            Ok(text) => respond(rq, 200, metrics::CONTENT_TYPE, text),
            Err(e) => respond(rq, 500, "text/plain; charset=utf-8", format!("{e}\n")),
        },
        "/api/boards" => {
            let body = api::overview_json(state, flag("series"), usize::MAX);
            respond(rq, 200, "application/json", body)
        }
        "/events" => events(rq, state, shutdown),
        other => match dashboard::asset(other) {
            Some((content_type, body)) => respond(rq, 200, content_type, body),
            None => respond(rq, 404, "text/plain; charset=utf-8", "not found\n"),
        },
    }
}

/// Holds one of the `http.max_event_clients` stream slots; released on drop.
struct EventSlot(Arc<HttpState>);

impl EventSlot {
    fn try_acquire(state: &Arc<HttpState>) -> Option<EventSlot> {
        let max = state.config.max_event_clients;
        state
            .event_clients
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()
            .map(|_| EventSlot(Arc::clone(state)))
    }
}

impl Drop for EventSlot {
    fn drop(&mut self) {
        self.0.event_clients.fetch_sub(1, Ordering::AcqRel);
    }
}

fn events(rq: Request, state: &Arc<HttpState>, shutdown: &Arc<Shutdown>) {
    let Some(slot) = EventSlot::try_acquire(state) else {
        return respond(
            rq,
            503,
            "text/plain; charset=utf-8",
            format!(
                "too many event streams (http.max_event_clients = {})\n",
                state.config.max_event_clients
            ),
        );
    };
    let (state, shutdown) = (Arc::clone(state), Arc::clone(shutdown));
    let spawned = std::thread::Builder::new()
        .name("http-events".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let _slot = slot;
            let mut w = rq.into_writer();
            let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n";
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
            loop {
                let mut msg = String::from("event: overview\ndata: ");
                msg.push_str(&state.event_payload());
                msg.push_str("\n\n");
                if w.write_all(msg.as_bytes()).and_then(|_| w.flush()).is_err() {
                    break; // the browser went away
                }
                if shutdown.sleep(EVENT_PERIOD) {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!("Could not start a thread for a dashboard event stream: {e}. The page retries by itself.");
    }
}
