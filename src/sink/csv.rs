//! The append-only CSV file: the daemon's durable record and source of truth.
//!
//! # Design
//!
//! - **One writer, many boards.** Connection threads encode their rows outside any
//!   lock, then [`CsvSink::append`] takes the lock once per read chunk and writes the
//!   whole chunk with one `write_all` (group commit). The file is opened with
//!   `O_APPEND` and written without a user-space buffer, so a row is in the OS as
//!   soon as `append` returns: a crash of the daemon (even `kill -9`) cannot lose it.
//!   Power loss can, until the fsync policy has run: `always` fsyncs before `append`
//!   returns (and so before any ACK), `interval` from a background thread, `never`
//!   leaves it to the OS.
//! - **Positions.** Each data row has a position (0 = first row after the header),
//!   assigned under the lock in file order. The uploader's cursor refers to these
//!   positions and to byte offsets, so it can always resume from the file.
//! - **Written before handed on.** Rows are sent to the uploader channel only after
//!   the write succeeded, under the same lock, so the channel sees file order. The
//!   send never blocks: when the channel is full the uploader reads the rows back
//!   from this file instead.
//! - **Failed writes leave no trace.** If a write fails part-way (disk full), the
//!   file is cut back to its previous length so that no partial row remains to be
//!   glued to the next one; the readings are reported as failed (never acknowledged).
//! - **Torn rows are repaired at open.** A crash can leave a last row without its
//!   newline. [`CsvSink::open`] cuts it off and logs that it did. Because the last
//!   write may have been cut in the middle of a multi-field reading, the complete rows
//!   of that same write that belong to acknowledged-mode readings (they carry `boot`
//!   and `seq`) are removed as well: they were never acknowledged, the board still
//!   holds them and will resend them whole. Rows without `boot`/`seq` are kept.
//! - **A foreign file is never rewritten.** A non-empty file whose header differs
//!   from [`HEADER`] is refused with an error naming it.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::config::Fsync;
use crate::dedup::Dedup;
use crate::row::{Row, COLUMNS, HEADER};
use crate::sink::Appended;

/// What went wrong with the CSV file, and where.
#[derive(Debug)]
pub enum CsvError {
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    Header {
        path: PathBuf,
        found: String,
    },
    Parse {
        path: PathBuf,
        source: csv::Error,
    },
    Closed,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::Io { path, action, source } => write!(f, "cannot {action} CSV file {}: {source}", path.display()),
            CsvError::Header { path, found } => write!(
                f,
                "CSV file {} has a different header ({found:?}); expected {:?}. It is not a sensorlog file or comes from another version; \
                 refusing to append to it. Move it aside or choose another path with --csv",
                path.display(),
                HEADER.join(",")
            ),
            CsvError::Parse { path, source } => write!(f, "cannot read CSV file {}: {source}", path.display()),
            CsvError::Closed => write!(f, "the CSV file is closed (the daemon is shutting down)"),
        }
    }
}

impl std::error::Error for CsvError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CsvError::Io { source, .. } => Some(source),
            CsvError::Parse { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The rows of one read chunk, encoded, with one entry per reading.
#[derive(Debug, Default)]
pub struct Batch {
    pub buf: Vec<u8>,
    pub readings: Vec<PendingReading>,
    /// Owned rows for the uploader; filled only when [`CsvSink::wants_rows`].
    pub rows: Vec<Row>,
}

#[derive(Debug)]
pub struct PendingReading {
    pub bytes: Range<usize>,
    pub rows: Range<usize>,
    pub row_count: u64,
    /// Set for acknowledged-mode readings that carry both `boot` and `seq`.
    pub key: Option<crate::dedup::Key>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.buf.clear();
        self.readings.clear();
        self.rows.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

/// The fate of one reading handed to [`CsvSink::append`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its rows are in the file (and fsynced, under `fsync = "always"`).
    Written,
    /// Already in the file from an earlier send; not written again.
    Duplicate,
    /// Not written (an I/O error was logged); the board should resend it.
    Failed,
}

/// What [`CsvSink::open`] found in an existing file.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    pub rows: u64,
    pub bytes: u64,
    /// Bytes cut from a torn tail, and rows of the torn write removed with it.
    pub repaired: Option<(u64, u64)>,
    /// Rows in the middle of the file that do not have the expected columns.
    pub malformed_rows: u64,
    pub boots_remembered: usize,
}

struct Inner {
    file: File,
    rows: u64,
    bytes: u64,
    dedup: Dedup,
    uploader: Option<Channel>,
    closed: bool,
}

