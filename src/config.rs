//! Validated configuration: TOML file + flags → [`Config`], checked once at start.
//!
//! Two layers, as in ripgrep: [`FileConfig`] mirrors the TOML file exactly (unknown
//! keys are refused so a typo cannot silently fall back to a default), and [`Config`]
//! is what the rest of the daemon sees, with every default filled in and every limit
//! checked. Defaults are the named constants below, unit in the name. Errors name the
//! key (as written in the file) and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::{FsyncArg, ServeArgs, SheetsFlags};
use crate::settings::in_range;
pub use crate::settings::ConfigError;

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8090";
pub const DEFAULT_CSV_PATH: &str = "data/readings.csv";
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_LINE_BYTES: usize = 4096;
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;
pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
pub const DEFAULT_THREAD_STACK_KIB: usize = 128;
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 5;
pub const DEFAULT_FSYNC_INTERVAL_MS: u64 = 1000;
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 64;
pub const DEFAULT_LINE_TIMEOUT_SECS: u64 = 60;
/// `server.proxy_header_timeout_secs`: how long a trusted proxy has to send the PROXY header.
pub const DEFAULT_PROXY_HEADER_TIMEOUT_SECS: u64 = 5;
pub const DEFAULT_DEDUP_MAX_BOARDS: usize = 10_000;
pub const DEFAULT_DEDUP_WINDOW_SEQS: usize = 128;
pub const DEFAULT_DEDUP_SCAN_TAIL_MIB: u64 = 64;
pub const DEFAULT_STATS_INTERVAL_SECS: u64 = 60;

pub const DEFAULT_SHEETS_TAB: &str = "Readings";
pub const DEFAULT_SHEETS_API_BASE_URL: &str = "https://sheets.googleapis.com";
pub const DEFAULT_BATCH_ROWS: usize = 2000;
pub const DEFAULT_BATCH_DELAY_SECS: f64 = 5.0;
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 50;
pub const DEFAULT_CHANNEL_ROWS: usize = 100_000;
pub const DEFAULT_SHEETS_SHUTDOWN_SECS: u64 = 10;
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 60;
pub const DEFAULT_MAX_CELLS: u64 = 10_000_000;
pub const DEFAULT_WARN_CELLS_PERCENT: u8 = 80;
pub const DEFAULT_GROW_ROWS: u32 = 10_000;
/// Google's limits page recommends at most 2 MB per request; its hard cap is 10 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 2_000_000;
/// Bounds of `sheets.max_request_bytes` (one full row always fits under Google's 10 MiB).
pub const MIN_REQUEST_BYTES: usize = 16_384;
pub const MAX_REQUEST_BYTES: usize = 8_000_000;

pub const DEFAULT_FAILURES_BEFORE_BACKOFF: u32 = 5;
pub const DEFAULT_MAX_BACKOFF_SECS: u64 = 300;
pub const DEFAULT_TRACKED_ADDRESSES: usize = 10_000;
pub const DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
pub const DEFAULT_TLS_MAX_HANDSHAKES: usize = 256;
/// File names of a generated certificate and key, beside the config file.
pub const SELF_SIGNED_CERT: &str = "sensorlog-cert.pem";
pub const SELF_SIGNED_KEY: &str = "sensorlog-key.pem";
// Dashboard, metrics and silent-board alerts (issue 13).
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8091";
pub const DEFAULT_MAX_EVENT_CLIENTS: usize = 16;
pub const DEFAULT_METRICS_MAX_BOARDS: usize = 100;
pub const DEFAULT_READY_UPLOAD_STALL_SECS: u64 = 600;
pub const DEFAULT_MAX_BOARDS: usize = 10_000;
pub const DEFAULT_MAX_FIELDS: usize = 8;
pub const DEFAULT_CHART_WINDOW_SECS: u64 = 3600;
pub const DEFAULT_CHART_POINTS: usize = 120;
pub const DEFAULT_SILENT_FACTOR: f64 = 5.0;
pub const DEFAULT_MIN_SILENT_SECS: u64 = 120;
pub const DEFAULT_WEBHOOK_QUEUE: usize = 1000;
pub const DEFAULT_WEBHOOK_TIMEOUT_SECS: u64 = 10;

