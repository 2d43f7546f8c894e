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
//! - **Torn rows are repaired at open**, and only they: see [`recover`].
//! - **A foreign file is never rewritten.** A non-empty file whose header differs
//!   from [`HEADER`] is refused with an error naming it.
//! - **One daemon per file.** The file is locked (`flock`) while open; a second
//!   daemon on the same CSV stops at start with the holder's pid.
//! - **Resends are written once** ([`dedup`]): under `fsync = "always"` a reading is
//!   remembered only after its fsync succeeded, so a failed fsync can never make the
//!   board's resend look like a duplicate.
//! - **The file can be moved or deleted under us** (logrotate, a user tidying up).
//!   [`CsvSink::check_path`], run every second and on SIGHUP, notices that the path
//!   no longer names the open file, and reopens it (a new file with its header). Each
//!   reopen starts a new *generation*: positions restart at the new file's.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

pub mod dedup;
pub mod encode;
pub mod error;
pub mod recover;
pub mod settings;

use crate::ratelog::ByCause;
use crate::sink::csv::encode::{Row, HEADER};
use crate::sink::csv::error::{io_err, CsvError};
use crate::sink::csv::settings::{DedupConfig, Fsync};
use dedup::{Dedup, Key, Verdict};

/// Rows just appended to the CSV, as sent to the uploader.
#[derive(Debug)]
pub struct Appended {
    /// Position of `rows[0]` in the CSV (0 = first row after the header).
    pub first_row: u64,
    pub rows: Vec<Row>,
    /// File length after these rows: where the next row starts.
    pub end_offset: u64,
    /// The file's generation (see `CsvSink::generation`): positions restart when the
    /// file is reopened after being moved or deleted.
    pub generation: u64,
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
    pub key: Option<Key>,
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
    /// Bytes of a torn last row that were cut.
    pub torn_bytes: Option<u64>,
    /// A header without its newline got one.
    pub header_newline_added: bool,
    /// Rows in the scanned tail that do not have the expected columns.
    pub malformed_rows: u64,
    /// Boards in the resend memory, and the bytes of the file's end read to fill it.
    pub boards_remembered: usize,
    pub tail_scanned: u64,
}

struct Inner {
    file: File,
    /// (device, inode) of the open file, to notice it being moved or deleted.
    identity: (u64, u64),
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
    /// How many times the file was reopened. Changed only under `inner`'s lock (by
    /// `check_path`, before the durable mark is replaced), read without it: the Sheets
    /// and PostgreSQL readers ask several times per loop turn, and must not queue behind
    /// the boards' appends for that.
    generation: AtomicU64,
    /// A second handle for fsync outside the lock (fsync covers the whole file);
    /// replaced when the file is reopened.
    sync_handle: Mutex<Arc<File>>,
    fsync: Fsync,
    dirty: AtomicBool,
    /// (rows, bytes) of the file known durable under the fsync policy: fsynced for
    /// `always` and `interval`, written for `never` (the policy leaves it to the OS).
    /// Readers of the file (the uploader) never go past it.
    durable: Mutex<(u64, u64)>,
    /// Set when a send to the uploader found the channel full.
    pub channel_overflowed: AtomicBool,
    /// Readings written although their key was known with other content.
    pub resend_conflicts: AtomicU64,
    conflict_log: ByCause,
    /// Tests: the next fsync fails, as a dying disk's would.
    #[cfg(test)]
    fail_next_fsync: AtomicBool,
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

/// The pid holding a lock on the file with this inode, from `/proc/locks` (Linux).
fn lock_holder(inode: u64) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    locks.lines().find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (pid, dev_ino) = (cols.get(4)?, cols.get(5)?);
        let ino: u64 = dev_ino.rsplit(':').next()?.parse().ok()?;
        (ino == inode).then(|| pid.parse().ok()).flatten()
    })
}

