//! Issue 18: the sheet keeps up through every fault. The set-up is decided by one read of
//! the spreadsheet (a restart after a crash in the middle of it costs at most three
//! requests to the first values write), tabs are sized to the cell budget, and nothing is
//! silent (refusals logged and counted, a WARN when the upload stalls).
//!
//! The quota here is Google's shape at a tenth of the time: 20 writes and 20 reads per
//! 6-second window at the fake, `sheets.requests_per_minute = 200` at the daemon.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::sheets::{csv_lines, fake_with_sheet, SHEET};
use crate::sheets_layout::{model, start, wait_tabs};
use crate::util::daemon::{read_csv, send_lines, wait_until};
use crate::util::fake_google::{FakeGoogle, Fault, Matching, RequestKind};
use crate::util::sheets::requests_to_first_write;
use crate::util::{Daemon, TestDir};

const PER_DEVICE: &str = "layout = \"per-device\"\nrequests_per_minute = 200\n";

/// A fake with Google's per-minute quotas at a tenth of the time: 20 a window of 6 s.
fn fake_with_quota() -> FakeGoogle {
    let fake = fake_with_sheet();
    fake.rules(|r| (r.write_quota, r.read_quota) = (20, 20));
    fake.rules(|r| r.quota_window = Duration::from_secs(6));
    fake
}

/// `lines` readings from `device`, returned once they are in the CSV.
fn send(d: &Daemon, device: &str, lines: impl IntoIterator<Item = String>) {
    let lines: Vec<String> = lines.into_iter().collect();
    let want = csv_lines(d) + 1;
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    send_lines(&mut s, &lines);
    drop(s);
    assert!(
        wait_until(Duration::from_secs(20), || csv_lines(d) >= want),
        "{device}: the CSV never grew"
    );
}

