//! The `[boards]` and `[alerts]` sections: the keys as written in the file, their
//! defaults and bounds, and the validated [`BoardsConfig`] (the live state kept per
//! board) and [`AlertsConfig`] (when a board counts as silent, and the webhook told so).
//! Both are read by `crate::fleet::boards`; `crate::fleet::alerts` sits above it. `crate::config`
//! assembles them.

use std::time::Duration;

use crate::settings::{section, ConfigError};

section! {
    /// `[boards]` as written in the TOML file.
    raw BoardsFile in "boards";
    /// `[boards]`: the in-memory live state per board (see `crate::fleet::boards`).
    #[derive(Debug, Clone)]
    config BoardsConfig;
    keys {
        max_boards: usize [MAX_BOARDS: default 10_000, min 1, max 1_000_000, unit " boards"] => max_boards: usize,
        max_fields: usize [MAX_FIELDS: default 8, min 1, max 64, unit " fields"] => max_fields: usize,
        chart_window_secs: u64 [CHART_WINDOW_SECS: default 3600, min 10, max 7 * 86_400, unit " seconds"]
            => chart_window: Duration = Duration::from_secs,
        chart_points: usize [CHART_POINTS: default 120, min 2, max 10_000, unit " points"] => chart_points: usize,
        new_name_burst: u32 [NEW_NAME_BURST: default 100, min 1, max 1_000_000, unit " names"] => new_name_burst: u32,
        new_names_per_minute: u32 [NEW_NAMES_PER_MINUTE: default 60, min 1, max 1_000_000, unit " names"]
            => new_names_per_minute: u32,
    }
}

section! {
    /// `[alerts]` as written in the TOML file.
    raw AlertsFile in "alerts";
    /// `[alerts]`: when a board counts as silent, and the optional webhook.
    #[derive(Debug, Clone)]
    config AlertsConfig;
    parts AlertsParts {
        webhook_url: Option<String>,
    }
    keys {
        silent_factor: f64 [SILENT_FACTOR: default 5.0, min 1.0, max 1000.0] => silent_factor: f64,
        min_silent_secs: u64 [MIN_SILENT_SECS: default 120, min 1, max 30 * 86_400, unit " seconds"]
            => min_silent: Duration = Duration::from_secs,
        webhook_url: String,
        webhook_queue: usize [WEBHOOK_QUEUE: default 1000, min 1, max 1_000_000, unit " alerts"] => webhook_queue: usize,
        webhook_timeout_secs: u64 [WEBHOOK_TIMEOUT_SECS: default 10, min 1, max 600, unit " seconds"]
            => webhook_timeout: Duration = Duration::from_secs,
    }
}

impl AlertsConfig {
    pub fn build(f: &AlertsFile) -> Result<AlertsConfig, ConfigError> {
        let webhook_url = f.webhook_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        if let Some(u) = webhook_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ConfigError::new(
                    "alerts.webhook_url",
                    format!("{u:?} must start with https:// or http://"),
                ));
            }
        }
        let webhook_url = webhook_url.map(str::to_string);
        AlertsConfig::assemble(f, AlertsParts { webhook_url })
    }
}
