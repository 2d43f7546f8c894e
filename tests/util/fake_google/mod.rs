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
//! | API disabled for the project ([`Rules::api_disabled`]) | 403 PERMISSION_DENIED, reason SERVICE_DISABLED | brief |
//! | 60 write and 60 read requests per minute per user; a service account is one user | 429 RESOURCE_EXHAUSTED with the quota body | notes §2.6, §2.7 |
//! | unknown spreadsheet id | 404 NOT_FOUND "Requested entity was not found." | notes §2.6 |
//! | spreadsheet not shared with the account, or shared read-only and written | 403 PERMISSION_DENIED "The caller does not have permission" | notes §2.1, §2.6 |
//! | `batchUpdate` is validated whole, then applied whole | 400 and nothing applied | notes §2.5, §2.7 |
//! | `addSheet` with a title that exists | 400 `A sheet with the name "…" already exists. Please enter another name.` | notes §2.5 |
//! | `appendDimension` on an unknown `sheetId` | 400 `No grid with id: …` | brief |
//! | the workbook cell cap (10,000,000 by default; [`Rules::max_cells`]) | 400 `This action would increase the number of cells in the workbook above the limit of … cells.` | notes §2.5 |
//! | `values:batchUpdate` needs `valueInputOption` in the body; only `RAW` is modelled | 400; other options 400 "does not implement" (see `values`) | notes §2.4 |
//! | a range names an unknown tab, or is not A1 notation (the fake takes only the uploader's form, `'Tab'!A1:B2`; see `a1`) | 400 `Unable to parse range: …` | notes §2.6 |
//! | a range goes past the grid | 400 `Range (…) exceeds grid limits. Max rows: R, max columns: C` | notes §2.4 |
//! | more values than the stated range holds | 400 `Requested writing within range [...], but tried writing to row [N]` | brief |
//! | values are bool, string or double; nulls are skipped; `""` clears a cell; objects and arrays are refused | 400 `Invalid values[r][c]: struct_value …` / `list_value …` | notes §2.2, §2.6 |
//! | unknown JSON fields in request bodies (proto JSON is strict) | 400 `Invalid JSON payload received. Unknown name "…"` | Google's JSON mapping |
//! | every `batchUpdate` and `values:batchUpdate` body matches the discovery document (`tests/fixtures/sheets.v4.json`): field names, types, enums, one kind per `Request` | 400 `Invalid value at '…'` / `Unknown name`; counted in [`Stats::schema_violations`] | Google's discovery document, revision 20261019 |
//! | a field, option, value, request kind or endpoint Google has but the uploader never sends (each file's header says which; so a daemon change that starts using one fails loudly instead of passing against an imitation) | 400 `The fake Google does not implement …` *(fake's wording)*; 501 UNIMPLEMENTED for an endpoint | scope: not modelled |
//! | a `fields` mask that is malformed or names a field its resource's schema lacks | 400 `Invalid field selection …` *(fake's wording)* | Google's system parameters |
//! | request body over 10,485,760 bytes (lower with [`Rules::max_request_bytes`]; Google recommends ≤ 2 MB) | 400 `Request payload size exceeds the limit: N bytes.` | notes §2.6, limits page |
//! | a string cell over 50,000 characters, counted in UTF-16 code units (Google names no unit; this is the strictest reading) | 400 `Your input contains more than the maximum of 50000 characters in a single cell.` | notes §2.7, error text quoted in public issues |
//!
//! # Order of checks for a Sheets request
//!
//! 1. An active outage ([`FakeGoogle::outage`]) answers 503.
//! 2. The first queued [`Fault`] that matches the request is consumed ([`FakeGoogle::inject`]),
//!    before authentication, like a front-end error.
//! 3. The bearer token is checked (401). Then the API-enabled switch (403). Then the
//!    account's per-minute quota (429). Only requests that get this far count against the
//!    quota, including ones that then fail with 404, 403 or 400.
//! 4. Then the spreadsheet id (404), sharing (403), validation (400), and the change.
//!
//! # Deviations from real Google (known, deliberate)
//!
//! - Scope: a token request whose scopes lack `…/auth/spreadsheets` gets `invalid_scope`.
//!   Real Google would issue the token and refuse the Sheets call with 403 "insufficient
//!   authentication scopes". Both refuse. The fake refuses earlier, as the brief asks.
//! - `fields` on `spreadsheets.get` is honoured, but a `Sheet` has only `properties` and
//!   `charts` (`chartId`, `spec`).
//! - Replies leave out what the uploader does not read (see `values`).
//! - The project-wide quota (300/min) is not modelled, only the per-user one.
//!
//! # Use
//!
//! `util::sheets` sets one up as the Sheets tests use it (`fake_with` and `config`: a
//! spreadsheet shared with [`DEFAULT_ACCOUNT`], a key file, the daemon's `[sheets]` section
//! pointing at the fake); `tests/fake_google.rs` exercises each method.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// `Err` of Google's 400 INVALID_ARGUMENT with a `format!` message: how the fake refuses
/// what the discovery document cannot.
macro_rules! invalid {
    ($($message:tt)*) => {
        Err(invalid_argument(&format!($($message)*)))
    };
}

