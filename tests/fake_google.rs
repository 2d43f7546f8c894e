//! Self-tests of the fake Google (`tests/util/fake_google/`).
//!
//! The Sheets tests are only as good as the fake's strictness, so each rule that the fake
//! claims to enforce is exercised here: once with a request real Google accepts, and once
//! with one it refuses. A fake that accepted everything would fail these tests. Token
//! tests use the real yup-oauth2 client, as the daemon does. The other tests use a tiny
//! std HTTP/1.1 client with timeouts, so that every byte on the wire is under control.
//! Every socket is timed out and every loop is bounded. The module runs in a few seconds.

use std::fmt::Display;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::PrivatePkcs8KeyDer;
use serde_json::{json, Value};

use crate::util::fake_google::a1::{column_letters, parse_a1, single_cell};
use crate::util::fake_google::responses::{parse_urlencoded, percent_decode};
use crate::util::fake_google::server::route;
use crate::util::fake_google::{
    discovery, Cell, FakeGoogle, Fault, Matching, RequestKind, Role, DEFAULT_ACCOUNT, JWT_BEARER_GRANT, MAX_CELL_CHARS,
    MAX_REQUEST_BODY_BYTES, OTHER_KEY_PEM, SPREADSHEETS_SCOPE, TEST_KEY_PEM,
};

const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_REPLY_BYTES: usize = 16 * 1024 * 1024;
const STRANGER: &str = "stranger@elsewhere.iam.gserviceaccount.com";
const INVALID_CREDENTIALS: &str = "Request had invalid authentication credentials. Expected \
OAuth 2 access token, login cookie or other valid authentication credential. See \
https://developers.google.com/identity/sign-in/web/devconsole-project.";
/// Spreadsheet `s1` (made by [`fake_with_sheet`]) and its two batchUpdate endpoints.
const S1: &str = "/v4/spreadsheets/s1";
const S1_BATCH: &str = "/v4/spreadsheets/s1:batchUpdate";
const S1_VALUES: &str = "/v4/spreadsheets/s1/values:batchUpdate";

// ---------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("reply is not JSON ({e}): {}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `(code, status, message)` of a google.rpc.Status error body.
    fn rpc_error(&self) -> (u64, String, String) {
        let v = self.json();
        let e = &v["error"];
        assert!(e.is_object(), "not an error body: {}", self.body);
        (
            e["code"].as_u64().unwrap_or(0),
            e["status"].as_str().unwrap_or("").to_string(),
            e["message"].as_str().unwrap_or("").to_string(),
        )
    }

    /// Asserts 200 (printing the body otherwise) and hands the reply on.
    #[track_caller]
    fn assert_ok(self) -> Reply {
        assert_eq!(self.status, 200, "{}", self.body);
        self
    }

    /// Asserts the google.rpc.Status error exactly, its `code` also the HTTP status.
    #[track_caller]
    fn assert_rpc(&self, code: u16, status: &str, message: &str) {
        let expected = (u64::from(code), status.to_string(), message.to_string());
        assert_eq!((self.status, self.rpc_error()), (code, expected), "{}", self.body);
    }

    /// The message of a google.rpc.Status error body.
    fn message(&self) -> String {
        self.rpc_error().2
    }

    /// Asserts a google.rpc.Status error `code`, sent with that status, whose message
    /// contains `expect`; `case` names the case on failure.
    #[track_caller]
    fn assert_error(&self, code: u16, expect: &str, case: impl Display) {
        let (got, _, message) = self.rpc_error();
        assert_eq!((self.status, got), (code, u64::from(code)), "{case}: {}", self.body);
        assert!(message.contains(expect), "{case}: {expect:?} not in {}", self.body);
    }
}

/// Sends `bytes` on a fresh connection and reads until the fake closes it.
/// `Err` when the connection closes without a single byte of response.
fn send_raw(addr: SocketAddr, bytes: &[u8]) -> io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    stream.set_write_timeout(Some(CLIENT_TIMEOUT))?;
    stream.write_all(bytes)?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_REPLY_BYTES {
                    return Err(io::Error::other("reply too large"));
                }
            }
            Err(e) if raw.is_empty() => return Err(e),
            Err(_) => break,
        }
    }
    if raw.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> io::Result<Reply> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of head"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("head not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("no status line"))?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
    let reply = Reply { status, headers, body };
    if let Some(len) = reply.header("content-length") {
        assert_eq!(len.parse::<usize>().ok(), Some(reply.body.len()), "Content-Length");
    }
    Ok(reply)
}

/// One request on a fresh connection: a bearer `token` and a `(content type, body)` if given.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &str)>,
) -> io::Result<Reply> {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        req.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some((content_type, body)) = body {
        req.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    send_raw(addr, req.as_bytes())
}

/// A Sheets client of the fake with one bearer token: each request built once here.
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    fn new(fake: &FakeGoogle, token: impl Into<String>) -> Api {
        let token = token.into();
        Api {
            addr: fake.addr(),
            token,
        }
    }

    /// `Err` when the connection closes without a response.
    fn send(&self, method: &str, path: &str, json_body: Option<&str>) -> io::Result<Reply> {
        let body = json_body.map(|b| ("application/json", b));
        request(self.addr, method, path, Some(&self.token), body)
    }

    fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None).expect("GET got no response")
    }

    /// POSTs `body` (a `Value`, or raw text) as JSON.
    fn post(&self, path: &str, body: impl Display) -> Reply {
        self.send("POST", path, Some(&body.to_string()))
            .expect("POST got no response")
    }

    /// `values:batchUpdate` of `s1` with one RAW ValueRange, as the uploader sends it.
    fn try_write(&self, range: &str, rows: Value) -> io::Result<Reply> {
        let body = json!({
            "valueInputOption": "RAW",
            "data": [{ "range": range, "majorDimension": "ROWS", "values": rows }],
            "includeValuesInResponse": false,
        });
        self.send("POST", S1_VALUES, Some(&body.to_string()))
    }

    fn write(&self, range: &str, rows: Value) -> Reply {
        self.try_write(range, rows).expect("values:batchUpdate got no response")
    }

    /// `spreadsheets.batchUpdate` of `s1`.
    fn batch(&self, requests: Value) -> Reply {
        self.post(S1_BATCH, json!({ "requests": requests }))
    }

    /// Adds tab `Readings` (rows × 9, one frozen row) to `s1`; returns its sheetId.
    fn add_readings(&self, rows: u32) -> i64 {
        let reply = self
            .batch(json!([{ "addSheet": { "properties": {
            "title": "Readings",
            "gridProperties": { "rowCount": rows, "columnCount": 9, "frozenRowCount": 1 }
        } } }]))
            .assert_ok();
        added_sheet_id(&reply)
    }
}

/// The sheetId in the reply to a batch whose first request is an `addSheet`.
fn added_sheet_id(reply: &Reply) -> i64 {
    let id = reply.json()["replies"][0]["addSheet"]["properties"]["sheetId"].as_i64();
    id.unwrap_or_else(|| panic!("no sheetId in the addSheet reply: {}", reply.body))
}

/// A fake with spreadsheet `s1` shared with the default account, and a client for it.
fn fake_with_sheet() -> (FakeGoogle, Api) {
    let fake = FakeGoogle::start();
    fake.add_spreadsheet("s1", &[DEFAULT_ACCOUNT]);
    let api = Api::new(&fake, fake.issue_token(DEFAULT_ACCOUNT));
    (fake, api)
}

