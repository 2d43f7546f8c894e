//! The `[sheets]` section: the keys as written in the file, their defaults and bounds,
//! and the validated [`SheetsConfig`] the uploader uses (assembled by `crate::config`,
//! which also hands it `[alerts]`'s rule for a silent board).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::SheetsFlags;
use crate::fleet::boards::settings::{MIN_SILENT_SECS, SILENT_FACTOR};
use crate::settings::{ConfigError, Limit};

pub const DEFAULT_SHEETS_TAB: &str = "Readings";
pub const DEFAULT_SHEETS_API_BASE_URL: &str = "https://sheets.googleapis.com";
pub const DEFAULT_SHEETS_LAYOUT: &str = "per-device";
pub const DEFAULT_OVERVIEW_TAB: &str = "Latest";
pub const BATCH_ROWS: Limit<usize> = Limit::new("sheets.batch_rows", 2000, 1, 20_000, " rows");
pub const BATCH_DELAY_SECS: Limit<f64> = Limit::new("sheets.batch_delay_secs", 5.0, 0.0, 3600.0, " seconds");
pub const REQUESTS_PER_MINUTE: Limit<u32> = Limit::new("sheets.requests_per_minute", 50, 1, 6000, "");
pub const CHANNEL_ROWS: Limit<usize> = Limit::new("sheets.channel_rows", 100_000, 1, 10_000_000, " rows");
pub const SHUTDOWN_TIMEOUT_SECS: Limit<u64> = Limit::new("sheets.shutdown_timeout_secs", 10, 0, 3600, " seconds");
pub const REQUEST_TIMEOUT_SECS: Limit<u64> = Limit::new("sheets.request_timeout_secs", 60, 1, 600, " seconds");
pub const MAX_CELLS: Limit<u64> = Limit::new("sheets.max_cells", 10_000_000, 100, 1_000_000_000, " cells");
pub const WARN_CELLS_PERCENT: Limit<u8> = Limit::new("sheets.warn_cells_percent", 80, 1, 100, "%");
pub const GROW_ROWS: Limit<u32> = Limit::new("sheets.grow_rows", 10_000, 10, 1_000_000, " rows");
/// Google's limits page recommends at most 2 MB per request; its hard cap is 10 MiB, and
/// one full row always fits under it at the upper bound.
pub const MAX_REQUEST_BYTES: Limit<usize> =
    Limit::new("sheets.max_request_bytes", 2_000_000, 16_384, 8_000_000, " bytes");
pub const KEEP_DAYS: Limit<u32> = Limit::new("sheets.keep_days", 0, 0, 36_500, " days");
pub const CELL_BUDGET_PERCENT: Limit<u8> = Limit::new("sheets.cell_budget_percent", 90, 10, 100, "%");
/// Board tabs before boards share one: below the 200 tabs per spreadsheet Google once
/// documented (no tab limit is documented today; docs/sheets.md, "Tabs"), leaving
/// room for the overview, the shared tab and tabs of your own.
pub const MAX_BOARD_TABS: Limit<u32> = Limit::new("sheets.max_board_tabs", 150, 1, 190, " tabs");
pub const OVERVIEW_REFRESH_SECS: Limit<u64> = Limit::new("sheets.overview_refresh_secs", 60, 0, 86_400, " seconds");
pub const STALL_WARN_SECS: Limit<u64> = Limit::new("sheets.stall_warn_secs", 60, 1, 86_400, " seconds");

