//! The PostgreSQL sink: one thread that copies the CSV into a table, every row
//! exactly once, so that many daemons can feed one database.
//!
//! # How exactly-once works
//!
//! The sink's progress (a [`Position`]: rows confirmed, the byte offset of the next
//! row, and the identity of the last confirmed row) lives in the database, in
//! `sensorlog_cursors`, one row per `(table, source)`. Each batch is one transaction:
//!
//! ```text
//! BEGIN; SELECT cursor FOR UPDATE   -- it must be where this daemon thinks it is
//!        COPY rows FROM STDIN (binary)
//!        UPDATE cursor to just after the batch
//! COMMIT
//! ```
//!
//! The rows and the cursor that confirms them commit together or not at all. After any
//! failure (kill -9 of the daemon at any point, a dropped connection, a lost answer to
//! COMMIT) the sink throws its in-memory position away, reconnects, and reads the
//! cursor back from the database: whatever committed is counted, whatever did not
//! is sent again. A second daemon with the same `source` cannot slip rows in between
//! either: the `FOR UPDATE` check refuses a cursor that moved under us.
//!
//! At start the cursor's last row is checked against the CSV (offset and hash, see
//! [`crate::sink::follower::rows`]). If the file changed under it, the row is searched for in the file and
//! the sink resumes after it, saying so. A file that does not hold it at all is not
//! sent: either another daemon uses the same `source` (its rows must not be doubled or
//! mixed in) or the CSV was replaced, and only the operator knows which; the error in
//! the log says how to start the new file from its first row.
//!
//! When the CSV is rotated while the daemon runs (moved away, a new file started; see
//! [`CsvSink::check_path`]) the sink finishes the old file through the handle it holds
//! (fsynced at the switch), then moves its cursor to the start of the new file in one
//! checked transaction.
//!
//! # A third consumer of the CSV
//!
//! The sink reads the CSV file itself, up to its durable mark, and never talks to the
//! ingest side; what it shares with the uploader (following the file through rotations,
//! the cursor check, retries, the shutdown time, its thread) is [`crate::sink::follower`]: ingest never waits for the database, and an outage costs nothing but
//! catch-up time. Batches are up to `postgres.batch_rows` rows; a partial batch goes
//! once `postgres.pace_ms` has passed since the last one. At shutdown the sink gets
//! `postgres.shutdown_timeout_secs` to send what the CSV holds; the rest goes at the
//! next start.

pub mod copy;
pub mod failure;
pub mod schema;
pub mod settings;
pub(crate) mod tls_client;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::Client;

use crate::error::{Error, Result};
use crate::sink::csv::CsvSink;
use crate::sink::follower::rows::{self, Position, SourceRow, Verified};
use crate::sink::follower::{self, Backoff, Class, Failure, Follow, FollowedCsv, Retry, Wording};

use failure::{advice, classify, describe, Stall};
use schema::Names;
pub use settings::PostgresConfig;

/// Handle kept by the daemon: the sink's thread and its stop flag.
pub struct PgSink {
    thread: follower::Thread,
    stop: Arc<AtomicBool>,
    shutdown_timeout: Duration,
}

impl PgSink {
    /// Starts the sink's thread. The database is contacted by the thread: a database
    /// that is down at start-up must not stop ingest.
    pub fn start(cfg: PostgresConfig, sink: &Arc<CsvSink>) -> Result<PgSink> {
        let stop = Arc::new(AtomicBool::new(false));
        let shutdown_timeout = cfg.shutdown_timeout;
        log::info!(
            "PostgreSQL sink on: {} ({}) table {}, source {:?} (batches of up to {} rows, every {} ms at least when not full).",
            cfg.target,
            cfg.tls.describe(),
            cfg.qualified_table(),
            cfg.source,
            cfg.batch_rows,
            cfg.pace.as_millis()
        );
        let mut worker = Worker::new(cfg, Arc::clone(sink), Arc::clone(&stop));
        let thread = follower::spawn("postgres-sink", move || follower::run(&mut worker, shutdown_timeout))
            .map_err(|e| Error::startup("start the postgres-sink thread", e))?;
        Ok(PgSink {
            thread,
            stop,
            shutdown_timeout,
        })
    }

    /// Starts the sink's shutdown time without waiting for it (see [`PgSink::finish`]).
    pub fn stop_soon(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Called after the CSV is closed: lets the sink send what the CSV holds within
    /// `postgres.shutdown_timeout_secs`. A transaction cut off by the exit is rolled
    /// back by the server, so the cursor in the database stays consistent.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Release);
        if !self.thread.finish(self.shutdown_timeout + Duration::from_secs(2)) {
            log::warn!(
                "The PostgreSQL sink did not stop in time; its cursor in the database is consistent and the rest goes at the next start."
            );
        }
    }
}

