//! Start-up recovery: what the file holds, what a crash left behind, what to remember.
//!
//! # What is repaired, and what never is
//! - **A torn last row** (the file does not end with a newline: a crash or power cut in
//!   the middle of a write) is cut off, and only it: its bytes were never acknowledged,
//!   since an ACK is sent only after the whole write returned. Complete rows before it
//!   are kept even when they belong to the same reading (the board resends that reading
//!   whole, so it may appear partly and then whole; it is never lost). The reading the
//!   torn row belonged to is not put in the resend memory, so the resend is written.
//!   The old repair also cut complete rows that shared the torn row's millisecond and
//!   peer, which could remove other boards' acknowledged rows.
//! - **A header without its newline** gets the newline, so the first row is not glued
//!   to it. A file that holds only a prefix of the header (a crash while creating it) is
//!   started afresh.
//! - **Nothing else.** A read error is not a torn tail: start-up stops with the error,
//!   and the file is left exactly as it was. A foreign header is refused.
//!
//! Rows never contain a raw newline (the parser replaces control characters), so rows
//! are counted as lines, which lets a 1 GiB file be counted in a fraction of a second,
//! and the resend memory is rebuilt from a bounded tail (`dedup.scan_tail_mib`), so
//! start-up time does not grow with the file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use crate::sink::csv::dedup::{Dedup, Key};
use crate::sink::csv::encode::{original, original_value, COLUMNS, HEADER};
use crate::sink::csv::error::{io_err, CsvError};

/// What recovery found and did; the caller applies `cut_to`, `rewrite_header` and
/// `add_header_newline` to the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Data rows in the file once repaired.
    pub rows: u64,
    /// File length once repaired.
    pub bytes: u64,
    /// Bytes of a torn last row to cut, and where the cut is.
    pub cut_to: Option<u64>,
    pub torn_bytes: u64,
    /// The file is empty or only a prefix of the header: write the header afresh.
    pub rewrite_header: bool,
    /// The header is complete but has no newline.
    pub add_header_newline: bool,
    /// Rows in the scanned tail that do not have the expected columns.
    pub malformed_rows: u64,
    /// Bytes of the file's end read to rebuild the resend memory.
    pub tail_scanned: u64,
}

const CHUNK: usize = 1 << 20;

/// Reads `len` bytes at `offset` exactly, or fails (a short file is an error here).
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Inspects `file` (at `path`), rebuilding `dedup` from its tail. Changes nothing.
pub fn recover(path: &Path, file: &mut File, dedup: &mut Dedup, tail_bytes: u64) -> Result<Recovered, CsvError> {
    let len = file.metadata().map_err(io_err(path, "inspect"))?.len();
    let header_line = HEADER.join(",");
    let mut out = Recovered::default();
    if len == 0 {
        out.rewrite_header = true;
        return Ok(out);
    }
    // The header: the first line, which must be ours.
    let head_len = len.min(header_line.len() as u64 + 1) as usize;
    let mut head = vec![0u8; head_len];
    read_at(file, 0, &mut head).map_err(io_err(path, "read"))?;
    let header_end = if head.as_slice() == format!("{header_line}\n").as_bytes() {
        header_line.len() as u64 + 1
    } else if head.as_slice() == header_line.as_bytes() {
        out.add_header_newline = true;
        out.bytes = len + 1;
        return Ok(out);
    } else if len < header_line.len() as u64 && header_line.as_bytes().starts_with(&head) {
        out.rewrite_header = true;
        out.cut_to = Some(0);
        out.torn_bytes = len;
        return Ok(out);
    } else {
        return Err(foreign_header(path, file));
    };
    // A torn tail: everything after the last newline.
    let end = last_newline_end(path, file, header_end, len)?;
    if end < len {
        out.cut_to = Some(end);
        out.torn_bytes = len - end;
    }
    out.bytes = end;
    out.rows = count_lines(path, file, header_end, end)?;
    // The resend memory, from a bounded tail.
    let mut start = end.saturating_sub(tail_bytes).max(header_end);
    if start > header_end {
        start = next_line_start(path, file, start, end)?;
    }
    out.tail_scanned = end - start;
    let torn = if out.torn_bytes > 0 {
        let mut t = vec![0u8; out.torn_bytes.min(4096) as usize];
        read_at(file, end, &mut t).map_err(io_err(path, "read"))?;
        Some(t)
    } else {
        None
    };
    out.malformed_rows = rebuild(path, file, start, end, torn.as_deref(), dedup)?;
    Ok(out)
}

