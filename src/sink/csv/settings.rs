//! The `[csv]` and `[dedup]` sections: the keys as written in the file, their defaults
//! and bounds, and the validated [`CsvConfig`] (path, [`Fsync`] policy, [`DedupConfig`])
//! the CSV sink uses (the two layers of `crate::config`, which assembles them).

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{FsyncArg, ServeArgs};
use crate::settings::{section, ConfigError};

section! {
    /// `[csv]` as written in the TOML file.
    raw CsvFile in "csv";
    keys {
        path: PathBuf [DEFAULT_CSV_PATH: default "data/readings.csv"],
        fsync: FsyncArg,
        fsync_interval_ms: u64 [FSYNC_INTERVAL_MS: default 1000, min 1, max 3_600_000, unit " ms"],
    }
}

section! {
    /// `[dedup]` as written in the TOML file.
    raw DedupFile in "dedup";
    /// Bounds of the resend memory (see `sink::csv::dedup`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    config DedupConfig;
    keys {
        /// Boards remembered; the least recently seen is forgotten first.
        max_boards: usize [DEDUP_MAX_BOARDS: default 10_000, min 1, max 10_000_000, unit " boards"]
            => max_boards: usize,
        /// Most recent seqs remembered per boot (current and previous boot of a board).
        window_seqs: usize [DEDUP_WINDOW_SEQS: default 128, min 1, max 1_000_000, unit " seqs"]
            => window_seqs: usize,
        /// How much of the CSV's end is read at start-up to rebuild the memory.
        scan_tail_mib: u64 [DEDUP_SCAN_TAIL_MIB: default 64, min 1, max 1 << 20, unit " MiB"]
            => scan_tail_bytes: u64 = |mib: u64| mib << 20,
    }
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

impl Default for DedupConfig {
    fn default() -> DedupConfig {
        DedupConfig::assemble(&DedupFile::default()).expect("the defaults are within their bounds")
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
        let dedup = DedupConfig::assemble(d)?;
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
