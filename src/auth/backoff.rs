//! The brute-force brake: failed token checks counted per source address.
//!
//! The first `auth.failures_before_backoff` failures from an address cost nothing
//! (a board with a stale token retries; a person mistypes). After that each failure
//! blocks the address for twice as long as the one before, from 1 s up to
//! `auth.max_backoff_secs`; while blocked, greetings from it get `ERR auth-backoff <secs>`
//! without their token being looked at, so guessing is held to a trickle. A success
//! clears the address's record.
//!
//! State keyed by input is bounded: at most `auth.tracked_addresses` records; a record
//! is forgotten once its backoff has passed and it has been quiet for twice the maximum
//! backoff, and when the table is full the record quiet the longest is evicted. Log
//! lines are one per address per [`LOG_INTERVAL`], carrying the count since the last.
//!
//! Time is passed in (`now`), so the rules are unit-tested without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::settings::BackoffConfig;

/// At most one log line per address in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(60);
/// The first backoff; each further failure doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Record {
    failures: u32,
    blocked_until: Option<Instant>,
    last_event: Instant,
    last_log: Option<Instant>,
    /// Refusals (failures and blocked attempts) not yet reported in a log line.
    unlogged: u64,
}

/// What a failure or blocked attempt should log, when it is this address's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogNote {
    /// Refusals from the address since its last log line (including this one).
    pub refusals: u64,
    /// How long the address is now blocked for (zero if not blocked).
    pub blocked_for: Duration,
}

pub struct Brake {
    cfg: BackoffConfig,
    table: Mutex<HashMap<IpAddr, Record>>,
}

impl Brake {
    pub fn new(cfg: BackoffConfig) -> Brake {
        Brake {
            cfg,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Record>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// If `ip` is blocked: for how much longer, and (when due) a log note. The attempt
    /// is counted for the log but does not lengthen the backoff.
    pub fn blocked(&self, ip: IpAddr, now: Instant) -> Option<(Duration, Option<LogNote>)> {
        let mut table = self.lock();
        let r = table.get_mut(&ip)?;
        let left = r.blocked_until?.checked_duration_since(now).filter(|d| !d.is_zero())?;
        r.unlogged += 1;
        r.last_event = now;
        Some((left, Self::note(r, now, left)))
    }

    /// Records a failed check from `ip`; returns a log note when one is due.
    pub fn failure(&self, ip: IpAddr, now: Instant) -> Option<LogNote> {
        let mut table = self.lock();
        if !table.contains_key(&ip) && table.len() >= self.cfg.tracked_addresses {
            self.evict(&mut table, now);
        }
        let r = table.entry(ip).or_insert(Record {
            failures: 0,
            blocked_until: None,
            last_event: now,
            last_log: None,
            unlogged: 0,
        });
        r.failures = r.failures.saturating_add(1);
        r.unlogged += 1;
        r.last_event = now;
        let over = r.failures.saturating_sub(self.cfg.failures_before_backoff);
        let blocked_for = if over == 0 {
            Duration::ZERO
        } else {
            let doubled = FIRST_BACKOFF.saturating_mul(1u32 << (over - 1).min(30));
            doubled.min(self.cfg.max_backoff)
        };
        if !blocked_for.is_zero() {
            r.blocked_until = Some(now + blocked_for);
        }
        Self::note(r, now, blocked_for)
    }

    /// A successful check clears the address's record.
    pub fn success(&self, ip: IpAddr) {
        self.lock().remove(&ip);
    }

    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn note(r: &mut Record, now: Instant, blocked_for: Duration) -> Option<LogNote> {
        if r.last_log.is_some_and(|t| now.duration_since(t) < LOG_INTERVAL) {
            return None;
        }
        r.last_log = Some(now);
        let refusals = std::mem::take(&mut r.unlogged);
        Some(LogNote { refusals, blocked_for })
    }

    /// Frees room: drops expired records, else the one quiet the longest.
    fn evict(&self, table: &mut HashMap<IpAddr, Record>, now: Instant) {
        let keep_for = self.cfg.max_backoff.saturating_mul(2);
        table.retain(|_, r| r.blocked_until.is_some_and(|t| t > now) || now.duration_since(r.last_event) < keep_for);
        if table.len() >= self.cfg.tracked_addresses {
            if let Some(oldest) = table.iter().min_by_key(|(_, r)| r.last_event).map(|(ip, _)| *ip) {
                table.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brake(free: u32, tracked: usize) -> Brake {
        Brake::new(BackoffConfig {
            failures_before_backoff: free,
            max_backoff: Duration::from_secs(8),
            tracked_addresses: tracked,
        })
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn backoff_starts_after_n_failures_and_doubles_up_to_the_cap() {
        let b = brake(3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            b.failure(ip(1), t0);
            assert!(b.blocked(ip(1), t0).is_none(), "N failures are free");
        }
        b.failure(ip(1), t0); // N+1
        assert_eq!(b.blocked(ip(1), t0).unwrap().0, Duration::from_secs(1));
        let mut now = t0;
        for want in [2, 4, 8, 8] {
            now += Duration::from_secs(10);
            b.failure(ip(1), now);
            assert_eq!(b.blocked(ip(1), now).unwrap().0, Duration::from_secs(want));
        }
        assert!(
            b.blocked(ip(1), now + Duration::from_secs(9)).is_none(),
            "the backoff ends"
        );
        assert!(b.blocked(ip(2), now).is_none(), "other addresses are not affected");
        b.success(ip(1));
        assert_eq!(b.tracked(), 0);
    }

    #[test]
    fn one_log_line_per_address_per_interval_with_the_count() {
        let b = brake(0, 10);
        let t0 = Instant::now();
        assert_eq!(b.failure(ip(1), t0).unwrap().refusals, 1);
        for _ in 0..5 {
            assert!(b.failure(ip(1), t0 + Duration::from_secs(1)).is_none());
        }
        assert!(b.failure(ip(2), t0).is_some(), "another address logs on its own");
        let note = b.failure(ip(1), t0 + LOG_INTERVAL).unwrap();
        assert_eq!(note.refusals, 6);
    }

    #[test]
    fn the_table_is_bounded_at_n_addresses() {
        let b = brake(5, 3);
        let t0 = Instant::now();
        for n in 0..3 {
            b.failure(ip(n), t0 + Duration::from_secs(u64::from(n)));
        }
        assert_eq!(b.tracked(), 3);
        b.failure(ip(9), t0 + Duration::from_secs(5)); // N+1: the quietest (ip 0) goes
        assert_eq!(b.tracked(), 3);
        assert!(b.lock().get(&ip(0)).is_none());
    }
}
