//! The `[http]` section: the keys as written in the file, their defaults and bounds, and
//! the validated [`HttpConfig`] the dashboard server uses (assembled by `crate::config`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::settings::{section, ConfigError};

section! {
    /// `[http]` as written in the TOML file.
    raw HttpFile in "http";
    /// `[http]`: the dashboard, `/metrics`, `/healthz`, `/readyz`, `/api/boards`.
    #[derive(Debug, Clone)]
    config HttpConfig;
    parts HttpParts {
        /// `None` when `http.listen = ""` (no HTTP server at all).
        listen: Option<SocketAddr>,
    }
    keys {
        listen: String [DEFAULT_HTTP_LISTEN: default "127.0.0.1:8091"],
        max_connections: usize [MAX_HTTP_CONNECTIONS: default 64, min 1, max 4096] => max_connections: usize,
        max_event_clients: usize [MAX_EVENT_CLIENTS: default 16, min 1, max 1024] => max_event_clients: usize,
        request_timeout_secs: u64 [REQUEST_TIMEOUT_SECS: default 10, min 1, max 3600, unit " seconds"]
            => request_timeout: Duration = Duration::from_secs,
        max_request_bytes: usize [MAX_REQUEST_BYTES: default 8192, min 1024, max 1_048_576, unit " bytes"]
            => max_request_bytes: usize,
        max_refusals_per_sec: u32 [MAX_REFUSALS_PER_SEC: default 200, min 1, max 1_000_000]
            => max_refusals_per_sec: u32,
        metrics_max_boards: usize [METRICS_MAX_BOARDS: default 100, min 0, max 100_000, unit " boards"]
            => metrics_max_boards: usize,
        ready_upload_stall_secs: u64 [READY_UPLOAD_STALL_SECS: default 600, min 1, max 7 * 86_400, unit " seconds"]
            => ready_upload_stall: Duration = Duration::from_secs,
    }
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
        HttpConfig::assemble(f, HttpParts { listen })
    }
}
