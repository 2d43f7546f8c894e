//! The `[http]` section: the keys as written in the file, their defaults and bounds, and
//! the validated [`HttpConfig`] the dashboard server uses (assembled by `crate::config`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::settings::{ConfigError, Limit};

pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:8091";
pub const MAX_EVENT_CLIENTS: Limit<usize> = Limit::new("http.max_event_clients", 16, 1, 1024, "");
pub const METRICS_MAX_BOARDS: Limit<usize> = Limit::new("http.metrics_max_boards", 100, 0, 100_000, " boards");
pub const READY_UPLOAD_STALL_SECS: Limit<u64> =
    Limit::new("http.ready_upload_stall_secs", 600, 1, 7 * 86_400, " seconds");

/// `[http]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub listen: Option<String>,
    pub max_event_clients: Option<usize>,
    pub metrics_max_boards: Option<usize>,
    pub ready_upload_stall_secs: Option<u64>,
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

impl HttpConfig {
    /// `flag` (`--http-listen`) beats the file.
    pub fn build(f: &HttpFile, flag: Option<&str>) -> Result<HttpConfig, ConfigError> {
        let text = flag.or(f.listen.as_deref()).unwrap_or(DEFAULT_HTTP_LISTEN).trim();
        let listen = if text.is_empty() {
            None
        } else {
            Some(text.parse().map_err(|_| {
                ConfigError::new(
                    "http.listen",
                    format!(
                        "{text:?} is not an ADDRESS:PORT such as 127.0.0.1:8091 (or \"\" to turn the HTTP server off)"
                    ),
                )
            })?)
        };
        Ok(HttpConfig {
            listen,
            max_event_clients: MAX_EVENT_CLIENTS.pick(f.max_event_clients)?,
            metrics_max_boards: METRICS_MAX_BOARDS.pick(f.metrics_max_boards)?,
            ready_upload_stall: READY_UPLOAD_STALL_SECS.secs(f.ready_upload_stall_secs)?,
        })
    }
}
