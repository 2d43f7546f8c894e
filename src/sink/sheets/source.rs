//! Where the uploader's rows come from: the channel from the CSV sink (fast path) and
//! the CSV itself (read back at the cursor), never past what is durable.
//!
//! The ingest side sends rows over a bounded channel right after writing them to the CSV
//! (never blocking: a full channel just means the uploader reads those rows from the
//! file). The uploader keeps at most a few batches in memory; whenever the next row it
//! needs is not in the channel (start-up backlog, a full channel, a long outage) it reads
//! it back from the CSV at the cursor's byte offset. A dead network therefore costs
//! ingest nothing and loses nothing.
//!
//! # Never ahead of the CSV
//!
//! Rows reach the channel before they are fsynced. Only rows up to
//! [`CsvSink::durable_position`] are handed out for upload (and read back), so a power
//! cut can never leave the sheet, or the cursor, ahead of the file.
//!
//! # Through rotation
//!
//! The source reads the CSV through a [`FollowedCsv`] ([`crate::sink::follower`], shared
//! with the PostgreSQL sink): when the file is moved away or deleted and the sink starts a new one, the
//! source goes on reading the old file to its end (rows of the new file that arrive by
//! channel meanwhile are left for later), and once every one of its rows is confirmed,
//! the worker moves the cursor to the new file's first data row
//! ([`Source::finished_rotated`], [`Source::switch_file`]). The cursor names its file by
//! its first data row; [`follow_new_file`] at start-up tells a file rotated while the
//! daemon was stopped from the one the cursor was made for.
//!
//! At start-up, before any board is accepted, [`verify_cursor`] checks that the saved
//! cursor lands on a row boundary whose row has the recorded identity, and otherwise
//! finds the right position (see its docs). The file format guarantees that a `\n` byte
//! ends a row: the framer splits lines on `\n`, so no field holds one.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sink::csv::encode::{Row, COLUMNS};
use crate::sink::csv::Appended;
use crate::sink::csv::CsvSink;
use crate::sink::cursor::{row_hash, Cursor, RowId};
use crate::sink::follower::rows::{self, header_len};
use crate::sink::follower::FollowedCsv;

/// Rows waiting to be uploaded, from the channel or read back from the CSV.
pub struct Source {
    sink: Arc<CsvSink>,
    rx: Receiver<Appended>,
    queued: Arc<AtomicUsize>,
    /// The sink dropped its sender: no more rows will come by channel.
    pub disconnected: bool,
    /// Rows from `rows_done` on, each with the CSV offset just after it.
    pending: VecDeque<(Row, u64)>,
    /// CSV row count and offset confirmed in the sheet (where `pending` starts).
    rows_done: u64,
    offset_done: u64,
    /// When the oldest pending row arrived.
    pub oldest: Option<Instant>,
    cap: usize,
    batch_delay: Duration,
    /// The CSV file this source reads, and its generation (see `crate::sink::follower`):
    /// rows of another generation belong to another file. Opened at start, before any
    /// board is accepted, so it is the file the cursor was checked against, however long
    /// Google stays out of reach and whatever rotation comes meanwhile.
    csv: FollowedCsv,
}

impl Source {
    pub fn new(
        sink: Arc<CsvSink>,
        rx: Receiver<Appended>,
        queued: Arc<AtomicUsize>,
        cap: usize,
        batch_delay: Duration,
    ) -> std::io::Result<Source> {
        let csv = FollowedCsv::open(&sink)?;
        Ok(Source {
            sink,
            rx,
            queued,
            disconnected: false,
            pending: VecDeque::new(),
            rows_done: 0,
            offset_done: header_len(),
            oldest: None,
            cap,
            batch_delay,
            csv,
        })
    }

    fn fail(&self, e: impl std::fmt::Display) -> String {
        format!("cannot read {} for the upload: {e}", self.sink.path().display())
    }

    /// How far the file being read may be read (its durable end).
    fn durable_end(&self) -> u64 {
        self.csv.durable_end(&self.sink).unwrap_or(0)
    }

    /// Whether the file being read is the one the sink writes (not one rotated away).
    pub fn on_current_file(&self) -> bool {
        !self.csv.rotated(&self.sink)
    }

    /// The file being read was rotated away and every row of it is confirmed: time to
    /// [`Self::switch_file`].
    pub fn finished_rotated(&self) -> bool {
        self.csv.rotated(&self.sink)
            && self.pending.is_empty()
            && self
                .csv
                .durable_end(&self.sink)
                .is_ok_and(|end| self.offset_done >= end)
    }