/// The uploader's channel, bounded in rows: `queued` counts rows sent and not yet
/// received; past `capacity_rows` rows are not sent (the uploader reads them back).
struct Channel {
    tx: SyncSender<Appended>,
    capacity_rows: usize,
    queued: Arc<AtomicUsize>,
}

pub struct CsvSink {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// A second handle for fsync outside the lock (fsync covers the whole file).
    sync_handle: File,
    fsync: Fsync,
    dirty: AtomicBool,
    /// (rows, bytes) of the file known durable under the fsync policy: fsynced for
    /// `always` and `interval`, written for `never` (the policy leaves it to the OS).
    /// Readers of the file (the uploader) never go past it.
    durable: Mutex<(u64, u64)>,
    /// Set when a send to the uploader found the channel full.
    pub channel_overflowed: AtomicBool,
}

impl CsvSink {
    /// Opens (or creates) the CSV, checks its header, repairs a torn tail, and rebuilds
    /// the duplicate memory from it.
    pub fn open(path: &Path, fsync: Fsync) -> Result<(CsvSink, OpenReport), CsvError> {
        let io_err = |action: &'static str| {
            let path = path.to_path_buf();
            move |source| CsvError::Io { path, action, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err("create the directory of"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err("open"))?;
        let mut dedup = Dedup::default();
        let mut report = scan(path, &file, &mut dedup)?;
        if let Some(cut) = report.cut_to {
            file.set_len(cut).map_err(io_err("repair the torn last row of"))?;
            file.sync_all().map_err(io_err("sync"))?;
        }
        if report.report.bytes == 0 {
            let mut header = HEADER.join(",").into_bytes();
            header.push(b'\n');
            file.write_all(&header).map_err(io_err("write the header to"))?;
            file.sync_all().map_err(io_err("sync"))?;
            report.report.bytes = header.len() as u64;
            if let Some(dir) = path.parent() {
                sync_dir(dir);
            }
        }
        file.seek(SeekFrom::End(0)).map_err(io_err("seek in"))?;
        // What an earlier run wrote may not have reached the disk yet (fsync interval).
        file.sync_data().map_err(io_err("sync"))?;
        let sync_handle = file.try_clone().map_err(io_err("duplicate the handle of"))?;
        let mut r = report.report;
        r.boots_remembered = dedup.len();
        let sink = CsvSink {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                rows: r.rows,
                bytes: r.bytes,
                dedup,
                uploader: None,
                closed: false,
            }),
            sync_handle,
            fsync,
            dirty: AtomicBool::new(false),
            durable: Mutex::new((r.rows, r.bytes)),
            channel_overflowed: AtomicBool::new(false),
        };
        Ok((sink, r))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Connects the uploader's channel; rows appended from now on are also sent there,
    /// up to `capacity_rows` rows not yet received (counted in `queued`).
    pub fn attach_uploader(&self, tx: SyncSender<Appended>, capacity_rows: usize, queued: Arc<AtomicUsize>) {
        self.lock().uploader = Some(Channel {
            tx,
            capacity_rows,
            queued,
        });
    }

    /// Drops the uploader's sender so that it sees the end of input.
    pub fn detach_uploader(&self) {
        self.lock().uploader = None;
    }

    /// Whether callers should fill [`Batch::rows`] for the uploader.
    pub fn wants_rows(&self) -> bool {
        self.lock().uploader.is_some()
    }

    /// (rows, bytes) currently in the file.
    pub fn position(&self) -> (u64, u64) {
        let i = self.lock();
        (i.rows, i.bytes)
    }

