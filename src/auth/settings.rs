//! The `[auth]` section: the keys as written in the file, their defaults and bounds, and
//! the validated [`AuthConfig`] (the tokens file and the wrong-token backoff) that
//! device authentication uses (assembled by `crate::config`).

use std::path::PathBuf;

use serde::Deserialize;

use crate::auth::backoff::BackoffConfig;
use crate::settings::{ConfigError, Limit};

pub const FAILURES_BEFORE_BACKOFF: Limit<u32> = Limit::new("auth.failures_before_backoff", 5, 0, 1000, "");
pub const MAX_BACKOFF_SECS: Limit<u64> = Limit::new("auth.max_backoff_secs", 300, 1, 86_400, " seconds");
pub const TRACKED_ADDRESSES: Limit<usize> = Limit::new("auth.tracked_addresses", 10_000, 1, 10_000_000, "");

/// `[auth]` as written in the TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFile {
    pub tokens_file: Option<PathBuf>,
    pub required: Option<bool>,
    pub failures_before_backoff: Option<u32>,
    pub max_backoff_secs: Option<u64>,
    pub tracked_addresses: Option<usize>,
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
            backoff: BackoffConfig {
                failures_before_backoff: FAILURES_BEFORE_BACKOFF.pick(f.failures_before_backoff)?,
                max_backoff: MAX_BACKOFF_SECS.secs(f.max_backoff_secs)?,
                tracked_addresses: TRACKED_ADDRESSES.pick(f.tracked_addresses)?,
            },
        })
    }
}
