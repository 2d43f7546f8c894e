//! The `[postgres]` section: raw keys as written in the file, and the validated
//! [`PostgresConfig`] the sink uses (the two layers of [`crate::config`]).
//!
//! The password never lives in the URL that is shown: [`redact`] replaces it wherever
//! a message could carry the URL, and [`PostgresConfig::target`] is the safe name of the
//! database (`user@host:port/db`) used in every log line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::settings::{section, ConfigError};

use super::tls_client::TlsSettings;
use tokio_postgres_rustls::MakeRustlsConnect;

section! {
    /// `[postgres]` as written in the TOML file.
    raw PostgresFile in "postgres";
    /// The validated settings. `Debug` is written by hand: it never shows the password.
    #[derive(Clone)]
    config PostgresConfig;
    parts PostgresParts {
        /// Connection settings, password included.
        pg: postgres::Config,
        /// `sslmode` and `sslrootcert` from the URL, and the connector made from them
        /// (`None` for `sslmode=disable`).
        tls: TlsSettings,
        connector: Option<MakeRustlsConnect>,
        /// `user@host:port/db`, safe to log.
        target: String,
        /// Schema (if given) and table, both plain lower-case identifiers.
        schema: Option<String>,
        table: String,
        source: String,
    }
    keys {
        url: String,
        password_file: PathBuf,
        table: String [DEFAULT_PG_TABLE: default "readings"],
        source: String,
        batch_rows: usize [BATCH_ROWS: default 10_000, min 1, max 1_000_000, unit " rows"] => batch_rows: usize,
        pace_ms: u64 [PACE_MS: default 1000, min 0, max 3_600_000, unit " ms"] => pace: Duration = Duration::from_millis,
        connect_timeout_secs: u64 [CONNECT_TIMEOUT_SECS: default 10, min 1, max 600, unit " seconds"]
            => connect_timeout: Duration = Duration::from_secs,
        retry_max_secs: u64 [RETRY_MAX_SECS: default 60, min 1, max 3600, unit " seconds"]
            => retry_max: Duration = Duration::from_secs,
        shutdown_timeout_secs: u64 [SHUTDOWN_TIMEOUT_SECS: default 10, min 0, max 3600, unit " seconds"]
            => shutdown_timeout: Duration = Duration::from_secs,
    }
}

