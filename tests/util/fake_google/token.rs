//! The OAuth 2.0 token endpoint: the JWT-bearer grant with RS256 signature, claims and
//! clock checks, and the tokens it issues.
use super::*;

/// A refused token request: 400 with OAuth `error` and `error_description`.
fn reject(error: &str, description: impl Into<String>) -> Response {
    oauth_error(400, error, Some(&description.into()))
}

pub(super) fn token_endpoint(
    st: &mut State,
    token_uri: &str,
    req: &HttpRequest,
    lifetime_override: Option<u64>,
    now: Instant,
) -> (Response, Option<String>, &'static str) {
    let offset = st.rules.clock_offset_secs;
    let unix_now = jiff::Timestamp::now().as_second().saturating_add(offset);
    // The JWT's `iss`, once read: the log names it even when the request is refused.
    let mut iss = None;
    let checked = check_form(req).and_then(|jwt| verify_assertion(&jwt, &st.accounts, token_uri, unix_now, &mut iss));
    if let Err(response) = checked {
        st.stats.token_rejections += 1;
        return (response, iss, "token refused");
    }
    let account = iss.unwrap_or_default();
    let (token, lifetime) = st.issue_token(&account, lifetime_override, now);
    let body = json!({ "access_token": token, "expires_in": lifetime, "token_type": "Bearer" });
    (json_response(200, &body), Some(account), "")
}

/// The JWT-bearer form: POST, form-encoded, the grant type; returns the assertion.
fn check_form(req: &HttpRequest) -> Result<String, Response> {
    if req.method != "POST" {
        let description = format!("Method {} is not allowed; use POST.", req.method);
        return Err(oauth_error(405, "invalid_request", Some(&description)));
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

/// Checks the assertion as Google does; sets `iss` as soon as the claims are read.
fn verify_assertion(
    jwt: &str,
    accounts: &BTreeSet<String>,
    token_uri: &str,
    unix_now: i64,
    iss: &mut Option<String>,
) -> Result<(), Response> {
    let bad_jwt = |what: String| reject("invalid_grant", format!("Invalid JWT: {what}"));
    let segments: Vec<&str> = jwt.split('.').collect();
    if segments.len() != 3 {
        return Err(bad_jwt("the assertion must have three dot-separated segments.".into()));
    }
    // base64url, with or without `=` padding (yup-oauth2 pads; notes §1.3).
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let mut decoded = Vec::with_capacity(3);
    for (name, segment) in ["header", "claims", "signature"].iter().zip(&segments) {
        let bytes = engine.decode(segment);
        decoded.push(bytes.map_err(|e| bad_jwt(format!("the {name} segment is not base64url ({e}).")))?);
    }
    let header: Value = serde_json::from_slice(&decoded[0]).unwrap_or(Value::Null);
    let claims: Value = serde_json::from_slice(&decoded[1]).unwrap_or(Value::Null);
    if !claims.is_object() {
        return Err(bad_jwt("the claims segment is not a JSON object.".into()));
    }
    *iss = claims.get("iss").and_then(Value::as_str).map(str::to_string);
    if !iss.as_ref().is_some_and(|iss| accounts.contains(iss)) {
        return Err(reject("invalid_grant", "Invalid grant: account not found"));
    }
    // The signature covers the two segments exactly as sent, padding included.
    let signed = &jwt[..segments[0].len() + 1 + segments[1].len()];
    let key =
        ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, TEST_PUBLIC_KEY_DER);
    if header.get("alg").and_then(Value::as_str) != Some("RS256") || key.verify(signed.as_bytes(), &decoded[2]).is_err()
    {
        return Err(reject("invalid_grant", "Invalid JWT Signature."));
    }
    let exp = claims.get("exp").and_then(numeric_date);
    let iat = claims.get("iat").and_then(numeric_date);
    let timely = iat.zip(exp).is_some_and(|(iat, exp)| {
        exp > unix_now && iat <= unix_now + MAX_JWT_IAT_SKEW_SECS && exp > iat && exp - iat <= MAX_JWT_LIFETIME_SECS
    });
    if !timely {
        let message = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable \
                       timeframe. Check your iat and exp values in the JWT claim.";
        return Err(reject("invalid_grant", message));
    }
    if claims.get("aud").and_then(Value::as_str) != Some(token_uri) {
        return Err(bad_jwt(format!(
            "Failed audience check. The right audience is {token_uri}"
        )));
    }
    let scope = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if scope.split_whitespace().next().is_none() {
        return Err(reject("invalid_scope", "Empty or missing scope not allowed."));
    }
    if !scope.split_whitespace().any(|s| s == SPREADSHEETS_SCOPE) {
        return Err(reject(
            "invalid_scope",
            format!("The fake Google requires the scope {SPREADSHEETS_SCOPE}; got: {scope}"),
        ));
    }
    // Domain-wide delegation (`sub` naming another user) is not granted to test accounts.
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if Some(sub) != iss.as_deref() => {
            let description = "Client is unauthorized to retrieve access tokens using this method, \
                               or client not authorized for any of the scopes requested.";
            Err(oauth_error(401, "unauthorized_client", Some(description)))
        }
        _ => Ok(()),
    }
}

/// A JWT NumericDate: seconds since the epoch, integer or fractional.
pub(super) fn numeric_date(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.floor() as i64))
}
