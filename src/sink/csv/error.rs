//! What can go wrong with the CSV file, and where: every error names the file and
//! what was being done to it. Below both the sink (`mod.rs`) and start-up recovery
//! (`recover.rs`), which report in it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::sink::csv::encode::HEADER;

/// What went wrong with the CSV file, and where.
#[derive(Debug)]
pub enum CsvError {
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    Header {
        path: PathBuf,
        found: String,
    },
    Parse {
        path: PathBuf,
        source: csv::Error,
    },
    /// Another process holds the file's lock.
    Locked {
        path: PathBuf,
        holder: Option<u32>,
    },
    Closed,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io { path, action, source } => write!(f, "cannot {action} CSV file {}: {source}", path.display()),
            CsvError::Header { path, found } => write!(
                f,
                "CSV file {} has a different header ({found:?}); expected {:?}. It is not a sensorlog file or comes from another version; \
                 refusing to append to it. Move it aside or choose another path with --csv",
                path.display(),
                HEADER.join(",")
            ),
            CsvError::Parse { path, source } => write!(f, "cannot read CSV file {}: {source}", path.display()),
            CsvError::Locked { path, holder } => write!(
                f,
                "CSV file {} is in use by another sensorlog ({}); two daemons on one file would corrupt it. Stop the other one, or give this one its own file with --csv",
                path.display(),
                match holder {
                    Some(pid) => format!("process {pid}"),
                    None => "process unknown".to_string(),
                }
            ),
            CsvError::Closed => write!(f, "the CSV file is closed (the daemon is shutting down)"),
        }
    }
}

impl CsvError {
    /// What kind of failure this is, without the details that change from one
    /// occurrence to the next: the key for rate-limited logging.
    pub fn cause(&self) -> String {
        match self {
            CsvError::Io { action, source, .. } => format!("{action}: {:?}", source.kind()),
            CsvError::Header { .. } => "header".into(),
            CsvError::Parse { .. } => "parse".into(),
            CsvError::Locked { .. } => "locked".into(),
            CsvError::Closed => "closed".into(),
        }
    }
}

impl std::error::Error for CsvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CsvError::Io { source, .. } => Some(source),
            CsvError::Parse { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Maps an I/O error on `path` during `action` to a [`CsvError`].
pub(crate) fn io_err(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> CsvError {
    let path = path.to_path_buf();
    move |source| CsvError::Io { path, action, source }
}
