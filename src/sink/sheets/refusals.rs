//! Never silent (issue 18): every request Google refuses is logged with Google's own
//! message, WARN, one line per cause per minute with the number of refusals folded into
//! it, and counted by reason for `/metrics` (`sensorlog_sheets_refused_requests`).
//!
//! A refusal is an answer that says the request was not applied: 400, 403, 404, 413,
//! 429 and the other 4xx except 401 (a stale token, renewed at once and not a refusal).
//! 5xx and lost replies are not refusals (the request may have been applied); the
//! uploader's outage lines report those. [`explain`] turns a refusal into what to do
//! about it (shared with `sensorlog sheets check`).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use std::time::Duration;

use crate::ratelog::ByCause;
use crate::stats::Stats;

use super::client::ApiError;
use super::oauth::trim_period;

/// One line per cause per this long.
pub const EVERY: Duration = Duration::from_secs(60);
/// Causes remembered apart (more share one line).
const MAX_CAUSES: usize = 64;

fn limiter() -> &'static ByCause {
    static LIMITER: OnceLock<ByCause> = OnceLock::new();
    LIMITER.get_or_init(|| ByCause::new(EVERY, MAX_CAUSES))
}

/// The `reason` label of a refusal, or `None` when `e` is not one.
pub fn reason(e: &ApiError) -> Option<&'static str> {
    match e {
        ApiError::Status { code: 429, .. } => Some("quota"),
        ApiError::Status { code: 400 | 413, .. } => Some("invalid"),
        ApiError::Status { code: 403, .. } => Some("permission"),
        ApiError::Status { code: 404, .. } => Some("not_found"),
        ApiError::Status { code, .. } if (400..500).contains(code) && *code != 401 => Some("other"),
        _ => None,
    }
}

/// The cause a refusal is counted under: its status and Google's message with the
/// numbers taken out (so "row 1041" and "row 1042" are one cause).
fn cause(e: &ApiError) -> String {
    let text = e.to_string();
    let code = match e {
        ApiError::Status { code, .. } => *code,
        _ => 0,
    };
    let mut out = format!("{code} ");
    for c in text.chars().take(160) {
        if c.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts and logs `e` if Google refused the request (`what` names the request).
pub fn note(stats: &Stats, e: &ApiError, what: &str) {
    let Some(reason) = reason(e) else { return };
    let counter = match reason {
        "quota" => &stats.sheets_refused_quota,
        "invalid" => &stats.sheets_refused_invalid,
        "permission" => &stats.sheets_refused_permission,
        "not_found" => &stats.sheets_refused_not_found,
        _ => &stats.sheets_refused_other,
    };
    counter.fetch_add(1, Relaxed);
    let message = super::oauth::trim_period(&e.to_string()).to_string();
    limiter().log(&cause(e), |n| {
        let more = if n > 1 {
            format!(" ({n} refusals of this kind since the last line)")
        } else {
            String::new()
        };
        log::warn!("Google Sheets refused {what}: {message}{more}. The uploader retries or works around it; the CSV keeps every reading.");
    });
}

/// Runs `f` (a log line) at most once a minute per `cause`.
pub fn log_once_a_minute(cause: &str, f: impl FnOnce()) {
    limiter().log(&format!("\u{0}{cause}"), |_| f());
}

/// A 4xx turned into what to do about it (no final period: it is embedded in a sentence).
pub fn explain(e: &ApiError, spreadsheet_id: &str, email: &str) -> String {
    let ApiError::Status {
        code, status, message, ..
    } = e
    else {
        return e.to_string();
    };
    let message = trim_period(message);
    match (*code, status.as_str()) {
        (404, _) => format!("spreadsheet {spreadsheet_id} not found (check sheets.spreadsheet): {message}"),
        (403, "SERVICE_DISABLED") => {
            format!(
                "the Google Sheets API is not enabled for the key's project; enable it in the Cloud console: {message}"
            )
        }
        (403, _) => format!(
            "spreadsheet {spreadsheet_id} is not shared with {email}: share it with that e-mail as Editor ({message})"
        ),
        _ => format!("Google rejected a request: HTTP {code} {status}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> ApiError {
        ApiError::Status {
            code,
            status: "X".into(),
            message: message.into(),
            retry_after: None,
        }
    }

    #[test]
    fn refusals_have_a_reason_and_numbers_do_not_split_causes() {
        assert_eq!(reason(&status(429, "quota")), Some("quota"));
        assert_eq!(reason(&status(400, "bad")), Some("invalid"));
        assert_eq!(reason(&status(401, "token")), None);
        assert_eq!(reason(&status(503, "down")), None);
        assert_eq!(reason(&ApiError::Transport("reset".into())), None);
        assert_eq!(
            cause(&status(400, "Range (a!A1041) exceeds grid limits")),
            cause(&status(400, "Range (a!A7) exceeds grid limits"))
        );
        assert_ne!(cause(&status(400, "one")), cause(&status(403, "one")));
    }
}
