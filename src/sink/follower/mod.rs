//! What every consumer of the CSV shares: the Sheets uploader, the PostgreSQL sink, and
//! whatever sink comes next. A sink is the part that differs (how to send a batch, how
//! to store its position); the follower is the rest.
//!
//! # The contract
//!
//! - [`file`]: the CSV is followed through its rotations ([`FollowedCsv`]): the file being
//!   read is kept open with its generation, read up to its durable end (never past
//!   [`crate::sink::csv::CsvSink::durable_position`]), and finished before the next file.
//! - [`rows`]: rows are read from a byte offset with their identity (start offset and a
//!   hash of their bytes, [`rows::row_hash`]); a saved position is checked against the
//!   file before a row is sent ([`rows::verify`]).
//! - `retry`: a failure is transient or needs the operator ([`Class`]); transient ones
//!   back off, operator ones retry slowly; an outage is logged once at its start and once
//!   at its end.
//! - [`run`]: the loop on the sink's own thread ([`spawn`]): one step at a time; at
//!   shutdown, the sink's grace time to send what the CSV holds, then a last word on what
//!   is left (it goes at the next start).
//!
//! # A new sink
//!
//! Implement [`Follow`]: `step` does one unit of work (set up, follow a rotation, send
//! one batch and store the position it reached, atomically with the batch or after the
//! other side confirmed it); `failure` sorts what went wrong. Start it with [`spawn`]
//! and, at shutdown, stop it and [`Thread::finish`] it after `CsvSink::close`.

pub(crate) mod file;
pub(crate) mod retry;
pub mod rows;

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use file::FollowedCsv;
pub use retry::{Backoff, Class, Failure, Report, Retry, Wording};

/// What a sink tells the follower. See the module docs.
pub trait Follow {
    /// Why an attempt failed, in the sink's own terms.
    type Stall;

    /// Whether the daemon asked the sink to stop (checked once per turn).
    fn stop_requested(&mut self) -> bool;

    /// The shutdown deadline was set: from now on, send what the CSV holds without
    /// waiting for a batch to fill, and bound requests by it.
    fn stopping(&mut self, deadline: Instant);

    /// Rows in the CSV not yet stored by the sink.
    fn backlog(&self) -> u64;

    /// One unit of work (set-up, a rotation, one batch); `Ok(false)` when nothing was due.
    fn step(&mut self) -> Result<bool, Self::Stall>;

    /// After a step found nothing due while stopping: whether everything is stored.
    fn caught_up(&self) -> bool {
        true
    }

    /// Nothing was due: wait a little for rows.
    fn idle(&mut self);

    /// Sorts a failure and forgets what it made stale (a connection, a position).
    fn failure(&mut self, stall: Self::Stall) -> Failure;

    /// What the log calls the other side in a failure of this class (no period):
    /// "PostgreSQL at db:5432 is unavailable"; `None` for [`Wording::remote`].
    fn failing(&self, _class: Class) -> Option<String> {
        None
    }

    /// Waits up to `d` while backing off (the uploader takes rows from its channel).
    fn pause(&mut self, d: Duration);

    /// The sink's retry state (its backoff, its slow schedule, the outage).
    fn retry(&mut self) -> &mut Retry;

    /// The last word when every row is stored (an INFO line with the sink's figures).
    fn up_to_date(&self);
}

/// Runs a sink until it is told to stop and has used its `grace` time (or sent
/// everything).
pub fn run<F: Follow>(sink: &mut F, grace: Duration) {
    let wording = sink.retry().wording();
    let mut stop_at: Option<Instant> = None;
    loop {
        if stop_at.is_none() && sink.stop_requested() {
            let deadline = Instant::now() + grace;
            stop_at = Some(deadline);
            sink.stopping(deadline);
            let left = sink.backlog();
            if left > 0 {
                log::info!(
                    "Sending the remaining {left} rows to {} (up to {} s, {}).",
                    wording.remote,
                    grace.as_secs(),
                    wording.grace_key
                );
            }
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        match sink.step() {
            Ok(true) => {}
            Ok(false) => {
                if stop_at.is_some() && sink.caught_up() {
                    break;
                }
                sink.idle();
            }
            Err(stall) => stalled(sink, stall, stop_at),
        }
    }
    let left = sink.backlog();
    if left > 0 {
        log::warn!(
            "Stopped {} with {left} rows not yet in {}; they are in the CSV and go at the next start.",
            wording.sink,
            wording.store
        );
    } else {
        sink.up_to_date();
    }
}

/// Logs a failure and waits before the next attempt, no longer than the shutdown
/// deadline, and no longer once a stop is asked for (the loop then sets the deadline).
fn stalled<F: Follow>(sink: &mut F, stall: F::Stall, stop_at: Option<Instant>) {
    let failure = sink.failure(stall);
    let (wait, report) = sink.retry().failed(&failure);
    let message = failure.message.trim_end_matches([';', '.', ' ']);
    let who = sink
        .failing(failure.class)
        .unwrap_or_else(|| sink.retry().wording().remote.into());
    let left = match sink.backlog() {
        1 => "1 row waits".to_string(),
        n => format!("{n} rows wait"),
    };
    match report {
        Report::Error => log::error!(
            "{who}: {message}. Retrying in {} s; {left} in the CSV, nothing is lost.",
            wait.as_secs()
        ),
        Report::Warn => log::warn!(
            "{who}: {message}. Retrying in {:.1} s; {left} in the CSV.",
            wait.as_secs_f64()
        ),
        Report::Debug => log::debug!("{who} (still): {message}."),
    }
    let until = Instant::now() + wait;
    let until = stop_at.map_or(until, |s| s.min(until));
    while Instant::now() < until {
        if stop_at.is_none() && sink.stop_requested() {
            break;
        }
        sink.pause(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200)),
        );
    }
}

/// A sink's thread, and the signal that it has finished.
pub struct Thread {
    thread: Option<JoinHandle<()>>,
    done: Receiver<()>,
}

/// Starts `body` on a thread of its own, named `name`.
pub fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<Thread> {
    let (done_tx, done) = mpsc::channel();
    let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
        body();
        let _ = done_tx.send(());
    })?;
    Ok(Thread {
        thread: Some(thread),
        done,
    })
}

impl Thread {
    /// Waits up to `wait` for the thread to finish; `false` if it did not (it is left
    /// behind: the process is about to exit).
    pub fn finish(mut self, wait: Duration) -> bool {
        match self.done.recv_timeout(wait) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }
}
