//! The TLS listener's half: certificates, the rustls server config, and the handshake.
//!
//! Why rustls with the ring provider: it is already in the tree for the Sheets client,
//! so TLS costs no new C library. TLS 1.3 and 1.2 are both offered, because the boards'
//! stacks (the ESP8266's BearSSL, the ATWINC1500's firmware) speak 1.2 only.
//!
//! Certificates come from `tls.cert_file` / `tls.key_file` (PEM: the chain, then one
//! PKCS#8, PKCS#1 or SEC1 key). With `tls.self_signed = true` a missing pair is
//! generated at start (ECDSA P-256 via `rcgen`; the key file is created 0600 before a
//! byte of key is written). Boards pin its fingerprint: `sensorlog tls fingerprint`.
//!
//! A TLS connection is served exactly like a plain one, by its own thread and under
//! the same slot: [`handshake`] runs first, bounded by `tls.handshake_timeout_secs` as a
//! whole (not per read, so a peer trickling bytes cannot stretch it), then the thread
//! reads plaintext through a [`rustls::StreamOwned`] over a borrowed `&TcpStream`. The
//! registry keeps the `TcpStream` itself, so shutdown's half-close and read-timeout
//! changes reach TLS connections unchanged. At most `tls.max_handshakes` handshakes run
//! at once ([`HandshakePermit`]); the next is closed at once, so a flood of half-open
//! TLS connections holds few slots and for a bounded time.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::server::settings::TlsConfig;

/// A TLS set-up error: which file and why.
#[derive(Debug)]
pub struct TlsError {
    pub what: String,
    pub reason: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS: {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for TlsError {}

fn tls_err(what: impl Into<String>, reason: impl fmt::Display) -> TlsError {
    TlsError {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// A board's TLS stream: rustls over the registry's socket.
pub type TlsStream<'a> = StreamOwned<ServerConnection, &'a TcpStream>;

/// The certificate chain of a PEM file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let what = format!("certificate file {} (tls.cert_file)", path.display());
    let pem = crate::small_file::read(path, crate::small_file::MAX_TEXT_BYTES).map_err(|e| tls_err(&what, e))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err(&what, e))?;
    if certs.is_empty() {
        return Err(tls_err(what, "holds no CERTIFICATE block"));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = format!("key file {} (tls.key_file)", path.display());
    let pem = crate::small_file::read(path, crate::small_file::MAX_TEXT_BYTES).map_err(|e| tls_err(&what, e))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| tls_err(what, e))
}

/// Writes a new self-signed certificate and key; the key file is 0600 from creation.
pub fn generate_self_signed(cert: &Path, key: &Path) -> Result<(), TlsError> {
    let mut names = vec!["sensorlog".to_string(), "localhost".to_string()];
    if let Ok(h) = fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !names.iter().any(|n| n == h) {
            names.push(h.to_string());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names).map_err(|e| tls_err("generate a certificate", e))?;
    for (path, pem, mode) in [
        (key, generated.signing_key.serialize_pem(), 0o600),
        (cert, generated.cert.pem(), 0o644),
    ] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| tls_err(format!("create {}", dir.display()), e))?;
        }
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(path)?;
            f.write_all(pem.as_bytes())?;
            f.sync_all()
        };
        write().map_err(|e| tls_err(format!("write {}", path.display()), e))?;
    }
    Ok(())
}

/// Builds the rustls config, generating a self-signed pair first when asked and missing.
/// Returns the config and, when one was generated, its path.
pub fn server_config(cfg: &TlsConfig) -> Result<(Arc<ServerConfig>, Option<PathBuf>), TlsError> {
    let mut generated = None;
    if cfg.self_signed && !cfg.cert_file.exists() && !cfg.key_file.exists() {
        generate_self_signed(&cfg.cert_file, &cfg.key_file)?;
        generated = Some(cfg.cert_file.clone());
    }
    let certs = read_certs(&cfg.cert_file)?;
    let key = read_key(&cfg.key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_err("protocol versions", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_err(
                format!("{} with {}", cfg.cert_file.display(), cfg.key_file.display()),
                e,
            )
        })?;
    let mut config = config;
    // No TLS 1.3 session tickets: boards do not resume sessions, and a ticket the board
    // never reads sits in its receive buffer, so that its close becomes a reset that
    // discards readings still queued on our side.
    config.send_tls13_tickets = 0;
    Ok((Arc::new(config), generated))
}

/// `AA:BB:...` hex of `bytes`.
fn colon_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

/// SHA-1 and SHA-256 fingerprints of a certificate (what boards pin).
pub fn fingerprints(cert: &CertificateDer<'_>) -> (String, String) {
    (
        colon_hex(digest(&SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref()).as_ref()),
        colon_hex(digest(&SHA256, cert.as_ref()).as_ref()),
    )
}

/// What an accept loop needs to serve TLS: the rustls config and the handshake limits.
pub struct TlsAcceptor {
    pub config: Arc<ServerConfig>,
    pub handshake_timeout: Duration,
    pub handshakes: Handshakes,
    /// Handshakes that failed or timed out, and connections refused for
    /// `tls.max_handshakes`.
    pub failed: std::sync::atomic::AtomicU64,
    pub over_limit: std::sync::atomic::AtomicU64,
}