struct Worker {
    cfg: PostgresConfig,
    names: Names,
    sink: Arc<CsvSink>,
    stop: Arc<AtomicBool>,
    client: Option<Client>,
    /// Verified position; `None` until the cursor is read back and checked.
    pos: Option<Position>,
    /// The CSV as opened with `pos`, and its generation (see [`crate::sink::follower`]).
    csv: Option<FollowedCsv>,
    buf: Vec<u8>,
    /// Rows of the next batch, read while the server worked through the last one,
    /// and the byte offset they start at.
    ahead: Option<(u64, Vec<SourceRow>)>,
    copy_bufs: copy::CopyBuffers,
    last_batch: Instant,
    /// Set once the shutdown time started: send what the CSV holds, full batch or not.
    stopping: bool,
    retry: Retry,
    /// A catch-up in progress: when it started and the rows to go then.
    backlog: Option<(Instant, u64)>,
    sent_this_run: u64,
}

impl Worker {
    fn new(cfg: PostgresConfig, sink: Arc<CsvSink>, stop: Arc<AtomicBool>) -> Worker {
        // Open the CSV before the first connection: if it is rotated while the database
        // is still unreachable, this handle keeps the file the cursor starts in, whose rows
        // go first (see `set_up`). Opened after connecting, the sink would start in the
        // new file and never send the old one's rows. A failure here is retried there.
        let csv = FollowedCsv::open(&sink).ok();
        Worker {
            names: Names::new(&cfg),
            retry: Retry::new(
                Wording::new(
                    "PostgreSQL",
                    "the PostgreSQL sink",
                    "the database",
                    "postgres.shutdown_timeout_secs",
                ),
                Backoff::new(Duration::from_millis(250), cfg.retry_max, Duration::ZERO),
                cfg.retry_max,
            ),
            cfg,
            sink,
            stop,
            client: None,
            pos: None,
            csv,
            buf: Vec::new(),
            ahead: None,
            copy_bufs: copy::CopyBuffers::default(),
            last_batch: Instant::now(),
            stopping: false,
            backlog: None,
            sent_this_run: 0,
        }
    }

    /// Rows durable in the CSV and not yet confirmed (an estimate before the cursor is read).
    fn left(&self) -> u64 {
        let done = self.pos.map_or(0, |p| p.rows);
        self.sink.durable_position().0.saturating_sub(done)
    }

    /// One unit of work; `Ok(false)` when nothing was due.
    fn step(&mut self) -> std::result::Result<bool, Stall> {
        if self.client.is_none() {
            let client = self.cfg.connect()?;
            self.client = Some(client);
        }
        let Some(pos) = self.pos else {
            self.set_up()?;
            return Ok(true);
        };
        let generation = self.sink.generation();
        if self.csv.as_ref().is_some_and(|c| c.generation() != generation) {
            return self.follow_rotation(pos);
        }
        let (durable_rows, durable_bytes) = self.sink.durable_position();
        if self.sink.generation() != generation {
            return Ok(true); // rotated just now: look again
        }
        if pos.offset >= durable_bytes {
            if let Some((since, rows)) = self.backlog.take() {
                let secs = since.elapsed().as_secs_f64();
                log::info!(
                    "PostgreSQL caught up: {rows} rows in {secs:.1} s ({:.0} rows/s).",
                    rows as f64 / secs.max(1e-6)
                );
            }
            return Ok(false);
        }
        let waiting = durable_rows.saturating_sub(pos.rows);
        let full = waiting >= self.cfg.batch_rows as u64;
        if !full && !self.stopping && self.last_batch.elapsed() < self.cfg.pace {
            return Ok(false);
        }
        if full && self.backlog.is_none() {
            self.backlog = Some((Instant::now(), waiting));
        }
        self.send_upto(pos, durable_bytes)
    }

