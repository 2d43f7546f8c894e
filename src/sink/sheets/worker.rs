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

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::SheetsConfig;
use crate::sink::csv::CsvSink;
use crate::sink::cursor::{self, Cursor};
use crate::sink::follower::rows::header_len;
use crate::sink::follower::{Backoff, Failure, Follow, Retry, Wording};
use crate::stats::Stats;

use super::auth::{trim_period, Auth, TokenError};
use super::cells;
use super::client::{quote_tab, ApiError, Client};
use super::retry::{self, Class, Pacer};
use super::source::Source;
use super::target::Target;
use super::{explain, OPERATOR_RETRY};

/// Bytes of a `values:batchUpdate` body besides its rows (field names, the range).
const REQUEST_OVERHEAD: usize = 1024;

/// Why the uploader cannot continue right now.
pub enum Stall {
    Api(ApiError),
    Token(TokenError),
    /// A problem the operator must fix, with the message to log.
    Operator(String),
}

pub struct Worker {
    pub(super) cfg: SheetsConfig,
    pub(super) email: String,
    pub(super) key: Option<yup_oauth2::ServiceAccountKey>,
    /// The cursor saved by the last run, already checked against the CSV.
    pub(super) saved: Option<Cursor>,
    pub(super) sink: Arc<CsvSink>,
    pub(super) stats: Arc<Stats>,
    pub(super) source: Source,
    rt: tokio::runtime::Runtime,
    client: Client,
    pub(super) auth: Option<Auth>,
    /// Set once the spreadsheet, tab and header are known good.
    pub(super) target: Option<Target>,
    pub(super) cursor: Cursor,
    pacer: Pacer,
    /// The backoff, the slow schedule and the outage in progress.
    retry: Retry,
    /// The end of the shutdown time, once it started: no request may outlast it.
    stop_at: Option<Instant>,
    pub(super) warned_cells_pct: u64,
    /// After a refused batch: at most this many rows per batch until `rows_done` reaches
    /// the end of the refused batch.
    pub(super) narrow: Option<(usize, u64)>,
    /// Readable layouts: why Google refused the single row now pending (it goes up as a
    /// placeholder).
    pub(super) narrow_reason: Option<String>,
    /// When `sheets.keep_days` was last applied.
    pub(super) kept_at: Option<Instant>,
    /// The overview as last written (see `overview`).
    pub(super) overview_sent: super::overview::OverviewSent,
    /// `sheets.stall_warn_secs`: since when nothing was confirmed.
    watch: super::stall_watch::Watch,
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client =
            Client::new(&cfg.api_base_url, &cfg.spreadsheet_id, cfg.request_timeout).map_err(|e| e.to_string())?;
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
            pacer: Pacer::new(cfg.requests_per_minute),
            email: key.client_email.clone(),
            key: Some(key),
            saved,
            cfg,
            sink,
            stats,
            source,
            rt,
            client,
            auth: None,
            target: None,
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
            stop_at: None,
            warned_cells_pct: 0,
            narrow: None,
            narrow_reason: None,
            kept_at: None,
            overview_sent: Default::default(),
            watch: Default::default(),
        })
    }

    /// Everything the CSV holds is in the sheet.
    fn all_confirmed(&self) -> bool {
        self.source.is_empty() && self.source.on_current_file() && self.cursor.rows_done >= self.sink.position().0
    }

    /// Does one unit of work; `Ok(false)` when nothing was due.
    fn step(&mut self) -> std::result::Result<bool, Stall> {
        if self.target.is_none() {
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
                || self.narrow.is_some()
                || self.source.oldest.is_some_and(|t| t.elapsed() >= self.cfg.batch_delay));
        if !due {
            return self.refresh_overview();
        }
        self.send_batch()?;
        Ok(true)
    }

    /// One Sheets request: waits for its turn, adds the token, renews a rejected token once.
    pub(super) fn call<T, F>(&mut self, op: F) -> std::result::Result<T, Stall>
    where
        F: for<'a> Fn(
            &'a Client,
            &'a str,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<T, ApiError>> + 'a>>,
    {
        let mut fresh = false;
        loop {
            let delay = self.pacer.delay();
            if delay > Duration::from_secs(1) {
                let pending = self.source.backlog();
                self.watch.check(
                    pending,
                    "the request quota (sheets.requests_per_minute)",
                    self.cfg.stall_warn,
                );
            }
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            let auth = self.auth.as_ref().expect("set up before any call");
            let limit = self.stop_at.map_or(self.cfg.request_timeout, |s| {
                s.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100))
            });
            self.pacer.sent();
            let client = &self.client;
            let result = self.rt.block_on(async {
                let token = auth.token(fresh).await.map_err(Stall::Token)?;
                match tokio::time::timeout(limit, op(client, &token)).await {
                    Ok(r) => r.map_err(Stall::Api),
                    Err(_) => Err(Stall::Api(ApiError::Transport(format!(
                        "no answer from {} in {:.1} s",
                        client.base(),
                        limit.as_secs_f64()
                    )))),
                }
            });
            if let Err(Stall::Api(e)) = &result {
                super::refusals::note(&self.stats, e, "a request"); // issue 18: never silent
            }
            match result {
                Err(Stall::Api(e)) if retry::classify(&e) == Class::Unauthorized && !fresh => {
                    log::debug!("Google Sheets answered 401; fetching a new token.");
                    fresh = true;
                }
                other => return other,
            }
        }
    }

    /// Builds the yup-oauth2 authenticator (once).
    pub(super) fn authenticate(&mut self) -> std::result::Result<(), Stall> {
        if self.auth.is_some() {
            return Ok(());
        }
        let key = self.key.take().expect("the key is kept until set-up");
        match self.rt.block_on(Auth::new(key.clone(), self.cfg.request_timeout)) {
            Ok(a) => {
                self.auth = Some(a);
                Ok(())
            }
            Err(e) => {
                self.key = Some(key);
                Err(Stall::Operator(e.to_string()))
            }
        }
    }

    pub(super) fn write_range(&mut self, range: String, values: Vec<Vec<Value>>) -> std::result::Result<(), Stall> {
        self.call(move |c, t| {
            let (range, values) = (range.clone(), values.clone());
            Box::pin(async move { c.write(t, &range, values).await })
        })
    }

    /// The next batch's cells: ready rows up to the row and byte caps (at least one row).
    pub(super) fn next_batch(&self) -> Vec<Vec<Value>> {
        let max_rows = self
            .narrow
            .map_or(self.cfg.batch_rows, |(n, _)| n.min(self.cfg.batch_rows));
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
        if self.cfg.layout != crate::config::SheetsLayout::Csv {
            return self.send_layout_batch();
        }
        let values = self.next_batch();
        let n = values.len();
        if n == 0 {
            return Ok(());
        }
        let first = self.cursor.rows_done;
        let (r1, r2) = (
            self.cursor.sheet_row(first),
            self.cursor.sheet_row(first + n as u64 - 1),
        );
        self.ensure_rows(0, r2)?;
        let range = format!("{}!A{r1}:I{r2}", quote_tab(&self.cfg.tab));
        match self.write_range(range.clone(), values) {
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
            let end = self
                .narrow
                .map_or(first + n as u64, |(_, end)| end.max(first + n as u64));
            self.narrow = Some((n / 2, end));
            log::debug!(
                "Google Sheets refused CSV rows {first}..{} ({e}); trying {} rows.",
                first + n as u64,
                n / 2
            );
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
        match self.write_range(range, vec![placeholder]) {
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
                self.narrow = None;
                Err(Stall::Operator(explain(&e2, &self.cfg.spreadsheet_id, &self.email)))
            }
            Err(e) => Err(e),
        }
    }

    /// Google confirmed `n` rows (sheet rows `r1..=r2`): advance and save the cursor.
    pub(super) fn confirmed(&mut self, n: usize, r1: u64, r2: u64) -> std::result::Result<(), Stall> {
        let first = self.cursor.rows_done;
        let (rows, offset, id, file) = self.source.confirm(n).map_err(Stall::Operator)?;
        if file.is_some() {
            self.cursor.file = file;
        }
        self.cursor.rows_done = rows;
        self.cursor.offset_done = offset;
        self.cursor.last_row = Some(id);
        if self.narrow.is_some_and(|(_, end)| rows >= end) {
            self.narrow = None;
        }
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        Stats::add(&self.stats.rows_uploaded, n as u64);
        // For /metrics, the dashboard and /readyz (issue 13).
        Stats::add(&self.stats.sheets_requests_ok, 1);
        self.stats
            .sheets_rows_done
            .store(self.cursor.rows_done, std::sync::atomic::Ordering::Relaxed);
        let now_ms = crate::boards::unix_ms(std::time::SystemTime::now());
        self.stats
            .sheets_last_upload_unix_ms
            .store(now_ms, std::sync::atomic::Ordering::Relaxed);
        log::debug!("Uploaded CSV rows {first}..{rows} to sheet rows {r1}..{r2}.");
        self.watch.progress();
        self.recovered();
        Ok(())
    }

    /// Ends an outage: one INFO line with its length.
    pub(super) fn recovered(&mut self) {
        self.retry.recovered();
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
        self.stop_at = Some(deadline);
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
            self.watch.progress(); // nothing waits: a stall starts from now on
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
        let pending = self.source.backlog();
        self.watch.check(pending, &waits_for, self.cfg.stall_warn);
        let failure = match stall {
            Stall::Api(e) => match retry::classify(&e) {
                Class::Transient | Class::Unauthorized => Failure {
                    retry_after: match &e {
                        ApiError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    },
                    ..Failure::transient(e.to_string())
                },
                Class::NeedsOperator => Failure::operator(explain(&e, &self.cfg.spreadsheet_id, &self.email)),
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

/// Whether Google refused the request as invalid (a retry of the same would fail again).
pub(super) fn refused(e: &ApiError) -> bool {
    matches!(e, ApiError::Status { code: 400 | 413, .. })
}
