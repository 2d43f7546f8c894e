//! Reading the CSV for a sink: rows from a byte offset up to the durable mark, each
//! with its identity, and the check of a saved position against the file.
//!
//! # Row identity
//!
//! A row is known by where it starts in the file and by a hash of its bytes (FNV-1a,
//! 64 bits, over the raw row including its newline). A sink's cursor keeps both for the
//! last row it confirmed (the PostgreSQL sink in the database, the uploader in its
//! cursor file, as hex); at start the sink reads those bytes back and compares. A file
//! that was replaced, restored from a backup or cut by a torn-row repair is noticed
//! there, before a single row is sent.
//!
//! # The durable mark
//!
//! The reader never passes [`crate::sink::csv::CsvSink::durable_position`]: rows that a
//! power cut could still take away from the CSV are never put in the database, so the
//! database never holds a row the CSV lost. The mark always falls on a row boundary.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;

use crate::sink::csv::encode::{COLUMNS, HEADER};

/// Length of the header line every sensorlog CSV starts with.
pub fn header_len() -> u64 {
    HEADER.join(",").len() as u64 + 1
}

/// FNV-1a, 64 bits: small, fast, and stable across Rust versions and machines; an
/// identity check against edits and shifts, not a defence against an adversary (the CSV
/// is ours).
pub fn row_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The [`row_hash`] of the bytes at `start..end` of `file`: the identity of the row
/// stored there, as a cursor records it.
pub fn hash_at(file: &File, start: u64, end: u64) -> io::Result<u64> {
    let mut bytes = vec![0; end.saturating_sub(start) as usize];
    file.read_exact_at(&mut bytes, start)?;
    Ok(row_hash(&bytes))
}

/// [`row_hash`] as 16 hex digits, as files that people may read keep it.
pub fn row_hash_hex(bytes: &[u8]) -> String {
    format!("{:016x}", row_hash(bytes))
}

/// One CSV row read for a sink.
#[derive(Debug, Clone)]
pub struct SourceRow {
    /// Byte offset of its first byte in the CSV.
    pub start: u64,
    /// Byte offset just past its newline: where the next row starts.
    pub end: u64,
    pub hash: u64,
    /// Its fields in [`HEADER`] order; missing fields of a malformed row are empty.
    pub fields: Fields,
}

/// The fields of a row, unquoted, in one string: one allocation per row instead of
/// one per field (the PostgreSQL sink reads 10,000 rows a batch). `fields[i]` is a `&str`.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    text: String,
    /// End of field `i` in `text` (its start is the end of field `i - 1`).
    ends: [u32; COLUMNS],
}

impl Fields {
    fn from_record(rec: &csv::ByteRecord) -> Fields {
        let mut f = Fields::default();
        match std::str::from_utf8(rec.as_slice()) {
            Ok(all) => {
                f.text = all.to_string();
                let mut last = 0;
                for (i, end) in f.ends.iter_mut().enumerate() {
                    last = rec.range(i).map_or(last, |r| r.end as u32);
                    *end = last;
                }
            }
            Err(_) => {
                for (i, end) in f.ends.iter_mut().enumerate() {
                    if let Some(field) = rec.get(i) {
                        f.text.push_str(&String::from_utf8_lossy(field));
                    }
                    *end = f.text.len() as u32;
                }
            }
        }
        f
    }
}

impl std::ops::Index<usize> for Fields {
    type Output = str;

    fn index(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

/// Where a sink has caught up to in one CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Data rows confirmed (rows `0..rows`).
    pub rows: u64,
    /// Byte offset where row `rows` starts.
    pub offset: u64,
    /// Start offset and hash of the last confirmed row; `None` before the first.
    pub last: Option<(u64, u64)>,
}

impl Position {
    pub fn start() -> Position {
        Position {
            rows: 0,
            offset: header_len(),
            last: None,
        }
    }

