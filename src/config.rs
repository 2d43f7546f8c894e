//! Validated configuration: TOML file + flags → [`Config`], checked once at start.
//!
//! Two layers, as in ripgrep: [`FileConfig`] mirrors the TOML file exactly (unknown
//! keys are refused so a typo cannot silently fall back to a default), and [`Config`]
//! is what the rest of the daemon sees, with every default filled in and every limit
//! checked. Errors name the key (as written in the file) and the reason.
//!
//! This module only assembles: each section's keys, defaults, bounds and validation live
//! beside the code that uses them (`server/settings.rs` for `[server]` and `[tls]`,
//! `sink/csv/settings.rs` for `[csv]` and `[dedup]`, `http/settings.rs`,
//! `boards/settings.rs` for `[boards]` and `[alerts]`, `auth/settings.rs`,
//! `sink/sheets/settings.rs`, `sink/postgres/settings.rs`). Here: reading the file, the
//! relative-path rule ([`FileConfig::paths_beside`]), the type errors' wording, and the
//! checks that span sections. The accepted keys are read from [`FileConfig`] itself
//! (`crate::settings::accepted_keys`).

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::auth::settings::{AuthConfig, AuthFile};
use crate::cli::ServeArgs;
use crate::fleet::boards::settings::{AlertsConfig, AlertsFile, BoardsConfig, BoardsFile};
use crate::fleet::http::settings::{HttpConfig, HttpFile};
use crate::server::settings::{ServerConfig, ServerFile, TlsConfig, TlsFile};
use crate::settings::{beside_config, section, ConfigError};
use crate::sink::csv::settings::{CsvConfig, CsvFile, DedupFile};
use crate::sink::postgres::settings::{PostgresConfig, PostgresFile};
use crate::sink::sheets::settings::{SheetsConfig, SheetsFile};

/// The TOML file as written: one raw struct per section, each beside its code. Every
/// field optional; unknown keys are errors.
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
    pub postgres: PostgresFile,
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

section! {
    /// `[log]`: the periodic summary, written by the daemon itself.
    raw LogFile in "log";
    keys {
        stats_interval_secs: u64 [STATS_INTERVAL_SECS: default 60, min 0, max 86_400, unit " seconds"],
    }
}

/// The validated configuration, one part per section.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`: where boards connect, and the limits on them.
    pub server: ServerConfig,
    /// `[csv]` and `[dedup]`: the file, its fsync policy, the resend memory.
    pub csv: CsvConfig,
    /// `log.stats_interval_secs`; `None` for 0 (no periodic summary).
    pub stats_interval: Option<Duration>,
    /// `[sheets]`; `None` when the upload is off.
    pub sheets: Option<SheetsConfig>,
    /// `[postgres]`; `None` without `postgres.url`.
    pub postgres: Option<PostgresConfig>,
    /// `[http]`: the dashboard, `/metrics` and the probes (`listen` is `None` when off).
    pub http: HttpConfig,
    /// `[boards]`: the live state kept per board.
    pub boards: BoardsConfig,
    /// `[alerts]`: when a board is silent, and the webhook told so.
    pub alerts: AlertsConfig,
    /// `[auth]`: device tokens and the wrong-token brake.
    pub auth: AuthConfig,
    /// `[tls]`; `None` without `tls.listen`.
    pub tls: Option<TlsConfig>,
}

