//! The tokens file: which devices may write, each with the SHA-256 hash of its token.
//!
//! Format (UTF-8 text, one device per line; `#` starts a comment line):
//!
//! ```text
//! # device  hash                    created
//! kitchen   sha256:<64 hex digits>  2026-12-01T10:40:00.000Z
//! ```
//!
//! Why a plain hash and no password KDF: tokens are generated here, 192 random bits each,
//! so guessing one from its hash is as hard as guessing the token; a slow KDF would only
//! slow down every board's greeting. Only hashes are stored, so a leaked tokens file
//! does not let anyone write readings. The file is created and rewritten with mode 0600
//! (temporary file, fsync, rename, fsync of the directory), so a crash never leaves a
//! half-written file and a concurrent reader sees the old or the new version.
//!
//! The daemon holds a [`TokenStore`]: the parsed file behind a lock, replaced whole
//! when a watcher thread sees the file change (inode, size or mtime, polled every
//! [`WATCH_INTERVAL`]). A file that fails to parse is not applied: the previous set
//! stays in force and the error is logged, so a typo cannot open or lock the door.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

use crate::shutdown::Shutdown;

/// How often the daemon checks the tokens file for changes.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Random bytes per token: 192 bits, printed as 48 hex digits.
pub const TOKEN_BYTES: usize = 24;
/// Longest device name a token can be issued for (the protocol's device-name limit).
pub const MAX_DEVICE_CHARS: usize = 64;

const HASH_PREFIX: &str = "sha256:";
const HEADER: &str = "# sensorlog device tokens: <device> sha256:<hash of token> <created>.\n# Managed by `sensorlog token add|list|revoke`; only hashes are stored here.\n";

/// An auth error: which file and what went wrong.
#[derive(Debug)]
pub struct AuthError {
    pub path: PathBuf,
    pub reason: String,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tokens file {} (auth.tokens_file): {}",
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for AuthError {}

fn auth_err(path: &Path, reason: impl Into<String>) -> AuthError {
    AuthError {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// One device's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub device: String,
    pub hash: [u8; 32],
    pub created: String,
}

/// The parsed tokens file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens {
    pub entries: Vec<Entry>,
}

/// Whether `name` can be given a token: 1 to 64 printable ASCII characters that the
/// greeting can carry (no spaces, commas, quotes, `=` or `#`).
pub fn valid_device(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DEVICE_CHARS
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b',' | b'"' | b'=' | b'#' | b'\\'))
}

/// A new random token (48 lowercase hex digits).
pub fn generate() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; TOKEN_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(hex(&bytes))
}

pub fn hash(token: &str) -> [u8; 32] {
    let d = digest(&SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Parses the file's text; the error names the line.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(device), Some(h)) = (words.next(), words.next()) else {
                return Err(format!("line {}: expected `<device> sha256:<hash> [created]`", i + 1));
            };
            if !valid_device(device) {
                return Err(format!("line {}: {device:?} is not a valid device name", i + 1));
            }
            let hash = h
                .strip_prefix(HASH_PREFIX)
                .and_then(unhex)
                .ok_or_else(|| format!("line {}: the hash must be sha256: and 64 hex digits", i + 1))?;
            if entries.iter().any(|e| e.device == device) {
                return Err(format!("line {}: device {device:?} appears twice", i + 1));
            }
            entries.push(Entry {
                device: device.to_string(),
                hash,
                created: words.next().unwrap_or("").to_string(),
            });
        }
        Ok(Tokens { entries })
    }

    pub fn to_text(&self) -> String {
        let mut s = String::from(HEADER);
        for e in &self.entries {
            s.push_str(&format!("{} {HASH_PREFIX}{} {}\n", e.device, hex(&e.hash), e.created));
        }
        s
    }

    pub fn get(&self, device: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.device == device)
    }

    /// Whether `token` is `device`'s token. The hashes are compared in constant time;
    /// an unknown device costs the same hash and comparison.
    pub fn verify(&self, device: &str, token: &str) -> bool {
        let presented = hash(token);
        match self.get(device) {
            Some(e) => bool::from(presented.ct_eq(&e.hash)),
            None => {
                let _ = bool::from(presented.ct_eq(&[0u8; 32]));
                false
            }
        }
    }

    /// Reads the file; a missing file is an empty set only when `missing_ok`.
    pub fn load(path: &Path, missing_ok: bool) -> Result<Tokens, AuthError> {
        match crate::small_file::read_to_string(path, crate::small_file::MAX_TOKENS_BYTES) {
            Ok(text) => Tokens::parse(&text).map_err(|r| auth_err(path, r)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_ok => Ok(Tokens::default()),
            Err(e) => Err(auth_err(path, format!("cannot read: {e}"))),
        }
    }

    /// Replaces the file atomically; the file is mode 0600 from its first byte.
    pub fn save(&self, path: &Path) -> Result<(), AuthError> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| auth_err(path, format!("cannot create {}: {e}", dir.display())))?;
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".tmp");
        let tmp = path.with_file_name(tmp_name);
        let write = || -> std::io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
            f.write_all(self.to_text().as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            auth_err(path, format!("cannot write: {e}"))
        })
    }
}

