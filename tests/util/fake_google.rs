//! A fake Google for the integration tests: the OAuth 2.0 token endpoint plus the part of
//! the Sheets API v4 that the uploader uses, served over real HTTP/1.1 on 127.0.0.1.
//!
//! # Why it exists
//!
//! The test machines cannot reach Google, and a mock that accepts anything would let an
//! uploader pass tests that real Google fails. This fake is a real server: the daemon
//! talks to it exactly as it talks to Google. Only two endpoints change, and both come
//! from config: the key file's `token_uri` (see [`FakeGoogle::write_key_file`]) and the
//! Sheets base URL ([`FakeGoogle::base_url`]). The fake **checks what real Google checks**
//! and answers with Google's status codes and error bodies. It can also **inject the
//! faults real Google produces**: 429s, 5xx, lost responses after a write was applied,
//! slow replies and outages. That is what the exactly-once and retry tests need.
//!
//! The sources are the verified notes in `shared/reference/sheets-and-oauth.md`, cited
//! below as "notes §n". Wording that the notes mark UNVERIFIED, or that the fake had to
//! choose, is marked *(fake's wording)*. Tests should match those texts by substring.
//!
//! # Rules it enforces (real-Google behaviour, with the source)
//!
//! | rule | the fake's answer | source |
//! |---|---|---|
//! | JWT bearer grant: `grant_type` must be `urn:ietf:params:oauth:grant-type:jwt-bearer` | 400 `unsupported_grant_type` | notes §1.3 |
//! | JWT = three base64url segments; `=` padding optional (yup-oauth2 pads) | 400 `invalid_grant` | notes §1.3 |
//! | header `alg` RS256, RS256 signature valid for the account's key (`tests/fixtures/test-key-public.der`) | 400 `invalid_grant` "Invalid JWT Signature." | notes §1.3, §1.7 |
//! | `iss` is a registered service account | 400 `invalid_grant` "Invalid grant: account not found" | brief |
//! | `exp > now`, `iat <= now + 60`, `exp - iat <= 3600` | 400 `invalid_grant` "Invalid JWT: Token must be a short-lived token (60 minutes)…" | notes §1.3 (clock sensitivity) |
//! | `aud` equals the token URI | 400 `invalid_grant` *(fake's wording)* | notes §1.3 |
//! | `scope` includes `…/auth/spreadsheets` | 400 `invalid_scope` (see *Deviations*) | notes §2.1 |
//! | a token expires `expires_in` seconds after issue and belongs to one account | 401 UNAUTHENTICATED on Sheets | notes §1.6, §2.6 |
//! | Sheets needs `Authorization: Bearer` | 401 UNAUTHENTICATED + `WWW-Authenticate`; "Request is missing required authentication credential…" without a token, "Request had invalid authentication credentials…" for an unknown or expired one | notes §2.6 |
//! | API disabled for the project ([`FakeGoogle::set_api_disabled`]) | 403 PERMISSION_DENIED, reason SERVICE_DISABLED | brief |
//! | 60 write and 60 read requests per minute per user; a service account is one user | 429 RESOURCE_EXHAUSTED with the quota body | notes §2.6, §2.7 |
//! | unknown spreadsheet id | 404 NOT_FOUND "Requested entity was not found." | notes §2.6 |
//! | spreadsheet not shared with the account, or shared read-only and written | 403 PERMISSION_DENIED "The caller does not have permission" | notes §2.1, §2.6 |
//! | `batchUpdate` is validated whole, then applied whole | 400 and nothing applied | notes §2.5, §2.7 |
//! | `addSheet` with a title that exists | 400 `A sheet with the name "…" already exists. Please enter another name.` | notes §2.5 |
//! | `appendDimension` on an unknown `sheetId` | 400 `No grid with id: …` | brief |
//! | the workbook cell cap (10,000,000 by default; [`FakeGoogle::set_max_cells`]) | 400 `This action would increase the number of cells in the workbook above the limit of … cells.` | notes §2.5 |
//! | `values:batchUpdate` needs `valueInputOption` in the body | 400 | notes §2.4 |
//! | a range names an unknown tab, or is not A1 notation | 400 `Unable to parse range: …` | notes §2.6 |
//! | a range or the written data goes past the grid | 400 `Range (…) exceeds grid limits. Max rows: R, max columns: C` | notes §2.4 |
//! | more values than the stated range holds | 400 `Requested writing within range [...], but tried writing to row [N]` | brief |
//! | values are bool, string or double; nulls are skipped; `""` clears a cell; objects and arrays are refused | 400 `Invalid values[r][c]: struct_value …` / `list_value …` | notes §2.2, §2.6 |
//! | unknown JSON fields in request bodies (proto JSON is strict) | 400 `Invalid JSON payload received. Unknown name "…"` | Google's JSON mapping |
//! | request body over 10,485,760 bytes | 400 `Request payload size exceeds the limit: 10485760 bytes.` | notes §2.6 |
//!
//! # Order of checks for a Sheets request
//!
//! 1. An active outage answers 503 (see *Faults*).
//! 2. The first queued [`Fault`] that matches the request is consumed.
//! 3. The bearer token is checked (401). Then the API-enabled switch (403). Then the
//!    account's per-minute quota (429). Only requests that get this far count against the
//!    quota, including ones that then fail with 404, 403 or 400.
//! 4. Then the spreadsheet id (404), sharing (403), validation (400), and the change.
//!
//! # Faults
//!
//! [`FakeGoogle::inject`] queues a [`Fault`] for the next `times` matching Sheets requests.
//! A fault is consumed before authentication, like a front-end error:
//! - [`Fault::Status`]: reply at once with that status and Google's body for it. 429 gets
//!   the quota body, 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED; 502 gets the
//!   HTML page of Google's front end, as real 502s do. `Retry-After` is optional. Nothing
//!   is applied.
//! - [`Fault::ApplyThenDrop`]: process the request normally (apply the write), then close
//!   the socket without a response. The client cannot know if it was applied.
//! - [`Fault::DropBeforeApply`]: read the request, then close without applying anything.
//! - [`Fault::Delay`]: wait, then process normally (a slow reply; a client timeout in
//!   that window makes the outcome ambiguous, as with real Google).
//! - [`Fault::Raw`]: any status with any body.
//!
//! [`FakeGoogle::inject_token_fault`] does the same for the token endpoint ([`TokenFault`]):
//! a 500 with an HTML body, a 503 `{"error":"internal_failure"}`, a dropped connection,
//! a delay, or a short lifetime for the next token issued.
//!
//! **Outage** ([`FakeGoogle::outage`]): for the given duration every token request and
//! every Sheets request is answered at once with **503**. Token requests get
//! `{"error":"internal_failure"}`, Sheets requests get UNAVAILABLE "The service is
//! currently unavailable.". Nothing is applied, no queued fault is consumed and no quota
//! is charged. Connections are answered, not reset. Resets are what the drop faults are for.
//!
//! # Deviations from real Google (known, deliberate)
//!
//! - Scope: a token request whose scopes lack `…/auth/spreadsheets` gets `invalid_scope`.
//!   Real Google would issue the token and refuse the Sheets call with 403 "insufficient
//!   authentication scopes". Both refuse. The fake refuses earlier, as the brief asks.
//! - `fields` on `spreadsheets.get` is ignored. The whole (small) resource is returned.
//! - `FORMATTED_VALUE` renders numbers in Rust's shortest form (`21.5`, `3`) and bools as
//!   `TRUE`/`FALSE`. Real Sheets applies the cell's number format.
//! - `USER_ENTERED` is a crude imitation: numeric strings become numbers and
//!   `TRUE`/`FALSE` become bools; formulas are stored as text. Tests should assert RAW
//!   (see [`Stats::non_raw_writes`], [`FakeGoogle::cell_written_as`]).
//! - Only the endpoints below exist. Other real endpoints (`values:append`, `values.update`,
//!   …) answer 501 UNIMPLEMENTED, naming the request, so a test fails loudly.
//! - The project-wide quota (300/min) is not modelled, only the per-user one.
//!
//! # Endpoints
//!
//! - `POST /token`: the OAuth 2.0 JWT-bearer grant.
//! - `GET /v4/spreadsheets/{id}`: spreadsheets.get.
//! - `POST /v4/spreadsheets/{id}:batchUpdate`: `addSheet`, `appendDimension`.
//! - `POST /v4/spreadsheets/{id}/values:batchUpdate`: write values at explicit ranges.
//! - `GET /v4/spreadsheets/{id}/values/{range}`: read values (percent-encoded range).
//!
//! # Server mechanics
//!
//! One accept thread plus one thread per connection, at most 64 at once (more are closed
//! at once and counted). Every socket has 10 s read and write timeouts. Request heads are
//! capped at 64 KiB, bodies at 10 MiB, and every delay is capped. Each response carries
//! `Connection: close`, so there is no keep-alive. A malformed request gets a 400. A panic
//! in the fake's own code is caught and answered with 500 (counted in
//! [`Stats::internal_errors`]): no thread dies. All state changes, the stats and the
//! request log are recorded before the response is written. A client that has read a
//! response can therefore assert on [`FakeGoogle::stats`] at once. Dropping the
//! [`FakeGoogle`] stops the accept thread (woken by a self-connect), shuts down open
//! sockets, and waits for the connection threads, in bounded time.
//!
//! # Example
//!
//! ```ignore
//! let fake = FakeGoogle::start();
//! fake.add_spreadsheet("sheet-1", &[DEFAULT_ACCOUNT]);
//! fake.write_key_file(dir.join("key.json"), DEFAULT_ACCOUNT);
//! fake.inject_for(Matching::Only(RequestKind::ValuesBatchUpdate), Fault::ApplyThenDrop, 1);
//! // … run the daemon with its Sheets base URL set to fake.base_url() …
//! assert!(fake.wait_until(Duration::from_secs(10), |f| {
//!     f.values("sheet-1", "Readings").map_or(0, |v| v.len()) == 3
//! }));
//! assert_eq!(fake.stats().non_raw_writes, 0);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------
// Public constants
// ---------------------------------------------------------------------------------------

/// The service account registered when the fake starts.
pub const DEFAULT_ACCOUNT: &str = "sensorlog-test@sensorlog-test.iam.gserviceaccount.com";
/// The scope every token request must include.
pub const SPREADSHEETS_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";
/// The `grant_type` of the JWT-bearer flow (notes §1.3).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// `expires_in` of issued tokens unless changed, as Google sends (notes §1.6).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3599;
/// Google's cell cap per spreadsheet (notes §2.5, §2.7).
pub const DEFAULT_MAX_CELLS: u64 = 10_000_000;
/// Write requests per minute per user (notes §2.7).
pub const DEFAULT_WRITE_QUOTA_PER_MINUTE: u32 = 60;
/// Read requests per minute per user (notes §2.7).
pub const DEFAULT_READ_QUOTA_PER_MINUTE: u32 = 60;
/// The quota window (per-minute quotas, notes §2.7).
pub const DEFAULT_QUOTA_WINDOW: Duration = Duration::from_secs(60);
/// The project number that appears in quota and API-disabled errors.
pub const PROJECT_NUMBER: &str = "123456";
/// The request payload cap observed on real Google (notes §2.6); Google recommends
/// staying under 2 MB. [`FakeGoogle::set_max_request_bytes`] lowers it for a test.
pub const MAX_REQUEST_BODY_BYTES: usize = 10_485_760;
/// Columns per sheet (column ZZZ; notes §2.7, UNVERIFIED there).
pub const MAX_COLUMNS: u32 = 18_278;
/// Characters per cell, counted here in UTF-16 code units (notes §2.7, UNVERIFIED there;
/// Google documents no unit, Sheets' strings are UTF-16, and this is the stricter count).
pub const MAX_CELL_CHARS: usize = 50_000;
/// Rows and columns of a tab created without `gridProperties` (notes §2.5).
pub const DEFAULT_GRID: (u32, u32) = (1000, 26);

/// The test private key (PKCS#8). The fake trusts its public half. NOT a secret.
pub const TEST_KEY_PEM: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem"));
/// A different private key, which the fake must reject. NOT a secret.
pub const OTHER_KEY_PEM: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/other-key.pem"));
/// Public half of [`TEST_KEY_PEM`], PKCS#1 RSAPublicKey DER, as ring wants it.
const TEST_PUBLIC_KEY_DER: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/test-key-public.der"
));

// ---------------------------------------------------------------------------------------
// Private limits and fixed texts
// ---------------------------------------------------------------------------------------

const MAX_CONNECTIONS: usize = 64;
const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECTION_STACK_BYTES: usize = 1024 * 1024;
const REQUEST_LOG_CAPACITY: usize = 10_000;
/// Upper bound for injected delays and outages, so that no test can hang the fake.
const MAX_FAULT_DURATION: Duration = Duration::from_secs(600);
/// Upper bound for token lifetimes (ten years), so `Instant` arithmetic cannot overflow.
const MAX_TOKEN_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;
/// How long `Drop` waits for the accept thread and for connection threads.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// JWT validity rules (notes §1.3): at most one hour, `iat` at most this far ahead.
const MAX_JWT_LIFETIME_SECS: i64 = 3600;
const MAX_JWT_IAT_SKEW_SECS: i64 = 60;

