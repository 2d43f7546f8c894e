//! What every HTTP handler reads: the shared state and the dashboard's board cap.
//! Below the server (`mod.rs`) and the handlers (`api`, `metrics`), so that neither
//! imports the other for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::Instant;

use crate::fleet::boards::Boards;
use crate::fleet::http::settings::HttpConfig;
use crate::sink::csv::CsvSink;
use crate::stats::Stats;

/// Most boards the dashboard and `/events` show (sorted by name); `/api/boards` has all.
pub const DASHBOARD_MAX_BOARDS: usize = 1000;

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
    pub event_clients: AtomicUsize,
    /// Connections answered 503 because `http.max_connections` were open.
    pub refused_connections: Arc<AtomicU64>,
    /// The last `/events` payload and when it was built: every open dashboard shares one
    /// snapshot per `EVENT_PERIOD`, so ten tabs cost the boards' lock no more than one.
    pub event_cache: std::sync::Mutex<Option<(Instant, Arc<String>)>>,
}
