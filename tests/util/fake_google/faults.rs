//! Fault injection: which requests a queued fault hits and what it answers, as real
//! Google's front end does (429, 5xx, an HTML 502, a dropped connection, a slow reply).
use super::*;

/// Which requests a queued [`Fault`] applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matching {
    /// Any Sheets request (not token requests).
    Any,
    /// Both POST endpoints.
    Writes,
    /// One Sheets endpoint.
    Only(RequestKind),
    /// The token endpoint.
    Token,
}

impl Matching {
    pub(super) fn matches(self, kind: RequestKind) -> bool {
        match self {
            Matching::Any => kind.is_sheets(),
            Matching::Writes => kind.is_write(),
            Matching::Only(k) => k == kind && kind.is_sheets(),
            Matching::Token => kind == RequestKind::Token,
        }
    }
}

/// A fault that real Google's front end produces, queued with [`FakeGoogle::inject`].
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer at once with this status and Google's body for it (`status_error`), applying
    /// nothing; `Retry-After` if given. At the
    /// token endpoint (notes §1.7): 500 is an HTML page (yup-oauth2 reports a JSON error),
    /// 503 `{"error":"internal_failure"}` (yup-oauth2: `AuthError` `Other`); no other code.
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
    /// Token requests only: the token issued gets this lifetime in seconds, in
    /// `expires_in` and server-side.
    ShortTokenLifetime(u64),
}

impl Fault {
    /// `Fault::Status` without `Retry-After`.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after_secs: None,
        }
    }

    /// What this fault answers on the endpoint `matching` names, applying nothing:
    /// `Some(None)` closes the connection without a response; `None` lets the request go on.
    ///
    /// # Panics
    /// On a fault the matched endpoint cannot produce (a bug in the test).
    pub(super) fn answer(&self, matching: Matching) -> Option<Option<Response>> {
        let token = matching == Matching::Token;
        let response = match self {
            Fault::Status { code: 500, .. } if token => html_page(
                500,
                "Error 500 (Server Error)!!1",
                "There was an error. Please try again later.",
            ),
            Fault::Status { code: 503, .. } if token => oauth_error(503, "internal_failure", None),
            Fault::Status { code, retry_after_secs } if !token => {
                let mut response = status_error(*code);
                if let Some(secs) = retry_after_secs {
                    response.headers.push(("Retry-After", secs.to_string()));
                }
                response
            }
            Fault::Raw {
                code,
                content_type,
                body,
            } => Response::new(*code, content_type, body.clone()),
            Fault::DropBeforeApply => return Some(None),
            Fault::Delay(_) | Fault::ApplyThenDrop => return None,
            Fault::ShortTokenLifetime(_) if token => return None,
            fault => panic!("fake Google: {matching:?} requests cannot get the fault {fault:?}"),
        };
        Some(Some(response))
    }
}

/// One queued fault: which requests it hits, what it does, how many more times.
pub(super) struct QueuedFault {
    pub(super) matching: Matching,
    pub(super) fault: Fault,
    pub(super) remaining: u32,
}
