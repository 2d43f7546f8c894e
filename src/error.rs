//! The top-level error: one of the per-domain errors, printed once by `main`.
//!
//! Each domain (config, CSV, Sheets) has its own error type whose `Display` says what
//! failed and where; this enum only gathers them and decides the exit code.

use std::fmt;

use crate::settings::ConfigError;
use crate::sink::csv::error::CsvError;

#[derive(Debug)]
pub enum Error {
    Config(ConfigError),
    Csv(CsvError),
    /// Any other start-up failure, with what was being done.
    Startup {
        action: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn startup(action: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Error {
        Error::Startup {
            action: action.into(),
            source: source.into(),
        }
    }

    /// 2 for a configuration the user must fix, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => e.fmt(f),
            Error::Csv(e) => e.fmt(f),
            Error::Startup { action, source } => write!(f, "cannot {action}: {source}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl From<CsvError> for Error {
    fn from(e: CsvError) -> Error {
        Error::Csv(e)
    }
}