impl std::fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("target", &self.target)
            .field("table", &self.qualified_table())
            .field("source", &self.source)
            .field("batch_rows", &self.batch_rows)
            .field("pace", &self.pace)
            .field("connect_timeout", &self.pg.get_connect_timeout())
            .field("retry_max", &self.retry_max)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// `None` when the sink is off (no `url`). `pgpassword` is the `PGPASSWORD`
    /// environment variable, passed in so tests need not touch the environment.
    pub fn build(f: PostgresFile, pgpassword: Option<String>) -> Result<Option<PostgresConfig>, ConfigError> {
        let Some(url) = f.url.clone().filter(|u| !u.trim().is_empty()) else {
            if f.password_file.is_some() {
                return Err(ConfigError::new(
                    "postgres.password_file",
                    "is set but postgres.url is not",
                ));
            }
            return Ok(None);
        };
        let (url, tls) = super::tls_client::split_url(&url).map_err(|e| ConfigError::new("postgres.url", e))?;
        let connector = tls.connector().map_err(|e| ConfigError::new("postgres.url", e))?;
        let mut pg: postgres::Config = url.parse().map_err(|e| {
            ConfigError::new(
                "postgres.url",
                format!("{:?} is not a PostgreSQL URL: {e}", redact(&url)),
            )
        })?;
        if pg.get_hosts().is_empty() {
            return Err(ConfigError::new(
                "postgres.url",
                format!("{:?} names no host (postgresql://user@host:5432/dbname)", redact(&url)),
            ));
        }
        if pg.get_user().is_none() {
            return Err(ConfigError::new(
                "postgres.url",
                format!("{:?} names no user (postgresql://user@host:5432/dbname)", redact(&url)),
            ));
        }
        pg.ssl_mode(tls.ssl_mode());
        match (pg.get_password().is_some(), &f.password_file) {
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    "postgres.password_file",
                    "is set but postgres.url already carries a password; keep only one (the file is safer)",
                ))
            }
            (false, Some(path)) => pg.password(read_password(path)?),
            (false, None) => match pgpassword.filter(|p| !p.is_empty()) {
                Some(p) => pg.password(p),
                None => &mut pg,
            },
            (true, None) => &mut pg,
        };
        let target = target_name(&pg);
        let (schema, table) = parse_table(f.table.as_deref().unwrap_or(DEFAULT_PG_TABLE))?;
        let source = match f.source.clone() {
            Some(s) => s,
            None => hostname(),
        };
        if source.trim().is_empty() || source.chars().count() > 200 || source.chars().any(char::is_control) {
            return Err(ConfigError::new(
                "postgres.source",
                format!("{source:?} is not a usable source name (1-200 printable characters)"),
            ));
        }
        let mut config = PostgresConfig::assemble(
            &f,
            PostgresParts {
                pg,
                tls,
                connector,
                target,
                schema,
                table,
                source,
            },
        )?;
        config
            .pg
            .connect_timeout(config.connect_timeout)
            .application_name("sensorlog")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .tcp_user_timeout(Duration::from_secs(60));
        Ok(Some(config))
    }

    /// Connects with the TLS the URL asks for.
    pub fn connect(&self) -> Result<postgres::Client, postgres::Error> {
        match &self.connector {
            None => self.pg.connect(postgres::NoTls),
            Some(tls) => self.pg.connect(tls.clone()),
        }
    }

    /// `schema.table` or `table`, as written in the config (for messages).
    pub fn qualified_table(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.table),
            None => self.table.clone(),
        }
    }
}

fn read_password(path: &Path) -> Result<String, ConfigError> {
    let text = crate::small_file::read_to_string(path, crate::small_file::MAX_SECRET_BYTES)
        .map_err(|e| ConfigError::new("postgres.password_file", format!("cannot read {}: {e}", path.display())))?;
    let pw = text.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err(ConfigError::new(
            "postgres.password_file",
            format!("{} is empty", path.display()),
        ));
    }
    Ok(pw)
}

/// `table` or `schema.table`; plain lower-case identifiers only, so that the names
/// in SQL, in the docs and in Grafana queries are the same without quoting rules.
pub fn parse_table(text: &str) -> Result<(Option<String>, String), ConfigError> {
    let ident = |s: &str| {
        let mut b = s.bytes();
        s.len() <= 48
            && b.next().is_some_and(|c| c.is_ascii_lowercase() || c == b'_')
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
    };
    let (schema, table) = match text.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, text),
    };
    if !ident(table) || schema.is_some_and(|s| !ident(s)) {
        return Err(ConfigError::new(
            "postgres.table",
            format!("{text:?} must be a lower-case name such as readings or sensors.readings (letters, digits, _; at most 48 each)"),
        ));
    }
    Ok((schema.map(str::to_string), table.to_string()))
}

/// This machine's name: the default `source`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sensorlog".to_string())
}

/// `user@host:port/db`: names the database without the password.
pub fn target_name(pg: &postgres::Config) -> String {
    let host = match pg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "?".into(),
    };
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        pg.get_user().unwrap_or("?"),
        pg.get_dbname().unwrap_or(pg.get_user().unwrap_or("?"))
    )
}

