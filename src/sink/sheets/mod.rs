//! The Google Sheets uploader: one thread that mirrors the CSV into a sheet tab,
//! every row exactly once and in order.
//!
//! # How exactly-once works
//!
//! CSV row `n` has a fixed home in the sheet: row `n - origin + 2` of the tab (see
//! [`cursor`]). Batches are written with `values:batchUpdate` to
//! that explicit range, never with `values:append`. So every write is idempotent: when a
//! request fails after Google applied it (the response was lost, a 5xx after commit, a
//! timeout) the retry rewrites the same cells with the same values, and when the daemon
//! is killed between a write and saving its cursor, the next start rewrites that batch.
//! The cursor is saved (atomically) only after Google confirms a batch. In order: one
//! batch at a time, each after the previous one is confirmed.
//!
//! The grid must be large enough for an explicit-range write, so the tab is grown with
//! `appendDimension` ahead of need (`sheets.grow_rows` at a time). That call is not
//! idempotent, but a repeat only adds blank rows; after an ambiguous failure the grid
//! size is read again before anything else.
//!
//! # Where rows come from
//!
//! The ingest side sends rows over a bounded channel right after writing them to the CSV
//! (never blocking: a full channel just means the uploader will read those rows from the
//! file). The uploader keeps at most a few batches in memory; whenever the next row it
//! needs is not in the channel (start-up backlog, a full channel, a long outage) it reads
//! it back from the CSV at the cursor's byte offset. A dead network therefore costs
//! ingest nothing and loses nothing.
//!
//! # Pace and failures
//!
//! Requests are spaced to stay within `sheets.requests_per_minute`; rows are batched up
//! to `sheets.batch_rows`, or sent when the oldest has waited `sheets.batch_delay_secs`.
//! Failures are sorted by [`retry::classify`]. At shutdown the uploader gets
//! `sheets.shutdown_timeout_secs` to send what is pending; the rest goes at the next start.

pub mod auth;
pub mod check;
pub mod client;
pub mod retry;

use std::collections::VecDeque;
use std::io::{Seek, SeekFrom};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::SheetsConfig;
use crate::error::{Error, Result};
use crate::row::{Row, COLUMNS, HEADER};
use crate::sink::csv::CsvSink;
use crate::sink::cursor::{self, Cursor};
use crate::sink::Appended;
use crate::stats::Stats;

use auth::{Auth, TokenError};
use client::{quote_tab, ApiError, Client, Spreadsheet, Tab};
use retry::{Backoff, Class, Pacer};

/// How long to wait before retrying a failure that needs the operator (403, 404, ...).
pub const OPERATOR_RETRY: Duration = Duration::from_secs(60);
/// Messages (not rows) the channel holds; rows are bounded by `sheets.channel_rows`.
const CHANNEL_MESSAGES: usize = 1 << 16;

/// Handle kept by the daemon: the thread, and a signal that it has finished.
pub struct Uploader {
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
    shutdown_timeout: Duration,
}