fn row(n: u32) -> Value {
    json!([
        format!("2024-06-01T12:00:{n:02}Z"),
        "node-7",
        "temp",
        21.5,
        true,
        "",
        "",
        "",
        n
    ])
}

// ---------------------------------------------------------------------------------------
// Token helpers: the real client, and hand-made assertions
// ---------------------------------------------------------------------------------------

/// Fetches a token with the real yup-oauth2 client, as the daemon does.
fn yup_token(key_json: &str) -> Result<String, yup_oauth2::Error> {
    let key = yup_oauth2::parse_service_account_key(key_json.as_bytes()).expect("key parses");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http::<String>();
        let auth = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::CustomHyperClientBuilder::from(client),
        )
        .build()
        .await
        .expect("authenticator builds");
        // yup-oauth2 12.1.2 ignores with_timeout with a custom client (notes §1.5).
        let token = tokio::time::timeout(CLIENT_TIMEOUT, auth.token(&[SPREADSHEETS_SCOPE]))
            .await
            .expect("token request timed out")?;
        Ok(token.token().expect("an access_token").to_string())
    })
}

/// An RS256 JWT signed with `pem`, segments padded or not.
fn sign_jwt(pem: &str, header: &Value, claims: &Value, padded: bool) -> String {
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).expect("a PKCS#8 PEM");
    let key = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).expect("an RSA key");
    let encode = |bytes: &[u8]| {
        if padded {
            base64::engine::general_purpose::URL_SAFE.encode(bytes)
        } else {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let input = format!(
        "{}.{}",
        encode(header.to_string().as_bytes()),
        encode(claims.to_string().as_bytes())
    );
    let mut signature = vec![0u8; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut signature,
    )
    .expect("signing");
    format!("{input}.{}", encode(&signature))
}

/// The default account's claims for `scope`, issued at `iat`, expiring at `exp`.
fn claims(fake: &FakeGoogle, scope: &str, iat: i64, exp: i64) -> Value {
    json!({ "iss": DEFAULT_ACCOUNT, "scope": scope, "aud": fake.token_uri(), "iat": iat, "exp": exp, "sub": null })
}

/// [`claims`] signed with the test key and padded, as yup-oauth2 sends them.
fn signed(fake: &FakeGoogle, scope: &str, iat: i64, exp: i64) -> String {
    sign_jwt(TEST_KEY_PEM, &rs256(), &claims(fake, scope, iat, exp), true)
}

/// A JWT the fake accepts now.
fn fresh_jwt(fake: &FakeGoogle) -> String {
    let now = jiff::Timestamp::now().as_second();
    signed(fake, SPREADSHEETS_SCOPE, now, now + 3595)
}

fn rs256() -> Value {
    json!({ "alg": "RS256", "typ": "JWT" })
}

fn post_token_form(fake: &FakeGoogle, form: &str) -> Reply {
    let body = Some(("application/x-www-form-urlencoded", form));
    request(fake.addr(), "POST", "/token", None, body).expect("token endpoint answered")
}

fn post_assertion(fake: &FakeGoogle, jwt: &str) -> Reply {
    let grant = JWT_BEARER_GRANT.replace(':', "%3A");
    post_token_form(
        fake,
        &format!("grant_type={grant}&assertion={}", jwt.replace('=', "%3D")),
    )
}

/// `(error, error_description)` of a token-endpoint error.
fn oauth_error(reply: &Reply) -> (String, String) {
    let v = reply.json();
    (
        v["error"].as_str().unwrap_or("").to_string(),
        v["error_description"].as_str().unwrap_or("").to_string(),
    )
}

// ---------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------

#[test]
fn yup_oauth2_token_is_accepted_and_works_on_sheets() {
    let fake = FakeGoogle::start();
    fake.add_spreadsheet("s1", &[DEFAULT_ACCOUNT]);
    let token = yup_token(&fake.key_json(DEFAULT_ACCOUNT, TEST_KEY_PEM)).expect("yup-oauth2 gets a token");
    assert!(token.starts_with("ya29.fake-"), "{token}");

    let reply = Api::new(&fake, token)
        .get("/v4/spreadsheets/s1?fields=spreadsheetId,sheets.properties")
        .assert_ok();
    let v = reply.json();
    assert_eq!(v["spreadsheetId"], "s1");
    let props = &v["sheets"][0]["properties"];
    assert_eq!(props["title"], "Sheet1");
    assert_eq!(props["sheetId"], 0);
    assert_eq!(props["gridProperties"]["rowCount"], 1000);
    assert_eq!(props["gridProperties"]["columnCount"], 26);

    let stats = fake.stats();
    let token_requests = stats.requests(RequestKind::Token);
    assert_eq!((token_requests, stats.tokens_issued, stats.token_rejections), (1, 1, 0));
    assert_eq!(stats.requests(RequestKind::GetSpreadsheet), 1);
}

#[test]
fn key_signed_with_another_key_is_rejected() {
    let fake = FakeGoogle::start();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fake-google-wrong-key-{}.json", std::process::id()));
    fake.write_key_file(&path, DEFAULT_ACCOUNT, OTHER_KEY_PEM);
    let key_json = std::fs::read_to_string(&path).expect("key file written");
    let _ = std::fs::remove_file(&path);

    let err = yup_token(&key_json).expect_err("a foreign key must be refused");
    match &err {
        yup_oauth2::Error::AuthError(e) => {
            assert_eq!(e.error, yup_oauth2::error::AuthErrorCode::InvalidGrant, "{err}");
            assert_eq!(e.error_description.as_deref(), Some("Invalid JWT Signature."));
        }
        other => panic!("expected invalid_grant, got {other}"),
    }
    let stats = fake.stats();
    assert_eq!((stats.token_rejections, stats.tokens_issued), (1, 0));
}

#[test]
fn unregistered_account_is_rejected_until_registered() {
    let fake = FakeGoogle::start();
    let err = yup_token(&fake.key_json(STRANGER, TEST_KEY_PEM)).expect_err("unknown account must be refused");
    assert!(
        err.to_string().contains("invalid_grant") && err.to_string().contains("account not found"),
        "{err}"
    );
    fake.register_account(STRANGER);
    yup_token(&fake.key_json(STRANGER, TEST_KEY_PEM)).expect("a registered account gets a token");
    assert_eq!(fake.stats().token_rejections, 1);
}

#[test]
fn assertions_are_checked_like_google_does() {
    let fake = FakeGoogle::start();
    let now = jiff::Timestamp::now().as_second();
    let good = claims(&fake, SPREADSHEETS_SCOPE, now, now + 3595);

    // Accepted, padded (as yup-oauth2 sends) and unpadded (as most JWT libraries send).
    for padded in [true, false] {
        let reply = post_assertion(&fake, &sign_jwt(TEST_KEY_PEM, &rs256(), &good, padded));
        assert_eq!(reply.status, 200, "padded={padded}: {}", reply.body);
        let v = reply.json();
        assert!(v["access_token"].as_str().unwrap_or("").starts_with("ya29.fake-"));
        assert_eq!(v["expires_in"], 3599);
        assert_eq!(v["token_type"], "Bearer");
    }

    let short_lived = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a \
                       reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let mut tampered = sign_jwt(TEST_KEY_PEM, &rs256(), &good, false);
    let other_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(claims(&fake, SPREADSHEETS_SCOPE, now, now + 60).to_string());
    let parts: Vec<&str> = tampered.split('.').collect();
    tampered = format!("{}.{other_claims}.{}", parts[0], parts[2]);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
    // (case, assertion, error, start of error_description), each refused with 400.
    let grant = |case, jwt, description| (case, jwt, "invalid_grant", description);
    let untimely = |case, iat, exp| grant(case, signed(&fake, SPREADSHEETS_SCOPE, iat, exp), short_lived);
    let scope = |case, scope, description| {
        (
            case,
            signed(&fake, scope, now, now + 3595),
            "invalid_scope",
            description,
        )
    };
    let hs256 = json!({ "alg": "HS256", "typ": "JWT" });
    let cases = [
        untimely("expired", now - 4000, now - 400),
        untimely("longer than an hour", now, now + 3700),
        untimely("issued in the future", now + 300, now + 600),
        grant(
            "wrong audience",
            sign_jwt(TEST_KEY_PEM, &rs256(), &wrong_aud, true),
            "Invalid JWT: Failed audience check.",
        ),
        scope(
            "no spreadsheets scope",
            "https://www.googleapis.com/auth/drive.readonly",
            "The fake Google requires the scope",
        ),
        scope("empty scope", "", "Empty or missing scope not allowed."),
        grant(
            "HS256 header",
            sign_jwt(TEST_KEY_PEM, &hs256, &good, true),
            "Invalid JWT Signature.",
        ),
        grant("claims changed after signing", tampered, "Invalid JWT Signature."),
        grant(
            "other key",
            sign_jwt(OTHER_KEY_PEM, &rs256(), &good, false),
            "Invalid JWT Signature.",
        ),
        grant("two segments", "abc.def".to_string(), "Invalid JWT"),
        grant("not base64", "a*b.c*d.e*f".to_string(), "Invalid JWT"),
    ];
    for (case, jwt, error, description) in &cases {
        let reply = post_assertion(&fake, jwt);
        assert_eq!(reply.status, 400, "{case}: {}", reply.body);
        let (got_error, got_description) = oauth_error(&reply);
        assert_eq!(&got_error, error, "{case}: {}", reply.body);
        assert!(got_description.starts_with(description), "{case}: {got_description}");
    }

    // Grant type and form.
    let reply = post_token_form(&fake, "grant_type=client_credentials&assertion=x");
    assert_eq!(oauth_error(&reply).0, "unsupported_grant_type");
    let reply = post_token_form(&fake, &format!("grant_type={}", JWT_BEARER_GRANT.replace(':', "%3A")));
    assert_eq!(oauth_error(&reply).0, "invalid_request");

    // A device clock two hours behind the fake's: the same good claims are refused.
    fake.rules(|r| r.clock_offset_secs = 7200);
    let reply = post_assertion(&fake, &sign_jwt(TEST_KEY_PEM, &rs256(), &good, true));
    assert_eq!(oauth_error(&reply), ("invalid_grant".into(), short_lived.into()));

    let stats = fake.stats();
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.token_rejections, cases.len() as u64 + 3);
}

