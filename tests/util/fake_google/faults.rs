//! Fault injection: which requests a queued fault hits and what it answers, as real
//! Google's front end does (429, 5xx, an HTML 502, a dropped connection, a slow reply).
use super::*;

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
    pub(super) fn matches(self, kind: RequestKind) -> bool {
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
    /// Answer at once with this status and Google's body for it, applying nothing: 429
    /// the quota body, 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED, 502 the HTML
    /// page of Google's front end (as real 502s are). `Retry-After` if given.
    Status { code: u16, retry_after_secs: Option<u64> },
    /// Apply the request, then close the connection without a response: the client
    /// cannot know whether it was applied.
    ApplyThenDrop,
    /// Read the request, then close the connection without applying it.
    DropBeforeApply,
    /// Wait this long (capped at 10 minutes), then process normally: a client timeout in
    /// that window makes the outcome ambiguous, as with real Google.
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

/// What a queued fault does to the request that takes it.
#[derive(Clone)]
pub(super) enum Effect {
    /// Answer at once with this (or close without an answer: `None`), applying nothing.
    Answer(Option<Response>),
    /// Wait this long, then go on.
    Delay(Duration),
    /// Go on (apply), then close without the answer.
    ApplyThenDrop,
    /// Go on; the token issued gets this lifetime in seconds.
    ShortLifetime(u64),
}

/// One queue holds both kinds of fault: each entry says which requests it hits (`None`:
/// token requests), what it does, and how many more times.
pub(super) struct QueuedFault {
    pub(super) matching: Option<Matching>,
    /// For the request log.
    pub(super) note: String,
    pub(super) effect: Effect,
    pub(super) remaining: u32,
}

impl QueuedFault {
    pub(super) fn sheets(fault: Fault, matching: Matching, times: u32) -> QueuedFault {
        let note = format!("fault {fault:?}");
        let effect = match fault {
            Fault::Status { code, retry_after_secs } => Effect::Answer(Some(fault_response(code, retry_after_secs))),
            Fault::Raw {
                code,
                content_type,
                body,
            } => Effect::Answer(Some(Response::new(code, &content_type, body))),
            Fault::DropBeforeApply => Effect::Answer(None),
            Fault::Delay(d) => Effect::Delay(d),
            Fault::ApplyThenDrop => Effect::ApplyThenDrop,
        };
        QueuedFault {
            matching: Some(matching),
            note,
            effect,
            remaining: times,
        }
    }

    pub(super) fn token(fault: TokenFault, times: u32) -> QueuedFault {
        let note = format!("token fault {fault:?}");
        let effect = match fault {
            TokenFault::ServerErrorHtml => Effect::Answer(Some(html_page(
                500,
                "Error 500 (Server Error)!!1",
                "There was an error. Please try again later.",
            ))),
            TokenFault::Unavailable => Effect::Answer(Some(oauth_error(503, "internal_failure", None))),
            TokenFault::Drop => Effect::Answer(None),
            TokenFault::Delay(d) => Effect::Delay(d),
            TokenFault::ShortLifetime(secs) => Effect::ShortLifetime(secs),
        };
        QueuedFault {
            matching: None,
            note,
            effect,
            remaining: times,
        }
    }

    pub(super) fn hits(&self, kind: RequestKind) -> bool {
        self.matching.map_or(kind == RequestKind::Token, |m| m.matches(kind))
    }
}

/// The body real Google sends with an injected status.
pub(super) fn fault_response(code: u16, retry_after_secs: Option<u64>) -> Response {
    let mut response = match code {
        429 => quota_error(true, DEFAULT_QUOTA_PER_MINUTE),
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
