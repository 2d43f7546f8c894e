//! TLS to PostgreSQL, as libpq's `sslmode` and `sslrootcert` say, with rustls (the ring
//! provider, like the rest of the daemon) through `tokio-postgres-rustls`.
//!
//! Managed PostgreSQL services accept only TLS connections, so the sink must speak it;
//! the URL keeps libpq's words so that the same URL works in `psql`:
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | - |
//! | `prefer` (libpq's default) | if the server offers it | no |
//! | `require` | yes, or no connection | no; but as `verify-ca` when `sslrootcert` is given (as libpq) |
//! | `verify-ca` | yes | signed by a CA of `sslrootcert` |
//! | `verify-full` | yes | `verify-ca`, and issued for the host in the URL |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the Mozilla roots
//! built into this program (services whose certificates come from a public CA);
//! `verify-ca` and `verify-full` without it use those too. `tokio-postgres` itself knows
//! only `disable`, `prefer` and `require`, so [`split_url`] takes the two keys out of
//! the URL before it is parsed, and the checks are done here, in the rustls verifier.

use std::path::PathBuf;
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Mode, String> {
        Ok(match s {
            "disable" => Mode::Disable,
            "allow" | "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
                ))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Disable => "disable",
            Mode::Prefer => "prefer",
            Mode::Require => "require",
            Mode::VerifyCa => "verify-ca",
            Mode::VerifyFull => "verify-full",
        }
    }
}

/// Where trusted CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The Mozilla roots compiled into the program (`sslrootcert=system`).
    System,
    File(PathBuf),
}

/// The TLS part of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: Mode,
    pub root_cert: Option<Roots>,
}

impl TlsSettings {
    /// What is checked, for the start-up line and `postgres check`.
    pub fn describe(&self) -> String {
        match (self.effective(), &self.root_cert) {
            (Mode::Disable, _) => "without TLS (sslmode=disable)".into(),
            (Mode::Prefer, _) => "TLS if the server offers it, certificate not checked (sslmode=prefer)".into(),
            (Mode::Require, _) => "TLS, certificate not checked (sslmode=require)".into(),
            (m, Some(Roots::File(p))) => format!(
                "TLS, certificate checked against {} (sslmode={})",
                p.display(),
                m.name()
            ),
            (m, _) => format!(
                "TLS, certificate checked against the built-in public CAs (sslmode={})",
                m.name()
            ),
        }
    }

    /// `require` with a CA file is `verify-ca`, as in libpq.
    fn effective(&self) -> Mode {
        match (self.mode, &self.root_cert) {
            (Mode::Require, Some(_)) => Mode::VerifyCa,
            (m, _) => m,
        }
    }

    /// The mode `tokio-postgres` is given: it only knows whether TLS is off, tried or needed.
    pub fn ssl_mode(&self) -> SslMode {
        match self.mode {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        }
    }

    /// The rustls connector (`None` for `disable`). Reads `sslrootcert`, so a missing or
    /// unreadable file is found when the config is loaded.
    pub fn connector(&self) -> Result<Option<MakeRustlsConnect>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match self.effective() {
            Mode::Disable => return Ok(None),
            Mode::Prefer | Mode::Require => Arc::new(Lenient {
                chain: None,
                provider: Arc::clone(&provider),
            }),
            mode => {
                let roots = self.roots()?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
                if mode == Mode::VerifyFull {
                    webpki
                } else {
                    Arc::new(Lenient {
                        chain: Some(webpki),
                        provider: Arc::clone(&provider),
                    })
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Some(MakeRustlsConnect::new(config)))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut store = RootCertStore::empty();
        match &self.root_cert {
            None | Some(Roots::System) => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(Roots::File(path)) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| format!("sslrootcert: cannot read {}: {e}", path.display()))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "sslrootcert: {} holds no usable PEM certificate",
                        path.display()
                    ));
                }
            }
        }
        Ok(store)
    }
}

/// Takes `sslmode` and `sslrootcert` out of a PostgreSQL URL (or a `key=value`
/// connection string) and returns the rest, for `postgres::Config` to parse. The
/// default `sslmode` is libpq's, `prefer`.
pub fn split_url(url: &str) -> Result<(String, TlsSettings), String> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => mode = Some(Mode::parse(value)?),
            "sslrootcert" => {
                root_cert = Some(match value {
                    "system" => Roots::System,
                    path => Roots::File(PathBuf::from(
                        percent_encoding::percent_decode_str(path)
                            .decode_utf8_lossy()
                            .into_owned(),
                    )),
                })
            }
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, v)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            if !take(k.trim(), v.trim_matches('\''))? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    Ok((
        rest,
        TlsSettings {
            mode: mode.unwrap_or(Mode::Prefer),
            root_cert,
        },
    ))
}

/// The sslmodes that check less than rustls does. `require` / `prefer` (`chain: None`):
/// encryption without a certificate check (libpq does the same). `verify-ca`: the chain
/// is checked, the name in the certificate is not. The handshake signatures are always
/// verified, so the session is with the holder of the certificate's key.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_the_tls_keys_out() {
        let (rest, t) =
            split_url("postgresql://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca%20x.pem&application_name=a")
                .unwrap();
        assert_eq!(rest, "postgresql://u@h/db?application_name=a");
        assert_eq!(t.mode, Mode::VerifyFull);
        assert_eq!(t.root_cert, Some(Roots::File("/etc/ca x.pem".into())));
        let (rest, t) = split_url("postgresql://u@h/db").unwrap();
        assert_eq!(
            (rest.as_str(), t.mode, t.root_cert),
            ("postgresql://u@h/db", Mode::Prefer, None)
        );
        let (rest, t) = split_url("postgresql://u@h/db?sslmode=require&sslrootcert=system").unwrap();
        assert_eq!(rest, "postgresql://u@h/db");
        assert_eq!((t.mode, t.effective()), (Mode::Require, Mode::VerifyCa));
        let (rest, t) = split_url("host=h user=u sslmode=disable dbname=d").unwrap();
        assert_eq!((rest.as_str(), t.mode), ("host=h user=u dbname=d", Mode::Disable));
        assert!(split_url("postgresql://u@h/db?sslmode=verify")
            .unwrap_err()
            .contains("verify-full"));
    }

    #[test]
    fn connectors_for_each_mode() {
        let t = |mode| TlsSettings { mode, root_cert: None };
        assert!(t(Mode::Disable).connector().unwrap().is_none());
        for m in [Mode::Prefer, Mode::Require, Mode::VerifyCa, Mode::VerifyFull] {
            assert!(t(m).connector().unwrap().is_some(), "{m:?}");
        }
        let missing = TlsSettings {
            mode: Mode::VerifyFull,
            root_cert: Some(Roots::File("/nonexistent/ca.pem".into())),
        };
        let Err(e) = missing.connector() else {
            panic!("a missing sslrootcert file must be an error")
        };
        assert!(e.contains("sslrootcert") && e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