    /// Copies the rows from `pos` up to byte `upto` of the open file (one batch at most).
    fn send_upto(&mut self, pos: Position, upto: u64) -> std::result::Result<bool, Stall> {
        let Some(file) = self.csv.as_mut().map(FollowedCsv::file_mut) else {
            return Err(Stall::Csv(std::io::Error::other("the CSV is not open")));
        };
        let batch_rows = self.cfg.batch_rows;
        let rows = match self.ahead.take() {
            Some((from, rows)) if from == pos.offset && rows.last().is_some_and(|r| r.end <= upto) => rows,
            _ => rows::read_rows(file, pos.offset, upto, batch_rows, &mut self.buf).map_err(Stall::Csv)?,
        };
        if rows.is_empty() {
            return Ok(false);
        }
        let client = self.client.as_mut().expect("connected above");
        let mut tx = client.transaction()?;
        let in_db = schema::load_cursor(&mut tx, &self.names, &self.cfg.source, true)?;
        if in_db != Some(pos) {
            return Err(Stall::CursorMoved);
        }
        // A full batch means a backlog: read the next one while the server is busy.
        let next_from = rows.last().map_or(upto, |r| r.end);
        let (buf, ahead) = (&mut self.buf, &mut self.ahead);
        let read_ahead = || {
            if rows.len() == batch_rows && next_from < upto {
                if let Ok(next) = rows::read_rows(file, next_from, upto, batch_rows, buf) {
                    *ahead = Some((next_from, next));
                }
            }
        };
        let bad_times = copy::copy_rows(
            &mut tx,
            &self.names,
            &self.cfg.source,
            &rows,
            &mut self.copy_bufs,
            read_ahead,
        )?;
        let next = pos.after(&rows);
        schema::save_cursor(&mut tx, &self.names, &self.cfg.source, &next)?;
        tx.commit()?;
        self.pos = Some(next);
        self.last_batch = Instant::now();
        self.sent_this_run += rows.len() as u64;
        if bad_times > 0 {
            log::warn!(
                "Stored {bad_times} CSV rows before byte {} with received_at = -infinity: their received_at is not a time (edited by hand?).",
                next.offset
            );
        }
        log::debug!(
            "Copied CSV rows {}..{} (bytes {}..{}) into PostgreSQL.",
            pos.rows,
            next.rows,
            pos.offset,
            next.offset
        );
        self.retry.recovered();
        Ok(true)
    }

    /// The CSV was moved away and a new file started (logrotate; see
    /// [`CsvSink::check_path`]). The old file was fsynced at the switch and is still
    /// open here: copy the rest of it, then move the cursor to the start of the new
    /// file, in one transaction with the check that it is where we left it.
    fn follow_rotation(&mut self, pos: Position) -> std::result::Result<bool, Stall> {
        let old_len = match &self.csv {
            Some(c) => c.durable_end(&self.sink).map_err(Stall::Csv)?,
            None => 0,
        };
        if pos.offset < old_len {
            return self.send_upto(pos, old_len);
        }
        let skipped = self.csv.as_ref().map_or(0, |c| c.skipped_files(&self.sink));
        if skipped > 0 {
            log::error!(
                "{} was replaced {} times while the PostgreSQL sink was behind; the rows of the {skipped} files in between are not in PostgreSQL (they are in the moved files).",
                self.sink.path().display(),
                skipped + 1,
            );
        }
        let start = Position::start();
        self.move_cursor(pos, start)?;
        log::info!(
            "{} was rotated: its {} rows are all in PostgreSQL; continuing with the new file.",
            self.sink.path().display(),
            pos.rows
        );
        self.pos = Some(start);
        self.open_csv()?;
        Ok(true)
    }

    /// Opens the CSV and records which generation of it this is; refuses a file that
    /// was replaced while it was being opened.
    fn open_csv(&mut self) -> std::result::Result<(), Stall> {
        match FollowedCsv::open(&self.sink) {
            Ok(csv) => {
                self.csv = Some(csv);
                self.ahead = None;
                Ok(())
            }
            Err(e) => {
                self.pos = None; // replaced meanwhile: set up again
                Err(Stall::Csv(e))
            }
        }
    }

