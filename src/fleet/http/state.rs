//! What every HTTP handler reads: the shared state and the dashboard's board cap.
//! Below the server (`mod.rs`) and the handlers (`api`, `metrics`), so that neither
//! imports the other for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::fleet::boards::Boards;
use crate::fleet::http::settings::HttpConfig;
use crate::sink::csv::CsvSink;
use crate::stats::Stats;

/// Most boards the dashboard and `/events` show (sorted by name); `/api/boards` has all.
pub const DASHBOARD_MAX_BOARDS: usize = 1000;

/// Responses built from a snapshot of every board (`/metrics`, `/api/boards`) at once.
/// `/api/boards?series=1` of 10,000 boards with full charts is hundreds of MB, built under
/// the boards' lock that ingest takes too: two at a time (one per CPU of a small machine,
/// as many as the tiny_http server it replaced had workers) bound both, however many clients
/// `http.max_connections` lets in.
pub const RESPONSE_BUILDERS: usize = 2;

/// A counting semaphore of [`RESPONSE_BUILDERS`] places.
#[derive(Default)]
pub struct Builders {
    busy: Mutex<usize>,
    freed: Condvar,
}

/// One of the [`Builders`]' places; given back on drop.
pub struct Builder<'a>(&'a Builders);

impl Builders {
    /// A place, waiting up to `wait` for one; `None` if all stayed busy.
    pub fn acquire(&self, wait: Duration) -> Option<Builder<'_>> {
        let busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        let (mut busy, _) = self
            .freed
            .wait_timeout_while(busy, wait, |n| *n >= RESPONSE_BUILDERS)
            .unwrap_or_else(|p| p.into_inner());
        if *busy >= RESPONSE_BUILDERS {
            return None;
        }
        *busy += 1;
        Some(Builder(self))
    }
}

impl Drop for Builder<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        self.0.freed.notify_one();
    }
}

/// What the handlers read. Everything is shared with ingest only through atomics and
/// the boards' mutex.
pub struct HttpState {
    pub boards: Arc<Boards>,
    pub stats: Arc<Stats>,
    pub sink: Arc<CsvSink>,
    pub csv_path: PathBuf,
    pub sheets: bool,
    /// `[http]`: the event-stream cap, the `/metrics` board cap, the readiness stall.
    pub config: HttpConfig,
    pub started_unix_ms: u64,
    /// CSV (rows, bytes) when the daemon started.
    pub csv_at_start: (u64, u64),
    pub event_clients: Arc<AtomicUsize>,
    /// Connections answered 503 because `http.max_connections` were open.
    pub refused_connections: Arc<AtomicU64>,
    /// The places for building `/metrics` and `/api/boards`.
    pub builders: Builders,
    /// The last `/events` payload and when it was built: every open dashboard shares one
    /// snapshot per `EVENT_PERIOD`, so ten tabs cost the boards' lock no more than one.
    pub event_cache: std::sync::Mutex<Option<(Instant, Arc<String>)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_give_out_two_places_and_a_waiter_gets_the_first_given_back() {
        let b = Arc::new(Builders::default());
        let first = b.acquire(Duration::ZERO).expect("a first place");
        let _second = b.acquire(Duration::ZERO).expect("a second place");
        assert!(b.acquire(Duration::from_millis(20)).is_none(), "a third place");
        let waiter = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.acquire(Duration::from_secs(10)).is_some())
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        assert!(waiter.join().unwrap(), "the waiter got the place given back");
    }
}
