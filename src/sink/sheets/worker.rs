//! The uploader's loop: one batch at a time, each after the previous one is confirmed.
//!
//! A batch holds at most `sheets.batch_rows` rows and `sheets.max_request_bytes` bytes
//! of request body (at least one row, whatever its size: a row alone is always under
//! Google's hard 10 MiB cap because every cell is cut to 50,000 characters).
//!
//! # No row can stop the rows after it
//!
//! When Google answers a batch with 400 (or 413), something in it is invalid and a retry
//! of the same batch would fail forever. The batch is split in half and the first half
//! sent; this repeats (the limit holds until the rows of the refused batch are confirmed)
//! until a single row is refused. That row is written as a placeholder naming its CSV
//! row and Google's reason, with one ERROR line, and the upload goes on. If the
//! placeholder is refused as well, the fault is not in the row (a deleted tab, say): it
//! is reported as needing the operator and retried on the slow schedule.
//!
//! # Outages
//!
//! The worker is a [`Follow`]er: the loop, the shutdown time and the outage log (the
//! first failure of an outage is logged, WARN when it will pass by itself, ERROR when the
//! operator must act; repeats only now and then; the first success after it logs one INFO
//! with the outage's length) are [`crate::sink::follower`]'s, shared with the PostgreSQL
//! sink.
//!
//! # Parts
//!
//! The worker holds the uploader's progress (the cursor, the rows waiting in `source`, a
//! refused batch being narrowed) and hands the parts what they need with each call; the
//! parts own their state: `google` (the client, the token, the pacer, the stall watch),
//! `target` (the spreadsheet's tabs and grid), `layout_run` (a readable layout's shape,
//! with `retention` and `overview`). Only this file has `impl Worker`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::settings::{SheetsConfig, SheetsLayout};
use crate::sink::csv::CsvSink;
use crate::sink::cursor::{self, Cursor};
use crate::sink::follower::rows::header_len;
use crate::sink::follower::{Backoff, Failure, Follow, Retry, Wording};
use crate::stats::Stats;

use super::cells;
use super::client::{quote_tab, ApiError};
use super::google::{refused, Google, Stall};
use super::layout_run::Layouts;
use super::narrow::Narrow;
use super::oauth::{trim_period, TokenError};
use super::overview::Refresh;
use super::reconcile::Grid;
use super::retry::{self, Class};
use super::rotation;
use super::source::Source;
use super::target::Target;

/// How long to wait before retrying a failure that needs the operator (403, 404, ...).
pub const OPERATOR_RETRY: Duration = Duration::from_secs(60);
/// Bytes of a `values:batchUpdate` body besides its rows (field names, the range).
const REQUEST_OVERHEAD: usize = 1024;

pub struct Worker {
    cfg: Arc<SheetsConfig>,
    /// The cursor saved by the last run, already checked against the CSV.
    saved: Option<Cursor>,
    sink: Arc<CsvSink>,
    stats: Arc<Stats>,
    source: Source,
    /// The client, the token, the pacer and the stall watch.
    google: Google,
    /// The spreadsheet's tabs and grid; not set up until the first step.
    target: Target,
    /// The readable layouts (unused in the `csv` layout).
    layouts: Layouts,
    cursor: Cursor,
    /// The backoff, the slow schedule and the outage in progress.
    retry: Retry,
    /// A refused batch being narrowed to the row at fault.
    narrow: Narrow,
}

