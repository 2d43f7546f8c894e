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

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::settings::{SheetsConfig, SheetsLayout};

use super::google::{refused, Google, Stall};
use super::layout::{self, Shape, State};
use super::oauth::trim_period;
use super::target::Target;

/// What [`Overview::refresh`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Not due, or it would change nothing: no request.
    Skipped,
    /// The overview was rewritten.
    Written,
    /// Google refused it (one WARN); the next try waits a full interval.
    Refused,
}

/// The overview as last written (by a batch or a refresh), to skip a refresh that would
/// change nothing.
pub struct Overview {
    cfg: Arc<SheetsConfig>,
    at: Option<Instant>,
    table: Option<Vec<Vec<Value>>>,
}

impl Overview {
    pub fn new(cfg: Arc<SheetsConfig>) -> Overview {
        Overview {
            cfg,
            at: None,
            table: None,
        }
    }

    /// A batch wrote `table` to the overview tab.
    pub fn written(&mut self, table: Vec<Vec<Value>>) {
        self.at = Some(Instant::now());
        self.table = Some(table);
    }

    /// The least time between two refreshes: `sheets.overview_refresh_secs`, but at most
    /// a quarter of the request quota; `None` when refreshing is off.
    fn every(&self) -> Option<Duration> {
        if self.cfg.overview_tab.is_empty()
            || self.cfg.overview_refresh.is_zero()
            || self.cfg.layout == SheetsLayout::Csv
        {
            return None;
        }
        let floor = Duration::from_secs_f64(4.0 * 60.0 / f64::from(self.cfg.requests_per_minute.max(1)));
        Some(self.cfg.overview_refresh.max(floor))
    }

    /// Rewrites the overview of the confirmed layout `state` if its time has come and it
    /// would change.
    pub fn refresh(
        &mut self,
        google: &mut Google,
        target: &mut Target,
        state: Option<&State>,
        shape: &Shape,
    ) -> Result<Refresh, Stall> {
        let Some(every) = self.every() else {
            return Ok(Refresh::Skipped);
        };
        if self.at.is_some_and(|t| t.elapsed() < every) || !target.is_set_up() {
            return Ok(Refresh::Skipped);
        }
        let Some(state) = state else {
            return Ok(Refresh::Skipped);
        };
        if state.boards.is_empty() || state.pending_delete.is_some() {
            return Ok(Refresh::Skipped);
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let table = layout::overview(state, now_ms, shape);
        if self.table.as_ref() == Some(&table) {
            self.at = Some(Instant::now());
            return Ok(Refresh::Skipped);
        }
        let (range, rows, columns) = layout::overview_range(&table, shape);
        let Some(i) = target.tab_index(&shape.overview) else {
            return Ok(Refresh::Skipped); // set up again after a failure: the next batch writes it
        };
        target.ensure_rows(google, i, rows)?;
        target.ensure_columns(google, i, columns)?;
        match google.write_range(range, table.clone()) {
            Ok(()) => {
                log::debug!("Rewrote the overview tab {:?} ({} boards).", shape.overview, rows - 1);
                self.written(table);
                Ok(Refresh::Written)
            }
            Err(Stall::Api(e)) if refused(&e) => {
                log::warn!(
                    "Google Sheets refused the overview tab {:?} ({}); it is tried again in {} s and with the next batch.",
                    shape.overview,
                    trim_period(&e.to_string()),
                    every.as_secs()
                );
                self.at = Some(Instant::now());
                Ok(Refresh::Refused)
            }
            Err(e) => Err(e),
        }
    }
}
