//! The Google Sheets uploader: one thread that mirrors the CSV into a sheet tab,
//! every row exactly once and in order, and no row able to stop the rows after it.
//!
//! # How exactly-once works
//!
//! CSV row `n` has a fixed home in the sheet: row `n - origin + 2` of the tab (see
//! `cursor`). Batches are written with `values:batchUpdate` to
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
//! # The parts
//!
//! Each part owns its state; they talk through method calls, and only `worker.rs` has
//! `impl Worker`. Imports run one way: `worker` -> `layout_run` -> `retention`,
//! `overview` -> `target` -> `reconcile`, `google` -> `client`, `oauth`, `retry`.
//!
//! - `worker`: the uploader's progress (the cursor, the rows waiting, a refused batch
//!   being narrowed, `narrow`) and the [`Follow`](crate::sink::follower::Follow)
//!   implementation: set-up, batches, rotation (`rotation`), confirmations.
//! - `source`: rows from the channel and read back from the CSV, never past what is
//!   durable; the start-up check of the cursor against the CSV.
//! - `google`: the line to Google: client, token, request pacer, stall watch
//!   (`stall_watch`); every request goes through it.
//! - `target`: the spreadsheet, its tab(s), header and grid size, and every request that
//!   changes them; `reconcile`: the grid as one read of the spreadsheet gives it (at start
//!   and after every ambiguous failure) and what a batch lacks, in one `batchUpdate` sized
//!   to the cell budget (pure).
//! - `cells`: what a row becomes in the sheet (exact numbers, cut cells, placeholders).
//! - [`layout`] (pure), `layout_run`, `retention`, `overview`: the readable layouts, their
//!   retention, and the overview tab kept current between batches.
//! - `refusals`, `stall_watch`: never silent: Google's refusals logged and counted,
//!   a WARN when nothing is confirmed for `sheets.stall_warn_secs`.
//! - `client`, `oauth`, `capped`, `retry`: the REST calls, the OAuth token (its answers
//!   capped in bytes like the API's), the failure classes.
//!
//! # Pace, size and failures
//!
//! Requests are spaced to stay within `sheets.requests_per_minute`; rows are batched up
//! to `sheets.batch_rows` and `sheets.max_request_bytes` (Google recommends at most 2 MB
//! per request), or sent when the oldest has waited `sheets.batch_delay_secs`.
//! Failures are sorted by `retry::classify`. A batch Google refuses as invalid (400) is
//! split until the row at fault is found; that row goes up as a placeholder naming it (one
//! ERROR line) and the upload goes on. At shutdown the uploader gets
//! `sheets.shutdown_timeout_secs` to send what is pending; the rest goes at the next start.

pub(crate) mod capped;
pub(crate) mod cells;
pub(crate) mod client;
pub(crate) mod google;
pub mod layout;
pub(crate) mod layout_run;
pub(crate) mod narrow;
pub(crate) mod oauth;
pub(crate) mod overview;
pub(crate) mod reconcile;
pub(crate) mod refusals;
pub(crate) mod retention;
pub(crate) mod retry;
pub(crate) mod rotation;
pub mod settings;
pub(crate) mod source;
pub(crate) mod stall_watch;
pub(crate) mod target;
pub(crate) mod worker;

use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::sink::csv::CsvSink;
use crate::sink::cursor::{self, Cursor};
use crate::sink::follower::{self, rows::header_len};
use crate::stats::Stats;
use settings::SheetsConfig;

use source::Source;
use worker::Worker;

/// Messages (not rows) the channel holds; rows are bounded by `sheets.channel_rows`.
const CHANNEL_MESSAGES: usize = 1 << 16;

/// Handle kept by the daemon: the uploader's thread.
pub struct Uploader {
    thread: follower::Thread,
    shutdown_timeout: Duration,
}

