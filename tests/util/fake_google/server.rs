//! The transport and dispatch: the HTTP server, routing, and the order of checks.
use super::*;

// ---------------------------------------------------------------------------------------
// Transport: tiny_http, a fixed pool of handler threads
// ---------------------------------------------------------------------------------------

/// Starts the HTTP server on `127.0.0.1:0` (tiny_http accepts and parses HTTP/1.1,
/// keep-alive and chunked bodies included).
pub(super) fn bind() -> (tiny_http::Server, SocketAddr) {
    let server =
        tiny_http::Server::http("127.0.0.1:0").unwrap_or_else(|e| panic!("fake Google: cannot bind 127.0.0.1:0: {e}"));
    let addr = server
        .server_addr()
        .to_ip()
        .unwrap_or_else(|| panic!("fake Google: not an IP listener"));
    (server, addr)
}

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
    shared.live.fetch_add(1, Ordering::SeqCst);
    let request = match read_request(&mut raw) {
        Ok(request) => request,
        Err(ReadError::Closed) => {
            shared.live.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        Err(ReadError::Bad(message)) => {
            {
                let mut st = shared.lock();
                st.count_arrival(RequestKind::Other);
                st.record(
                    shared.started,
                    &raw.method().to_string(),
                    raw.url(),
                    RequestKind::Other,
                    None,
                    Some(400),
                    format!("malformed HTTP: {message}"),
                );
            }
            write_response(raw, &invalid_argument(&message), true);
            shared.live.fetch_sub(1, Ordering::SeqCst);
            shared.notify();
            return;
        }
    };
    let action = match panic::catch_unwind(AssertUnwindSafe(|| handle(shared, &request))) {
        Ok(action) => action,
        Err(_) => {
            let mut st = shared.lock();
            st.stats.internal_errors += 1;
            st.record(
                shared.started,
                &request.method,
                &request.target,
                RequestKind::Other,
                None,
                Some(500),
                "panic in the fake".into(),
            );
            Action::Respond(rpc_error(
                500,
                "INTERNAL",
                "The fake Google panicked while handling this request (a bug in the fake).",
            ))
        }
    };
    match action {
        Action::Respond(response) => write_response(raw, &response, false),
        Action::Drop => drop_connection(raw, request.header("connection")),
    }
    shared.live.fetch_sub(1, Ordering::SeqCst);
    shared.notify();
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

pub(super) fn sleep_unless_stopped(shared: &Shared, duration: Duration) {
    let deadline = Instant::now() + duration.min(MAX_FAULT_DURATION);
    loop {
        let now = Instant::now();
        if now >= deadline || shared.stop.load(Ordering::SeqCst) {
            return;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(10)));
    }
}

// ---------------------------------------------------------------------------------------
// A request as the dispatcher sees it
// ---------------------------------------------------------------------------------------

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

fn payload_too_large() -> ReadError {
    ReadError::Bad(format!(
        "Request payload size exceeds the limit: {MAX_REQUEST_BODY_BYTES} bytes."
    ))
}