impl TlsAcceptor {
    pub fn new(cfg: &TlsConfig, config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            config,
            handshake_timeout: cfg.handshake_timeout,
            handshakes: Handshakes::new(cfg.max_handshakes),
            failed: Default::default(),
            over_limit: Default::default(),
        }
    }

    /// Handshakes within the limits, or why not (for the connection's debug line).
    pub fn accept<'a>(&self, tcp: &'a TcpStream) -> Result<TlsStream<'a>, String> {
        let Some(_permit) = self.handshakes.try_acquire() else {
            self.over_limit.fetch_add(1, Ordering::Relaxed);
            return Err(format!(
                "refused: {} TLS handshakes in progress (tls.max_handshakes)",
                self.handshakes.max()
            ));
        };
        handshake(&self.config, tcp, self.handshake_timeout).map_err(|e| {
            self.failed.fetch_add(1, Ordering::Relaxed);
            if e.kind() == io::ErrorKind::TimedOut {
                format!(
                    "TLS handshake not finished in {} s (tls.handshake_timeout_secs)",
                    self.handshake_timeout.as_secs()
                )
            } else {
                format!("TLS handshake failed: {e}")
            }
        })
    }

    /// A line for the shutdown summary, or `None` if nothing failed.
    pub fn summary(&self) -> Option<String> {
        let (failed, over) = (
            self.failed.load(Ordering::Relaxed),
            self.over_limit.load(Ordering::Relaxed),
        );
        (failed + over > 0).then(|| {
            format!("TLS: {failed} handshakes failed or timed out, {over} connections refused over tls.max_handshakes.")
        })
    }
}

/// Counts handshakes in progress; a permit gives its place back on drop.
pub struct Handshakes {
    max: usize,
    now: AtomicUsize,
}

pub struct HandshakePermit<'a>(&'a Handshakes);

impl Handshakes {
    pub fn new(max: usize) -> Handshakes {
        Handshakes {
            max,
            now: AtomicUsize::new(0),
        }
    }

    pub fn try_acquire(&self) -> Option<HandshakePermit<'_>> {
        self.now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.max).then_some(n + 1))
            .ok()
            .map(|_| HandshakePermit(self))
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for HandshakePermit<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket with a deadline for the whole handshake: every read and write gets the
/// time that is left as its timeout, and none is started after the deadline.
struct Deadline<'a> {
    tcp: &'a TcpStream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "handshake timeout"));
        }
        Ok(left)
    }
}

fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::Error::new(io::ErrorKind::TimedOut, "handshake timeout")
    } else {
        e
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.tcp.set_read_timeout(Some(self.left()?))?;
        (&*self.tcp).read(buf).map_err(timed_out)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.set_write_timeout(Some(self.left()?))?;
        #[allow(clippy::disallowed_methods)] // rustls handles short writes
        (&*self.tcp).write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs the server handshake on `tcp` within `timeout`. The caller restores the
/// socket's read and write timeouts afterwards.
pub fn handshake<'a>(config: &Arc<ServerConfig>, tcp: &'a TcpStream, timeout: Duration) -> io::Result<TlsStream<'a>> {
    let mut conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
    let mut io = Deadline {
        tcp,
        until: Instant::now() + timeout,
    };
    while conn.is_handshaking() {
        conn.complete_io(&mut io)?;
    }
    Ok(StreamOwned::new(conn, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn config_in(dir: &Path) -> TlsConfig {
        TlsConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_file: dir.join("c.pem"),
            key_file: dir.join("k.pem"),
            self_signed: true,
            handshake_timeout: Duration::from_secs(1),
            max_handshakes: 4,
        }
    }

    #[test]
    fn self_signed_pair_is_generated_once_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::scratch_dir("tls");
        let cfg = config_in(&dir);
        let (_, generated) = server_config(&cfg).unwrap();
        assert_eq!(generated.as_deref(), Some(cfg.cert_file.as_path()));
        assert_eq!(fs::metadata(&cfg.key_file).unwrap().permissions().mode() & 0o777, 0o600);
        let before = fs::read(&cfg.cert_file).unwrap();
        let (_, again) = server_config(&cfg).unwrap();
        assert!(again.is_none());
        assert_eq!(fs::read(&cfg.cert_file).unwrap(), before, "kept, not regenerated");
        let (sha1, sha256) = fingerprints(&read_certs(&cfg.cert_file).unwrap()[0]);
        assert_eq!((sha1.len(), sha256.len()), (20 * 3 - 1, 32 * 3 - 1));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_silent_peer_is_cut_at_the_handshake_timeout() {
        let dir = crate::scratch_dir("tls-hs");
        let (config, _) = server_config(&config_in(&dir)).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        let e = handshake(&config, &server, Duration::from_millis(200)).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn handshake_permits_at_n_and_n_plus_1() {
        let h = Handshakes::new(2);
        let a = h.try_acquire().unwrap();
        let _b = h.try_acquire().unwrap();
        assert!(h.try_acquire().is_none());
        drop(a);
        assert!(h.try_acquire().is_some());
    }
}