const MSG_INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. \
Expected OAuth 2 access token, login cookie or other valid authentication credential. \
See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const MSG_MISSING_CREDENTIALS: &str = "Request is missing required authentication credential. \
Expected OAuth 2 access token, login cookie or other valid authentication credential. \
See https://developers.google.com/identity/sign-in/web/devconsole-project.";
const MSG_PERMISSION_DENIED: &str = "The caller does not have permission";
const MSG_NOT_FOUND: &str = "Requested entity was not found.";
const MSG_UNAVAILABLE: &str = "The service is currently unavailable.";
const MSG_JWT_TIME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in \
a reasonable timeframe. Check your iat and exp values in the JWT claim.";
const MSG_JWT_SIGNATURE: &str = "Invalid JWT Signature.";
const MSG_ACCOUNT_NOT_FOUND: &str = "Invalid grant: account not found";

// ---------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------

/// One cell as the fake stores it (Sheets stores bool, string and double; notes §2.2).
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// Never written, or cleared with `""`.
    Empty,
    Number(f64),
    Bool(bool),
    Text(String),
}

impl Cell {
    /// `Cell::Text` from anything string-like.
    pub fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }
}

impl From<f64> for Cell {
    fn from(n: f64) -> Cell {
        Cell::Number(n)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Number(n as f64)
    }
}

impl From<bool> for Cell {
    fn from(b: bool) -> Cell {
        Cell::Bool(b)
    }
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

/// How a write asked Sheets to interpret its values (notes §2.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ValueInputOption {
    /// Stored as is. What the uploader must use.
    Raw,
    /// Parsed as if typed into the UI (formula injection risk).
    UserEntered,
}

/// What a service account may do with a spreadsheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads only: writes get 403.
    Reader,
    /// Reads and writes.
    Writer,
}

/// The endpoint a request was routed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestKind {
    /// `POST /token`.
    Token,
    /// `GET /v4/spreadsheets/{id}`.
    GetSpreadsheet,
    /// `GET /v4/spreadsheets/{id}/values/{range}`.
    GetValues,
    /// `POST /v4/spreadsheets/{id}:batchUpdate`.
    BatchUpdate,
    /// `POST /v4/spreadsheets/{id}/values:batchUpdate`.
    ValuesBatchUpdate,
    /// Anything else (404 or 501), or a request too malformed to route.
    Other,
}

impl RequestKind {
    /// A Sheets request charged to the write quota (notes §2.7: each batch is one request).
    pub fn is_write(self) -> bool {
        matches!(self, RequestKind::BatchUpdate | RequestKind::ValuesBatchUpdate)
    }

    /// A Sheets request charged to the read quota.
    pub fn is_read(self) -> bool {
        matches!(self, RequestKind::GetSpreadsheet | RequestKind::GetValues)
    }

    fn is_sheets(self) -> bool {
        self.is_write() || self.is_read()
    }
}

/// Which Sheets requests a queued [`Fault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// Any Sheets request (not token requests).
    Any,
    /// Both GET endpoints.
    Reads,
    /// Both POST endpoints.
    Writes,
    /// One endpoint.
    Only(RequestKind),
}

impl Matching {
    fn matches(self, kind: RequestKind) -> bool {
        match self {
            Matching::Any => kind.is_sheets(),
            Matching::Reads => kind.is_read(),
            Matching::Writes => kind.is_write(),
            Matching::Only(k) => k == kind && kind.is_sheets(),
        }
    }
}

/// A fault for Sheets requests (see the module docs, *Faults*).
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer with this status and Google's body for it, applying nothing.
    Status { code: u16, retry_after_secs: Option<u64> },
    /// Apply the request, then close the connection without a response.
    ApplyThenDrop,
    /// Read the request, then close the connection without applying it.
    DropBeforeApply,
    /// Wait this long (capped at 10 minutes), then process normally.
    Delay(Duration),
    /// Answer with exactly this status, content type and body, applying nothing.
    Raw {
        code: u16,
        content_type: String,
        body: String,
    },
}

impl Fault {
    /// `Fault::Status` without `Retry-After`.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after_secs: None,
        }
    }

    /// A 429 with the quota body and, if given, a `Retry-After` header.
    pub fn too_many_requests(retry_after_secs: Option<u64>) -> Fault {
        Fault::Status {
            code: 429,
            retry_after_secs,
        }
    }
}

/// A fault for the token endpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenFault {
    /// 500 with an HTML page (yup-oauth2 reports a JSON error; notes §1.7).
    ServerErrorHtml,
    /// 503 `{"error":"internal_failure"}` (yup-oauth2: `AuthError` `Other`; notes §1.7).
    Unavailable,
    /// Read the request, then close without a response.
    Drop,
    /// Wait this long (capped at 10 minutes), then answer normally.
    Delay(Duration),
    /// The next token issued gets this lifetime in seconds, in `expires_in` and server-side.
    ShortLifetime(u64),
}

/// Counters for assertions. Every field counts since [`FakeGoogle::start`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests to `/token`, answered or not.
    pub token_requests: u64,
    /// Tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused for a bad grant, assertion, account, scope or time (4xx).
    pub token_rejections: u64,
    /// Token faults consumed.
    pub token_faults_consumed: u64,
    /// Requests routed to a Sheets endpoint (all four kinds below).
    pub sheets_requests: u64,
    pub get_spreadsheet_requests: u64,
    pub get_values_requests: u64,
    pub batch_update_requests: u64,
    pub values_batch_update_requests: u64,
    /// Requests that matched no endpoint (404/501) or could not be parsed as HTTP.
    pub other_requests: u64,
    /// 401s sent (missing, unknown or expired bearer token).
    pub unauthenticated: u64,
    /// 429s sent, from the quota rule or from injected faults.
    pub rate_limited: u64,
    /// 429s sent by the quota rule only.
    pub quota_exceeded: u64,
    /// Sheets faults consumed.
    pub faults_consumed: u64,
    /// Requests answered 503 because of an outage.
    pub outage_rejections: u64,
    /// Connections closed without a response by a fault (apply-then-drop, drop-before-apply, token drop).
    pub dropped_without_response: u64,
    /// Most write requests one account sent within any quota window (60 s by default).
    /// Counts every authenticated write that reached the quota check, including the refused ones.
    pub max_writes_in_window: u64,
    /// `values:batchUpdate` requests applied.
    pub writes_applied: u64,
    /// `values:batchUpdate` requests applied with a `valueInputOption` other than RAW.
    pub non_raw_writes: u64,
    /// Connections closed at once because 64 were already open.
    pub connections_refused: u64,
    /// Panics caught inside the fake (a bug in the fake; should stay 0).
    pub internal_errors: u64,
}

/// One entry of the request log ([`FakeGoogle::requests`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    /// When the request was answered, measured from [`FakeGoogle::start`].
    pub at: Duration,
    pub method: String,
    /// The request target: path and query, as sent.
    pub path: String,
    pub kind: RequestKind,
    /// The service account of the bearer token, or the JWT's `iss` at the token endpoint.
    pub account: Option<String>,
    /// The status sent, or `None` when the connection was closed without a response.
    pub status: Option<u16>,
    /// Why, when it was not a plain answer: the fault, "outage", "quota", ….
    pub note: String,
}

