//! Service-account OAuth: the key file, and access tokens from its `token_uri`.
//!
//! yup-oauth2 signs the JWT assertion, posts it to the key's `token_uri` (as Google's
//! own clients do; a test key points at a local server) and caches the token, fetching
//! a new one 60 s before it expires. It is async-only, so the uploader thread drives it
//! from its own current-thread runtime. Two pitfalls handled here: its default HTTP
//! client needs a system CA store (we give it one with Mozilla's roots compiled in, which
//! also speaks plain http for tests), and it ignores its own timeout with a custom
//! client (we wrap every call in `tokio::time::timeout`).
//!
//! The key and the tokens never reach a log line: errors carry the key file's path and
//! the account's e-mail only.

use std::path::Path;
use std::time::Duration;

use yup_oauth2::authenticator::Authenticator;
use yup_oauth2::ServiceAccountKey;

pub const SCOPES: &[&str] = &["https://www.googleapis.com/auth/spreadsheets"];

type Connector =
    super::capped::CappedConnector<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>>;

/// A problem with the key file, found before anything is sent.
#[derive(Debug)]
pub struct KeyError(pub String);

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// Reads and checks the service-account key file.
pub fn read_key(path: &Path) -> Result<ServiceAccountKey, KeyError> {
    let p = path.display();
    let bytes = crate::small_file::read(path, crate::small_file::MAX_SECRET_BYTES)
        .map_err(|e| KeyError(format!("cannot read the key file {p} (sheets.key_file): {e}")))?;
    let json: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        KeyError(format!(
            "the key file {p} is not JSON ({e}); download the service account's JSON key again"
        ))
    })?;
    if json.get("installed").is_some() || json.get("web").is_some() {
        return Err(KeyError(format!(
            "the key file {p} is an OAuth client secret, not a service-account key; create a key under IAM & Admin > Service Accounts > Keys (README, Google Sheets set-up)"
        )));
    }
    if let Some(t) = json.get("type").and_then(|t| t.as_str()) {
        if t != "service_account" {
            return Err(KeyError(format!(
                "the key file {p} has type {t:?}, not \"service_account\""
            )));
        }
    }
    let key = yup_oauth2::parse_service_account_key(&bytes).map_err(|e| {
        KeyError(format!(
            "the key file {p} is not a service-account key: {}",
            e.to_string().replace("Bad service account key: ", "")
        ))
    })?;
    if !key.private_key.contains("PRIVATE KEY-----") {
        return Err(KeyError(format!("the key file {p} has no PEM private_key")));
    }
    Ok(key)
}

pub struct Auth {
    inner: Authenticator<Connector>,
    timeout: Duration,
    /// The key's `token_uri`, named in every error.
    token_uri: String,
}

/// Why no token could be had.
///
/// Only an OAuth error that says the key or the grant is wrong (`invalid_grant`,
/// `invalid_client`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`,
/// `access_denied`, `invalid_request`) needs the operator. Everything else is transient
/// and retried with the API's backoff: no answer, a timeout, an HTML or JSON 5xx/429
/// page (`internal_failure`, `temporarily_unavailable`, ...), which yup-oauth2 reports as
/// an OAuth error with an `Other` code because it does not keep the HTTP status.
#[derive(Debug)]
pub enum TokenError {
    /// The token endpoint refused the key: needs the operator.
    Refused(String),
    /// No usable answer (network, timeout, a 5xx page): retry.
    Unavailable(String),
}

/// Whether an OAuth error code means the key or the request is wrong (RFC 6749 §5.2).
pub fn needs_operator(code: &yup_oauth2::error::AuthErrorCode) -> bool {
    use yup_oauth2::error::AuthErrorCode as C;
    match code {
        C::InvalidRequest
        | C::InvalidClient
        | C::InvalidGrant
        | C::UnauthorizedClient
        | C::UnsupportedGrantType
        | C::InvalidScope
        | C::AccessDenied => true,
        C::ExpiredToken | C::Other(_) => false,
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Refused(e) => write!(
                f,
                "Google refused the service-account key ({e}); check that the key still exists and that this machine's clock is right"
            ),
            TokenError::Unavailable(e) => write!(f, "cannot get an access token ({e})"),
        }
    }
}

impl Auth {
    /// `max_response_bytes`: the most an answer of the token endpoint may be
    /// (`sheets.max_response_bytes`; see `capped`).
    pub async fn new(key: ServiceAccountKey, timeout: Duration, max_response_bytes: usize) -> Result<Auth, KeyError> {
        let token_uri = key.token_uri.clone();
        // One crypto provider (ring) for both HTTP stacks; a second call is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let connector = super::capped::CappedConnector::new(connector, max_response_bytes);
        // No idle connections: one connection per token request (one an hour), so the
        // cap on what a connection reads is a cap on one answer.
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build::<_, String>(connector);
        let inner = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::CustomHyperClientBuilder::from(client),
        )
        .build()
        .await
        .map_err(|e| KeyError(format!("the key file's private_key cannot be used: {e}")))?;
        Ok(Auth {
            inner,
            timeout,
            token_uri,
        })
    }

    /// A valid access token (cached until a minute before it expires).
    pub async fn token(&self, fresh: bool) -> Result<String, TokenError> {
        let fut = async {
            if fresh {
                self.inner.force_refreshed_token(SCOPES).await
            } else {
                self.inner.token(SCOPES).await
            }
        };
        let url = &self.token_uri;
        let tok = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| TokenError::Unavailable(format!("POST {url}: no answer in {} s", self.timeout.as_secs())))?
            .map_err(|e| match e {
                yup_oauth2::Error::AuthError(a) if needs_operator(&a.error) => {
                    TokenError::Refused(format!("POST {url}: {}", trim_period(&a.to_string())))
                }
                other => TokenError::Unavailable(format!("POST {url}: {}", trim_period(&describe(&other)))),
            })?;
        tok.token()
            .map(str::to_string)
            .ok_or_else(|| TokenError::Unavailable(format!("POST {url}: the answer has no access_token")))
    }
}

/// yup-oauth2's error with its causes ("Connection failure: ...: Connect" says little).
fn describe(e: &yup_oauth2::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(cause) = src {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        src = cause.source();
    }
    s
}

/// A message without its final period, to be embedded in a sentence.
pub fn trim_period(s: &str) -> &str {
    s.trim_end().trim_end_matches('.')
}
