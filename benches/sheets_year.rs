//! Issue 10 figure: a simulated year of 20 boards sending 3 values once a minute, uploaded
//! in the `per-device` layout under `sheets.cell_budget_percent`, against the fake Google
//! (which refuses, as Google does, any request that would take the spreadsheet past its
//! cell limit).
//!
//! The year is simulated with a fast clock: the CSV is written here, one reading per board
//! per minute from 2026-01-01 on (what a year of the daemon would have written), and the
//! daemon then uploads it as a backlog in large batches. A year is 10.5 million readings,
//! 4.2 times what 10 million cells hold at 4 cells a reading, so retention must delete
//! about three quarters of them on the way. Printed: readings uploaded and held, the most
//! cells the spreadsheet ever had (sampled every second, and from the fake at the end),
//! row deletes, requests and time. Checked: the upload never stops (the cursor reaches the
//! CSV's end with no ERROR), the fake never refused a request for the cell limit, and
//! every board tab holds the newest readings of its board, once each and in order, one
//! minute apart, the last one being the board's last.
//!
//! `cargo bench --bench sheets_year` runs the full year at Google's 10 million cells
//! (about 2.3 GB of CSV in the target directory, removed at the end); without `--bench`
//! (under `cargo test --all-targets`) one day against a 100,000-cell limit, the same
//! overflow at a small scale.

#[path = "../tests/util/mod.rs"]
mod util;

use std::io::{BufWriter, Write};
use std::time::{Duration, Instant, UNIX_EPOCH};

use sensorlog::sink::csv::encode::{rfc3339_millis, HEADER};
use util::daemon::wait_until;
use util::fake_google::Cell;
use util::sheets;
use util::{Daemon, TestDir};

const SHEET: &str = "year-sheet";
const BOARDS: u64 = 20;
const FIELDS: [&str; 3] = ["temp", "hum", "pres"];
/// 2026-01-01T00:00:00Z.
const START_SECS: u64 = 1_767_225_600;

fn board(b: u64) -> String {
    format!("board-{b:02}")
}

/// The time of board `b`'s reading number `minute` (boards 50 ms apart within a minute).
fn at(minute: u64, b: u64) -> String {
    rfc3339_millis(UNIX_EPOCH + Duration::from_millis((START_SECS + minute * 60) * 1000 + b * 50))
}

/// Writes `minutes` minutes of readings from every board; returns the CSV rows written.
fn write_csv(path: &std::path::Path, minutes: u64) -> u64 {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    writeln!(w, "{}", HEADER.join(",")).unwrap();
    let mut rows = 0;
    for m in 0..minutes {
        for b in 0..BOARDS {
            let t = at(m, b);
            let values = [
                format!("{}.{}", 15 + (m + b) % 10, m % 10),
                format!("{}", 40 + (m / 60 + b) % 30),
                format!("{}.{}", 1000 + m % 30, b % 10),
            ];
            for (f, v) in FIELDS.iter().zip(&values) {
                writeln!(w, "{t},{},{f},{v},number,10.0.0.{b}:5000,,,", board(b)).unwrap();
                rows += 1;
            }
        }
    }
    w.flush().unwrap();
    rows
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (minutes, max_cells) = if full {
        (365 * 24 * 60, 10_000_000u64)
    } else {
        (24 * 60, 100_000u64)
    };
    let budget_percent = 90;
    let budget = max_cells / 100 * budget_percent;
    let dir = TestDir::new("bench-sheets-year");
    let csv = dir.join("readings.csv");
    let t0 = Instant::now();
    let rows = write_csv(&csv, minutes);
    let readings = rows / FIELDS.len() as u64;
    let csv_bytes = std::fs::metadata(&csv).unwrap().len();
    println!(
        "Simulated {} days of {BOARDS} boards x 1 reading/min x 3 values: {readings} readings, {rows} CSV rows, {:.2} GB of CSV (written in {:.1} s).",
        minutes / 1440,
        csv_bytes as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );

    let fake = sheets::fake_with(SHEET, Some(100_000));
    fake.rules(|r| r.max_cells = max_cells);
    let keys = format!(
        "batch_rows = 20000\nbatch_delay_secs = 0.2\nrequests_per_minute = 6000\nrequest_timeout_secs = 60\nlayout = \"per-device\"\nmax_cells = {max_cells}\ncell_budget_percent = {budget_percent}\ngrow_rows = {}\n",
        if full { 10_000 } else { 200 }
    );
    let cfg = sheets::config(&dir, &fake, SHEET, &keys, "");
    let t1 = Instant::now();
    let d = Daemon::start(&dir, &["--config", &cfg.display().to_string()]);
    let mut most = 0;
    let done = wait_until(Duration::from_secs(if full { 3600 } else { 300 }), || {
        most = most.max(sheets::cells(&fake, SHEET));
        sheets::cursor_rows(&d.csv) >= rows
    });
    let secs = t1.elapsed().as_secs_f64();
    let log = d.log_text();
    assert!(
        done,
        "the upload stopped at CSV row {} of {rows}:\n{log}",
        sheets::cursor_rows(&d.csv)
    );
    let end_cells = sheets::cells(&fake, SHEET);
    most = most.max(end_cells);
    let deletes = log.matches("Deleting the ").count();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    let stats = fake.stats();
    d.stop();
    assert!(errors.is_empty(), "ERROR lines:\n{}", errors.join("\n"));
    assert!(!log.contains("is full"), "{log}");
    assert!(
        most <= budget,
        "the spreadsheet reached {most} cells, over the budget {budget}"
    );

    // Every board tab: the newest readings of the board, once each, in order, a minute
    // apart, ending with its last.
    let mut held = 0u64;
    for b in 0..BOARDS {
        let tab = fake.values(SHEET, &board(b)).expect("a tab per board");
        let times: Vec<&str> = tab[1..]
            .iter()
            .map(|r| match r.first() {
                Some(Cell::Text(t)) => t.as_str(),
                other => panic!("tab {} has {other:?} in column A", board(b)),
            })
            .collect();
        let n = times.len() as u64;
        assert!(n > 0 && n <= minutes, "tab {} holds {n} readings", board(b));
        let first = minutes - n;
        for (i, t) in times.iter().enumerate() {
            assert_eq!(*t, at(first + i as u64, b), "tab {} row {}", board(b), i + 2);
        }
        held += n;
    }
    println!(
        "Per-device, cell_budget_percent {budget_percent} of {max_cells} cells: all {readings} readings uploaded in {secs:.1} s, never stopped; {held} readings held at the end ({:.1}% of them, the newest {:.1} days per board); at most {most} cells used ({:.1}% of the limit, {end_cells} at the end); {deletes} row deletes; {} requests ({} writes).",
        held as f64 * 100.0 / readings as f64,
        held as f64 / BOARDS as f64 / 1440.0,
        most as f64 * 100.0 / max_cells as f64,
        stats.sheets_requests(),
        stats.writes_applied
    );
    drop(dir); // the CSV is large: remove it now
}
