//! `/api/boards`, the `/events` payload and `/readyz`: built from counters and the
//! boards' in-memory state only.

use std::sync::atomic::Ordering::Relaxed;
use std::time::SystemTime;

use serde::Serialize;

use super::state::HttpState;
use crate::fleet::boards::{unix_ms, BoardTotals, BoardView};

/// The dashboard's header line and its boards.
#[derive(Debug, Serialize)]
pub struct Overview {
    pub now_unix_ms: u64,
    pub started_unix_ms: u64,
    pub totals: BoardTotals,
    /// Boards in `boards` (sorted by name; the dashboard shows at most
    /// [`super::state::DASHBOARD_MAX_BOARDS`]).
    pub shown: usize,
    pub csv: CsvView,
    /// `None` when Google Sheets upload is off.
    pub sheets: Option<SheetsView>,
    /// Seconds per chart point and the chart's window.
    pub bucket_secs: u32,
    pub chart_window_secs: u32,
    /// Refused connections by reason and (real) address, most refused first.
    pub refused: Vec<crate::server::refused::RefusedView>,
    pub boards: Vec<BoardView>,
}

#[derive(Debug, Serialize)]
pub struct CsvView {
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct SheetsView {
    /// CSV rows not yet confirmed in the sheet; `None` until the uploader is set up.
    pub backlog_rows: Option<u64>,
    pub rows_uploaded: u64,
    pub last_upload_unix_ms: Option<u64>,
}

pub fn sheets_view(state: &HttpState) -> Option<SheetsView> {
    if !state.sheets {
        return None;
    }
    let s = &state.stats;
    let rows = state.sink.position().0;
    let last = s.sheets_last_upload_unix_ms.load(Relaxed);
    Some(SheetsView {
        backlog_rows: s
            .sheets_cursor_known
            .load(Relaxed)
            .then(|| rows.saturating_sub(s.sheets_rows_done.load(Relaxed))),
        rows_uploaded: s.rows_uploaded.load(Relaxed),
        last_upload_unix_ms: (last > 0).then_some(last),
    })
}

/// Rows of the refusal table in the dashboard's payload.
const REFUSED_ROWS: usize = 20;

pub fn overview(state: &HttpState, series: bool, limit: usize) -> Overview {
    let (totals, boards) = state.boards.snapshot(series, limit);
    let (rows, bytes) = state.sink.position();
    Overview {
        now_unix_ms: unix_ms(SystemTime::now()),
        started_unix_ms: state.started_unix_ms,
        totals,
        shown: boards.len(),
        csv: CsvView {
            path: state.csv_path.display().to_string(),
            rows,
            bytes,
        },
        sheets: sheets_view(state),
        bucket_secs: state.boards.bucket_secs(),
        chart_window_secs: state.boards.chart_window_secs(),
        refused: state.stats.refused.snapshot(REFUSED_ROWS),
        boards,
    }
}

pub fn overview_json(state: &HttpState, series: bool, limit: usize) -> String {
    serde_json::to_string(&overview(state, series, limit))
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()))
}

/// Why the daemon is not ready; empty when it is.
pub fn readiness(state: &HttpState) -> Vec<String> {
    let mut problems = Vec::new();
    if state.stats.csv_last_append_failed.load(Relaxed) {
        problems.push(format!("the last append to {} failed", state.csv_path.display()));
    } else if let Err(e) = std::fs::OpenOptions::new().append(true).open(&state.csv_path) {
        problems.push(format!("{} is not writable: {e}", state.csv_path.display()));
    }
    if let Some(sheets) = sheets_view(state) {
        let backlog = sheets.backlog_rows.unwrap_or_else(|| state.sink.position().0);
        let since_ms = sheets.last_upload_unix_ms.unwrap_or(state.started_unix_ms);
        let quiet = unix_ms(SystemTime::now()).saturating_sub(since_ms) / 1000;
        if backlog > 0 && quiet > state.config.ready_upload_stall.as_secs() {
            problems.push(format!(
                "the Sheets uploader has {backlog} rows waiting and confirmed nothing for {quiet} s (http.ready_upload_stall_secs = {})",
                state.config.ready_upload_stall.as_secs()
            ));
        }
    }
    problems
}
