//! The `[csv]` and `[dedup]` sections: the keys as written in the file, their defaults
//! and bounds, and the validated [`CsvConfig`] (path, [`Fsync`] policy, [`DedupConfig`])
//! the CSV sink uses (the two layers of `crate::config`, which assembles them).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{FsyncArg, ServeArgs};
use crate::settings::{ConfigError, Limit};

pub const DEFAULT_CSV_PATH: &str = "data/readings.csv";
pub const FSYNC_INTERVAL_MS: Limit<u64> = Limit::new("csv.fsync_interval_ms", 1000, 1, 3_600_000, " ms");
pub const DEDUP_MAX_BOARDS: Limit<usize> = Limit::new("dedup.max_boards", 10_000, 1, 10_000_000, " boards");
pub const DEDUP_WINDOW_SEQS: Limit<usize> = Limit::new("dedup.window_seqs", 128, 1, 1_000_000, " seqs");
pub const DEDUP_SCAN_TAIL_MIB: Limit<u64> = Limit::new("dedup.scan_tail_mib", 64, 1, 1 << 20, " MiB");

/// `[csv]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvFile {
    pub path: Option<PathBuf>,
    pub fsync: Option<FsyncArg>,
    pub fsync_interval_ms: Option<u64>,
}

/// `[dedup]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupFile {
    pub max_boards: Option<usize>,
    pub window_seqs: Option<usize>,
    pub scan_tail_mib: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fsync after every write, before acknowledging.
    Always,
    /// fsync from a background thread at this interval.
    Interval(Duration),
    /// Never fsync explicitly (the OS writes back on its own schedule).
    Never,
}

/// Bounds of the resend memory (see `sink::csv::dedup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// Boards remembered; the least recently seen is forgotten first.
    pub max_boards: usize,
    /// Most recent seqs remembered per boot (current and previous boot of a board).
    pub window_seqs: usize,
    /// How much of the CSV's end is read at start-up to rebuild the memory.
    pub scan_tail_bytes: u64,
}

impl Default for DedupConfig {
    fn default() -> DedupConfig {
        DedupConfig {
            max_boards: DEDUP_MAX_BOARDS.default,
            window_seqs: DEDUP_WINDOW_SEQS.default,
            scan_tail_bytes: DEDUP_SCAN_TAIL_MIB.default << 20,
        }
    }
}

impl DedupConfig {
    pub fn build(d: &DedupFile) -> Result<DedupConfig, ConfigError> {
        Ok(DedupConfig {
            max_boards: DEDUP_MAX_BOARDS.pick(d.max_boards)?,
            window_seqs: DEDUP_WINDOW_SEQS.pick(d.window_seqs)?,
            scan_tail_bytes: DEDUP_SCAN_TAIL_MIB.pick(d.scan_tail_mib)? << 20,
        })
    }
}

/// The validated `[csv]` and `[dedup]` sections: where readings go and how durably.
#[derive(Debug, Clone)]
pub struct CsvConfig {
    pub path: PathBuf,
    pub fsync: Fsync,
    pub dedup: DedupConfig,
}

impl CsvConfig {
    /// Flags beat the file; the file beats the defaults. `c`'s path is already resolved.
    pub fn build(c: &CsvFile, d: &DedupFile, args: &ServeArgs) -> Result<CsvConfig, ConfigError> {
        let dedup = DedupConfig::build(d)?;
        let path = args
            .csv
            .clone()
            .or(c.path.clone())
            .unwrap_or_else(|| DEFAULT_CSV_PATH.into());
        if path.as_os_str().is_empty() {
            return Err(ConfigError::new("csv.path", "must not be empty"));
        }
        let fsync_ms = FSYNC_INTERVAL_MS.pick(args.fsync_interval_ms.or(c.fsync_interval_ms))?;
        let fsync = match args.fsync.or(c.fsync).unwrap_or(FsyncArg::Interval) {
            FsyncArg::Always => Fsync::Always,
            FsyncArg::Interval => Fsync::Interval(Duration::from_millis(fsync_ms)),
            FsyncArg::Never => Fsync::Never,
        };
        Ok(CsvConfig { path, fsync, dedup })
    }
}
