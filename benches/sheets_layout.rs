//! Issue 10 figures for the readable layouts:
//!
//! 1. readings a spreadsheet holds before Google's 10 million cells, per layout, for a
//!    board sending 3 values (from the layout planner itself: cells of the grid it needs);
//! 2. readings per minute uploaded by 50 boards in the `per-device` layout under Google's
//!    60 write requests per minute, catching up a backlog against the fake Google.
//!
//! `cargo bench --bench sheets_layout` runs the full version (a backlog of 100,000
//! readings); without `--bench` (under `cargo test --all-targets`) a small one.

#[path = "../tests/util/mod.rs"]
mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sensorlog::sink::csv::encode::Row;
use sensorlog::sink::sheets::layout::{plan, Shape, State};
use util::daemon::{read_csv_so_far, wait_until};
use util::sheets;
use util::{Daemon, TestDir};

const SHEET: &str = "bench-sheet";
const MAX_CELLS: u64 = 10_000_000;

/// Grid cells per reading of one board sending `temp`, `hum` and `pres`.
fn cells_per_reading(per_device: bool) -> f64 {
    let shape = Shape {
        per_device,
        overview: String::new(),
        csv_tab: "Readings".into(),
        max_board_tabs: 150,
        silent_factor: 5.0,
        min_silent_ms: 120_000,
    };
    let n = 1000;
    let rows: Vec<Row> = (0..n)
        .flat_map(|i| {
            ["temp", "hum", "pres"].map(|f| {
                Row(vec![
                    format!("2026-12-01T00:{:02}:{:02}.000Z", i / 60 % 60, i % 60),
                    "board".into(),
                    f.into(),
                    format!("{i}.5"),
                    "number".into(),
                    "10.0.0.2:5000".into(),
                    "b1".into(),
                    i.to_string(),
                    String::new(),
                ])
            })
        })
        .collect();
    let p = plan(&State::default(), &rows, &shape, 0, None);
    let cells: u64 = p
        .state
        .tabs
        .iter()
        .map(|t| (t.next_row - 2) * t.columns.len() as u64)
        .sum();
    cells as f64 / n as f64
}

/// Fills the CSV with `readings` readings of 3 values from `boards` boards, Sheets off.
fn backlog(dir: &TestDir, boards: usize, readings: usize) {
    let mut d = Daemon::start(dir, &["--no-sheets"]);
    let mut s = TcpStream::connect(d.addr).unwrap();
    let mut buf = String::new();
    for n in 0..readings {
        buf.push_str(&format!(
            "{{\"device\":\"board-{}\",\"seq\":{n},\"temp\":21.5,\"hum\":40,\"pres\":1013.2}}\n",
            n % boards
        ));
    }
    s.write_all(buf.as_bytes()).unwrap();
    drop(s);
    assert!(wait_until(Duration::from_secs(120), || read_csv_so_far(&d.csv).len()
        > readings * 3));
    d.shutdown();
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    println!("Readings a spreadsheet holds ({MAX_CELLS} cells), board sending 3 values:");
    let csv = 27.0;
    for (name, cells) in [
        ("csv", csv),
        ("single", cells_per_reading(false)),
        ("per-device", cells_per_reading(true)),
    ] {
        println!(
            "  {name:>10}: {cells:>4.1} cells/reading, {:>10.0} readings ({:.1}x csv)",
            MAX_CELLS as f64 / cells,
            csv / cells
        );
    }

    let (quota, boards, readings) = if full { (60, 50, 100_000) } else { (600, 50, 2_000) };
    let dir = TestDir::new("bench-sheets-layout");
    backlog(&dir, boards, readings);
    let fake = sheets::fake_with(SHEET, Some(quota));
    let keys = format!(
        "batch_rows = 20000\nbatch_delay_secs = 0.5\nrequests_per_minute = {}\nlayout = \"per-device\"\n",
        quota * 5 / 6
    );
    let cfg = sheets::config(&dir, &fake, SHEET, &keys, "");
    let t0 = Instant::now();
    let d = Daemon::start(&dir, &["--config", &cfg.display().to_string()]);
    let rows = (readings * 3) as u64;
    assert!(
        wait_until(Duration::from_secs(600), || sheets::cursor_rows(&d.csv) >= rows),
        "{}",
        d.log_text()
    );
    let secs = t0.elapsed().as_secs_f64();
    let requests = fake.stats().sheets_requests();
    d.stop();
    println!(
        "Per-device upload, {boards} boards, quota {quota} writes/min: {readings} readings in {secs:.1} s = {:.0} readings/min ({requests} requests, board tabs and charts included)",
        readings as f64 * 60.0 / secs
    );
}
