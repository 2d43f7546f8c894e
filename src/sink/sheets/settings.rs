//! The `[sheets]` section: the keys as written in the file, their defaults and bounds,
//! and the validated [`SheetsConfig`] the uploader uses (assembled by `crate::config`,
//! which also hands it `[alerts]`'s rule for a silent board).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::SheetsFlags;
use crate::fleet::boards::settings::{MIN_SILENT_SECS, SILENT_FACTOR};
use crate::settings::{section, ConfigError};

section! {
    /// `[sheets]` as written in the TOML file.
    raw SheetsFile in "sheets";
    #[derive(Debug, Clone)]
    config SheetsConfig;
    parts SheetsParts {
        key_file: PathBuf,
        spreadsheet_id: String,
        tab: String,
        api_base_url: String,
        cursor_file: PathBuf,
        /// How readings are laid out in the spreadsheet (`sheets.layout`).
        layout: SheetsLayout,
        /// Title of the overview tab; empty for none (`sheets.overview_tab`).
        overview_tab: String,
        /// A line chart per board tab (`sheets.charts`).
        charts: bool,
        /// When the overview calls a board `silent`: `[alerts]`'s rule, one rule everywhere
        /// (set by `crate::config`; the alerts' defaults until then).
        silent_factor: f64,
        min_silent: Duration,
    }
    keys {
        enabled: bool,
        key_file: PathBuf,
        spreadsheet: String,
        tab: String [DEFAULT_SHEETS_TAB: default "Readings"],
        batch_rows: usize [BATCH_ROWS: default 2000, min 1, max 20_000, unit " rows"] => batch_rows: usize,
        batch_delay_secs: f64 [BATCH_DELAY_SECS: default 5.0, min 0.0, max 3600.0, unit " seconds"]
            => batch_delay: Duration = Duration::from_secs_f64,
        requests_per_minute: u32 [REQUESTS_PER_MINUTE: default 50, min 1, max 6000] => requests_per_minute: u32,
        api_base_url: String [DEFAULT_SHEETS_API_BASE_URL: default "https://sheets.googleapis.com"],
        channel_rows: usize [CHANNEL_ROWS: default 100_000, min 1, max 10_000_000, unit " rows"]
            => channel_rows: usize,
        shutdown_timeout_secs: u64 [SHUTDOWN_TIMEOUT_SECS: default 10, min 0, max 3600, unit " seconds"]
            => shutdown_timeout: Duration = Duration::from_secs,
        request_timeout_secs: u64 [REQUEST_TIMEOUT_SECS: default 60, min 1, max 600, unit " seconds"]
            => request_timeout: Duration = Duration::from_secs,
        max_cells: u64 [MAX_CELLS: default 10_000_000, min 100, max 1_000_000_000, unit " cells"] => max_cells: u64,
        warn_cells_percent: u8 [WARN_CELLS_PERCENT: default 80, min 1, max 100, unit "%"] => warn_cells_percent: u8,
        grow_rows: u32 [GROW_ROWS: default 10_000, min 10, max 1_000_000, unit " rows"] => grow_rows: u32,
        cursor_file: PathBuf,
        /// Most bytes in one write request's body. Google's limits page recommends at most
        /// 2 MB per request; its hard cap is 10 MiB, and one full row always fits under it
        /// at the upper bound.
        max_request_bytes: usize [MAX_REQUEST_BYTES: default 2_000_000, min 16_384, max 8_000_000, unit " bytes"]
            => max_request_bytes: usize,
        /// Most bytes of one answer from Google. Its largest (a `spreadsheets.get` of 190
        /// tabs with charts, or 10,000 rows of column A for `keep_days`) are well under 1 MB;
        /// a larger one means a wrong `api_base_url` or something between, and is cut
        /// short instead of filling memory.
        max_response_bytes: usize [MAX_RESPONSE_BYTES: default 16_000_000, min 65_536, max 1_000_000_000, unit " bytes"]
            => max_response_bytes: usize,
        layout: String [DEFAULT_SHEETS_LAYOUT: default "per-device"],
        overview_tab: String [DEFAULT_OVERVIEW_TAB: default "Latest"],
        charts: bool,
        /// Board-tab rows older than this many days are deleted; 0 = kept.
        keep_days: u32 [KEEP_DAYS: default 0, min 0, max 36_500, unit " days"] => keep_days: u32,
        /// Oldest rows are deleted to keep the spreadsheet under this share of `max_cells`.
        cell_budget_percent: u8 [CELL_BUDGET_PERCENT: default 90, min 10, max 100, unit "%"]
            => cell_budget_percent: u8,
        /// Most tabs of their own for boards; later boards share one. Below the 200 tabs
        /// per spreadsheet Google once documented (no tab limit is documented today;
        /// docs/sheets.md, "Tabs"), leaving room for the overview, the shared tab and tabs
        /// of your own.
        max_board_tabs: u32 [MAX_BOARD_TABS: default 150, min 1, max 190, unit " tabs"] => max_board_tabs: u32,
        /// The overview is rewritten at least this often without new readings; zero = only
        /// with batches.
        overview_refresh_secs: u64 [OVERVIEW_REFRESH_SECS: default 60, min 0, max 86_400, unit " seconds"]
            => overview_refresh: Duration = Duration::from_secs,
        /// Rows waiting and nothing confirmed for this long: a WARN saying what the upload
        /// waits for.
        stall_warn_secs: u64 [STALL_WARN_SECS: default 60, min 1, max 86_400, unit " seconds"]
            => stall_warn: Duration = Duration::from_secs,
    }
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
        let f = &f;
        let key_file = flags.sheets_key_file.clone().or_else(|| f.key_file.clone());
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
        let spreadsheet = flags
            .spreadsheet
            .clone()
            .or_else(|| f.spreadsheet.clone())
            .ok_or_else(|| {
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
            .or_else(|| f.tab.clone())
            .unwrap_or_else(|| DEFAULT_SHEETS_TAB.into());
        if tab.trim().is_empty() || tab.chars().count() > 100 || tab.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "sheets.tab",
                format!("{tab:?} is not a usable tab name (1-100 printable characters)"),
            ));
        }
        let api_base_url = f
            .api_base_url
            .clone()
            .unwrap_or_else(|| DEFAULT_SHEETS_API_BASE_URL.into())
            .trim_end_matches('/')
            .to_string();
        if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
            return Err(ConfigError::new(
                "sheets.api_base_url",
                format!("{api_base_url:?} must start with https:// (or http:// for a local test server)"),
            ));
        }
        let cursor_file = f.cursor_file.clone().unwrap_or_else(|| {
            let mut name = csv_path.file_name().unwrap_or_default().to_os_string();
            name.push(".sheets-cursor.json");
            csv_path.with_file_name(name)
        });
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
        let overview_tab = f.overview_tab.clone().unwrap_or_else(|| DEFAULT_OVERVIEW_TAB.into());
        if overview_tab.chars().count() > 100
            || overview_tab.chars().any(|c| c.is_control() || "[]*?/\\:".contains(c))
            || (!overview_tab.is_empty() && overview_tab.trim().is_empty())
        {
            return Err(ConfigError::new(
                "sheets.overview_tab",
                format!("{overview_tab:?} is not a usable tab name (up to 100 printable characters, none of [ ] * ? / \\ :; \"\" for no overview)"),
            ));
        }
        let parts = SheetsParts {
            key_file,
            spreadsheet_id,
            tab,
            api_base_url,
            cursor_file,
            layout,
            overview_tab,
            charts: f.charts.unwrap_or(true),
            silent_factor: SILENT_FACTOR.default,
            min_silent: Duration::from_secs(MIN_SILENT_SECS.default),
        };
        let config = SheetsConfig::assemble(f, parts)?;
        check_key_file(&config.key_file)?;
        Ok(Some(config))
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