/// The TOML file as written. Every field optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub server: ServerFile,
    #[serde(default)]
    pub csv: CsvFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub dedup: DedupFile,
    #[serde(default)]
    pub sheets: SheetsFile,
    #[serde(default)]
    pub postgres: crate::sink::postgres::settings::PostgresFile,
    #[serde(default)]
    pub auth: AuthFile,
    #[serde(default)]
    pub tls: TlsFile,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub boards: BoardsFile,
    #[serde(default)]
    pub alerts: AlertsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub tokens_file: Option<PathBuf>,
    pub required: Option<bool>,
    pub failures_before_backoff: Option<u32>,
    pub max_backoff_secs: Option<u64>,
    pub tracked_addresses: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub listen: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub self_signed: Option<bool>,
    pub handshake_timeout_secs: Option<u64>,
    pub max_handshakes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub listen: Option<String>,
    pub max_event_clients: Option<usize>,
    pub metrics_max_boards: Option<usize>,
    pub ready_upload_stall_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardsFile {
    pub max_boards: Option<usize>,
    pub max_fields: Option<usize>,
    pub chart_window_secs: Option<u64>,
    pub chart_points: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    pub silent_factor: Option<f64>,
    pub min_silent_secs: Option<u64>,
    pub webhook_url: Option<String>,
    pub webhook_queue: Option<usize>,
    pub webhook_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub max_line_bytes: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub listen_backlog: Option<u32>,
    pub thread_stack_kib: Option<usize>,
    pub shutdown_grace_secs: Option<u64>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub max_connections_per_ip: Option<usize>,
    pub line_timeout_secs: Option<u64>,
    // PROXY protocol (issue 20)
    pub proxy_protocol: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub proxy_header_timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupFile {
    pub max_boards: Option<usize>,
    pub window_seqs: Option<usize>,
    pub scan_tail_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvFile {
    pub path: Option<PathBuf>,
    pub fsync: Option<FsyncArg>,
    pub fsync_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    pub stats_interval_secs: Option<u64>,
}

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

/// Every key the file accepts, as `section.key`; the docs test keeps
/// `config/sensorlog.toml` and docs/configuration.md in step with it.
pub const ALL_KEYS: &[&str] = &[
    "server.listen",
    "server.max_connections",
    "server.max_line_bytes",
    "server.idle_timeout_secs",
    "server.listen_backlog",
    "server.thread_stack_kib",
    "server.shutdown_grace_secs",
    "server.max_connections_per_ip",
    "server.line_timeout_secs",
    "dedup.max_boards",
    "dedup.window_seqs",
    "dedup.scan_tail_mib",
    "csv.path",
    "csv.fsync",
    "csv.fsync_interval_ms",
    "log.stats_interval_secs",
    "sheets.enabled",
    "sheets.key_file",
    "sheets.spreadsheet",
    "sheets.tab",
    "sheets.batch_rows",
    "sheets.batch_delay_secs",
    "sheets.requests_per_minute",
    "sheets.api_base_url",
    "sheets.channel_rows",
    "sheets.shutdown_timeout_secs",
    "sheets.request_timeout_secs",
    "sheets.max_cells",
    "sheets.warn_cells_percent",
    "sheets.grow_rows",
    "sheets.cursor_file",
    "sheets.max_request_bytes",
    "server.allow",
    "server.deny",
    "auth.tokens_file",
    "auth.required",
    "auth.failures_before_backoff",
    "auth.max_backoff_secs",
    "auth.tracked_addresses",
    "tls.listen",
    "tls.cert_file",
    "tls.key_file",
    "tls.self_signed",
    "tls.handshake_timeout_secs",
    "tls.max_handshakes",
    "sheets.layout",
    "sheets.overview_tab",
    "sheets.charts",
    "sheets.keep_days",
    "sheets.cell_budget_percent",
    "sheets.max_board_tabs",
    "sheets.overview_refresh_secs",
    "sheets.stall_warn_secs",
    "postgres.url",
    "postgres.password_file",
    "postgres.table",
    "postgres.source",
    "postgres.batch_rows",
    "postgres.pace_ms",
    "postgres.connect_timeout_secs",
    "postgres.retry_max_secs",
    "postgres.shutdown_timeout_secs",
    "http.listen",
    "http.max_event_clients",
    "http.metrics_max_boards",
    "http.ready_upload_stall_secs",
    "boards.max_boards",
    "boards.max_fields",
    "boards.chart_window_secs",
    "boards.chart_points",
    "alerts.silent_factor",
    "alerts.min_silent_secs",
    "alerts.webhook_url",
    "alerts.webhook_queue",
    "alerts.webhook_timeout_secs",
    "server.proxy_protocol",
    "server.trusted_proxies",
    "server.proxy_header_timeout_secs",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fsync after every write, before acknowledging.
    Always,
    /// fsync from a background thread at this interval.
    Interval(Duration),
    /// Never fsync explicitly (the OS writes back on its own schedule).
    Never,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    pub listen_backlog: u32,
    pub thread_stack_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_connections_per_ip: usize,
    pub line_timeout: Duration,
    pub dedup: DedupConfig,
    pub csv_path: PathBuf,
    pub fsync: Fsync,
    pub stats_interval: Option<Duration>,
    pub sheets: Option<SheetsConfig>,
    pub postgres: Option<crate::sink::postgres::settings::PostgresConfig>,
    pub http: HttpConfig,
    pub boards: BoardsConfig,
    pub alerts: AlertsConfig,
    /// False when `server.listen = ""`: TLS only.
    pub plain_tcp: bool,
    pub access: crate::server::allow::AccessList,
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
    /// `server.proxy_protocol`, `server.trusted_proxies`, `server.proxy_header_timeout_secs`.
    pub proxy: crate::server::proxy::ProxyConfig,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub tokens_file: Option<PathBuf>,
    /// Only meaningful with a tokens file.
    pub required: bool,
    pub backoff: crate::auth::backoff::BackoffConfig,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Generate the certificate and key when the files do not exist.
    pub self_signed: bool,
    pub handshake_timeout: Duration,
    /// TLS handshakes in progress at once; the next connection is closed.
    pub max_handshakes: usize,
}

/// `[http]`: the dashboard, `/metrics`, `/healthz`, `/readyz`, `/api/boards`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `None` when `http.listen = ""` (no HTTP server at all).
    pub listen: Option<SocketAddr>,
    pub max_event_clients: usize,
    pub metrics_max_boards: usize,
    pub ready_upload_stall: Duration,
}

/// `[boards]`: the in-memory live state per board (see `crate::boards`).
#[derive(Debug, Clone)]
pub struct BoardsConfig {
    pub max_boards: usize,
    pub max_fields: usize,
    pub chart_window: Duration,
    pub chart_points: usize,
}

/// `[alerts]`: when a board counts as silent, and the optional webhook.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub silent_factor: f64,
    pub min_silent: Duration,
    pub webhook_url: Option<String>,
    pub webhook_queue: usize,
    pub webhook_timeout: Duration,
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
    /// When the overview calls a board `silent`: `[alerts]`'s rule, one rule everywhere.
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

pub const DEFAULT_SHEETS_LAYOUT: &str = "per-device";
pub const DEFAULT_OVERVIEW_TAB: &str = "Latest";
pub const DEFAULT_CELL_BUDGET_PERCENT: u8 = 90;
pub const DEFAULT_OVERVIEW_REFRESH_SECS: u64 = 60;
pub const DEFAULT_STALL_WARN_SECS: u64 = 60;
/// Board tabs before boards share one: below the 200 tabs per spreadsheet Google once
/// documented (no tab limit is documented today; docs/sheets.md, "Tabs"), leaving
/// room for the overview, the shared tab and tabs of your own.
pub const DEFAULT_MAX_BOARD_TABS: u32 = 150;

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
            max_boards: DEFAULT_DEDUP_MAX_BOARDS,
            window_seqs: DEFAULT_DEDUP_WINDOW_SEQS,
            scan_tail_bytes: DEFAULT_DEDUP_SCAN_TAIL_MIB << 20,
        }
    }
}

/// A configuration error: which key (or file) and why.
fn err(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(key, reason)
}

/// A missing, unreadable or malformed service-account key is a configuration error,
/// found before anything is written (not even the CSV header). The checks are the
/// uploader's own ([`crate::sink::sheets::auth::read_key`]); their messages never
/// quote the key's content.
fn check_key_file(path: &Path) -> Result<(), ConfigError> {
    crate::sink::sheets::auth::read_key(path)
        .map(drop)
        .map_err(|e| err("sheets.key_file", e.0))
}