impl fmt::Display for LoggedRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.status.map_or_else(|| "dropped".to_string(), |s| s.to_string());
        write!(
            f,
            "{:>9.3}s {} {} -> {}",
            self.at.as_secs_f64(),
            self.method,
            self.path,
            status
        )?;
        if let Some(account) = &self.account {
            write!(f, " [{account}]")?;
        }
        if !self.note.is_empty() {
            write!(f, " ({})", self.note)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// The handle
// ---------------------------------------------------------------------------------------

/// A running fake Google on `127.0.0.1:<port>`. Stops on drop.
pub struct FakeGoogle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept_thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for FakeGoogle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGoogle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeGoogle {
    /// Binds `127.0.0.1:0`, registers [`DEFAULT_ACCOUNT`] and starts serving.
    ///
    /// # Panics
    /// If no loopback port can be bound or no thread can be spawned (the test cannot run).
    pub fn start() -> FakeGoogle {
        let listener =
            TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("fake Google: cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake Google: no local address: {e}"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            changed: Condvar::new(),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            connections: Mutex::new(HashMap::new()),
            live: AtomicUsize::new(0),
            token_uri: format!("http://{addr}/token"),
            started: Instant::now(),
        });
        let for_thread = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("fake-google-accept".into())
            .spawn(move || accept_loop(&listener, &for_thread))
            .unwrap_or_else(|e| panic!("fake Google: cannot spawn the accept thread: {e}"));
        FakeGoogle {
            shared,
            addr,
            accept_thread: Some(accept_thread),
        }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Sheets API base URL, `http://127.0.0.1:PORT` (the daemon appends `/v4/...`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The token endpoint, `http://127.0.0.1:PORT/token`: the key's `token_uri` and the JWT's `aud`.
    pub fn token_uri(&self) -> String {
        self.shared.token_uri.clone()
    }

    // --- accounts and keys --------------------------------------------------------------

    /// Registers a service-account e-mail; its key is the test key ([`TEST_KEY_PEM`]).
    pub fn register_account(&self, email: &str) {
        self.state().accounts.insert(email.to_string());
    }

    /// A Google-shaped service-account key JSON for `email`, signed with the test key.
    pub fn key_json(&self, email: &str) -> String {
        self.key_json_with_pem(email, TEST_KEY_PEM)
    }

    /// As [`FakeGoogle::key_json`] with another private key (e.g. [`OTHER_KEY_PEM`]).
    pub fn key_json_with_pem(&self, email: &str, pem: &str) -> String {
        let project = email
            .split('@')
            .nth(1)
            .and_then(|domain| domain.split('.').next())
            .filter(|p| !p.is_empty())
            .unwrap_or("sensorlog-test");
        let key = json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c",
            "private_key": pem,
            "client_email": email,
            "client_id": "104242424242424242424",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!(
                "https://www.googleapis.com/robot/v1/metadata/x509/{}",
                email.replace('@', "%40")
            ),
            "universe_domain": "googleapis.com",
        });
        pretty(&key)
    }

    /// Writes [`FakeGoogle::key_json`] for `email` to `path`.
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write_key_file(&self, path: impl AsRef<Path>, email: &str) {
        self.write_key_file_with_pem(path, email, TEST_KEY_PEM);
    }

    /// Writes [`FakeGoogle::key_json_with_pem`] to `path` (the wrong-key test).
    ///
    /// # Panics
    /// If the file cannot be written.
    pub fn write_key_file_with_pem(&self, path: impl AsRef<Path>, email: &str, pem: &str) {
        let path = path.as_ref();
        std::fs::write(path, self.key_json_with_pem(email, pem))
            .unwrap_or_else(|e| panic!("fake Google: cannot write key file {}: {e}", path.display()));
    }

    /// Issues a token for `email` without a JWT, for raw-HTTP tests. It is counted in
    /// [`Stats::tokens_issued`] and expires like any other token.
    ///
    /// # Panics
    /// If `email` is not registered.
    pub fn issue_token(&self, email: &str) -> String {
        let mut st = self.state();
        assert!(
            st.accounts.contains(email),
            "fake Google: issue_token for unregistered account {email}"
        );
        let lifetime = st.token_lifetime_secs;
        st.issue_token(email, lifetime, Instant::now())
    }

    /// Sets `expires_in` (and the real server-side lifetime) of tokens issued from now on.
    /// Clamped to 1 s … 10 years.
    pub fn set_token_lifetime(&self, secs: u64) {
        self.state().token_lifetime_secs = secs.clamp(1, MAX_TOKEN_LIFETIME_SECS);
    }

    /// Makes every token issued so far expire now (as after a revocation). Their next
    /// use gets 401.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for token in self.state().tokens.values_mut() {
            token.expires_at = now;
        }
    }

    /// Shifts the clock the token endpoint checks `iat`/`exp` against, in seconds (a
    /// device clock that is wrong by `-secs`). Bearer-token expiry is not affected.
    pub fn set_clock_offset(&self, secs: i64) {
        self.state().clock_offset_secs = secs;
    }

    // --- spreadsheets ---------------------------------------------------------------------

    /// Creates spreadsheet `id`, shared (as Writer) with `shared_with`, with one tab
    /// `Sheet1` (sheetId 0, 1000×26).
    ///
    /// # Panics
    /// If `id` exists already.
    pub fn add_spreadsheet(&self, id: &str, shared_with: &[&str]) {
        let mut st = self.state();
        assert!(
            !st.spreadsheets.contains_key(id),
            "fake Google: spreadsheet {id} exists already"
        );
        let access = shared_with
            .iter()
            .map(|email| (email.to_string(), Role::Writer))
            .collect();
        let first = Sheet {
            props: SheetProps {
                sheet_id: 0,
                title: "Sheet1".into(),
                rows: DEFAULT_GRID.0,
                cols: DEFAULT_GRID.1,
                frozen_rows: 0,
                frozen_cols: 0,
            },
            cells: BTreeMap::new(),
        };
        st.spreadsheets.insert(
            id.to_string(),
            Spreadsheet {
                id: id.to_string(),
                title: format!("sensorlog test {id}"),
                sheets: vec![first],
                access,
                refuse_text: None,
            },
        );
    }

    /// Shares spreadsheet `id` with `email` (replacing its previous role).
    ///
    /// # Panics
    /// If `id` does not exist.
    pub fn share(&self, id: &str, email: &str, role: Role) {
        self.with_spreadsheet(id, |ss| {
            ss.access.insert(email.to_string(), role);
        });
    }

    /// Takes `email` off the sharing list of `id`.
    ///
    /// # Panics
    /// If `id` does not exist.
    pub fn unshare(&self, id: &str, email: &str) {
        self.with_spreadsheet(id, |ss| {
            ss.access.remove(email);
        });
    }

    /// Adds a tab directly (no request, no quota, no cell cap) and returns its sheetId.
    ///
    /// # Panics
    /// If `id` does not exist or the title is taken.
    pub fn add_tab(&self, id: &str, title: &str, rows: u32, cols: u32) -> i64 {
        let mut st = self.state();
        let State { spreadsheets, rng, .. } = &mut *st;
        let ss = spreadsheets
            .get_mut(id)
            .unwrap_or_else(|| panic!("fake Google: no spreadsheet {id}"));
        assert!(
            ss.sheet_by_title(title).is_none(),
            "fake Google: tab {title} exists already in {id}"
        );
        let used: Vec<i64> = ss.sheets.iter().map(|s| s.props.sheet_id).collect();
        let sheet_id = random_sheet_id(rng, &used);
        ss.sheets.push(Sheet {
            props: SheetProps {
                sheet_id,
                title: title.to_string(),
                rows: rows.max(1),
                cols: cols.clamp(1, MAX_COLUMNS),
                frozen_rows: 0,
                frozen_cols: 0,
            },
            cells: BTreeMap::new(),
        });
        sheet_id
    }

    /// Writes `rows` into tab `tab` with the top-left cell at `top_left` (e.g. `"A1"`), as
    /// RAW, directly (no request). `Cell::Empty` clears a cell.
    ///
    /// # Panics
    /// If the spreadsheet or tab does not exist, `top_left` is not a cell, or the values do
    /// not fit the grid.
    pub fn put_values(&self, id: &str, tab: &str, top_left: &str, rows: &[Vec<Cell>]) {
        let Some((None, Some(span))) = parse_a1(top_left) else {
            panic!("fake Google: put_values wants a cell like \"A1\", got {top_left:?}");
        };
        let (Some(c0), Some(r0)) = (span.start.col, span.start.row) else {
            panic!("fake Google: put_values wants a cell like \"A1\", got {top_left:?}");
        };
        self.with_spreadsheet(id, |ss| {
            let sheet = ss
                .sheet_by_title_mut(tab)
                .unwrap_or_else(|| panic!("fake Google: no tab {tab} in {id}"));
            for (i, row) in rows.iter().enumerate() {
                for (j, cell) in row.iter().enumerate() {
                    let (r, c) = (r0 as u64 + i as u64, c0 as u64 + j as u64);
                    assert!(
                        r < u64::from(sheet.props.rows) && c < u64::from(sheet.props.cols),
                        "fake Google: put_values outside the {}x{} grid of {tab}",
                        sheet.props.rows,
                        sheet.props.cols
                    );
                    sheet.set((r as u32, c as u32), cell.clone(), ValueInputOption::Raw);
                }
            }
        });
    }

    /// The values of a tab from A1, trimmed as Google trims them: no trailing empty rows,
    /// no trailing empty cells in a row, `Cell::Empty` for gaps. `None` if there is no such
    /// spreadsheet or tab.
    pub fn values(&self, id: &str, tab: &str) -> Option<Vec<Vec<Cell>>> {
        let st = self.state();
        let sheet = st.spreadsheets.get(id)?.sheet_by_title(tab)?;
        Some(sheet.trimmed_values())
    }

    /// The cell at `a1` (e.g. `"B2"`): `Cell::Empty` if unset, `None` if no such tab or cell.
    pub fn cell(&self, id: &str, tab: &str, a1: &str) -> Option<Cell> {
        let (r, c) = single_cell(a1)?;
        let st = self.state();
        let sheet = st.spreadsheets.get(id)?.sheet_by_title(tab)?;
        Some(sheet.cells.get(&(r, c)).map_or(Cell::Empty, |s| s.cell.clone()))
    }

    /// The `valueInputOption` of the last write to the cell at `a1`; `None` if it is empty.
    pub fn cell_written_as(&self, id: &str, tab: &str, a1: &str) -> Option<ValueInputOption> {
        let (r, c) = single_cell(a1)?;
        let st = self.state();
        let sheet = st.spreadsheets.get(id)?.sheet_by_title(tab)?;
        sheet.cells.get(&(r, c)).map(|s| s.written_as)
    }

    /// `(rows, columns, sheetId)` of a tab, or `None`.
    pub fn grid(&self, id: &str, tab: &str) -> Option<(u32, u32, i64)> {
        let st = self.state();
        let p = &st.spreadsheets.get(id)?.sheet_by_title(tab)?.props;
        Some((p.rows, p.cols, p.sheet_id))
    }

    /// The tab titles of a spreadsheet, in order, or `None`.
    pub fn tabs(&self, id: &str) -> Option<Vec<String>> {
        let st = self.state();
        let ss = st.spreadsheets.get(id)?;
        Some(ss.sheets.iter().map(|s| s.props.title.clone()).collect())
    }

    // --- rules ----------------------------------------------------------------------------

    /// Write requests allowed per account per quota window (default 60).
    pub fn set_write_quota_per_minute(&self, n: u32) {
        self.state().write_quota = n;
    }

    /// Read requests allowed per account per quota window (default 60).
    pub fn set_read_quota_per_minute(&self, n: u32) {
        self.state().read_quota = n;
    }

    /// The rolling quota window (default 60 s). Shorten it to test recovery quickly; it
    /// also sets the window of [`Stats::max_writes_in_window`].
    pub fn set_quota_window(&self, window: Duration) {
        self.state().quota_window = window.max(Duration::from_millis(1));
    }

    /// Forgets all quota usage (not the stats).
    pub fn reset_quota(&self) {
        for usage in self.state().usage.values_mut() {
            usage.writes.clear();
            usage.reads.clear();
        }
    }

    /// A fault no client can foresee: from now on, a write with a text cell containing
    /// `needle` is refused whole with 400 INVALID_ARGUMENT (as Google refuses a batch
    /// holding one invalid value); `None` lifts it.
    pub fn refuse_cells_containing(&self, id: &str, needle: Option<&str>) {
        self.with_spreadsheet(id, |ss| ss.refuse_text = needle.map(str::to_string));
    }

    /// Caps request bodies below Google's 10 MiB (bodies over it get Google's 400).
    pub fn set_max_request_bytes(&self, n: usize) {
        self.state().max_request_bytes = n.min(MAX_REQUEST_BODY_BYTES);
    }

    /// The cell cap per spreadsheet (default 10,000,000).
    pub fn set_max_cells(&self, n: u64) {
        self.state().max_cells = n;
    }

    /// "Sheets API not enabled for the project": every authenticated Sheets request gets 403.
    pub fn set_api_disabled(&self, disabled: bool) {
        self.state().api_disabled = disabled;
    }

    // --- faults ---------------------------------------------------------------------------

    /// Queues `fault` for the next `times` Sheets requests of any kind.
    pub fn inject(&self, fault: Fault, times: u32) {
        self.inject_for(Matching::Any, fault, times);
    }

    /// Queues `fault` for the next `times` Sheets requests that match. A request consumes
    /// from the first queued entry that matches it.
    pub fn inject_for(&self, matching: Matching, fault: Fault, times: u32) {
        if times > 0 {
            self.state().faults.push_back(QueuedFault {
                matching,
                fault,
                remaining: times,
            });
        }
    }

    /// Queues `fault` for the next `times` token requests.
    pub fn inject_token_fault(&self, fault: TokenFault, times: u32) {
        if times > 0 {
            self.state().token_faults.push_back((fault, times));
        }
    }

    /// How many Sheets and token faults are still queued (counting repetitions).
    pub fn pending_faults(&self) -> u64 {
        let st = self.state();
        let sheets: u64 = st.faults.iter().map(|f| u64::from(f.remaining)).sum();
        let tokens: u64 = st.token_faults.iter().map(|(_, n)| u64::from(*n)).sum();
        sheets + tokens
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        let mut st = self.state();
        st.faults.clear();
        st.token_faults.clear();
    }

    /// Answers every token and Sheets request with 503 for `duration` (capped at 10
    /// minutes), starting now.
    pub fn outage(&self, duration: Duration) {
        let now = Instant::now();
        self.state().outage_until = Some(now + duration.min(MAX_FAULT_DURATION));
    }

    /// Ends an outage early.
    pub fn end_outage(&self) {
        self.state().outage_until = None;
    }

    // --- inspection -----------------------------------------------------------------------

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }

    /// The last (at most 10,000) requests, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state().log.iter().cloned().collect()
    }

    /// The request log as text, one line per request, to print when a test fails.
    pub fn request_log_text(&self) -> String {
        let mut out = String::new();
        for entry in self.state().log.iter() {
            let _ = writeln!(out, "{entry}");
        }
        out
    }

    /// Calls `condition` until it returns true or `timeout` (at most an hour) passes, and
    /// returns whether it did. It is re-checked after every request the fake answers, and at least every 50 ms.
    /// `condition` may call any method of the fake.
    pub fn wait_until(&self, timeout: Duration, mut condition: impl FnMut(&FakeGoogle) -> bool) -> bool {
        let deadline = Instant::now() + timeout.min(Duration::from_secs(3600));
        loop {
            let seen = self.shared.generation.load(Ordering::SeqCst);
            if condition(self) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let guard = self.state();
            if self.shared.generation.load(Ordering::SeqCst) == seen {
                let slice = (deadline - now).min(Duration::from_millis(50));
                let _ = self
                    .shared
                    .changed
                    .wait_timeout(guard, slice)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn with_spreadsheet<R>(&self, id: &str, f: impl FnOnce(&mut Spreadsheet) -> R) -> R {
        let mut st = self.state();
        let ss = st
            .spreadsheets
            .get_mut(id)
            .unwrap_or_else(|| panic!("fake Google: no spreadsheet {id}"));
        f(ss)
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a self-connect (as tiny_http does).
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept_thread.take() {
            if wait_bounded(SHUTDOWN_GRACE, || handle.is_finished()) {
                let _ = handle.join();
            }
        }
        // Shut open sockets down so that connection threads leave their reads at once.
        for stream in self.shared.connections().values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        wait_bounded(SHUTDOWN_GRACE, || self.shared.live.load(Ordering::SeqCst) == 0);
    }
}

/// Polls `done` every 5 ms until it is true or `limit` passes; returns the last answer.
fn wait_bounded(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------

struct Shared {
    state: Mutex<State>,
    /// Signalled (with `generation` bumped) after every answered request.
    changed: Condvar,
    generation: AtomicU64,
    stop: AtomicBool,
    /// Clones of open connection sockets, to shut them down on drop.
    connections: Mutex<HashMap<u64, TcpStream>>,
    live: AtomicUsize,
    token_uri: String,
    started: Instant,
}

impl Shared {
    /// The state lock. A panic while holding it (caught per request) must not disable
    /// the fake, so poisoning is ignored: every mutation leaves the state consistent.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connections(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.connections.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify(&self) {
        let _guard = self.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_all();
    }
}

struct State {
    accounts: BTreeSet<String>,
    tokens: HashMap<String, IssuedToken>,
    tokens_minted: u64,
    token_lifetime_secs: u64,
    clock_offset_secs: i64,
    spreadsheets: BTreeMap<String, Spreadsheet>,
    max_cells: u64,
    /// Request bodies over this get 400 (default [`MAX_REQUEST_BODY_BYTES`]).
    max_request_bytes: usize,
    write_quota: u32,
    read_quota: u32,
    quota_window: Duration,
    usage: HashMap<String, Usage>,
    api_disabled: bool,
    faults: VecDeque<QueuedFault>,
    token_faults: VecDeque<(TokenFault, u32)>,
    outage_until: Option<Instant>,
    stats: Stats,
    log: VecDeque<LoggedRequest>,
    rng: u64,
}

struct IssuedToken {
    account: String,
    expires_at: Instant,
}

struct QueuedFault {
    matching: Matching,
    fault: Fault,
    remaining: u32,
}

/// Quota usage of one account. `writes`/`reads` hold the admitted requests within the
/// window; `write_arrivals` every write that reached the check (for the max stat).
#[derive(Default)]
struct Usage {
    writes: VecDeque<Instant>,
    reads: VecDeque<Instant>,
    write_arrivals: VecDeque<Instant>,
}

enum TakenFault {
    Sheets(Fault),
    Token(TokenFault),
}

impl State {
    fn new() -> State {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9_7f4a_7c15, |d| d.as_nanos() as u64);
        State {
            accounts: BTreeSet::from([DEFAULT_ACCOUNT.to_string()]),
            tokens: HashMap::new(),
            tokens_minted: 0,
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            clock_offset_secs: 0,
            spreadsheets: BTreeMap::new(),
            max_cells: DEFAULT_MAX_CELLS,
            max_request_bytes: MAX_REQUEST_BODY_BYTES,
            write_quota: DEFAULT_WRITE_QUOTA_PER_MINUTE,
            read_quota: DEFAULT_READ_QUOTA_PER_MINUTE,
            quota_window: DEFAULT_QUOTA_WINDOW,
            usage: HashMap::new(),
            api_disabled: false,
            faults: VecDeque::new(),
            token_faults: VecDeque::new(),
            outage_until: None,
            stats: Stats::default(),
            log: VecDeque::new(),
            rng: seed | 1,
        }
    }

    fn count_arrival(&mut self, kind: RequestKind) {
        let s = &mut self.stats;
        match kind {
            RequestKind::Token => s.token_requests += 1,
            RequestKind::GetSpreadsheet => s.get_spreadsheet_requests += 1,
            RequestKind::GetValues => s.get_values_requests += 1,
            RequestKind::BatchUpdate => s.batch_update_requests += 1,
            RequestKind::ValuesBatchUpdate => s.values_batch_update_requests += 1,
            RequestKind::Other => s.other_requests += 1,
        }
        if kind.is_sheets() {
            s.sheets_requests += 1;
        }
    }

    fn outage_active(&mut self, now: Instant) -> bool {
        match self.outage_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.outage_until = None;
                false
            }
            None => false,
        }
    }

    fn take_fault(&mut self, kind: RequestKind) -> Option<TakenFault> {
        if kind == RequestKind::Token {
            let (fault, remaining) = self.token_faults.front_mut()?;
            let fault = fault.clone();
            *remaining -= 1;
            if *remaining == 0 {
                self.token_faults.pop_front();
            }
            self.stats.token_faults_consumed += 1;
            return Some(TakenFault::Token(fault));
        }
        let index = self.faults.iter().position(|q| q.matching.matches(kind))?;
        let entry = &mut self.faults[index];
        let fault = entry.fault.clone();
        entry.remaining -= 1;
        if entry.remaining == 0 {
            self.faults.remove(index);
        }
        self.stats.faults_consumed += 1;
        Some(TakenFault::Sheets(fault))
    }

    fn issue_token(&mut self, account: &str, lifetime_secs: u64, now: Instant) -> String {
        self.tokens.retain(|_, t| t.expires_at > now);
        self.tokens_minted += 1;
        let token = format!("ya29.fake-{}", self.tokens_minted);
        let lifetime = Duration::from_secs(lifetime_secs.clamp(1, MAX_TOKEN_LIFETIME_SECS));
        self.tokens.insert(
            token.clone(),
            IssuedToken {
                account: account.to_string(),
                expires_at: now + lifetime,
            },
        );
        self.stats.tokens_issued += 1;
        token
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        started: Instant,
        method: &str,
        target: &str,
        kind: RequestKind,
        account: Option<String>,
        status: Option<u16>,
        note: String,
    ) {
        if self.log.len() >= REQUEST_LOG_CAPACITY {
            self.log.pop_front();
        }
        let entry = LoggedRequest {
            at: started.elapsed(),
            method: method.to_string(),
            path: target.to_string(),
            kind,
            account,
            status,
            note,
        };
        log::debug!("Fake Google: {entry}.");
        self.log.push_back(entry);
    }

    /// The bearer token's account, or the 401 to send.
    fn authenticate(&self, req: &HttpRequest, now: Instant) -> Result<String, Response> {
        let Some(value) = req.header("authorization") else {
            return Err(unauthenticated(MSG_MISSING_CREDENTIALS, false));
        };
        let token = value
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match token.and_then(|t| self.tokens.get(t)) {
            Some(issued) if now < issued.expires_at => Ok(issued.account.clone()),
            _ => Err(unauthenticated(MSG_INVALID_CREDENTIALS, true)),
        }
    }

    /// Charges one request to the account's per-minute quota, or returns the 429.
    fn charge_quota(&mut self, account: &str, kind: RequestKind, now: Instant) -> Result<(), Response> {
        let window = self.quota_window;
        let usage = self.usage.entry(account.to_string()).or_default();
        for queue in [&mut usage.writes, &mut usage.reads, &mut usage.write_arrivals] {
            while queue.front().is_some_and(|&t| now.duration_since(t) >= window) {
                queue.pop_front();
            }
        }
        let (admitted, limit) = if kind.is_write() {
            usage.write_arrivals.push_back(now);
            let seen = usage.write_arrivals.len() as u64;
            self.stats.max_writes_in_window = self.stats.max_writes_in_window.max(seen);
            (&mut usage.writes, self.write_quota)
        } else {
            (&mut usage.reads, self.read_quota)
        };
        if admitted.len() >= limit as usize {
            self.stats.rate_limited += 1;
            self.stats.quota_exceeded += 1;
            return Err(quota_error(kind.is_write(), limit));
        }
        admitted.push_back(now);
        Ok(())
    }
}