    /// Moves to the file the sink writes now, before its first data row; returns how
    /// many files came and went unread in between (rotated more than once meanwhile).
    pub fn switch_file(&mut self) -> Result<u64, String> {
        let skipped = self.csv.skipped_files(&self.sink);
        self.csv = FollowedCsv::open(&self.sink).map_err(|e| self.fail(e))?;
        self.pending.clear();
        self.oldest = None;
        self.rows_done = 0;
        self.offset_done = header_len();
        Ok(skipped)
    }

    /// Forgets what is pending and starts again at this cursor.
    pub fn reset(&mut self, cursor: &Cursor) {
        self.pending.clear();
        self.oldest = None;
        self.rows_done = cursor.rows_done;
        self.offset_done = cursor.offset_done;
    }

    fn next_row(&self) -> u64 {
        self.rows_done + self.pending.len() as u64
    }

    fn next_offset(&self) -> u64 {
        self.pending.back().map_or(self.offset_done, |(_, off)| *off)
    }

    /// Rows in the CSV not yet confirmed in the sheet (while a rotated file is finished:
    /// the new file's rows and those pending of the old one, a lower bound).
    pub fn backlog(&self) -> u64 {
        if !self.on_current_file() {
            return self.sink.position().0 + self.pending.len() as u64;
        }
        self.sink.position().0.saturating_sub(self.rows_done)
    }

    /// Pending rows that are durable in the CSV, oldest first, with their end offsets.
    pub fn ready(&self) -> impl Iterator<Item = &(Row, u64)> {
        let durable = self.durable_end();
        self.pending.iter().take_while(move |(_, end)| *end <= durable)
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Receives what the channel has (waiting up to `wait` for the first message).
    pub fn drain(&mut self, wait: Duration) {
        let mut first = true;
        loop {
            let msg = if first && !wait.is_zero() && !self.disconnected {
                self.rx
                    .recv_timeout(wait)
                    .map_err(|e| matches!(e, RecvTimeoutError::Disconnected))
            } else {
                self.rx
                    .try_recv()
                    .map_err(|e| matches!(e, mpsc::TryRecvError::Disconnected))
            };
            first = false;
            match msg {
                Ok(m) => self.take(m),
                Err(disconnected) => {
                    self.disconnected |= disconnected;
                    return;
                }
            }
        }
    }

    fn take(&mut self, msg: Appended) {
        let n = msg.rows.len();
        self.queued.fetch_sub(n, Ordering::AcqRel);
        if msg.generation != self.csv.generation()
            || msg.first_row != self.next_row()
            || self.pending.len() + n > self.cap
        {
            return; // a gap or no room: these rows will be read from the CSV
        }
        // Offsets of each row: walk back from the end offset by encoded lengths.
        let mut end = msg.end_offset;
        let mut offsets = vec![0; n];
        for (i, row) in msg.rows.iter().enumerate().rev() {
            offsets[i] = end;
            end -= row.encoded_len() as u64;
        }
        if self.pending.is_empty() {
            self.oldest = Some(Instant::now());
        }
        self.pending.extend(msg.rows.into_iter().zip(offsets));
    }

    /// Tops `pending` up from the CSV (up to its durable end) when the rows it needs did
    /// not come by channel.
    pub fn fill(&mut self) -> Result<(), String> {
        let want = self.cap.saturating_sub(self.pending.len());
        let durable_bytes = self.durable_end();
        let offset = self.next_offset();
        if want == 0 || offset >= durable_bytes {
            return Ok(());
        }
        let path = self.sink.path().to_path_buf();
        let fail = |e: String| format!("cannot read {} for the upload: {e}", path.display());
        let mut file = self.csv.file();
        file.seek(SeekFrom::Start(offset)).map_err(|e| fail(e.to_string()))?;
        let limited = file.take(durable_bytes - offset);
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::with_capacity(1 << 16, limited));
        let mut rec = csv::StringRecord::new();
        let was_empty = self.pending.is_empty();
        for _ in 0..want {
            match rdr.read_record(&mut rec) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(fail(format!("{e} (at byte {offset})"))),
            }
            let mut fields: Vec<String> = rec.iter().map(str::to_string).collect();
            fields.resize(COLUMNS, String::new());
            self.pending.push_back((Row(fields), offset + rdr.position().byte()));
        }
        if was_empty && !self.pending.is_empty() {
            // Backlog: these rows have waited long enough already.
            self.oldest = Some(Instant::now() - self.batch_delay);
        }
        Ok(())
    }

    /// Marks the first `n` pending rows confirmed; returns the new (rows_done,
    /// offset_done), the identity of the last of them, read back from the CSV, and that
    /// of the file's first data row when it is among them.
    pub fn confirm(&mut self, n: usize) -> Result<(u64, u64, RowId, Option<RowId>), String> {
        let start = if n >= 2 {
            self.pending[n - 2].1
        } else {
            self.offset_done
        };
        let end = self.pending[n - 1].1;
        let csv = &self.csv;
        let first = match self.rows_done {
            0 => Some(row_id(csv.file(), self.offset_done, self.pending[0].1).map_err(|e| self.fail(e))?),
            _ => None,
        };
        let id = row_id(csv.file(), start, end).map_err(|e| self.fail(e))?;
        self.pending.drain(..n);
        self.rows_done += n as u64;
        self.offset_done = end;
        if self.pending.is_empty() {
            self.oldest = None;
        }
        Ok((self.rows_done, self.offset_done, id, first))
    }
}