#[test]
fn token_faults_reach_the_real_client() {
    let fake = FakeGoogle::start();
    let key = fake.key_json(DEFAULT_ACCOUNT, TEST_KEY_PEM);

    fake.inject(Matching::Token, Fault::status(500), 1);
    let err = yup_token(&key).expect_err("HTML 500");
    assert!(matches!(err, yup_oauth2::Error::JSONError(_)), "{err}");

    fake.inject(Matching::Token, Fault::status(503), 1);
    let err = yup_token(&key).expect_err("503");
    assert!(err.to_string().contains("internal_failure"), "{err}");

    fake.inject(Matching::Token, Fault::DropBeforeApply, 1);
    assert!(yup_token(&key).is_err(), "a dropped connection is an error");

    fake.inject(Matching::Token, Fault::ShortTokenLifetime(1), 1);
    let reply = post_assertion(&fake, &fresh_jwt(&fake));
    assert_eq!(reply.json()["expires_in"], 1);

    // A fault the endpoint cannot give is a bug in the test: refused when it is queued.
    for (matching, fault) in [
        (Matching::Any, Fault::ShortTokenLifetime(1)),
        (Matching::Token, Fault::status(429)),
    ] {
        let queue = std::panic::AssertUnwindSafe(|| fake.inject(matching, fault, 1));
        assert!(std::panic::catch_unwind(queue).is_err(), "{matching:?}");
    }
    yup_token(&key).expect("faults used up: a normal token");
    let stats = fake.stats();
    assert_eq!(stats.token_faults_consumed, 4);
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.dropped_without_response, 1);
    assert_eq!(fake.pending_faults(), 0);
}

// ---------------------------------------------------------------------------------------
// Bearer tokens, sharing, ids, API switch
// ---------------------------------------------------------------------------------------

#[test]
fn missing_unknown_and_expired_tokens_get_401() {
    let fake = FakeGoogle::start();
    fake.add_spreadsheet("s1", &[DEFAULT_ACCOUNT]);
    fake.rules(|r| r.token_lifetime_secs = 1);
    let api = Api::new(&fake, fake.issue_token(DEFAULT_ACCOUNT));
    assert_eq!(api.get(S1).status, 200);

    let reply = request(fake.addr(), "GET", S1, None, None).expect("reply");
    assert_eq!(reply.status, 401);
    assert_eq!(reply.rpc_error().1, "UNAUTHENTICATED");
    assert!(reply.header("www-authenticate").is_some());

    Api::new(&fake, "ya29.made-up")
        .get(S1)
        .assert_rpc(401, "UNAUTHENTICATED", INVALID_CREDENTIALS);
    std::thread::sleep(Duration::from_millis(1100));
    // A token past its lifetime.
    api.get(S1).assert_rpc(401, "UNAUTHENTICATED", INVALID_CREDENTIALS);

    fake.rules(|r| r.token_lifetime_secs = 3599);
    let api = Api::new(&fake, fake.issue_token(DEFAULT_ACCOUNT));
    assert_eq!(api.get(S1).status, 200);
    fake.expire_tokens();
    assert_eq!(api.get(S1).status, 401);
    assert_eq!(fake.stats().unauthenticated, 4);
}

#[test]
fn unknown_spreadsheet_is_404_and_unshared_is_403() {
    let (fake, api) = fake_with_sheet();
    fake.register_account(STRANGER);
    let stranger = Api::new(&fake, fake.issue_token(STRANGER));

    let reply = api.get("/v4/spreadsheets/nope");
    reply.assert_rpc(404, "NOT_FOUND", "Requested entity was not found.");

    let denied = |reply: Reply| reply.assert_rpc(403, "PERMISSION_DENIED", "The caller does not have permission");
    denied(stranger.get(S1));

    fake.share("s1", STRANGER, Some(Role::Reader));
    assert_eq!(stranger.get(S1).status, 200);
    denied(stranger.write("Sheet1!A1:A1", json!([[1]]))); // a reader cannot write

    fake.share("s1", STRANGER, Some(Role::Writer));
    stranger.write("Sheet1!A1:A1", json!([[1]])).assert_ok();

    fake.share("s1", STRANGER, None);
    assert_eq!(stranger.get(S1).status, 403);
}

