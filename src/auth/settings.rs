//! The `[auth]` section: the keys as written in the file, their defaults and bounds, and
//! the validated [`AuthConfig`] (the tokens file and the wrong-token backoff) that
//! device authentication uses (assembled by `crate::config`).

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::{section, ConfigError};

section! {
    /// `[auth]` as written in the TOML file.
    raw AuthFile in "auth";
    /// The wrong-token brake's limits (see `crate::auth::backoff`).
    #[derive(Debug, Clone, Copy)]
    config BackoffConfig;
    keys {
        tokens_file: PathBuf,
        required: bool,
        failures_before_backoff: u32 [FAILURES_BEFORE_BACKOFF: default 5, min 0, max 1000]
            => failures_before_backoff: u32,
        max_backoff_secs: u64 [MAX_BACKOFF_SECS: default 300, min 1, max 86_400, unit " seconds"]
            => max_backoff: Duration = Duration::from_secs,
        tracked_addresses: usize [TRACKED_ADDRESSES: default 10_000, min 1, max 10_000_000]
            => tracked_addresses: usize,
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub tokens_file: Option<PathBuf>,
    /// Only meaningful with a tokens file.
    pub required: bool,
    pub backoff: BackoffConfig,
}

impl AuthConfig {
    /// `f`'s paths are already resolved (`FileConfig::paths_beside`).
    pub fn build(f: &AuthFile) -> Result<AuthConfig, ConfigError> {
        let tokens_file = f.tokens_file.clone();
        if tokens_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError::new("auth.tokens_file", "must not be empty"));
        }
        if f.required == Some(true) && tokens_file.is_none() {
            return Err(ConfigError::new(
                "auth.required",
                "is true but auth.tokens_file is not set (create tokens with `sensorlog token add <device>`)",
            ));
        }
        Ok(AuthConfig {
            required: f.required.unwrap_or(true),
            tokens_file,
            backoff: BackoffConfig::assemble(f)?,
        })
    }
}