pub(crate) mod a1;
mod charts;
mod dimensions;
pub mod discovery;
mod faults;
mod fields;
mod model;
pub(crate) mod responses;
pub(crate) mod server;
mod sheets;
mod state;
mod token;
pub(crate) mod values;

use a1::*;
use charts::*;
use dimensions::*;
use faults::*;
pub use faults::{Fault, Matching};
use fields::*;
use model::*;
use responses::*;
use server::*;
use sheets::*;
use state::*;
use token::*;
use values::*;

// --- Constants -------------------------------------------------------------------------

/// The service account registered when the fake starts.
pub const DEFAULT_ACCOUNT: &str = "sensorlog-test@sensorlog-test.iam.gserviceaccount.com";
/// The scope every token request must include.
pub const SPREADSHEETS_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";
/// The `grant_type` of the JWT-bearer flow (notes §1.3).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// The project number that appears in quota and API-disabled errors.
const PROJECT_NUMBER: &str = "123456";
/// The request payload cap observed on real Google (notes §2.6).
pub const MAX_REQUEST_BODY_BYTES: usize = 10_485_760;
/// Columns per sheet (column ZZZ; notes §2.7, UNVERIFIED there).
const MAX_COLUMNS: u32 = 18_278;
/// Characters per cell, in UTF-16 code units as Sheets stores strings (notes §2.7,
/// UNVERIFIED there; the rules table says why this count).
pub const MAX_CELL_CHARS: usize = 50_000;
/// Rows and columns of a tab created without `gridProperties` (notes §2.5).
const DEFAULT_GRID: (u32, u32) = (1000, 26);

/// The test private key (PKCS#8). The fake trusts its public half. NOT a secret.
pub const TEST_KEY_PEM: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/test-key.pem"));
/// A different private key, which the fake must reject. NOT a secret.
pub const OTHER_KEY_PEM: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/other-key.pem"));
/// Public half of [`TEST_KEY_PEM`], PKCS#1 RSAPublicKey DER, as ring wants it.
const TEST_PUBLIC_KEY_DER: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/test-key-public.der"
));

// --- Private limits --------------------------------------------------------------------

/// Request heads (request line and header fields) over this get 400, as Google's front end does.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Threads answering requests (each holds one request at a time, delays included).
const HANDLER_THREADS: usize = 16;
const HANDLER_STACK_BYTES: usize = 1024 * 1024;
/// How often an idle handler looks at the stop flag.
const RECV_SLICE: Duration = Duration::from_millis(20);
const REQUEST_LOG_CAPACITY: usize = 10_000;
/// Upper bound for injected delays and outages, so that no test can hang the fake.
const MAX_FAULT_DURATION: Duration = Duration::from_secs(600);
/// Upper bound for token lifetimes (ten years), so `Instant` arithmetic cannot overflow.
const MAX_TOKEN_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;
/// How long `Drop` waits for the handler threads, and for the listener to close.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// JWT validity rules (notes §1.3): at most one hour, `iat` at most this far ahead.
const MAX_JWT_LIFETIME_SECS: i64 = 3600;
const MAX_JWT_IAT_SKEW_SECS: i64 = 60;

