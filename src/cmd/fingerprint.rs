//! `sensorlog tls fingerprint`: what a board pins.
//!
//! The ESP8266's BearSSL pins the SHA-1 fingerprint of the server's certificate
//! (`setFingerprint`), other clients the SHA-256 one. With `tls.self_signed = true` and
//! no certificate yet, the pair is generated here, so the fingerprint can go into the
//! boards before the daemon's first start.

use crate::cli::FingerprintArgs;
use crate::config;
use crate::error::{Error, Result};
use crate::server::settings::TlsConfig;
use crate::server::tls_listener as tls;
use crate::settings::ConfigError;

pub fn fingerprint(args: &FingerprintArgs) -> Result<()> {
    let path = match (&args.cert_file, &args.config) {
        (Some(p), _) => p.clone(),
        (None, Some(c)) => {
            let tls_config = TlsConfig::build(&config::load_file(c)?.tls, Some(c))?.ok_or_else(|| {
                Error::Config(ConfigError {
                    key: "tls.listen".into(),
                    reason: format!("is not set in {}: TLS is off", c.display()),
                })
            })?;
            let (_, generated) = tls::server_config(&tls_config).map_err(|e| Error::startup("set up TLS", e))?;
            if let Some(p) = generated {
                println!("Generated a self-signed certificate: {}.", p.display());
            }
            tls_config.cert_file
        }
        (None, None) => {
            return Err(Error::Config(ConfigError {
                key: "tls.cert_file".into(),
                reason: "pass --config FILE (with a [tls] section) or --cert-file FILE".into(),
            }))
        }
    };
    let certs = tls::read_certs(&path).map_err(|e| Error::startup("read the certificate", e))?;
    let (sha1, sha256) = tls::fingerprints(&certs[0]);
    println!("Certificate {}", path.display());
    println!("SHA-1   {sha1}");
    println!("SHA-256 {sha256}");
    Ok(())
}