/// Reads and parses a TOML config file; the error names the file, line and key. Every
/// relative path in the file is made relative to the file's directory
/// ([`FileConfig::paths_beside`]).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(&path.display().to_string(), format!("cannot read config file: {e}")))?;
    parse_file(&text)
        .map(|f| f.paths_beside(path))
        .map_err(|e| ConfigError {
            key: path.display().to_string(),
            reason: e.reason,
        })
}

/// The commented example file: each key's example value is the "expected form" a type
/// error shows (one source of truth with the documentation, held in step by tests/config.rs).
const EXAMPLE_CONFIG: &str = include_str!("../config/sensorlog.toml");

/// The example value of `section.key` in config/sensorlog.toml (commented or not), as TOML.
fn example_value(section: &str, key: &str) -> Option<toml::Value> {
    let mut in_section = false;
    for line in EXAMPLE_CONFIG.lines() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[') {
            in_section = h.trim_end_matches(']').trim() == section;
            continue;
        }
        let l = l.trim_start_matches(['#', ' ']);
        if let Some((k, v)) = l.split_once('=') {
            if in_section && k.trim() == key {
                if let Ok(t) = toml::from_str::<toml::Table>(&format!("v = {}", v.trim())) {
                    return t.get("v").cloned();
                }
            }
        }
    }
    None
}

/// What a key takes, in words with an example: `a string like "0.0.0.0:8090"`.
fn expected_form(section: &str, key: &str, message: &str) -> Option<String> {
    let example = example_value(section, key);
    Some(match example {
        Some(toml::Value::String(s)) => format!("a string like {s:?} (in double quotes)"),
        Some(toml::Value::Integer(i)) => format!("a whole number like {i} (no quotes)"),
        Some(toml::Value::Float(f)) => format!("a number like {f} (no quotes)"),
        Some(toml::Value::Boolean(_)) => "true or false (no quotes)".to_string(),
        Some(toml::Value::Array(a)) if !a.is_empty() => format!("a list like {}", toml::Value::Array(a)),
        Some(toml::Value::Array(_)) => "a list of strings like [\"a\", \"b\"]".to_string(),
        _ => {
            // Not in the example: say it from serde's type name.
            let want = message.rsplit("expected ").next()?.trim();
            match want {
                w if w.starts_with('u') || w.starts_with('i') => "a whole number (no quotes)".into(),
                w if w.starts_with('f') => "a number (no quotes)".into(),
                "a boolean" => "true or false (no quotes)".into(),
                "a string" => "a string in double quotes".into(),
                _ => return None,
            }
        }
    })
}

pub fn parse_file(text: &str) -> Result<FileConfig, ConfigError> {
    toml::from_str(text).map_err(|e| {
        // One line: "line 2, column 9: unknown field `x`, expected one of ...".
        let message = e.message().trim();
        let Some(span) = e.span() else {
            return err("config file", message);
        };
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.len() - line_start + 1;
        let text_of_line = text[line_start..].lines().next().unwrap_or("").trim();
        let at = format!("line {line}, column {column} ({text_of_line:?}): ");
        // A bad value (the error is after the `=`): name the key and the form it takes,
        // not the parser's words ("invalid float, expected nothing", "expected usize").
        let raw_line = text[line_start..].lines().next().unwrap_or("");
        if let Some((k, v)) = raw_line.split_once('=') {
            let on_value = span.start > line_start + k.len();
            let section = text[..line_start]
                .lines()
                .rev()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix('[')
                        .map(|h| h.trim_end_matches(']').trim().to_string())
                })
                .unwrap_or_default();
            let key = k.trim();
            let type_error = !message.contains("unknown variant")
                && ["expected", "wanted", "invalid"].iter().any(|w| message.contains(w));
            if on_value && !section.is_empty() && type_error {
                if let Some(form) = expected_form(&section, key, message) {
                    return err(
                        "config file",
                        format!("{at}{section}.{key}: expected {form}, got {}", v.trim()),
                    );
                }
            }
            if on_value && !section.is_empty() {
                return err("config file", format!("{at}{section}.{key}: {message}"));
            }
        }
        err("config file", format!("{at}{message}"))
    })
}

impl Config {
    /// Builds the validated config for `serve`: defaults < file < flags.
    pub fn from_serve_args(args: &ServeArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        Config::build(file, args)
    }

