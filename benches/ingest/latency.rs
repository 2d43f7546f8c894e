//! Send-to-disk latency: how long after a board sent a reading it can be read in the file.
//!
//! The generator stamps each reading with its send time (`--stamp`: `"ts":<unix
//! seconds>`), which sensorlog keeps in the CSV's `device_time` column and the other
//! contenders keep in the raw line. A tailer thread polls the output file every half
//! millisecond and, for every complete line that appeared, records `now - ts`. What it
//! measures is what a reader of the file sees (the contender's buffering and flushing
//! included), with at most the poll period added. Sender and tailer share one clock,
//! so no clock skew enters.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::verify::{json_f64, Output};

const POLL: Duration = Duration::from_micros(500);

/// Percentiles of the latencies seen, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// The tailer thread; [`Tailer::finish`] stops it and summarises.
pub struct Tailer {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<f64>>,
}

impl Tailer {
    pub fn start(path: &Path, output: Output) -> std::io::Result<Tailer> {
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (stop, path) = (Arc::clone(&stop), path.to_path_buf());
            std::thread::Builder::new()
                .name("latency-tailer".into())
                .spawn(move || tail(&path, output, &stop))?
        };
        Ok(Tailer { stop, handle })
    }

    pub fn finish(self) -> Option<Latency> {
        self.stop.store(true, Ordering::Relaxed);
        let mut ms = self.handle.join().unwrap_or_default();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
        Some(Latency {
            samples: ms.len() as u64,
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: ms[ms.len() - 1],
        })
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn tail(path: &PathBuf, output: Output, stop: &AtomicBool) -> Vec<f64> {
    let mut file: Option<File> = None;
    let mut pending: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let mut ms = Vec::with_capacity(1 << 16);
    loop {
        // Read the stop flag before draining, so the last drain sees everything written.
        let last = stop.load(Ordering::Relaxed);
        if file.is_none() {
            file = File::open(path).ok();
        }
        if let Some(f) = &mut file {
            while let Ok(n @ 1..) = f.read(&mut chunk) {
                pending.extend_from_slice(&chunk[..n]);
            }
        }
        if let Some(end) = memchr::memrchr(b'\n', &pending) {
            let now = now_secs();
            for line in pending[..end].split(|&b| b == b'\n') {
                if let Some(ts) = sent_at(line, output) {
                    ms.push((now - ts) * 1000.0);
                }
            }
            pending.drain(..=end);
        }
        if last {
            return ms;
        }
        std::thread::sleep(POLL);
    }
}

/// The send time carried by one output line, if it is a reading (one per reading: the
/// CSV's `temp_c` row, whose last column is `device_time`).
fn sent_at(line: &[u8], output: Output) -> Option<f64> {
    match output {
        Output::Csv => {
            let mut cols = line.split(|&b| b == b',');
            if cols.nth(2)? != b"temp_c" {
                return None;
            }
            let ts = cols.next_back()?;
            std::str::from_utf8(ts).ok()?.trim_end_matches('\r').parse().ok()
        }
        Output::Lines => json_f64(line, b"\"ts\":"),
    }
}