fn foreign_header(path: &Path, file: &mut File) -> CsvError {
    let mut first = vec![0u8; 512];
    let n = file
        .seek(SeekFrom::Start(0))
        .and_then(|_| file.read(&mut first))
        .unwrap_or(0);
    let line = String::from_utf8_lossy(&first[..n]);
    CsvError::Header {
        path: path.to_path_buf(),
        found: line.lines().next().unwrap_or("").chars().take(200).collect(),
    }
}

/// The offset just after the last `\n` in `[from, len)`, or `from` if there is none.
fn last_newline_end(path: &Path, file: &mut File, from: u64, len: u64) -> Result<u64, CsvError> {
    let mut hi = len;
    let mut buf = vec![0u8; CHUNK];
    while hi > from {
        let lo = hi.saturating_sub(CHUNK as u64).max(from);
        let chunk = &mut buf[..(hi - lo) as usize];
        read_at(file, lo, chunk).map_err(io_err(path, "read"))?;
        if let Some(i) = memchr::memrchr(b'\n', chunk) {
            return Ok(lo + i as u64 + 1);
        }
        hi = lo;
    }
    Ok(from)
}

/// The offset just after the first `\n` at or after `from` (bounded by `end`).
fn next_line_start(path: &Path, file: &mut File, from: u64, end: u64) -> Result<u64, CsvError> {
    let mut at = from;
    let mut buf = vec![0u8; 64 * 1024];
    while at < end {
        let n = ((end - at) as usize).min(buf.len());
        read_at(file, at, &mut buf[..n]).map_err(io_err(path, "read"))?;
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(at + i as u64 + 1);
        }
        at += n as u64;
    }
    Ok(end)
}

fn count_lines(path: &Path, file: &mut File, from: u64, to: u64) -> Result<u64, CsvError> {
    file.seek(SeekFrom::Start(from)).map_err(io_err(path, "seek in"))?;
    let mut left = to - from;
    let mut buf = vec![0u8; CHUNK];
    let mut lines = 0u64;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(io_err(path, "read")(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file became shorter while it was being read",
                )))
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, "read")(e)),
        };
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        left -= n as u64;
    }
    Ok(lines)
}

/// One reading's worth of consecutive rows, while it is being gathered: its identity,
/// its key, and its content hash computed as the rows go by (no copy of the rows).
struct Group {
    /// received_at, device, boot and seq, each followed by a 0 byte.
    ident: Vec<u8>,
    /// Length of received_at in `ident`, to compare with a torn row.
    received_at_len: usize,
    key: Option<(String, String, u64)>,
    device_time: String,
    content: std::hash::DefaultHasher,
}

impl Group {
    fn finish(self, dedup: &mut Dedup) {
        use std::hash::{Hash, Hasher};
        if let Some((device, boot, seq)) = self.key {
            let mut h = self.content;
            self.device_time.as_str().hash(&mut h);
            dedup.record(&Key {
                device,
                boot,
                seq,
                content: h.finish(),
            });
        }
    }
}