struct Spreadsheet {
    id: String,
    title: String,
    sheets: Vec<Sheet>,
    access: BTreeMap<String, Role>,
    /// Injected refusal: text cells containing this get 400 ([`FakeGoogle::refuse_cells_containing`]).
    refuse_text: Option<String>,
}

impl Spreadsheet {
    fn sheet_by_title(&self, title: &str) -> Option<&Sheet> {
        self.sheets.iter().find(|s| s.props.title == title)
    }

    fn sheet_by_title_mut(&mut self, title: &str) -> Option<&mut Sheet> {
        self.sheets.iter_mut().find(|s| s.props.title == title)
    }

    fn to_json(&self) -> Value {
        let sheets: Vec<Value> = self
            .sheets
            .iter()
            .enumerate()
            .map(|(i, s)| json!({ "properties": s.props.to_json(i) }))
            .collect();
        json!({
            "spreadsheetId": self.id,
            "properties": {
                "title": self.title,
                "locale": "en_US",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Etc/GMT",
            },
            "sheets": sheets,
            "spreadsheetUrl": format!("https://docs.google.com/spreadsheets/d/{}/edit", self.id),
        })
    }
}

#[derive(Clone)]
struct SheetProps {
    sheet_id: i64,
    title: String,
    rows: u32,
    cols: u32,
    frozen_rows: u32,
    frozen_cols: u32,
}

impl SheetProps {
    fn cells(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.cols)
    }

    fn to_json(&self, index: usize) -> Value {
        let mut grid = Map::new();
        grid.insert("rowCount".into(), json!(self.rows));
        grid.insert("columnCount".into(), json!(self.cols));
        if self.frozen_rows > 0 {
            grid.insert("frozenRowCount".into(), json!(self.frozen_rows));
        }
        if self.frozen_cols > 0 {
            grid.insert("frozenColumnCount".into(), json!(self.frozen_cols));
        }
        json!({
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": grid,
        })
    }
}

struct StoredCell {
    /// Never `Cell::Empty`: an empty cell is an absent key.
    cell: Cell,
    written_as: ValueInputOption,
}

struct Sheet {
    props: SheetProps,
    /// Sparse: `(row, column)`, zero-based.
    cells: BTreeMap<(u32, u32), StoredCell>,
}

impl Sheet {
    fn set(&mut self, at: (u32, u32), cell: Cell, written_as: ValueInputOption) {
        match cell {
            Cell::Empty => {
                self.cells.remove(&at);
            }
            Cell::Text(ref s) if s.is_empty() => {
                self.cells.remove(&at);
            }
            cell => {
                self.cells.insert(at, StoredCell { cell, written_as });
            }
        }
    }

    fn trimmed_values(&self) -> Vec<Vec<Cell>> {
        let mut rows: Vec<Vec<Cell>> = Vec::new();
        for (&(r, c), stored) in &self.cells {
            let (r, c) = (r as usize, c as usize);
            if rows.len() <= r {
                rows.resize_with(r + 1, Vec::new);
            }
            let row = &mut rows[r];
            if row.len() <= c {
                row.resize(c + 1, Cell::Empty);
            }
            row[c] = stored.cell.clone();
        }
        rows
    }