#[test]
fn disabled_api_is_403_service_disabled() {
    let (fake, api) = fake_with_sheet();
    fake.rules(|r| r.api_disabled = true);
    let reply = api.get(S1);
    let (code, status, message) = reply.rpc_error();
    assert_eq!((code, status.as_str()), (403, "PERMISSION_DENIED"));
    assert_eq!(
        message,
        "Google Sheets API has not been used in project 123456 before or it is disabled. \
         Enable it by visiting https://console.developers.google.com/apis/api/sheets.googleapis.com/overview?project=123456 then retry."
    );
    assert_eq!(reply.json()["error"]["details"][0]["reason"], "SERVICE_DISABLED");
    fake.rules(|r| r.api_disabled = false);
    assert_eq!(api.get(S1).status, 200);
}

// ---------------------------------------------------------------------------------------
// spreadsheets.batchUpdate
// ---------------------------------------------------------------------------------------

#[test]
fn write_beyond_the_grid_fails_until_append_dimension() {
    let (fake, api) = fake_with_sheet();
    let sheet_id = api.add_readings(1000);
    assert_eq!(fake.grid("s1", "Readings"), Some((1000, 9, sheet_id)));
    assert_eq!(fake.tabs("s1"), Some(vec!["Sheet1".into(), "Readings".into()]));

    let reply = api.write("'Readings'!A1001:I1001", json!([row(1)]));
    let past = "Range ('Readings'!A1001:I1001) exceeds grid limits. Max rows: 1000, max columns: 9";
    reply.assert_rpc(400, "INVALID_ARGUMENT", past);
    // A stated range past the grid is refused even when the data would fit.
    assert_eq!(
        api.write("'Readings'!A999:I1001", json!([row(1)])).message(),
        "Range ('Readings'!A999:I1001) exceeds grid limits. Max rows: 1000, max columns: 9"
    );
    // A single cell as an anchor for more data is Google's, not the uploader's: refused.
    let reply = api.write("'Readings'!A1000", json!([row(1), row(2)]));
    reply.assert_error(400, "implements only ranges like", "a single cell");

    let reply = api
        .batch(json!([{ "appendDimension": { "sheetId": sheet_id, "dimension": "ROWS", "length": 1000 } }]))
        .assert_ok();
    assert_eq!(reply.json()["replies"], json!([{}]));
    assert_eq!(fake.grid("s1", "Readings"), Some((2000, 9, sheet_id)));

    let reply = api.write("'Readings'!A1001:I1001", json!([row(1)])).assert_ok();
    assert_eq!(
        reply.json(),
        json!({ "spreadsheetId": "s1" }),
        "the counts are not modelled"
    );
    let values = fake.values("s1", "Readings").expect("tab exists");
    assert_eq!(values.len(), 1001);
    assert_eq!(values[1000][0], Cell::text("2024-06-01T12:00:01Z"));
    assert_eq!(values[1000][3], Cell::Number(21.5));
    assert_eq!(values[1000][4], Cell::Bool(true));
    assert_eq!(values[1000][5], Cell::Empty);
    assert_eq!(values[1000][8], Cell::Number(1.0));
    assert!(values[..1000].iter().all(Vec::is_empty));
}

#[test]
fn cell_cap_refuses_growth_atomically() {
    let (fake, api) = fake_with_sheet(); // Sheet1 = 1000 × 26 = 26,000 cells
    fake.rules(|r| r.max_cells = 30_000);
    let cap = "This action would increase the number of cells in the workbook above the limit of 30000 cells.";
    let add = |rows: u32, cols: u32| {
        let grid = json!({ "rowCount": rows, "columnCount": cols });
        api.batch(json!([{ "addSheet": { "properties": { "title": "Readings", "gridProperties": grid } } }]))
    };

    add(1000, 9).assert_rpc(400, "INVALID_ARGUMENT", cap);
    let id = added_sheet_id(&add(400, 10)); // exactly at the cap is allowed
    let reply = api.batch(json!([{ "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": 1 } }]));
    assert_eq!(reply.message(), cap);
    assert_eq!(fake.grid("s1", "Readings"), Some((400, 10, id)));
}

#[test]
fn batch_update_validates_everything_before_applying() {
    let (fake, api) = fake_with_sheet();
    let id = api.add_readings(100);

    // The first request is valid, the second is not: nothing is applied.
    let reply = api.batch(json!([
        { "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": 10 } },
        { "appendDimension": { "sheetId": 123, "dimension": "ROWS", "length": 1000 } }
    ]));
    assert_eq!(
        reply.message(),
        "Invalid requests[1].appendDimension: No grid with id: 123"
    );
    assert_eq!(fake.grid("s1", "Readings"), Some((100, 9, id)));

    let reply = api.batch(json!([{ "addSheet": { "properties": { "title": "Readings" } } }]));
    assert_eq!(
        reply.message(),
        "Invalid requests[0].addSheet: A sheet with the name \"Readings\" already exists. Please enter another name."
    );

    for (requests, expect) in [
        (json!([]), "Must specify at least one request."),
        (
            json!([{ "deleteSheet": { "sheetId": id } }]),
            "Unknown name \"deleteSheet\"",
        ),
        (json!([{}]), "No request set"),
        (
            json!([{ "addSheet": { "properties": { "titel": "x" } } }]),
            "Unknown name \"titel\"",
        ),
        (
            json!([{ "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": 0 } }]),
            "length",
        ),
        // Google has these, the uploader never sends them: refused, not imitated.
        (
            json!([{ "addSheet": { "properties": { "gridProperties": { "rowCount": 5 } } } }]),
            "does not implement addSheet without a title",
        ),
        (
            json!([{ "addSheet": { "properties": { "title": "x", "sheetType": "OBJECT" } } }]),
            "does not implement 'requests[0].addSheet.properties.sheetType'",
        ),
        (
            json!([{ "addSheet": { "properties": { "title": "x", "gridProperties": { "frozenColumnCount": 1 } } } }]),
            "does not implement 'requests[0].addSheet.properties.gridProperties.frozenColumnCount'",
        ),
    ] {
        api.batch(requests.clone()).assert_error(400, expect, requests);
    }

    // An addSheet with an explicit id, then appendDimension on it, in one batch.
    api.batch(json!([
        { "addSheet": { "properties": { "sheetId": 77, "title": "2024-06", "gridProperties": { "rowCount": 5, "columnCount": 3 } } } },
        { "appendDimension": { "sheetId": 77, "dimension": "COLUMNS", "length": 2 } }
    ])).assert_ok();
    assert_eq!(fake.grid("s1", "2024-06"), Some((5, 5, 77)));
    assert_eq!(fake.tabs("s1").map(|t| t.len()), Some(3));
}

// ---------------------------------------------------------------------------------------
// values:batchUpdate and values.get
// ---------------------------------------------------------------------------------------

