//! The `[server]` and `[tls]` sections: the keys as written in the file, their defaults
//! and bounds, and the validated [`ServerConfig`] and [`TlsConfig`] the listener uses
//! (the two layers of `crate::config`, which assembles them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::ServeArgs;
use crate::server::allow::{parse_net, AccessList};
use crate::server::proxy::{Mode, ProxyConfig};
use crate::settings::{beside_config, ConfigError, Limit};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:8090";
pub const MAX_CONNECTIONS: Limit<usize> = Limit::new("server.max_connections", 4096, 1, 1_000_000, "");
pub const MAX_LINE_BYTES: Limit<usize> = Limit::new("server.max_line_bytes", 4096, 16, 16 * 1024 * 1024, " bytes");
pub const IDLE_TIMEOUT_SECS: Limit<u64> = Limit::new("server.idle_timeout_secs", 300, 1, 7 * 86_400, " seconds");
pub const LISTEN_BACKLOG: Limit<u32> = Limit::new("server.listen_backlog", 4096, 1, 1 << 20, "");
pub const THREAD_STACK_KIB: Limit<usize> = Limit::new("server.thread_stack_kib", 128, 64, 64 * 1024, " KiB");
pub const SHUTDOWN_GRACE_SECS: Limit<u64> = Limit::new("server.shutdown_grace_secs", 5, 0, 3600, " seconds");
pub const MAX_CONNECTIONS_PER_IP: Limit<usize> = Limit::new("server.max_connections_per_ip", 64, 1, 1_000_000, "");
pub const LINE_TIMEOUT_SECS: Limit<u64> = Limit::new("server.line_timeout_secs", 60, 1, 86_400, " seconds");
/// How long a trusted proxy has to send the PROXY header.
pub const PROXY_HEADER_TIMEOUT_SECS: Limit<u64> = Limit::new("server.proxy_header_timeout_secs", 5, 1, 600, " seconds");

pub const TLS_HANDSHAKE_TIMEOUT_SECS: Limit<u64> = Limit::new("tls.handshake_timeout_secs", 10, 1, 300, " seconds");
pub const TLS_MAX_HANDSHAKES: Limit<usize> = Limit::new("tls.max_handshakes", 256, 1, 1_000_000, "");
/// File names of a generated certificate and key, beside the config file.
pub const SELF_SIGNED_CERT: &str = "sensorlog-cert.pem";
pub const SELF_SIGNED_KEY: &str = "sensorlog-key.pem";

/// `[server]` as written in the TOML file.
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

/// `[tls]` as written in the TOML file.
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

/// The validated `[server]` section: where boards connect and the limits on them.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// False when `server.listen = ""`: TLS only.
    pub plain_tcp: bool,
    pub max_connections: usize,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    pub listen_backlog: u32,
    pub thread_stack_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_connections_per_ip: usize,
    pub line_timeout: Duration,
    pub access: AccessList,
    /// `server.proxy_protocol`, `server.trusted_proxies`, `server.proxy_header_timeout_secs`.
    pub proxy: ProxyConfig,
}

/// The validated `[tls]` section.
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

impl ServerConfig {
    /// Flags beat the file; the file beats the defaults.
    pub fn build(s: &ServerFile, args: &ServeArgs) -> Result<ServerConfig, ConfigError> {
        let plain_tcp = args.listen.is_some() || s.listen.as_deref().is_none_or(|l| !l.trim().is_empty());
        let listen = match (args.listen, &s.listen) {
            (Some(a), _) => a,
            (None, Some(text)) if !text.trim().is_empty() => text.parse().map_err(|_| {
                ConfigError::new(
                    "server.listen",
                    format!("{text:?} is not an ADDRESS:PORT such as 0.0.0.0:8090 or [::]:8090"),
                )
            })?,
            (None, _) => DEFAULT_LISTEN.parse().expect("valid default"),
        };
        Ok(ServerConfig {
            listen,
            plain_tcp,
            max_connections: MAX_CONNECTIONS.pick(args.max_connections.or(s.max_connections))?,
            max_line_bytes: MAX_LINE_BYTES.pick(args.max_line_bytes.or(s.max_line_bytes))?,
            idle_timeout: IDLE_TIMEOUT_SECS.secs(args.idle_timeout_secs.or(s.idle_timeout_secs))?,
            listen_backlog: LISTEN_BACKLOG.pick(args.listen_backlog.or(s.listen_backlog))?,
            thread_stack_bytes: THREAD_STACK_KIB.pick(args.thread_stack_kib.or(s.thread_stack_kib))? * 1024,
            shutdown_grace: SHUTDOWN_GRACE_SECS.secs(args.shutdown_grace_secs.or(s.shutdown_grace_secs))?,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP
                .pick(args.max_connections_per_ip.or(s.max_connections_per_ip))?,
            line_timeout: LINE_TIMEOUT_SECS.secs(args.line_timeout_secs.or(s.line_timeout_secs))?,
            access: AccessList {
                allow: nets("server.allow", s.allow.as_deref())?,
                deny: nets("server.deny", s.deny.as_deref())?,
            },
            proxy: proxy_config(s)?,
        })
    }
}

/// The PROXY protocol settings (issue 20): a mode other than "off" needs trusted proxies.
fn proxy_config(s: &ServerFile) -> Result<ProxyConfig, ConfigError> {
    let mode = match s.proxy_protocol.as_deref() {
        None => Mode::Off,
        Some(v) => Mode::parse(v).ok_or_else(|| {
            ConfigError::new(
                "server.proxy_protocol",
                format!("is {v:?}; use \"off\", \"v1\", \"v2\" or \"any\""),
            )
        })?,
    };
    let trusted = nets("server.trusted_proxies", s.trusted_proxies.as_deref())?;
    if mode != Mode::Off && trusted.is_empty() {
        return Err(ConfigError::new(
            "server.proxy_protocol",
            format!(
                "is {:?} but server.trusted_proxies is empty: list the load balancers' addresses (CIDRs) allowed to send the header, or anyone could claim any address",
                mode.as_str()
            ),
        ));
    }
    Ok(ProxyConfig {
        mode,
        trusted,
        header_timeout: PROXY_HEADER_TIMEOUT_SECS.secs(s.proxy_header_timeout_secs)?,
    })
}

fn nets(key: &str, list: Option<&[String]>) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.unwrap_or_default()
        .iter()
        .map(|s| parse_net(s).map_err(|r| ConfigError::new(key, r)))
        .collect()
}

impl TlsConfig {
    /// `None` when `[tls] listen` is not set (or empty). `f`'s paths are already
    /// resolved; a generated pair's default names go beside `config`, the config file.
    pub fn build(f: &TlsFile, config: Option<&Path>) -> Result<Option<TlsConfig>, ConfigError> {
        let listen = match f.listen.as_deref().map(str::trim) {
            None | Some("") => return Ok(None),
            Some(text) => text.parse().map_err(|_| {
                ConfigError::new(
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
                None => Err(ConfigError::new(
                    key,
                    "is required with [tls] listen, unless tls.self_signed = true (then one is generated)",
                )),
            }
        };
        Ok(Some(TlsConfig {
            listen,
            cert_file: pick("tls.cert_file", &f.cert_file, SELF_SIGNED_CERT)?,
            key_file: pick("tls.key_file", &f.key_file, SELF_SIGNED_KEY)?,
            self_signed,
            handshake_timeout: TLS_HANDSHAKE_TIMEOUT_SECS.secs(f.handshake_timeout_secs)?,
            max_handshakes: TLS_MAX_HANDSHAKES.pick(f.max_handshakes)?,
        }))
    }
}
