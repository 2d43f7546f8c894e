//! Knowing when every reading is on disk, and whether each is there exactly once.
//!
//! Throughput is measured to the moment the last expected line is readable in the output
//! file, not to the moment the generator finished writing to its sockets: a receiver that
//! buffers in memory must not look faster than one that has written. [`LineCounter`]
//! therefore counts newlines incrementally, reading only the bytes added since the last
//! poll, so waiting on a 300 MB file costs one pass over it.
//!
//! Counting lines cannot tell a lost reading from a doubled one, so after the contender
//! has stopped, [`tally`] reads the whole file once more and counts each reading by its
//! identity (device, seq): `lost = sent - distinct`, `duplicated = total - distinct`.
//! Devices are few (one per simulated board) and seqs are dense from 1, so a counter
//! per (device, seq) is a byte in a vector, not a hash-set entry: two million readings
//! cost a few MB to check.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// How a contender writes readings.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// sensorlog's CSV: a header, then one row per field (two per simulated reading).
    Csv,
    /// The raw line as received, one per reading (raw copier, rsyslog).
    Lines,
}

impl Output {
    /// Lines in a complete output file for `readings` simulated readings (each has the
    /// two fields `temp_c` and `humidity`; `device`, `seq` and `ts` are not rows).
    pub fn expected_lines(self, readings: u64) -> u64 {
        match self {
            Output::Csv => 1 + 2 * readings,
            Output::Lines => readings,
        }
    }
}

/// Counts the newlines of a growing file, reading only what was added since the last call.
pub struct LineCounter {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
    pub lines: u64,
}

impl LineCounter {
    pub fn new(path: &Path) -> LineCounter {
        LineCounter {
            path: path.to_path_buf(),
            file: None,
            buf: vec![0; 1 << 20],
            lines: 0,
        }
    }

    /// Reads everything appended so far; returns the line count.
    pub fn poll(&mut self) -> u64 {
        if self.file.is_none() {
            // The contender creates the file; until then there is nothing to count.
            self.file = File::open(&self.path).ok();
        }
        if let Some(f) = &mut self.file {
            while let Ok(n @ 1..) = f.read(&mut self.buf) {
                self.lines += memchr::memchr_iter(b'\n', &self.buf[..n]).count() as u64;
            }
        }
        self.lines
    }
}

/// What a finished output file holds, counted by reading identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    /// Readings found (for the CSV: `temp_c` rows).
    pub total: u64,
    /// Distinct (device, seq) among them.
    pub distinct: u64,
    /// Lines that are not a simulated reading at all (no device or seq).
    pub unreadable: u64,
}

impl Tally {
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.distinct)
    }

    pub fn duplicated(&self) -> u64 {
        self.total - self.distinct
    }
}

/// Per device, how often each seq was seen.
#[derive(Default)]
struct Seen {
    devices: HashMap<Vec<u8>, Vec<u8>>,
    tally: Tally,
    new_names: bool,
}

impl Seen {
    fn add(&mut self, device: &[u8], seq: u64) {
        let mut device = device;
        if self.new_names {
            let mut suffix = Vec::with_capacity(21);
            suffix.push(b'-');
            suffix.extend_from_slice(seq.to_string().as_bytes());
            device = device.strip_suffix(suffix.as_slice()).unwrap_or(device);
        }
        let counts = match self.devices.get_mut(device) {
            Some(c) => c,
            None => self.devices.entry(device.to_vec()).or_default(),
        };
        let i = seq as usize;
        if counts.len() <= i {
            counts.resize((i + 1).max(counts.len() * 2), 0);
        }
        self.tally.total += 1;
        if counts[i] == 0 {
            self.tally.distinct += 1;
        }
        counts[i] = counts[i].saturating_add(1);
    }
}

/// Counts the readings in a finished output file.
///
/// `new_names`: every reading came under its own name, `<board>-<seq>`; it is counted
/// as `(<board>, seq)`, so that a board's seqs stay one dense list.
pub fn tally(path: &Path, output: Output, new_names: bool) -> Result<Tally, String> {
    let mut seen = Seen {
        new_names,
        ..Seen::default()
    };
    match output {
        Output::Csv => {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(true)
                .from_path(path)
                .map_err(|e| format!("open {}: {e}", path.display()))?;
            let header = rdr.headers().map_err(|e| format!("read the header: {e}"))?;
            if header.iter().ne(sensorlog::sink::csv::encode::HEADER) {
                return Err(format!("unexpected CSV header {header:?}"));
            }
            let mut rec = csv::ByteRecord::new();
            loop {
                match rdr.read_byte_record(&mut rec) {
                    Ok(false) => break,
                    Ok(true) => {}
                    Err(e) => return Err(format!("parse {}: {e}", path.display())),
                }
                match (rec.get(1), rec.get(2), rec.get(7).and_then(parse_u64)) {
                    (Some(device), Some(b"temp_c"), Some(seq)) => seen.add(device, seq),
                    (_, Some(b"humidity"), Some(_)) => {}
                    _ => seen.tally.unreadable += 1,
                }
            }
        }
        Output::Lines => {
            let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
            let mut rdr = BufReader::with_capacity(1 << 20, file);
            let mut line = Vec::with_capacity(256);
            loop {
                line.clear();
                match rdr.read_until(b'\n', &mut line) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(format!("read {}: {e}", path.display())),
                }
                match (json_str(&line, b"\"device\":\""), json_u64(&line, b"\"seq\":")) {
                    (Some(device), Some(seq)) => seen.add(device, seq),
                    _ => seen.tally.unreadable += 1,
                }
            }
        }
    }
    Ok(seen.tally)
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The string after `key` (which ends with the opening quote), up to the closing quote.
pub fn json_str<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = memchr::memmem::find(line, key)? + key.len();
    let len = memchr::memchr(b'"', &line[start..])?;
    Some(&line[start..start + len])
}

/// The digits after `key`.
fn json_u64(line: &[u8], key: &[u8]) -> Option<u64> {
    let start = memchr::memmem::find(line, key)? + key.len();
    let len = line[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    parse_u64(&line[start..start + len])
}

/// The number after `key` (digits, '.', sign, exponent).
pub fn json_f64(line: &[u8], key: &[u8]) -> Option<f64> {
    let start = memchr::memmem::find(line, key)? + key.len();
    let len = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        .count();
    std::str::from_utf8(&line[start..start + len]).ok()?.parse().ok()
}