/// Copies what the dispatcher needs out of tiny_http's request, reading the body up to
/// Google's cap (a larger declared body is refused before a byte of it is read).
fn read_request(raw: &mut tiny_http::Request) -> Result<HttpRequest, ReadError> {
    let head: usize = raw.url().len()
        + raw
            .headers()
            .iter()
            .map(|h| h.field.as_str().as_str().len() + h.value.as_str().len() + 4)
            .sum::<usize>();
    if head > MAX_HEAD_BYTES {
        return Err(ReadError::Bad("Request header fields too large.".into()));
    }
    if raw.body_length().is_some_and(|n| n > MAX_REQUEST_BODY_BYTES) {
        return Err(payload_too_large());
    }
    let mut body = Vec::new();
    raw.as_reader()
        .take(MAX_REQUEST_BODY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| ReadError::Closed)?;
    if body.len() > MAX_REQUEST_BODY_BYTES {
        return Err(payload_too_large());
    }
    let target = raw.url().to_string();
    let (raw_path, raw_query) = split_target(&target);
    let query = parse_urlencoded(raw_query.as_bytes())
        .ok_or_else(|| ReadError::Bad(format!("Bad query string: {raw_query:?}")))?;
    Ok(HttpRequest {
        method: raw.method().to_string(),
        path: raw_path.to_string(),
        query,
        headers: raw
            .headers()
            .iter()
            .map(|h| (h.field.to_string(), h.value.to_string()))
            .collect(),
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

pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: String,
}

pub(super) enum Action {
    Respond(Response),
    /// Close the connection without a response.
    Drop,
}

/// Sends `response`; `close` ends the connection after it (a request that could not be
/// read whole leaves the connection in an unknown state).
fn write_response(raw: tiny_http::Request, response: &Response, close: bool) {
    let header = |name: &str, value: &str| {
        tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes())
            .unwrap_or_else(|()| panic!("fake Google: bad header {name}: {value}"))
    };
    let mut reply = tiny_http::Response::from_data(response.body.as_bytes().to_vec())
        .with_status_code(response.status)
        .with_header(header("Content-Type", response.content_type))
        .with_header(header("Server", "ESF"));
    for (name, value) in &response.headers {
        reply.add_header(header(name, value));
    }
    if close {
        reply.add_header(header("Connection", "close"));
    }
    let _ = raw.respond(reply);
}

// ---------------------------------------------------------------------------------------
// Routing and dispatch
// ---------------------------------------------------------------------------------------

pub(super) enum Route {
    Token,
    GetSpreadsheet(String),
    GetValues(String, String),
    BatchUpdate(String),
    ValuesBatchUpdate(String),
    /// A real Google endpoint the fake does not implement (501).
    Unimplemented,
    /// Not an API path (404 page).
    NotFound,
}

impl Route {
    pub(super) fn kind(&self) -> RequestKind {
        match self {
            Route::Token => RequestKind::Token,
            Route::GetSpreadsheet(_) => RequestKind::GetSpreadsheet,
            Route::GetValues(..) => RequestKind::GetValues,
            Route::BatchUpdate(_) => RequestKind::BatchUpdate,
            Route::ValuesBatchUpdate(_) => RequestKind::ValuesBatchUpdate,
            Route::Unimplemented | Route::NotFound => RequestKind::Other,
        }
    }

    pub(super) fn spreadsheet_id(&self) -> &str {
        match self {
            Route::GetSpreadsheet(id)
            | Route::GetValues(id, _)
            | Route::BatchUpdate(id)
            | Route::ValuesBatchUpdate(id) => id,
            _ => "",
        }
    }
}

pub(super) fn route(method: &str, path: &str) -> Route {
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v4/spreadsheets/") else {
        return if path.starts_with("/v4/") || path == "/v4" {
            Route::Unimplemented
        } else {
            Route::NotFound
        };
    };
    if let Some(i) = rest.find("/values/") {
        let id = &rest[..i];
        let range = &rest[i + "/values/".len()..];
        return if method == "GET" && !id.contains('/') {
            Route::GetValues(id.to_string(), range.to_string())
        } else {
            Route::Unimplemented
        };
    }
    let rest = rest.replace("%3A", ":").replace("%3a", ":");
    if let Some(id) = rest.strip_suffix("/values:batchUpdate") {
        if method == "POST" && !id.contains('/') && !id.contains(':') {
            return Route::ValuesBatchUpdate(id.to_string());
        }
        return Route::Unimplemented;
    }
    if let Some(id) = rest.strip_suffix(":batchUpdate") {
        if method == "POST" && !id.contains('/') && !id.contains(':') {
            return Route::BatchUpdate(id.to_string());
        }
        return Route::Unimplemented;
    }
    if method == "GET" && !rest.contains('/') && !rest.contains(':') {
        return Route::GetSpreadsheet(rest);
    }
    Route::Unimplemented
}

