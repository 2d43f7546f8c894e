//! Counters for the periodic summary, shared by all threads.
//!
//! Plain relaxed atomics: they are for people reading the log, never for control
//! flow. [`Stats::summary`] turns two snapshots into the info line an operator
//! reads once a minute.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Stats {
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    pub connections_refused: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub readings: AtomicU64,
    pub duplicates: AtomicU64,
    pub rows_written: AtomicU64,
    pub lines_too_long: AtomicU64,
    pub partial_lines: AtomicU64,
    pub line_timeouts: AtomicU64,
    pub bad_hellos: AtomicU64,
    pub json_too_deep: AtomicU64,
    /// Boards refused because their address already holds `server.max_connections_per_ip`.
    pub refused_per_ip: AtomicU64,
    /// Refused connections by reason and (real) address: dashboard and `/metrics`.
    pub refused: crate::server::refused::Refusals,
    /// `LOCAL`/`UNKNOWN` PROXY headers (health checks) that ended without data.
    pub proxy_health_checks: AtomicU64,
    /// Connections whose PROXY header gave the board's real address.
    pub proxied_connections: AtomicU64,
    /// Resends whose content differed from what was written under the same key.
    pub resend_conflicts: AtomicU64,
    pub write_failures: AtomicU64,
    pub rows_uploaded: AtomicU64,
    // For /metrics, /readyz and the dashboard (issue 13).
    /// CSV rows confirmed in the sheet (the uploader's cursor), once it is set up.
    pub sheets_rows_done: AtomicU64,
    /// Whether `sheets_rows_done` is known yet (the uploader has chosen its cursor).
    pub sheets_cursor_known: std::sync::atomic::AtomicBool,
    pub sheets_requests_ok: AtomicU64,
    pub sheets_requests_failed: AtomicU64,
    /// Sheets requests Google refused, by reason (issue 18; `sheets::refusals`).
    pub sheets_refused_quota: AtomicU64,
    pub sheets_refused_invalid: AtomicU64,
    pub sheets_refused_permission: AtomicU64,
    pub sheets_refused_not_found: AtomicU64,
    pub sheets_refused_other: AtomicU64,
    /// Unix milliseconds of the last batch Google confirmed; 0 = none in this run.
    pub sheets_last_upload_unix_ms: AtomicU64,
    /// Whether the last CSV append failed (cleared by the next successful one): `/readyz`.
    pub csv_last_append_failed: std::sync::atomic::AtomicBool,
    /// Time of each CSV append (lock, write, and the fsync under `csv.fsync = always`).
    pub csv_write_seconds: LatencyHistogram,
    /// Time of each interval fsync of the CSV.
    pub csv_fsync_seconds: LatencyHistogram,
}

/// A latency histogram for `/metrics` (the `prometheus-client` type; buckets from 10 µs
/// to about 10 s, ×2.5 apart). Cheap to observe: one short uncontended mutex.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(pub prometheus_client::metrics::histogram::Histogram);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(prometheus_client::metrics::histogram::Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_01, 2.5, 16),
        ))
    }
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub connections_open: u64,
    pub readings: u64,
    pub rows_written: u64,
    pub errors: u64,
    pub lines_too_long: u64,
    pub connections_refused: u64,
    pub idle_timeouts: u64,
    pub write_failures: u64,
    pub duplicates: u64,
    pub rows_uploaded: u64,
    /// Line timeouts, refused greetings and JSON nested too deep.
    pub protocol_errors: u64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let lines_too_long = self.lines_too_long.load(Relaxed);
        let connections_refused = self.connections_refused.load(Relaxed);
        let write_failures = self.write_failures.load(Relaxed);
        let protocol_errors =
            self.line_timeouts.load(Relaxed) + self.bad_hellos.load(Relaxed) + self.json_too_deep.load(Relaxed);
        Snapshot {
            connections_open: self.connections_open.load(Relaxed),
            readings: self.readings.load(Relaxed),
            rows_written: self.rows_written.load(Relaxed),
            errors: lines_too_long + connections_refused + write_failures + protocol_errors,
            protocol_errors,
            lines_too_long,
            connections_refused,
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            write_failures,
            duplicates: self.duplicates.load(Relaxed),
            rows_uploaded: self.rows_uploaded.load(Relaxed),
        }
    }

    /// The periodic info line: rates over `elapsed`, totals since start.
    pub fn summary(now: &Snapshot, before: &Snapshot, elapsed: Duration, sheets: bool) -> String {
        let per_min = |n: u64| n as f64 * 60.0 / elapsed.as_secs_f64().max(0.001);
        let mut s = format!(
            "Stats: {} boards connected, {:.0} readings/min, {} rows written ({} in total), {} errors \
             ({} lines too long, {} connections refused, {} write failures, {} protocol errors), {} idle timeouts, {} duplicates skipped",
            now.connections_open,
            per_min(now.readings - before.readings),
            now.rows_written - before.rows_written,
            now.rows_written,
            now.errors,
            now.lines_too_long,
            now.connections_refused,
            now.write_failures,
            now.protocol_errors,
            now.idle_timeouts,
            now.duplicates,
        );
        if sheets {
            s.push_str(&format!(", {} rows uploaded to the sheet", now.rows_uploaded));
        }
        s.push('.');
        s
    }
}
