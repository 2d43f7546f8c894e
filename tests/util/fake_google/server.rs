//! The transport and dispatch: the HTTP server, routing, and the order of checks.
use super::*;

// ---------------------------------------------------------------------------------------
// Server: accept loop and connections
// ---------------------------------------------------------------------------------------

/// Registers an open connection; unregisters it on drop, however the thread ends.
pub(super) struct ConnectionGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
}

impl ConnectionGuard {
    pub(super) fn register(shared: &Arc<Shared>, id: u64, stream: &TcpStream) -> ConnectionGuard {
        shared.live.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            shared.connections().insert(id, clone);
        }
        ConnectionGuard {
            shared: Arc::clone(shared),
            id,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections().remove(&self.id);
        self.shared.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs until `FakeGoogle` is dropped (the stop flag plus a self-connect end it).
pub(super) fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut next_id: u64 = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        let accepted = listener.accept();
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                log::debug!("Fake Google: accept failed: {e}.");
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        if shared.live.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            shared.lock().stats.connections_refused += 1;
            continue; // `stream` is dropped: closed at once
        }
        next_id += 1;
        let guard = ConnectionGuard::register(shared, next_id, &stream);
        let for_thread = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name(format!("fake-google-conn-{next_id}"))
            .stack_size(CONNECTION_STACK_BYTES)
            .spawn(move || {
                let _guard = guard;
                serve_connection(&for_thread, stream);
            });
        if let Err(e) = spawned {
            // The closure (guard and stream) is dropped: the connection is closed.
            log::warn!("Fake Google: cannot spawn a connection thread: {e}.");
        }
    }
}

pub(super) fn serve_connection(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(SOCKET_TIMEOUT));
    let _ = stream.set_write_timeout(Some(SOCKET_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let request = match read_request(&mut stream) {
        Ok(request) => request,
        Err(ReadError::Closed) => return,
        Err(ReadError::Bad(message)) => {
            {
                let mut st = shared.lock();
                st.count_arrival(RequestKind::Other);
                st.record(
                    shared.started,
                    "?",
                    "?",
                    RequestKind::Other,
                    None,
                    Some(400),
                    format!("malformed HTTP: {message}"),
                );
            }
            write_response(&mut stream, &invalid_argument(&message));
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
        Action::Respond(response) => write_response(&mut stream, &response),
        Action::Drop => {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
    shared.notify();
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
// HTTP/1.1, just enough: one request per connection, Connection: close
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

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> ReadError {
        ReadError::Closed
    }
}

/// A buffered reader over the socket whose every read is bounded.
pub(super) struct BufConn<'a> {
    pub(super) stream: &'a mut TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) pos: usize,
}

impl BufConn<'_> {
    pub(super) fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads once more from the socket; `Ok(0)` at end of stream.
    pub(super) fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// One line without its `\n` / `\r\n`, at most `limit` bytes. `Ok(None)` if the
    /// stream ended before any byte of the line.
    pub(super) fn read_line(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(i) = self.buf[self.pos..].iter().position(|&b| b == b'\n') {
                let mut line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 1;
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.len() > limit {
                    return Err(ReadError::Bad("Request header line too long.".into()));
                }
                return Ok(Some(line));
            }
            if self.buffered() > limit {
                return Err(ReadError::Bad("Request header line too long.".into()));
            }
            if self.fill()? == 0 {
                return if self.buffered() == 0 {
                    Ok(None)
                } else {
                    Err(ReadError::Closed)
                };
            }
        }
    }

    pub(super) fn read_exact_vec(&mut self, n: usize, into: &mut Vec<u8>) -> Result<(), ReadError> {
        while self.buffered() < n {
            if self.fill()? == 0 {
                return Err(ReadError::Closed);
            }
        }
        into.extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(())
    }
}

pub(super) fn payload_too_large() -> ReadError {
    ReadError::Bad(format!(
        "Request payload size exceeds the limit: {MAX_REQUEST_BODY_BYTES} bytes."
    ))
}

pub(super) fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, ReadError> {
    let mut conn = BufConn {
        stream,
        buf: Vec::new(),
        pos: 0,
    };
    let mut head_bytes = 0usize;
    // The request line (RFC 9112 allows a few empty lines before it).
    let mut request_line = None;
    for _ in 0..4 {
        match conn.read_line(MAX_HEAD_BYTES)? {
            None => return Err(ReadError::Closed),
            Some(line) if line.is_empty() => head_bytes += 2,
            Some(line) => {
                head_bytes += line.len() + 2;
                request_line = Some(line);
                break;
            }
        }
    }
    let request_line = request_line.ok_or_else(|| ReadError::Bad("No request line.".into()))?;
    let request_line =
        String::from_utf8(request_line).map_err(|_| ReadError::Bad("The request line is not UTF-8.".into()))?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!("Bad request line: {request_line:?}")));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
        return Err(ReadError::Bad(format!("Bad request line: {request_line:?}")));
    }

    let mut headers = Vec::new();
    loop {
        let line = conn.read_line(MAX_HEAD_BYTES)?.ok_or(ReadError::Closed)?;
        head_bytes += line.len() + 2;
        if head_bytes > MAX_HEAD_BYTES {
            return Err(ReadError::Bad("Request header fields too large.".into()));
        }
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Bad("Too many request header fields.".into()));
        }
        let line = String::from_utf8(line).map_err(|_| ReadError::Bad("A header field is not UTF-8.".into()))?;
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ReadError::Bad(format!("Bad header field: {line:?}")))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };

    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        let _ = conn.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    }
    let mut body = Vec::new();
    let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        read_chunked(&mut conn, &mut body)?;
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| ReadError::Bad(format!("Bad Content-Length: {length:?}")))?;
        if length > MAX_REQUEST_BODY_BYTES {
            return Err(payload_too_large());
        }
        conn.read_exact_vec(length, &mut body)?;
    }

    let (raw_path, raw_query) = split_target(target);
    let query = parse_urlencoded(raw_query.as_bytes())
        .ok_or_else(|| ReadError::Bad(format!("Bad query string: {raw_query:?}")))?;
    Ok(HttpRequest {
        method: method.to_string(),
        target: target.to_string(),
        path: raw_path.to_string(),
        query,
        headers,
        body,
    })
}