impl Uploader {
    /// Checks the key file (a bad one stops the daemon at start) and the saved cursor
    /// against the CSV, connects the channel to the CSV sink, and starts the uploader
    /// thread. The daemon calls this before it accepts any board, so the cursor check
    /// sees the file as the last run left it. Google itself is contacted by the thread:
    /// a network that is down at start-up must not stop ingest.
    pub fn start(cfg: SheetsConfig, sink: &Arc<CsvSink>, stats: Arc<Stats>) -> Result<Uploader> {
        let key = oauth::read_key(&cfg.key_file).map_err(|e| Error::startup("start the Google Sheets uploader", e))?;
        let saved =
            cursor::load(&cfg.cursor_file).map_err(|e| Error::startup("start the Google Sheets uploader", e))?;
        let csv_layout = cfg.layout == settings::SheetsLayout::Csv;
        let saved = match saved {
            Some(c) => Some(
                source::follow_new_file(c, sink.path(), sink.durable_position().1, csv_layout)
                    .map_err(|e| Error::startup(format!("read {}", sink.path().display()), e))?,
            ),
            None => None,
        };
        let before = saved.as_ref().map(|c| (c.rows_done, c.offset_done));
        let saved = match saved {
            Some(c) => Some(
                source::verify_cursor(c, sink.path(), sink.durable_position().1).map_err(|e| {
                    Error::startup(
                        format!(
                            "check the Sheets cursor {} against {}",
                            cfg.cursor_file.display(),
                            sink.path().display()
                        ),
                        e,
                    )
                })?,
            ),
            None => None,
        };
        // A readable layout's state describes the sheet up to the saved position only: if
        // the check moved the cursor, replay the CSV from its start (same rows, same
        // cells), leaving out the readings retention deleted (`layout::State::replay`).
        let saved = saved.map(|c| match (&c.layout, &before) {
            (Some(state), Some((rows, offset))) if (c.rows_done, c.offset_done) != (*rows, *offset) => {
                let replay = state.replay();
                let deleted: u64 = replay.replay_skip.values().sum();
                log::warn!(
                    "The Sheets cursor moved to match the CSV; the {} layout is rewritten from the CSV's first row (same rows, same cells){}.",
                    state.layout,
                    if deleted > 0 {
                        format!(", leaving out the {deleted} oldest readings that retention deleted from the board tabs")
                    } else {
                        String::new()
                    }
                );
                Cursor {
                    origin: 0,
                    rows_done: 0,
                    offset_done: header_len(),
                    last_row: None,
                    layout: Some(replay),
                    ..c
                }
            }
            _ => c,
        });
        // A cursor from before files were named gets its file's name now (checked above).
        let saved = saved.map(|mut c| {
            if c.file.is_none() && c.rows_done > 0 {
                c.file = source::first_row_id(sink.path(), sink.durable_position().1)
                    .ok()
                    .flatten();
            }
            c
        });
        let (tx, rx) = mpsc::sync_channel(CHANNEL_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        sink.attach_uploader(tx, cfg.channel_rows, Arc::clone(&queued));
        let shutdown_timeout = cfg.shutdown_timeout;
        let source = Source::new(Arc::clone(sink), rx, queued, cfg.batch_rows * 2, cfg.batch_delay)
            .map_err(|e| Error::startup(format!("open {} for the Sheets upload", sink.path().display()), e))?;
        log::info!(
            "Google Sheets upload on: spreadsheet {}, tab {:?} (layout {}), as {} (batches of up to {} rows and {} bytes, at most {} requests/min).",
            cfg.spreadsheet_id,
            cfg.tab,
            match cfg.layout {
                settings::SheetsLayout::PerDevice => "per-device",
                settings::SheetsLayout::Single => "single",
                settings::SheetsLayout::Csv => "csv",
            },
            key.client_email,
            cfg.batch_rows,
            cfg.max_request_bytes,
            cfg.requests_per_minute
        );
        let sink = Arc::clone(sink);
        let thread = follower::spawn("sheets-uploader", move || {
            match Worker::new(cfg, key, saved, sink, stats, source) {
                Ok(mut w) => follower::run(&mut w, shutdown_timeout),
                Err(e) => {
                    log::error!("Google Sheets upload stopped: {e}. Rows stay in the CSV and go up at the next start.")
                }
            }
        })
        .map_err(|e| Error::startup("start the sheets-uploader thread", e))?;
        Ok(Uploader {
            thread,
            shutdown_timeout,
        })
    }

    /// Called after the CSV is closed (which drops the channel's sender): waits for the
    /// uploader to send what it can within its time and save its cursor.
    pub fn finish(self, sink: &CsvSink) {
        sink.detach_uploader();
        if !self.thread.finish(self.shutdown_timeout + Duration::from_secs(5)) {
            log::warn!("The Sheets uploader did not stop in time; its saved cursor is consistent and the rest goes at the next start.");
        }
    }
}
