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
//! The transport is [`server`]: std threads like the rest of the daemon (no async
//! runtime for a handful of requests), a thread per connection up to
//! `http.max_connections`, each request read before `http.request_timeout_secs`. An
//! `/events` stream keeps its connection's thread; at most `http.max_event_clients` of
//! them (a [`server::Place`] holds the count), and a stream past the cap gets 503.
//!
//! It can never block or slow ingest: every answer is built from relaxed atomic
//! counters ([`crate::stats`]) and from short snapshots of [`crate::fleet::boards::Boards`]
//! (bounded rings in memory). Nothing here reads the CSV file or touches a board's socket.

pub mod api;
pub mod dashboard;
pub mod metrics;
pub mod server;
pub mod settings;
pub mod state;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shutdown::Shutdown;
use server::{Request, Responder};
use state::{HttpState, DASHBOARD_MAX_BOARDS};
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
    server: server::Server,
    state: Arc<HttpState>,
}

/// Binds `listen` and starts serving.
pub fn start(listen: SocketAddr, state: Arc<HttpState>, shutdown: &Arc<Shutdown>) -> std::io::Result<HttpServer> {
    let limits = server::Limits {
        max_connections: state.config.max_connections,
        request_timeout: state.config.request_timeout,
        max_request_bytes: state.config.max_request_bytes,
        max_refusals_per_sec: state.config.max_refusals_per_sec,
    };
    let (routed, shutdown) = (Arc::clone(&state), Arc::clone(shutdown));
    let refused = Arc::clone(&state.refused_connections);
    let server = server::Server::start(listen, limits, refused, move |rq, out| {
        handle(rq, out, &routed, &shutdown)
    })?;
    Ok(HttpServer { server, state })
}

impl HttpServer {
    /// Where it listens (the port chosen by the system for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Stops taking requests; waits (2 s at most) for `/events` streams to notice shutdown.
    pub fn stop(self) {
        self.server.stop();
        let deadline = Instant::now() + 2 * EVENT_PERIOD;
        while self.state.event_clients.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn handle(rq: Request, out: Responder, state: &Arc<HttpState>, shutdown: &Arc<Shutdown>) {
    let (path, query) = rq.target.split_once('?').unwrap_or((&rq.target, ""));
    let flag = |name: &str| query.split('&').any(|kv| kv == name || kv == format!("{name}=1"));
    let text = "text/plain; charset=utf-8";
    match path {
        "/" | "/index.html" => out.respond(200, "text/html; charset=utf-8", dashboard::INDEX_HTML.as_bytes()),
        "/healthz" => out.respond(200, text, b"ok\n"),
        "/readyz" => {
            let problems = api::readiness(state);
            if problems.is_empty() {
                out.respond(200, text, b"ready\n")
            } else {
                out.respond(503, text, format!("not ready: {}\n", problems.join("; ")).as_bytes())
            }
        }
        "/metrics" | "/api/boards" => {
            // Built from a snapshot of every board, under the boards' lock, and sent
            // while held: one builder per CPU bounds the lock time and the memory.
            let Some(_builder) = state.builders.acquire(state.config.request_timeout) else {
                return out.respond(503, text, b"busy building other responses; try again\n");
            };
            if path == "/metrics" {
                match metrics::render(state) {
                    Ok(body) => out.respond(200, metrics::CONTENT_TYPE, body.as_bytes()),
                    Err(e) => out.respond(500, text, format!("{e}\n").as_bytes()),
                }
            } else {
                let body = api::overview_json(state, flag("series"), usize::MAX);
                out.respond(200, "application/json", body.as_bytes())
            }
        }
        "/events" if !rq.head_only => events(out, state, shutdown),
        other => match dashboard::asset(other) {
            Some((content_type, body)) => out.respond(200, content_type, body.as_bytes()),
            None => out.respond(404, text, b"not found\n"),
        },
    }
}

/// The event stream, on its connection's own thread until the browser goes away or
/// the daemon stops.
fn events(out: Responder, state: &Arc<HttpState>, shutdown: &Arc<Shutdown>) {
    let Some(_slot) = server::Place::try_take(&state.event_clients, state.config.max_event_clients) else {
        let why = format!(
            "too many event streams (http.max_event_clients = {})\n",
            state.config.max_event_clients
        );
        return out.respond(503, "text/plain; charset=utf-8", why.as_bytes());
    };
    let mut w = out.into_stream();
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n";
    if w.write_all(head.as_bytes()).is_err() {
        return;
    }
    loop {
        let mut msg = String::from("event: overview\ndata: ");
        msg.push_str(&state.event_payload());
        msg.push_str("\n\n");
        if w.write_all(msg.as_bytes()).and_then(|_| w.flush()).is_err() {
            break; // the browser went away, or stopped reading for the write timeout
        }
        if shutdown.sleep(EVENT_PERIOD) {
            break;
        }
    }
}
