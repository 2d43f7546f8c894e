//! Issue 18 figures: what a crash in the middle of the Sheets set-up costs.
//!
//! 1. Requests and seconds from a restart to the first values write, after `N` new boards'
//!    set-up `batchUpdate` (their tabs and charts) was applied by Google with its reply
//!    lost and the daemon was killed with -9, for N = 6 and N = 150 tabs, at Google's
//!    default quota (60 writes and 60 reads a minute; `sheets.requests_per_minute` 50).
//! 2. Seconds from a new board's first reading to its row in the sheet, defaults
//!    (`sheets.batch_delay_secs` 5 included).
//!
//! `cargo bench --bench sheets_restart` runs it at the default quota (a minute or more per
//! figure); without `--bench` (under `cargo test --all-targets`) a small, fast version.
//! `SENSORLOG_BENCH_BIN=/path/to/an/older/sensorlog` measures another build ("before");
//! a figure not reached within the wait is printed as such.

#[path = "../tests/util/mod.rs"]
mod util;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::daemon::wait_until;
use util::fake_google::{FakeGoogle, Fault, Matching, RequestKind};
use util::sheets;
use util::{Daemon, TestDir};

const SHEET: &str = "bench-sheet";

fn send(d: &Daemon, devices: impl IntoIterator<Item = String>) {
    let mut s = TcpStream::connect(d.addr).unwrap();
    let mut buf = String::new();
    for dev in devices {
        buf.push_str(&format!(
            "{{\"device\":\"{dev}\",\"seq\":1,\"temp\":21.5,\"hum\":40}}\n"
        ));
    }
    s.write_all(buf.as_bytes()).unwrap();
}

fn config(dir: &TestDir, fake: &FakeGoogle, rpm: u32, batch_delay: &str) -> String {
    let keys = format!(
        "requests_per_minute = {rpm}\nbatch_delay_secs = {batch_delay}\nlayout = \"per-device\"\nmax_board_tabs = 190\n"
    );
    sheets::config(dir, fake, SHEET, &keys, "").display().to_string()
}

/// (requests, seconds) from the restart to the first values write; `None` if not reached.
fn restart_after_lost_setup(tabs: usize, quota: u32, rpm: u32, wait: Duration) -> (Option<(usize, f64)>, usize) {
    let dir = TestDir::new(&format!("bench-restart-{tabs}"));
    let fake = sheets::fake_with(SHEET, Some(quota));
    let cfg = config(&dir, &fake, rpm, "0.5");
    let args = ["--config", cfg.as_str()];
    let mut d = Daemon::start(&dir, &args);
    send(&d, ["base".to_string()]);
    assert!(
        wait_until(Duration::from_secs(120), || fake
            .values(SHEET, "base")
            .is_some_and(|v| v.len() == 2)),
        "{}",
        d.log_text()
    );
    // The new boards' set-up is applied, its reply lost; kill -9 at once.
    fake.inject(Matching::Only(RequestKind::BatchUpdate), Fault::ApplyThenDrop, 1);
    send(&d, (0..tabs).map(|i| format!("board-{i:03}")));
    assert!(wait_until(Duration::from_secs(120), || fake.pending_faults() == 0));
    d.kill9();
    let mark = fake.requests().len();
    let t0 = Instant::now();
    let d = Daemon::start(&dir, &args);
    let reached = wait_until(wait, || sheets::requests_to_first_write(&fake, mark).is_some());
    let secs = t0.elapsed().as_secs_f64();
    let sent = fake.requests().len() - mark;
    let result = reached.then(|| (sheets::requests_to_first_write(&fake, mark).unwrap_or(0), secs));
    if reached {
        // The figure counts only if every board's reading made it, exactly once.
        let all = wait_until(wait, || {
            (0..tabs).all(|i| {
                fake.values(SHEET, &format!("board-{i:03}"))
                    .is_some_and(|v| v.len() == 2)
            })
        });
        assert!(all, "not every board reached its tab:\n{}", d.log_text());
    }
    d.stop();
    (result, sent)
}

/// Seconds from a new board's first reading to its row in the sheet.
fn new_board_latency(quota: u32, rpm: u32, batch_delay: &str) -> f64 {
    let dir = TestDir::new("bench-new-board");
    let fake = sheets::fake_with(SHEET, Some(quota));
    let cfg = config(&dir, &fake, rpm, batch_delay);
    let d = Daemon::start(&dir, &["--config", cfg.as_str()]);
    send(&d, ["first".to_string()]);
    assert!(wait_until(Duration::from_secs(120), || fake
        .values(SHEET, "first")
        .is_some_and(|v| v.len() == 2)));
    // Let the pacer's window pass, as for a board appearing in a quiet hour.
    std::thread::sleep(Duration::from_millis(60_000 / u64::from(rpm) + 100));
    let t0 = Instant::now();
    send(&d, ["newcomer".to_string()]);
    assert!(wait_until(Duration::from_secs(120), || fake
        .values(SHEET, "newcomer")
        .is_some_and(|v| v.len() == 2)));
    let secs = t0.elapsed().as_secs_f64();
    d.stop();
    secs
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (quota, rpm, sizes, wait) = if full {
        (60, 50, vec![6, 150], Duration::from_secs(300))
    } else {
        (600, 500, vec![6], Duration::from_secs(60))
    };
    let bin = std::env::var("SENSORLOG_BENCH_BIN").unwrap_or_else(|_| "this build".into());
    println!(
        "Restart after a crash in the middle of the set-up ({bin}; quota {quota}/min, requests_per_minute {rpm}):"
    );
    for tabs in sizes {
        match restart_after_lost_setup(tabs, quota, rpm, wait) {
            (Some((requests, secs)), _) => println!(
                "  {tabs:>3} new tabs: {requests} requests and {secs:.1} s from the restart to the first values write"
            ),
            (None, sent) => println!(
                "  {tabs:>3} new tabs: no values write within {} s ({sent} requests sent by then)",
                wait.as_secs()
            ),
        }
    }
    let delay = if full { "5" } else { "0.5" };
    let secs = new_board_latency(quota, rpm, delay);
    println!("A new board's first reading to its row in the sheet: {secs:.1} s (batch_delay_secs {delay}, quota {quota}/min)");
}