#[test]
fn values_batch_update_enforces_googles_rules() {
    let (fake, api) = fake_with_sheet();
    api.add_readings(1000);
    let post = |body: Value| api.post(S1_VALUES, body);

    let reply = post(json!({ "data": [{ "range": "Readings!A1:A1", "values": [[1]] }] }));
    assert_eq!(reply.message(), "'valueInputOption' is required but not specified");
    let reply = post(json!({ "valueInputOption": "raw", "data": [] }));
    assert_eq!(reply.status, 400);
    let reply = post(json!({ "valueInputOptions": "RAW", "data": [] }));
    reply.assert_error(400, "Unknown name \"valueInputOptions\"", "a misspelt field");
    // What the fake does not implement is refused, not ignored.
    let reply = post(json!({ "valueInputOption": "RAW", "data": [], "includeValuesInResponse": true }));
    reply.assert_error(400, "does not implement includeValuesInResponse", "a response option");

    let write = |range: &str, rows: Value| api.write(range, rows).message();
    let too_many = "Requested writing within range ['Readings'!A2:I3], but tried writing to";
    for (range, rows, expect) in [
        ("'Nope'!A1:A1", json!([[1]]), "Unable to parse range: 'Nope'!A1:A1"),
        (
            "'Readings'!A2:I3",
            json!([row(2), row(3), row(4)]),
            &format!("{too_many} row [4]"),
        ),
        (
            "'Readings'!A2:I3",
            json!([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]),
            &format!("{too_many} column [J]"),
        ),
    ] {
        assert_eq!(write(range, rows), expect);
    }
    for (range, rows, expect) in [
        (
            "Readings!A1:B2:C3",
            json!([[1]]),
            "Unable to parse range: Readings!A1:B2:C3",
        ),
        (
            "Readings!A2:B2",
            json!([[1, {"a": 1}]]),
            "Invalid values[0][1]: struct_value",
        ),
        ("Readings!A2:A2", json!([[[1, 2]]]), "Invalid values[0][0]: list_value"),
    ] {
        let message = write(range, rows);
        assert!(message.starts_with(expect), "{range}: {message}");
    }

    // Atomic across ValueRanges: the valid first one is not applied either.
    let reply = post(json!({ "valueInputOption": "RAW", "data": [
        { "range": "Readings!A1:C1", "values": [["ts", "device", "value"]] },
        { "range": "Nope!A1:A1", "values": [[1]] }
    ] }));
    assert_eq!(reply.status, 400);
    assert_eq!(fake.values("s1", "Readings"), Some(vec![]));

    // Two ranges in one request; the reply counts both.
    post(json!({ "valueInputOption": "RAW", "data": [
        { "range": "Readings!A1:C1", "majorDimension": "ROWS", "values": [["ts", "device", "value"]] },
        { "range": "'Readings'!A2:C3", "values": [["t1", "d", 1.5], ["t2", "d", "12"]] }
    ], "includeValuesInResponse": false }))
    .assert_ok();

    // null skips a cell, "" clears one; RAW keeps "12" a string.
    assert_eq!(api.write("Readings!A2:C2", json!([[null, "", 2.5]])).status, 200);
    assert_eq!(
        fake.values("s1", "Readings"),
        Some(vec![
            vec![Cell::text("ts"), Cell::text("device"), Cell::text("value")],
            vec![Cell::text("t1"), Cell::Empty, Cell::Number(2.5)],
            vec![Cell::text("t2"), Cell::text("d"), Cell::text("12")],
        ])
    );
    assert_eq!(fake.stats().non_raw_writes, 0);

    // What the uploader never sends is refused, not imitated: USER_ENTERED (counted),
    // COLUMNS, response render options.
    let refused = [
        json!({ "valueInputOption": "USER_ENTERED", "data": [{ "range": "Readings!C3:C3", "values": [["12"]] }] }),
        json!({ "valueInputOption": "RAW", "data": [{ "range": "Readings!C3:C3", "majorDimension": "COLUMNS", "values": [["12"]] }] }),
        json!({ "valueInputOption": "RAW", "data": [], "responseValueRenderOption": "FORMULA" }),
    ];
    for (body, what) in refused.into_iter().zip([
        "valueInputOption USER_ENTERED",
        "majorDimension COLUMNS",
        "responseValueRenderOption",
    ]) {
        post(body).assert_error(400, what, what);
    }
    assert_eq!(fake.cell("s1", "Readings", "C3"), Some(Cell::text("12")));
    let stats = fake.stats();
    assert_eq!((stats.writes_applied, stats.non_raw_writes), (2, 1));
}

#[test]
fn values_get_decodes_ranges_and_trims_like_google() {
    let (fake, api) = fake_with_sheet();
    fake.add_tab("s1", "Bob's data", 1000, 9);
    fake.put_values(
        "s1",
        "Bob's data",
        "A1",
        &[
            vec![Cell::text("ts"), Cell::text("value")],
            vec![],
            vec![Cell::text("t2"), Cell::Empty, Cell::Number(3.0), Cell::Empty],
            vec![Cell::text("t3"), Cell::Number(21.5), Cell::Bool(true)],
        ],
    );
    let tab = "%27Bob%27%27s%20data%27";
    let read = |range: &str| api.get(&format!("{S1}/values/{range}?valueRenderOption=UNFORMATTED_VALUE"));

    let reply = read(&format!("{tab}%21A1%3AI10")).assert_ok();
    assert_eq!(
        reply.json(),
        json!({
            "majorDimension": "ROWS",
            "values": [["ts", "value"], [], ["t2", "", 3], ["t3", 21.5, true]]
        })
    );

    // Rendering other than UNFORMATTED_VALUE (the default is FORMATTED_VALUE), and by
    // columns, are refused as unimplemented: the uploader never asks for them.
    for query in [
        "",
        "?valueRenderOption=FORMULA",
        "?valueRenderOption=UNFORMATTED_VALUE&majorDimension=COLUMNS",
    ] {
        let reply = api.get(&format!("{S1}/values/{tab}%21C3:C4{query}"));
        reply.assert_error(400, "does not implement", query);
    }

    // An empty range has no "values"; a column range or a whole tab is refused (the
    // uploader reads explicit ranges only).
    assert_eq!(
        read(&format!("{tab}%21E1%3AF9")).json(),
        json!({ "majorDimension": "ROWS" })
    );
    for range in [format!("{tab}%21A%3AA"), tab.to_string()] {
        read(&range).assert_error(400, "implements only ranges like", &range);
    }

    // Reads are checked against the grid and the tab names too.
    read(&format!("{tab}%21A1%3AJ1")).assert_error(400, "exceeds grid limits", "past the grid");
    assert_eq!(read("Nope%21A1%3AA1").message(), "Unable to parse range: Nope!A1:A1");
    let reply = api.get(&format!("{S1}/values/A1?valueRenderOption=PRETTY"));
    assert_eq!(reply.status, 400);
}

// ---------------------------------------------------------------------------------------
// Quota
// ---------------------------------------------------------------------------------------