impl Worker {
    pub fn new(
        cfg: SheetsConfig,
        key: yup_oauth2::ServiceAccountKey,
        saved: Option<Cursor>,
        sink: Arc<CsvSink>,
        stats: Arc<Stats>,
        source: Source,
    ) -> std::result::Result<Worker, String> {
        let cfg = Arc::new(cfg);
        let google = Google::new(Arc::clone(&cfg), key, Arc::clone(&stats))?;
        let cursor = Cursor {
            spreadsheet_id: cfg.spreadsheet_id.clone(),
            tab: cfg.tab.clone(),
            origin: 0,
            rows_done: 0,
            offset_done: header_len(),
            last_row: None,
            layout: None,
            file: None,
            sheet_rows_before: 0,
        };
        let mut source = source;
        source.reset(saved.as_ref().unwrap_or(&cursor));
        Ok(Worker {
            target: Target::new(Arc::clone(&cfg)),
            layouts: Layouts::new(Arc::clone(&cfg)),
            google,
            saved,
            cfg,
            sink,
            stats,
            source,
            cursor,
            retry: Retry::new(
                Wording::new(
                    "Google Sheets",
                    "the Sheets uploader",
                    "the sheet",
                    "sheets.shutdown_timeout_secs",
                ),
                Backoff::new(Duration::from_secs(1), retry::MAX_BACKOFF, Duration::from_secs(1)),
                OPERATOR_RETRY,
            ),
            narrow: Narrow::default(),
        })
    }

    /// Everything the CSV holds is in the sheet.
    fn all_confirmed(&self) -> bool {
        self.source.is_empty() && self.source.on_current_file() && self.cursor.rows_done >= self.sink.position().0
    }

    /// Does one unit of work; `Ok(false)` when nothing was due.
    fn step(&mut self) -> std::result::Result<bool, Stall> {
        self.google.waiting(self.source.backlog());
        if !self.target.is_set_up() {
            self.set_up()?;
            return Ok(true);
        }
        if self.source.finished_rotated() {
            self.follow_rotation()?;
            return Ok(true);
        }
        if self.source.len() < self.cfg.batch_rows {
            self.source.fill().map_err(Stall::Operator)?;
        }
        let ready = self.source.ready().take(self.cfg.batch_rows).count();
        let due = ready > 0
            && (ready >= self.cfg.batch_rows
                || self.source.disconnected
                || self.narrow.active()
                || self.source.oldest.is_some_and(|t| t.elapsed() >= self.cfg.batch_delay));
        if !due {
            if self.cfg.layout == SheetsLayout::Csv {
                return Ok(false);
            }
            return match self
                .layouts
                .refresh_overview(&mut self.google, &mut self.target, &self.cursor)?
            {
                Refresh::Skipped => Ok(false),
                Refresh::Written => {
                    self.retry.recovered();
                    Ok(true)
                }
                Refresh::Refused => Ok(true),
            };
        }
        self.send_batch()?;
        Ok(true)
    }