impl Uploader {
    /// Checks the key file (a bad one stops the daemon at start), connects the channel
    /// to the CSV sink, and starts the uploader thread. Google itself is contacted by the
    /// thread: a network that is down at start-up must not stop ingest.
    pub fn start(cfg: SheetsConfig, sink: &Arc<CsvSink>, stats: Arc<Stats>) -> Result<Uploader> {
        let key = auth::read_key(&cfg.key_file).map_err(|e| Error::startup("start the Google Sheets uploader", e))?;
        let saved =
            cursor::load(&cfg.cursor_file).map_err(|e| Error::startup("start the Google Sheets uploader", e))?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        sink.attach_uploader(tx, cfg.channel_rows, Arc::clone(&queued));
        let (done_tx, done) = mpsc::channel();
        let shutdown_timeout = cfg.shutdown_timeout;
        let sink = Arc::clone(sink);
        log::info!(
            "Google Sheets upload on: spreadsheet {}, tab {:?}, as {} (batches of up to {} rows, at most {} requests/min).",
            cfg.spreadsheet_id,
            cfg.tab,
            key.client_email,
            cfg.batch_rows,
            cfg.requests_per_minute
        );
        let thread = std::thread::Builder::new()
            .name("sheets-uploader".into())
            .spawn(move || {
                match Worker::new(cfg, key, saved, sink, stats, rx, queued) {
                    Ok(mut w) => w.run(),
                    Err(e) => log::error!(
                        "Google Sheets upload stopped: {e}. Rows stay in the CSV and go up at the next start."
                    ),
                }
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::startup("start the sheets-uploader thread", e))?;
        Ok(Uploader {
            thread: Some(thread),
            done,
            shutdown_timeout,
        })
    }

    /// Called after the CSV is closed (which drops the channel's sender): waits for the
    /// uploader to send what it can within its time and save its cursor.
    pub fn finish(mut self, sink: &CsvSink) {
        sink.detach_uploader();
        match self.done.recv_timeout(self.shutdown_timeout + Duration::from_secs(5)) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                log::warn!("The Sheets uploader did not stop in time; its saved cursor is consistent and the rest goes at the next start.");
            }
        }
    }
}

/// Why the uploader cannot continue right now.
enum Stall {
    Api(ApiError),
    Token(TokenError),
    /// A problem the operator must fix, with the message to log.
    Operator(String),
}

struct Worker {
    cfg: SheetsConfig,
    email: String,
    key: Option<yup_oauth2::ServiceAccountKey>,
    saved: Option<Cursor>,
    sink: Arc<CsvSink>,
    stats: Arc<Stats>,
    rx: Receiver<Appended>,
    queued: Arc<AtomicUsize>,
    disconnected: bool,
    rt: tokio::runtime::Runtime,
    client: Client,
    auth: Option<Auth>,
    /// Set once the spreadsheet, tab and header are known good.
    target: Option<Target>,
    cursor: Cursor,
    /// Rows from `cursor.rows_done` on, each with the CSV offset just after it.
    pending: VecDeque<(Row, u64)>,
    oldest: Option<Instant>,
    pacer: Pacer,
    backoff: Backoff,
    stop_at: Option<Instant>,
    warned_cells_pct: u64,
    failing_since: Option<Instant>,
}

struct Target {
    tab: Tab,
    cells: u64,
    grid_stale: bool,
}