/// The identity of the row stored at `start..end` of the CSV.
fn row_id(file: &File, start: u64, end: u64) -> std::io::Result<RowId> {
    Ok(RowId {
        offset: start,
        fnv1a64: format!("{:016x}", rows::hash_at(file, start, end)?),
    })
}

/// At start-up, before [`verify_cursor`]: a cursor whose file (its first data row) is not
/// the CSV at the path now was made for a file rotated away while the daemon was
/// stopped. The sheet keeps that file's rows; this file continues after them from its
/// first row (rows of the old file not yet confirmed stay in it, and the log says so).
pub fn follow_new_file(saved: Cursor, csv: &Path, durable_bytes: u64, csv_layout: bool) -> std::io::Result<Cursor> {
    let Some(id) = saved.file.clone() else {
        return Ok(saved);
    };
    let header = header_len();
    if saved.rows_done == 0 || first_row_id(csv, durable_bytes)?.as_ref() == Some(&id) {
        return Ok(saved);
    }
    log::info!(
        "{} is not the CSV file the Sheets cursor was made for (its first row differs: rotated while the daemon was stopped?). The sheet keeps the {} rows of that file it confirmed (any later ones stay in the moved file); this file continues after them from its first row.",
        csv.display(),
        saved.rows_done
    );
    let mut c = saved;
    if csv_layout {
        c.sheet_rows_before += c.rows_done.saturating_sub(c.origin);
        c.origin = 0;
    }
    c.rows_done = 0;
    c.offset_done = header;
    c.last_row = None;
    c.file = None;
    Ok(c)
}

/// The identity of the CSV's first data row, if it holds a whole one (up to
/// `durable_bytes`): what names the file in the cursor.
pub fn first_row_id(csv: &Path, durable_bytes: u64) -> std::io::Result<Option<RowId>> {
    let header = header_len();
    let mut file = File::open(csv)?;
    file.seek(SeekFrom::Start(header))?;
    let mut first = Vec::new();
    BufReader::new(file.take(durable_bytes.saturating_sub(header))).read_until(b'\n', &mut first)?;
    Ok((first.last() == Some(&b'\n')).then(|| RowId {
        offset: header,
        fnv1a64: row_hash(&first),
    }))
}