    /// Cells of the rectangle, relative to its top-left corner.
    fn rect(&self, r0: u32, c0: u32, r1: u32, c1: u32) -> Vec<((u32, u32), &Cell)> {
        if r0 > r1 || c0 > c1 {
            return Vec::new(); // BTreeMap::range panics on an inverted range
        }
        self.cells
            .range((r0, 0)..=(r1, u32::MAX))
            .filter(|(&(_, c), _)| c >= c0 && c <= c1)
            .map(|(&(r, c), s)| ((r - r0, c - c0), &s.cell))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// Server: accept loop and connections
// ---------------------------------------------------------------------------------------

/// Registers an open connection; unregisters it on drop, however the thread ends.
struct ConnectionGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl ConnectionGuard {
    fn register(shared: &Arc<Shared>, id: u64, stream: &TcpStream) -> ConnectionGuard {
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
fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
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

fn serve_connection(shared: &Shared, mut stream: TcpStream) {
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

fn sleep_unless_stopped(shared: &Shared, duration: Duration) {
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

struct HttpRequest {
    method: String,
    /// Path and query as sent (for the log).
    target: String,
    /// Path only, still percent-encoded.
    path: String,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

enum ReadError {
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
struct BufConn<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl BufConn<'_> {
    fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Reads once more from the socket; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
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
    fn read_line(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ReadError> {
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

    fn read_exact_vec(&mut self, n: usize, into: &mut Vec<u8>) -> Result<(), ReadError> {
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

fn payload_too_large() -> ReadError {
    ReadError::Bad(format!(
        "Request payload size exceeds the limit: {MAX_REQUEST_BODY_BYTES} bytes."
    ))
}

fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, ReadError> {
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

fn read_chunked(conn: &mut BufConn<'_>, body: &mut Vec<u8>) -> Result<(), ReadError> {
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

struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

enum Action {
    Respond(Response),
    /// Close the connection without a response.
    Drop,
}

fn reason_phrase(status: u16) -> &'static str {
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

fn write_response(stream: &mut TcpStream, response: &Response) {
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

enum Route {
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
    fn kind(&self) -> RequestKind {
        match self {
            Route::Token => RequestKind::Token,
            Route::GetSpreadsheet(_) => RequestKind::GetSpreadsheet,
            Route::GetValues(..) => RequestKind::GetValues,
            Route::BatchUpdate(_) => RequestKind::BatchUpdate,
            Route::ValuesBatchUpdate(_) => RequestKind::ValuesBatchUpdate,
            Route::Unimplemented | Route::NotFound => RequestKind::Other,
        }
    }

    fn spreadsheet_id(&self) -> &str {
        match self {
            Route::GetSpreadsheet(id)
            | Route::GetValues(id, _)
            | Route::BatchUpdate(id)
            | Route::ValuesBatchUpdate(id) => id,
            _ => "",
        }
    }
}

fn route(method: &str, path: &str) -> Route {
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
fn handle(shared: &Shared, req: &HttpRequest) -> Action {
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

// ---------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------

/// A refused token request: status, OAuth `error`, `error_description`.
struct TokenRejection {
    status: u16,
    error: &'static str,
    description: String,
}

fn reject(error: &'static str, description: impl Into<String>) -> TokenRejection {
    TokenRejection {
        status: 400,
        error,
        description: description.into(),
    }
}

fn token_endpoint(
    st: &mut State,
    token_uri: &str,
    req: &HttpRequest,
    lifetime_override: Option<u64>,
    now: Instant,
) -> (Response, Option<String>, &'static str) {
    let unix_now = unix_seconds().saturating_add(st.clock_offset_secs);
    match check_token_request(req, &st.accounts, token_uri, unix_now) {
        Err((rejection, iss)) => {
            st.stats.token_rejections += 1;
            let response = oauth_error(rejection.status, rejection.error, Some(&rejection.description));
            (response, iss, "token refused")
        }
        Ok(account) => {
            let lifetime = lifetime_override
                .unwrap_or(st.token_lifetime_secs)
                .clamp(1, MAX_TOKEN_LIFETIME_SECS);
            let token = st.issue_token(&account, lifetime, now);
            let body = json!({
                "access_token": token,
                "expires_in": lifetime,
                "token_type": "Bearer",
            });
            (json_response(200, &body), Some(account), "")
        }
    }
}

type TokenCheck = Result<String, (TokenRejection, Option<String>)>;

/// Checks a token request; on success returns the service account.
fn check_token_request(req: &HttpRequest, accounts: &BTreeSet<String>, token_uri: &str, unix_now: i64) -> TokenCheck {
    let no_iss = |r: TokenRejection| (r, None);
    if req.method != "POST" {
        return Err(no_iss(TokenRejection {
            status: 405,
            error: "invalid_request",
            description: format!("Method {} is not allowed; use POST.", req.method),
        }));
    }
    let form_type = req
        .header("content-type")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(no_iss(reject(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        )));
    }
    let Some(form) = parse_urlencoded(&req.body) else {
        return Err(no_iss(reject("invalid_request", "Malformed form body.")));
    };
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let grant = field("grant_type").unwrap_or("");
    if grant != JWT_BEARER_GRANT {
        return Err(no_iss(reject(
            "unsupported_grant_type",
            format!("Invalid grant_type: {grant}"),
        )));
    }
    let Some(assertion) = field("assertion") else {
        return Err(no_iss(reject(
            "invalid_request",
            "Missing required parameter: assertion",
        )));
    };
    verify_assertion(assertion, accounts, token_uri, unix_now)
}

/// base64url, with or without `=` padding (yup-oauth2 pads; notes §1.3).
fn base64url() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

fn verify_assertion(jwt: &str, accounts: &BTreeSet<String>, token_uri: &str, unix_now: i64) -> TokenCheck {
    let no_iss = |r: TokenRejection| (r, None);
    let segments: Vec<&str> = jwt.split('.').collect();
    if segments.len() != 3 {
        return Err(no_iss(reject(
            "invalid_grant",
            "Invalid JWT: the assertion must have three dot-separated segments.",
        )));
    }
    let engine = base64url();
    let mut decoded = Vec::with_capacity(3);
    for (name, segment) in ["header", "claims", "signature"].iter().zip(&segments) {
        match engine.decode(segment) {
            Ok(bytes) => decoded.push(bytes),
            Err(e) => {
                return Err(no_iss(reject(
                    "invalid_grant",
                    format!("Invalid JWT: the {name} segment is not base64url ({e})."),
                )))
            }
        }
    }
    let header: Value = serde_json::from_slice(&decoded[0]).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&decoded[1]).unwrap_or(Value::Null);
    if !claims.is_object() {
        return Err(no_iss(reject(
            "invalid_grant",
            "Invalid JWT: the claims segment is not a JSON object.",
        )));
    }
    let iss = claims.get("iss").and_then(Value::as_str).map(str::to_string);
    let with_iss = |r: TokenRejection| (r, iss.clone());
    match &iss {
        Some(iss) if accounts.contains(iss) => {}
        _ => return Err(with_iss(reject("invalid_grant", MSG_ACCOUNT_NOT_FOUND))),
    }
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(with_iss(reject("invalid_grant", MSG_JWT_SIGNATURE)));
    }
    // The signature covers the two segments exactly as sent, padding included.
    let signed = &jwt[..segments[0].len() + 1 + segments[1].len()];
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, TEST_PUBLIC_KEY_DER);
    if key.verify(signed.as_bytes(), &decoded[2]).is_err() {
        return Err(with_iss(reject("invalid_grant", MSG_JWT_SIGNATURE)));
    }
    let exp = claims.get("exp").and_then(numeric_date);
    let iat = claims.get("iat").and_then(numeric_date);
    let timely = match (iat, exp) {
        (Some(iat), Some(exp)) => {
            exp > unix_now && iat <= unix_now + MAX_JWT_IAT_SKEW_SECS && exp > iat && exp - iat <= MAX_JWT_LIFETIME_SECS
        }
        _ => false,
    };
    if !timely {
        return Err(with_iss(reject("invalid_grant", MSG_JWT_TIME)));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(token_uri) {
        return Err(with_iss(reject(
            "invalid_grant",
            format!("Invalid JWT: Failed audience check. The right audience is {token_uri}"),
        )));
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if scope.split_whitespace().next().is_none() {
        return Err(with_iss(reject("invalid_scope", "Empty or missing scope not allowed.")));
    }
    if !scope.split_whitespace().any(|s| s == SPREADSHEETS_SCOPE) {
        return Err(with_iss(reject(
            "invalid_scope",
            format!("The fake Google requires the scope {SPREADSHEETS_SCOPE}; got: {scope}"),
        )));
    }
    // Domain-wide delegation (`sub` naming another user) is not granted to test accounts.
    if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
        if Some(sub) != iss.as_deref() {
            return Err(with_iss(TokenRejection {
                status: 401,
                error: "unauthorized_client",
                description: "Client is unauthorized to retrieve access tokens using this \
                              method, or client not authorized for any of the scopes requested."
                    .into(),
            }));
        }
    }
    Ok(iss.unwrap_or_default())
}

/// A JWT NumericDate: seconds since the epoch, integer or fractional.
fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
}

fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

// ---------------------------------------------------------------------------------------
// Sheets endpoints
// ---------------------------------------------------------------------------------------

fn sheets_endpoint(
    st: &mut State,
    route: &Route,
    req: &HttpRequest,
    now: Instant,
) -> (Response, Option<String>, &'static str) {
    let account = match st.authenticate(req, now) {
        Ok(account) => account,
        Err(response) => {
            st.stats.unauthenticated += 1;
            return (response, None, "bad bearer token");
        }
    };
    let result = authorized_sheets(st, route, req, &account, now);
    let why = match &result {
        Err(r) if r.status == 429 => "quota",
        _ => "",
    };
    (result.unwrap_or_else(|e| e), Some(account), why)
}

fn authorized_sheets(
    st: &mut State,
    route: &Route,
    req: &HttpRequest,
    account: &str,
    now: Instant,
) -> Result<Response, Response> {
    if st.api_disabled {
        return Err(service_disabled());
    }
    let kind = route.kind();
    st.charge_quota(account, kind, now)?;
    let max_cells = st.max_cells;
    let State {
        spreadsheets,
        rng,
        stats,
        ..
    } = st;
    let Some(ss) = spreadsheets.get_mut(route.spreadsheet_id()) else {
        return Err(rpc_error(404, "NOT_FOUND", MSG_NOT_FOUND));
    };
    match (ss.access.get(account), kind.is_write()) {
        (Some(Role::Writer), _) | (Some(Role::Reader), false) => {}
        _ => return Err(rpc_error(403, "PERMISSION_DENIED", MSG_PERMISSION_DENIED)),
    }
    let body = match route {
        Route::GetSpreadsheet(_) => ss.to_json(),
        Route::GetValues(_, range) => get_values(ss, range, req)?,
        Route::BatchUpdate(_) => batch_update(ss, &json_body(req)?, max_cells, rng)?,
        Route::ValuesBatchUpdate(_) => {
            let (body, option) = values_batch_update(ss, &json_body(req)?)?;
            stats.writes_applied += 1;
            if option != ValueInputOption::Raw {
                stats.non_raw_writes += 1;
            }
            body
        }
        _ => return Err(rpc_error(404, "NOT_FOUND", MSG_NOT_FOUND)),
    };
    Ok(json_response(200, &body))
}

/// The request body as a JSON object (an empty body counts as `{}`).
fn json_body(req: &HttpRequest) -> Result<Map<String, Value>, Response> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid_argument(
            "Invalid JSON payload received. Root element must be a message.",
        )),
        Err(e) => Err(invalid_argument(&format!("Invalid JSON payload received. {e}"))),
    }
}

/// Proto JSON is strict: unknown field names are refused.
fn check_fields(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Response> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(name) if at.is_empty() => Err(invalid_argument(&format!(
            "Invalid JSON payload received. Unknown name \"{name}\": Cannot find field."
        ))),
        Some(name) => Err(invalid_argument(&format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        ))),
    }
}

fn invalid_value(at: &str, type_name: &str, value: &Value) -> Response {
    invalid_argument(&format!("Invalid value at '{at}' ({type_name}), {value}"))
}

/// An optional int32 field; proto JSON accepts numbers and numeric strings.
fn int_field(obj: &Map<String, Value>, name: &str, at: &str) -> Result<Option<i64>, Response> {
    let parsed = match obj.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match parsed {
        Some(n) if i64::from(i32::MIN) <= n && n <= i64::from(i32::MAX) => Ok(Some(n)),
        _ => Err(invalid_value(
            &format!("{at}.{name}"),
            "TYPE_INT32",
            obj.get(name).unwrap_or(&Value::Null),
        )),
    }
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Result<bool, Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(other) => Err(invalid_value(name, "TYPE_BOOL", other)),
    }
}

fn object_field<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, Response> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(inner)) => Ok(Some(inner)),
        Some(other) => Err(invalid_value(&format!("{at}.{name}"), "TYPE_MESSAGE", other)),
    }
}

// --- spreadsheets.batchUpdate ------------------------------------------------------------

fn batch_update(
    ss: &mut Spreadsheet,
    body: &Map<String, Value>,
    max_cells: u64,
    rng: &mut u64,
) -> Result<Value, Response> {
    check_fields(
        body,
        &[
            "requests",
            "includeSpreadsheetInResponse",
            "responseRanges",
            "responseIncludeGridData",
        ],
        "",
    )?;
    let include_spreadsheet = bool_field(body, "includeSpreadsheetInResponse")?;
    let requests: &[Value] = match body.get("requests") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(other) => return Err(invalid_value("requests", "TYPE_MESSAGE", other)),
    };
    if requests.is_empty() {
        return Err(invalid_argument("Must specify at least one request."));
    }
    // Validate and apply on a copy of the tab properties; commit only if all succeed.
    let mut work: Vec<SheetProps> = ss.sheets.iter().map(|s| s.props.clone()).collect();
    let mut replies = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let Some(obj) = request.as_object() else {
            return Err(invalid_value(&format!("requests[{i}]"), "TYPE_MESSAGE", request));
        };
        let mut set = obj.iter().filter(|(_, v)| !v.is_null());
        let (name, inner) = match (set.next(), set.next()) {
            (Some(first), None) => first,
            (None, _) => return Err(invalid_argument(&format!("Invalid requests[{i}]: No request set."))),
            (Some(_), Some((second, _))) => {
                return Err(invalid_argument(&format!(
                    "Invalid JSON payload received. Oneof field 'kind' is already set. \
                     Cannot set '{second}' at 'requests[{i}]'."
                )))
            }
        };
        let reply = match name.as_str() {
            "addSheet" => add_sheet(&mut work, i, inner, max_cells, rng)?,
            "appendDimension" => append_dimension(&mut work, i, inner, max_cells)?,
            other => {
                return Err(invalid_argument(&format!(
                    "Invalid JSON payload received. Unknown name \"{other}\" at \
                     'requests[{i}]': Cannot find field. (The fake Google implements only \
                     addSheet and appendDimension.)"
                )))
            }
        };
        replies.push(reply);
    }
    // Commit: keep each surviving tab's cells, in the new order.
    let mut old: HashMap<i64, Sheet> = ss.sheets.drain(..).map(|s| (s.props.sheet_id, s)).collect();
    ss.sheets = work
        .into_iter()
        .map(|props| {
            let cells = old.remove(&props.sheet_id).map(|s| s.cells).unwrap_or_default();
            Sheet { props, cells }
        })
        .collect();
    let mut response = json!({ "spreadsheetId": ss.id, "replies": replies });
    if include_spreadsheet {
        response["updatedSpreadsheet"] = ss.to_json();
    }
    Ok(response)
}

fn total_cells(work: &[SheetProps]) -> u64 {
    work.iter().map(SheetProps::cells).sum()
}

fn cell_cap_error(max_cells: u64) -> Response {
    invalid_argument(&format!(
        "This action would increase the number of cells in the workbook above the limit of \
         {max_cells} cells."
    ))
}

fn add_sheet(
    work: &mut Vec<SheetProps>,
    i: usize,
    inner: &Value,
    max_cells: u64,
    rng: &mut u64,
) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].addSheet");
    let at = format!("requests[{i}].addSheet");
    let Some(obj) = inner.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", inner));
    };
    check_fields(obj, &["properties"], &at)?;
    let empty = Map::new();
    let at = format!("{at}.properties");
    let props = object_field(obj, "properties", &at)?.unwrap_or(&empty);
    check_fields(
        props,
        &[
            "sheetId",
            "title",
            "index",
            "sheetType",
            "gridProperties",
            "hidden",
            "tabColor",
            "tabColorStyle",
            "rightToLeft",
            "dataSourceSheetProperties",
        ],
        &at,
    )?;
    let title = match props.get("title") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(invalid_value(&format!("{at}.title"), "TYPE_STRING", other)),
    };
    let title = if title.is_empty() {
        // Google names an untitled tab "SheetN".
        (1..=work.len() + 1)
            .map(|n| format!("Sheet{n}"))
            .find(|t| work.iter().all(|p| &p.title != t))
            .unwrap_or_else(|| format!("Sheet{}", work.len() + 1))
    } else {
        title
    };
    if work.iter().any(|p| p.title == title) {
        return Err(invalid_argument(&format!(
            "{ctx}: A sheet with the name \"{title}\" already exists. Please enter another name."
        )));
    }
    let sheet_id = match int_field(props, "sheetId", &at)? {
        Some(id) if id < 0 => return Err(invalid_argument(&format!("{ctx}: sheetId must not be negative."))),
        Some(id) if work.iter().any(|p| p.sheet_id == id) => {
            // (fake's wording)
            return Err(invalid_argument(&format!(
                "{ctx}: A sheet with the id {id} already exists."
            )));
        }
        Some(id) => id,
        None => random_sheet_id(rng, &work.iter().map(|p| p.sheet_id).collect::<Vec<_>>()),
    };
    match props.get("sheetType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "GRID" => {}
        Some(other) => {
            return Err(invalid_argument(&format!(
                "{ctx}: the fake Google supports only sheetType GRID, not {other}."
            )))
        }
    }
    let grid_at = format!("{at}.gridProperties");
    let grid = object_field(props, "gridProperties", &at)?.unwrap_or(&empty);
    check_fields(
        grid,
        &[
            "rowCount",
            "columnCount",
            "frozenRowCount",
            "frozenColumnCount",
            "hideGridlines",
            "rowGroupControlAfter",
            "columnGroupControlAfter",
        ],
        &grid_at,
    )?;
    let count = |name: &str, default: u32| -> Result<u32, Response> {
        match int_field(grid, name, &grid_at)? {
            None | Some(0) => Ok(default),
            Some(n) if n < 0 => Err(invalid_argument(&format!("{ctx}: {name} must not be negative."))),
            Some(n) => Ok(n as u32),
        }
    };
    let rows = count("rowCount", DEFAULT_GRID.0)?;
    let cols = count("columnCount", DEFAULT_GRID.1)?;
    let frozen_rows = count("frozenRowCount", 0)?;
    let frozen_cols = count("frozenColumnCount", 0)?;
    if cols > MAX_COLUMNS {
        return Err(invalid_argument(&format!(
            "{ctx}: This action would increase the number of columns in the sheet above the \
             limit of {MAX_COLUMNS}."
        )));
    }
    if frozen_rows >= rows || frozen_cols >= cols {
        // (fake's wording, after the Sheets UI)
        return Err(invalid_argument(&format!(
            "{ctx}: You can't freeze all visible rows or columns on the sheet."
        )));
    }
    let added = u64::from(rows) * u64::from(cols);
    if total_cells(work) + added > max_cells {
        return Err(cell_cap_error(max_cells));
    }
    let index = match int_field(props, "index", &at)? {
        Some(n) if n < 0 => return Err(invalid_argument(&format!("{ctx}: index must not be negative."))),
        Some(n) => (n as usize).min(work.len()),
        None => work.len(),
    };
    let new = SheetProps {
        sheet_id,
        title,
        rows,
        cols,
        frozen_rows,
        frozen_cols,
    };
    let reply = json!({ "addSheet": { "properties": new.to_json(index) } });
    work.insert(index, new);
    Ok(reply)
}

