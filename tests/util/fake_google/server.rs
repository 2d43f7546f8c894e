//! The transport and dispatch: the HTTP server, routing, and the order of checks.
//!
//! `tiny_http` does HTTP/1.1 (keep-alive, chunked bodies, `Expect: 100-continue`,
//! malformed requests answered 400), so the fake only models Google. A panic in the
//! fake's own code is caught and answered 500: no thread dies. tiny_http sets no socket
//! timeouts: an idle kept-alive connection lives until its client closes it.
use super::*;

// --- Transport: tiny_http, a fixed pool of handler threads -----------------------------

/// Starts `HANDLER_THREADS` threads taking requests off the server until `stop`.
pub(super) fn spawn_handlers(server: &Arc<tiny_http::Server>, shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    (0..HANDLER_THREADS)
        .map(|i| {
            let (server, shared) = (Arc::clone(server), Arc::clone(shared));
            thread::Builder::new()
                .name(format!("fake-google-{i}"))
                .stack_size(HANDLER_STACK_BYTES)
                .spawn(move || {
                    while !shared.stop.load(Ordering::SeqCst) {
                        match server.recv_timeout(RECV_SLICE) {
                            Ok(Some(request)) => serve(&shared, request),
                            Ok(None) => {}
                            Err(e) => {
                                log::debug!("Fake Google: the server stopped: {e}.");
                                return;
                            }
                        }
                    }
                })
                .unwrap_or_else(|e| panic!("fake Google: cannot spawn a handler thread: {e}"))
        })
        .collect()
}

fn serve(shared: &Shared, mut raw: tiny_http::Request) {
    // A request that never reached `handle`: logged as `Other`, answered here.
    let unrouted = |method: &str, target: &str, response: &Response, note: String| {
        let mut st = shared.lock();
        st.record(method, target, RequestKind::Other, None, Some(response.status), note);
        st
    };
    let request = match read_request(&mut raw) {
        Ok(request) => request,
        Err(ReadError::Closed) => return,
        Err(ReadError::Bad(message)) => {
            let response = invalid_argument(&message);
            let note = format!("malformed HTTP: {message}");
            unrouted(&raw.method().to_string(), raw.url(), &response, note).count_arrival(RequestKind::Other);
            return write_response(raw, &response, true);
        }
    };
    let answer = panic::catch_unwind(AssertUnwindSafe(|| handle(shared, &request))).unwrap_or_else(|_| {
        let message = "The fake Google panicked while handling this request (a bug in the fake).";
        let response = rpc_error(500, "INTERNAL", message);
        let note = "panic in the fake".to_string();
        unrouted(&request.method, &request.target, &response, note)
            .stats
            .internal_errors += 1;
        Some(response)
    });
    match answer {
        Some(response) => write_response(raw, &response, false),
        None => drop_connection(raw, request.header("connection")),
    }
}

/// Ends the exchange without a response. tiny_http cannot close a kept-alive connection
/// from a handler: a request that said `Connection: close` gets nothing (the connection
/// closes, the client reads EOF); on a kept-alive connection the fake sends a few bytes
/// that are not HTTP, so the client drops the connection at once with a protocol error.
/// Either way the client has no answer and cannot know whether the request was applied.
fn drop_connection(raw: tiny_http::Request, connection: Option<&str>) {
    let mut writer = raw.into_writer();
    if !connection.is_some_and(|v| v.eq_ignore_ascii_case("close")) {
        let _ = writer.write_all(b"\x00DROPPED\r\n\r\n");
        let _ = writer.flush();
    }
}

// --- A request as the dispatcher sees it -----------------------------------------------