    pub fn build(file: FileConfig, args: &ServeArgs) -> Result<Config, ConfigError> {
        let s = &file.server;
        let plain_tcp = args.listen.is_some() || s.listen.as_deref().is_none_or(|l| !l.trim().is_empty());
        let listen = match (args.listen, &s.listen) {
            (Some(a), _) => a,
            (None, Some(text)) if text.trim().is_empty() => DEFAULT_LISTEN.parse().expect("valid default"),
            (None, Some(text)) => text.parse().map_err(|_| {
                err(
                    "server.listen",
                    format!("{text:?} is not an ADDRESS:PORT such as 0.0.0.0:8090 or [::]:8090"),
                )
            })?,
            (None, None) => DEFAULT_LISTEN.parse().expect("valid default"),
        };
        let max_connections = in_range(
            "server.max_connections",
            args.max_connections
                .or(s.max_connections)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            1,
            1_000_000,
            "",
        )?;
        let max_line_bytes = in_range(
            "server.max_line_bytes",
            args.max_line_bytes
                .or(s.max_line_bytes)
                .unwrap_or(DEFAULT_MAX_LINE_BYTES),
            16,
            16 * 1024 * 1024,
            " bytes",
        )?;
        let idle = in_range(
            "server.idle_timeout_secs",
            args.idle_timeout_secs
                .or(s.idle_timeout_secs)
                .unwrap_or(DEFAULT_IDLE_TIMEOUT_SECS),
            1,
            7 * 86_400,
            " seconds",
        )?;
        let listen_backlog = in_range(
            "server.listen_backlog",
            args.listen_backlog
                .or(s.listen_backlog)
                .unwrap_or(DEFAULT_LISTEN_BACKLOG),
            1,
            1 << 20,
            "",
        )?;
        let stack_kib = in_range(
            "server.thread_stack_kib",
            args.thread_stack_kib
                .or(s.thread_stack_kib)
                .unwrap_or(DEFAULT_THREAD_STACK_KIB),
            64,
            64 * 1024,
            " KiB",
        )?;
        let grace = in_range(
            "server.shutdown_grace_secs",
            args.shutdown_grace_secs
                .or(s.shutdown_grace_secs)
                .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECS),
            0,
            3600,
            " seconds",
        )?;
        let per_ip = in_range(
            "server.max_connections_per_ip",
            args.max_connections_per_ip
                .or(s.max_connections_per_ip)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_IP),
            1,
            1_000_000,
            "",
        )?;
        let line_timeout = in_range(
            "server.line_timeout_secs",
            args.line_timeout_secs
                .or(s.line_timeout_secs)
                .unwrap_or(DEFAULT_LINE_TIMEOUT_SECS),
            1,
            86_400,
            " seconds",
        )?;
        let d = &file.dedup;
        let dedup = DedupConfig {
            max_boards: in_range(
                "dedup.max_boards",
                d.max_boards.unwrap_or(DEFAULT_DEDUP_MAX_BOARDS),
                1,
                10_000_000,
                " boards",
            )?,
            window_seqs: in_range(
                "dedup.window_seqs",
                d.window_seqs.unwrap_or(DEFAULT_DEDUP_WINDOW_SEQS),
                1,
                1_000_000,
                " seqs",
            )?,
            scan_tail_bytes: in_range(
                "dedup.scan_tail_mib",
                d.scan_tail_mib.unwrap_or(DEFAULT_DEDUP_SCAN_TAIL_MIB),
                1,
                1 << 20,
                " MiB",
            )? << 20,
        };
        let c = &file.csv;
        let csv_path = args
            .csv
            .clone()
            .or(c.path.clone())
            .unwrap_or_else(|| DEFAULT_CSV_PATH.into());
        if csv_path.as_os_str().is_empty() {
            return Err(err("csv.path", "must not be empty"));
        }
        let fsync_ms = in_range(
            "csv.fsync_interval_ms",
            args.fsync_interval_ms
                .or(c.fsync_interval_ms)
                .unwrap_or(DEFAULT_FSYNC_INTERVAL_MS),
            1,
            3_600_000,
            " ms",
        )?;
        let fsync = match args.fsync.or(c.fsync).unwrap_or(FsyncArg::Interval) {
            FsyncArg::Always => Fsync::Always,
            FsyncArg::Interval => Fsync::Interval(Duration::from_millis(fsync_ms)),
            FsyncArg::Never => Fsync::Never,
        };
        let stats = in_range(
            "log.stats_interval_secs",
            args.stats_interval_secs
                .or(file.log.stats_interval_secs)
                .unwrap_or(DEFAULT_STATS_INTERVAL_SECS),
            0,
            86_400,
            " seconds",
        )?;
        let sheets = SheetsConfig::build(file.sheets, &args.sheets, &csv_path)?;
        let access = crate::server::allow::AccessList {
            allow: nets("server.allow", s.allow.as_deref())?,
            deny: nets("server.deny", s.deny.as_deref())?,
        };
        let proxy = proxy_config(s)?;
        let auth = AuthConfig::build(&file.auth)?;
        let tls = TlsConfig::build(&file.tls, args.config.as_deref())?;
        if !plain_tcp && tls.is_none() {
            return Err(err(
                "server.listen",
                "is empty (plain TCP off) but [tls] listen is not set: the daemon would listen nowhere",
            ));
        }
        let postgres =
            crate::sink::postgres::settings::PostgresConfig::build(file.postgres, std::env::var("PGPASSWORD").ok())?;
        let http = HttpConfig::build(&file.http, args.http_listen.as_deref())?;
        let boards = BoardsConfig::build(&file.boards)?;
        let alerts = AlertsConfig::build(file.alerts)?;
        // The overview's `silent` is the dashboard's and the alerts' (issue 10).
        let sheets = sheets.map(|s| SheetsConfig {
            silent_factor: alerts.silent_factor,
            min_silent: alerts.min_silent,
            ..s
        });
        Ok(Config {
            listen,
            max_connections,
            max_line_bytes,
            idle_timeout: Duration::from_secs(idle),
            listen_backlog,
            thread_stack_bytes: stack_kib * 1024,
            shutdown_grace: Duration::from_secs(grace),
            max_connections_per_ip: per_ip,
            line_timeout: Duration::from_secs(line_timeout),
            dedup,
            csv_path,
            fsync,
            stats_interval: (stats > 0).then(|| Duration::from_secs(stats)),
            sheets,
            plain_tcp,
            access,
            auth,
            tls,
            postgres,
            http,
            boards,
            alerts,
            proxy,
        })
    }
}

impl HttpConfig {
    pub fn build(f: &HttpFile, flag: Option<&str>) -> Result<HttpConfig, ConfigError> {
        let text = flag.or(f.listen.as_deref()).unwrap_or(DEFAULT_HTTP_LISTEN).trim();
        let listen = if text.is_empty() {
            None
        } else {
            Some(text.parse().map_err(|_| {
                err(
                    "http.listen",
                    format!(
                        "{text:?} is not an ADDRESS:PORT such as 127.0.0.1:8091 (or \"\" to turn the HTTP server off)"
                    ),
                )
            })?)
        };
        Ok(HttpConfig {
            listen,
            max_event_clients: in_range(
                "http.max_event_clients",
                f.max_event_clients.unwrap_or(DEFAULT_MAX_EVENT_CLIENTS),
                1,
                1024,
                "",
            )?,
            metrics_max_boards: in_range(
                "http.metrics_max_boards",
                f.metrics_max_boards.unwrap_or(DEFAULT_METRICS_MAX_BOARDS),
                0,
                100_000,
                " boards",
            )?,
            ready_upload_stall: Duration::from_secs(in_range(
                "http.ready_upload_stall_secs",
                f.ready_upload_stall_secs.unwrap_or(DEFAULT_READY_UPLOAD_STALL_SECS),
                1,
                7 * 86_400,
                " seconds",
            )?),
        })
    }
}

impl BoardsConfig {
    pub fn build(f: &BoardsFile) -> Result<BoardsConfig, ConfigError> {
        let window = in_range(
            "boards.chart_window_secs",
            f.chart_window_secs.unwrap_or(DEFAULT_CHART_WINDOW_SECS),
            10,
            7 * 86_400,
            " seconds",
        )?;
        Ok(BoardsConfig {
            max_boards: in_range(
                "boards.max_boards",
                f.max_boards.unwrap_or(DEFAULT_MAX_BOARDS),
                1,
                1_000_000,
                " boards",
            )?,
            max_fields: in_range(
                "boards.max_fields",
                f.max_fields.unwrap_or(DEFAULT_MAX_FIELDS),
                1,
                64,
                " fields",
            )?,
            chart_window: Duration::from_secs(window),
            chart_points: in_range(
                "boards.chart_points",
                f.chart_points.unwrap_or(DEFAULT_CHART_POINTS),
                2,
                10_000,
                " points",
            )?,
        })
    }
}

