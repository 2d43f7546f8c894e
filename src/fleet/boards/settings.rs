//! The `[boards]` and `[alerts]` sections: the keys as written in the file, their
//! defaults and bounds, and the validated [`BoardsConfig`] (the live state kept per
//! board) and [`AlertsConfig`] (when a board counts as silent, and the webhook told so).
//! Both are read by `crate::fleet::boards`; `crate::fleet::alerts` sits above it. `crate::config`
//! assembles them.

use std::time::Duration;

use serde::Deserialize;

use crate::settings::{ConfigError, Limit};

pub const MAX_BOARDS: Limit<usize> = Limit::new("boards.max_boards", 10_000, 1, 1_000_000, " boards");
pub const MAX_FIELDS: Limit<usize> = Limit::new("boards.max_fields", 8, 1, 64, " fields");
pub const CHART_WINDOW_SECS: Limit<u64> = Limit::new("boards.chart_window_secs", 3600, 10, 7 * 86_400, " seconds");
pub const CHART_POINTS: Limit<usize> = Limit::new("boards.chart_points", 120, 2, 10_000, " points");

pub const SILENT_FACTOR: Limit<f64> = Limit::new("alerts.silent_factor", 5.0, 1.0, 1000.0, "");
pub const MIN_SILENT_SECS: Limit<u64> = Limit::new("alerts.min_silent_secs", 120, 1, 30 * 86_400, " seconds");
pub const WEBHOOK_QUEUE: Limit<usize> = Limit::new("alerts.webhook_queue", 1000, 1, 1_000_000, " alerts");
pub const WEBHOOK_TIMEOUT_SECS: Limit<u64> = Limit::new("alerts.webhook_timeout_secs", 10, 1, 600, " seconds");

/// `[boards]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardsFile {
    pub max_boards: Option<usize>,
    pub max_fields: Option<usize>,
    pub chart_window_secs: Option<u64>,
    pub chart_points: Option<usize>,
}

/// `[alerts]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    pub silent_factor: Option<f64>,
    pub min_silent_secs: Option<u64>,
    pub webhook_url: Option<String>,
    pub webhook_queue: Option<usize>,
    pub webhook_timeout_secs: Option<u64>,
}

/// `[boards]`: the in-memory live state per board (see `crate::fleet::boards`).
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

impl BoardsConfig {
    pub fn build(f: &BoardsFile) -> Result<BoardsConfig, ConfigError> {
        let chart_window = CHART_WINDOW_SECS.secs(f.chart_window_secs)?;
        Ok(BoardsConfig {
            max_boards: MAX_BOARDS.pick(f.max_boards)?,
            max_fields: MAX_FIELDS.pick(f.max_fields)?,
            chart_window,
            chart_points: CHART_POINTS.pick(f.chart_points)?,
        })
    }
}

impl AlertsConfig {
    pub fn build(f: AlertsFile) -> Result<AlertsConfig, ConfigError> {
        let silent_factor = SILENT_FACTOR.pick(f.silent_factor)?;
        let webhook_url = f.webhook_url.map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
        if let Some(u) = &webhook_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ConfigError::new(
                    "alerts.webhook_url",
                    format!("{u:?} must start with https:// or http://"),
                ));
            }
        }
        Ok(AlertsConfig {
            silent_factor,
            min_silent: MIN_SILENT_SECS.secs(f.min_silent_secs)?,
            webhook_url,
            webhook_queue: WEBHOOK_QUEUE.pick(f.webhook_queue)?,
            webhook_timeout: WEBHOOK_TIMEOUT_SECS.secs(f.webhook_timeout_secs)?,
        })
    }
}
