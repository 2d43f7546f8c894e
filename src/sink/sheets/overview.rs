//! Keeping the overview tab current between batches.
//!
//! A batch rewrites the overview with the readings it sends, but a board that stops
//! sending brings no batch: without a refresh of its own the overview would show it `ok`,
//! with the same `seconds_since`, forever. So when no batch is due the uploader rewrites
//! the overview in place every `sheets.overview_refresh_secs` (explicit range, RAW, the
//! same table a batch would write: the confirmed layout state as of now).
//!
//! Its cost is bounded: one request per interval, and never more often than once per four
//! request slots of `sheets.requests_per_minute` (a quarter of the quota); it is skipped
//! when the table would be the same as the last one written (no boards yet, or nothing
//! moved), while a row delete is pending (nothing else is written then, see `retention`),
//! and whenever rows are due (batches come first; each of them rewrites the overview too).
//! A refresh Google refuses is a convenience lost, not data: one WARN and the next try
//! waits a full interval. Other failures are handled like a batch's (backoff, outage log).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::auth::trim_period;
use super::layout;
use super::worker::{refused, Stall, Worker};

/// The overview as last written (by a batch or a refresh), to skip a refresh that would
/// change nothing.
#[derive(Default)]
pub struct OverviewSent {
    pub at: Option<Instant>,
    pub table: Option<Vec<Vec<Value>>>,
}

impl Worker {
    /// The least time between two refreshes: `sheets.overview_refresh_secs`, but at most
    /// a quarter of the request quota; `None` when refreshing is off.
    fn overview_every(&self) -> Option<Duration> {
        if self.cfg.overview_tab.is_empty()
            || self.cfg.overview_refresh.is_zero()
            || self.cfg.layout == crate::sink::sheets::settings::SheetsLayout::Csv
        {
            return None;
        }
        let floor = Duration::from_secs_f64(4.0 * 60.0 / f64::from(self.cfg.requests_per_minute.max(1)));
        Some(self.cfg.overview_refresh.max(floor))
    }

    /// Rewrites the overview if its time has come and it would change; `Ok(true)` when a
    /// request was sent.
    pub(super) fn refresh_overview(&mut self) -> std::result::Result<bool, Stall> {
        let Some(every) = self.overview_every() else {
            return Ok(false);
        };
        if self.overview_sent.at.is_some_and(|t| t.elapsed() < every) || self.target.is_none() {
            return Ok(false);
        }
        let Some(state) = self.cursor.layout.as_ref() else {
            return Ok(false);
        };
        if state.boards.is_empty() || state.pending_delete.is_some() {
            return Ok(false);
        }
        let shape = self.shape();
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let table = layout::overview(state, now_ms, &shape);
        if self.overview_sent.table.as_ref() == Some(&table) {
            self.overview_sent.at = Some(Instant::now());
            return Ok(false);
        }
        let (range, rows, columns) = layout::overview_range(&table, &shape);
        let Some(i) = self.tab_index(&shape.overview) else {
            return Ok(false); // set up again after a failure: the next batch writes it
        };
        self.ensure_rows(i, rows)?;
        self.ensure_columns(i, columns)?;
        match self.write_range(range, table.clone()) {
            Ok(()) => {
                log::debug!("Rewrote the overview tab {:?} ({} boards).", shape.overview, rows - 1);
                self.overview_sent = OverviewSent {
                    at: Some(Instant::now()),
                    table: Some(table),
                };
                self.recovered();
                Ok(true)
            }
            Err(Stall::Api(e)) if refused(&e) => {
                log::warn!(
                    "Google Sheets refused the overview tab {:?} ({}); it is tried again in {} s and with the next batch.",
                    shape.overview,
                    trim_period(&e.to_string()),
                    every.as_secs()
                );
                self.overview_sent.at = Some(Instant::now());
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}