/// Replaces a password in a URL (`postgresql://user:secret@host`), in a query
/// parameter (`?password=secret`) or in a key=value string (`password=secret`) with
/// `********`. Used on every text that could carry the configured URL.
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    // user:password@ in a URL.
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..].find(['/', '?']).map_or(out.len(), |i| rest_start + i);
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            if let Some(colon) = userinfo.find(':') {
                let from = rest_start + colon + 1;
                out.replace_range(from..rest_start + at, "********");
            }
        }
    }
    // password=... as a query parameter or a key=value pair.
    let mut search = 0;
    while let Some(i) = out[search..].find("password=") {
        let start = search + i + "password=".len();
        let quoted = out[start..].starts_with('\'');
        let end = if quoted {
            out[start + 1..].find('\'').map_or(out.len(), |j| start + 1 + j + 1)
        } else {
            out[start..].find(['&', ' ', '\'']).map_or(out.len(), |j| start + j)
        };
        out.replace_range(start..end, "********");
        search = start + "********".len();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(url: &str) -> PostgresFile {
        PostgresFile {
            url: Some(url.into()),
            ..PostgresFile::default()
        }
    }

    #[test]
    fn off_without_url_and_defaults_with_it() {
        assert!(PostgresConfig::build(PostgresFile::default(), None).unwrap().is_none());
        let c = PostgresConfig::build(file("postgresql://u@db.example:5433/lab"), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.target, "u@db.example:5433/lab");
        assert_eq!(c.table, DEFAULT_PG_TABLE);
        assert_eq!(c.batch_rows, BATCH_ROWS.default);
        assert!(!c.source.is_empty());
    }

    #[test]
    fn password_sources_and_redaction() {
        let c = PostgresConfig::build(file("postgresql://u@h/db"), Some("fromenv".into()))
            .unwrap()
            .unwrap();
        assert_eq!(c.pg.get_password(), Some(&b"fromenv"[..]));
        assert!(!format!("{c:?}").contains("fromenv"));
        let e = PostgresConfig::build(
            PostgresFile {
                password_file: Some("/nonexistent".into()),
                ..file("postgresql://u:inurl@h/db")
            },
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("postgres.password_file"), "{e}");
        assert!(!e.to_string().contains("inurl"), "{e}");
        let e = PostgresConfig::build(file("postgresql://u:hunter2@h:99999/db"), None).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn redact_every_form() {
        assert_eq!(
            redact("postgresql://u:se:cret@h:5432/db?x=1"),
            "postgresql://u:********@h:5432/db?x=1"
        );
        assert_eq!(redact("postgresql://u@h/db"), "postgresql://u@h/db");
        assert_eq!(
            redact("postgresql://u@h/db?password=abc&x=1"),
            "postgresql://u@h/db?password=********&x=1"
        );
        assert_eq!(
            redact("host=h password='a b' user=u"),
            "host=h password=******** user=u"
        );
    }

    #[test]
    fn tls_settings_come_from_the_url() {
        let c = PostgresConfig::build(file("postgresql://u:pw@h/db?sslmode=require"), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.pg.get_ssl_mode(), postgres::config::SslMode::Require);
        assert!(c.connector.is_some());
        let c = PostgresConfig::build(file("postgresql://u@h/db?sslmode=disable"), None)
            .unwrap()
            .unwrap();
        assert!(c.connector.is_none());
        let e = PostgresConfig::build(
            file("postgresql://u:pw@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem"),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent.pem") && !e.to_string().contains("pw@"),
            "{e}"
        );
    }

    #[test]
    fn table_names() {
        assert_eq!(parse_table("readings").unwrap(), (None, "readings".into()));
        assert_eq!(
            parse_table("lab.readings_2").unwrap(),
            (Some("lab".into()), "readings_2".into())
        );
        for bad in ["Readings", "a.b.c", "1x", "", "r-x", "x;drop"] {
            assert!(parse_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_at_n_and_n_plus_one() {
        let with = |rows| {
            PostgresConfig::build(
                PostgresFile {
                    batch_rows: Some(rows),
                    ..file("postgresql://u@h/db")
                },
                None,
            )
        };
        assert!(with(1_000_000).is_ok());
        assert!(with(1_000_001).unwrap_err().to_string().contains("postgres.batch_rows"));
        assert!(with(0).is_err());
    }
}