impl AlertsConfig {
    pub fn build(f: AlertsFile) -> Result<AlertsConfig, ConfigError> {
        let factor = f.silent_factor.unwrap_or(DEFAULT_SILENT_FACTOR);
        if !(1.0..=1000.0).contains(&factor) {
            return Err(err(
                "alerts.silent_factor",
                format!("must be between 1 and 1000, got {factor}"),
            ));
        }
        let webhook_url = f.webhook_url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        if let Some(u) = &webhook_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(err(
                    "alerts.webhook_url",
                    format!("{u:?} must start with https:// or http://"),
                ));
            }
        }
        Ok(AlertsConfig {
            silent_factor: factor,
            min_silent: Duration::from_secs(in_range(
                "alerts.min_silent_secs",
                f.min_silent_secs.unwrap_or(DEFAULT_MIN_SILENT_SECS),
                1,
                30 * 86_400,
                " seconds",
            )?),
            webhook_url,
            webhook_queue: in_range(
                "alerts.webhook_queue",
                f.webhook_queue.unwrap_or(DEFAULT_WEBHOOK_QUEUE),
                1,
                1_000_000,
                " alerts",
            )?,
            webhook_timeout: Duration::from_secs(in_range(
                "alerts.webhook_timeout_secs",
                f.webhook_timeout_secs.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT_SECS),
                1,
                600,
                " seconds",
            )?),
        })
    }
}

/// The PROXY protocol settings (issue 20): a mode other than "off" needs trusted proxies.
fn proxy_config(s: &ServerFile) -> Result<crate::server::proxy::ProxyConfig, ConfigError> {
    use crate::server::proxy::{Mode, ProxyConfig};
    let mode = match s.proxy_protocol.as_deref() {
        None => Mode::Off,
        Some(v) => Mode::parse(v).ok_or_else(|| {
            err(
                "server.proxy_protocol",
                format!("is {v:?}; use \"off\", \"v1\", \"v2\" or \"any\""),
            )
        })?,
    };
    let trusted = nets("server.trusted_proxies", s.trusted_proxies.as_deref())?;
    if mode != Mode::Off && trusted.is_empty() {
        return Err(err(
            "server.proxy_protocol",
            format!(
                "is {:?} but server.trusted_proxies is empty: list the load balancers' addresses (CIDRs) allowed to send the header, or anyone could claim any address",
                mode.as_str()
            ),
        ));
    }
    let secs = in_range(
        "server.proxy_header_timeout_secs",
        s.proxy_header_timeout_secs.unwrap_or(DEFAULT_PROXY_HEADER_TIMEOUT_SECS),
        1,
        600,
        " seconds",
    )?;
    Ok(ProxyConfig {
        mode,
        trusted,
        header_timeout: Duration::from_secs(secs),
    })
}

fn nets(key: &str, list: Option<&[String]>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.unwrap_or_default()
        .iter()
        .map(|s| crate::server::allow::parse_net(s).map_err(|r| err(key, r)))
        .collect()
}

impl FileConfig {
    /// The one rule for relative paths: a path written in a config file is relative to
    /// that file's directory; a path given as a flag is relative to the working directory
    /// (flags are never passed through here). Every path key of the file is listed here.
    pub fn paths_beside(mut self, config: &Path) -> FileConfig {
        let c = Some(config);
        for p in [
            &mut self.csv.path,
            &mut self.sheets.key_file,
            &mut self.sheets.cursor_file,
            &mut self.auth.tokens_file,
            &mut self.tls.cert_file,
            &mut self.tls.key_file,
            &mut self.postgres.password_file,
        ] {
            if let Some(path) = p.as_mut() {
                // An empty path stays empty: its key's own check refuses it by name.
                if !path.as_os_str().is_empty() {
                    *path = beside_config(c, path);
                }
            }
        }
        self
    }
}

/// A path in the config file is relative to the config file's directory.
fn beside_config(config: Option<&Path>, p: &Path) -> PathBuf {
    match config.and_then(Path::parent) {
        Some(dir) if p.is_relative() && !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}

impl AuthConfig {
    /// `f`'s paths are already resolved ([`FileConfig::paths_beside`]).
    pub fn build(f: &AuthFile) -> Result<AuthConfig, ConfigError> {
        let tokens_file = f.tokens_file.clone();
        if tokens_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(err("auth.tokens_file", "must not be empty"));
        }
        if f.required == Some(true) && tokens_file.is_none() {
            return Err(err(
                "auth.required",
                "is true but auth.tokens_file is not set (create tokens with `sensorlog token add <device>`)",
            ));
        }
        let failures = in_range(
            "auth.failures_before_backoff",
            f.failures_before_backoff.unwrap_or(DEFAULT_FAILURES_BEFORE_BACKOFF),
            0,
            1000,
            "",
        )?;
        let max_backoff = in_range(
            "auth.max_backoff_secs",
            f.max_backoff_secs.unwrap_or(DEFAULT_MAX_BACKOFF_SECS),
            1,
            86_400,
            " seconds",
        )?;
        let tracked = in_range(
            "auth.tracked_addresses",
            f.tracked_addresses.unwrap_or(DEFAULT_TRACKED_ADDRESSES),
            1,
            10_000_000,
            "",
        )?;
        Ok(AuthConfig {
            required: f.required.unwrap_or(true),
            tokens_file,
            backoff: crate::auth::backoff::BackoffConfig {
                failures_before_backoff: failures,
                max_backoff: Duration::from_secs(max_backoff),
                tracked_addresses: tracked,
            },
        })
    }
}