/// `[sheets]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheetsFile {
    pub enabled: Option<bool>,
    pub key_file: Option<PathBuf>,
    pub spreadsheet: Option<String>,
    pub tab: Option<String>,
    pub batch_rows: Option<usize>,
    pub batch_delay_secs: Option<f64>,
    pub requests_per_minute: Option<u32>,
    pub api_base_url: Option<String>,
    pub channel_rows: Option<usize>,
    pub shutdown_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub max_cells: Option<u64>,
    pub warn_cells_percent: Option<u8>,
    pub grow_rows: Option<u32>,
    pub cursor_file: Option<PathBuf>,
    pub max_request_bytes: Option<usize>,
    pub layout: Option<String>,
    pub overview_tab: Option<String>,
    pub charts: Option<bool>,
    pub keep_days: Option<u32>,
    pub cell_budget_percent: Option<u8>,
    pub max_board_tabs: Option<u32>,
    pub overview_refresh_secs: Option<u64>,
    pub stall_warn_secs: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct SheetsConfig {
    pub key_file: PathBuf,
    pub spreadsheet_id: String,
    pub tab: String,
    pub batch_rows: usize,
    pub batch_delay: Duration,
    pub requests_per_minute: u32,
    pub api_base_url: String,
    pub channel_rows: usize,
    pub shutdown_timeout: Duration,
    pub request_timeout: Duration,
    pub max_cells: u64,
    pub warn_cells_percent: u8,
    pub grow_rows: u32,
    pub cursor_file: PathBuf,
    /// Most bytes in one write request's body (Google recommends at most 2 MB).
    pub max_request_bytes: usize,
    /// How readings are laid out in the spreadsheet (`sheets.layout`).
    pub layout: SheetsLayout,
    /// Title of the overview tab; empty for none (`sheets.overview_tab`).
    pub overview_tab: String,
    /// A line chart per board tab (`sheets.charts`).
    pub charts: bool,
    /// Board-tab rows older than this many days are deleted; 0 = kept (`sheets.keep_days`).
    pub keep_days: u32,
    /// Oldest rows are deleted to keep the spreadsheet under this share of `max_cells`.
    pub cell_budget_percent: u8,
    /// Most tabs of their own for boards; later boards share one (`sheets.max_board_tabs`).
    pub max_board_tabs: u32,
    /// The overview is rewritten at least this often without new readings; zero = only
    /// with batches (`sheets.overview_refresh_secs`).
    pub overview_refresh: Duration,
    /// Rows waiting and nothing confirmed for this long: a WARN saying what the upload
    /// waits for (`sheets.stall_warn_secs`).
    pub stall_warn: Duration,
    /// When the overview calls a board `silent`: `[alerts]`'s rule, one rule everywhere
    /// (set by `crate::config`; the alerts' defaults until then).
    pub silent_factor: f64,
    pub min_silent: Duration,
}

/// `sheets.layout`: see `sink::sheets::layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SheetsLayout {
    /// A tab per board, one row per reading, a column per field (the default).
    PerDevice,
    /// One tab for all boards, with a `device` column.
    Single,
    /// The CSV's rows as they are, in `sheets.tab` (the layout before issue 10).
    Csv,
}

/// A missing, unreadable or malformed service-account key is a configuration error,
/// found before anything is written (not even the CSV header). The checks are the
/// uploader's own ([`crate::sink::sheets::oauth::read_key`]); their messages never
/// quote the key's content.
fn check_key_file(path: &Path) -> Result<(), ConfigError> {
    crate::sink::sheets::oauth::read_key(path)
        .map(drop)
        .map_err(|e| ConfigError::new("sheets.key_file", e.0))
}