/// Handles one parsed request. Every state change, stat and log entry is made here,
/// before the caller writes the response.
pub(super) fn handle(shared: &Shared, req: &HttpRequest) -> Action {
    let route = route(&req.method, &req.path);
    let kind = route.kind();
    let record = |st: &mut State, account: Option<String>, status: Option<u16>, note: String| {
        st.record(shared.started, &req.method, &req.target, kind, account, status, note);
    };

    // Phase 1: outage and faults, decided before anything else.
    let taken = {
        let mut st = shared.lock();
        st.count_arrival(kind);
        if kind != RequestKind::Other && st.outage_active(Instant::now()) {
            st.stats.outage_rejections += 1;
            let response = if kind == RequestKind::Token {
                oauth_error(503, "internal_failure", None)
            } else {
                rpc_error(503, "UNAVAILABLE", MSG_UNAVAILABLE)
            };
            record(&mut st, None, Some(503), "outage".into());
            return Action::Respond(response);
        }
        if kind == RequestKind::Other {
            None
        } else {
            st.take_fault(kind)
        }
    };

    let (mut note, effect) = match taken {
        Some(taken) => {
            let (note, effect) = taken.effect();
            (note, Some(effect))
        }
        None => (String::new(), None),
    };
    let (mut drop_after, mut lifetime_override) = (false, None);
    match effect {
        Some(Effect::Answer(answer)) => {
            let mut st = shared.lock();
            let status = answer.as_ref().map(|r| r.status);
            if status == Some(429) {
                st.stats.rate_limited += 1;
            }
            if status.is_none() {
                st.stats.dropped_without_response += 1;
            }
            record(&mut st, None, status, note);
            return answer.map_or(Action::Drop, Action::Respond);
        }
        Some(Effect::Delay(d)) => sleep_unless_stopped(shared, d),
        Some(Effect::ApplyThenDrop) => drop_after = true,
        Some(Effect::ShortLifetime(secs)) => lifetime_override = Some(secs),
        None => {}
    }

    // Phase 2: the request itself.
    let mut st = shared.lock();
    let now = Instant::now();
    let (response, account, why) = match &route {
        _ if req.body.len() > st.max_request_bytes => (
            invalid_argument(&format!(
                "Request payload size exceeds the limit: {} bytes.",
                st.max_request_bytes
            )),
            None,
            "payload too large",
        ),
        Route::Token => token_endpoint(&mut st, &shared.token_uri, req, lifetime_override, now),
        Route::NotFound => (
            html_page(
                404,
                "Error 404 (Not Found)!!1",
                &format!(
                    "The requested URL <code>{}</code> was not found on this server.",
                    html_escape(&req.path)
                ),
            ),
            None,
            "",
        ),
        Route::Unimplemented => (
            rpc_error(
                501,
                "UNIMPLEMENTED",
                &format!(
                    "The fake Google does not implement {} {}. It serves only POST /token, \
                     GET /v4/spreadsheets/{{id}}, POST /v4/spreadsheets/{{id}}:batchUpdate, \
                     GET /v4/spreadsheets/{{id}}/values/{{range}} and \
                     POST /v4/spreadsheets/{{id}}/values:batchUpdate.",
                    req.method, req.path
                ),
            ),
            None,
            "",
        ),
        _ => sheets_endpoint(&mut st, &route, req, now),
    };
    if !why.is_empty() {
        if !note.is_empty() {
            note.push_str("; ");
        }
        note.push_str(why);
    }
    if drop_after {
        st.stats.dropped_without_response += 1;
        let note = format!("{note}; would have answered {}", response.status);
        record(&mut st, account, None, note);
        Action::Drop
    } else {
        record(&mut st, account, Some(response.status), note);
        Action::Respond(response)
    }
}