impl TlsConfig {
    /// `None` when `[tls] listen` is not set (or empty).
    pub fn build(f: &TlsFile, config: Option<&Path>) -> Result<Option<TlsConfig>, ConfigError> {
        let listen = match f.listen.as_deref().map(str::trim) {
            None | Some("") => return Ok(None),
            Some(text) => text.parse().map_err(|_| {
                err(
                    "tls.listen",
                    format!("{text:?} is not an ADDRESS:PORT such as 0.0.0.0:8443 or [::]:8443"),
                )
            })?,
        };
        let self_signed = f.self_signed.unwrap_or(false);
        let pick = |key: &str, given: &Option<PathBuf>, default: &str| -> Result<PathBuf, ConfigError> {
            match given {
                Some(p) => Ok(p.clone()),
                None if self_signed => Ok(beside_config(config, Path::new(default))),
                None => Err(err(
                    key,
                    "is required with [tls] listen, unless tls.self_signed = true (then one is generated)",
                )),
            }
        };
        let cert_file = pick("tls.cert_file", &f.cert_file, SELF_SIGNED_CERT)?;
        let key_file = pick("tls.key_file", &f.key_file, SELF_SIGNED_KEY)?;
        let handshake = in_range(
            "tls.handshake_timeout_secs",
            f.handshake_timeout_secs.unwrap_or(DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS),
            1,
            300,
            " seconds",
        )?;
        let max_handshakes = in_range(
            "tls.max_handshakes",
            f.max_handshakes.unwrap_or(DEFAULT_TLS_MAX_HANDSHAKES),
            1,
            1_000_000,
            "",
        )?;
        Ok(Some(TlsConfig {
            listen,
            cert_file,
            key_file,
            self_signed,
            handshake_timeout: Duration::from_secs(handshake),
            max_handshakes,
        }))
    }
}