// --- Public types ----------------------------------------------------------------------

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

/// What a service account may do with a spreadsheet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Reads only: writes get 403.
    Reader,
    Writer,
}

/// The rules a test may change ([`FakeGoogle::rules`]); the defaults are Google's.
#[derive(Clone, Debug)]
pub struct Rules {
    /// `expires_in` (and the real server-side lifetime) of tokens issued from now on, in
    /// seconds, clamped to 1 s … 10 years (3599, as Google sends; notes §1.6).
    pub token_lifetime_secs: u64,
    /// Shifts the clock the token endpoint checks `iat`/`exp` against (a device clock that
    /// is wrong by minus this); bearer-token expiry is not affected (0).
    pub clock_offset_secs: i64,
    /// Write requests allowed per account per quota window (60; notes §2.7).
    pub write_quota: u32,
    /// Read requests allowed per account per quota window (60).
    pub read_quota: u32,
    /// The rolling quota window, at least 1 ms (60 s); also the window of
    /// [`Stats::max_writes_in_window`]. Shorten it to test recovery quickly.
    pub quota_window: Duration,
    /// Request bodies over this get Google's 400 ([`MAX_REQUEST_BODY_BYTES`], which caps it).
    pub max_request_bytes: usize,
    /// The cell cap per spreadsheet (10,000,000; notes §2.5, §2.7).
    pub max_cells: u64,
    /// "Sheets API not enabled for the project": authenticated Sheets requests get 403 (false).
    pub api_disabled: bool,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            token_lifetime_secs: 3599,
            clock_offset_secs: 0,
            write_quota: 60,
            read_quota: 60,
            quota_window: Duration::from_secs(60),
            max_request_bytes: MAX_REQUEST_BODY_BYTES,
            max_cells: 10_000_000,
            api_disabled: false,
        }
    }
}

/// The endpoint a request was routed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
    /// A Sheets request charged to the write quota (notes §2.7: each batch is one request);
    /// the other Sheets requests are charged to the read quota.
    fn is_write(self) -> bool {
        matches!(self, RequestKind::BatchUpdate | RequestKind::ValuesBatchUpdate)
    }

    fn is_sheets(self) -> bool {
        !matches!(self, RequestKind::Token | RequestKind::Other)
    }
}

/// Counters for assertions. Every field counts since [`FakeGoogle::start`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests by endpoint, answered or not ([`Stats::requests`]).
    by_kind: BTreeMap<RequestKind, u64>,
    pub tokens_issued: u64,
    /// Token requests refused for a bad grant, assertion, account, scope or time (4xx).
    pub token_rejections: u64,
    /// Token faults consumed.
    pub token_faults_consumed: u64,
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
    /// `values:batchUpdate` requests refused for a `valueInputOption` other than RAW.
    pub non_raw_writes: u64,
    /// Request bodies refused by the discovery document (`discovery`; the rules table says
    /// what it checks). A daemon that talks to Google correctly keeps this at 0.
    pub schema_violations: u64,
    /// The most cells any spreadsheet's grids held after an applied `batchUpdate`.
    pub max_workbook_cells: u64,
    /// Panics caught inside the fake (a bug in the fake; should stay 0).
    pub internal_errors: u64,
}

impl Stats {
    /// Requests routed to `kind` (`Other`: no endpoint, 404/501, or not parsable as HTTP).
    pub fn requests(&self, kind: RequestKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// Requests routed to one of the four Sheets endpoints.
    pub fn sheets_requests(&self) -> u64 {
        self.by_kind.iter().filter(|(k, _)| k.is_sheets()).map(|(_, n)| n).sum()
    }
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
        let (at, method, path) = (self.at.as_secs_f64(), &self.method, &self.path);
        let status = self.status.map_or_else(|| "dropped".to_string(), |s| s.to_string());
        let account = self.account.as_ref().map_or_else(String::new, |a| format!(" [{a}]"));
        let note = Some(&self.note)
            .filter(|n| !n.is_empty())
            .map_or_else(String::new, |n| format!(" ({n})"));
        write!(f, "{at:>9.3}s {method} {path} -> {status}{account}{note}")
    }
}

