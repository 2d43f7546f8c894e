//! The `[server]` and `[tls]` sections: the keys as written in the file, their defaults
//! and bounds, and the validated [`ServerConfig`] and [`TlsConfig`] the listener uses
//! (the two layers of `crate::config`, which assembles them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ServeArgs;
use crate::server::allow::{parse_net, AccessList};
use crate::server::proxy::{Mode, ProxyConfig};
use crate::settings::{beside_config, section, ConfigError};

/// File names of a generated certificate and key, beside the config file.
pub const SELF_SIGNED_CERT: &str = "sensorlog-cert.pem";
pub const SELF_SIGNED_KEY: &str = "sensorlog-key.pem";

section! {
    /// `[server]` as written in the TOML file.
    raw ServerFile in "server";
    /// The validated `[server]` section: where boards connect and the limits on them.
    #[derive(Debug, Clone)]
    config ServerConfig;
    flags ServeArgs;
    parts ServerParts {
        listen: SocketAddr,
        /// False when `server.listen = ""`: TLS only.
        plain_tcp: bool,
        access: AccessList,
        /// `server.proxy_protocol`, `server.trusted_proxies`, `server.proxy_header_timeout_secs`.
        proxy: ProxyConfig,
    }
    keys {
        listen: String [DEFAULT_LISTEN: default "0.0.0.0:8090"],
        max_connections: usize [MAX_CONNECTIONS: default 4096, min 1, max 1_000_000, flag max_connections]
            => max_connections: usize,
        max_line_bytes: usize [MAX_LINE_BYTES: default 4096, min 16, max 16 * 1024 * 1024, unit " bytes",
            flag max_line_bytes] => max_line_bytes: usize,
        idle_timeout_secs: u64 [IDLE_TIMEOUT_SECS: default 300, min 1, max 7 * 86_400, unit " seconds",
            flag idle_timeout_secs] => idle_timeout: Duration = Duration::from_secs,
        listen_backlog: u32 [LISTEN_BACKLOG: default 4096, min 1, max 1 << 20, flag listen_backlog]
            => listen_backlog: u32,
        thread_stack_kib: usize [THREAD_STACK_KIB: default 128, min 64, max 64 * 1024, unit " KiB",
            flag thread_stack_kib] => thread_stack_bytes: usize = |kib: usize| kib * 1024,
        shutdown_grace_secs: u64 [SHUTDOWN_GRACE_SECS: default 5, min 0, max 3600, unit " seconds",
            flag shutdown_grace_secs] => shutdown_grace: Duration = Duration::from_secs,
        allow: Vec<String>,
        deny: Vec<String>,
        max_connections_per_ip: usize [MAX_CONNECTIONS_PER_IP: default 64, min 1, max 1_000_000,
            flag max_connections_per_ip] => max_connections_per_ip: usize,
        line_timeout_secs: u64 [LINE_TIMEOUT_SECS: default 60, min 1, max 86_400, unit " seconds",
            flag line_timeout_secs] => line_timeout: Duration = Duration::from_secs,
        // PROXY protocol (issue 20)
        proxy_protocol: String,
        trusted_proxies: Vec<String>,
        /// How long a trusted proxy has to send the PROXY header.
        proxy_header_timeout_secs: u64 [PROXY_HEADER_TIMEOUT_SECS: default 5, min 1, max 600, unit " seconds"],
    }
}

section! {
    /// `[tls]` as written in the TOML file.
    raw TlsFile in "tls";
    /// The validated `[tls]` section.
    #[derive(Debug, Clone)]
    config TlsConfig;
    parts TlsParts {
        listen: SocketAddr,
        cert_file: PathBuf,
        key_file: PathBuf,
        /// Generate the certificate and key when the files do not exist.
        self_signed: bool,
    }
    keys {
        listen: String,
        cert_file: PathBuf,
        key_file: PathBuf,
        self_signed: bool,
        handshake_timeout_secs: u64 [TLS_HANDSHAKE_TIMEOUT_SECS: default 10, min 1, max 300, unit " seconds"]
            => handshake_timeout: Duration = Duration::from_secs,
        /// TLS handshakes in progress at once; the next connection is closed.
        max_handshakes: usize [TLS_MAX_HANDSHAKES: default 256, min 1, max 1_000_000] => max_handshakes: usize,
    }
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
        let parts = ServerParts {
            listen,
            plain_tcp,
            access: AccessList {
                allow: nets("server.allow", s.allow.as_deref())?,
                deny: nets("server.deny", s.deny.as_deref())?,
            },
            proxy: proxy_config(s)?,
        };
        ServerConfig::assemble(s, args, parts)
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
        let parts = TlsParts {
            listen,
            cert_file: pick("tls.cert_file", &f.cert_file, SELF_SIGNED_CERT)?,
            key_file: pick("tls.key_file", &f.key_file, SELF_SIGNED_KEY)?,
            self_signed,
        };
        TlsConfig::assemble(f, parts).map(Some)
    }
}