fn append_dimension(work: &mut [SheetProps], i: usize, inner: &Value, max_cells: u64) -> Result<Value, Response> {
    let ctx = format!("Invalid requests[{i}].appendDimension");
    let at = format!("requests[{i}].appendDimension");
    let Some(obj) = inner.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", inner));
    };
    check_fields(obj, &["sheetId", "dimension", "length"], &at)?;
    // proto3: an absent sheetId is 0.
    let sheet_id = int_field(obj, "sheetId", &at)?.unwrap_or(0);
    let rows_dimension = match obj.get("dimension") {
        Some(Value::String(d)) if d == "ROWS" => true,
        Some(Value::String(d)) if d == "COLUMNS" => false,
        None | Some(Value::Null) => {
            return Err(invalid_argument(&format!("{ctx}: dimension must be ROWS or COLUMNS.")))
        }
        Some(Value::String(d)) if d == "DIMENSION_UNSPECIFIED" => {
            return Err(invalid_argument(&format!("{ctx}: dimension must be ROWS or COLUMNS.")))
        }
        Some(other) => {
            return Err(invalid_value(
                &format!("{at}.dimension"),
                "type.googleapis.com/google.apps.sheets.v4.Dimension",
                other,
            ))
        }
    };
    let length = match int_field(obj, "length", &at)? {
        Some(n) if n > 0 => n as u64,
        _ => return Err(invalid_argument(&format!("{ctx}: length must be greater than zero."))),
    };
    let total = total_cells(work);
    let Some(props) = work.iter_mut().find(|p| p.sheet_id == sheet_id) else {
        return Err(invalid_argument(&format!("{ctx}: No grid with id: {sheet_id}")));
    };
    let (new_rows, new_cols) = if rows_dimension {
        (u64::from(props.rows) + length, u64::from(props.cols))
    } else {
        (u64::from(props.rows), u64::from(props.cols) + length)
    };
    if new_cols > u64::from(MAX_COLUMNS) {
        return Err(invalid_argument(&format!(
            "{ctx}: This action would increase the number of columns in the sheet above the \
             limit of {MAX_COLUMNS}."
        )));
    }
    let new_total = total - props.cells() + new_rows * new_cols;
    if new_total > max_cells || new_rows > u64::from(u32::MAX) {
        return Err(cell_cap_error(max_cells));
    }
    props.rows = new_rows as u32;
    props.cols = new_cols as u32;
    Ok(json!({}))
}

fn random_sheet_id(rng: &mut u64, used: &[i64]) -> i64 {
    // xorshift64; bounded: 1000 draws can only all collide with a pathological `used`.
    for _ in 0..1000 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let id = (*rng % (i32::MAX as u64 - 1)) as i64 + 1;
        if !used.contains(&id) {
            return id;
        }
    }
    used.iter().copied().max().unwrap_or(0) + 1
}

// --- values:batchUpdate ------------------------------------------------------------------

/// One validated ValueRange, ready to apply.
struct PlannedWrite {
    sheet: usize,
    /// `(row, col, value)`; `Cell::Empty` clears.
    cells: Vec<((u32, u32), Cell)>,
    updated_range: String,
    rows: u64,
    cols: u64,
}

fn values_batch_update(ss: &mut Spreadsheet, body: &Map<String, Value>) -> Result<(Value, ValueInputOption), Response> {
    check_fields(
        body,
        &[
            "valueInputOption",
            "data",
            "includeValuesInResponse",
            "responseValueRenderOption",
            "responseDateTimeRenderOption",
        ],
        "",
    )?;
    let option = match body.get("valueInputOption") {
        Some(Value::String(s)) if s == "RAW" => ValueInputOption::Raw,
        Some(Value::String(s)) if s == "USER_ENTERED" => ValueInputOption::UserEntered,
        None | Some(Value::Null) => return Err(invalid_argument("'valueInputOption' is required but not specified")),
        Some(Value::String(s)) if s == "INPUT_VALUE_OPTION_UNSPECIFIED" => {
            return Err(invalid_argument("'valueInputOption' is required but not specified"))
        }
        Some(other) => {
            return Err(invalid_value(
                "value_input_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueInputOption",
                other,
            ))
        }
    };
    let include_values = bool_field(body, "includeValuesInResponse")?;
    let render = match body.get("responseValueRenderOption") {
        None | Some(Value::Null) => Render::Formatted,
        Some(Value::String(s)) => Render::parse(s).ok_or_else(|| {
            invalid_value(
                "response_value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                &json!(s),
            )
        })?,
        Some(other) => {
            return Err(invalid_value(
                "response_value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                other,
            ))
        }
    };
    let data: &[Value] = match body.get("data") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(other) => return Err(invalid_value("data", "TYPE_MESSAGE", other)),
    };
    // Validate every ValueRange before applying any (atomic, notes §2.7).
    let plans = data
        .iter()
        .enumerate()
        .map(|(i, vr)| plan_write(ss, i, vr, option))
        .collect::<Result<Vec<_>, _>>()?;
    for plan in &plans {
        let sheet = &mut ss.sheets[plan.sheet];
        for (at, cell) in &plan.cells {
            sheet.set(*at, cell.clone(), option);
        }
    }
    let mut responses = Vec::with_capacity(plans.len());
    let (mut rows, mut cols, mut cells) = (0u64, 0u64, 0u64);
    let mut sheets_touched = BTreeSet::new();
    for plan in &plans {
        let n = plan.cells.len() as u64;
        rows += plan.rows;
        cols += plan.cols;
        cells += n;
        if n > 0 {
            sheets_touched.insert(plan.sheet);
        }
        let mut response = Map::new();
        response.insert("spreadsheetId".into(), json!(ss.id));
        response.insert("updatedRange".into(), json!(plan.updated_range));
        insert_nonzero(&mut response, "updatedRows", plan.rows);
        insert_nonzero(&mut response, "updatedColumns", plan.cols);
        insert_nonzero(&mut response, "updatedCells", n);
        if include_values {
            let updated = read_values(ss, &plan.updated_range, render, false)?;
            response.insert("updatedData".into(), updated);
        }
        responses.push(Value::Object(response));
    }
    let mut out = Map::new();
    out.insert("spreadsheetId".into(), json!(ss.id));
    insert_nonzero(&mut out, "totalUpdatedRows", rows);
    insert_nonzero(&mut out, "totalUpdatedColumns", cols);
    insert_nonzero(&mut out, "totalUpdatedCells", cells);
    insert_nonzero(&mut out, "totalUpdatedSheets", sheets_touched.len() as u64);
    if !responses.is_empty() {
        out.insert("responses".into(), Value::Array(responses));
    }
    Ok((Value::Object(out), option))
}

/// proto3 JSON omits zero-valued scalars; so does the fake.
fn insert_nonzero(map: &mut Map<String, Value>, key: &str, n: u64) {
    if n > 0 {
        map.insert(key.into(), json!(n));
    }
}

fn plan_write(ss: &Spreadsheet, i: usize, vr: &Value, option: ValueInputOption) -> Result<PlannedWrite, Response> {
    let at = format!("data[{i}]");
    let Some(obj) = vr.as_object() else {
        return Err(invalid_value(&at, "TYPE_MESSAGE", vr));
    };
    check_fields(obj, &["range", "majorDimension", "values"], &at)?;
    let range_text = match obj.get("range") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(invalid_value(&format!("{at}.range"), "TYPE_STRING", other)),
    };
    let range = resolve_range(ss, range_text)?;
    let by_rows = match obj.get("majorDimension") {
        None | Some(Value::Null) => true,
        Some(Value::String(d)) if d == "ROWS" || d == "DIMENSION_UNSPECIFIED" => true,
        Some(Value::String(d)) if d == "COLUMNS" => false,
        Some(other) => {
            return Err(invalid_value(
                &format!("{at}.major_dimension"),
                "type.googleapis.com/google.apps.sheets.v4.Dimension",
                other,
            ))
        }
    };
    let empty = Vec::new();
    let outer: &Vec<Value> = match obj.get("values") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(invalid_value(
                &format!("{at}.values"),
                "type.googleapis.com/google.protobuf.ListValue",
                other,
            ))
        }
    };
    let props = &ss.sheets[range.sheet].props;
    // 1. The stated range must fit the grid.
    if range.exceeds(props) {
        return Err(grid_limit_error(range_text, props));
    }
    // The data's extent, in (row, col) terms.
    let mut lines: Vec<&Vec<Value>> = Vec::with_capacity(outer.len());
    for (r, line) in outer.iter().enumerate() {
        match line {
            Value::Array(items) => lines.push(items),
            other => {
                return Err(invalid_value(
                    &format!("{at}.values[{r}]"),
                    "type.googleapis.com/google.protobuf.ListValue",
                    other,
                ))
            }
        }
    }
    let major = lines.len() as u64;
    let minor = lines.iter().map(|l| l.len() as u64).max().unwrap_or(0);
    let (n_rows, n_cols) = if by_rows { (major, minor) } else { (minor, major) };
    let (r0, c0) = (u64::from(range.r0), u64::from(range.c0));
    let last_row = r0 + n_rows.max(1) - 1;
    let last_col = c0 + n_cols.max(1) - 1;
    // 2. The data must fit the stated range (a single cell or a whole tab is an anchor).
    if !range.anchor {
        if let Some(r1) = range.r1 {
            if n_rows > 0 && last_row > u64::from(r1) {
                return Err(invalid_argument(&format!(
                    "Requested writing within range [{range_text}], but tried writing to row [{}]",
                    u64::from(r1) + 2
                )));
            }
        }
        if let Some(c1) = range.c1 {
            if n_cols > 0 && last_col > u64::from(c1) {
                return Err(invalid_argument(&format!(
                    "Requested writing within range [{range_text}], but tried writing to column [{}]",
                    column_letters(c1 + 1)
                )));
            }
        }
    }
    // 3. The data must fit the grid.
    let prefix = sheet_prefix(range_text, &props.title);
    if n_rows > 0 && n_cols > 0 && (last_row >= u64::from(props.rows) || last_col >= u64::from(props.cols)) {
        let effective = format!("{prefix}{}:{}", cell_name(r0, c0), cell_name(last_row, last_col));
        return Err(grid_limit_error(&effective, props));
    }
    let mut cells = Vec::new();
    let (mut rows_hit, mut cols_hit) = (BTreeSet::new(), BTreeSet::new());
    for (a, line) in lines.iter().enumerate() {
        for (b, value) in line.iter().enumerate() {
            let (r, c) = if by_rows { (a, b) } else { (b, a) };
            let cell = match value {
                Value::Null => continue,
                Value::Bool(v) => Cell::Bool(*v),
                Value::Number(n) => Cell::Number(n.as_f64().unwrap_or(f64::NAN)),
                Value::String(s) if ss.refuse_text.as_ref().is_some_and(|t| s.contains(t.as_str())) => {
                    return Err(invalid_argument(&format!(
                        "Invalid value at 'data[{i}].values[{a}][{b}]': refused by the fake (refuse_cells_containing)."
                    )))
                }
                // Counted in UTF-16 code units, the strictest reading of Google's limit.
                Value::String(s) if s.encode_utf16().count() > MAX_CELL_CHARS => {
                    return Err(invalid_argument(&format!(
                        "Your input contains more than the maximum of {MAX_CELL_CHARS} \
                         characters in a single cell."
                    )))
                }
                Value::String(s) => match option {
                    ValueInputOption::Raw => Cell::Text(s.clone()),
                    ValueInputOption::UserEntered => user_entered(s),
                },
                Value::Object(_) => {
                    return Err(invalid_argument(&format!(
                        "Invalid values[{a}][{b}]: struct_value {}",
                        proto_text(value)
                    )))
                }
                Value::Array(_) => {
                    return Err(invalid_argument(&format!(
                        "Invalid values[{a}][{b}]: list_value {}",
                        proto_text(value)
                    )))
                }
            };
            let at = ((r0 + r as u64) as u32, (c0 + c as u64) as u32);
            rows_hit.insert(at.0);
            cols_hit.insert(at.1);
            cells.push((at, cell));
        }
    }
    let updated_range = if n_rows == 0 || n_cols == 0 {
        format!("{prefix}{}", cell_name(r0, c0))
    } else {
        format!(
            "{}!{}",
            quote_sheet(&props.title),
            span_name(r0, c0, last_row, last_col)
        )
    };
    Ok(PlannedWrite {
        sheet: range.sheet,
        cells,
        updated_range,
        rows: rows_hit.len() as u64,
        cols: cols_hit.len() as u64,
    })
}

