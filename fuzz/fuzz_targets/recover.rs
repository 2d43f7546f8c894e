//! Start-up recovery of the CSV (`sink::csv::recover`, applied by `CsvSink::open`) on a
//! valid file (readings encoded as the connection encodes them) cut at any point, with
//! or without garbage appended: recovery cuts exactly the bytes after the last newline
//! and nothing else (no complete row is ever removed), counts the rows it kept, refuses
//! a file whose header is not ours without touching it, and never remembers a reading
//! as written (so that its resend would be swallowed) unless everything it says is in
//! the repaired file. (Not "unless its own rows survive": a cut at a row boundary can
//! leave a prefix of one reading equal to another reading with the same key; the
//! fuzzer found that case, and nothing is lost in it.)
//!
//! Input: the readings, a cut point, a flag for garbage, and the garbage (the rest).

#![no_main]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sensorlog::sink::csv::settings::{DedupConfig, Fsync};
use sensorlog::protocol::reading::sanitize;
use sensorlog::sink::csv::encode::{split_row, Encoder, ReadingColumns, HEADER};
use sensorlog::sink::csv::dedup::{content_hash, Dedup, Key, Verdict};
use sensorlog::sink::csv::error::CsvError;
use sensorlog::sink::csv::{recover::recover, CsvSink};

/// Few times, so that readings share their received_at (as the readings of one chunk do).
const TIMES: [&str; 2] = ["2026-12-01T00:00:00.000Z", "2026-12-01T00:00:00.001Z"];
const DEVICES: [&str; 6] = ["kitchen", "=cmd()", "a,b", "q\"x", "'quoted", "garage door"];
const BOOTS: [&str; 4] = ["", "b1", "3f9a1c07", "-x"];
const PEERS: [&str; 2] = ["127.0.0.1:40000", "[::1]:5"];

/// Reads the fuzz input front to back; zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        *b
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.byte()) % from.len()]
    }

    /// Board text as it reaches the sink: parsed and sanitised (no control characters).
    fn text(&mut self, max: u8) -> String {
        let n = usize::from(self.byte() % (max + 1)).min(self.0.len());
        let (t, rest) = self.0.split_at(n);
        self.0 = rest;
        sanitize(String::from_utf8_lossy(t)).into_owned()
    }
}

#[derive(Debug)]
struct Reading {
    key: Option<Key>,
    /// Byte range of its rows in the file.
    at: std::ops::Range<usize>,
}

fn lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|&b| b == b'\n').filter(|l| !l.is_empty())
}

/// A row as the board said it: its cells without the arrival time and the port (a
/// resend is the same reading whenever and from wherever it comes).
fn said(row: &[u8]) -> Vec<String> {
    let row = String::from_utf8_lossy(row);
    let mut cells: Vec<String> = split_row(&row).into_iter().map(|c| c.into_owned()).collect();
    cells.remove(5);
    cells.remove(0);
    cells
}

fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        // libFuzzer ends with exit(), so no destructor removes the scratch directory:
        // remove those of fuzz processes that are gone (pid-named, for parallel jobs).
        if Path::new("/proc/self").exists() {
            for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let pid = name.to_str().and_then(|n| n.strip_prefix("sensorlog-fuzz-recover-"));
                if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let dir = base.join(format!("sensorlog-fuzz-recover-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("r.csv")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let header = format!("{}\n", HEADER.join(","));
    let mut file = header.clone().into_bytes();
    let mut readings = Vec::new();
    let mut enc = Encoder::default();
    for _ in 0..1 + input.byte() % 12 {
        let seq = match input.byte() {
            s if s % 4 == 0 => None,
            s => Some(u64::from(s / 4)),
        };
        let cols = ReadingColumns {
            received_at: input.pick(&TIMES),
            device: input.pick(&DEVICES),
            peer: input.pick(&PEERS),
            boot: input.pick(&BOOTS),
            seq,
            device_time: &input.text(6),
        };
        let mut fields = Vec::new();
        for _ in 0..1 + input.byte() % 3 {
            let name = input.text(6);
            let (value, kind) = match input.byte() % 3 {
                0 => (format!("-{}.5", input.byte()), "number"),
                1 => (if input.byte() % 2 == 0 { "true" } else { "false" }.to_string(), "bool"),
                _ => (input.text(8), "text"),
            };
            fields.push((name, value, kind));
        }
        let start = file.len();
        let rows = fields.iter().map(|(f, v, k)| (f.as_str(), v.as_str(), *k));
        cols.encode_rows(rows.clone(), &mut enc, &mut file);
        let key = seq.filter(|_| !cols.boot.is_empty()).map(|seq| Key {
            device: cols.device.to_string(),
            boot: cols.boot.to_string(),
            seq,
            content: content_hash(rows, cols.device_time),
        });
        readings.push(Reading {
            key,
            at: start..file.len(),
        });
    }
    let cut = usize::from(u16::from_le_bytes([input.byte(), input.byte()])) % (file.len() + 1);
    let mode = input.byte();
    let tail_bytes = if mode & 2 == 0 {
        1 << 20
    } else {
        u64::from(input.byte()) * 8
    };
    let whole = file.clone();
    file.truncate(cut);
    let garbage = mode & 1 == 1;
    if garbage {
        file.extend_from_slice(input.0);
    }

    let path = path();
    std::fs::write(path, &file).unwrap();
    let ours = file.starts_with(header.as_bytes());
    let kept = file.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);

    // The inspection alone: what it would cut, count and remember.
    let mut dedup = Dedup::new(DedupConfig::default());
    let found = recover(path, &mut std::fs::File::open(path).unwrap(), &mut dedup, tail_bytes);
    if ours {
        let found = found.expect("a file with our header is recovered");
        assert_eq!(found.bytes, kept as u64);
        assert_eq!(found.cut_to, (kept < file.len()).then_some(kept as u64));
        assert_eq!(
            found.rows as usize,
            file[..kept].iter().filter(|&&b| b == b'\n').count() - 1
        );
        if !garbage {
            let in_file: HashSet<Vec<String>> = lines(&file[header.len()..kept]).map(said).collect();
            for r in &readings {
                let Some(key) = &r.key else { continue };
                if dedup.check(key) == Verdict::Resend {
                    assert!(
                        lines(&whole[r.at.clone()]).all(|row| in_file.contains(&said(row))),
                        "{key:?} is remembered as written but what it says is not all in the file \
                         (kept {kept} of {} bytes, tail {tail_bytes}):\n{}\nreadings: {readings:?}",
                        file.len(),
                        String::from_utf8_lossy(&file)
                    );
                }
            }
        }
    }

    // The repair, as the daemon applies it.
    let opened = CsvSink::open(path, Fsync::Never, DedupConfig::default());
    let after = std::fs::read(path).unwrap();
    if ours {
        let (_sink, report) = opened.expect("a file with our header opens");
        assert_eq!(after, file[..kept], "recovery must cut the torn tail and nothing else");
        assert_eq!(
            report.torn_bytes,
            (kept < file.len()).then_some((file.len() - kept) as u64)
        );
    } else if file.is_empty() || (file.len() < header.len() && header.as_bytes().starts_with(&file)) {
        // A crash while the header was written: it is written afresh (or completed).
        opened.expect("a header prefix opens");
        assert_eq!(after, header.as_bytes());
    } else {
        match opened {
            Err(CsvError::Header { .. }) => assert_eq!(after, file, "a foreign file was changed"),
            other => panic!("a file without our header: {:?}", other.map(|(_, r)| r)),
        }
    }
});