impl CsvSink {
    /// Opens (or creates) the CSV, locks it, checks its header, repairs a torn tail,
    /// and rebuilds the resend memory from its end.
    pub fn open(path: &Path, fsync: Fsync, limits: DedupConfig) -> Result<(CsvSink, OpenReport), CsvError> {
        let (file, dedup, report) = open_file(path, limits)?;
        let identity = identity(&file.metadata().map_err(io_err(path, "inspect"))?);
        let sync_handle = file.try_clone().map_err(io_err(path, "duplicate the handle of"))?;
        let sink = CsvSink {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                file,
                identity,
                rows: report.rows,
                bytes: report.bytes,
                dedup,
                uploader: None,
                closed: false,
            }),
            generation: AtomicU64::new(0),
            sync_handle: Mutex::new(Arc::new(sync_handle)),
            fsync,
            dirty: AtomicBool::new(false),
            durable: Mutex::new((report.rows, report.bytes)),
            channel_overflowed: AtomicBool::new(false),
            resend_conflicts: AtomicU64::new(0),
            conflict_log: ByCause::new(crate::ratelog::DEFAULT_EVERY, 256),
            #[cfg(test)]
            fail_next_fsync: AtomicBool::new(false),
        };
        Ok((sink, report))
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

    /// How many times the file was reopened since start (0 = the file opened at start).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Boards in the resend memory, and boards forgotten to stay under the cap.
    pub fn dedup_boards(&self) -> (usize, u64) {
        let i = self.lock();
        (i.dedup.len(), i.dedup.forgotten())
    }

    /// (rows, bytes) of the file that are durable under the fsync policy; never more
    /// than [`CsvSink::position`]. Anything reading the file back stops here.
    pub fn durable_position(&self) -> (u64, u64) {
        *self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_durable(&self, generation: u64, upto: (u64, u64)) {
        // Under the lock: `check_path` changes the generation and the mark together.
        let _held = self.lock();
        if self.generation() != generation {
            return; // the file was reopened meanwhile; its marks start afresh
        }
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

    fn sync_file(&self) -> Arc<File> {
        Arc::clone(&self.sync_handle.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes the batch's readings that are not resends, in order, and reports each
    /// reading's outcome in `outcomes` (same order as `batch.readings`).
    pub fn append(&self, batch: &Batch, outcomes: &mut Vec<Outcome>) -> Result<(), CsvError> {
        outcomes.clear();
        let mut inner = self.lock();
        if inner.closed {
            outcomes.resize(batch.readings.len(), Outcome::Failed);
            return Err(CsvError::Closed);
        }
        // Which readings are resends? (Also within this batch.)
        let mut fresh_keys: Vec<&Key> = Vec::new();
        for r in &batch.readings {
            let seen = match &r.key {
                None => Verdict::New,
                Some(k) => match fresh_keys
                    .iter()
                    .find(|f| f.seq == k.seq && f.device == k.device && f.boot == k.boot)
                {
                    Some(f) if f.content == k.content => Verdict::Resend,
                    Some(_) => Verdict::Conflict,
                    None => inner.dedup.check(k),
                },
            };
            if seen == Verdict::Conflict {
                let k = r.key.as_ref().expect("only keyed readings conflict");
                self.resend_conflicts.fetch_add(1, Ordering::Relaxed);
                self.conflict_log.log(&format!("{}\u{0}{}", k.device, k.boot), |n| {
                    log::warn!(
                        "Board {:?} sent seq {} of boot {} again with different content ({n} such readings of this boot since the last such line); it was written, not taken for a resend. The board may reuse its boot id after a power cycle: update its firmware.",
                        k.device,
                        k.seq,
                        k.boot
                    )
                });
            }
            if seen != Verdict::Resend {
                if let Some(k) = &r.key {
                    fresh_keys.push(k);
                }
            }
            outcomes.push(if seen == Verdict::Resend {
                Outcome::Duplicate
            } else {
                Outcome::Written
            });
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
        let always = self.fsync == Fsync::Always;
        if !always {
            // Written is as durable as this policy makes it: remember now.
            for k in &fresh_keys {
                inner.dedup.record(k);
            }
        }
        // The channel is fed in file order, under the lock; the uploader never sends
        // past `durable_position`, so rows queued here wait for their fsync there.
        self.queue_for_uploader(&mut inner, batch, outcomes, all_fresh, first_row, new_rows);
        let written_to = (inner.rows, inner.bytes);
        let generation = self.generation();
        drop(inner);
        match self.fsync {
            Fsync::Always => {
                // fsync covers everything written before it starts, so after it
                // succeeds the file is durable at least up to `written_to`.
                if let Err(e) = self.fsync_for_append() {
                    for o in outcomes.iter_mut().filter(|o| **o == Outcome::Written) {
                        *o = Outcome::Failed;
                    }
                    return Err(CsvError::Io {
                        path: self.path.clone(),
                        action: "fsync",
                        source: e,
                    });
                }
                let mut inner = self.lock();
                for k in &fresh_keys {
                    inner.dedup.record(k);
                }
                drop(inner);
                self.mark_durable(generation, written_to);
            }
            Fsync::Interval(_) => self.dirty.store(true, Ordering::Release),
            Fsync::Never => {
                self.dirty.store(true, Ordering::Release);
                self.mark_durable(generation, written_to);
            }
        }
        Ok(())
    }

    fn fsync_for_append(&self) -> io::Result<()> {
        #[cfg(test)]
        if self.fail_next_fsync.swap(false, Ordering::AcqRel) {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.sync_file().sync_data()
    }

    fn queue_for_uploader(
        &self,
        inner: &mut Inner,
        batch: &Batch,
        outcomes: &[Outcome],
        all_fresh: bool,
        first_row: u64,
        new_rows: u64,
    ) {
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
                    generation: self.generation(),
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
    }

    /// fsyncs if anything was written since the last call (the interval policy's tick).
    pub fn sync_if_dirty(&self) -> Result<(), CsvError> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let (written_to, generation) = {
                let i = self.lock();
                ((i.rows, i.bytes), self.generation())
            };
            if let Err(source) = self.sync_file().sync_data() {
                // Try again at the next tick.
                self.dirty.store(true, Ordering::Release);
                return Err(CsvError::Io {
                    path: self.path.clone(),
                    action: "fsync",
                    source,
                });
            }
            self.mark_durable(generation, written_to);
        }
        Ok(())
    }

    /// Reopens the file if its path no longer names the open file (moved, deleted,
    /// or replaced: logrotate). Called every second and at once on SIGHUP. Returns
    /// whether it reopened.
    pub fn check_path(&self) -> Result<bool, CsvError> {
        let current = std::fs::metadata(&self.path).ok().map(|m| identity(&m));
        {
            let inner = self.lock();
            if inner.closed || current == Some(inner.identity) {
                return Ok(false);
            }
        }
        // Open, lock and check the new file without holding the sink's lock (boards keep
        // appending to the old file meanwhile; those rows stay in the moved file). The
        // resend memory is kept, not rebuilt: resends of readings written to the old file
        // are still recognised, so no tail of the new file is scanned.
        let no_tail = DedupConfig {
            scan_tail_bytes: 0,
            ..DedupConfig::default()
        };
        let (file, _, report) = open_file(&self.path, no_tail)?;
        let identity_new = identity(&file.metadata().map_err(io_err(&self.path, "inspect"))?);
        let sync_handle = file
            .try_clone()
            .map_err(io_err(&self.path, "duplicate the handle of"))?;
        let mut inner = self.lock();
        if inner.closed {
            return Ok(false);
        }
        let (old_rows, old_bytes) = (inner.rows, inner.bytes);
        let old_file = std::mem::replace(&mut inner.file, file);
        inner.identity = identity_new;
        inner.rows = report.rows;
        inner.bytes = report.bytes;
        // Changed only under the lock, read without it (see `generation`).
        self.generation.fetch_add(1, Ordering::AcqRel);
        *self.sync_handle.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(sync_handle);
        *self.durable.lock().unwrap_or_else(|p| p.into_inner()) = (report.rows, report.bytes);
        drop(inner);
        // Make what went to the old file durable before letting go of it.
        let old_sync = old_file.sync_data();
        log::warn!(
            "{} was moved or deleted while open (logrotate?); the {old_rows} rows ({old_bytes} bytes) written to it stay in the moved file. Continuing in a new {} ({} rows there){}.",
            self.path.display(),
            self.path.display(),
            report.rows,
            match old_sync {
                Ok(()) => String::new(),
                Err(e) => format!("; the last fsync of the old file failed ({e}), its last rows may not be on disk"),
            }
        );
        Ok(true)
    }

    /// Refuses further writes and fsyncs what was written: the last step of shutdown.
    pub fn close(&self) -> Result<(), CsvError> {
        let mut inner = self.lock();
        let was_closed = inner.closed;
        inner.closed = true;
        inner.uploader = None;
        let written_to = (inner.rows, inner.bytes);
        let generation = self.generation();
        drop(inner);
        if !was_closed {
            self.dirty.store(false, Ordering::Release);
            self.sync_file().sync_all().map_err(|source| CsvError::Io {
                path: self.path.clone(),
                action: "fsync",
                source,
            })?;
            self.mark_durable(generation, written_to);
        }
        Ok(())
    }
}

/// Opens, locks, recovers and (if needed) repairs the file at `path`.
fn open_file(path: &Path, limits: DedupConfig) -> Result<(File, Dedup, OpenReport), CsvError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(path, "create the directory of"))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path, "open"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let inode = identity(&file.metadata().map_err(io_err(path, "inspect"))?).1;
            return Err(CsvError::Locked {
                path: path.to_path_buf(),
                holder: lock_holder(inode),
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(path, "lock")(e)),
    }
    let mut dedup = Dedup::new(limits);
    let found = recover::recover(path, &mut file, &mut dedup, limits.scan_tail_bytes)?;
    let mut report = OpenReport {
        rows: found.rows,
        bytes: found.bytes,
        torn_bytes: found.cut_to.map(|_| found.torn_bytes),
        header_newline_added: found.add_header_newline,
        malformed_rows: found.malformed_rows,
        boards_remembered: dedup.len(),
        tail_scanned: found.tail_scanned,
    };
    if let Some(cut) = found.cut_to {
        file.set_len(cut).map_err(io_err(path, "repair the torn last row of"))?;
    }
    if found.add_header_newline {
        file.write_all(b"\n").map_err(io_err(path, "repair the header of"))?;
    }
    if found.rewrite_header {
        let mut header = HEADER.join(",").into_bytes();
        header.push(b'\n');
        file.write_all(&header).map_err(io_err(path, "write the header to"))?;
        report.bytes = header.len() as u64;
        report.rows = 0;
    }
    // What an earlier run wrote may not have reached the disk yet (fsync interval);
    // a repair must reach it before anything is appended after it.
    file.sync_all().map_err(io_err(path, "sync"))?;
    if found.rewrite_header {
        if let Some(dir) = path.parent() {
            sync_dir(dir);
        }
    }
    file.seek(SeekFrom::End(0)).map_err(io_err(path, "seek in"))?;
    Ok((file, dedup, report))
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::Duration;

    /// `r.csv` in a fresh temporary directory named after `name` and this process.
    pub(crate) fn tmp(name: &str) -> PathBuf {
        crate::scratch_dir(&format!("csv-{name}")).join("r.csv")
    }

    const H: &str = "received_at,device,field,value,type,peer,boot,seq,device_time\n";

    fn open(p: &Path) -> (CsvSink, OpenReport) {
        CsvSink::open(p, Fsync::Never, DedupConfig::default()).unwrap()
    }

    fn one_reading_batch(line: &[u8], key: Option<Key>) -> Batch {
        let mut b = Batch::default();
        b.buf.extend_from_slice(line);
        b.readings.push(PendingReading {
            bytes: 0..line.len(),
            rows: 0..0,
            row_count: 1,
            key,
        });
        b
    }

    fn key(seq: u64) -> Key {
        Key {
            device: "d".into(),
            boot: "b".into(),
            seq,
            content: dedup::content_hash([("f", "1", "number")], ""),
        }
    }

    #[test]
    fn durable_position_follows_the_fsync_policy() {
        let p = tmp("durable");
        let (s, _) = CsvSink::open(&p, Fsync::Interval(Duration::from_secs(1)), DedupConfig::default()).unwrap();
        let header = (0, H.len() as u64);
        assert_eq!(s.durable_position(), header);
        let mut out = Vec::new();
        s.append(&one_reading_batch(b"T1,d,f,1,number,p:1,,,\n", None), &mut out)
            .unwrap();
        assert_eq!(s.position().0, 1);
        assert_eq!(s.durable_position(), header, "not fsynced yet");
        s.sync_if_dirty().unwrap();
        assert_eq!(s.durable_position(), s.position());
        drop(s);

        let p = tmp("durable-always");
        let (s, _) = CsvSink::open(&p, Fsync::Always, DedupConfig::default()).unwrap();
        s.append(&one_reading_batch(b"T1,d,f,1,number,p:1,,,\n", None), &mut out)
            .unwrap();
        assert_eq!(s.durable_position(), s.position());
    }

    /// A new file, and a new file whose header was torn, get the whole header.
    #[test]
    fn new_file_gets_a_header_and_a_torn_one_is_rewritten() {
        for (name, before) in [("new", None), ("tornheader", Some("received_at,dev"))] {
            let p = tmp(name);
            if let Some(text) = before {
                std::fs::write(&p, text).unwrap();
            }
            let (_s, r) = open(&p);
            assert_eq!(r.rows, 0, "{name}");
            assert_eq!(std::fs::read_to_string(&p).unwrap(), H, "{name}");
        }
    }

    #[test]
    fn foreign_header_is_refused_and_left_alone() {
        let p = tmp("foreign");
        std::fs::write(&p, "a,b,c\n1,2,3\n").unwrap();
        let e = CsvSink::open(&p, Fsync::Never, DedupConfig::default()).err().unwrap();
        assert!(e.to_string().contains("different header"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a,b,c\n1,2,3\n");
    }

    #[test]
    fn issue_8_2_torn_tail_is_cut_and_no_complete_row_goes_with_it() {
        let p = tmp("torn");
        // Another board's acknowledged rows share the torn row's millisecond, and the
        // file's rows have an empty peer (which used to match every peer).
        let other = "T3,other,a,1,number,,x,1,\nT3,other,b,2,number,,x,1,\n";
        let same_reading = "T3,d,a,1,number,,b,5,\n";
        std::fs::write(
            &p,
            format!("{H}T1,d,f,1,number,,b,4,\n{other}{same_reading}T3,d,c,3,num"),
        )
        .unwrap();
        let (s, r) = open(&p);
        assert_eq!(r.rows, 4);
        assert_eq!(r.torn_bytes, Some("T3,d,c,3,num".len() as u64));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{H}T1,d,f,1,number,,b,4,\n{other}{same_reading}")
        );
        let inner = s.lock();
        let k = |dev: &str, boot: &str, seq, rows: &[(&str, &str, &str)]| Key {
            device: dev.into(),
            boot: boot.into(),
            seq,
            content: dedup::content_hash(rows.iter().copied(), ""),
        };
        assert_eq!(
            inner.dedup.check(&k("d", "b", 4, &[("f", "1", "number")])),
            Verdict::Resend
        );
        assert_eq!(
            inner
                .dedup
                .check(&k("other", "x", 1, &[("a", "1", "number"), ("b", "2", "number")])),
            Verdict::Resend
        );
        assert_eq!(
            inner
                .dedup
                .check(&k("d", "b", 5, &[("a", "1", "number"), ("c", "3", "number")])),
            Verdict::New,
            "the torn reading's resend must be written"
        );
    }

    #[test]
    fn issue_8_4_a_header_without_its_newline_gets_one() {
        let p = tmp("header-nl");
        std::fs::write(&p, H.trim_end()).unwrap();
        let (s, r) = open(&p);
        assert!(r.header_newline_added);
        let mut out = Vec::new();
        s.append(&one_reading_batch(b"T1,d,f,1,number,p:1,,,\n", None), &mut out)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{H}T1,d,f,1,number,p:1,,,\n")
        );
        assert_eq!(s.position(), (1, std::fs::metadata(&p).unwrap().len()));
    }

    #[test]
    fn issue_8_4_a_read_error_stops_the_start_and_changes_nothing() {
        // A directory cannot be read as a file: every read fails with EISDIR.
        let p = tmp("readerr");
        std::fs::create_dir_all(&p).unwrap();
        let e = CsvSink::open(&p, Fsync::Never, DedupConfig::default()).err().unwrap();
        assert!(matches!(e, CsvError::Io { .. }), "{e}");
        assert!(p.is_dir());
    }

    #[test]
    fn issue_8_6_a_second_sink_on_the_same_file_is_refused_with_the_holder() {
        let p = tmp("lock");
        let (_first, _) = open(&p);
        let e = CsvSink::open(&p, Fsync::Never, DedupConfig::default()).err().unwrap();
        let text = e.to_string();
        assert!(text.contains("in use by another sensorlog"), "{text}");
        assert!(text.contains(&format!("process {}", std::process::id())), "{text}");
    }

    #[test]
    fn issue_8_1_resends_and_conflicts() {
        let p = tmp("resend");
        let (s, _) = open(&p);
        let mut out = Vec::new();
        let line = b"T1,d,f,1,number,p:1,b,7,\n";
        s.append(&one_reading_batch(line, Some(key(7))), &mut out).unwrap();
        assert_eq!(out, [Outcome::Written]);
        s.append(&one_reading_batch(line, Some(key(7))), &mut out).unwrap();
        assert_eq!(out, [Outcome::Duplicate]);
        let mut other = key(7);
        other.content ^= 1;
        s.append(&one_reading_batch(line, Some(other)), &mut out).unwrap();
        assert_eq!(out, [Outcome::Written], "same key, other content: written");
        assert_eq!(s.resend_conflicts.load(Ordering::Relaxed), 1);
        s.append(&one_reading_batch(line, Some(key(3))), &mut out).unwrap();
        assert_eq!(out, [Outcome::Written], "a lower seq never seen is written");
        assert_eq!(s.position().0, 3);
    }

    #[test]
    fn issue_8_3_a_failed_fsync_never_makes_the_resend_a_duplicate() {
        let p = tmp("fsync-fail");
        let (s, _) = CsvSink::open(&p, Fsync::Always, DedupConfig::default()).unwrap();
        let mut out = Vec::new();
        let line = b"T1,d,f,1,number,p:1,b,7,\n";
        let durable = s.durable_position();
        s.fail_next_fsync.store(true, Ordering::Release);
        assert!(s.append(&one_reading_batch(line, Some(key(7))), &mut out).is_err());
        assert_eq!(out, [Outcome::Failed], "not acknowledged");
        assert_eq!(s.durable_position(), durable, "not durable, so not uploaded");
        // The board resends: it must be written again, not taken for a duplicate.
        s.append(&one_reading_batch(line, Some(key(7))), &mut out).unwrap();
        assert_eq!(out, [Outcome::Written]);
        s.append(&one_reading_batch(line, Some(key(7))), &mut out).unwrap();
        assert_eq!(out, [Outcome::Duplicate], "once durable, it is remembered");
    }

    #[test]
    fn issue_8_5_a_moved_file_is_noticed_and_reopened() {
        let p = tmp("moved");
        let (s, _) = open(&p);
        let mut out = Vec::new();
        s.append(&one_reading_batch(b"T1,d,f,1,number,p:1,,,\n", None), &mut out)
            .unwrap();
        assert!(
            !s.check_path().unwrap(),
            "in place (or a SIGHUP with the file in place): nothing to do"
        );
        let moved = p.with_extension("csv.1");
        std::fs::rename(&p, &moved).unwrap();
        assert!(s.check_path().unwrap());
        assert_eq!(s.generation(), 1);
        s.append(&one_reading_batch(b"T2,d,f,2,number,p:1,,,\n", None), &mut out)
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&moved).unwrap(),
            format!("{H}T1,d,f,1,number,p:1,,,\n")
        );
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            format!("{H}T2,d,f,2,number,p:1,,,\n")
        );
        assert_eq!(s.position(), (1, std::fs::metadata(&p).unwrap().len()));
        std::fs::remove_file(&p).unwrap();
        assert!(s.check_path().unwrap(), "deleted: a new file");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), H);
    }
}
