//! `sensorlog token add|list|revoke`: the operator's side of [`crate::auth::tokens`].
//!
//! The token is printed once, to stdout, and never stored: only its SHA-256 hash goes to
//! the file. The file is rewritten atomically with mode 0600; a running daemon notices
//! the change within a second and applies it to the next greeting, without a restart.

use std::path::PathBuf;

use crate::auth::settings::AuthConfig;
use crate::auth::tokens::{self, Entry, Tokens};
use crate::cli::{TokenCommand, TokensFileArgs};
use crate::config;
use crate::error::{Error, Result};
use crate::settings::ConfigError;

/// The tokens file: `--tokens-file`, else the config's `auth.tokens_file`.
fn tokens_path(args: &TokensFileArgs) -> Result<PathBuf> {
    if let Some(p) = &args.tokens_file {
        return Ok(p.clone());
    }
    let from_config = match &args.config {
        Some(c) => AuthConfig::build(&config::load_file(c)?.auth)?.tokens_file,
        None => None,
    };
    from_config.ok_or_else(|| {
        Error::Config(ConfigError {
            key: "auth.tokens_file".into(),
            reason: "is not set: pass --tokens-file FILE, or --config FILE with auth.tokens_file in it".into(),
        })
    })
}

pub fn run(command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Add { device, replace, file } => add(&device, replace, &file),
        TokenCommand::List(file) => list(&file),
        TokenCommand::Revoke { device, file } => revoke(&device, &file),
    }
}

fn add(device: &str, replace: bool, args: &TokensFileArgs) -> Result<()> {
    if !tokens::valid_device(device) {
        return Err(Error::Config(ConfigError {
            key: "device".into(),
            reason: format!(
                "{device:?} is not a usable device name (1-{} printable ASCII characters, no spaces, commas, quotes, = or #)",
                tokens::MAX_DEVICE_CHARS
            ),
        }));
    }
    let path = tokens_path(args)?;
    let mut t = Tokens::load(&path, true).map_err(|e| Error::startup("read the tokens", e))?;
    if t.get(device).is_some() && !replace {
        return Err(Error::Config(ConfigError {
            key: "device".into(),
            reason: format!(
                "{device:?} already has a token; pass --replace to issue a new one (the old one stops working)"
            ),
        }));
    }
    let token =
        tokens::generate().map_err(|_| Error::startup("generate a token", "the system random generator failed"))?;
    t.entries.retain(|e| e.device != device);
    t.entries.push(Entry {
        device: device.to_string(),
        hash: tokens::hash(&token),
        created: tokens::now_text(),
    });
    t.save(&path).map_err(|e| Error::startup("save the token", e))?;
    println!(
        "Token for device {device:?} (shown only this once; {} keeps only its hash):",
        path.display()
    );
    println!();
    println!("    {token}");
    println!();
    println!("Put these lines in the board's secrets.h:");
    println!();
    println!("    #define SENSORLOG_DEVICE_NAME \"{device}\"");
    println!("    #define SENSORLOG_TOKEN \"{token}\"");
    println!();
    println!("The board greets with: HELLO {device} token=<token> ...");
    Ok(())
}

fn list(args: &TokensFileArgs) -> Result<()> {
    let path = tokens_path(args)?;
    let t = Tokens::load(&path, true).map_err(|e| Error::startup("read the tokens", e))?;
    if t.entries.is_empty() {
        println!("No device tokens in {}.", path.display());
        return Ok(());
    }
    println!("{:<24} created", "device");
    for e in &t.entries {
        println!(
            "{:<24} {}",
            e.device,
            if e.created.is_empty() { "-" } else { &e.created }
        );
    }
    Ok(())
}

fn revoke(device: &str, args: &TokensFileArgs) -> Result<()> {
    let path = tokens_path(args)?;
    let mut t = Tokens::load(&path, false).map_err(|e| Error::startup("read the tokens", e))?;
    let before = t.entries.len();
    t.entries.retain(|e| e.device != device);
    if t.entries.len() == before {
        return Err(Error::Config(ConfigError {
            key: "device".into(),
            reason: format!("{device:?} has no token in {}", path.display()),
        }));
    }
    t.save(&path).map_err(|e| Error::startup("save the tokens", e))?;
    println!("Revoked the token of {device:?}; a running daemon refuses it from its next greeting.");
    Ok(())
}
