//! Answers in Google's shapes (google.rpc.Status, OAuth errors, HTML pages) and encodings.
use super::*;

// --- Encoding helpers ------------------------------------------------------------------

/// Percent-decoded UTF-8 (the `percent-encoding` crate); `None` where Google refuses: a
/// `%` not followed by two hex digits, or bytes that are not UTF-8.
pub(crate) fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let escapes_ok = (0..bytes.len()).filter(|&i| bytes[i] == b'%').all(|i| {
        bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    let decoded = percent_encoding::percent_decode(bytes).decode_utf8().ok()?;
    escapes_ok.then(|| decoded.into_owned())
}

/// `a=1&b+c=2` → pairs (`+` is a space); `None` on bad percent-encoding or non-UTF-8.
pub(crate) fn parse_urlencoded(input: &[u8]) -> Option<Vec<(String, String)>> {
    let input = std::str::from_utf8(input).ok()?.replace('+', " ");
    let pair = |part: &str| {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        Some((percent_decode(name)?, percent_decode(value)?))
    };
    input.split('&').filter(|p| !p.is_empty()).map(pair).collect()
}

// --- Responses in Google's shapes ------------------------------------------------------

pub(super) fn pretty(value: &Value) -> String {
    // Serializing a `Value` cannot fail; the fallback only keeps this panic-free.
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// Google pretty-prints its JSON (2-space indent).
pub(super) fn json_response(status: u16, value: &Value) -> Response {
    Response::new(status, "application/json; charset=UTF-8", pretty(value))
}

/// The google.rpc.Status error body (notes §2.6).
pub(super) fn rpc_error(code: u16, status: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({ "error": { "code": code, "message": message, "status": status } }),
    )
}

/// An error with Google's `ErrorInfo` (reason, metadata) and a `Help` link.
pub(super) fn error_info(
    (code, status, message): (u16, &str, &str),
    reason: &str,
    metadata: Value,
    (help, url): (&str, &str),
) -> Response {
    let details = json!([
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason,
            "domain": "googleapis.com",
            "metadata": metadata,
        },
        { "@type": "type.googleapis.com/google.rpc.Help", "links": [{ "description": help, "url": url }] }
    ]);
    json_response(
        code,
        &json!({ "error": { "code": code, "message": message, "status": status, "details": details } }),
    )
}

pub(super) fn invalid_argument(message: &str) -> Response {
    rpc_error(400, "INVALID_ARGUMENT", message)
}

/// 400 for what Google has but the uploader never sends (the rules table says why).
pub(super) fn unimplemented(what: &str) -> Response {
    invalid_argument(&format!("The fake Google does not implement {what}."))
}

/// 401 for a request without a bearer token, or (`invalid_token`) with one that is
/// unknown or expired.
pub(super) fn unauthenticated(invalid_token: bool) -> Response {
    let (what, error) = match invalid_token {
        true => ("had invalid authentication credentials", ", error=\"invalid_token\""),
        false => ("is missing required authentication credential", ""),
    };
    let message = format!(
        "Request {what}. Expected OAuth 2 access token, login cookie or other valid authentication \
         credential. See https://developers.google.com/identity/sign-in/web/devconsole-project."
    );
    let mut response = rpc_error(401, "UNAUTHENTICATED", &message);
    let challenge = format!("Bearer realm=\"https://accounts.google.com/\"{error}");
    response.headers.push(("WWW-Authenticate", challenge));
    response
}

/// Google's answer with status `code` when it says nothing more specific (an injected
/// fault, an outage, a missing or unshared spreadsheet): a google.rpc.Status, or for 502
/// the HTML page of Google's front end (as real 502s are).
pub(super) fn status_error(code: u16) -> Response {
    let rpc = |status: &str, message: &str| rpc_error(code, status, message);
    match code {
        400 => rpc("INVALID_ARGUMENT", "Request contains an invalid argument."),
        401 => unauthenticated(true),
        403 => rpc("PERMISSION_DENIED", "The caller does not have permission"),
        404 => rpc("NOT_FOUND", "Requested entity was not found."),
        409 => rpc("ABORTED", "The operation was aborted."),
        429 => quota_error(true, Rules::default().write_quota),
        500 => rpc("INTERNAL", "Internal error encountered."),
        502 => html_page(
            502,
            "Error 502 (Server Error)!!1",
            "The server encountered a temporary error and could not complete your request.<p>Please try again in 30 seconds.",
        ),
        503 => rpc("UNAVAILABLE", "The service is currently unavailable."),
        504 => rpc("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
        _ => rpc("UNKNOWN", "Injected fault."),
    }
}

/// The token endpoint's error body: `{"error": …, "error_description": …}`.
pub(super) fn oauth_error(status: u16, error: &str, description: Option<&str>) -> Response {
    let body = match description {
        Some(d) => json!({ "error": error, "error_description": d }),
        None => json!({ "error": error }),
    };
    json_response(status, &body)
}

pub(super) fn quota_error(write: bool, limit: u32) -> Response {
    let (what, metric) = if write { ("Write", "write") } else { ("Read", "read") };
    let message = format!(
        "Quota exceeded for quota metric '{what} requests' and limit '{what} requests per minute \
         per user' of service 'sheets.googleapis.com' for consumer 'project_number:{PROJECT_NUMBER}'."
    );
    error_info(
        (429, "RESOURCE_EXHAUSTED", &message),
        "RATE_LIMIT_EXCEEDED",
        json!({
            "quota_metric": format!("sheets.googleapis.com/{metric}_requests"),
            "quota_limit": format!("{what}RequestsPerMinutePerUser"),
            "quota_limit_value": limit.to_string(),
            "quota_location": "global",
            "service": "sheets.googleapis.com",
            "consumer": format!("projects/{PROJECT_NUMBER}"),
        }),
        (
            "Request a higher quota limit.",
            "https://cloud.google.com/docs/quotas/help/request_increase",
        ),
    )
}

pub(super) fn service_disabled() -> Response {
    let url = format!(
        "https://console.developers.google.com/apis/api/sheets.googleapis.com/overview?project={PROJECT_NUMBER}"
    );
    let message = format!(
        "Google Sheets API has not been used in project {PROJECT_NUMBER} before or it is \
         disabled. Enable it by visiting {url} then retry."
    );
    error_info(
        (403, "PERMISSION_DENIED", &message),
        "SERVICE_DISABLED",
        json!({
            "service": "sheets.googleapis.com",
            "consumer": format!("projects/{PROJECT_NUMBER}"),
            "activationUrl": url,
            "serviceTitle": "Google Sheets API",
        }),
        ("Google developers console API activation", &url),
    )
}

/// Google's front-end error page (what real 404s and 502s look like).
pub(super) fn html_page(status: u16, title: &str, text: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>{title}</title>\n  \
         <p><b>{status}.</b> <ins>That’s an error.</ins>\n  <p>{text}  <ins>That’s all we know.</ins>\n"
    );
    Response::new(status, "text/html; charset=UTF-8", body)
}