    /// (rows, bytes) of the file that are durable under the fsync policy; never more
    /// than [`CsvSink::position`]. Anything reading the file back stops here.
    pub fn durable_position(&self) -> (u64, u64) {
        *self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_durable(&self, upto: (u64, u64)) {
        let mut d = self.durable.lock().unwrap_or_else(|p| p.into_inner());
        if upto.1 > d.1 {
            *d = upto;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the file inconsistent (every
        // write either completed or was cut back), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the batch's readings that are not duplicates, in order, and reports each
    /// reading's outcome in `outcomes` (same order as `batch.readings`).
    pub fn append(&self, batch: &Batch, outcomes: &mut Vec<Outcome>) -> Result<(), CsvError> {
        outcomes.clear();
        let mut inner = self.lock();
        if inner.closed {
            outcomes.resize(batch.readings.len(), Outcome::Failed);
            return Err(CsvError::Closed);
        }
        // Which readings are resends? (Also within this batch.)
        let mut fresh_keys: Vec<&crate::dedup::Key> = Vec::new();
        for r in &batch.readings {
            let dup = r.key.as_ref().is_some_and(|k| {
                inner.dedup.is_duplicate(&k.device, &k.boot, k.seq)
                    || fresh_keys
                        .iter()
                        .any(|f| f.device == k.device && f.boot == k.boot && k.seq <= f.seq)
            });
            if let (false, Some(k)) = (dup, &r.key) {
                fresh_keys.push(k);
            }
            outcomes.push(if dup { Outcome::Duplicate } else { Outcome::Written });
        }
        let all_fresh = outcomes.iter().all(|o| *o == Outcome::Written);
        let filtered;
        let bytes: &[u8] = if all_fresh {
            &batch.buf
        } else {
            filtered = batch
                .readings
                .iter()
                .zip(outcomes.iter())
                .filter(|(_, o)| **o == Outcome::Written)
                .flat_map(|(r, _)| batch.buf[r.bytes.clone()].iter().copied())
                .collect::<Vec<u8>>();
            &filtered
        };
        let new_rows: u64 = batch
            .readings
            .iter()
            .zip(outcomes.iter())
            .filter(|(_, o)| **o == Outcome::Written)
            .map(|(r, _)| r.row_count)
            .sum();
        if bytes.is_empty() {
            return Ok(());
        }
        if let Err(e) = inner.file.write_all(bytes) {
            // Cut back any partial write so the next row does not glue onto it.
            let _ = inner.file.set_len(inner.bytes);
            for o in outcomes.iter_mut().filter(|o| **o == Outcome::Written) {
                *o = Outcome::Failed;
            }
            return Err(CsvError::Io {
                path: self.path.clone(),
                action: "append to",
                source: e,
            });
        }
        let first_row = inner.rows;
        inner.rows += new_rows;
        inner.bytes += bytes.len() as u64;
        for k in fresh_keys {
            inner.dedup.record(&k.device, &k.boot, k.seq);
        }
        let channel_has_room = inner
            .uploader
            .as_ref()
            .map(|c| c.queued.load(Ordering::Acquire) + new_rows as usize <= c.capacity_rows);
        match channel_has_room {
            None => {}
            Some(false) => self.channel_overflowed.store(true, Ordering::Relaxed),
            Some(true) => {
                let rows: Vec<Row> = if all_fresh {
                    batch.rows.clone()
                } else {
                    batch
                        .readings
                        .iter()
                        .zip(outcomes.iter())
                        .filter(|(_, o)| **o == Outcome::Written)
                        .flat_map(|(r, _)| batch.rows[r.rows.clone()].iter().cloned())
                        .collect()
                };
                let n = rows.len();
                let msg = Appended {
                    first_row,
                    rows,
                    end_offset: inner.bytes,
                };
                let c = inner.uploader.as_ref().expect("checked above");
                c.queued.fetch_add(n, Ordering::AcqRel);
                match c.tx.try_send(msg) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        c.queued.fetch_sub(n, Ordering::AcqRel);
                        self.channel_overflowed.store(true, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => inner.uploader = None,
                }
            }
        }
        let written_to = (inner.rows, inner.bytes);
        drop(inner);
        match self.fsync {
            Fsync::Always => {
                // fsync covers everything written before it starts, so after it
                // succeeds the file is durable at least up to `written_to`.
                if let Err(e) = self.sync_handle.sync_data() {
                    for o in outcomes.iter_mut().filter(|o| **o == Outcome::Written) {
                        *o = Outcome::Failed;
                    }
                    return Err(CsvError::Io {
                        path: self.path.clone(),
                        action: "fsync",
                        source: e,
                    });
                }
                self.mark_durable(written_to);
            }
            Fsync::Interval(_) => self.dirty.store(true, Ordering::Release),
            Fsync::Never => {
                self.dirty.store(true, Ordering::Release);
                self.mark_durable(written_to);
            }
        }
        Ok(())
    }

    /// fsyncs if anything was written since the last call (the interval policy's tick).
    pub fn sync_if_dirty(&self) -> Result<(), CsvError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let written_to = self.position();
            if let Err(source) = self.sync_handle.sync_data() {
                // Try again at the next tick.
                self.dirty.store(true, Ordering::Release);
                return Err(CsvError::Io {
                    path: self.path.clone(),
                    action: "fsync",
                    source,
                });
            }
            self.mark_durable(written_to);
        }
        Ok(())
    }

    /// Refuses further writes and fsyncs what was written: the last step of shutdown.
    pub fn close(&self) -> Result<(), CsvError> {
        let inner = self.lock();
        let was_closed = inner.closed;
        let mut inner = inner;
        inner.closed = true;
        inner.uploader = None;
        drop(inner);
        if !was_closed {
            self.dirty.store(false, Ordering::Release);
            let written_to = self.position();
            self.sync_handle.sync_all().map_err(|source| CsvError::Io {
                path: self.path.clone(),
                action: "fsync",
                source,
            })?;
            self.mark_durable(written_to);
        }
        Ok(())
    }
}

/// fsync a directory so that a newly created file's entry survives power loss.
pub fn sync_dir(dir: &Path) {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

struct Scan {
    report: OpenReport,
    cut_to: Option<u64>,
}

/// A row of the last write seen so far (rows of one write share `received_at`).
struct TailRow {
    start: u64,
    peer: Vec<u8>,
    key: Option<(String, String, u64)>,
}

/// Reads the whole file once: header check, row count, duplicate memory, torn tail.
fn scan(path: &Path, file: &File, dedup: &mut Dedup) -> Result<Scan, CsvError> {
    let len = file
        .metadata()
        .map_err(|source| CsvError::Io {
            path: path.to_path_buf(),
            action: "inspect",
            source,
        })?
        .len();
    let mut out = Scan {
        report: OpenReport::default(),
        cut_to: None,
    };
    if len == 0 {
        return Ok(out);
    }
    let last_byte_is_newline = {
        let mut f = file;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))
            .and_then(|_| io::Read::read_exact(&mut f, &mut b))
            .map_err(|source| CsvError::Io {
                path: path.to_path_buf(),
                action: "read",
                source,
            })?;
        (&*file).seek(SeekFrom::Start(0)).map_err(|source| CsvError::Io {
            path: path.to_path_buf(),
            action: "seek in",
            source,
        })?;
        b[0] == b'\n'
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 16, file));
    let mut rec = csv::ByteRecord::new();
    let mut header_seen = false;
    // Rows of the most recent write (same received_at), kept until a newer write
    // shows they are not the torn one.
    let mut tail: Vec<TailRow> = Vec::new();
    let mut tail_time: Vec<u8> = Vec::new();
    let mut last: Option<(u64, usize)> = None; // (start, fields) of the last record
    loop {
        let start = rdr.position().byte();
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(source) => {
                // Only I/O errors reach here (flexible, byte records); treat the rest of
                // the file as torn from this record on.
                log::warn!("Cannot parse {} from byte {start}: {source}.", path.display());
                last = Some((start, 0));
                break;
            }
        }
        if !header_seen {
            header_seen = true;
            let found: Vec<&[u8]> = rec.iter().collect();
            let expected: Vec<&[u8]> = HEADER.iter().map(|h| h.as_bytes()).collect();
            if found != expected {
                // A crash while writing the header of a new file leaves a prefix of it.
                let header_line = HEADER.join(",");
                if !last_byte_is_newline && len < header_line.len() as u64 {
                    let raw = std::fs::read(path).unwrap_or_default();
                    if header_line.as_bytes().starts_with(&raw) {
                        out.cut_to = Some(0);
                        out.report.repaired = Some((len, 0));
                        return Ok(out);
                    }
                }
                return Err(CsvError::Header {
                    path: path.to_path_buf(),
                    found: rec
                        .iter()
                        .map(|f| String::from_utf8_lossy(&f[..f.len().min(40)]).into_owned())
                        .take(12)
                        .collect::<Vec<_>>()
                        .join(","),
                });
            }
            out.report.bytes = rdr.position().byte();
            continue;
        }
        out.report.rows += 1;
        last = Some((start, rec.len()));
        if rec.len() != COLUMNS {
            out.report.malformed_rows += 1;
        }
        let time = rec.get(0).unwrap_or_default();
        if time != tail_time.as_slice() {
            flush_tail(&mut tail, dedup);
            tail_time.clear();
            tail_time.extend_from_slice(time);
        }
        let key = (|| {
            let boot = std::str::from_utf8(rec.get(6)?).ok().filter(|b| !b.is_empty())?;
            let seq = std::str::from_utf8(rec.get(7)?).ok()?.parse().ok()?;
            let device = std::str::from_utf8(rec.get(1)?).ok()?;
            Some((device.to_string(), boot.to_string(), seq))
        })();
        tail.push(TailRow {
            start,
            peer: rec.get(5).unwrap_or_default().to_vec(),
            key,
        });
    }
    out.report.bytes = out.report.bytes.max(rdr.position().byte());
    let torn = match last {
        Some((_, fields)) => !last_byte_is_newline || fields != COLUMNS,
        None => false,
    };
    if torn {
        let (torn_start, _) = last.expect("torn implies a last record");
        let torn_row = tail.pop().filter(|t| t.start == torn_start);
        let mut cut = torn_start;
        let mut removed = 0;
        // Remove the acknowledged-mode rows of the same write (same time and peer).
        if let Some(torn_row) = torn_row {
            while let Some(t) = tail.last() {
                let same_write = torn_row.peer.is_empty() || t.peer == torn_row.peer;
                if t.key.is_some() && same_write {
                    cut = t.start;
                    removed += 1;
                    tail.pop();
                } else {
                    break;
                }
            }
        }
        out.report.rows -= 1 + removed;
        out.report.repaired = Some((len - cut, removed));
        out.report.bytes = cut;
        out.cut_to = Some(cut);
    }
    flush_tail(&mut tail, dedup);
    Ok(out)
}