/// Reads and parses a TOML config file; the error names the file, line and key. Every
/// relative path in the file is made relative to the file's directory
/// ([`FileConfig::paths_beside`]).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = crate::small_file::read_to_string(path, crate::small_file::MAX_TEXT_BYTES)
        .map_err(|e| ConfigError::new(&path.display().to_string(), format!("cannot read config file: {e}")))?;
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
            return ConfigError::new("config file", message);
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
                    return ConfigError::new(
                        "config file",
                        format!("{at}{section}.{key}: expected {form}, got {}", v.trim()),
                    );
                }
            }
            if on_value && !section.is_empty() {
                return ConfigError::new("config file", format!("{at}{section}.{key}: {message}"));
            }
        }
        ConfigError::new("config file", format!("{at}{message}"))
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

    /// Each section builds itself; what spans sections is checked here.
    pub fn build(file: FileConfig, args: &ServeArgs) -> Result<Config, ConfigError> {
        let server = ServerConfig::build(&file.server, args)?;
        let csv = CsvConfig::build(&file.csv, &file.dedup, args)?;
        let stats = STATS_INTERVAL_SECS.pick(args.stats_interval_secs.or(file.log.stats_interval_secs))?;
        let sheets = SheetsConfig::build(file.sheets, &args.sheets, &csv.path)?;
        let auth = AuthConfig::build(&file.auth)?;
        let tls = TlsConfig::build(&file.tls, args.config.as_deref())?;
        if !server.plain_tcp && tls.is_none() {
            return Err(ConfigError::new(
                "server.listen",
                "is empty (plain TCP off) but [tls] listen is not set: the daemon would listen nowhere",
            ));
        }
        let postgres = PostgresConfig::build(file.postgres, std::env::var("PGPASSWORD").ok())?;
        let http = HttpConfig::build(&file.http, args.http_listen.as_deref())?;
        let boards = BoardsConfig::assemble(&file.boards)?;
        let alerts = AlertsConfig::build(&file.alerts)?;
        // The overview's `silent` is the dashboard's and the alerts' (issue 10).
        let sheets = sheets.map(|s| SheetsConfig {
            silent_factor: alerts.silent_factor,
            min_silent: alerts.min_silent,
            ..s
        });
        Ok(Config {
            server,
            csv,
            stats_interval: (stats > 0).then(|| Duration::from_secs(stats)),
            sheets,
            postgres,
            http,
            boards,
            alerts,
            auth,
            tls,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::fleet::http::settings::DEFAULT_HTTP_LISTEN;
    use crate::server::settings::{DEFAULT_LISTEN, TLS_HANDSHAKE_TIMEOUT_SECS};
    use crate::sink::csv::settings::{Fsync, DEFAULT_CSV_PATH};
    use crate::sink::sheets::settings::{SheetsLayout, MAX_REQUEST_BYTES};

    fn build(toml: &str, args: ServeArgs) -> Result<Config, ConfigError> {
        let file = parse_file(toml)?;
        let file = match &args.config {
            Some(c) => file.paths_beside(c),
            None => file,
        };
        Config::build(file, &args)
    }

    /// `toml` (with no flags) is refused, and the error names `key`.
    #[track_caller]
    fn assert_refused(toml: &str, key: &str) {
        let e = build(toml, ServeArgs::default()).unwrap_err();
        assert!(e.to_string().contains(key), "{toml}: {e}");
    }

    /// A directory of its own with a well-formed service-account key `k.json` in it.
    fn key_file(tag: &str) -> (PathBuf, PathBuf) {
        let dir = crate::scratch_dir(&format!("config-{tag}"));
        let key = dir.join("k.json");
        std::fs::write(
            &key,
            r#"{"type":"service_account","client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n","token_uri":"https://oauth2.googleapis.com/token"}"#,
        )
        .unwrap();
        (dir, key)
    }

    #[test]
    fn defaults_need_no_file() {
        let c = build("", ServeArgs::default()).unwrap();
        assert_eq!(c.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.csv.path, PathBuf::from(DEFAULT_CSV_PATH));
        assert_eq!(c.csv.fsync, Fsync::Interval(Duration::from_millis(1000)));
        assert!(c.sheets.is_none());
    }

    /// `serve --help` states defaults (`[file: key; default value]`): a second copy of
    /// each, held here to the one the section says.
    #[test]
    fn defaults_in_the_flags_help_are_the_real_ones() {
        use clap::CommandFactory;
        let (dir, key) = key_file("help");
        let sheets_on = format!(
            "[sheets]\nkey_file = {:?}\nspreadsheet = \"abc\"\n",
            key.display().to_string()
        );
        let debug = |text: &str| format!("{:?}", build(text, ServeArgs::default()).unwrap());
        let plain = debug(&sheets_on);
        let cli = crate::cli::Cli::command();
        let mut checked = Vec::new();
        for arg in cli.find_subcommand("serve").unwrap().get_arguments() {
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let Some((_, stated)) = help.split_once("[file: ") else {
                continue;
            };
            let Some((key, stated)) = stated.split_once("; default ") else {
                continue;
            };
            let value = stated.split([';', ']']).next().unwrap().trim();
            let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
                Ok(_) => value.to_string(),
                Err(_) => format!("{value:?}"),
            };
            let (section, name) = key.split_once('.').unwrap();
            let text = match section {
                "sheets" => format!("{sheets_on}{name} = {value}\n"),
                _ => format!("{sheets_on}[{section}]\n{name} = {value}\n"),
            };
            assert_eq!(debug(&text), plain, "--{}: {help}", arg.get_id());
            checked.push(key.to_string());
        }
        assert!(checked.len() >= 14, "{checked:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn flags_beat_the_file() {
        let args = ServeArgs {
            max_line_bytes: Some(100),
            ..ServeArgs::default()
        };
        let c = build("[server]\nmax_line_bytes = 200\nmax_connections = 7\n", args).unwrap();
        assert_eq!(c.server.max_line_bytes, 100);
        assert_eq!(c.server.max_connections, 7);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        assert_refused("[server]\nmax_conections = 5\n", "max_conections");
        assert_refused("[server]\nmax_line_bytes = 0\n", "server.max_line_bytes");
        assert_refused("[csv]\nfsync = \"sometimes\"\n", "sometimes");
        assert_refused("[server]\nlisten = \"8090\"\n", "server.listen");
    }

    #[test]
    fn sheets_layout_and_overview_tab() {
        let (_, key) = key_file("layout");
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
        let (dir, key) = key_file("key");
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
        assert_refused("[sheets]\nkey_file = \"k.json\"\n", "sheets.spreadsheet");
        // Issue 9: sheets.max_request_bytes, default and bounds at N and N+1.
        assert_eq!(s.max_request_bytes, MAX_REQUEST_BYTES.default);
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
        assert_eq!(request_bytes(MAX_REQUEST_BYTES.lo).unwrap(), MAX_REQUEST_BYTES.lo);
        assert_eq!(request_bytes(MAX_REQUEST_BYTES.hi).unwrap(), MAX_REQUEST_BYTES.hi);
        for bad in [MAX_REQUEST_BYTES.lo - 1, MAX_REQUEST_BYTES.hi + 1] {
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
        assert!(c.server.plain_tcp && c.tls.is_none() && c.auth.tokens_file.is_none() && c.server.access.is_everyone());
        let args = || ServeArgs {
            config: Some(PathBuf::from("/etc/sensorlog/sensorlog.toml")),
            ..ServeArgs::default()
        };
        let c = build(
            "[server]\nlisten = \"\"\nallow = [\"10.0.0.0/8\"]\n[auth]\ntokens_file = \"tokens\"\n[tls]\nlisten = \"[::]:8443\"\nself_signed = true\n",
            args(),
        )
        .unwrap();
        assert!(!c.server.plain_tcp);
        assert!(c.auth.required, "required by default with a tokens file");
        assert_eq!(c.auth.tokens_file, Some(PathBuf::from("/etc/sensorlog/tokens")));
        let t = c.tls.unwrap();
        assert_eq!(t.cert_file, PathBuf::from("/etc/sensorlog/sensorlog-cert.pem"));
        assert_eq!(
            t.handshake_timeout,
            Duration::from_secs(TLS_HANDSHAKE_TIMEOUT_SECS.default)
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
            assert_refused(toml, key);
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
        assert_refused("[http]\nlisten = \"8091\"\n", "http.listen");
        let c = build("[alerts]\nmin_silent_secs = 1\n", ServeArgs::default()).unwrap();
        assert_eq!(
            c.alerts.min_silent,
            Duration::from_secs(1),
            "1 s is accepted, for tests"
        );
        assert_refused("[alerts]\nmin_silent_secs = 0\n", "alerts.min_silent_secs");
        assert_refused("[alerts]\nsilent_factor = 0.5\n", "alerts.silent_factor");
        assert_refused("[alerts]\nwebhook_url = \"ftp://x\"\n", "alerts.webhook_url");
        assert_refused("[boards]\nmax_boards = 0\n", "boards.max_boards");
        assert_refused("[boards]\nmax_feilds = 3\n", "max_feilds");
        assert_refused("[boards]\nnew_name_burst = 0\n", "boards.new_name_burst");
        assert_refused("[boards]\nnew_names_per_minute = 0\n", "boards.new_names_per_minute");
        assert_refused(
            "[boards]\nnew_names_per_minute = 1000001\n",
            "boards.new_names_per_minute",
        );
        let c = build("[boards]\nnew_name_burst = 1000000\n", ServeArgs::default()).unwrap();
        assert_eq!(c.boards.new_name_burst, 1_000_000, "the largest burst is accepted");
        assert_eq!(c.boards.new_names_per_minute, 60, "the default rate");
    }
}
