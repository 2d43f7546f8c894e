//! Commands other than `serve`, one file each: set-up helpers that run once, talk to the
//! outside world and print what they find or make. (`simulate`, a board simulator, stays
//! in `simulate.rs`.)

use crate::config::{self, FileConfig};
use crate::error::{Error, Result};

pub mod fingerprint;
pub mod postgres_check;
pub mod sheets_check;
pub mod token;

/// A check's passing step.
fn ok(msg: impl std::fmt::Display) {
    println!("  ok    {msg}");
}

/// A check's failing step: printed, and the error that ends the check (`what`: "the
/// PostgreSQL check").
fn fail(what: &str, msg: impl std::fmt::Display) -> Error {
    println!("  FAIL  {msg}");
    Error::startup(format!("complete {what}"), "see the FAIL line above")
}

/// The config file a command was given, or the defaults.
fn file_or_defaults(path: Option<&std::path::Path>) -> Result<FileConfig> {
    Ok(match path {
        Some(p) => config::load_file(p)?,
        None => FileConfig::default(),
    })
}