    /// The position after `rows` (which follow this one in the file).
    pub fn after(&self, rows: &[SourceRow]) -> Position {
        match rows.last() {
            None => *self,
            Some(last) => Position {
                rows: self.rows + rows.len() as u64,
                offset: last.end,
                last: Some((last.start, last.hash)),
            },
        }
    }
}

/// Reads up to `max_rows` rows starting at byte `from`, never past byte `durable`.
/// `buf` is reused between calls.
pub fn read_rows(
    file: &mut File,
    from: u64,
    durable: u64,
    max_rows: usize,
    buf: &mut Vec<u8>,
) -> io::Result<Vec<SourceRow>> {
    let mut out = Vec::new();
    if from >= durable || max_rows == 0 {
        return Ok(out);
    }
    let remaining = durable - from;
    // Rows are typically 60-150 bytes; start with room for the whole batch.
    let mut want = remaining.min(max_rows as u64 * 160 + 4096);
    loop {
        buf.clear();
        file.seek(SeekFrom::Start(from))?;
        file.by_ref().take(want).read_to_end(buf)?;
        let whole = buf.len() as u64 == remaining;
        parse_block(buf, from, whole, max_rows, &mut out);
        if !out.is_empty() || whole || (buf.len() as u64) < want {
            return Ok(out);
        }
        // Not even one complete row in the block: a very long row; read more.
        want = (want * 4).min(remaining);
    }
}

/// Parses complete rows from `block` (which starts at file offset `base`). When the
/// block is not `whole` (it stops before the durable mark) its last record may be cut,
/// so it is left for the next read.
fn parse_block(block: &[u8], base: u64, whole: bool, max_rows: usize, out: &mut Vec<SourceRow>) {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(block);
    let mut rec = csv::ByteRecord::new();
    while out.len() < max_rows {
        let start = rdr.position().byte();
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        let end = rdr.position().byte();
        if !whole && (end as usize >= block.len() || block[end as usize - 1] != b'\n') {
            break; // possibly cut by the end of the block
        }
        out.push(SourceRow {
            start: base + start,
            end: base + end,
            hash: row_hash(&block[start as usize..end as usize]),
            fields: Fields::from_record(&rec),
        });
    }
}

/// The outcome of checking a saved cursor against the CSV.
#[derive(Debug, PartialEq, Eq)]
pub enum Verified {
    /// The last confirmed row is where the cursor says.
    Same,
    /// The last confirmed row was found elsewhere in the file: resume from here.
    Moved(Position),
    /// The file does not hold the last confirmed row (it was replaced or edited).
    Missing,
}

/// Checks that the row the cursor names is in the CSV at that place, with the same
/// bytes; if not, scans the file (up to `durable`) for it, preferring the match
/// nearest to where the cursor said.
pub fn verify(file: &mut File, saved: &Position, durable: u64) -> io::Result<Verified> {
    let Some((last_start, last_hash)) = saved.last else {
        return Ok(if saved.offset == header_len() && saved.rows == 0 {
            Verified::Same
        } else {
            Verified::Missing
        });
    };
    if saved.offset <= durable
        && last_start < saved.offset
        && hash_at(file, last_start, saved.offset).is_ok_and(|h| h == last_hash)
    {
        return Ok(Verified::Same);
    }
    // Scan the whole file once for rows with that hash.
    let mut best: Option<Position> = None;
    let mut pos = Position::start();
    let mut buf = Vec::new();
    loop {
        let rows = read_rows(file, pos.offset, durable, 50_000, &mut buf)?;
        if rows.is_empty() {
            break;
        }
        for (i, r) in rows.iter().enumerate() {
            if r.hash == last_hash {
                let candidate = Position {
                    rows: pos.rows + i as u64 + 1,
                    offset: r.end,
                    last: Some((r.start, r.hash)),
                };
                let nearer = best.is_none_or(|b| {
                    let d = |p: &Position| p.last.map_or(u64::MAX, |(s, _)| s.abs_diff(last_start));
                    d(&candidate) < d(&b)
                });
                if nearer {
                    best = Some(candidate);
                }
            }
        }
        pos = pos.after(&rows);
    }
    Ok(best.map_or(Verified::Missing, Verified::Moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "received_at,device,field,value,type,peer,boot,seq,device_time\n";

    fn tmp(name: &str, contents: &str) -> std::path::PathBuf {
        let p = crate::scratch_dir(&format!("rows-{name}")).join("r.csv");
        std::fs::write(&p, contents).unwrap();
        p
    }

    fn row(i: usize) -> String {
        format!("2026-01-01T00:00:0{}.000Z,d,f,{i},number,p:1,,,\n", i % 10)
    }

    #[test]
    fn reads_stop_at_the_durable_mark_and_at_whole_rows() {
        let body: String = (0..50).map(row).collect();
        let quoted = "2026-01-01T00:00:00.000Z,d,note,\"a\nb, \"\"c\"\"\",text,p:1,,,\n";
        let p = tmp("read", &format!("{H}{body}{quoted}"));
        let len = std::fs::metadata(&p).unwrap().len();
        let mut f = File::open(&p).unwrap();
        let mut buf = Vec::new();
        let durable_10 = header_len() + (0..10).map(|i| row(i).len() as u64).sum::<u64>();
        let rows = read_rows(&mut f, header_len(), durable_10, 1000, &mut buf).unwrap();
        assert_eq!(rows.len(), 10, "never past the durable mark");
        assert_eq!(rows[9].end, durable_10);
        let rows = read_rows(&mut f, header_len(), len, 7, &mut buf).unwrap();
        assert_eq!(rows.len(), 7, "max_rows");
        let mut pos = Position::start();
        let mut all = Vec::new();
        loop {
            // Tiny batches make blocks end inside rows, and inside the quoted one.
            let rows = read_rows(&mut f, pos.offset, len, 3, &mut buf).unwrap();
            if rows.is_empty() {
                break;
            }
            pos = pos.after(&rows);
            all.extend(rows);
        }
        assert_eq!(all.len(), 51);
        assert_eq!(pos.offset, len);
        assert_eq!(&all[50].fields[3], "a\nb, \"c\"");
        assert_eq!((&all[50].fields[2], &all[50].fields[8]), ("note", ""));
        let raw = std::fs::read(&p).unwrap();
        for r in &all {
            assert_eq!(r.hash, row_hash(&raw[r.start as usize..r.end as usize]));
        }
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn fields_of_short_and_non_utf8_rows() {
        let rec = csv::ByteRecord::from(vec![&b"a"[..], &b"x\xffy"[..], &b"c"[..]]);
        let f = Fields::from_record(&rec);
        assert_eq!((&f[0], &f[1], &f[2]), ("a", "x\u{fffd}y", "c"));
        assert!((3..COLUMNS).all(|i| f[i].is_empty()));
        let rec = csv::ByteRecord::from(vec!["t", "dev", "", "21.5"]);
        let f = Fields::from_record(&rec);
        assert_eq!((&f[0], &f[1], &f[2], &f[3], &f[8]), ("t", "dev", "", "21.5", ""));
    }

    #[test]
    fn verify_same_moved_missing() {
        let body: String = (0..20).map(row).collect();
        let p = tmp("verify", &format!("{H}{body}"));
        let len = std::fs::metadata(&p).unwrap().len();
        let mut f = File::open(&p).unwrap();
        let rows = read_rows(&mut f, header_len(), len, 5, &mut Vec::new()).unwrap();
        let pos = Position::start().after(&rows);
        assert_eq!(verify(&mut File::open(&p).unwrap(), &pos, len).unwrap(), Verified::Same);
        assert_eq!(
            verify(&mut File::open(&p).unwrap(), &Position::start(), len).unwrap(),
            Verified::Same
        );
        // Two extra rows before it (a file restored with more in front): found further on.
        std::fs::write(&p, format!("{H}{}{}{body}", row(100), row(101))).unwrap();
        let len2 = std::fs::metadata(&p).unwrap().len();
        let shift = (row(100).len() + row(101).len()) as u64;
        match verify(&mut File::open(&p).unwrap(), &pos, len2).unwrap() {
            Verified::Moved(m) => {
                assert_eq!(m.rows, pos.rows + 2);
                assert_eq!(m.offset, pos.offset + shift);
            }
            other => panic!("{other:?}"),
        }
        // A different file.
        std::fs::write(&p, format!("{H}{}", row(7).replace(",7,", ",77,"))).unwrap();
        let len3 = std::fs::metadata(&p).unwrap().len();
        assert_eq!(
            verify(&mut File::open(&p).unwrap(), &pos, len3).unwrap(),
            Verified::Missing
        );
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }
}