// --- The handle ------------------------------------------------------------------------

/// A running fake Google on `127.0.0.1:<port>`. Stops on drop.
///
/// Its methods panic, with a message, only on what is a bug in the test: a spreadsheet or
/// tab that does not exist (or already does), an unregistered account, values that do not
/// fit, a key file that cannot be written, no loopback port or thread to start with.
pub struct FakeGoogle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Option<Arc<tiny_http::Server>>,
    handlers: Vec<JoinHandle<()>>,
}

impl FakeGoogle {
    /// Binds `127.0.0.1:0`, registers [`DEFAULT_ACCOUNT`] and starts serving.
    pub fn start() -> FakeGoogle {
        let server = tiny_http::Server::http("127.0.0.1:0");
        let server = Arc::new(server.unwrap_or_else(|e| panic!("fake Google: cannot bind 127.0.0.1:0: {e}")));
        let addr = server.server_addr().to_ip();
        let addr = addr.unwrap_or_else(|| panic!("fake Google: not an IP listener"));
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new()),
            stop: AtomicBool::new(false),
            token_uri: format!("http://{addr}/token"),
        });
        let handlers = spawn_handlers(&server, &shared);
        FakeGoogle {
            shared,
            addr,
            server: Some(server),
            handlers,
        }
    }

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

    /// A Google-shaped service-account key JSON for `email` holding the private key `pem`
    /// ([`TEST_KEY_PEM`], the key the fake trusts, or e.g. [`OTHER_KEY_PEM`]).
    pub fn key_json(&self, email: &str, pem: &str) -> String {
        let project = email.split(['@', '.']).nth(1).filter(|p| !p.is_empty());
        let project = project.unwrap_or("sensorlog-test");
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

    /// Writes [`FakeGoogle::key_json`] to `path`.
    pub fn write_key_file(&self, path: impl AsRef<Path>, email: &str, pem: &str) {
        let path = path.as_ref();
        std::fs::write(path, self.key_json(email, pem))
            .unwrap_or_else(|e| panic!("fake Google: cannot write key file {}: {e}", path.display()));
    }

    /// Issues a token for `email` without a JWT, for raw-HTTP tests. It is counted in
    /// [`Stats::tokens_issued`] and expires like any other token.
    pub fn issue_token(&self, email: &str) -> String {
        let mut st = self.state();
        assert!(
            st.accounts.contains(email),
            "fake Google: issue_token for unregistered account {email}"
        );
        st.issue_token(email, None, Instant::now()).0
    }

    /// Makes every token issued so far expire now (as after a revocation). Their next
    /// use gets 401.
    pub fn expire_tokens(&self) {
        let now = Instant::now();
        for token in self.state().tokens.values_mut() {
            token.expires_at = now;
        }
    }

    // --- spreadsheets ---------------------------------------------------------------------

    /// Creates spreadsheet `id`, shared (as Writer) with `shared_with`, with one tab
    /// `Sheet1` (sheetId 0, 1000×26).
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
        let first = Sheet::new(0, "Sheet1", DEFAULT_GRID.0, DEFAULT_GRID.1);
        st.spreadsheets.insert(
            id.to_string(),
            Spreadsheet {
                id: id.to_string(),
                sheets: vec![first],
                access,
                refuse_text: None,
            },
        );
    }

    /// Shares spreadsheet `id` with `email` as `role`, replacing its previous role; `None`
    /// takes `email` off the sharing list.
    pub fn share(&self, id: &str, email: &str, role: Option<Role>) {
        self.with_spreadsheet(id, |ss, _| match role {
            Some(role) => ss.access.insert(email.to_string(), role),
            None => ss.access.remove(email),
        });
    }

    /// Adds a tab directly (no request, no quota, no cell cap) and returns its sheetId.
    pub fn add_tab(&self, id: &str, title: &str, rows: u32, cols: u32) -> i64 {
        self.with_spreadsheet(id, |ss, rng| {
            let exists = ss.sheet_by_title(title).is_some();
            assert!(!exists, "fake Google: tab {title} exists already in {id}");
            let used: Vec<i64> = ss.sheets.iter().map(|s| s.props.sheet_id).collect();
            let sheet_id = random_sheet_id(rng, &used);
            ss.sheets
                .push(Sheet::new(sheet_id, title, rows.max(1), cols.clamp(1, MAX_COLUMNS)));
            sheet_id
        })
    }

    /// Sets tab `title`'s grid to `rows` x `cols` (what a user resizing it does); cells
    /// outside the new grid are dropped.
    pub fn set_grid(&self, id: &str, title: &str, rows: u32, cols: u32) {
        self.with_tab_mut(id, title, |sheet| {
            sheet.props.rows = rows;
            sheet.props.cols = cols;
            sheet.cells.retain(|&(r, c), _| r < rows && c < cols);
        });
    }

    /// Writes `rows` into tab `tab` with the top-left cell at `top_left` (e.g. `"A1"`), as
    /// RAW, directly (no request). `Cell::Empty` clears a cell.
    pub fn put_values(&self, id: &str, tab: &str, top_left: &str, rows: &[Vec<Cell>]) {
        let Some((r0, c0)) = single_cell(top_left) else {
            panic!("fake Google: put_values wants a cell like \"A1\", got {top_left:?}");
        };
        self.with_tab_mut(id, tab, |sheet| {
            for (i, row) in rows.iter().enumerate() {
                for (j, cell) in row.iter().enumerate() {
                    let (r, c) = (r0 as u64 + i as u64, c0 as u64 + j as u64);
                    assert!(
                        r < u64::from(sheet.props.rows) && c < u64::from(sheet.props.cols),
                        "fake Google: put_values outside the {}x{} grid of {tab}",
                        sheet.props.rows,
                        sheet.props.cols
                    );
                    sheet.set((r as u32, c as u32), cell.clone());
                }
            }
        });
    }

    /// The values of a tab from A1, trimmed as Google trims them: no trailing empty rows,
    /// no trailing empty cells in a row, `Cell::Empty` for gaps. `None` if there is no such
    /// spreadsheet or tab.
    pub fn values(&self, id: &str, tab: &str) -> Option<Vec<Vec<Cell>>> {
        self.with_tab(id, tab, |s| {
            s.grid((0, 0), (u32::MAX, u32::MAX), Cell::Empty, Cell::clone)
        })
    }

    /// The cell at `a1` (e.g. `"B2"`): `Cell::Empty` if unset, `None` if no such tab or cell.
    pub fn cell(&self, id: &str, tab: &str, a1: &str) -> Option<Cell> {
        let at = single_cell(a1)?;
        self.with_tab(id, tab, |sheet| sheet.cells.get(&at).cloned().unwrap_or(Cell::Empty))
    }

    /// `(rows, columns, sheetId)` of a tab, or `None`.
    pub fn grid(&self, id: &str, tab: &str) -> Option<(u32, u32, i64)> {
        self.with_tab(id, tab, |s| (s.props.rows, s.props.cols, s.props.sheet_id))
    }

    /// The charts anchored on tab `tab`: (chartId, the ChartSpec as last sent).
    pub fn charts(&self, id: &str, tab: &str) -> Vec<(i64, Value)> {
        self.with_tab(id, tab, |s| s.props.charts.clone()).unwrap_or_default()
    }

    /// The tab titles of a spreadsheet, in order, or `None`.
    pub fn tabs(&self, id: &str) -> Option<Vec<String>> {
        let st = self.state();
        let ss = st.spreadsheets.get(id)?;
        Some(ss.sheets.iter().map(|s| s.props.title.clone()).collect())
    }

    // --- rules ----------------------------------------------------------------------------

    /// Changes the [`Rules`], e.g. `fake.rules(|r| r.max_cells = 30_000)`.
    pub fn rules(&self, change: impl FnOnce(&mut Rules)) {
        change(&mut self.state().rules);
    }

    /// A fault no client can foresee: from now on, a write with a text cell containing
    /// `needle` is refused whole with 400 INVALID_ARGUMENT (as Google refuses a batch
    /// holding one invalid value); `None` lifts it.
    pub fn refuse_cells_containing(&self, id: &str, needle: Option<&str>) {
        self.with_spreadsheet(id, |ss, _| ss.refuse_text = needle.map(str::to_string));
    }

    // --- faults ---------------------------------------------------------------------------

    /// Queues `fault` for the next `times` requests that match. A request consumes from
    /// the first queued entry that matches it.
    pub fn inject(&self, matching: Matching, fault: Fault, times: u32) {
        fault.answer(matching); // panics on a fault the endpoint cannot produce
        if times > 0 {
            self.state().faults.push_back(QueuedFault {
                matching,
                fault,
                remaining: times,
            });
        }
    }

    /// How many Sheets and token faults are still queued (counting repetitions).
    pub fn pending_faults(&self) -> u64 {
        self.state().faults.iter().map(|f| u64::from(f.remaining)).sum()
    }

    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// An outage, from now for `duration` (capped at 10 minutes; `Duration::ZERO` ends
    /// one): every token request gets 503 `{"error":"internal_failure"}` and every Sheets
    /// request 503 UNAVAILABLE "The service is currently unavailable.". Nothing is applied,
    /// no queued fault is consumed and no quota is charged. Connections are answered, not
    /// reset (resets are what the drop faults are for).
    pub fn outage(&self, duration: Duration) {
        let now = Instant::now();
        self.state().outage_until = Some(now + duration.min(MAX_FAULT_DURATION));
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
        self.state().log.iter().map(|entry| format!("{entry}\n")).collect()
    }

    /// Calls `condition` until it returns true or `timeout` (at most an hour) passes, and
    /// returns whether it did (polled as `util::daemon::wait_until` polls). `condition` may
    /// call any method of the fake.
    pub fn wait_until(&self, timeout: Duration, mut condition: impl FnMut(&FakeGoogle) -> bool) -> bool {
        super::daemon::wait_until(timeout.min(Duration::from_secs(3600)), || condition(self))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }

    fn with_tab<R>(&self, id: &str, tab: &str, f: impl FnOnce(&Sheet) -> R) -> Option<R> {
        let st = self.state();
        Some(f(st.spreadsheets.get(id)?.sheet_by_title(tab)?))
    }

    fn with_tab_mut(&self, id: &str, tab: &str, f: impl FnOnce(&mut Sheet)) {
        self.with_spreadsheet(id, |ss, _| {
            let sheet = ss.sheets.iter_mut().find(|s| s.props.title == tab);
            f(sheet.unwrap_or_else(|| panic!("fake Google: no tab {tab} in {id}")));
        });
    }

    /// Spreadsheet `id` (panics if there is none) and the fake's id generator.
    fn with_spreadsheet<R>(&self, id: &str, f: impl FnOnce(&mut Spreadsheet, &mut Rng) -> R) -> R {
        let mut st = self.state();
        let State { spreadsheets, rng, .. } = &mut *st;
        let ss = spreadsheets.get_mut(id);
        f(ss.unwrap_or_else(|| panic!("fake Google: no spreadsheet {id}")), rng)
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Handlers look at the flag every RECV_SLICE (a delayed reply ends early on it);
        // every request is handled on one of them, so once they are done none is live.
        if super::daemon::wait_until(SHUTDOWN_GRACE, || self.handlers.iter().all(JoinHandle::is_finished)) {
            for handle in self.handlers.drain(..) {
                let _ = handle.join();
            }
        }
        // The last reference: tiny_http's Drop stops its accept thread and the listener.
        drop(self.server.take());
        // Its accept thread closes the listener a moment later: wait for that, so that a
        // dropped fake is really gone.
        let addr = self.addr;
        super::daemon::wait_until(SHUTDOWN_GRACE, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err()
        });
    }
}
