//! The OAuth 2.0 token endpoint: the JWT-bearer grant with RS256 signature, claims and
//! clock checks, and the tokens it issues.
use super::*;

// ---------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------

/// A refused token request: status, OAuth `error`, `error_description`.
pub(super) type TokenRejection = (u16, &'static str, String);

pub(super) fn reject(error: &'static str, description: impl Into<String>) -> TokenRejection {
    (400, error, description.into())
}

pub(super) fn token_endpoint(
    st: &mut State,
    token_uri: &str,
    req: &HttpRequest,
    lifetime_override: Option<u64>,
    now: Instant,
) -> (Response, Option<String>, &'static str) {
    let unix_now = unix_seconds().saturating_add(st.clock_offset_secs);
    match check_token_request(req, &st.accounts, token_uri, unix_now) {
        Err(((status, error, description), iss)) => {
            st.stats.token_rejections += 1;
            let response = oauth_error(status, error, Some(&description));
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

pub(super) type TokenCheck = Result<String, (TokenRejection, Option<String>)>;

/// Checks a token request; on success returns the service account.
pub(super) fn check_token_request(
    req: &HttpRequest,
    accounts: &BTreeSet<String>,
    token_uri: &str,
    unix_now: i64,
) -> TokenCheck {
    check_form(req)
        .map_err(|r| (r, None))
        .and_then(|assertion| verify_assertion(&assertion, accounts, token_uri, unix_now))
}

/// The JWT-bearer form: POST, form-encoded, the grant type; returns the assertion.
fn check_form(req: &HttpRequest) -> Result<String, TokenRejection> {
    if req.method != "POST" {
        let description = format!("Method {} is not allowed; use POST.", req.method);
        return Err((405, "invalid_request", description));
    }
    let form_type = req
        .header("content-type")
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return Err(reject(
            "invalid_request",
            "Content-Type must be application/x-www-form-urlencoded.",
        ));
    }
    let form = parse_urlencoded(&req.body).ok_or_else(|| reject("invalid_request", "Malformed form body."))?;
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let grant = field("grant_type").unwrap_or_default();
    if grant != JWT_BEARER_GRANT {
        return Err(reject("unsupported_grant_type", format!("Invalid grant_type: {grant}")));
    }
    field("assertion").ok_or_else(|| reject("invalid_request", "Missing required parameter: assertion"))
}

/// base64url, with or without `=` padding (yup-oauth2 pads; notes §1.3).
pub(super) fn base64url() -> base64::engine::GeneralPurpose {
    base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_encode_padding(false)
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    )
}

pub(super) fn verify_assertion(jwt: &str, accounts: &BTreeSet<String>, token_uri: &str, unix_now: i64) -> TokenCheck {
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
            let description = "Client is unauthorized to retrieve access tokens using this method, \
                               or client not authorized for any of the scopes requested.";
            return Err(with_iss((401, "unauthorized_client", description.into())));
        }
    }
    Ok(iss.unwrap_or_default())
}

/// A JWT NumericDate: seconds since the epoch, integer or fractional.
pub(super) fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
}

pub(super) fn unix_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