    /// Token, spreadsheet, tab, header row, cursor: everything before the first batch.
    fn set_up(&mut self) -> std::result::Result<(), Stall> {
        if self.cfg.layout != SheetsLayout::Csv {
            return self.set_up_layout();
        }
        self.google.authenticate()?;
        let sheet = self.google.spreadsheet()?;
        let title = self.cfg.tab.clone();
        let resumed = self
            .saved
            .as_ref()
            .is_some_and(|c| c.spreadsheet_id == self.cfg.spreadsheet_id && c.tab == title);
        let Some(tab) = self.target.csv_tab(&mut self.google, &sheet, resumed)? else {
            return Ok(()); // the grid changed: set up again with a fresh read
        };
        self.cursor = self.choose_cursor();
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        // For the dashboard's backlog and /readyz (issue 13).
        self.stats
            .sheets_rows_done
            .store(self.cursor.rows_done, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .sheets_cursor_known
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.source.reset(&self.cursor);
        log::info!(
            "Google Sheets ready: tab {title:?} of {:?} ({} rows x {} columns); {} CSV rows already in it, {} to upload.",
            sheet.title,
            tab.rows,
            tab.columns,
            self.cursor.rows_done - self.cursor.origin,
            self.source.backlog()
        );
        self.target.set(Grid::from_read(vec![tab], &sheet));
        self.retry.recovered();
        Ok(())
    }

    /// Where to resume in the `csv` layout: the saved cursor (checked against the CSV at
    /// start) if it is for this target; a new target starts where the old one stopped; no
    /// cursor means the whole CSV.
    fn choose_cursor(&mut self) -> Cursor {
        let fresh = self.cursor.clone();
        let Some(saved) = self.saved.clone() else {
            return fresh;
        };
        if let Some(state) = &saved.layout {
            log::info!(
                "Sheets layout is now csv (the cursor was for layout {}): writing tab {:?} from the CSV's first row.",
                state.layout,
                self.cfg.tab
            );
            return fresh;
        }
        if saved.spreadsheet_id == self.cfg.spreadsheet_id && saved.tab == self.cfg.tab {
            return saved;
        }
        log::info!(
            "New Sheets target (was spreadsheet {} tab {:?}): it continues from CSV row {}.",
            saved.spreadsheet_id,
            saved.tab,
            saved.rows_done
        );
        Cursor {
            origin: saved.rows_done,
            sheet_rows_before: 0,
            spreadsheet_id: self.cfg.spreadsheet_id.clone(),
            tab: self.cfg.tab.clone(),
            ..saved
        }
    }

    /// Token, spreadsheet, overview tab, the tabs the cursor knows: all before the first
    /// batch of a readable layout, from one `spreadsheets.get` (see `reconcile`). What is
    /// missing is created with the first batch that needs it, in that batch's one
    /// `batchUpdate`.
    fn set_up_layout(&mut self) -> std::result::Result<(), Stall> {
        self.google.authenticate()?;
        let sheet = self.google.spreadsheet()?;
        self.cursor = self.layouts.choose_cursor(self.saved.as_ref(), self.sink.position().0);
        let state = self.cursor.layout.clone().unwrap_or_default();
        // A resumed cursor of this spreadsheet and layout: its tabs are the daemon's own.
        let resumed = self.cursor.rows_done > 0 || !state.tabs.is_empty();
        let tabs = self.target.layout_tabs(&mut self.google, &sheet, &state, resumed)?;
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        self.source.reset(&self.cursor);
        log::info!(
            "Google Sheets ready: layout {}, spreadsheet {:?}, {} board tab{}, overview {}; {} to upload.",
            self.layouts.name(),
            sheet.title,
            state.tabs.len(),
            if state.tabs.len() == 1 { "" } else { "s" },
            if self.cfg.overview_tab.is_empty() {
                "off".to_string()
            } else {
                format!("{:?}", self.cfg.overview_tab)
            },
            self.source.backlog()
        );
        self.target.set(Grid::from_read(tabs, &sheet));
        self.retry.recovered();
        Ok(())
    }

    /// Every row of the rotated file is in the sheet: continue with the new file (see
    /// `rotation`).
    fn follow_rotation(&mut self) -> std::result::Result<(), Stall> {
        let old_rows = self.cursor.rows_done;
        let skipped = self.source.switch_file().map_err(Stall::Operator)?;
        if skipped > 0 {
            log::error!(
                "{} was replaced {} times while the Sheets upload was behind; the rows of the {skipped} files in between are not in the sheet (they are in the moved files).",
                self.sink.path().display(),
                skipped + 1
            );
        }
        rotation::to_new_file(&mut self.cursor, self.cfg.layout == SheetsLayout::Csv);
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        log::info!(
            "{} was rotated: all {old_rows} of its rows are in Google Sheets; continuing with the new file from its first row.",
            self.sink.path().display()
        );
        Ok(())
    }

    /// The next batch's cells: ready rows up to the row and byte caps (at least one row).
    fn next_batch(&self) -> Vec<Vec<Value>> {
        let max_rows = self.narrow.max_rows(self.cfg.batch_rows);
        let mut bytes = REQUEST_OVERHEAD;
        let mut values = Vec::new();
        for (row, _) in self.source.ready().take(max_rows) {
            let cells = cells::sheet_values(row);
            let len = serde_json::to_vec(&cells).map_or(0, |b| b.len()) + 1;
            if !values.is_empty() && bytes + len > self.cfg.max_request_bytes {
                break;
            }
            bytes += len;
            values.push(cells);
        }
        values
    }

    fn send_batch(&mut self) -> std::result::Result<(), Stall> {
        let values = self.next_batch();
        let n = values.len();
        if n == 0 {
            return Ok(());
        }
        if self.cfg.layout != SheetsLayout::Csv {
            let rows = self.source.ready().take(n).map(|(r, _)| r.clone()).collect();
            let sent = self.layouts.send_batch(
                &mut self.google,
                &mut self.target,
                &mut self.cursor,
                rows,
                &mut self.narrow,
                self.sink.path(),
            )?;
            return if sent { self.confirmed(n, 0, 0) } else { Ok(()) };
        }
        let first = self.cursor.rows_done;
        let (r1, r2) = (
            self.cursor.sheet_row(first),
            self.cursor.sheet_row(first + n as u64 - 1),
        );
        self.target.ensure_rows(&mut self.google, 0, r2)?;
        let range = format!("{}!A{r1}:I{r2}", quote_tab(&self.cfg.tab));
        match self.google.write_range(range.clone(), values) {
            Ok(()) => {}
            Err(Stall::Api(e)) if refused(&e) => return self.narrow_down(n, range, e),
            Err(e) => return Err(e),
        }
        self.confirmed(n, r1, r2)
    }

    /// Google refused a batch of `n` rows as invalid: send half as many, or, for one
    /// row, write a placeholder in its place.
    fn narrow_down(&mut self, n: usize, range: String, e: ApiError) -> std::result::Result<(), Stall> {
        let first = self.cursor.rows_done;
        if n > 1 {
            self.narrow.halve(first, n, &e);
            return Ok(());
        }
        let reason = e.to_string();
        let row = self
            .source
            .ready()
            .next()
            .map(|(r, _)| r.clone())
            .expect("the refused row is pending");
        let csv_name = self
            .sink
            .path()
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let placeholder = cells::placeholder(&row, first, &csv_name, &reason);
        let r1 = self.cursor.sheet_row(first);
        match self.google.write_range(range, vec![placeholder]) {
            Ok(()) => {
                log::error!(
                    "Google Sheets refused CSV row {} (line {} of {}): {}. Wrote a placeholder naming it at sheet row {r1}; the CSV keeps the row whole. The upload goes on.",
                    first + 1,
                    first + 2,
                    self.sink.path().display(),
                    trim_period(&reason)
                );
                self.confirmed(1, r1, r1)
            }
            Err(Stall::Api(e2)) if refused(&e2) => {
                // Not the row's fault: full batches again once the operator fixed it.
                self.narrow.clear();
                Err(Stall::Operator(self.google.explain(&e2)))
            }
            Err(e) => Err(e),
        }
    }

    /// Google confirmed `n` rows (sheet rows `r1..=r2`): advance and save the cursor.
    fn confirmed(&mut self, n: usize, r1: u64, r2: u64) -> std::result::Result<(), Stall> {
        let first = self.cursor.rows_done;
        let (rows, offset, id, file) = self.source.confirm(n).map_err(Stall::Operator)?;
        if file.is_some() {
            self.cursor.file = file;
        }
        self.cursor.rows_done = rows;
        self.cursor.offset_done = offset;
        self.cursor.last_row = Some(id);
        self.narrow.confirmed(rows);
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        Stats::add(&self.stats.rows_uploaded, n as u64);
        // For /metrics, the dashboard and /readyz (issue 13).
        Stats::add(&self.stats.sheets_requests_ok, 1);
        self.stats
            .sheets_rows_done
            .store(self.cursor.rows_done, std::sync::atomic::Ordering::Relaxed);
        let now_ms = crate::fleet::boards::unix_ms(std::time::SystemTime::now());
        self.stats
            .sheets_last_upload_unix_ms
            .store(now_ms, std::sync::atomic::Ordering::Relaxed);
        log::debug!("Uploaded CSV rows {first}..{rows} to sheet rows {r1}..{r2}.");
        self.google.progress();
        self.retry.recovered();
        Ok(())
    }
}

impl Follow for Worker {
    type Stall = Stall;

