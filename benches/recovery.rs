//! Issue 8's memory and start-up figures: the resend memory's size for many boards,
//! start-up time on a large CSV, and the real daemon's RSS with 200,000 distinct
//! boards before and after a restart.
//!
//! `cargo bench --bench recovery` prints the figures (docs/performance.md
//! has the last ones measured); `cargo test --all-targets` runs it tiny, as a smoke test.

use std::io::{BufWriter, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

#[path = "../tests/util/bench.rs"]
#[allow(dead_code)] // csv_rows: the other load benches
mod bench;
use bench::{serve, spawn_listening};

use sensorlog::sink::csv::dedup::{Dedup, Key};
use sensorlog::sink::csv::settings::{DedupConfig, Fsync};
use sensorlog::sink::csv::CsvSink;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn key(device: String, boot: &str, seq: u64) -> Key {
    Key {
        device,
        boot: boot.into(),
        seq,
        content: seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
    }
}

/// Resident memory the resend memory adds for `boards` distinct boards.
fn dedup_memory(boards: u64, limits: DedupConfig, seqs_per_boot: u64, boots: u64) -> (u64, usize) {
    let before = rss_kib(std::process::id());
    let mut d = Dedup::new(limits);
    for b in 0..boards {
        for boot in 0..boots {
            for s in 0..seqs_per_boot {
                d.record(&key(format!("board-{b:08}"), &format!("3f9a1c07-boot-{boot}"), s));
            }
        }
    }
    let after = rss_kib(std::process::id());
    let n = d.len();
    drop(d);
    (after.saturating_sub(before), n)
}

fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-recovery")
}

/// A CSV of about `bytes`, made of realistic rows from `boards` boards.
fn big_csv(path: &Path, bytes: u64) {
    if std::fs::metadata(path).is_ok_and(|m| m.len() >= bytes) {
        return;
    }
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    w.write_all(b"received_at,device,field,value,type,peer,boot,seq,device_time\n")
        .unwrap();
    let mut written = 0u64;
    let mut seq = 0u64;
    while written < bytes {
        seq += 1;
        for (field, value) in [("temp_c", "21.53"), ("humidity", "40.1"), ("pressure", "1013.2")] {
            let line = format!(
                "2026-12-01T10:15:02.{:03}Z,board-{:04},{field},{value},number,192.168.1.40:51234,3f9a1c07,{seq},\n",
                seq % 1000,
                seq % 1000
            );
            w.write_all(line.as_bytes()).unwrap();
            written += line.len() as u64;
        }
    }
    w.flush().unwrap();
}

fn start_daemon(dir: &Path) -> (Child, std::net::SocketAddr) {
    let (child, addr, _) = spawn_listening(
        serve(env!("CARGO_BIN_EXE_sensorlog"), Path::new("readings.csv"), &[]).current_dir(dir),
        false,
    );
    (child, addr)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn lines_in(path: &Path) -> u64 {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() as u64)
}

/// The real daemon, default config, `boards` distinct boards each sending one reading
/// with boot and seq: RSS once all are written, and again after a restart.
fn daemon_rss(boards: u64) -> (u64, u64) {
    let dir = target_dir().join("daemon");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (child, addr) = start_daemon(&dir);
    let per_conn = boards / 8 + 1;
    let senders: Vec<_> = (0..8)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = BufWriter::new(TcpStream::connect(addr).unwrap());
                for b in (c * per_conn)..((c + 1) * per_conn).min(boards) {
                    writeln!(s, r#"{{"device":"board-{b:08}","boot":"3f9a1c07","seq":1,"t":21.5}}"#).unwrap();
                }
                s.flush().unwrap();
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let csv = dir.join("readings.csv");
    let deadline = Instant::now() + Duration::from_secs(300);
    while lines_in(&csv) < boards + 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(lines_in(&csv), boards + 1, "every reading written");
    let before = rss_kib(child.id());
    stop(child);
    let (child, _) = start_daemon(&dir);
    let after = rss_kib(child.id());
    stop(child);
    (before, after)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (million, gib, daemon_boards) = if full {
        (1_000_000, 1u64 << 30, 200_000)
    } else {
        (2_000, 1 << 20, 500)
    };
    std::fs::create_dir_all(target_dir()).unwrap();

    let (kib, kept) = dedup_memory(million, DedupConfig::default(), 1, 1);
    println!(
        "resend memory, {million} distinct boards, defaults: {:.1} MiB resident, {kept} boards remembered (dedup.max_boards)",
        kib as f64 / 1024.0
    );
    let worst = DedupConfig::default();
    let (kib, kept) = dedup_memory(
        worst.max_boards as u64 / if full { 1 } else { 100 },
        worst,
        worst.window_seqs as u64,
        2,
    );
    println!(
        "resend memory, worst case ({kept} boards x 2 boots x {} seqs, all windows full): {:.1} MiB resident",
        worst.window_seqs,
        kib as f64 / 1024.0
    );

    let csv = target_dir().join("big.csv");
    big_csv(&csv, gib);
    let size = std::fs::metadata(&csv).unwrap().len();
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (sink, report) = CsvSink::open(&csv, Fsync::Never, DedupConfig::default()).unwrap();
        times.push(t.elapsed());
        assert!(report.rows > 0);
        drop(sink);
    }
    times.sort();
    println!(
        "start-up on a {:.2} GiB CSV (warm page cache): median {:.3} s (runs {:?})",
        size as f64 / (1u64 << 30) as f64,
        times[1].as_secs_f64(),
        times
            .iter()
            .map(|t| format!("{:.3}", t.as_secs_f64()))
            .collect::<Vec<_>>()
    );

    let (before, after) = daemon_rss(daemon_boards);
    println!(
        "daemon RSS with {daemon_boards} distinct boards (boot + seq), defaults: {:.1} MiB after ingest, {:.1} MiB after a restart",
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
}