#[test]
fn write_quota_gives_429_after_n_writes_then_refills() {
    let (fake, api) = fake_with_sheet();
    fake.rules(|r| (r.write_quota, r.read_quota) = (3, 60));
    for n in 0..3 {
        let reply = api.write(&format!("Sheet1!A{0}:A{0}", n + 1), json!([[n]]));
        assert_eq!(reply.status, 200, "write {n}: {}", reply.body);
    }
    let reply = api.write("Sheet1!A4:A4", json!([[3]]));
    let (code, status, message) = reply.rpc_error();
    assert_eq!((code, status.as_str()), (429, "RESOURCE_EXHAUSTED"));
    assert!(message.contains("'Write requests per minute per user'"), "{message}");
    assert_eq!(reply.json()["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
    assert_eq!(
        fake.cell("s1", "Sheet1", "A4"),
        Some(Cell::Empty),
        "refused, not applied"
    );

    // Reads have their own bucket.
    assert_eq!(api.get(S1).status, 200);

    let stats = fake.stats();
    assert_eq!((stats.rate_limited, stats.quota_exceeded), (1, 1));
    assert_eq!(stats.max_writes_in_window, 4);

    // The window rolls: with a short window the quota refills.
    fake.rules(|r| r.quota_window = Duration::from_millis(150));
    std::thread::sleep(Duration::from_millis(200));
    api.write("Sheet1!A4:A4", json!([[3]])).assert_ok();

    fake.rules(|r| (r.write_quota, r.read_quota) = (3, 1));
    assert_eq!(api.get(S1).status, 200);
    api.get(S1)
        .assert_error(429, "'Read requests per minute per user'", "the read quota");
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

#[test]
fn apply_then_drop_applies_the_write_but_sends_nothing() {
    let (fake, api) = fake_with_sheet();
    fake.inject(Matching::Only(RequestKind::ValuesBatchUpdate), Fault::ApplyThenDrop, 1);

    // A GET does not match, so it does not consume the fault.
    assert_eq!(api.get(S1).status, 200);
    assert_eq!(fake.pending_faults(), 1);

    let err = api
        .try_write("Sheet1!A1:B1", json!([["a", 1]]))
        .expect_err("no response after apply-then-drop");
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ),
        "{err}"
    );
    assert_eq!(
        fake.values("s1", "Sheet1"),
        Some(vec![vec![Cell::text("a"), Cell::Number(1.0)]]),
        "the write was applied"
    );
    let last = fake.requests().pop().expect("logged");
    assert_eq!((last.kind, last.status), (RequestKind::ValuesBatchUpdate, None));
    assert!(last.note.contains("ApplyThenDrop"), "{}", last.note);

    // Retrying the same explicit-range write is harmless.
    assert_eq!(api.write("Sheet1!A1:B1", json!([["a", 1]])).status, 200);

    fake.inject(Matching::Any, Fault::DropBeforeApply, 1);
    assert!(api.try_write("Sheet1!A2:A2", json!([["b"]])).is_err());
    assert_eq!(fake.cell("s1", "Sheet1", "A2"), Some(Cell::Empty), "not applied");

    let stats = fake.stats();
    assert_eq!((stats.faults_consumed, stats.dropped_without_response), (2, 2));
    assert_eq!(stats.writes_applied, 2);
}

/// A fault the endpoint cannot produce is a bug in the test: `inject` says so at once,
/// not the request that would take it.
#[test]
#[should_panic(expected = "cannot get the fault ShortTokenLifetime")]
fn a_fault_no_sheets_endpoint_can_produce_is_refused_when_injected() {
    let fake = FakeGoogle::start();
    fake.inject(Matching::Writes, Fault::ShortTokenLifetime(5), 1);
}

#[test]
fn status_and_delay_faults_look_like_google() {
    let (fake, api) = fake_with_sheet();
    let write = || api.write("Sheet1!A1:A1", json!([["x"]]));
    let faults = [
        Fault::Status {
            code: 429,
            retry_after_secs: Some(7),
        },
        Fault::status(500),
        Fault::status(502),
        Fault::status(503),
        Fault::Raw {
            code: 504,
            content_type: "text/plain".into(),
            body: "upstream timeout".into(),
        },
    ];
    for fault in faults {
        fake.inject(Matching::Any, fault, 1);
    }

    let reply = write();
    assert_eq!(reply.rpc_error().1, "RESOURCE_EXHAUSTED");
    assert_eq!(reply.header("retry-after"), Some("7"));
    write().assert_rpc(500, "INTERNAL", "Internal error encountered.");
    let reply = write();
    assert_eq!(reply.status, 502);
    assert!(reply.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    write().assert_rpc(503, "UNAVAILABLE", "The service is currently unavailable.");
    let reply = write();
    assert_eq!((reply.status, reply.body.as_str()), (504, "upstream timeout"));
    assert_eq!(
        fake.cell("s1", "Sheet1", "A1"),
        Some(Cell::Empty),
        "faults apply nothing"
    );

    fake.inject(Matching::Any, Fault::Delay(Duration::from_millis(300)), 1);
    let started = Instant::now();
    assert_eq!(write().status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(fake.cell("s1", "Sheet1", "A1"), Some(Cell::text("x")));

    let stats = fake.stats();
    assert_eq!(
        (stats.faults_consumed, stats.rate_limited, stats.quota_exceeded),
        (6, 1, 0)
    );
}

#[test]
fn outage_answers_503_everywhere_then_recovers() {
    let (fake, api) = fake_with_sheet();
    fake.inject(Matching::Any, Fault::status(500), 1);
    fake.outage(Duration::from_millis(300));

    assert_eq!(api.get(S1).rpc_error().1, "UNAVAILABLE");
    let jwt = fresh_jwt(&fake);
    let reply = post_assertion(&fake, &jwt);
    assert_eq!(
        (reply.status, oauth_error(&reply).0.as_str()),
        (503, "internal_failure")
    );
    assert_eq!(fake.pending_faults(), 1, "an outage consumes no fault");

    std::thread::sleep(Duration::from_millis(350));
    assert_eq!(api.get(S1).status, 500, "the queued fault");
    assert_eq!(api.get(S1).status, 200);
    assert_eq!(post_assertion(&fake, &jwt).status, 200);
    assert_eq!(fake.stats().outage_rejections, 2);
}

// ---------------------------------------------------------------------------------------
// Robustness and lifecycle
// ---------------------------------------------------------------------------------------

#[test]
fn malformed_requests_get_400_and_the_server_survives() {
    let (fake, api) = fake_with_sheet();
    let addr = fake.addr();
    let raw = |bytes: &[u8]| send_raw(addr, bytes).expect("a response");

    assert_eq!(raw(b"hello\r\n\r\n").status, 400);
    assert_eq!(raw(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n").status, 400);
    assert_eq!(raw(b"POST /token HTTP/1.1\r\nContent-Length: ten\r\n\r\n").status, 400);
    let reply = raw(b"POST /token HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
    assert_eq!(
        reply.message(),
        "Request payload size exceeds the limit: 10485760 bytes."
    );
    let mut long_header = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long_header.extend(vec![b'a'; 70_000]);
    long_header.extend_from_slice(b"\r\n\r\n");
    assert_eq!(raw(&long_header).status, 400);

    let send = |body: &str| api.post(S1_VALUES, body);
    let message = send("{not json").message();
    assert!(message.starts_with("Invalid JSON payload received."), "{message}");
    assert_eq!(
        send("[]").message(),
        "Invalid JSON payload received. Root element must be a message."
    );
    assert_eq!(
        send(r#"{"valueInputOption":"RAW","data":[{"range":"A1","values":[1]}]}"#).status,
        400
    );
    assert_eq!(send(r#"{"valueInputOption":"RAW","data":[{"range":7}]}"#).status, 400);
    assert_eq!(api.get(&format!("{S1}/values/%ZZ")).status, 400);
    assert_eq!(api.get("/favicon.ico").status, 404);
    let reply = api.post(&format!("{S1}/values/Sheet1:append"), "{}");
    assert_eq!(reply.rpc_error().1, "UNIMPLEMENTED");

    // A client that connects and says nothing, and one that hangs up mid-request.
    drop(TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect"));
    let mut half = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect");
    half.write_all(b"POST /token HTTP/1.1\r\nContent-Length: 50\r\n\r\nabc")
        .expect("write");
    drop(half);

    // Chunked bodies are accepted.
    let body = r#"{"valueInputOption":"RAW","data":[{"range":"Sheet1!A1:A1","values":[["chunked"]]}]}"#;
    let (first, second) = body.split_at(20);
    let chunked = format!(
        "POST {S1_VALUES} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
        api.token,
        first.len(),
        second.len()
    );
    raw(chunked.as_bytes()).assert_ok();
    assert_eq!(fake.cell("s1", "Sheet1", "A1"), Some(Cell::text("chunked")));

    assert_eq!(api.get(S1).status, 200);
    assert_eq!(fake.stats().internal_errors, 0);
}

#[test]
fn wait_until_and_the_request_log() {
    let (fake, api) = fake_with_sheet();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            api.write("Sheet1!A1:A1", json!([["late"]]));
        });
        assert!(fake.wait_until(Duration::from_secs(5), |f| {
            f.cell("s1", "Sheet1", "A1") == Some(Cell::text("late"))
        }));
    });
    let started = Instant::now();
    assert!(!fake.wait_until(Duration::from_millis(100), |f| f.stats().tokens_issued > 5));
    assert!(started.elapsed() < Duration::from_secs(2));

    let log = fake.requests();
    let entry = log.last().expect("one request logged");
    assert_eq!(entry.method, "POST");
    assert_eq!(entry.path, S1_VALUES);
    assert_eq!(entry.status, Some(200));
    assert_eq!(entry.account.as_deref(), Some(DEFAULT_ACCOUNT));
    assert!(fake.request_log_text().contains("values:batchUpdate -> 200"));
}

#[test]
fn drop_stops_the_server_promptly() {
    let fake = FakeGoogle::start();
    let addr = fake.addr();
    // An idle open connection must not hold up the shutdown.
    let idle = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect");
    std::thread::sleep(Duration::from_millis(50));
    let started = Instant::now();
    drop(fake);
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop(idle);
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
}

#[test]
fn cell_and_request_size_limits_are_enforced_as_google_does() {
    let (fake, api) = fake_with_sheet();
    let write = |cell: String| api.write("Sheet1!A1:A1", json!([[cell]]));
    // 50,000 characters, counted in UTF-16 code units: N fits, N + 1 does not.
    assert_eq!(write("a".repeat(MAX_CELL_CHARS)).status, 200);
    let reply = write("a".repeat(MAX_CELL_CHARS + 1));
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.message(),
        "Your input contains more than the maximum of 50000 characters in a single cell."
    );
    let emoji = "😀".repeat(MAX_CELL_CHARS / 2);
    assert_eq!(write(emoji.clone()).status, 200, "25,000 emoji are 50,000 units");
    assert_eq!(write(format!("{emoji}a")).status, 400);

    // The request size cap, here lowered: a body of exactly N bytes passes, N + 1 does not.
    let body_of = |pad: usize| {
        json!({
            "valueInputOption": "RAW",
            "data": [{"range": "Sheet1!A2:A2", "majorDimension": "ROWS", "values": [["x".repeat(pad)]]}],
        })
    };
    let limit = body_of(0).to_string().len() + 1000;
    fake.rules(|r| r.max_request_bytes = limit);
    assert_eq!(api.post(S1_VALUES, body_of(1000)).status, 200);
    let reply = api.post(S1_VALUES, body_of(1001));
    assert_eq!(reply.status, 400);
    assert_eq!(
        reply.message(),
        format!("Request payload size exceeds the limit: {limit} bytes.")
    );

    // An injected refusal (a rule the client cannot foresee) refuses the batch whole.
    fake.rules(|r| r.max_request_bytes = MAX_REQUEST_BODY_BYTES);
    fake.refuse_cells_containing("s1", Some("BAD"));
    let write_two = || api.write("Sheet1!A3:A4", json!([["ok"], ["a BAD one"]]));
    assert_eq!(write_two().status, 400);
    assert_eq!(fake.cell("s1", "Sheet1", "A3"), Some(Cell::Empty), "nothing applied");
    fake.refuse_cells_containing("s1", None);
    assert_eq!(write_two().status, 200);
}

#[test]
fn every_body_is_checked_against_googles_discovery_document() {
    // The vendored document is the one the README names (tests/fixtures/README.md).
    assert_eq!(discovery::revision(), discovery::REVISION);
    let (fake, api) = fake_with_sheet();
    let id = api.add_readings(10);
    // Each is wrong in one way the discovery document describes; none is applied.
    let schema_refuses = |path: &str, body: Value, expect: &str| {
        let before = fake.stats().schema_violations;
        api.post(path, &body).assert_error(400, expect, &body);
        assert_eq!(fake.stats().schema_violations, before + 1, "{body}");
    };
    for (requests, expect) in [
        (
            json!([{ "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": 1, "extra": 1 } }]),
            "Unknown name \"extra\" at 'requests[0].append_dimension'",
        ),
        (
            json!([{ "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": "many" } }]),
            "Invalid value at 'requests[0].append_dimension.length' (TYPE_INT32)",
        ),
        // Google would take a numeric string; the uploader sends numbers, the fake refuses it.
        (
            json!([{ "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": "5" } }]),
            "Invalid value at 'requests[0].append_dimension.length' (TYPE_INT32)",
        ),
        (
            json!([{ "appendDimension": { "sheetId": id, "dimension": "LINES", "length": 1 } }]),
            "(TYPE_ENUM), \"LINES\"",
        ),
        (
            json!([{ "addSheet": { "properties": { "title": "x", "hidden": "yes" } } }]),
            "(TYPE_BOOL)",
        ),
        (
            json!([{ "addSheet": { "properties": { "title": "x" } },
                     "appendDimension": { "sheetId": id, "dimension": "ROWS", "length": 1 } }]),
            "Oneof field 'kind' is already set",
        ),
        (json!([{}]), "No request set"),
        (json!([null]), "Invalid value at 'requests[0]' (TYPE_MESSAGE), null"),
    ] {
        schema_refuses(S1_BATCH, json!({ "requests": requests }), expect);
    }
    assert_eq!(fake.grid("s1", "Readings"), Some((10, 9, id)));
    assert_eq!(fake.tabs("s1").unwrap().len(), 2);
    // values:batchUpdate too: a bad enum and an unknown field.
    for (body, expect) in [
        (
            json!({"valueInputOption": "RAWISH", "data": [{"range": "Readings!A1:A1", "values": [[1]]}]}),
            "(TYPE_ENUM), \"RAWISH\"",
        ),
        (
            json!({"valueInputOption": "RAW", "data": [{"range": "Readings!A1:A1", "rows": [[1]]}]}),
            "Unknown name \"rows\" at 'data[0]'",
        ),
        // `null` leaves a field unset, but a list holds no null message or list.
        (
            json!({"valueInputOption": "RAW", "data": [null]}),
            "Invalid value at 'data[0]' (TYPE_MESSAGE), null",
        ),
        (
            json!({"valueInputOption": "RAW", "data": [{"range": "Readings!A1:A1", "values": [null]}]}),
            "Invalid value at 'data[0].values[0]' (type.googleapis.com/google.protobuf.ListValue), null",
        ),
    ] {
        schema_refuses(S1_VALUES, body, expect);
    }
    // A valid body passes the check (and is applied).
    api.write("Readings!A1:D1", json!([[1, "a", true, null]])).assert_ok();
    assert_eq!(fake.stats().schema_violations, 12);
    // Valid by the schema, refused by Google's rules: an id that exists (issue 18).
    let reply = api.batch(json!([{ "addSheet": { "properties": { "sheetId": id, "title": "Other" } } }]));
    reply.assert_error(400, &format!("A sheet with the id {id} already exists"), "a taken id");
    assert_eq!(fake.stats().schema_violations, 12);
}

#[test]
fn spreadsheets_get_honours_fields_and_lists_charts() {
    let (_fake, api) = fake_with_sheet();
    let id = api.add_readings(10);
    let chart = json!([{ "addChart": { "chart": { "chartId": 42, "spec": { "basicChart": {
        "chartType": "LINE",
        "domains": [{ "domain": { "sourceRange": { "sources": [{ "sheetId": id, "startColumnIndex": 0, "endColumnIndex": 1 }] } } }],
        "series": [{ "series": { "sourceRange": { "sources": [{ "sheetId": id, "startColumnIndex": 3, "endColumnIndex": 4 }] } } }]
    } }, "position": { "overlayPosition": { "anchorCell": { "sheetId": id, "rowIndex": 1, "columnIndex": 2 } } } } } }]);
    api.batch(chart.clone()).assert_ok();
    // A chart the uploader does not build is refused, not imitated; so is a body option.
    for (pointer, value, field) in [
        ("/position", json!({ "sheetId": id }), "position.sheetId"),
        ("/spec/subtitle", json!("s"), "spec.subtitle"),
        (
            "/spec/basicChart/stackedType",
            json!("STACKED"),
            "spec.basicChart.stackedType",
        ),
        (
            "/spec/basicChart/series/0/type",
            json!("LINE"),
            "spec.basicChart.series[0].type",
        ),
        (
            "/spec/basicChart/domains/0/domain/sourceRange/sources/0/endRowIndex",
            json!(5),
            "spec.basicChart.domains[0].domain.sourceRange.sources[0].endRowIndex",
        ),
    ] {
        let mut bad = chart.clone();
        let (parent, name) = pointer.rsplit_once('/').expect("a pointer");
        bad[0]["addChart"]["chart"].pointer_mut(parent).expect("exists")[name] = value;
        let expect = format!("does not implement 'requests[0].addChart.chart.{field}'");
        api.batch(bad).assert_error(400, &expect, pointer);
    }
    let body = json!({ "requests": chart, "includeSpreadsheetInResponse": true });
    let reply = api.post(S1_BATCH, &body);
    reply.assert_error(
        400,
        "does not implement 'includeSpreadsheetInResponse'",
        "a body option",
    );
    let reply = api.get(
        "/v4/spreadsheets/s1?fields=sheets(properties(sheetId,title),charts(chartId,spec.basicChart.series.series.sourceRange.sources(startColumnIndex)))",
    ).assert_ok();
    assert_eq!(
        reply.json(),
        json!({"sheets": [
            {"properties": {"sheetId": 0, "title": "Sheet1"}},
            {"properties": {"sheetId": id, "title": "Readings"},
             "charts": [{"chartId": 42, "spec": {"basicChart": {"series": [{"series": {"sourceRange": {"sources": [{"startColumnIndex": 3}]}}}]}}}]}
        ]})
    );
    // A parameter the uploader never sends is refused, not ignored.
    let reply = api.get(&format!("{S1}?fields=properties.title&includeGridData=true"));
    reply.assert_error(
        400,
        "does not implement the query parameter includeGridData",
        "a parameter",
    );
    let malformed = [
        "sheets(properties",
        "sheets(properties))",
        "sheets..properties",
        "sheets,",
        "(sheets)",
        "sheets!",
    ];
    // Names the Spreadsheet schema does not have where they stand (Google checks the mask).
    let unknown = [
        "nosuch",
        "sheets(propertes)",
        "sheets.properties.title.x",
        "properties.title(x)",
    ];
    for bad in malformed.into_iter().chain(unknown) {
        api.get(&format!("{S1}?fields={bad}"))
            .assert_error(400, "Invalid field selection", bad);
    }
    // Paths into one field merge; spaces are ignored.
    let reply = api.get(&format!(
        "{S1}?fields=sheets(properties(title)),%20sheets(properties(index))"
    ));
    let readings = &reply.json()["sheets"][1]["properties"];
    assert_eq!(readings, &json!({"title": "Readings", "index": 1}), "{}", reply.body);
}

// ---------------------------------------------------------------------------------------
// The pure parts: A1 notation, encodings, routes
// ---------------------------------------------------------------------------------------

#[test]
fn a1_forms_parse() {
    for (text, name, start, end) in [
        ("'Readings'!A2:I3", "Readings", (1, 0), (2, 8)),
        ("'It''s ok'!B5:B5", "It's ok", (4, 1), (4, 1)),
        ("Sheet1!A1:C2", "Sheet1", (0, 0), (1, 2)),
        ("'a!b'!A1:ZZZ10", "a!b", (0, 0), (9, 18277)),
    ] {
        assert_eq!(parse_a1(text), Some((name.to_string(), start, end)), "{text}");
    }
    assert_eq!(single_cell("B2"), Some((1, 1)));
}

#[test]
fn a1_rejects_garbage_and_what_the_uploader_never_sends() {
    for bad in [
        "",
        "'",
        "''",
        "'Tab",
        "'Tab'x",
        "A0",
        "AAAA1",
        "A1:B2:C3",
        "!A1",
        "1A",
        "A",
        "Tab!",
        "A1:",
        "'Tab'!",
        // Google takes these; the uploader never sends them.
        "A1:B2",
        "'Tab'!A1",
        "'Tab'",
        "Tab!A:A",
        "Tab!2:5",
        "Tab!$A$1:B2",
        "Tab!B2:A1",
        "Tab!a1:b2",
    ] {
        assert_eq!(parse_a1(bad), None, "{bad:?} should not parse");
    }
}

#[test]
fn column_names() {
    assert_eq!(column_letters(0), "A");
    assert_eq!(column_letters(25), "Z");
    assert_eq!(column_letters(26), "AA");
    assert_eq!(column_letters(18277), "ZZZ");
}

#[test]
fn url_decoding() {
    assert_eq!(
        percent_decode("%27Readings%27%21A1%3AI2").as_deref(),
        Some("'Readings'!A1:I2")
    );
    assert_eq!(percent_decode("a+b").as_deref(), Some("a+b"));
    assert_eq!(percent_decode("%zz"), None);
    assert_eq!(percent_decode("%2"), None);
    assert_eq!(percent_decode("%ff"), None, "not UTF-8");
    assert_eq!(
        parse_urlencoded(b"a+b=c+d%2B"),
        Some(vec![("a b".into(), "c d+".into())])
    );
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
    use RequestKind::*;
    for (method, path, kind) in [
        ("POST", "/token", Token),
        ("GET", "/v4/spreadsheets/abc", GetSpreadsheet),
        ("POST", "/v4/spreadsheets/abc:batchUpdate", BatchUpdate),
        ("POST", "/v4/spreadsheets/abc%3AbatchUpdate", Other),
        ("POST", "/v4/spreadsheets/abc/values:batchUpdate", ValuesBatchUpdate),
        ("GET", "/v4/spreadsheets/abc/values/%27R%27%21A1%3AB2", GetValues),
        ("POST", "/v4/spreadsheets/abc/values/R:append", Other),
        ("PUT", "/v4/spreadsheets/abc/values/R", Other),
        ("GET", "/v4/spreadsheets/abc:batchUpdate", Other),
        ("GET", "/favicon.ico", Other),
    ] {
        assert_eq!(route(method, path).0, kind, "{method} {path}");
    }
    let (id, range) = ("abc".to_string(), "R%21A1".to_string());
    assert_eq!(
        route("GET", "/v4/spreadsheets/abc/values/R%21A1"),
        (GetValues, id, range)
    );
}