    /// Takes what the channel holds; the sink dropped its sender at shutdown.
    fn stop_requested(&mut self) -> bool {
        self.source.drain(Duration::ZERO);
        self.source.disconnected
    }

    fn stopping(&mut self, deadline: Instant) {
        self.google.stop_by(deadline);
    }

    fn backlog(&self) -> u64 {
        self.source.backlog()
    }

    fn step(&mut self) -> std::result::Result<bool, Stall> {
        Worker::step(self)
    }

    fn caught_up(&self) -> bool {
        self.all_confirmed()
    }

    /// Waits for rows, for the oldest to come due, or for received rows to become
    /// durable (the next fsync).
    fn idle(&mut self) {
        if self.source.backlog() == 0 {
            self.google.progress(); // nothing waits: a stall starts from now on
        }
        let waiting_for_fsync = !self.source.is_empty() && self.source.ready().next().is_none();
        let wait = if waiting_for_fsync {
            Duration::from_millis(50)
        } else {
            self.source
                .oldest
                .map(|t| self.cfg.batch_delay.saturating_sub(t.elapsed()))
                .unwrap_or(Duration::from_millis(500))
                .clamp(Duration::from_millis(5), Duration::from_millis(500))
        };
        self.source.drain(wait);
    }

    fn failure(&mut self, stall: Stall) -> Failure {
        Stats::add(&self.stats.sheets_requests_failed, 1); // for /metrics (issue 13)
                                                           // `sheets.stall_warn_secs` (issue 18): what the rows wait for, said once a stall is long.
        let waits_for = match &stall {
            Stall::Api(ApiError::Status {
                code: 429, retry_after, ..
            }) => match retry_after {
                Some(d) => format!("Google's quota (HTTP 429), retrying in {:.0} s", d.as_secs_f64()),
                None => "Google's quota (HTTP 429)".to_string(),
            },
            Stall::Api(e) if retry::classify(e) == Class::NeedsOperator => {
                format!("Google's refusal: {}", trim_period(&e.to_string()))
            }
            Stall::Operator(m) if m.contains("cells") => format!("the cell budget: {}", trim_period(m)),
            Stall::Api(e) => format!("a backoff after: {}", trim_period(&e.to_string())),
            Stall::Token(e) => format!("a backoff after: {}", trim_period(&e.to_string())),
            Stall::Operator(m) => format!("a backoff after: {}", trim_period(m)),
        };
        self.google.waiting(self.source.backlog());
        self.google.stalled(&waits_for);
        let failure = match stall {
            Stall::Api(e) => match retry::classify(&e) {
                Class::Transient | Class::Unauthorized => Failure {
                    retry_after: match &e {
                        ApiError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    },
                    ..Failure::transient(e.to_string())
                },
                Class::NeedsOperator => Failure::operator(self.google.explain(&e)),
            },
            Stall::Token(e @ TokenError::Refused(_)) => Failure::operator(e.to_string()),
            Stall::Token(e) => Failure::transient(e.to_string()),
            Stall::Operator(m) => Failure::operator(m),
        };
        Failure {
            message: trim_period(&failure.message).to_string(),
            ..failure
        }
    }

    fn pause(&mut self, d: Duration) {
        self.source.drain(d);
    }

    fn retry(&mut self) -> &mut Retry {
        &mut self.retry
    }

    fn up_to_date(&self) {
        log::info!("Google Sheets is up to date ({} rows).", self.cursor.rows_done);
    }
}