/// Checks a saved cursor against the CSV (up to `durable_bytes`) and returns the cursor
/// to resume from, logging what was wrong and what was done about it.
///
/// - The recorded last row is where the cursor says, with the same bytes: resume there.
/// - Otherwise (the cursor is past the end, points into a row, or that row changed), the
///   CSV is scanned for the last row at or before the cursor with the recorded hash:
///   resume just after it; the rows between it and the old position are sent again,
///   to the same sheet rows (writes are idempotent), so nothing is skipped.
/// - No row with that hash: the CSV is not the file the cursor was made for; upload it
///   from its first row.
/// - A cursor without identity (written before it existed) is accepted when it stands
///   on the boundary after exactly `rows_done` rows; inside the file but not there, it
///   resumes at the last row boundary before it (never a torn row); past the end, the
///   CSV goes from its first row. It gains its identity.
pub fn verify_cursor(saved: Cursor, csv: &Path, durable_bytes: u64) -> std::io::Result<Cursor> {
    let name = csv.display();
    let header = header_len();
    let fresh = Cursor {
        origin: 0,
        rows_done: 0,
        offset_done: header,
        last_row: None,
        ..saved.clone()
    };
    if saved.rows_done == 0 && saved.offset_done == header {
        return Ok(fresh);
    }
    if let Some(id) = &saved.last_row {
        if saved.offset_done <= durable_bytes && id.offset < saved.offset_done && id.offset >= header {
            let file = File::open(csv)?;
            let mut row = vec![0; (saved.offset_done - id.offset) as usize];
            let mut before = [b'\n'];
            file.read_exact_at(&mut row, id.offset)?;
            file.read_exact_at(&mut before, id.offset - 1)?;
            if before == [b'\n'] && row.last() == Some(&b'\n') && row_hash(&row) == id.fnv1a64 {
                return Ok(saved);
            }
        }
    }
    let limit = saved.offset_done.min(durable_bytes);
    let scan = scan(
        csv,
        header,
        limit,
        durable_bytes,
        saved.last_row.as_ref().map(|id| id.fnv1a64.as_str()),
    )?;
    let resumed = match &saved.last_row {
        Some(id) => match scan.found {
            Some((rows, start, end)) => {
                log::warn!(
                    "The Sheets cursor {} does not match {name}: its last confirmed row (CSV row {}, byte {}) is not where it says. Found that row at CSV row {rows} (byte {start}); resuming after it.",
                    saved.rows_done,
                    saved.rows_done,
                    id.offset
                );
                Cursor {
                    rows_done: rows,
                    offset_done: end,
                    last_row: Some(RowId {
                        offset: start,
                        fnv1a64: id.fnv1a64.clone(),
                    }),
                    ..saved.clone()
                }
            }
            None => {
                log::warn!(
                    "The Sheets cursor says {} rows of {name} are in the sheet, but the last of them is not in the file (it was replaced or rewritten). Uploading the CSV from its first row (rewriting the same sheet rows).",
                    saved.rows_done
                );
                return Ok(fresh);
            }
        },
        None if saved.offset_done > durable_bytes => {
            log::warn!(
                "The Sheets cursor (CSV row {}, byte {}) is past the end of {name} ({durable_bytes} durable bytes): the file was replaced or lost its end. Uploading it from its first row (rewriting the same sheet rows).",
                saved.rows_done,
                saved.offset_done
            );
            return Ok(fresh);
        }
        None => {
            let (rows, start, end) = scan.boundary;
            if rows != saved.rows_done || end != saved.offset_done {
                log::warn!(
                    "The Sheets cursor (CSV row {}, byte {}) does not stand on a row boundary of {name} (the file has {} durable bytes). Resuming at the last whole row before it: CSV row {rows} (byte {end}).",
                    saved.rows_done,
                    saved.offset_done,
                    durable_bytes
                );
            }
            let last_row = (rows > 0).then(|| RowId {
                offset: start,
                fnv1a64: scan.boundary_hash.clone(),
            });
            Cursor {
                rows_done: rows,
                offset_done: end,
                last_row,
                ..saved.clone()
            }
        }
    };
    if resumed.rows_done < resumed.origin {
        log::warn!(
            "The Sheets cursor's tab starts at CSV row {}, after the resume point: uploading the CSV from its first row.",
            resumed.origin
        );
        return Ok(fresh);
    }
    Ok(resumed)
}

/// What [`scan`] found: rows are counted from 0, offsets are byte offsets.
struct Scan {
    /// (rows before it, start, end) of the last whole row ending at or before the limit
    /// (rows = 0 and start = end = header when there is none).
    boundary: (u64, u64, u64),
    boundary_hash: String,
    /// (rows up to and including it, start, end) of the row with the wanted hash: the
    /// last one ending at or before the limit, else the first one after it (a cursor
    /// that points into its own last row).
    found: Option<(u64, u64, u64)>,
}