/// Parses rows in `[start, end)` into the resend memory; returns the malformed rows.
fn rebuild(
    path: &Path,
    file: &mut File,
    start: u64,
    end: u64,
    torn: Option<&[u8]>,
    dedup: &mut Dedup,
) -> Result<u64, CsvError> {
    file.seek(SeekFrom::Start(start)).map_err(io_err(path, "seek in"))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(io::BufReader::with_capacity(CHUNK, (&*file).take(end - start)));
    let mut rec = csv::ByteRecord::new();
    let mut malformed = 0;
    let mut group: Option<Group> = None;
    let mut ident: Vec<u8> = Vec::with_capacity(128);
    loop {
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                return Err(CsvError::Parse {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        }
        if rec.len() != COLUMNS {
            malformed += 1;
            continue;
        }
        ident.clear();
        for i in [0, 1, 6, 7] {
            ident.extend_from_slice(&rec[i]);
            ident.push(0);
        }
        if group.as_ref().is_none_or(|g| g.ident != ident) {
            if let Some(g) = group.take() {
                g.finish(dedup);
            }
            let key = (|| {
                let boot = std::str::from_utf8(&rec[6]).ok().filter(|b| !b.is_empty())?;
                let seq = std::str::from_utf8(&rec[7]).ok()?.parse().ok()?;
                let device = std::str::from_utf8(&rec[1]).ok()?;
                Some((original(device).to_string(), original(boot).to_string(), seq))
            })();
            group = Some(Group {
                ident: ident.clone(),
                received_at_len: rec[0].len(),
                device_time: if key.is_some() {
                    original(&String::from_utf8_lossy(&rec[8])).to_string()
                } else {
                    String::new()
                },
                key,
                content: std::hash::DefaultHasher::new(),
            });
        }
        if let Some(g) = group.as_mut().filter(|g| g.key.is_some()) {
            use std::hash::Hash;
            // Hash what the board sent, as the connection does (`dedup::content_hash`):
            // the cells without the formula escape.
            let (field, value, kind) = (
                String::from_utf8_lossy(&rec[2]),
                String::from_utf8_lossy(&rec[3]),
                String::from_utf8_lossy(&rec[4]),
            );
            (original(&field), original_value(&value, &kind), &*kind).hash(&mut g.content);
        }
    }
    if let Some(g) = group {
        // Rows of one write share their received_at; a torn row that starts with it
        // (or is cut inside it) may be the rest of this reading. Not remembering it
        // costs at most a row written twice, never a reading dropped.
        let same_reading = torn.is_some_and(|t| {
            let at = &g.ident[..g.received_at_len];
            t.starts_with(at) || at.starts_with(t)
        });
        if !same_reading {
            g.finish(dedup);
        }
    }
    Ok(malformed)
}

/// For unit tests of the file's readers: `r.csv` in a directory of its own (named by
/// `tag`), holding the header and then `rows`. Written again on each call.
#[cfg(test)]
pub(crate) fn test_csv(tag: &str, rows: &str) -> std::path::PathBuf {
    let path = crate::scratch_dir(tag).join("r.csv");
    std::fs::write(&path, format!("{}\n{rows}", HEADER.join(","))).unwrap();
    path
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::csv::dedup::{content_hash, Verdict};
    use crate::sink::csv::settings::DedupConfig;

    #[test]
    fn the_rebuilt_hash_is_the_connections_hash() {
        let path = test_csv(
            "recover-hash",
            "T1,'=dev,'-f,'@x,text,p:1,b-1,3,'+12\nT1,'=dev,g,-2,number,p:1,b-1,3,'+12\n",
        );
        let mut file = File::open(&path).unwrap();
        let mut dedup = Dedup::new(DedupConfig::default());
        recover(&path, &mut file, &mut dedup, 1 << 20).unwrap();
        let key = Key {
            device: "=dev".into(),
            boot: "b-1".into(),
            seq: 3,
            content: content_hash([("-f", "@x", "text"), ("g", "-2", "number")], "+12"),
        };
        assert_eq!(dedup.check(&key), Verdict::Resend);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }
}