pub(super) struct HttpRequest {
    pub(super) method: String,
    /// Path and query as sent (for the log).
    pub(super) target: String,
    /// Path only, still percent-encoded.
    pub(super) path: String,
    pub(super) query: Vec<(String, String)>,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl HttpRequest {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub(super) enum ReadError {
    /// The peer closed or timed out: nobody to answer.
    Closed,
    /// A malformed request: answer 400 with this message.
    Bad(String),
}

/// Google's message for a request body over `limit` bytes.
fn payload_too_large(limit: usize) -> String {
    format!("Request payload size exceeds the limit: {limit} bytes.")
}

/// Copies what the dispatcher needs out of tiny_http's request, reading the body up to
/// Google's cap (a larger declared body is refused before a byte of it is read).
fn read_request(raw: &mut tiny_http::Request) -> Result<HttpRequest, ReadError> {
    let headers: Vec<(String, String)> = raw
        .headers()
        .iter()
        .map(|h| (h.field.to_string(), h.value.to_string()))
        .collect();
    let head = raw.url().len() + headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum::<usize>();
    if head > MAX_HEAD_BYTES {
        return Err(ReadError::Bad("Request header fields too large.".into()));
    }
    if raw.body_length().is_some_and(|n| n > MAX_REQUEST_BODY_BYTES) {
        return Err(ReadError::Bad(payload_too_large(MAX_REQUEST_BODY_BYTES)));
    }
    let mut body = Vec::new();
    raw.as_reader()
        .take(MAX_REQUEST_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| ReadError::Closed)?;
    if body.len() > MAX_REQUEST_BODY_BYTES {
        return Err(ReadError::Bad(payload_too_large(MAX_REQUEST_BODY_BYTES)));
    }
    let target = raw.url().to_string();
    let (raw_path, raw_query) = split_target(&target);
    let query = parse_urlencoded(raw_query.as_bytes())
        .ok_or_else(|| ReadError::Bad(format!("Bad query string: {raw_query:?}")))?;
    Ok(HttpRequest {
        method: raw.method().to_string(),
        path: raw_path.to_string(),
        query,
        headers,
        body,
        target,
    })
}

/// Splits `target` into path and query; strips `http://host` from an absolute form.
fn split_target(target: &str) -> (&str, &str) {
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    }
}

#[derive(Clone)]
pub(super) struct Response {
    pub(super) status: u16,
    /// `Content-Type` first.
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: String,
}

impl Response {
    pub(super) fn new(status: u16, content_type: &str, body: String) -> Response {
        let headers = vec![("Content-Type", content_type.to_string())];
        Response { status, headers, body }
    }
}

/// Sends `response`; `close` ends the connection after it (a request that could not be
/// read whole leaves the connection in an unknown state).
fn write_response(raw: tiny_http::Request, response: &Response, close: bool) {
    let server = ("Server", "ESF".to_string());
    let connection = ("Connection", "close".to_string());
    let mut reply = tiny_http::Response::from_data(response.body.as_bytes()).with_status_code(response.status);
    let headers = response
        .headers
        .iter()
        .chain([&server])
        .chain(close.then_some(&connection));
    // A header tiny_http cannot send (only a `Fault::Raw` content type can be one) is left out.
    for (name, value) in headers {
        if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
            reply.add_header(header);
        }
    }
    let _ = raw.respond(reply);
}

// --- Routing and dispatch --------------------------------------------------------------

/// The endpoint a request names, its spreadsheet id and its range (still
/// percent-encoded); `Other` with empty strings for anything else.
pub(crate) fn route(method: &str, path: &str) -> (RequestKind, String, String) {
    let other = (RequestKind::Other, String::new(), String::new());
    if path == "/token" {
        return (RequestKind::Token, String::new(), String::new());
    }
    let Some(rest) = path.strip_prefix("/v4/spreadsheets/") else {
        return other;
    };
    let (kind, id, range) = match rest.split_once("/values/") {
        Some((id, range)) => (RequestKind::GetValues, id.to_string(), range.to_string()),
        None => {
            let (kind, id) = match (
                rest.strip_suffix("/values:batchUpdate"),
                rest.strip_suffix(":batchUpdate"),
            ) {
                (Some(id), _) => (RequestKind::ValuesBatchUpdate, id),
                (None, Some(id)) => (RequestKind::BatchUpdate, id),
                (None, None) => (RequestKind::GetSpreadsheet, rest),
            };
            (kind, id.to_string(), String::new())
        }
    };
    let method_ok = method == if kind.is_write() { "POST" } else { "GET" };
    if !method_ok || id.contains(['/', ':']) {
        return other;
    }
    (kind, id, range)
}