fn flush_tail(tail: &mut Vec<TailRow>, dedup: &mut Dedup) {
    for t in tail.drain(..) {
        if let Some((device, boot, seq)) = &t.key {
            dedup.record(device, boot, *seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sensorlog-csv-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("r.csv")
    }

    const H: &str = "received_at,device,field,value,type,peer,boot,seq,device_time\n";

    fn one_reading_batch(line: &[u8]) -> Batch {
        let mut b = Batch::default();
        b.buf.extend_from_slice(line);
        b.readings.push(PendingReading {
            bytes: 0..line.len(),
            rows: 0..0,
            row_count: 1,
            key: None,
        });
        b
    }

    #[test]
    fn durable_position_follows_the_fsync_policy() {
        let p = tmp("durable");
        let (s, _) = CsvSink::open(&p, Fsync::Interval(std::time::Duration::from_secs(1))).unwrap();
        let header = (0, H.len() as u64);
        assert_eq!(s.durable_position(), header);
        let mut out = Vec::new();
        s.append(&one_reading_batch(b"T1,d,f,1,number,p:1,,,\n"), &mut out)
            .unwrap();
        assert_eq!(s.position().0, 1);
        assert_eq!(s.durable_position(), header, "not fsynced yet");
        s.sync_if_dirty().unwrap();
        assert_eq!(s.durable_position(), s.position());

        let p = tmp("durable-always");
        let (s, _) = CsvSink::open(&p, Fsync::Always).unwrap();
        s.append(&one_reading_batch(b"T1,d,f,1,number,p:1,,,\n"), &mut out)
            .unwrap();
        assert_eq!(s.durable_position(), s.position());
    }

    #[test]
    fn new_file_gets_a_header() {
        let p = tmp("new");
        let (_s, r) = CsvSink::open(&p, Fsync::Never).unwrap();
        assert_eq!(r.rows, 0);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), H);
    }

    #[test]
    fn foreign_header_is_refused_and_left_alone() {
        let p = tmp("foreign");
        std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
        let e = CsvSink::open(&p, Fsync::Never).err().unwrap();
        assert!(e.to_string().contains("different header"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b,c\n1,2,3\n");
    }

    #[test]
    fn torn_tail_is_cut_and_ack_rows_of_the_same_write_go_with_it() {
        let p = tmp("torn");
        let kept = "T1,d,f,1,number,p:1,,,\n";
        let acked_earlier = "T2,d,f,1,number,p:1,b,4,\n";
        let same_write = "T3,d,a,1,number,p:1,b,5,\nT3,d,b,2,number,p:1,b,5,\n";
        std::fs::write(&p, format!("{H}{kept}{acked_earlier}{same_write}T3,d,c,3,num")).unwrap();
        let (_s, r) = CsvSink::open(&p, Fsync::Never).unwrap();
        assert_eq!(r.rows, 2);
        assert_eq!(r.repaired.map(|x| x.1), Some(2));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{H}{kept}{acked_earlier}")
        );
        let inner = _s.lock();
        assert!(inner.dedup.is_duplicate("d", "b", 4));
        assert!(
            !inner.dedup.is_duplicate("d", "b", 5),
            "seq 5 was removed and must be accepted again"
        );
    }

    #[test]
    fn torn_header_of_a_new_file_is_rewritten() {
        let p = tmp("tornheader");
        std::fs::write(&p, "received_at,dev").unwrap();
        let (_s, r) = CsvSink::open(&p, Fsync::Never).unwrap();
        assert_eq!(r.rows, 0);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), H);
    }
}