impl SheetsConfig {
    /// `None` when upload is off: no key file anywhere, `enabled = false`, or `--no-sheets`.
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
            err(
                "sheets.key_file",
                "is required when sheets.enabled = true (the service-account JSON key)",
            )
        })?;
        let spreadsheet = flags.spreadsheet.clone().or(f.spreadsheet).ok_or_else(|| {
            err(
                "sheets.spreadsheet",
                "is required when Sheets upload is on (the spreadsheet id or its URL)",
            )
        })?;
        let spreadsheet_id = spreadsheet_id(&spreadsheet).ok_or_else(|| {
            err(
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
            return Err(err(
                "sheets.tab",
                format!("{tab:?} is not a usable tab name (1-100 printable characters)"),
            ));
        }
        let batch_rows = in_range(
            "sheets.batch_rows",
            f.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS),
            1,
            20_000,
            " rows",
        )?;
        let delay = f.batch_delay_secs.unwrap_or(DEFAULT_BATCH_DELAY_SECS);
        if !(0.0..=3600.0).contains(&delay) {
            return Err(err(
                "sheets.batch_delay_secs",
                format!("must be between 0 and 3600 seconds, got {delay}"),
            ));
        }
        let rpm = in_range(
            "sheets.requests_per_minute",
            f.requests_per_minute.unwrap_or(DEFAULT_REQUESTS_PER_MINUTE),
            1,
            6000,
            "",
        )?;
        let api_base_url = f
            .api_base_url
            .unwrap_or_else(|| DEFAULT_SHEETS_API_BASE_URL.into())
            .trim_end_matches('/')
            .to_string();
        if !(api_base_url.starts_with("https://") || api_base_url.starts_with("http://")) {
            return Err(err(
                "sheets.api_base_url",
                format!("{api_base_url:?} must start with https:// (or http:// for a local test server)"),
            ));
        }
        let channel_rows = in_range(
            "sheets.channel_rows",
            f.channel_rows.unwrap_or(DEFAULT_CHANNEL_ROWS),
            1,
            10_000_000,
            " rows",
        )?;
        let shutdown = in_range(
            "sheets.shutdown_timeout_secs",
            f.shutdown_timeout_secs.unwrap_or(DEFAULT_SHEETS_SHUTDOWN_SECS),
            0,
            3600,
            " seconds",
        )?;
        let request_timeout = in_range(
            "sheets.request_timeout_secs",
            f.request_timeout_secs.unwrap_or(DEFAULT_REQUEST_TIMEOUT_SECS),
            1,
            600,
            " seconds",
        )?;
        let max_cells = in_range(
            "sheets.max_cells",
            f.max_cells.unwrap_or(DEFAULT_MAX_CELLS),
            100,
            1_000_000_000,
            " cells",
        )?;
        let warn = in_range(
            "sheets.warn_cells_percent",
            f.warn_cells_percent.unwrap_or(DEFAULT_WARN_CELLS_PERCENT),
            1,
            100,
            "%",
        )?;
        let grow_rows = in_range(
            "sheets.grow_rows",
            f.grow_rows.unwrap_or(DEFAULT_GROW_ROWS),
            10,
            1_000_000,
            " rows",
        )?;
        let cursor_file = f.cursor_file.unwrap_or_else(|| {
            let mut name = csv_path.file_name().unwrap_or_default().to_os_string();
            name.push(".sheets-cursor.json");
            csv_path.with_file_name(name)
        });
        let max_request_bytes = in_range(
            "sheets.max_request_bytes",
            f.max_request_bytes.unwrap_or(DEFAULT_MAX_REQUEST_BYTES),
            MIN_REQUEST_BYTES,
            MAX_REQUEST_BYTES,
            " bytes",
        )?;
        let layout = match f.layout.as_deref().unwrap_or(DEFAULT_SHEETS_LAYOUT) {
            "per-device" => SheetsLayout::PerDevice,
            "single" => SheetsLayout::Single,
            "csv" => SheetsLayout::Csv,
            other => {
                return Err(err(
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
            return Err(err(
                "sheets.overview_tab",
                format!("{overview_tab:?} is not a usable tab name (up to 100 printable characters, none of [ ] * ? / \\ :; \"\" for no overview)"),
            ));
        }
        check_key_file(&key_file)?;
        Ok(Some(SheetsConfig {
            layout,
            overview_tab,
            charts: f.charts.unwrap_or(true),
            max_board_tabs: in_range(
                "sheets.max_board_tabs",
                f.max_board_tabs.unwrap_or(DEFAULT_MAX_BOARD_TABS),
                1,
                190,
                " tabs",
            )?,
            keep_days: in_range("sheets.keep_days", f.keep_days.unwrap_or(0), 0, 36_500, " days")?,
            cell_budget_percent: in_range(
                "sheets.cell_budget_percent",
                f.cell_budget_percent.unwrap_or(DEFAULT_CELL_BUDGET_PERCENT),
                10,
                100,
                "%",
            )?,
            overview_refresh: Duration::from_secs(in_range(
                "sheets.overview_refresh_secs",
                f.overview_refresh_secs.unwrap_or(DEFAULT_OVERVIEW_REFRESH_SECS),
                0,
                86_400,
                " seconds",
            )?),
            stall_warn: Duration::from_secs(in_range(
                "sheets.stall_warn_secs",
                f.stall_warn_secs.unwrap_or(DEFAULT_STALL_WARN_SECS),
                1,
                86_400,
                " seconds",
            )?),
            silent_factor: DEFAULT_SILENT_FACTOR,
            min_silent: Duration::from_secs(DEFAULT_MIN_SILENT_SECS),
            max_request_bytes,
            key_file,
            spreadsheet_id,
            tab,
            batch_rows,
            batch_delay: Duration::from_secs_f64(delay),
            requests_per_minute: rpm,
            api_base_url,
            channel_rows,
            shutdown_timeout: Duration::from_secs(shutdown),
            request_timeout: Duration::from_secs(request_timeout),
            max_cells,
            warn_cells_percent: warn,
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

    fn build(toml: &str, args: ServeArgs) -> Result<Config, ConfigError> {
        let file = parse_file(toml)?;
        let file = match &args.config {
            Some(c) => file.paths_beside(c),
            None => file,
        };
        Config::build(file, &args)
    }

    #[test]
    fn defaults_need_no_file() {
        let c = build("", ServeArgs::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.csv_path, PathBuf::from(DEFAULT_CSV_PATH));
        assert_eq!(c.fsync, Fsync::Interval(Duration::from_millis(1000)));
        assert!(c.sheets.is_none());
    }

    #[test]
    fn flags_beat_the_file() {
        let args = ServeArgs {
            max_line_bytes: Some(100),
            ..ServeArgs::default()
        };
        let c = build("[server]\nmax_line_bytes = 200\nmax_connections = 7\n", args).unwrap();
        assert_eq!(c.max_line_bytes, 100);
        assert_eq!(c.max_connections, 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = build("[server]\nmax_conections = 5\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = build("[server]\nmax_line_bytes = 0\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("server.max_line_bytes"), "{e}");
        let e = build("[csv]\nfsync = \"sometimes\"\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        let e = build("[server]\nlisten = \"8090\"\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
    }

    #[test]
    fn sheets_layout_and_overview_tab() {
        let dir = std::env::temp_dir().join(format!("sensorlog-config-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k.json");
        std::fs::write(
            &key,
            r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#,
        )
        .unwrap();
        let sheets = |extra: &str| {
            build(
                &format!(
                    "[sheets]\nkey_file = {:?}\nspreadsheet = \"abc\"\n{extra}",
                    key.display().to_string()
                ),
                ServeArgs::default(),
            )
            .map(|c| c.sheets.unwrap())
        };
        let s = sheets("").unwrap();
        assert_eq!((s.layout, s.overview_tab.as_str()), (SheetsLayout::PerDevice, "Latest"));
        assert_eq!(sheets("layout = \"single\"").unwrap().layout, SheetsLayout::Single);
        assert_eq!(sheets("layout = \"csv\"").unwrap().layout, SheetsLayout::Csv);
        assert_eq!(sheets("overview_tab = \"\"").unwrap().overview_tab, "");
        assert!(s.charts && !sheets("charts = false").unwrap().charts);
        assert_eq!((s.keep_days, s.cell_budget_percent, s.max_board_tabs), (0, 90, 150));
        assert_eq!(sheets("max_board_tabs = 190").unwrap().max_board_tabs, 190);
        for bad in [0, 191] {
            let e = sheets(&format!("max_board_tabs = {bad}")).unwrap_err().to_string();
            assert!(e.contains("sheets.max_board_tabs"), "{e}");
        }
        assert_eq!(sheets("keep_days = 36500").unwrap().keep_days, 36_500);
        assert!(sheets("keep_days = 36501")
            .unwrap_err()
            .to_string()
            .contains("sheets.keep_days"));
        assert_eq!(sheets("cell_budget_percent = 10").unwrap().cell_budget_percent, 10);
        assert_eq!(sheets("cell_budget_percent = 100").unwrap().cell_budget_percent, 100);
        for bad in [9, 101] {
            let e = sheets(&format!("cell_budget_percent = {bad}")).unwrap_err().to_string();
            assert!(e.contains("sheets.cell_budget_percent"), "{e}");
        }
        let e = sheets("layout = \"wide\"").unwrap_err().to_string();
        assert!(e.contains("sheets.layout") && e.contains("per-device"), "{e}");
        // The overview refresh: default, N and N+1; silent as [alerts] says.
        assert_eq!(s.overview_refresh, Duration::from_secs(60));
        assert_eq!((s.silent_factor, s.min_silent), (5.0, Duration::from_secs(120)));
        assert_eq!(
            sheets("overview_refresh_secs = 0").unwrap().overview_refresh,
            Duration::ZERO
        );
        let max = sheets("overview_refresh_secs = 86400").unwrap().overview_refresh;
        assert_eq!(max, Duration::from_secs(86_400));
        let e = sheets("overview_refresh_secs = 86401").unwrap_err().to_string();
        assert!(e.contains("sheets.overview_refresh_secs"), "{e}");
        // The stall WARN (issue 18): default, the range at both ends and past them.
        assert_eq!(s.stall_warn, Duration::from_secs(60));
        assert_eq!(
            sheets("stall_warn_secs = 1").unwrap().stall_warn,
            Duration::from_secs(1)
        );
        assert_eq!(
            sheets("stall_warn_secs = 86400").unwrap().stall_warn,
            Duration::from_secs(86_400)
        );
        for bad in ["stall_warn_secs = 0", "stall_warn_secs = 86401"] {
            let e = sheets(bad).unwrap_err().to_string();
            assert!(e.contains("sheets.stall_warn_secs"), "{e}");
        }
        let a = sheets("[alerts]\nmin_silent_secs = 7\nsilent_factor = 3.0").unwrap();
        assert_eq!((a.silent_factor, a.min_silent), (3.0, Duration::from_secs(7)));
        // Title length at N and N+1; characters tab titles refuse.
        let n = "x".repeat(100);
        assert_eq!(sheets(&format!("overview_tab = {n:?}")).unwrap().overview_tab, n);
        for bad in [format!("{n}x"), "a/b".into(), "a:b".into(), "  ".into()] {
            let e = sheets(&format!("overview_tab = {bad:?}")).unwrap_err().to_string();
            assert!(e.contains("sheets.overview_tab"), "{e}");
        }
    }

    #[test]
    fn sheets_on_when_key_file_given() {
        let dir = std::env::temp_dir().join(format!("sensorlog-config-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("k.json");
        std::fs::write(
            &key,
            r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#,
        )
        .unwrap();
        let c = build(
            &format!(
                "[sheets]\nkey_file = {:?}\nspreadsheet = \"https://docs.google.com/spreadsheets/d/1AbC_d-9/edit#gid=0\"\n",
                key.display().to_string()
            ),
            ServeArgs::default(),
        )
        .unwrap();
        let s = c.sheets.unwrap();
        assert_eq!(s.spreadsheet_id, "1AbC_d-9");
        assert_eq!(s.cursor_file, PathBuf::from("data/readings.csv.sheets-cursor.json"));
        let e = build("[sheets]\nkey_file = \"k.json\"\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("sheets.spreadsheet"), "{e}");
        // Issue 9: sheets.max_request_bytes, default and bounds at N and N+1.
        assert_eq!(s.max_request_bytes, DEFAULT_MAX_REQUEST_BYTES);
        let request_bytes = |n: usize| {
            build(
                &format!(
                    "[sheets]\nkey_file = {:?}\nspreadsheet = \"abc\"\nmax_request_bytes = {n}\n",
                    key.display().to_string()
                ),
                ServeArgs::default(),
            )
            .map(|c| c.sheets.unwrap().max_request_bytes)
        };
        assert_eq!(request_bytes(MIN_REQUEST_BYTES).unwrap(), MIN_REQUEST_BYTES);
        assert_eq!(request_bytes(MAX_REQUEST_BYTES).unwrap(), MAX_REQUEST_BYTES);
        for bad in [MIN_REQUEST_BYTES - 1, MAX_REQUEST_BYTES + 1] {
            let e = request_bytes(bad).unwrap_err().to_string();
            assert!(e.contains("sheets.max_request_bytes: must be between"), "{e}");
        }
        // Issue 8.13: a missing, non-JSON or non-service-account key is a config error
        // that names the key and never prints the key's content.
        let with_key = |path: &str| {
            build(
                &format!("[sheets]\nkey_file = {path:?}\nspreadsheet = \"abc\"\n"),
                ServeArgs::default(),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(
            with_key("/nonexistent/k.json").contains("sheets.key_file: cannot read"),
            "{}",
            with_key("/nonexistent/k.json")
        );
        std::fs::write(dir.join("bad.json"), "SECRET not json").unwrap();
        let e = with_key(&dir.join("bad.json").display().to_string());
        assert!(e.contains("is not JSON") && !e.contains("SECRET"), "{e}");
        std::fs::write(
            dir.join("user.json"),
            r#"{"type":"authorized_user","private_key":"SECRET"}"#,
        )
        .unwrap();
        let e = with_key(&dir.join("user.json").display().to_string());
        assert!(e.contains("authorized_user") && !e.contains("SECRET"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn auth_tls_and_allow_keys() {
        let c = build("", ServeArgs::default()).unwrap();
        assert!(c.plain_tcp && c.tls.is_none() && c.auth.tokens_file.is_none() && c.access.is_everyone());
        let args = || ServeArgs {
            config: Some(PathBuf::from("/etc/sensorlog/sensorlog.toml")),
            ..ServeArgs::default()
        };
        let c = build(
            "[server]\nlisten = \"\"\nallow = [\"10.0.0.0/8\"]\n[auth]\ntokens_file = \"tokens\"\n[tls]\nlisten = \"[::]:8443\"\nself_signed = true\n",
            args(),
        )
        .unwrap();
        assert!(!c.plain_tcp);
        assert!(c.auth.required, "required by default with a tokens file");
        assert_eq!(c.auth.tokens_file, Some(PathBuf::from("/etc/sensorlog/tokens")));
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, PathBuf::from("/etc/sensorlog/sensorlog-cert.pem"));
        assert_eq!(
            t.handshake_timeout,
            Duration::from_secs(DEFAULT_TLS_HANDSHAKE_TIMEOUT_SECS)
        );
        for (toml, key) in [
            ("[server]\nlisten = \"\"\n", "server.listen"),
            ("[server]\ndeny = [\"x\"]\n", "server.deny"),
            ("[auth]\nrequired = true\n", "auth.required"),
            (
                "[auth]\ntokens_file = \"t\"\nmax_backoff_secs = 0\n",
                "auth.max_backoff_secs",
            ),
            ("[tls]\nlisten = \"0.0.0.0:8443\"\n", "tls.cert_file"),
            (
                "[tls]\nlisten = \"0.0.0.0:8443\"\nself_signed = true\nhandshake_timeout_secs = 0\n",
                "tls.handshake_timeout_secs",
            ),
            ("[tls]\nlisten = \"8443\"\n", "tls.listen"),
        ] {
            let e = build(toml, ServeArgs::default()).unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn http_boards_and_alerts_keys() {
        let c = build("", ServeArgs::default()).unwrap();
        assert_eq!(c.http.listen.unwrap().to_string(), DEFAULT_HTTP_LISTEN);
        let off = ServeArgs {
            http_listen: Some(String::new()),
            ..ServeArgs::default()
        };
        assert!(
            build("[http]\nlisten = \"127.0.0.1:9\"\n", off)
                .unwrap()
                .http
                .listen
                .is_none(),
            "flag beats file"
        );
        assert!(build("[http]\nlisten = \"\"\n", ServeArgs::default())
            .unwrap()
            .http
            .listen
            .is_none());
        let e = build("[http]\nlisten = \"8091\"\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("http.listen"), "{e}");
        let c = build("[alerts]\nmin_silent_secs = 1\n", ServeArgs::default()).unwrap();
        assert_eq!(
            c.alerts.min_silent,
            Duration::from_secs(1),
            "1 s is accepted, for tests"
        );
        let e = build("[alerts]\nmin_silent_secs = 0\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("alerts.min_silent_secs"), "{e}");
        let e = build("[alerts]\nsilent_factor = 0.5\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("alerts.silent_factor"), "{e}");
        let e = build("[alerts]\nwebhook_url = \"ftp://x\"\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("alerts.webhook_url"), "{e}");
        let e = build("[boards]\nmax_boards = 0\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("boards.max_boards"), "{e}");
        let e = build("[boards]\nmax_feilds = 3\n", ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains("max_feilds"), "{e}");
    }

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
