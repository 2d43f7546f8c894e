//! sensorlog: collects readings from Wi-Fi sensor boards over TCP, keeps every one
//! of them in a local CSV file, and mirrors them into a Google Sheet.
//!
//! ```text
//!  boards ──TCP──> server (accept loop, one thread per board)
//!                    └─ protocol::framing (lines, length cap) ─> protocol::reading (parse)
//!                         └─ sink::csv (durable append, fsync policy, dedup of resends)
//!                              └─ channel ─> sink::sheets (batches, quota, exactly-once via cursor)
//!                              └─ the file ──> sink::postgres (COPY, exactly-once via cursor)
//!                                 (both are followers of the CSV: sink::follower)
//! ```
//!
//! The CSV is the source of truth: a reading is acknowledged only after it is in the
//! file, and every sink's progress is a cursor into the file, so no outage, full
//! channel or restart can lose a row or store it twice. `docs/architecture.md` has the
//! module map, the thread diagram, the shutdown order and what a new sink implements;
//! `docs/protocol.md` the wire format.

#![forbid(unsafe_code)]

pub(crate) mod auth;
pub mod cli;
pub(crate) mod cmd;
pub mod config;
pub(crate) mod daemon;
pub mod error;
pub mod fleet;
pub mod protocol;
pub(crate) mod ratelog;
pub mod server;
pub mod settings;
pub(crate) mod shutdown;
pub(crate) mod simulate;
pub mod sink;
pub(crate) mod small_file;
pub(crate) mod stats;

/// The unit tests' pseudo-random generator: the one the integration tests and benches use.
#[cfg(test)]
#[path = "../tests/util/rng.rs"]
#[allow(dead_code)] // from_clock: the integration tests'
mod testing;

/// The unit tests' directory for `tag`: `sensorlog-TAG-PID` in the temporary directory,
/// emptied and made again on each call (tests run in parallel: each passes its own tag).
#[cfg(test)]
pub(crate) fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sensorlog-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

use cli::{Cli, Command, PostgresCommand, SheetsCommand, TlsCommand};
use error::Result;

/// Runs the parsed command line; `main` maps the result to an exit code.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => daemon::serve(config::Config::from_serve_args(&args)?),
        Command::Sheets(SheetsCommand::Check(args)) => cmd::sheets_check::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Token(c) => cmd::token::run(c),
        Command::Tls(TlsCommand::Fingerprint(args)) => cmd::fingerprint::fingerprint(&args),
        Command::Postgres(PostgresCommand::Check(args)) => cmd::postgres_check::run(&args),
    }
}