/// A crude USER_ENTERED parse: numbers and TRUE/FALSE; everything else stays text.
fn user_entered(s: &str) -> Cell {
    let t = s.trim();
    if t.eq_ignore_ascii_case("true") {
        return Cell::Bool(true);
    }
    if t.eq_ignore_ascii_case("false") {
        return Cell::Bool(false);
    }
    if t.bytes().any(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.parse::<f64>() {
            if n.is_finite() {
                return Cell::Number(n);
            }
        }
    }
    Cell::Text(s.to_string())
}

/// Roughly protobuf's text format, for the `struct_value {…}` error messages.
fn proto_text(value: &Value) -> String {
    match value {
        Value::Object(map) if map.is_empty() => "{\n}".into(),
        Value::Array(list) if list.is_empty() => "{\n}".into(),
        Value::Object(map) => {
            let fields: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("fields {{ key: {k:?} value {{ {v} }} }}"))
                .collect();
            format!("{{ {} }}", fields.join(" "))
        }
        Value::Array(list) => {
            let values: Vec<String> = list.iter().map(|v| format!("values {{ {v} }}")).collect();
            format!("{{ {} }}", values.join(" "))
        }
        other => other.to_string(),
    }
}

fn grid_limit_error(range_text: &str, props: &SheetProps) -> Response {
    invalid_argument(&format!(
        "Range ({range_text}) exceeds grid limits. Max rows: {}, max columns: {}",
        props.rows, props.cols
    ))
}

/// The `Sheet!` part as the client wrote it, or the tab's own name when it wrote none.
fn sheet_prefix(range_text: &str, title: &str) -> String {
    let trimmed = range_text.trim();
    if trimmed.starts_with('\'') {
        if let Some(i) = trimmed.rfind("'!") {
            return trimmed[..i + 2].to_string();
        }
    } else if let Some(i) = trimmed.rfind('!') {
        return trimmed[..i + 1].to_string();
    }
    format!("{}!", quote_sheet(title))
}

// --- values.get ----------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Render {
    Formatted,
    Unformatted,
    Formula,
}

impl Render {
    fn parse(s: &str) -> Option<Render> {
        match s {
            "FORMATTED_VALUE" => Some(Render::Formatted),
            "UNFORMATTED_VALUE" => Some(Render::Unformatted),
            "FORMULA" => Some(Render::Formula),
            _ => None,
        }
    }
}

fn get_values(ss: &Spreadsheet, raw_range: &str, req: &HttpRequest) -> Result<Value, Response> {
    let Some(range_text) = percent_decode(raw_range.as_bytes(), false).and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        return Err(invalid_argument(&format!("Unable to parse range: {raw_range}")));
    };
    let render = match req.query_param("valueRenderOption") {
        None => Render::Formatted,
        Some(s) => Render::parse(s).ok_or_else(|| {
            invalid_value(
                "value_render_option",
                "type.googleapis.com/google.apps.sheets.v4.ValueRenderOption",
                &json!(s),
            )
        })?,
    };
    match req.query_param("dateTimeRenderOption") {
        None | Some("SERIAL_NUMBER") | Some("FORMATTED_STRING") => {}
        Some(other) => {
            return Err(invalid_value(
                "date_time_render_option",
                "type.googleapis.com/google.apps.sheets.v4.DateTimeRenderOption",
                &json!(other),
            ))
        }
    }
    let by_columns = match req.query_param("majorDimension") {
        None | Some("ROWS") | Some("DIMENSION_UNSPECIFIED") => false,
        Some("COLUMNS") => true,
        Some(other) => {
            return Err(invalid_value(
                "major_dimension",
                "type.googleapis.com/google.apps.sheets.v4.Dimension",
                &json!(other),
            ))
        }
    };
    read_values(ss, &range_text, render, by_columns)
}

/// A ValueRange for `range_text`, trimmed as Google trims it.
fn read_values(ss: &Spreadsheet, range_text: &str, render: Render, by_columns: bool) -> Result<Value, Response> {
    let range = resolve_range(ss, range_text)?;
    let sheet = &ss.sheets[range.sheet];
    let props = &sheet.props;
    if range.exceeds(props) {
        return Err(grid_limit_error(range_text, props));
    }
    let (r0, c0) = (range.r0, range.c0);
    // Unbounded ends stop at the grid's edge (a single cell is bounded both ways).
    let r1 = range.r1.unwrap_or(props.rows - 1);
    let c1 = range.c1.unwrap_or(props.cols - 1);
    let mut grid: Vec<Vec<Value>> = Vec::new();
    for ((r, c), cell) in sheet.rect(r0, c0, r1, c1) {
        let (a, b) = if by_columns {
            (c as usize, r as usize)
        } else {
            (r as usize, c as usize)
        };
        if grid.len() <= a {
            grid.resize_with(a + 1, Vec::new);
        }
        let line = &mut grid[a];
        if line.len() <= b {
            line.resize(b + 1, json!(""));
        }
        line[b] = render_cell(cell, render);
    }
    let mut out = Map::new();
    out.insert(
        "range".into(),
        json!(format!(
            "{}!{}",
            quote_sheet(&props.title),
            span_name(u64::from(r0), u64::from(c0), u64::from(r1), u64::from(c1))
        )),
    );
    out.insert(
        "majorDimension".into(),
        json!(if by_columns { "COLUMNS" } else { "ROWS" }),
    );
    if !grid.is_empty() {
        out.insert(
            "values".into(),
            Value::Array(grid.into_iter().map(Value::Array).collect()),
        );
    }
    Ok(Value::Object(out))
}

fn render_cell(cell: &Cell, render: Render) -> Value {
    match (cell, render) {
        (Cell::Empty, _) => json!(""),
        (Cell::Number(n), Render::Formatted) => json!(format_number(*n)),
        (Cell::Number(n), _) => number_json(*n),
        (Cell::Bool(b), Render::Formatted) => json!(if *b { "TRUE" } else { "FALSE" }),
        (Cell::Bool(b), _) => json!(b),
        (Cell::Text(s), _) => json!(s),
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// Integral numbers as JSON integers (`3`, not `3.0`), as Google sends them.
fn number_json(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        json!(n as i64)
    } else {
        json!(n)
    }
}

// ---------------------------------------------------------------------------------------
// A1 notation
// ---------------------------------------------------------------------------------------

/// One side of an A1 span; either part may be absent (`A` is a column, `5` a row).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct CellRef {
    /// Zero-based.
    col: Option<u32>,
    /// Zero-based.
    row: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: CellRef,
    /// `None` for a single cell.
    end: Option<CellRef>,
}

/// Parses A1 notation without looking at a spreadsheet: `(sheet name, cells)`.
/// `'It''s'!A1:B2` → `(Some("It's"), Some(..))`; `'Tab'` → `(Some("Tab"), None)`;
/// `A1:B2` → `(None, Some(..))`. A bare word that is not a cell reference (`Readings`)
/// does not parse here; the caller tries it as a tab title.
fn parse_a1(text: &str) -> Option<(Option<String>, Option<Span>)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Some(rest) = text.strip_prefix('\'') {
        let mut name = String::new();
        let mut chars = rest.char_indices();
        let after = loop {
            match chars.next() {
                None => return None,
                Some((i, '\'')) => {
                    if rest[i + 1..].starts_with('\'') {
                        name.push('\'');
                        chars.next();
                    } else {
                        break &rest[i + 1..];
                    }
                }
                Some((_, c)) => name.push(c),
            }
        };
        if name.is_empty() {
            return None;
        }
        if after.is_empty() {
            return Some((Some(name), None));
        }
        let cells = after.strip_prefix('!')?;
        return Some((Some(name), Some(parse_span(cells)?)));
    }
    if let Some(i) = text.rfind('!') {
        let name = &text[..i];
        if name.is_empty() || name.contains('\'') {
            return None;
        }
        return Some((Some(name.to_string()), Some(parse_span(&text[i + 1..])?)));
    }
    Some((None, Some(parse_span(text)?)))
}

fn parse_span(text: &str) -> Option<Span> {
    let mut parts = text.split(':');
    let (first, second, third) = (parts.next()?, parts.next(), parts.next());
    if third.is_some() {
        return None;
    }
    let start = parse_cell_ref(first)?;
    match second {
        None if start.col.is_some() && start.row.is_some() => Some(Span { start, end: None }),
        None => None,
        Some(second) => Some(Span {
            start,
            end: Some(parse_cell_ref(second)?),
        }),
    }
}

/// `A1`, `$A$1`, `A`, `1` (zero-based out).
fn parse_cell_ref(text: &str) -> Option<CellRef> {
    let text: String = text.chars().filter(|&c| c != '$').collect();
    let letters = text.chars().take_while(char::is_ascii_alphabetic).count();
    let (col_text, row_text) = text.split_at(letters);
    if letters > 3 || row_text.len() > 9 || !row_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let col = if col_text.is_empty() {
        None
    } else {
        let n = col_text
            .bytes()
            .fold(0u32, |acc, b| acc * 26 + u32::from(b.to_ascii_uppercase() - b'A' + 1));
        Some(n - 1)
    };
    let row = if row_text.is_empty() {
        None
    } else {
        match row_text.parse::<u32>().ok()? {
            0 => return None,
            n => Some(n - 1),
        }
    };
    if col.is_none() && row.is_none() {
        return None;
    }
    Some(CellRef { col, row })
}

/// A range resolved against a spreadsheet. Ends are inclusive and `None` when unbounded.
#[derive(Debug)]
struct Resolved {
    sheet: usize,
    r0: u32,
    c0: u32,
    r1: Option<u32>,
    c1: Option<u32>,
    /// A single cell or a whole tab: for writes, where the data starts, not a bound.
    anchor: bool,
}

impl Resolved {
    /// Whether any stated bound lies outside the grid.
    fn exceeds(&self, props: &SheetProps) -> bool {
        let row_out = |r: u32| r >= props.rows;
        let col_out = |c: u32| c >= props.cols;
        row_out(self.r0) || col_out(self.c0) || self.r1.is_some_and(row_out) || self.c1.is_some_and(col_out)
    }
}

fn resolve_range(ss: &Spreadsheet, text: &str) -> Result<Resolved, Response> {
    let unparsable = || invalid_argument(&format!("Unable to parse range: {text}"));
    let by_title = |title: &str| ss.sheets.iter().position(|s| s.props.title == title);
    let whole = |sheet: usize| Resolved {
        sheet,
        r0: 0,
        c0: 0,
        r1: None,
        c1: None,
        anchor: true,
    };
    let trimmed = text.trim();
    // A bare word is a tab title first (`Readings`, or a tab named like a cell).
    if !trimmed.starts_with('\'') && !trimmed.contains('!') {
        if let Some(sheet) = by_title(trimmed) {
            return Ok(whole(sheet));
        }
    }
    let (name, span) = parse_a1(trimmed).ok_or_else(unparsable)?;
    let sheet = match name {
        Some(name) => by_title(&name).ok_or_else(unparsable)?,
        None if ss.sheets.is_empty() => return Err(unparsable()),
        None => 0,
    };
    let Some(span) = span else {
        return Ok(whole(sheet));
    };
    let Some(end) = span.end else {
        let (Some(c), Some(r)) = (span.start.col, span.start.row) else {
            return Err(unparsable());
        };
        return Ok(Resolved {
            sheet,
            r0: r,
            c0: c,
            r1: Some(r),
            c1: Some(c),
            anchor: true,
        });
    };
    let axis = |a: Option<u32>, b: Option<u32>| match (a, b) {
        (Some(a), Some(b)) => (a.min(b), Some(a.max(b))),
        (Some(a), None) => (a, None),
        (None, Some(b)) => (0, Some(b)),
        (None, None) => (0, None),
    };
    let (r0, r1) = axis(span.start.row, end.row);
    let (c0, c1) = axis(span.start.col, end.col);
    Ok(Resolved {
        sheet,
        r0,
        c0,
        r1,
        c1,
        anchor: false,
    })
}