/// When the file last changed, as far as polling can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some(Stamp {
        ino: m.ino(),
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
    })
}

/// The live token set of a running daemon.
pub struct TokenStore {
    path: PathBuf,
    tokens: RwLock<Arc<Tokens>>,
    seen: std::sync::Mutex<Option<Stamp>>,
}

impl TokenStore {
    /// Loads the file, creating an empty one (0600) if it does not exist yet.
    pub fn open(path: &Path) -> Result<Arc<TokenStore>, AuthError> {
        if !path.exists() {
            Tokens::default().save(path)?;
            log::warn!(
                "Created an empty tokens file {}: every board is refused until it has a token (`sensorlog token add <device>`).",
                path.display()
            );
        }
        let seen = stamp(path);
        let tokens = Tokens::load(path, false)?;
        if let Ok(m) = fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                log::warn!(
                    "The tokens file {} can be read by other users (mode {:o}); run `chmod 600` on it.",
                    path.display(),
                    m.permissions().mode() & 0o777
                );
            }
        }
        Ok(Arc::new(TokenStore {
            path: path.to_path_buf(),
            tokens: RwLock::new(Arc::new(tokens)),
            seen: std::sync::Mutex::new(seen),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn current(&self) -> Arc<Tokens> {
        Arc::clone(&self.tokens.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn verify(&self, device: &str, token: &str) -> bool {
        self.current().verify(device, token)
    }

    /// Reloads the file if it changed since the last look, or when `force`d (SIGHUP);
    /// returns whether it did.
    pub fn reload_if_changed(&self, force: bool) -> bool {
        let now = stamp(&self.path);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now == *seen && !force {
            return false;
        }
        *seen = now;
        match Tokens::load(&self.path, false) {
            Ok(t) => {
                let n = t.entries.len();
                *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
                log::info!("Reloaded {}: {n} device tokens.", self.path.display());
                true
            }
            Err(e) => {
                log::error!(
                    "Cannot reload the tokens: {e}. The {} tokens loaded before stay in force until the file is fixed.",
                    self.current().entries.len()
                );
                false
            }
        }
    }

    /// Polls the file every [`WATCH_INTERVAL`] until shutdown; a SIGHUP (which wakes the
    /// sleep) reloads it at once, changed or not.
    pub fn spawn_watcher(self: &Arc<Self>, shutdown: Arc<Shutdown>) -> std::io::Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new().name("tokens-watch".into()).spawn(move || {
            let mut hangups = shutdown.hangups();
            while !shutdown.sleep(WATCH_INTERVAL) {
                let hup = shutdown.hangups();
                me.reload_if_changed(hup != hangups);
                hangups = hup;
            }
        })
    }
}

/// A timestamp for the `created` column.
pub fn now_text() -> String {
    crate::sink::csv::encode::rfc3339_millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_verify() {
        let token = generate().unwrap();
        assert_eq!(token.len(), 2 * TOKEN_BYTES);
        assert_ne!(token, generate().unwrap());
        let t = Tokens {
            entries: vec![Entry {
                device: "kitchen".into(),
                hash: hash(&token),
                created: "2026-12-01T10:00:00.000Z".into(),
            }],
        };
        let text = t.to_text();
        assert!(!text.contains(&token), "only the hash is stored");
        let back = Tokens::parse(&text).unwrap();
        assert_eq!(back, t);
        assert!(back.verify("kitchen", &token));
        assert!(!back.verify("kitchen", &token[1..]));
        assert!(!back.verify("garage", &token));
    }

    #[test]
    fn bad_files_name_the_line() {
        assert!(Tokens::parse("a sha256:00\n").unwrap_err().contains("line 1"));
        let h = format!("sha256:{}", "0".repeat(64));
        assert!(Tokens::parse(&format!("# c\na {h}\na {h}\n"))
            .unwrap_err()
            .contains("line 3"));
        assert!(Tokens::parse(&format!("a=b {h}\n")).is_err());
        assert!(Tokens::parse("onlyname\n").is_err());
    }

    #[test]
    fn device_names() {
        assert!(valid_device("kitchen-2.b_1"));
        assert!(valid_device(&"x".repeat(64)));
        assert!(!valid_device(&"x".repeat(65)));
        for bad in ["", "a b", "a,b", "a=b", "a\"b", "é"] {
            assert!(!valid_device(bad), "{bad:?}");
        }
    }

    #[test]
    fn saved_file_is_private_and_reloads_on_change() {
        let dir = crate::scratch_dir("tokens");
        let path = dir.join("tokens");
        let store = TokenStore::open(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!store.verify("a", "t"));
        let t = Tokens {
            entries: vec![Entry {
                device: "a".into(),
                hash: hash("t"),
                created: String::new(),
            }],
        };
        t.save(&path).unwrap();
        assert!(store.reload_if_changed(false));
        assert!(store.verify("a", "t"));
        assert!(!store.reload_if_changed(false), "no change, no reload");
        assert!(store.reload_if_changed(true), "SIGHUP reloads anyway");
        fs::write(&path, "garbage line\n").unwrap();
        assert!(!store.reload_if_changed(false));
        assert!(store.verify("a", "t"), "a broken file keeps the previous set");
        let _ = fs::remove_dir_all(&dir);
    }
}
