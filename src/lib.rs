//! sensorlog: collects readings from Wi-Fi sensor boards over TCP, keeps every one
//! of them in a local CSV file, and mirrors them into a Google Sheet.
//!
//! ```text
//!  boards ──TCP──> server (accept loop, one thread per board)
//!                    └─ protocol::framing (lines, length cap) ─> protocol::reading (parse)
//!                         └─ sink::csv (durable append, fsync policy, dedup of resends)
//!                              └─ channel ─> sink::sheets (batches, quota, exactly-once via cursor)
//! ```
//!
//! The CSV is the source of truth: a reading is acknowledged only after it is in the
//! file, and the uploader's progress is a cursor into the file, so no outage, full
//! channel or restart can lose a row or upload it twice. `docs/architecture.md` has
//! the thread diagram and the shutdown order; `docs/protocol.md` the wire format.

#![forbid(unsafe_code)]

pub mod alerts;
pub mod auth;
pub mod boards;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod error;
pub mod http;
pub mod protocol;
pub mod ratelog;
pub mod server;
pub mod settings;
pub mod shutdown;
pub mod simulate;
pub mod sink;
pub mod stats;

#[cfg(test)]
mod testing;

use cli::{Cli, Command, PostgresCommand, SheetsCommand, TlsCommand};
use error::Result;

/// Runs the parsed command line; `main` maps the result to an exit code.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => daemon::serve(config::Config::from_serve_args(&args)?),
        Command::Sheets(SheetsCommand::Check(args)) => cmd::sheets_check::run(&args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Token(c) => cmd::token::run(c),
        Command::Tls(TlsCommand::Fingerprint(args)) => cmd::tls::fingerprint(&args),
        Command::Postgres(PostgresCommand::Check(args)) => cmd::postgres_check::run(&args),
    }
}
