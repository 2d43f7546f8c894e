//! Which failures to retry, how soon, and how fast requests may go at all.
//!
//! Google's guidance (Sheets API limits page): on 429 and 5xx, truncated exponential
//! backoff `min(2^n s + random ≤ 1 s, 64 s)`; honour `Retry-After` when given. A 401
//! means the token is stale: fetch a new one and retry at once. 400/403/404 will not fix
//! themselves (a wrong id, a sheet not shared, the API not enabled), so they are logged
//! with Google's message and retried on a slow schedule; rows are never dropped. A
//! transport failure (reset, timeout) is retried like a 5xx: every write the uploader
//! sends is idempotent, so "maybe applied" is harmless.
//!
//! The [`Pacer`] spaces requests evenly, `60 s / requests_per_minute` apart, so that no
//! 60-second window can hold more than the budget.

use std::time::{Duration, Instant};

use super::client::ApiError;

/// The longest backoff between two attempts (the backoff itself is
/// [`crate::sink::follower::Backoff`]).
pub const MAX_BACKOFF: Duration = Duration::from_secs(64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// 429, 5xx, no answer: back off exponentially and retry.
    Transient,
    /// 401: get a new token and retry.
    Unauthorized,
    /// 400, 403, 404 and other 4xx: needs the operator; retry slowly.
    NeedsOperator,
}

pub fn classify(e: &ApiError) -> Class {
    match e {
        ApiError::Transport(_) => Class::Transient,
        ApiError::Decode(_) => Class::Transient,
        ApiError::Status { code: 401, .. } => Class::Unauthorized,
        ApiError::Status { code, .. } if *code == 429 || *code == 408 || *code >= 500 => Class::Transient,
        ApiError::Status { .. } => Class::NeedsOperator,
    }
}

/// Spaces requests `60 s / budget` apart.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Instant,
}

impl Pacer {
    pub fn new(requests_per_minute: u32) -> Pacer {
        Pacer {
            interval: Duration::from_secs(60) / requests_per_minute.max(1),
            next: Instant::now(),
        }
    }

    /// How long to wait before the next request may go (zero if it may go now).
    pub fn delay(&self) -> Duration {
        self.next.saturating_duration_since(Instant::now())
    }

    /// Records that a request goes now.
    pub fn sent(&mut self) {
        self.next = Instant::now().max(self.next) + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> ApiError {
        ApiError::Status {
            code,
            status: String::new(),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(classify(&status(429)), Class::Transient);
        assert_eq!(classify(&status(503)), Class::Transient);
        assert_eq!(classify(&status(401)), Class::Unauthorized);
        assert_eq!(classify(&status(403)), Class::NeedsOperator);
        assert_eq!(classify(&status(400)), Class::NeedsOperator);
        assert_eq!(classify(&ApiError::Transport("reset".into())), Class::Transient);
    }

    #[test]
    fn pacer_spaces_requests() {
        let mut p = Pacer::new(60);
        assert_eq!(p.delay(), Duration::ZERO);
        p.sent();
        assert!(p.delay() > Duration::from_millis(900));
    }
}