/// Splits `target` into path and query; strips `http://host` from an absolute form.
pub(super) fn split_target(target: &str) -> (&str, &str) {
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    }
}

pub(super) fn read_chunked(conn: &mut BufConn<'_>, body: &mut Vec<u8>) -> Result<(), ReadError> {
    // Each iteration consumes at least one byte of body or ends, so the body cap bounds it.
    loop {
        let line = conn.read_line(1024)?.ok_or(ReadError::Closed)?;
        let text = String::from_utf8_lossy(&line);
        let size_text = text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| ReadError::Bad(format!("Bad chunk size: {size_text:?}")))?;
        if size == 0 {
            for _ in 0..MAX_HEADERS {
                let trailer = conn.read_line(MAX_HEAD_BYTES)?.ok_or(ReadError::Closed)?;
                if trailer.is_empty() {
                    return Ok(());
                }
            }
            return Err(ReadError::Bad("Too many trailer fields.".into()));
        }
        if body.len() + size > MAX_REQUEST_BODY_BYTES {
            return Err(payload_too_large());
        }
        conn.read_exact_vec(size, body)?;
        let end = conn.read_line(2)?.ok_or(ReadError::Closed)?;
        if !end.is_empty() {
            return Err(ReadError::Bad("A chunk does not end with CRLF.".into()));
        }
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

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

pub(super) fn write_response(stream: &mut TcpStream, response: &Response) {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\nServer: ESF\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(response.body.as_bytes()))
        .and_then(|()| stream.flush());
    if sent.is_err() {
        return;
    }
    // Lingering close: half-close, then drain briefly, so that unread request bytes do
    // not turn our close into a reset that destroys the response before it is read.
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while Instant::now() < deadline && drained < 1024 * 1024 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
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
            st.record(
                shared.started,
                &req.method,
                &req.target,
                kind,
                None,
                Some(503),
                "outage".into(),
            );
            return Action::Respond(response);
        }
        if kind == RequestKind::Other {
            None
        } else {
            st.take_fault(kind)
        }
    };

    let mut note = String::new();
    let mut drop_after = false;
    let mut lifetime_override = None;
    if let Some(taken) = taken {
        let early = match taken {
            TakenFault::Sheets(fault) => {
                note = format!("fault {fault:?}");
                match fault {
                    Fault::Status { code, retry_after_secs } => Some(Some(fault_response(code, retry_after_secs))),
                    Fault::Raw {
                        code,
                        content_type,
                        body,
                    } => Some(Some(raw_response(code, &content_type, body))),
                    Fault::DropBeforeApply => Some(None),
                    Fault::Delay(d) => {
                        sleep_unless_stopped(shared, d);
                        None
                    }
                    Fault::ApplyThenDrop => {
                        drop_after = true;
                        None
                    }
                }
            }
            TakenFault::Token(fault) => {
                note = format!("token fault {fault:?}");
                match fault {
                    TokenFault::ServerErrorHtml => Some(Some(html_page(
                        500,
                        "Error 500 (Server Error)!!1",
                        "There was an error. Please try again later.",
                    ))),
                    TokenFault::Unavailable => Some(Some(oauth_error(503, "internal_failure", None))),
                    TokenFault::Drop => Some(None),
                    TokenFault::Delay(d) => {
                        sleep_unless_stopped(shared, d);
                        None
                    }
                    TokenFault::ShortLifetime(secs) => {
                        lifetime_override = Some(secs);
                        None
                    }
                }
            }
        };
        if let Some(answer) = early {
            let mut st = shared.lock();
            let status = answer.as_ref().map(|r| r.status);
            if status == Some(429) {
                st.stats.rate_limited += 1;
            }
            if status.is_none() {
                st.stats.dropped_without_response += 1;
            }
            st.record(shared.started, &req.method, &req.target, kind, None, status, note);
            return answer.map_or(Action::Drop, Action::Respond);
        }
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
        st.record(shared.started, &req.method, &req.target, kind, account, None, note);
        Action::Drop
    } else {
        st.record(
            shared.started,
            &req.method,
            &req.target,
            kind,
            account,
            Some(response.status),
            note,
        );
        Action::Respond(response)
    }
}
