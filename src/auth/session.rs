//! What one connection may write: the decision the connection thread asks for at each
//! greeting and each reading, without any I/O.
//!
//! - No tokens file: every line is accepted, as before (the [`Gate`] is open).
//! - `auth.required = true` (the default with a tokens file): a reading before a
//!   successful `HELLO <device> token=<token>` gets `ERR auth-required` and the
//!   connection is closed; so does a greeting without a token. A wrong token gets
//!   `ERR bad-token` and the connection is closed; the failure counts against the
//!   source address ([`super::backoff`]), which while backing off gets
//!   `ERR auth-backoff <secs>`.
//! - Once authenticated, the connection writes only as its device: a reading naming
//!   another device is refused with `ERR <seq|-> device-mismatch` (counted, connection
//!   kept); a greeting naming another device without that device's token closes it.
//! - `auth.required = false` with a tokens file: tokens are checked when given (a wrong
//!   one still closes the connection), and connections without one write as before.
//!
//! Tokens are never logged: refusals name the peer and the device only.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::backoff::{Brake, LogNote};
use super::settings::BackoffConfig;
use super::tokens::TokenStore;

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AuthRequired,
    BadToken,
    /// The source address is backing off for this many more seconds.
    Backoff(u64),
    DeviceMismatch,
}

impl Refusal {
    /// Whether the connection is closed after the reply.
    pub fn closes(self) -> bool {
        !matches!(self, Refusal::DeviceMismatch)
    }

    /// The reply line. A refused reading carries its seq (or `-`), like every per-line error.
    pub fn reply(self, seq: Option<u64>) -> String {
        match self {
            Refusal::AuthRequired => "ERR auth-required\n".into(),
            Refusal::BadToken => "ERR bad-token\n".into(),
            Refusal::Backoff(secs) => format!("ERR auth-backoff {secs}\n"),
            Refusal::DeviceMismatch => match seq {
                Some(s) => format!("ERR {s} device-mismatch\n"),
                None => "ERR - device-mismatch\n".into(),
            },
        }
    }
}

/// Refusal counters, for the log.
#[derive(Debug, Default)]
pub struct AuthCounters {
    pub auth_required: AtomicU64,
    pub bad_tokens: AtomicU64,
    pub backoffs: AtomicU64,
    pub device_mismatches: AtomicU64,
    pub authenticated: AtomicU64,
}

/// The daemon-wide auth policy, shared by every connection thread.
pub struct Gate {
    store: Option<Arc<TokenStore>>,
    required: bool,
    brake: Brake,
    pub counters: AuthCounters,
}

/// One connection's auth state.
#[derive(Debug, Default)]
pub struct AuthSession {
    /// The device this connection proved it is.
    device: Option<String>,
}

impl Gate {
    /// `store = None` is the open gate (no tokens file).
    pub fn new(store: Option<Arc<TokenStore>>, required: bool, backoff: BackoffConfig) -> Gate {
        Gate {
            required: required && store.is_some(),
            store,
            brake: Brake::new(backoff),
            counters: AuthCounters::default(),
        }
    }

    pub fn is_required(&self) -> bool {
        self.required
    }

    #[cfg(test)]
    pub fn is_open(&self) -> bool {
        self.store.is_none()
    }

    /// A greeting `HELLO <device> [token=<token>]` from `peer`.
    pub fn hello(&self, s: &mut AuthSession, peer: IpAddr, device: &str, token: Option<&str>) -> Result<(), Refusal> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let Some(token) = token else {
            return match s.device.as_deref() {
                Some(d) if d == device => Ok(()),
                Some(_) => Err(self.count(Refusal::DeviceMismatch)),
                None if self.required => Err(self.count(Refusal::AuthRequired)),
                None => Ok(()),
            };
        };
        let now = Instant::now();
        if let Some((left, note)) = self.brake.blocked(peer, now) {
            let secs = left.as_secs_f64().ceil() as u64;
            if let Some(n) = note {
                log_refusals(peer, n);
            }
            return Err(self.count(Refusal::Backoff(secs.max(1))));
        }
        if store.verify(device, token) {
            self.brake.success(peer);
            s.device = Some(device.to_string());
            self.counters.authenticated.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if let Some(n) = self.brake.failure(peer, now) {
            log::warn!(
                "Refused a wrong or unknown token for device {device:?} from {peer} ({} refusals from this address since its last such line{}).",
                n.refusals,
                if n.blocked_for.is_zero() {
                    String::new()
                } else {
                    format!("; it must wait {} s before trying again", n.blocked_for.as_secs())
                }
            );
        }
        Err(self.count(Refusal::BadToken))
    }