/// What a request that matched no endpoint gets: real Google's 404 page off the API, 501
/// UNIMPLEMENTED (naming the request) for an API endpoint the fake does not serve.
fn no_endpoint(req: &HttpRequest) -> Response {
    if req.path != "/v4" && !req.path.starts_with("/v4/") {
        let text = format!(
            "The requested URL <code>{}</code> was not found on this server.",
            req.path.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
        );
        return html_page(404, "Error 404 (Not Found)!!1", &text);
    }
    let message = format!(
        "The fake Google does not implement {} {}. It serves only POST /token, \
         GET /v4/spreadsheets/{{id}}, POST /v4/spreadsheets/{{id}}:batchUpdate, \
         GET /v4/spreadsheets/{{id}}/values/{{range}} and \
         POST /v4/spreadsheets/{{id}}/values:batchUpdate.",
        req.method, req.path
    );
    rpc_error(501, "UNIMPLEMENTED", &message)
}

/// Handles one parsed request: every state change, stat and log entry is made here, before
/// the response is written, so a client that has read a response can assert on
/// [`FakeGoogle::stats`] at once. `None`: close the connection without a response.
pub(super) fn handle(shared: &Shared, req: &HttpRequest) -> Option<Response> {
    let (kind, id, range) = route(&req.method, &req.path);
    let finish = |st: &mut State, account: Option<String>, response: Option<Response>, note: String| {
        let status = response.as_ref().map(|r| r.status);
        if status.is_none() {
            st.stats.dropped_without_response += 1;
        }
        st.record(&req.method, &req.target, kind, account, status, note);
        response
    };

    // Phase 1: outage and faults, decided before anything else.
    let mut st = shared.lock();
    st.count_arrival(kind);
    if kind != RequestKind::Other && st.outage_until.is_some_and(|until| Instant::now() < until) {
        st.stats.outage_rejections += 1;
        let response = match kind {
            RequestKind::Token => oauth_error(503, "internal_failure", None),
            _ => status_error(503),
        };
        return finish(&mut st, None, Some(response), "outage".into());
    }
    let fault = st.take_fault(kind);
    let note = fault.as_ref().map_or_else(String::new, |(_, f)| format!("fault {f:?}"));
    if let Some(answer) = fault.as_ref().and_then(|(matching, f)| f.answer(*matching)) {
        if answer.as_ref().is_some_and(|r| r.status == 429) {
            st.stats.rate_limited += 1;
        }
        return finish(&mut st, None, answer, note);
    }
    let (mut drop_after, mut lifetime_override) = (false, None);
    match fault.map(|(_, f)| f) {
        Some(Fault::Delay(d)) => {
            drop(st);
            // Ends early when the fake stops.
            super::super::daemon::wait_until(d.min(MAX_FAULT_DURATION), || shared.stop.load(Ordering::SeqCst));
            st = shared.lock();
        }
        Some(Fault::ApplyThenDrop) => drop_after = true,
        Some(Fault::ShortTokenLifetime(secs)) => lifetime_override = Some(secs),
        _ => {}
    }

    // Phase 2: the request itself.
    let now = Instant::now();
    let limit = st.rules.max_request_bytes;
    let (response, account, why) = if req.body.len() > limit {
        (invalid_argument(&payload_too_large(limit)), None, "payload too large")
    } else {
        match kind {
            RequestKind::Token => token_endpoint(&mut st, &shared.token_uri, req, lifetime_override, now),
            RequestKind::Other => (no_endpoint(req), None, ""),
            _ => sheets_endpoint(&mut st, kind, &id, &range, req, now),
        }
    };
    let would = drop_after.then(|| format!("would have answered {}", response.status));
    let parts = [Some(note), Some(why.to_string()), would];
    let note: Vec<String> = parts.into_iter().flatten().filter(|n| !n.is_empty()).collect();
    finish(&mut st, account, (!drop_after).then_some(response), note.join("; "))
}