impl SheetsConfig {
    /// `None` when upload is off: no key file anywhere, `enabled = false`, or `--no-sheets`.
    /// Flags beat the file; `f`'s paths are already resolved.
    pub fn build(f: SheetsFile, flags: &SheetsFlags, csv_path: &Path) -> Result<Option<SheetsConfig>, ConfigError> {
        let key_file = flags.sheets_key_file.clone().or(f.key_file);
        let enabled = !flags.no_sheets && f.enabled.unwrap_or(key_file.is_some());
        if !enabled {
            // A spreadsheet without a key is a half-done set-up, not a choice: say so
            // (an explicit `enabled = false` or --no-sheets is a choice, and stays quiet).
            let spreadsheet_given = flags.spreadsheet.is_some() || f.spreadsheet.is_some();
            if spreadsheet_given && key_file.is_none() && !flags.no_sheets && f.enabled.is_none() {
                log::warn!(
                    "Google Sheets: off: sheets.spreadsheet is set but sheets.key_file is not. Set sheets.key_file (or --sheets-key-file) to the service account's JSON key to upload; set sheets.enabled = false to keep Sheets off without this warning."
                );
            }
            return Ok(None);
        }
        let key_file = key_file.ok_or_else(|| {
            ConfigError::new(
                "sheets.key_file",
                "is required when sheets.enabled = true (the service-account JSON key)",
            )
        })?;
        let spreadsheet = flags.spreadsheet.clone().or(f.spreadsheet).ok_or_else(|| {
            ConfigError::new(
                "sheets.spreadsheet",
                "is required when Sheets upload is on (the spreadsheet id or its URL)",
            )
        })?;
        let spreadsheet_id = spreadsheet_id(&spreadsheet).ok_or_else(|| {
            ConfigError::new(
                "sheets.spreadsheet",
                format!("{spreadsheet:?} is neither a spreadsheet id nor a https://docs.google.com/spreadsheets/d/<id>/... URL"),
            )
        })?;
        let tab = flags
            .sheets_tab
            .clone()
            .or(f.tab)
            .unwrap_or_else(|| DEFAULT_SHEETS_TAB.into());
        if tab.trim().is_empty() || tab.chars().count() > 100 || tab.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "sheets.tab",
                format!("{tab:?} is not a usable tab name (1-100 printable characters)"),
            ));
        }
        let batch_rows = BATCH_ROWS.pick(f.batch_rows)?;
        let batch_delay = Duration::from_secs_f64(BATCH_DELAY_SECS.pick(f.batch_delay_secs)?);
        let requests_per_minute = REQUESTS_PER_MINUTE.pick(f.requests_per_minute)?;
        let api_base_url = f
            .api_base_url
            .unwrap_or_else(|| DEFAULT_SHEETS_API_BASE_URL.into())
            .trim_end_matches('/')
            .to_string();
        if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
            return Err(ConfigError::new(
                "sheets.api_base_url",
                format!("{api_base_url:?} must start with https:// (or http:// for a local test server)"),
            ));
        }
        let channel_rows = CHANNEL_ROWS.pick(f.channel_rows)?;
        let shutdown_timeout = SHUTDOWN_TIMEOUT_SECS.secs(f.shutdown_timeout_secs)?;
        let request_timeout = REQUEST_TIMEOUT_SECS.secs(f.request_timeout_secs)?;
        let max_cells = MAX_CELLS.pick(f.max_cells)?;
        let warn_cells_percent = WARN_CELLS_PERCENT.pick(f.warn_cells_percent)?;
        let grow_rows = GROW_ROWS.pick(f.grow_rows)?;
        let cursor_file = f.cursor_file.unwrap_or_else(|| {
            let mut name = csv_path.file_name().unwrap_or_default().to_os_string();
            name.push(".sheets-cursor.json");
            csv_path.with_file_name(name)
        });
        let max_request_bytes = MAX_REQUEST_BYTES.pick(f.max_request_bytes)?;
        let layout = match f.layout.as_deref().unwrap_or(DEFAULT_SHEETS_LAYOUT) {
            "per-device" => SheetsLayout::PerDevice,
            "single" => SheetsLayout::Single,
            "csv" => SheetsLayout::Csv,
            other => {
                return Err(ConfigError::new(
                    "sheets.layout",
                    format!("{other:?} is not a layout; use \"per-device\", \"single\" or \"csv\""),
                ))
            }
        };
        let overview_tab = f.overview_tab.unwrap_or_else(|| DEFAULT_OVERVIEW_TAB.into());
        if overview_tab.chars().count() > 100
            || overview_tab.chars().any(|c| c.is_control() || "[]*?/\\:".contains(c))
            || (!overview_tab.is_empty() && overview_tab.trim().is_empty())
        {
            return Err(ConfigError::new(
                "sheets.overview_tab",
                format!("{overview_tab:?} is not a usable tab name (up to 100 printable characters, none of [ ] * ? / \\ :; \"\" for no overview)"),
            ));
        }
        check_key_file(&key_file)?;
        Ok(Some(SheetsConfig {
            layout,
            overview_tab,
            charts: f.charts.unwrap_or(true),
            max_board_tabs: MAX_BOARD_TABS.pick(f.max_board_tabs)?,
            keep_days: KEEP_DAYS.pick(f.keep_days)?,
            cell_budget_percent: CELL_BUDGET_PERCENT.pick(f.cell_budget_percent)?,
            overview_refresh: OVERVIEW_REFRESH_SECS.secs(f.overview_refresh_secs)?,
            stall_warn: STALL_WARN_SECS.secs(f.stall_warn_secs)?,
            silent_factor: SILENT_FACTOR.default,
            min_silent: Duration::from_secs(MIN_SILENT_SECS.default),
            max_request_bytes,
            key_file,
            spreadsheet_id,
            tab,
            batch_rows,
            batch_delay,
            requests_per_minute,
            api_base_url,
            channel_rows,
            shutdown_timeout,
            request_timeout,
            max_cells,
            warn_cells_percent,
            grow_rows,
            cursor_file,
        }))
    }
}

/// Accepts a bare id or a `.../spreadsheets/d/<id>/edit#gid=0` URL.
pub fn spreadsheet_id(s: &str) -> Option<String> {
    let s = s.trim();
    let id = match s.split_once("/spreadsheets/d/") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(""),
        None if s.contains('/') => return None,
        None => s,
    };
    let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreadsheet_ids() {
        assert_eq!(spreadsheet_id("abc-_1").as_deref(), Some("abc-_1"));
        assert_eq!(
            spreadsheet_id("https://docs.google.com/spreadsheets/d/XY/edit").as_deref(),
            Some("XY")
        );
        assert_eq!(spreadsheet_id("https://example.com/x"), None);
        assert_eq!(spreadsheet_id("a b"), None);
    }
}
