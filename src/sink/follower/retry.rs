//! What a follower does when an attempt fails: sort it, wait, say so once, and say when
//! it is over.
//!
//! A failure is either *transient* (the network, a restart of the server, a quota: it
//! passes by itself; retried after a growing, capped backoff, at least as long as a
//! `Retry-After` the other side sent) or needs the *operator* (a privilege, a refused key,
//! a cursor another daemon moved: retried on the slow schedule, logged as ERROR every
//! time). Rows are never dropped: they wait in the CSV. An outage is logged once at its
//! start (WARN), again now and then while it lasts, and ends with one INFO line with its
//! length ([`Retry::recovered`]).

use std::time::{Duration, Instant};

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Passes by itself: back off and retry.
    Transient,
    /// Needs the operator: log an ERROR and retry on the slow schedule.
    Operator,
}

/// A failed attempt as the follower needs it: its class, what to log (no final
/// period), and the wait the other side asked for, if any.
#[derive(Debug)]
pub struct Failure {
    pub class: Class,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure {
            class: Class::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn operator(message: impl Into<String>) -> Failure {
        Failure {
            class: Class::Operator,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// Truncated exponential backoff, `first * 2^n` up to `max`, with up to `jitter` added
/// (never past `max`).
#[derive(Debug)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    jitter: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration, jitter: Duration) -> Backoff {
        Backoff {
            first,
            max,
            jitter,
            attempt: 0,
        }
    }

    /// The wait before the next attempt; at least `retry_after` when one was given.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let exp = self.first.saturating_mul(1 << self.attempt.min(20));
        self.attempt = self.attempt.saturating_add(1);
        let wait = (exp + random_up_to(self.jitter)).min(self.max);
        retry_after.map_or(wait, |r| r.max(wait))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A random duration in `0..max` (whole milliseconds), from the system's generator.
fn random_up_to(max: Duration) -> Duration {
    use ring::rand::SecureRandom;
    let ms = max.as_millis() as u64;
    if ms == 0 {
        return Duration::ZERO;
    }
    let mut bytes = [0u8; 8];
    // Jitter only spreads retries out: without randomness, none.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return Duration::ZERO;
    }
    Duration::from_millis(u64::from_le_bytes(bytes) % ms)
}

/// How the follower's log lines name a sink.
#[derive(Debug, Clone, Copy)]
pub struct Wording {
    /// The other side: "PostgreSQL", "Google Sheets".
    pub remote: &'static str,
    /// The sink itself: "the PostgreSQL sink", "the Sheets uploader".
    pub sink: &'static str,
    /// Where stored rows are: "the database", "the sheet".
    pub store: &'static str,
    /// The key of its shutdown time: "postgres.shutdown_timeout_secs".
    pub grace_key: &'static str,
}

impl Wording {
    pub const fn new(
        remote: &'static str,
        sink: &'static str,
        store: &'static str,
        grace_key: &'static str,
    ) -> Wording {
        Wording {
            remote,
            sink,
            store,
            grace_key,
        }
    }
}

/// A follower's retry state: its backoff, its slow schedule, and the outage in progress.
#[derive(Debug)]
pub struct Retry {
    /// How the log names the sink.
    wording: Wording,
    backoff: Backoff,
    operator_wait: Duration,
    /// Since when, and how many attempts have failed in a row.
    outage: Option<(Instant, u32)>,
}

/// How a failure is to be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Needs the operator: ERROR, every time.
    Error,
    /// The start of an outage, or a reminder after a minute of it: WARN.
    Warn,
    /// A repeat of a transient failure: DEBUG.
    Debug,
}

impl Retry {
    pub fn new(wording: Wording, backoff: Backoff, operator_wait: Duration) -> Retry {
        Retry {
            wording,
            backoff,
            operator_wait,
            outage: None,
        }
    }

    pub fn wording(&self) -> Wording {
        self.wording
    }

    /// Records a failure: how long to wait before the next attempt, and how to log it.
    pub fn failed(&mut self, failure: &Failure) -> (Duration, Report) {
        let (since, attempts) = self.outage.get_or_insert((Instant::now(), 0));
        *attempts += 1;
        let (since, attempts) = (*since, *attempts);
        match failure.class {
            Class::Operator => (self.operator_wait, Report::Error),
            Class::Transient => {
                let wait = self.backoff.next(failure.retry_after);
                let remind = since.elapsed() > Duration::from_secs(60) && attempts.is_multiple_of(5);
                (
                    wait,
                    if attempts == 1 || remind {
                        Report::Warn
                    } else {
                        Report::Debug
                    },
                )
            }
        }
    }

    /// An attempt succeeded: ends an outage with one INFO line with its length.
    pub fn recovered(&mut self) {
        if let Some((since, attempts)) = self.outage.take() {
            let secs = since.elapsed().as_secs_f64();
            log::info!(
                "{} reachable again after {} ({attempts} failed attempt{}); catching up from the CSV.",
                self.wording.remote,
                if secs < 10.0 {
                    format!("{secs:.1} s")
                } else {
                    format!("{secs:.0} s")
                },
                if attempts == 1 { "" } else { "s" }
            );
        }
        self.backoff.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_is_capped_and_honours_retry_after() {
        let max = Duration::from_secs(64);
        let mut b = Backoff::new(Duration::from_secs(1), max, Duration::from_secs(1));
        let waits: Vec<Duration> = (0..10).map(|_| b.next(None)).collect();
        for (n, w) in waits.iter().enumerate() {
            let base = Duration::from_secs(1 << n.min(6));
            assert!(
                *w >= base.min(max) && *w <= (base + Duration::from_secs(1)).min(max),
                "{n}: {w:?}"
            );
        }
        b.reset();
        assert!(b.next(Some(Duration::from_secs(30))) >= Duration::from_secs(30));
        // Without jitter: exactly doubling from the first wait, then the cap.
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(1), Duration::ZERO);
        let waits: Vec<u128> = (0..4).map(|_| b.next(None).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 1000]);
    }

    #[test]
    fn an_outage_warns_once_and_an_operator_failure_every_time() {
        let mut r = Retry::new(
            Wording::new("Test", "the test sink", "the test", "test.shutdown_timeout_secs"),
            Backoff::new(Duration::from_millis(1), Duration::from_millis(8), Duration::ZERO),
            Duration::from_secs(60),
        );
        let t = Failure::transient("down");
        assert_eq!(r.failed(&t), (Duration::from_millis(1), Report::Warn));
        assert_eq!(r.failed(&t), (Duration::from_millis(2), Report::Debug));
        assert_eq!(
            r.failed(&Failure::operator("no")),
            (Duration::from_secs(60), Report::Error)
        );
        assert_eq!(r.failed(&Failure::operator("no")).1, Report::Error);
        r.recovered();
        assert_eq!(r.failed(&t), (Duration::from_millis(1), Report::Warn), "a new outage");
    }
}