    /// Schema, cursor, and the check of the cursor against the CSV.
    fn set_up(&mut self) -> std::result::Result<(), Stall> {
        let client = self.client.as_mut().expect("connected");
        let migrated = schema::ensure(client, &self.names)?;
        if !migrated.applied.is_empty() {
            log::info!(
                "Created the sensorlog schema in PostgreSQL: table {} (schema version {}){}.",
                self.names.plain,
                migrated.version,
                match migrated.hypertable {
                    Some(true) => ", a TimescaleDB hypertable on received_at",
                    _ => ", a plain table (TimescaleDB not available)",
                }
            );
        }
        let source = self.cfg.source.clone();
        let saved = match schema::load_cursor(client, &self.names, &source, false)? {
            Some(p) => p,
            None => {
                client.execute(
                    &format!(
                        "INSERT INTO {} (target_table, source, rows_done, offset_done) VALUES ($1, $2, 0, $3) ON CONFLICT DO NOTHING",
                        self.names.cursors
                    ),
                    &[&self.names.plain, &source, &(rows::header_len() as i64)],
                )?;
                schema::load_cursor(client, &self.names, &source, false)?.unwrap_or_else(Position::start)
            }
        };
        // Keep a file still open from before a failure: it may be one rotated away
        // since, whose last rows are still to be copied.
        if self.csv.is_none() {
            self.open_csv()?;
        }
        let path = self.sink.path().to_path_buf();
        let csv = self.csv.as_mut().expect("opened above");
        let durable = csv.durable_end(&self.sink).map_err(Stall::Csv)?;
        let file = csv.file_mut();
        let pos = match rows::verify(file, &saved, durable).map_err(Stall::Csv)? {
            Verified::Same => saved,
            Verified::Moved(p) => {
                log::warn!(
                    "The last row PostgreSQL confirmed for source {source:?} moved in {} (from byte {} to byte {}, row {} to {}): the file changed. Resuming after it.",
                    path.display(),
                    saved.last.map_or(0, |l| l.0),
                    p.last.map_or(0, |l| l.0),
                    saved.rows,
                    p.rows
                );
                self.move_cursor(saved, p)?;
                p
            }
            Verified::Missing => return Err(Stall::NotInCsv(saved)),
        };
        self.pos = Some(pos);
        self.last_batch = Instant::now() - self.cfg.pace;
        let waiting = self.left();
        log::info!(
            "PostgreSQL ready: {} table {}, source {source:?}: {} rows already there, {waiting} to send.",
            self.cfg.target,
            self.names.plain,
            pos.rows
        );
        self.retry.recovered();
        Ok(())
    }

    /// Replaces the cursor `from` with `to`, refusing if it changed meanwhile.
    fn move_cursor(&mut self, from: Position, to: Position) -> std::result::Result<(), Stall> {
        let client = self.client.as_mut().expect("connected");
        let mut tx = client.transaction()?;
        if schema::load_cursor(&mut tx, &self.names, &self.cfg.source, true)? != Some(from) {
            return Err(Stall::CursorMoved);
        }
        schema::save_cursor(&mut tx, &self.names, &self.cfg.source, &to)?;
        tx.commit()?;
        Ok(())
    }
}

impl Follow for Worker {
    type Stall = Stall;

    fn stop_requested(&mut self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn stopping(&mut self, _deadline: Instant) {
        self.stopping = true;
    }

    fn backlog(&self) -> u64 {
        self.left()
    }

    fn step(&mut self) -> std::result::Result<bool, Stall> {
        Worker::step(self)
    }

    fn idle(&mut self) {
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Forgets the connection and the position (both are read again) and says why.
    fn failure(&mut self, stall: Stall) -> Failure {
        self.client = None;
        self.pos = None;
        self.ahead = None;
        if matches!(stall, Stall::Csv(_)) {
            self.csv = None;
        }
        self.backlog = None;
        match &stall {
            Stall::Db(e) => match classify(e) {
                Class::Transient => Failure::transient(describe(e)),
                Class::Operator => Failure::operator(format!("{}. To fix: {}", describe(e), advice(e, &self.cfg))),
            },
            Stall::Copy(e) => Failure::transient(format!("the connection failed during COPY: {e}")),
            Stall::Csv(e) => Failure::operator(format!("cannot read {}: {e}", self.sink.path().display())),
            Stall::NotInCsv(saved) => Failure::operator(format!(
                "{} does not hold the last row the database confirmed for source {:?} (row {}, byte {}). Either another daemon uses the same postgres.source (give each daemon its own), or this CSV was replaced: to send it from its first row, delete the cursor: DELETE FROM sensorlog_cursors WHERE target_table = '{}' AND source = '{}'",
                self.sink.path().display(),
                self.cfg.source,
                saved.rows,
                saved.last.map_or(0, |l| l.0),
                self.names.plain,
                self.cfg.source.replace('\'', "''")
            )),
            Stall::CursorMoved => Failure::operator(format!(
                "the cursor of source {:?} in table {} was changed by someone else: is another daemon using the same postgres.source? Give each daemon its own",
                self.cfg.source, self.names.plain
            )),
        }
    }

    fn failing(&self, class: Class) -> Option<String> {
        Some(match class {
            Class::Transient => format!("PostgreSQL at {} is unavailable", self.cfg.target),
            Class::Operator => format!("PostgreSQL at {} refused the rows", self.cfg.target),
        })
    }

    fn pause(&mut self, d: Duration) {
        std::thread::sleep(d.min(Duration::from_millis(20)));
    }

    fn retry(&mut self) -> &mut Retry {
        &mut self.retry
    }

    fn up_to_date(&self) {
        if let Some(p) = self.pos {
            log::info!(
                "PostgreSQL is up to date ({} rows of source {:?}, {} sent in this run).",
                p.rows,
                self.cfg.source,
                self.sent_this_run
            );
        }
    }
}