fn numbers(device: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!(r#"{{"device":"{device}","seq":{i},"t":{i}.5}}"#))
        .collect()
}

/// Every board's tab holds its newest readings, contiguous and in CSV order, ending with
/// the last (retention may have deleted the oldest).
fn tabs_are_newest(fake: &FakeGoogle, d: &Daemon) -> Result<(), String> {
    for (dev, grid) in model(&read_csv(&d.csv)) {
        let have = fake.values(SHEET, &dev).ok_or(format!("no tab {dev}"))?;
        let kept = have.len().saturating_sub(1);
        if kept == 0 || kept > grid.len() - 1 || have[0] != grid[0] {
            return Err(format!("tab {dev}: {kept} readings of {}", grid.len() - 1));
        }
        if have[1..] != grid[grid.len() - kept..] {
            return Err(format!("tab {dev} is not its newest {kept} readings in order"));
        }
    }
    Ok(())
}

fn wait_newest(fake: &FakeGoogle, d: &Daemon, timeout: Duration) {
    let mut last = String::new();
    let ok = wait_until(timeout, || match tabs_are_newest(fake, d) {
        Ok(()) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(
        ok,
        "{last}
{}",
        d.log_text()
    );
}

/// The request `matching` is applied and its reply lost (after a 503 and a 429 on the
/// way), the daemon is killed with -9 at once, and restarted: every reading lands in its
/// tab exactly once and in CSV order, and the first values write after the restart is at
/// most `bound` requests in.
fn crash_after_lost_reply(
    name: &str,
    extra: &str,
    before: impl Fn(&Daemon),
    trigger: impl Fn(&Daemon),
    matching: Matching,
    bound: usize,
    retention: bool,
) {
    let check = |fake: &FakeGoogle, d: &Daemon| {
        if retention {
            wait_newest(fake, d, Duration::from_secs(90));
        } else {
            wait_tabs(fake, d, Duration::from_secs(60));
        }
    };
    let dir = TestDir::new(name);
    let fake = fake_with_quota();
    let extra = format!("{PER_DEVICE}{extra}");
    let mut d = start(&dir, &fake, &extra);
    before(&d);
    check(&fake, &d);
    fake.inject(Matching::Writes, Fault::status(503), 1);
    fake.inject(Matching::Any, Fault::status(429), 1);
    fake.inject(matching, Fault::ApplyThenDrop, 1);
    trigger(&d);
    let dropped = wait_until(Duration::from_secs(60), || fake.pending_faults() == 0);
    d.kill9();
    assert!(
        dropped,
        "the faults were never all consumed:\n{}",
        fake.request_log_text()
    );
    assert!(fake.stats().dropped_without_response >= 1);
    let mark = fake.requests().len();
    let d = start(&dir, &fake, &extra);
    // The restart rewrites what the cursor does not cover (the tabs may match already).
    wait_until(Duration::from_secs(60), || {
        requests_to_first_write(&fake, mark).is_some()
    });
    check(&fake, &d);
    let n = requests_to_first_write(&fake, mark)
        .unwrap_or_else(|| panic!("no values write after the restart:\n{}", fake.request_log_text()));
    let log = fake.request_log_text();
    assert!(
        n <= bound,
        "{n} requests from the restart to the first values write (at most {bound}):\n{log}\n{}",
        d.log_text()
    );
    assert_eq!(fake.stats().schema_violations, 0, "{log}");
    let text = d.stop();
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn kill9_after_a_lost_add_sheet_reply_costs_three_requests_to_the_first_write() {
    crash_after_lost_reply(
        "reconcile-add-sheet",
        "",
        |d| send(d, "a0", numbers("a0", 0, 3)),
        |d| {
            // Six new boards in one batch: one batchUpdate with their tabs and charts.
            for b in 1..=6 {
                send(d, "new", numbers(&format!("n{b}"), 0, 2));
            }
        },
        Matching::Only(RequestKind::BatchUpdate),
        3,
        false,
    );
}

#[test]
fn kill9_after_a_lost_add_chart_reply_costs_three_requests_to_the_first_write() {
    crash_after_lost_reply(
        "reconcile-add-chart",
        "",
        // Text only: a tab, no chart yet.
        |d| {
            send(
                d,
                "c0",
                (0..3).map(|i| format!("c0 says hello #{i}")).collect::<Vec<_>>(),
            )
        },
        // The first number: the chart is added.
        |d| send(d, "c0", numbers("c0", 0, 3)),
        Matching::Only(RequestKind::BatchUpdate),
        3,
        false,
    );
}

#[test]
fn kill9_after_a_lost_append_dimension_reply_costs_three_requests_to_the_first_write() {
    crash_after_lost_reply(
        "reconcile-grow",
        "grow_rows = 10\n",
        |d| send(d, "g0", numbers("g0", 0, 3)),
        // Past the first grid (11 rows): the tab grows.
        |d| send(d, "g0", numbers("g0", 3, 12)),
        Matching::Only(RequestKind::BatchUpdate),
        3,
        false,
    );
}

#[test]
fn kill9_after_a_lost_values_write_costs_two_requests_to_the_first_write() {
    crash_after_lost_reply(
        "reconcile-values",
        "",
        |d| send(d, "v0", numbers("v0", 0, 3)),
        |d| send(d, "v0", numbers("v0", 3, 3)),
        Matching::Only(RequestKind::ValuesBatchUpdate),
        2,
        false,
    );
}

#[test]
fn kill9_after_a_lost_delete_dimension_reply_deletes_once() {
    // Sheet1 takes 26,000 cells; 95% of 28,000 leaves 600 for two boards of two columns.
    let fill = |d: &Daemon| {
        for round in 0..4 {
            send(d, "d0", numbers("d0", round * 60, 60));
            send(d, "d1", numbers("d1", round * 60, 60));
        }
    };
    crash_after_lost_reply(
        "reconcile-delete",
        "max_cells = 28000\ncell_budget_percent = 95\ngrow_rows = 10\nbatch_rows = 20\noverview_tab = \"\"\ncharts = false\n",
        |d| {
            fill(d);
            assert!(
                wait_until(Duration::from_secs(60), || d.log_contains("Deleting the")),
                "no delete yet:\n{}",
                d.log_text()
            );
        },
        |d| send(d, "d0", numbers("d0", 1000, 40)),
        Matching::Only(RequestKind::BatchUpdate),
        // Resolving the lost delete needs no request (the start-up read tells); making room
        // for the batch may read the oldest row left and delete once more.
        5,
        true,
    );
}

/// Total cells of the spreadsheet's grids now.
fn cells(fake: &FakeGoogle) -> u64 {
    crate::util::sheets::cells(fake, SHEET)
}

#[test]
fn a_20000_cell_spreadsheet_keeps_three_boards_current_and_a_new_board_gets_its_tab_in_one_batch() {
    let dir = TestDir::new("reconcile-budget");
    let fake = fake_with_sheet();
    fake.rules(|r| r.max_cells = 20_000);
    fake.rules(|r| (r.write_quota, r.read_quota) = (6000, 6000));
    // A spreadsheet whose first tab is nearly empty (Google's default grid alone is 26,000).
    fake.set_grid(SHEET, "Sheet1", 10, 2);
    // Default grow_rows (10,000): a board's first grid alone would be past the limit.
    let extra = "layout = \"per-device\"\nmax_cells = 20000\nbatch_rows = 500\noverview_refresh_secs = 0\n";
    let d = start(&dir, &fake, extra);
    let budget = 18_000; // 90% (the default sheets.cell_budget_percent)
                         // About 8,900 readings of one field fit in all; send three times that.
    let per_round = 1500;
    for round in 0..6 {
        let want = csv_lines(&d) + 3 * per_round;
        let threads: Vec<_> = ["b0", "b1", "b2"]
            .into_iter()
            .map(|dev| {
                let addr = d.addr;
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                    send_lines(&mut s, &numbers(dev, round * per_round, per_round));
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(wait_until(Duration::from_secs(30), || csv_lines(&d) >= want));
        wait_newest(&fake, &d, Duration::from_secs(120));
        assert!(cells(&fake) <= budget, "round {round}: {} cells", cells(&fake));
    }
    assert!(
        fake.stats().max_workbook_cells <= budget,
        "the grid went past 90%: {} cells",
        fake.stats().max_workbook_cells
    );

    // A new board at the budget: its tab and reading come with the next batch's one write.
    let mark = fake.requests().len();
    let started = Instant::now();
    send(&d, "late", numbers("late", 0, 1));
    assert!(
        wait_until(Duration::from_secs(60), || fake
            .values(SHEET, "late")
            .is_some_and(|v| v.len() == 2)),
        "the new board never got its tab:\n{}",
        d.log_text()
    );
    let writes = fake
        .requests()
        .iter()
        .skip(mark)
        .filter(|r| r.kind == RequestKind::ValuesBatchUpdate && r.status == Some(200))
        .count();
    assert_eq!(writes, 1, "{}", fake.request_log_text());
    assert!(started.elapsed() < Duration::from_secs(60));
    wait_newest(&fake, &d, Duration::from_secs(30));
    assert!(fake.stats().max_workbook_cells <= budget);
    assert_eq!(fake.stats().schema_violations, 0);
    let log = d.stop();
    assert!(!log.contains("ERROR"), "{log}");
    assert!(log.contains("Deleting the") || log.contains("Giving back"), "{log}");
}

#[test]
fn refusals_are_logged_with_googles_message_and_counted_and_a_stall_warns() {
    let dir = TestDir::new("reconcile-silent");
    let fake = fake_with_sheet();
    let extra = "layout = \"per-device\"\nstall_warn_secs = 1\n";
    let cfg = crate::sheets::config(&dir, &fake, extra);
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n{}",
        std::fs::read_to_string(&cfg).unwrap()
    );
    let d = Daemon::start_with_config(&dir, &text, &[]);
    send(&d, "r0", numbers("r0", 0, 2));
    wait_tabs(&fake, &d, Duration::from_secs(30));
    // Google refuses: a quota answer, then a refused cell (the row goes up as a placeholder).
    fake.inject(Matching::Writes, Fault::status(429), 1);
    fake.refuse_cells_containing(SHEET, Some("forbidden"));
    send(
        &d,
        "r0",
        vec![r#"{"device":"r0","note":"forbidden words"}"#.to_string()],
    );
    assert!(
        d.wait_for_log("Google Sheets refused a request: HTTP 400", Duration::from_secs(30))
            .is_some(),
        "{}",
        d.log_text()
    );
    assert!(
        d.log_contains("Google Sheets refused a request: HTTP 429"),
        "{}",
        d.log_text()
    );
    fake.refuse_cells_containing(SHEET, None);
    // An outage: rows wait and nothing is confirmed; the WARN says for what.
    fake.outage(Duration::from_secs(4));
    send(&d, "r0", numbers("r0", 10, 2));
    let line = d
        .wait_for_log("nothing confirmed for", Duration::from_secs(30))
        .unwrap_or_else(|| panic!("no stall WARN:\n{}", d.log_text()));
    assert!(
        line.contains("WARN") && line.contains("sheets.stall_warn_secs"),
        "{line}"
    );
    assert!(line.contains("waiting for a backoff after"), "{line}");
    // Every reading arrives (the refused one as a placeholder naming it): 5 and the header.
    assert!(
        wait_until(Duration::from_secs(60), || fake
            .values(SHEET, "r0")
            .is_some_and(|v| v.len() == 6)),
        "{}",
        d.log_text()
    );
    let (status, body) = crate::util::http::get(&format!("http://{}/metrics", d.http_addr()));
    assert_eq!(status, 200);
    let count = |reason: &str| -> u64 {
        let key = format!("sensorlog_sheets_refused_requests_total{{reason=\"{reason}\"}} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in\n{body}"))
    };
    assert!(count("quota") >= 1, "{body}");
    assert!(count("invalid") >= 1, "{body}");
    assert_eq!(count("permission"), 0, "{body}");
    d.stop();
}

#[test]
fn more_boards_than_the_budget_holds_one_error_names_those_that_wait_and_the_others_go_on() {
    let dir = TestDir::new("reconcile-full");
    let fake = fake_with_sheet();
    fake.rules(|r| r.max_cells = 100);
    fake.rules(|r| (r.write_quota, r.read_quota) = (6000, 6000));
    fake.set_grid(SHEET, "Sheet1", 1, 1);
    // 90 cells (90% of 100): a board of one field needs at least 2 rows x 2 columns, so
    // 22 of the 30 boards fit and 8 wait.
    let extra = "layout = \"per-device\"\nmax_cells = 100\noverview_tab = \"\"\ncharts = false\n";
    let d = start(&dir, &fake, extra);
    let devices: Vec<String> = (0..30).map(|i| format!("f{i:02}")).collect();
    send(
        &d,
        "all",
        devices.iter().map(|dev| format!(r#"{{"device":"{dev}","t":1}}"#)),
    );
    let line = d
        .wait_for_log("cannot hold the newest reading of every board", Duration::from_secs(60))
        .unwrap_or_else(|| panic!("no ERROR:\n{}", d.log_text()));
    assert!(
        line.contains("ERROR") && line.contains("the other boards go on"),
        "{line}"
    );
    assert!(line.contains("\"f29\"") && !line.contains("\"f00\""), "{line}");
    assert!(
        wait_until(Duration::from_secs(60), || (0..22)
            .all(|i| fake.values(SHEET, &format!("f{i:02}")).is_some_and(|v| v.len() == 2))),
        "{}",
        d.log_text()
    );
    assert_eq!(fake.values(SHEET, "f29"), None);
    // The boards that fit go on: each new reading replaces the old one within the budget.
    for n in 2..5 {
        send(&d, "f00", vec![format!(r#"{{"device":"f00","t":{n}}}"#)]);
        assert!(
            wait_until(Duration::from_secs(30), || fake.values(SHEET, "f00").is_some_and(|v| v
                .last()
                .is_some_and(
                    |r| r.last() == Some(&crate::util::fake_google::Cell::Number(f64::from(n)))
                ))),
            "reading {n} of f00 never arrived:\n{}",
            d.log_text()
        );
    }
    assert!(
        fake.stats().max_workbook_cells <= 90,
        "{}",
        fake.stats().max_workbook_cells
    );
    assert_eq!(fake.stats().schema_violations, 0);
    let log = d.stop();
    // One line a minute at most for the cause, however many batches met it.
    assert_eq!(log.matches("cannot hold the newest reading").count(), 1, "{log}");
}
