//! Log lines that cannot flood the log.
//!
//! An error that repeats with every write or every connection (a full disk, a flood of
//! refused boards) would otherwise print a line per event, hundreds per second, and
//! drown the one line an operator needs. Each limiter prints at most one line per
//! interval and passes the number of events since its last line, so nothing is hidden:
//! the count says how many were folded in.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a repeated cause may be logged.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(10);

/// One cause: logs at most once per interval.
#[derive(Debug)]
pub struct RateLimitedLog {
    every: Duration,
    count: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RateLimitedLog {
    pub fn new(every: Duration) -> RateLimitedLog {
        RateLimitedLog {
            every,
            count: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    /// Counts one event; calls `f` with the total so far if the interval has passed.
    /// Never waits: while another thread holds the limiter it is deciding for an event
    /// of the same moment, so this one is only counted (a flood calls this from every
    /// connection, and must not queue them up behind one lock).
    pub fn log(&self, f: impl FnOnce(u64)) {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = match self.last.try_lock() {
            Ok(last) => last,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        if last.is_none_or(|t| t.elapsed() >= self.every) {
            *last = Some(Instant::now());
            f(n);
        }
    }
}

/// Limiters keyed by cause (an error kind, a peer address): one line per cause per
/// interval, with the number of events folded into it since the previous line. The
/// number of causes remembered is capped; past the cap, new causes share one
/// limiter, so a stream of distinct causes (every peer of a flood) stays bounded too.
pub struct ByCause {
    every: Duration,
    max_causes: usize,
    causes: Mutex<HashMap<String, (Option<Instant>, u64)>>,
}

const OVERFLOW: &str = "\u{0}other";

impl ByCause {
    pub fn new(every: Duration, max_causes: usize) -> ByCause {
        ByCause {
            every,
            max_causes: max_causes.max(1),
            causes: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one event of `cause`; calls `f(events_since_last_line)` when this cause
    /// has not been logged for the interval.
    pub fn log(&self, cause: &str, f: impl FnOnce(u64)) {
        let mut causes = self.causes.lock().unwrap_or_else(|p| p.into_inner());
        if !causes.contains_key(cause) && causes.len() >= self.max_causes {
            // Forget causes that have been quiet for an interval before sharing a slot.
            let every = self.every;
            causes.retain(|_, (last, n)| *n > 0 || last.is_some_and(|t| t.elapsed() < every));
        }
        let key = if causes.contains_key(cause) || causes.len() < self.max_causes {
            cause
        } else {
            OVERFLOW
        };
        let entry = causes.entry(key.to_string()).or_insert((None, 0));
        entry.1 += 1;
        if entry.0.is_none_or(|t| t.elapsed() >= self.every) {
            let n = std::mem::take(&mut entry.1);
            entry.0 = Some(Instant::now());
            drop(causes);
            f(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_none_while_the_limiter_is_held() {
        let limiter = RateLimitedLog::new(Duration::from_secs(3600));
        let mut lines = Vec::new();
        limiter.log(|n| lines.push(n));
        limiter.log(|n| lines.push(n));
        assert_eq!(lines, [1], "one line per interval");
        let limiter = RateLimitedLog::new(Duration::ZERO);
        let held = limiter.last.lock().unwrap();
        limiter.log(|n| lines.push(n));
        drop(held);
        limiter.log(|n| lines.push(n));
        assert_eq!(lines, [1, 2], "counted while held, logged with the count after");
    }

    #[test]
    fn one_line_per_cause_per_interval_with_the_count() {
        let limiter = ByCause::new(Duration::from_secs(3600), 4);
        let mut lines = Vec::new();
        for i in 0..100 {
            let cause = if i % 2 == 0 { "disk full" } else { "permission denied" };
            limiter.log(cause, |n| lines.push((cause, n)));
        }
        assert_eq!(lines, [("disk full", 1), ("permission denied", 1)]);
    }

    #[test]
    fn the_count_covers_the_events_folded_in() {
        let limiter = ByCause::new(Duration::from_millis(0), 4);
        let mut total = 0;
        for _ in 0..10 {
            limiter.log("x", |n| total += n);
        }
        assert_eq!(total, 10);
    }

    #[test]
    fn distinct_causes_stay_bounded() {
        let limiter = ByCause::new(Duration::from_secs(3600), 8);
        let mut lines = 0;
        for i in 0..10_000 {
            limiter.log(&format!("peer {i}"), |_| lines += 1);
        }
        assert!(limiter.causes.lock().unwrap().len() <= 9);
        assert_eq!(lines, 9, "8 causes and the shared overflow slot");
    }
}
