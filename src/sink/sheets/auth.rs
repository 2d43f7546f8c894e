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

type Connector = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

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
    let bytes =
        std::fs::read(path).map_err(|e| KeyError(format!("cannot read the key file {p} (sheets.key_file): {e}")))?;
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
}

/// Why no token could be had.
#[derive(Debug)]
pub enum TokenError {
    /// The token endpoint refused the key (invalid_grant, ...): needs the operator.
    Refused(String),
    /// No usable answer (network, timeout, a 5xx page): retry.
    Unavailable(String),
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenError::Refused(e) => write!(
                f,
                "Google refused the service-account key ({e}); check that the key still exists and that this machine's clock is right"
            ),
            TokenError::Unavailable(e) => write!(f, "cannot get an access token: {e}"),
        }
    }
}

impl Auth {
    pub async fn new(key: ServiceAccountKey, timeout: Duration) -> Result<Auth, KeyError> {
        // One crypto provider (ring) for both HTTP stacks; a second call is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, String>(connector);
        let inner = yup_oauth2::ServiceAccountAuthenticator::with_client(
            key,
            yup_oauth2::CustomHyperClientBuilder::from(client),
        )
        .build()
        .await
        .map_err(|e| KeyError(format!("the key file's private_key cannot be used: {e}")))?;
        Ok(Auth { inner, timeout })
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
        let tok = tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| {
                TokenError::Unavailable(format!(
                    "the token endpoint did not answer in {} s",
                    self.timeout.as_secs()
                ))
            })?
            .map_err(|e| match e {
                yup_oauth2::Error::AuthError(a) => TokenError::Refused(a.to_string()),
                other => TokenError::Unavailable(other.to_string()),
            })?;
        tok.token()
            .map(str::to_string)
            .ok_or_else(|| TokenError::Unavailable("the token endpoint sent no access_token".into()))
    }
}