    /// A reading, naming `device` (or not); the connection's greeting named
    /// `hello_device`.
    pub fn reading(&self, s: &AuthSession, device: Option<&str>) -> Result<(), Refusal> {
        if self.store.is_none() {
            return Ok(());
        }
        match (s.device.as_deref(), device) {
            (Some(me), Some(d)) if me != d => Err(self.count(Refusal::DeviceMismatch)),
            (Some(_), _) => Ok(()),
            (None, _) if self.required => Err(self.count(Refusal::AuthRequired)),
            (None, _) => Ok(()),
        }
    }

    fn count(&self, r: Refusal) -> Refusal {
        let c = &self.counters;
        let counter = match r {
            Refusal::AuthRequired => &c.auth_required,
            Refusal::BadToken => &c.bad_tokens,
            Refusal::Backoff(_) => &c.backoffs,
            Refusal::DeviceMismatch => &c.device_mismatches,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        r
    }

    /// A one-line account of the refusals so far, or `None` if there were none.
    pub fn summary(&self) -> Option<String> {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (req, bad, back, mis) = (
            get(&c.auth_required),
            get(&c.bad_tokens),
            get(&c.backoffs),
            get(&c.device_mismatches),
        );
        (req + bad + back + mis > 0).then(|| {
            format!(
                "Refused {req} unauthenticated connections, {bad} wrong tokens, {back} attempts during backoff and {mis} readings naming another device."
            )
        })
    }
}

fn log_refusals(peer: IpAddr, n: LogNote) {
    log::warn!(
        "Refused {} authentication attempts from {peer} while it backs off after repeated wrong tokens.",
        n.refusals
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::tokens::{hash, Entry, Tokens};
    use std::time::Duration;

    fn gate(required: bool) -> (Gate, std::path::PathBuf) {
        // A directory per call: tests run in parallel and each removes its directory.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = crate::scratch_dir(&format!("gate-{}-{n}", u8::from(required)));
        let path = dir.join("tokens");
        Tokens {
            entries: vec![Entry {
                device: "kitchen".into(),
                hash: hash("good"),
                created: String::new(),
            }],
        }
        .save(&path)
        .unwrap();
        let store = TokenStore::open(&path).unwrap();
        let cfg = BackoffConfig {
            failures_before_backoff: 2,
            max_backoff: Duration::from_secs(60),
            tracked_addresses: 100,
        };
        (Gate::new(Some(store), required, cfg), dir)
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn required_auth() {
        let (g, dir) = gate(true);
        let mut s = AuthSession::default();
        assert_eq!(g.reading(&s, Some("kitchen")), Err(Refusal::AuthRequired));
        assert_eq!(g.hello(&mut s, IP, "kitchen", None), Err(Refusal::AuthRequired));
        assert_eq!(g.hello(&mut s, IP, "kitchen", Some("bad")), Err(Refusal::BadToken));
        assert_eq!(g.hello(&mut s, IP, "garage", Some("good")), Err(Refusal::BadToken));
        assert_eq!(g.hello(&mut s, IP, "kitchen", Some("good")), Ok(()));
        assert_eq!(g.reading(&s, Some("kitchen")), Ok(()));
        assert_eq!(g.reading(&s, None), Ok(()));
        assert_eq!(g.reading(&s, Some("garage")), Err(Refusal::DeviceMismatch));
        assert_eq!(g.hello(&mut s, IP, "kitchen", None), Ok(()), "a repeated greeting");
        assert_eq!(g.hello(&mut s, IP, "garage", None), Err(Refusal::DeviceMismatch));
        assert!(g.summary().unwrap().contains("2 wrong tokens"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn brute_force_backs_off() {
        let (g, dir) = gate(true);
        let mut s = AuthSession::default();
        for _ in 0..3 {
            assert_eq!(g.hello(&mut s, IP, "kitchen", Some("guess")), Err(Refusal::BadToken));
        }
        // Even the right token is not looked at while the address backs off.
        assert_eq!(g.hello(&mut s, IP, "kitchen", Some("good")), Err(Refusal::Backoff(1)));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn optional_auth_and_open_gate() {
        let (g, dir) = gate(false);
        let mut s = AuthSession::default();
        assert_eq!(g.reading(&s, Some("anyone")), Ok(()));
        assert_eq!(g.hello(&mut s, IP, "kitchen", Some("bad")), Err(Refusal::BadToken));
        let _ = std::fs::remove_dir_all(dir);
        let open = Gate::new(
            None,
            true,
            BackoffConfig {
                failures_before_backoff: 1,
                max_backoff: Duration::from_secs(1),
                tracked_addresses: 1,
            },
        );
        assert!(open.is_open());
        assert_eq!(open.reading(&AuthSession::default(), Some("x")), Ok(()));
    }
}
