//! Reading the small files an operator points the daemon at (the config file, the
//! Google key, the PostgreSQL password, the device tokens, the TLS certificate and key,
//! the uploader's cursor): whole, but only regular files, and never more than a bound.
//!
//! Why: each is a path somebody typed, and a wrong path is the usual mistake. Read
//! blindly, the CSV given as `sheets.key_file` would be loaded whole (gigabytes) before
//! the JSON parser refused it, and a device or a pipe (`/dev/zero`, a FIFO) would never
//! finish, or would fill memory, so the daemon would hang at start instead of saying
//! which key is wrong. The bounds are far above any real file of each kind (a
//! service-account key is about 2.4 KB) and are not settings: a file past one is the
//! wrong file, and the error says so with its size.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A config file, a TLS certificate chain or key.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;
/// A service-account key, a password, a cursor.
pub const MAX_SECRET_BYTES: u64 = 64 << 10;
/// The device tokens file: about 140 bytes a device, so over 100,000 devices.
pub const MAX_TOKENS_BYTES: u64 = 16 << 20;

/// The whole file at `path`, if it is a regular file of at most `max_bytes`.
pub fn read(path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
    // Look before opening: opening a FIFO for reading waits for a writer.
    check(&std::fs::metadata(path)?, max_bytes)?;
    let file = File::open(path)?;
    let meta = file.metadata()?;
    check(&meta, max_bytes)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // It may grow between the look and the read: never past the bound.
    file.take(max_bytes + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_bytes {
        return Err(too_big(bytes.len() as u64, max_bytes));
    }
    Ok(bytes)
}

/// [`read`] as UTF-8 text.
pub fn read_to_string(path: &Path, max_bytes: u64) -> io::Result<String> {
    String::from_utf8(read(path, max_bytes)?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text ({e})")))
}

fn check(meta: &std::fs::Metadata, max_bytes: u64) -> io::Result<()> {
    if meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a directory, not a file",
        ));
    }
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "it is a device, pipe or socket, not a regular file",
        ));
    }
    if meta.len() > max_bytes {
        return Err(too_big(meta.len(), max_bytes));
    }
    Ok(())
}

fn too_big(len: u64, max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("it is {len} bytes, and a file of this kind is at most {max_bytes}: is it the right file?"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_within_the_bound_only() {
        let dir = crate::scratch_dir("small-file");
        let small = dir.join("small");
        std::fs::write(&small, "abc").unwrap();
        assert_eq!(read_to_string(&small, 3).unwrap(), "abc");
        let err = read(&small, 2).unwrap_err().to_string();
        assert!(err.contains("it is 3 bytes") && err.contains("at most 2"), "{err}");
        let err = read(&dir, 10).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        let err = read(Path::new("/dev/zero"), 10).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        let err = read_to_string(&small, 10).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        assert_eq!(
            read(&dir.join("missing"), 10).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