/// Zero-based column → letters (0 → A, 26 → AA).
fn column_letters(col: u32) -> String {
    let mut n = u64::from(col) + 1;
    let mut out = Vec::new();
    while n > 0 {
        let rem = ((n - 1) % 26) as u8;
        out.push(b'A' + rem);
        n = (n - 1) / 26;
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

fn cell_name(row: u64, col: u64) -> String {
    format!("{}{}", column_letters(col.min(u64::from(u32::MAX)) as u32), row + 1)
}

fn span_name(r0: u64, c0: u64, r1: u64, c1: u64) -> String {
    if r0 == r1 && c0 == c1 {
        cell_name(r0, c0)
    } else {
        format!("{}:{}", cell_name(r0, c0), cell_name(r1, c1))
    }
}

/// A tab title as Google writes it in ranges: bare if it is a plain identifier that
/// cannot be read as a cell, otherwise single-quoted with `'` doubled.
fn quote_sheet(title: &str) -> String {
    let plain = title
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && title.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && parse_cell_ref(title).is_none();
    if plain {
        title.to_string()
    } else {
        format!("'{}'", title.replace('\'', "''"))
    }
}

/// The `(row, col)` of a single-cell reference like `B2`.
fn single_cell(a1: &str) -> Option<(u32, u32)> {
    let r = parse_cell_ref(a1.trim())?;
    Some((r.row?, r.col?))
}

// ---------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------

/// Percent-decoding; `plus_is_space` for form bodies and query strings.
fn percent_decode(input: &[u8], plus_is_space: bool) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'%' => {
                let hex = input.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// `a=1&b=2` → pairs; `None` on bad percent-encoding or non-UTF-8.
fn parse_urlencoded(input: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for part in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        let name = String::from_utf8(percent_decode(name, true)?).ok()?;
        let value = String::from_utf8(percent_decode(value, true)?).ok()?;
        pairs.push((name, value));
    }
    Some(pairs)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

// ---------------------------------------------------------------------------------------
// Responses in Google's shapes
// ---------------------------------------------------------------------------------------

fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail; the fallback only keeps this panic-free.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Google pretty-prints its JSON (2-space indent).
fn json_response(status: u16, value: &Value) -> Response {
    Response {
        status,
        content_type: "application/json; charset=UTF-8",
        headers: Vec::new(),
        body: pretty(value),
    }
}

/// The google.rpc.Status error body (notes §2.6).
fn rpc_error(code: u16, status: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({ "error": { "code": code, "message": message, "status": status } }),
    )
}

fn rpc_error_with_details(code: u16, status: &str, message: &str, details: Value) -> Response {
    json_response(
        code,
        &json!({ "error": { "code": code, "message": message, "status": status, "details": details } }),
    )
}

fn invalid_argument(message: &str) -> Response {
    rpc_error(400, "INVALID_ARGUMENT", message)
}

fn unauthenticated(message: &str, invalid_token: bool) -> Response {
    let mut response = rpc_error(401, "UNAUTHENTICATED", message);
    let challenge = if invalid_token {
        "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"https://accounts.google.com/\""
    };
    response.headers.push(("WWW-Authenticate", challenge.to_string()));
    response
}

/// The token endpoint's error body: `{"error": …, "error_description": …}`.
fn oauth_error(status: u16, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({ "error": error, "error_description": d }),
        None => json!({ "error": error }),
    };
    json_response(status, &body)
}

fn quota_error(write: bool, limit: u32) -> Response {
    let (metric_name, limit_name, metric, limit_id) = if write {
        (
            "Write requests",
            "Write requests per minute per user",
            "sheets.googleapis.com/write_requests",
            "WriteRequestsPerMinutePerUser",
        )
    } else {
        (
            "Read requests",
            "Read requests per minute per user",
            "sheets.googleapis.com/read_requests",
            "ReadRequestsPerMinutePerUser",
        )
    };
    let message = format!(
        "Quota exceeded for quota metric '{metric_name}' and limit '{limit_name}' of service \
         'sheets.googleapis.com' for consumer 'project_number:{PROJECT_NUMBER}'."
    );
    rpc_error_with_details(
        429,
        "RESOURCE_EXHAUSTED",
        &message,
        json!([
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "RATE_LIMIT_EXCEEDED",
                "domain": "googleapis.com",
                "metadata": {
                    "quota_metric": metric,
                    "quota_limit": limit_id,
                    "quota_limit_value": limit.to_string(),
                    "quota_location": "global",
                    "service": "sheets.googleapis.com",
                    "consumer": format!("projects/{PROJECT_NUMBER}"),
                }
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{
                    "description": "Request a higher quota limit.",
                    "url": "https://cloud.google.com/docs/quotas/help/request_increase"
                }]
            }
        ]),
    )
}

fn service_disabled() -> Response {
    let url = format!(
        "https://console.developers.google.com/apis/api/sheets.googleapis.com/overview?project={PROJECT_NUMBER}"
    );
    let message = format!(
        "Google Sheets API has not been used in project {PROJECT_NUMBER} before or it is \
         disabled. Enable it by visiting {url} then retry."
    );
    rpc_error_with_details(
        403,
        "PERMISSION_DENIED",
        &message,
        json!([
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "sheets.googleapis.com",
                    "consumer": format!("projects/{PROJECT_NUMBER}"),
                    "activationUrl": url,
                    "serviceTitle": "Google Sheets API",
                }
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{ "description": "Google developers console API activation", "url": url }]
            }
        ]),
    )
}

/// Google's front-end error page (what real 404s and 502s look like).
fn html_page(status: u16, title: &str, text: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>{title}</title>\n  \
         <p><b>{status}.</b> <ins>That’s an error.</ins>\n  <p>{text}  <ins>That’s all we know.</ins>\n"
    );
    Response {
        status,
        content_type: "text/html; charset=UTF-8",
        headers: Vec::new(),
        body,
    }
}

/// The body real Google sends with an injected status.
fn fault_response(code: u16, retry_after_secs: Option<u64>) -> Response {
    let mut response = match code {
        429 => quota_error(true, DEFAULT_WRITE_QUOTA_PER_MINUTE),
        500 => rpc_error(500, "INTERNAL", "Internal error encountered."),
        502 => html_page(
            502,
            "Error 502 (Server Error)!!1",
            "The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.",
        ),
        503 => rpc_error(503, "UNAVAILABLE", MSG_UNAVAILABLE),
        504 => rpc_error(
            504,
            "DEADLINE_EXCEEDED",
            "Deadline expired before operation could complete.",
        ),
        400 => invalid_argument("Request contains an invalid argument."),
        401 => unauthenticated(MSG_INVALID_CREDENTIALS, true),
        403 => rpc_error(403, "PERMISSION_DENIED", MSG_PERMISSION_DENIED),
        404 => rpc_error(404, "NOT_FOUND", MSG_NOT_FOUND),
        409 => rpc_error(409, "ABORTED", "The operation was aborted."),
        code => rpc_error(code, "UNKNOWN", "Injected fault."),
    };
    if let Some(secs) = retry_after_secs {
        response.headers.push(("Retry-After", secs.to_string()));
    }
    response
}

fn raw_response(code: u16, content_type: &str, body: String) -> Response {
    // The content type must be 'static in `Response`; map the common ones, else octet-stream.
    let content_type = match content_type {
        t if t.starts_with("application/json") => "application/json; charset=UTF-8",
        t if t.starts_with("text/html") => "text/html; charset=UTF-8",
        t if t.starts_with("text/plain") => "text/plain; charset=UTF-8",
        _ => "application/octet-stream",
    };
    Response {
        status: code,
        content_type,
        headers: Vec::new(),
        body,
    }
}

// ---------------------------------------------------------------------------------------
// Unit tests of the pure parts (A1 notation, encodings)
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn cr(col: Option<u32>, row: Option<u32>) -> CellRef {
        CellRef { col, row }
    }

    #[test]
    fn a1_forms_parse() {
        assert_eq!(
            parse_a1("'Readings'!A2:I3"),
            Some((
                Some("Readings".into()),
                Some(Span {
                    start: cr(Some(0), Some(1)),
                    end: Some(cr(Some(8), Some(2)))
                })
            ))
        );
        assert_eq!(
            parse_a1("'It''s ok'!B5"),
            Some((
                Some("It's ok".into()),
                Some(Span {
                    start: cr(Some(1), Some(4)),
                    end: None
                })
            ))
        );
        assert_eq!(parse_a1("'My Tab'"), Some((Some("My Tab".into()), None)));
        assert_eq!(parse_a1("Sheet1!A1:C2").map(|(n, _)| n), Some(Some("Sheet1".into())));
        assert_eq!(
            parse_a1("A5"),
            Some((
                None,
                Some(Span {
                    start: cr(Some(0), Some(4)),
                    end: None
                })
            ))
        );
        assert_eq!(
            parse_a1("Readings!A:A").and_then(|(_, s)| s),
            Some(Span {
                start: cr(Some(0), None),
                end: Some(cr(Some(0), None))
            })
        );
        assert_eq!(parse_cell_ref("$ZZZ$10"), Some(cr(Some(18277), Some(9))));
    }

    #[test]
    fn a1_rejects_garbage() {
        for bad in [
            "", "'", "''", "'Tab", "'Tab'x", "A0", "AAAA1", "A1:B2:C3", "!A1", "1A", "A", "Tab!", "A1:", "'Tab'!",
        ] {
            assert_eq!(parse_a1(bad), None, "{bad:?} should not parse");
        }
    }

    #[test]
    fn names_and_quotes() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(18277), "ZZZ");
        assert_eq!(quote_sheet("Readings"), "Readings");
        assert_eq!(quote_sheet("Sensor Log"), "'Sensor Log'");
        assert_eq!(quote_sheet("It's"), "'It''s'");
        assert_eq!(quote_sheet("A1"), "'A1'");
        assert_eq!(quote_sheet("2024"), "'2024'");
        assert_eq!(span_name(1, 0, 2, 8), "A2:I3");
        assert_eq!(span_name(4, 0, 4, 0), "A5");
    }

    #[test]
    fn url_decoding() {
        assert_eq!(
            percent_decode(b"%27Readings%27%21A1%3AI2", false),
            Some(b"'Readings'!A1:I2".to_vec())
        );
        assert_eq!(percent_decode(b"a+b", true), Some(b"a b".to_vec()));
        assert_eq!(percent_decode(b"a+b", false), Some(b"a+b".to_vec()));
        assert_eq!(percent_decode(b"%zz", false), None);
        assert_eq!(percent_decode(b"%2", false), None);
        assert_eq!(
            parse_urlencoded(b"grant_type=urn%3Aietf&assertion=a.b%3D.c"),
            Some(vec![
                ("grant_type".into(), "urn:ietf".into()),
                ("assertion".into(), "a.b=.c".into())
            ])
        );
    }

    #[test]
    fn routes() {
        let kind = |m: &str, p: &str| route(m, p).kind();
        assert_eq!(kind("POST", "/token"), RequestKind::Token);
        assert_eq!(kind("GET", "/v4/spreadsheets/abc"), RequestKind::GetSpreadsheet);
        assert_eq!(
            kind("POST", "/v4/spreadsheets/abc:batchUpdate"),
            RequestKind::BatchUpdate
        );
        assert_eq!(
            kind("POST", "/v4/spreadsheets/abc%3AbatchUpdate"),
            RequestKind::BatchUpdate
        );
        assert_eq!(
            kind("POST", "/v4/spreadsheets/abc/values:batchUpdate"),
            RequestKind::ValuesBatchUpdate
        );
        assert_eq!(
            kind("GET", "/v4/spreadsheets/abc/values/%27R%27%21A1%3AB2"),
            RequestKind::GetValues
        );
        assert_eq!(kind("POST", "/v4/spreadsheets/abc/values/R:append"), RequestKind::Other);
        assert_eq!(kind("GET", "/favicon.ico"), RequestKind::Other);
    }

    #[test]
    fn user_entered_parsing() {
        assert_eq!(user_entered("12.5"), Cell::Number(12.5));
        assert_eq!(user_entered("TRUE"), Cell::Bool(true));
        assert_eq!(user_entered("inf"), Cell::text("inf"));
        assert_eq!(user_entered("=1+2"), Cell::text("=1+2"));
    }
}
