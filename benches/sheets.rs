//! Sheets upload throughput against the fake Google, under Google's real write quota
//! (60 requests per minute per service account):
//!
//! 1. one request per reading (what the original gspread server did): rows per minute;
//! 2. sensorlog's batching: catch-up time for a 100,000-row backlog, and rows per minute.
//!
//! `cargo bench --bench sheets` runs it (about two minutes). Without `--bench` (as under
//! `cargo test --all-targets`) it runs a small, fast version so that it keeps working.

#[path = "../tests/util/mod.rs"]
mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::daemon::{read_csv_so_far, wait_until};
use util::fake_google::FakeGoogle;
use util::sheets;
use util::{Daemon, TestDir};

const SHEET: &str = "bench-sheet";

fn start_with_sheets(dir: &TestDir, fake: &FakeGoogle, batch_rows: usize, rpm: u32) -> Daemon {
    let keys =
        format!("batch_rows = {batch_rows}\nbatch_delay_secs = 0.5\nrequests_per_minute = {rpm}\nlayout = \"csv\"\n");
    let cfg = sheets::config(dir, fake, SHEET, &keys, "");
    Daemon::start(dir, &["--config", &cfg.display().to_string()])
}

/// Fills the CSV with `rows` rows (two fields per reading) with Sheets off.
fn backlog(dir: &TestDir, rows: usize) {
    let mut d = Daemon::start(dir, &["--no-sheets"]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    let mut buf = String::new();
    for n in 0..rows / 2 {
        buf.push_str(&format!(
            "{{\"device\":\"bench\",\"seq\":{n},\"temp_c\":21.5,\"humidity\":40}}\n"
        ));
    }
    s.write_all(buf.as_bytes()).unwrap();
    drop(s);
    assert!(wait_until(Duration::from_secs(60), || read_csv_so_far(&d.csv).len() > rows));
    d.shutdown();
}

fn fake(quota: u32) -> FakeGoogle {
    sheets::fake_with(SHEET, Some(quota))
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (quota, rows, single_secs) = if full { (60, 100_000, 30.0) } else { (600, 2_000, 2.0) };
    println!("Sheets upload against the fake Google with a quota of {quota} write requests/min:");

    // 1. One request per reading.
    let dir = TestDir::new("bench-sheets-single");
    backlog(&dir, 10_000);
    let g = fake(quota);
    let d = start_with_sheets(&dir, &g, 1, quota);
    assert!(
        wait_until(Duration::from_secs(30), || sheets::cursor_rows(&d.csv) > 0),
        "{}",
        d.log_text()
    );
    let (t0, r0) = (Instant::now(), sheets::cursor_rows(&d.csv));
    std::thread::sleep(Duration::from_secs_f64(single_secs));
    let per_min_single = (sheets::cursor_rows(&d.csv) - r0) as f64 * 60.0 / t0.elapsed().as_secs_f64();
    d.stop();
    assert_eq!(g.stats().quota_exceeded, 0);
    println!("  one request per reading: {per_min_single:>10.0} rows/min");

    // 2. Batched catch-up of a backlog.
    let dir = TestDir::new("bench-sheets-batched");
    backlog(&dir, rows);
    let g = fake(quota);
    let t0 = Instant::now();
    let d = start_with_sheets(&dir, &g, 2000, quota * 5 / 6);
    assert!(
        wait_until(Duration::from_secs(600), || sheets::cursor_rows(&d.csv) >= rows as u64),
        "{}",
        d.log_text()
    );
    let secs = t0.elapsed().as_secs_f64();
    d.stop();
    let sheet_rows = g.values(SHEET, "Readings").map_or(0, |v| v.len());
    assert_eq!(sheet_rows, rows + 1, "every row once, plus the header");
    assert_eq!(g.stats().quota_exceeded, 0, "never over quota");
    println!(
        "  batched (2000 rows/request, budget {} req/min): {rows} rows caught up in {secs:.1} s = {:.0} rows/min ({} requests)",
        quota * 5 / 6,
        rows as f64 * 60.0 / secs,
        g.stats().sheets_requests()
    );
    println!("  ratio: {:.0}x", rows as f64 * 60.0 / secs / per_min_single.max(1.0));
}