/// Reads the rows of `csv` from `start` to `end` (the durable end), noting the last row
/// boundary at or before `limit` and where the row hashed `want` is.
fn scan(csv: &Path, start: u64, limit: u64, end_of_file: u64, want: Option<&str>) -> std::io::Result<Scan> {
    let mut file = File::open(csv)?;
    file.seek(SeekFrom::Start(start))?;
    let mut rdr = BufReader::with_capacity(1 << 16, file.take(end_of_file.saturating_sub(start)));
    let mut out = Scan {
        boundary: (0, start, start),
        boundary_hash: String::new(),
        found: None,
    };
    let (mut rows, mut at) = (0u64, start);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = rdr.read_until(b'\n', &mut line)?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // the end, or a torn row past the limit
        }
        let hash = row_hash(&line);
        rows += 1;
        let end = at + n as u64;
        if want == Some(hash.as_str()) && (end <= limit || out.found.is_none()) {
            out.found = Some((rows, at, end));
        }
        if end <= limit {
            out.boundary = (rows, at, end);
            out.boundary_hash = hash;
        } else if want.is_none() || out.found.is_some() {
            break; // past the limit, only the first match after it was still wanted
        }
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::csv::recover::test_csv;
    use std::path::PathBuf;

    fn cursor(rows: u64, offset: u64, last: Option<(u64, &[u8])>) -> Cursor {
        Cursor {
            spreadsheet_id: "s".into(),
            tab: "t".into(),
            origin: 0,
            rows_done: rows,
            offset_done: offset,
            last_row: last.map(|(o, b)| RowId {
                offset: o,
                fnv1a64: row_hash(b),
            }),
            layout: None,
            file: None,
            sheet_rows_before: 0,
        }
    }

    /// [`test_csv`] for `tag`, with the header's length and the file's.
    fn csv_file(tag: &str, rows: &str) -> (PathBuf, u64, u64) {
        let p = test_csv(&format!("source-{tag}"), rows);
        let len = std::fs::metadata(&p).unwrap().len();
        (p, header_len(), len)
    }

    #[test]
    fn cursor_checks() {
        let (p, h, len) = csv_file("checks", "a,1\nbb,2\nccc,3\n");
        // Exact: kept.
        let good = cursor(2, h + 9, Some((h + 4, b"bb,2\n")));
        assert_eq!(verify_cursor(good.clone(), &p, len).unwrap(), good);
        // Ahead of the file, identity found earlier: resume after it.
        let ahead = cursor(9, len + 50, Some((len + 10, b"bb,2\n")));
        let c = verify_cursor(ahead, &p, len).unwrap();
        assert_eq!((c.rows_done, c.offset_done), (2, h + 9));
        // Beyond the durable end: the row is not durable, not found, so from the start.
        let c = verify_cursor(good.clone(), &p, h + 6).unwrap();
        assert_eq!((c.rows_done, c.offset_done), (0, h));
        // Mid-row with identity: back to the row.
        let mid = cursor(3, len - 2, Some((h + 4, b"bb,2\n")));
        let c = verify_cursor(mid, &p, len).unwrap();
        assert_eq!((c.rows_done, c.offset_done), (2, h + 9));
        // Hash differs: from the first row.
        let changed = cursor(2, h + 9, Some((h + 4, b"bX,2\n")));
        let c = verify_cursor(changed, &p, len).unwrap();
        assert_eq!((c.rows_done, c.offset_done, c.last_row), (0, h, None));
        // Old format on a boundary: kept, with identity added.
        let c = verify_cursor(cursor(2, h + 9, None), &p, len).unwrap();
        assert_eq!(c, good);
        // Old format mid-row: back to the boundary before it.
        let c = verify_cursor(cursor(2, h + 7, None), &p, len).unwrap();
        assert_eq!((c.rows_done, c.offset_done), (1, h + 4));
        // Old format ahead: from the first row.
        let c = verify_cursor(cursor(7, len + 100, None), &p, len).unwrap();
        assert_eq!((c.rows_done, c.offset_done), (0, h));
    }

    #[test]
    fn a_cursor_knows_its_file_by_the_first_row() {
        let (p, h, len) = csv_file("file", "a,1\nbb,2\n");
        let id = first_row_id(&p, len).unwrap().unwrap();
        assert_eq!((id.offset, id.fnv1a64.clone()), (h, row_hash(b"a,1\n")));
        // Not a whole first row yet: no name.
        assert_eq!(first_row_id(&p, h + 2).unwrap(), None);
        let mut c = cursor(2, len, Some((h + 4, b"bb,2\n")));
        c.file = Some(id);
        c.origin = 1;
        // The same file: kept as it is.
        assert_eq!(follow_new_file(c.clone(), &p, len, true).unwrap(), c);
        // Another file at the path: it continues after the old one's rows.
        let (_, _, len) = csv_file("file", "zz,9\n");
        let n = follow_new_file(c.clone(), &p, len, true).unwrap();
        assert_eq!(
            (n.rows_done, n.offset_done, n.origin, n.sheet_rows_before),
            (0, h, 0, 1)
        );
        assert_eq!((&n.last_row, &n.file), (&None, &None));
        assert_eq!(n.sheet_row(0), 3, "after the old file's one row in this tab");
        // The readable layouts keep their state and need no offset.
        let n = follow_new_file(c, &p, len, false).unwrap();
        assert_eq!((n.rows_done, n.sheet_rows_before), (0, 0));
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}