impl Worker {
    fn new(
        cfg: SheetsConfig,
        key: yup_oauth2::ServiceAccountKey,
        saved: Option<Cursor>,
        sink: Arc<CsvSink>,
        stats: Arc<Stats>,
        rx: Receiver<Appended>,
        queued: Arc<AtomicUsize>,
    ) -> std::result::Result<Worker, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start its runtime: {e}"))?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client =
            Client::new(&cfg.api_base_url, &cfg.spreadsheet_id, cfg.request_timeout).map_err(|e| e.to_string())?;
        let header_len = HEADER.join(",").len() as u64 + 1;
        let cursor = Cursor {
            spreadsheet_id: cfg.spreadsheet_id.clone(),
            tab: cfg.tab.clone(),
            origin: 0,
            rows_done: 0,
            offset_done: header_len,
        };
        Ok(Worker {
            pacer: Pacer::new(cfg.requests_per_minute),
            email: key.client_email.clone(),
            key: Some(key),
            saved,
            cfg,
            sink,
            stats,
            rx,
            queued,
            disconnected: false,
            rt,
            client,
            auth: None,
            target: None,
            cursor,
            pending: VecDeque::new(),
            oldest: None,
            backoff: Backoff::default(),
            stop_at: None,
            warned_cells_pct: 0,
            failing_since: None,
        })
    }

    fn next_row(&self) -> u64 {
        self.cursor.rows_done + self.pending.len() as u64
    }

    fn next_offset(&self) -> u64 {
        self.pending.back().map_or(self.cursor.offset_done, |(_, off)| *off)
    }

    /// Most rows kept in memory; the rest wait in the CSV.
    fn pending_cap(&self) -> usize {
        self.cfg.batch_rows * 2
    }

    fn run(&mut self) {
        loop {
            self.drain_channel(Duration::ZERO);
            if self.disconnected && self.stop_at.is_none() {
                let left = self.sink.position().0.saturating_sub(self.cursor.rows_done);
                self.stop_at = Some(Instant::now() + self.cfg.shutdown_timeout);
                if left > 0 {
                    log::info!(
                        "Uploading the remaining {left} rows to Google Sheets (up to {} s, sheets.shutdown_timeout_secs).",
                        self.cfg.shutdown_timeout.as_secs()
                    );
                }
            }
            if self.stop_at.is_some_and(|t| Instant::now() >= t) {
                break;
            }
            let result = self.step();
            match result {
                Ok(true) => {}
                Ok(false) => {
                    if self.disconnected && self.caught_up() {
                        break;
                    }
                    // Nothing due: wait for rows or for the oldest to come due.
                    let wait = self
                        .oldest
                        .map(|t| self.cfg.batch_delay.saturating_sub(t.elapsed()))
                        .unwrap_or(Duration::from_millis(500))
                        .clamp(Duration::from_millis(5), Duration::from_millis(500));
                    self.drain_channel(wait);
                }
                Err(stall) => self.stalled(stall),
            }
        }
        let left = self.sink.position().0.saturating_sub(self.cursor.rows_done);
        if left > 0 {
            log::warn!("Stopped the Sheets uploader with {left} rows not yet in the sheet; they are in the CSV and go up at the next start.");
        } else {
            log::info!("Google Sheets is up to date ({} rows).", self.cursor.rows_done);
        }
    }

    fn caught_up(&self) -> bool {
        self.pending.is_empty() && self.cursor.rows_done >= self.sink.position().0
    }

    /// Receives what the channel has (waiting up to `wait` for the first message).
    fn drain_channel(&mut self, wait: Duration) {
        let mut first = true;
        loop {
            let msg = if first && !wait.is_zero() && !self.disconnected {
                self.rx
                    .recv_timeout(wait)
                    .map_err(|e| matches!(e, RecvTimeoutError::Disconnected))
            } else {
                self.rx
                    .try_recv()
                    .map_err(|e| matches!(e, mpsc::TryRecvError::Disconnected))
            };
            first = false;
            match msg {
                Ok(m) => self.take(m),
                Err(disconnected) => {
                    self.disconnected |= disconnected;
                    return;
                }
            }
        }
    }

    fn take(&mut self, msg: Appended) {
        let n = msg.rows.len();
        self.queued.fetch_sub(n, Ordering::AcqRel);
        if msg.first_row != self.next_row() || self.pending.len() + n > self.pending_cap() {
            return; // a gap or no room: these rows will be read from the CSV
        }
        // Offsets of each row: walk back from the end offset by encoded lengths.
        let mut end = msg.end_offset;
        let mut offsets = vec![0; n];
        for (i, row) in msg.rows.iter().enumerate().rev() {
            offsets[i] = end;
            end -= row.encoded_len() as u64;
        }
        if self.pending.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.pending.extend(msg.rows.into_iter().zip(offsets));
    }

    /// Tops `pending` up from the CSV when the rows it needs did not come by channel.
    fn read_from_csv(&mut self) -> std::result::Result<(), Stall> {
        let room = self.pending_cap().saturating_sub(self.pending.len());
        let available = self.sink.position().0.saturating_sub(self.next_row());
        let want = (available as usize).min(room);
        if want == 0 {
            return Ok(());
        }
        let offset = self.next_offset();
        let path = self.sink.path().to_path_buf();
        let stall = |e: String| Stall::Operator(format!("cannot read {} for the upload: {e}", path.display()));
        let mut file = std::fs::File::open(&path).map_err(|e| stall(e.to_string()))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| stall(e.to_string()))?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(std::io::BufReader::with_capacity(1 << 16, file));
        let mut rec = csv::StringRecord::new();
        let was_empty = self.pending.is_empty();
        for _ in 0..want {
            match rdr.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(stall(format!("{e} (at byte {offset})"))),
            }
            let mut fields: Vec<String> = rec.iter().map(str::to_string).collect();
            fields.resize(COLUMNS, String::new());
            self.pending.push_back((Row(fields), offset + rdr.position().byte()));
        }
        if was_empty && !self.pending.is_empty() {
            // Backlog: these rows have waited long enough already.
            self.oldest = Some(Instant::now() - self.cfg.batch_delay);
        }
        Ok(())
    }

    /// Does one unit of work; `Ok(false)` when nothing was due.
    fn step(&mut self) -> std::result::Result<bool, Stall> {
        if self.target.is_none() {
            self.set_up()?;
            return Ok(true);
        }
        if self.pending.len() < self.cfg.batch_rows {
            self.read_from_csv()?;
        }
        let due = !self.pending.is_empty()
            && (self.pending.len() >= self.cfg.batch_rows
                || self.disconnected
                || self.oldest.is_some_and(|t| t.elapsed() >= self.cfg.batch_delay));
        if !due {
            return Ok(false);
        }
        self.send_batch()?;
        Ok(true)
    }

    /// Logs a stall and waits before the next attempt (draining the channel meanwhile).
    fn stalled(&mut self, stall: Stall) {
        let (wait, message, operator) = match &stall {
            Stall::Api(e) => match retry::classify(e) {
                Class::Transient | Class::Unauthorized => {
                    let after = match e {
                        ApiError::Status { retry_after, .. } => *retry_after,
                        _ => None,
                    };
                    (self.backoff.next(after), e.to_string(), false)
                }
                Class::NeedsOperator => (OPERATOR_RETRY, explain(e, &self.cfg.spreadsheet_id, &self.email), true),
            },
            Stall::Token(e @ TokenError::Refused(_)) => (OPERATOR_RETRY, e.to_string(), true),
            Stall::Token(e) => (self.backoff.next(None), e.to_string(), false),
            Stall::Operator(m) => (OPERATOR_RETRY, m.clone(), true),
        };
        Stats::add(&self.stats.sheets_requests_failed, 1); // for /metrics (issue 13)
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let pending = self.sink.position().0.saturating_sub(self.cursor.rows_done);
        if operator {
            log::error!(
                "Google Sheets: {message}. {pending} rows are waiting in the CSV; retrying in {} s.",
                wait.as_secs()
            );
        } else if self.backoff.failures() <= 1
            || since.elapsed() > Duration::from_secs(60) && self.backoff.failures().is_multiple_of(5)
        {
            log::warn!(
                "Google Sheets: {message}. Retrying in {:.1} s ({pending} rows waiting, kept in the CSV).",
                wait.as_secs_f64()
            );
        }
        let until = Instant::now() + wait;
        let until = self.stop_at.map_or(until, |s| s.min(until));
        while Instant::now() < until && !(self.disconnected && self.stop_at.is_some_and(|s| Instant::now() >= s)) {
            self.drain_channel(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(200)),
            );
            if self.disconnected && self.stop_at.is_none() {
                break; // let run() set the shutdown deadline
            }
        }
    }

    /// One Sheets request: waits for its turn, adds the token, renews a rejected token once.
    fn call<T, F>(&mut self, op: F) -> std::result::Result<T, Stall>
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
                    Err(_) => Err(Stall::Api(ApiError::Transport("timed out".into()))),
                }
            });
            match result {
                Err(Stall::Api(e)) if retry::classify(&e) == Class::Unauthorized && !fresh => {
                    log::debug!("Google Sheets answered 401; fetching a new token.");
                    fresh = true;
                }
                other => return other,
            }
        }
    }

    /// Token, spreadsheet, tab, header row, cursor: everything before the first batch.
    fn set_up(&mut self) -> std::result::Result<(), Stall> {
        if self.auth.is_none() {
            let key = self.key.take().expect("the key is kept until set-up");
            let built = self.rt.block_on(Auth::new(key.clone(), self.cfg.request_timeout));
            match built {
                Ok(a) => self.auth = Some(a),
                Err(e) => {
                    self.key = Some(key);
                    return Err(Stall::Operator(e.to_string()));
                }
            }
        }
        let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
        let title = self.cfg.tab.clone();
        let quoted = quote_tab(&title);
        let tab = match sheet.tab(&title) {
            Some(tab) => {
                let probe = tab.clone();
                let first_row = self.call(move |c, t| {
                    let probe = probe.clone();
                    Box::pin(async move { c.first_row(t, &probe).await })
                })?;
                let ours = client::is_header(&first_row);
                let resumed = self
                    .saved
                    .as_ref()
                    .is_some_and(|c| c.spreadsheet_id == self.cfg.spreadsheet_id && c.tab == title);
                if !first_row.is_empty() && !ours && !resumed {
                    return Err(Stall::Operator(format!(
                        "tab {title:?} already holds other data (its first row is {:?}); choose another sheets.tab, or clear the tab",
                        first_row.join(",")
                    )));
                }
                if tab.columns < COLUMNS as u64 {
                    let (sheet_id, more) = (tab.sheet_id, COLUMNS as u64 - tab.columns);
                    self.call(move |c, t| Box::pin(c.grow(t, sheet_id, "COLUMNS", more)))?;
                    return Ok(()); // set up again with the new grid
                }
                tab.clone()
            }
            None => {
                let rows = u64::from(self.cfg.grow_rows) + 1;
                let t2 = title.clone();
                match self.call(move |c, t| {
                    let t2 = t2.clone();
                    Box::pin(async move { c.add_tab(t, &t2, rows, COLUMNS as u64).await })
                }) {
                    Ok(tab) => {
                        log::info!("Created tab {title:?} in spreadsheet {:?}.", sheet.title);
                        tab
                    }
                    // A lost reply to an applied addSheet: the tab exists now; look again.
                    Err(Stall::Api(ApiError::Status { code: 400, message, .. }))
                        if message.contains("already exists") =>
                    {
                        return Ok(());
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        self.write_range(
            format!("{quoted}!A1:I1"),
            vec![HEADER.iter().map(|h| Value::from(*h)).collect()],
        )?;
        self.cursor = self.choose_cursor();
        cursor::save(&self.cfg.cursor_file, &self.cursor).map_err(|e| Stall::Operator(e.to_string()))?;
        // For the dashboard's backlog and /readyz (issue 13).
        self.stats
            .sheets_rows_done
            .store(self.cursor.rows_done, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .sheets_cursor_known
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.pending.clear();
        self.oldest = None;
        let cells = sheet.cells();
        log::info!(
            "Google Sheets ready: tab {title:?} of {:?} ({} rows x {} columns); {} CSV rows already in it, {} to upload.",
            sheet.title,
            tab.rows,
            tab.columns,
            self.cursor.rows_done - self.cursor.origin,
            self.sink.position().0.saturating_sub(self.cursor.rows_done)
        );
        self.target = Some(Target {
            tab,
            cells,
            grid_stale: false,
        });
        self.check_cells();
        self.recovered();
        Ok(())
    }

    /// Where to resume: the saved cursor if it is for this target; a new target starts
    /// where the old one stopped; no cursor means the whole CSV.
    fn choose_cursor(&mut self) -> Cursor {
        let (csv_rows, csv_bytes) = self.sink.position();
        let fresh = self.cursor.clone();
        let Some(saved) = self.saved.clone() else {
            return fresh;
        };
        if saved.rows_done > csv_rows || saved.offset_done > csv_bytes {
            log::warn!(
                "The Sheets cursor {} is ahead of the CSV ({} rows confirmed, the CSV has {csv_rows}): the CSV was replaced. Uploading it from its first row.",
                self.cfg.cursor_file.display(),
                saved.rows_done
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
            ..saved
        }
        .retarget(&self.cfg.spreadsheet_id, &self.cfg.tab)
    }

    fn write_range(&mut self, range: String, values: Vec<Vec<Value>>) -> std::result::Result<(), Stall> {
        self.call(move |c, t| {
            let (range, values) = (range.clone(), values.clone());
            Box::pin(async move { c.write(t, &range, values).await })
        })
    }

    /// Makes sure the tab has at least `rows` rows, growing it (within the cell limit).
    fn ensure_rows(&mut self, rows: u64) -> std::result::Result<(), Stall> {
        if self.target.as_ref().is_some_and(|t| t.grid_stale) {
            let sheet: Spreadsheet = self.call(|c, t| Box::pin(c.spreadsheet(t)))?;
            let target = self.target.as_mut().expect("set up");
            match sheet.tab(&self.cfg.tab) {
                Some(tab) => {
                    target.tab = tab.clone();
                    target.cells = sheet.cells();
                    target.grid_stale = false;
                }
                None => {
                    self.target = None; // the tab was deleted: set up again
                    return Err(Stall::Operator(format!(
                        "tab {:?} disappeared from the spreadsheet",
                        self.cfg.tab
                    )));
                }
            }
        }
        let target = self.target.as_ref().expect("set up");
        if target.tab.rows >= rows {
            return Ok(());
        }
        let need = rows - target.tab.rows;
        let columns = target.tab.columns.max(1);
        let room = self.cfg.max_cells.saturating_sub(target.cells) / columns;
        let grow = need.max(u64::from(self.cfg.grow_rows)).min(room);
        if grow < need {
            let used = target.cells;
            self.target.as_mut().expect("set up").grid_stale = true;
            return Err(Stall::Operator(format!(
                "spreadsheet {} is full: {used} of Google's {} cells are used (sheets.max_cells). Rows keep going to the CSV; point sheets.spreadsheet at a new spreadsheet to continue",
                self.cfg.spreadsheet_id, self.cfg.max_cells
            )));
        }
        let sheet_id = target.tab.sheet_id;
        match self.call(move |c, t| Box::pin(c.grow(t, sheet_id, "ROWS", grow))) {
            Ok(()) => {
                let target = self.target.as_mut().expect("set up");
                target.tab.rows += grow;
                target.cells += grow * columns;
                log::debug!("Grew tab {:?} by {grow} rows to {}.", self.cfg.tab, target.tab.rows);
                self.check_cells();
                Ok(())
            }
            Err(e) => {
                // It may have been applied: read the grid size again before anything else.
                self.target.as_mut().expect("set up").grid_stale = true;
                Err(e)
            }
        }
    }

    fn check_cells(&mut self) {
        let Some(t) = &self.target else { return };
        let pct = t.cells * 100 / self.cfg.max_cells.max(1);
        let warn_at = u64::from(self.cfg.warn_cells_percent);
        if pct >= warn_at && pct >= self.warned_cells_pct + 5 {
            self.warned_cells_pct = pct;
            log::warn!(
                "Spreadsheet {} uses {} of {} cells ({pct}%, sheets.max_cells). At the limit uploading stops (the CSV keeps everything): plan a new spreadsheet and point sheets.spreadsheet at it.",
                self.cfg.spreadsheet_id,
                t.cells,
                self.cfg.max_cells
            );
        }
    }

    fn send_batch(&mut self) -> std::result::Result<(), Stall> {
        let n = self.pending.len().min(self.cfg.batch_rows);
        let first = self.cursor.rows_done;
        let (r1, r2) = (
            self.cursor.sheet_row(first),
            self.cursor.sheet_row(first + n as u64 - 1),
        );
        self.ensure_rows(r2)?;
        let values: Vec<Vec<Value>> = self.pending.iter().take(n).map(|(row, _)| sheet_values(row)).collect();
        let range = format!("{}!A{r1}:I{r2}", quote_tab(&self.cfg.tab));
        self.write_range(range, values)?;
        let (_, end) = self.pending[n - 1];
        self.pending.drain(..n);
        self.cursor.rows_done += n as u64;
        self.cursor.offset_done = end;
        if self.pending.is_empty() {
            self.oldest = None;
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
        log::debug!(
            "Uploaded CSV rows {first}..{} to sheet rows {r1}..{r2}.",
            first + n as u64
        );
        self.recovered();
        Ok(())
    }

    fn recovered(&mut self) {
        if let Some(since) = self.failing_since.take() {
            log::info!(
                "Google Sheets reachable again after {:.0} s; catching up from the CSV.",
                since.elapsed().as_secs_f64()
            );
        }
        self.backoff.reset();
    }
}

impl Cursor {
    fn retarget(mut self, spreadsheet_id: &str, tab: &str) -> Cursor {
        self.spreadsheet_id = spreadsheet_id.to_string();
        self.tab = tab.to_string();
        self
    }
}

/// A 4xx turned into what to do about it.
pub fn explain(e: &ApiError, spreadsheet_id: &str, email: &str) -> String {
    let ApiError::Status {
        code, status, message, ..
    } = e
    else {
        return e.to_string();
    };
    match (*code, status.as_str()) {
        (404, _) => format!("spreadsheet {spreadsheet_id} not found (check sheets.spreadsheet): {message}"),
        (403, "SERVICE_DISABLED") => {
            format!(
                "the Google Sheets API is not enabled for the key's project; enable it in the Cloud console: {message}"
            )
        }
        (403, _) => format!(
            "spreadsheet {spreadsheet_id} is not shared with {email}: share it with that e-mail as Editor ({message})"
        ),
        _ => format!("Google rejected a request: HTTP {code} {status}: {message}"),
    }
}

/// A CSV row as sheet cells: numbers stay numbers (by the `type` column), never a
/// formula (the request is RAW), never null (Sheets would skip the cell). Board text
/// goes to the sheet as the board sent it: the CSV's formula escape (a leading `'`,
/// see [`crate::row::neutralise`]) is for spreadsheet apps opening the CSV, and RAW
/// input already keeps the sheet from evaluating anything.
pub fn sheet_values(row: &Row) -> Vec<Value> {
    row.0
        .iter()
        .enumerate()
        .map(|(col, text)| {
            let kind = row.0.get(4).map(String::as_str).unwrap_or("");
            match (col, kind) {
                (3, "number") => text
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map_or_else(|| Value::from(text.as_str()), Value::from),
                (3, "bool") => match text.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::from(text.as_str()),
                },
                // seq: a number when it fits a double exactly.
                (7, _) => match text.parse::<u64>() {
                    Ok(n) if n < (1 << 53) => Value::from(n),
                    _ => Value::from(text.as_str()),
                },
                (1 | 2 | 3 | 6 | 8, _) => Value::from(crate::row::original(text)),
                _ => Value::from(text.as_str()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_cells() {
        let row = Row([
            "2026-01-01T00:00:00.000Z",
            "d",
            "t",
            "21.50",
            "number",
            "p",
            "b",
            "7",
            "=1+1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect());
        let v = sheet_values(&row);
        assert_eq!(v[3], Value::from(21.5));
        assert_eq!(v[7], Value::from(7u64));
        assert_eq!(v[8], Value::from("=1+1"), "text stays text (sent RAW)");
        let mut text42 = row.clone();
        text42.0[3] = "42".into();
        text42.0[4] = "text".into();
        assert_eq!(
            sheet_values(&text42)[3],
            Value::from("42"),
            "a text that looks like a number stays text"
        );
    }
}
