//! Google Sheets upload against the fake Google: every CSV row in the sheet exactly once,
//! in order, through faults, outages, token expiry, restarts and kill -9; clear errors.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::daemon::{read_csv, read_csv_so_far, read_line, send_lines, wait_until, HEADER};
use crate::util::fake_google::{Cell, FakeGoogle, Fault, Matching, RequestKind, DEFAULT_ACCOUNT, OTHER_KEY_PEM};
use crate::util::{Daemon, TestDir};

pub(crate) const SHEET: &str = "sheet-1";

/// A config pointing at the fake, fast enough for tests; `extra` holds `key = value`
/// lines for [sheets] that replace the defaults here.
pub(crate) fn config(dir: &TestDir, fake: &FakeGoogle, extra: &str) -> PathBuf {
    // These tests check the CSV mirror; tests/sheets_layout.rs covers the other layouts.
    let defaults = "batch_delay_secs = 0.1\nrequests_per_minute = 1200\nrequest_timeout_secs = 5\nlayout = \"csv\"\n";
    crate::util::sheets::config(dir, fake, SHEET, defaults, extra)
}

/// Rows that `send_readings` produces: per 3 lines, 2 + 2 + 1 fields.
pub(crate) fn rows_for(lines: usize) -> usize {
    lines / 3 * 5
}

pub(crate) fn start(dir: &TestDir, fake: &FakeGoogle, extra: &str) -> Daemon {
    let cfg = config(dir, fake, extra);
    Daemon::start(dir, &["--config", &cfg.display().to_string()])
}

pub(crate) fn fake_with_sheet() -> FakeGoogle {
    crate::util::sheets::fake_with(SHEET, None)
}

/// What the CSV row should look like in the sheet (RAW, typed by the `type` column,
/// `""` as an empty cell, trailing empty cells trimmed as Google does).
pub(crate) fn expected_cells(row: &[String]) -> Vec<Cell> {
    let mut cells: Vec<Cell> = row
        .iter()
        .enumerate()
        .map(|(i, v)| match (i, row[4].as_str()) {
            _ if v.is_empty() => Cell::Empty,
            (3, "number") | (7, _) if exact(v) => Cell::Number(v.parse().unwrap()),
            (3, "bool") => Cell::Bool(v == "true"),
            // Board text: the CSV's formula escape (docs/csv.md, "Formulas are neutralised") is
            // undone, the sheet gets what the board sent.
            (1 | 2 | 3 | 6 | 8, _) => match v.strip_prefix('\'') {
                Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r', '\'']) => Cell::Text(rest.into()),
                _ => Cell::Text(v.clone()),
            },
            _ => Cell::Text(v.clone()),
        })
        .collect();
    while cells.last() == Some(&Cell::Empty) {
        cells.pop();
    }
    cells
}

/// Whether a plain decimal (no exponent) survives a double: its text, without
/// trailing fraction zeros, is what the double prints as (the shortest round-trip form).
pub(crate) fn exact(v: &str) -> bool {
    let Ok(f) = v.parse::<f64>() else { return false };
    let t = if v.contains('.') {
        v.trim_end_matches('0').trim_end_matches('.')
    } else {
        v
    };
    f.is_finite() && format!("{f}") == t
}

/// The sheet equals the CSV, cell by cell: header, then every row once, in order.
pub(crate) fn sheet_matches_csv(fake: &FakeGoogle, csv: &Path) -> Result<usize, String> {
    let rows = read_csv(csv);
    let sheet = fake.values(SHEET, "Readings").ok_or("no Readings tab")?;
    let header: Vec<Cell> = HEADER.iter().map(|h| Cell::text(*h)).collect();
    if sheet.first() != Some(&header) {
        return Err(format!("header row is {:?}", sheet.first()));
    }
    if sheet.len() != rows.len() {
        return Err(format!("sheet has {} rows, CSV has {}", sheet.len(), rows.len()));
    }
    for (n, (csv_row, sheet_row)) in rows.iter().zip(&sheet).enumerate().skip(1) {
        let want = expected_cells(csv_row);
        if &want != sheet_row {
            return Err(format!("row {}: sheet {sheet_row:?} but CSV {want:?}", n + 1));
        }
    }
    Ok(rows.len() - 1)
}

pub(crate) fn wait_synced(fake: &FakeGoogle, d: &Daemon, timeout: Duration) {
    let mut last = String::new();
    let ok = wait_until(timeout, || match sheet_matches_csv(fake, &d.csv) {
        Ok(_) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(ok, "sheet never matched the CSV: {last}\ndaemon log:\n{}", d.log_text());
}

/// Rows (lines) in the CSV file right now.
pub(crate) fn csv_lines(d: &Daemon) -> usize {
    std::fs::read(&d.csv).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

/// `boards` boards each send `lines` readings of mixed types (numbers, bools, text that
/// looks like a formula or a number). Returns once the daemon has written them all to
/// the CSV, so that a following `wait_synced` cannot match a CSV that is still behind.
pub(crate) fn send_readings(d: &Daemon, boards: usize, lines: usize, tag: &str) {
    let want = csv_lines(d) + rows_for(boards * lines);
    let threads: Vec<_> = (0..boards)
        .map(|b| {
            let addr = d.addr;
            let tag = tag.to_string();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let lines: Vec<String> = (0..lines)
                    .map(|n| match n % 3 {
                        0 => format!(r#"{{"device":"{tag}-{b}","seq":{n},"t":{n}.5,"ok":true}}"#),
                        1 => format!(r#"device={tag}-{b} f="=HYPERLINK(\"x\")" s="007""#),
                        _ => format!("{tag}-{b} says, \"hello\" #{n}"),
                    })
                    .collect();
                send_lines(&mut s, &lines);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(30), || csv_lines(d) >= want),
        "the daemon wrote {} of {want} CSV lines; log:\n{}",
        csv_lines(d),
        d.log_text()
    );
}

#[test]
fn sheet_mirrors_the_csv_exactly_through_faults() {
    let dir = TestDir::new("sheets-faults");
    let fake = fake_with_sheet();
    let mut d = start(&dir, &fake, "batch_rows = 50\ngrow_rows = 100");
    wait_synced(&fake, &d, Duration::from_secs(20));
    // Google's faults, in stages (each stage's backoff stays short), each applied to the
    // next matching requests; the sheet must equal the CSV after every stage.
    let stages: [&[(Matching, Fault, u32)]; 4] = [
        &[
            (
                Matching::Writes,
                Fault::Status {
                    code: 429,
                    retry_after_secs: Some(1),
                },
                1,
            ),
            (Matching::Writes, Fault::status(503), 1),
        ],
        &[(Matching::Only(RequestKind::ValuesBatchUpdate), Fault::ApplyThenDrop, 2)],
        &[
            (Matching::Only(RequestKind::ValuesBatchUpdate), Fault::status(500), 1),
            (
                Matching::Only(RequestKind::ValuesBatchUpdate),
                Fault::DropBeforeApply,
                1,
            ),
        ],
        &[(Matching::Only(RequestKind::BatchUpdate), Fault::ApplyThenDrop, 1)],
    ];
    let mut lines = 0;
    for (i, stage) in stages.iter().enumerate() {
        for (m, f, n) in stage.iter().cloned() {
            fake.inject(m, f, n);
        }
        send_readings(&d, 3, 60, &format!("s{i}"));
        lines += 3 * 60;
        wait_synced(&fake, &d, Duration::from_secs(60));
    }
    let log = d.shutdown();
    let rows = sheet_matches_csv(&fake, &d.csv).unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{log}"));
    assert_eq!(rows, rows_for(lines), "every reading's rows");
    let st = fake.stats();
    assert_eq!(fake.pending_faults(), 0, "every injected fault was met");
    assert_eq!(st.non_raw_writes, 0, "values are always sent RAW");
    assert!(st.dropped_without_response >= 4);
    // Text that looks like a formula stays text.
    assert!(fake
        .values(SHEET, "Readings")
        .unwrap()
        .iter()
        .any(|r| r.contains(&Cell::text("=HYPERLINK(\"x\")"))));
    let (grid_rows, cols, _) = fake.grid(SHEET, "Readings").unwrap();
    assert_eq!(cols, 9, "the tab is created with exactly the CSV's columns");
    assert!(grid_rows as usize > rows, "grown with appendDimension as needed");
}

#[test]
fn outage_neither_slows_ingest_nor_loses_rows_and_the_channel_can_overflow() {
    let dir = TestDir::new("sheets-outage");
    let fake = fake_with_sheet();
    // A tiny channel forces the uploader to read most rows back from the CSV.
    let d = start(&dir, &fake, "batch_rows = 100\nchannel_rows = 10");
    wait_synced(&fake, &d, Duration::from_secs(20)); // header written, nothing else yet
    fake.outage(Duration::from_secs(4));
    let t = Instant::now();
    // Acknowledged readings during the outage: every ACK comes promptly.
    let mut s = d.connect();
    send_lines(&mut s, &["HELLO outage boot=o1 ack=1".into()]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO outage"));
    for seq in 1..=200u64 {
        send_lines(&mut s, &[format!("seq={seq} v={seq}")]);
        assert_eq!(read_line(&mut s), Some(format!("ACK {seq}")));
    }
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "ingest did not wait for Google ({:?})",
        t.elapsed()
    );
    drop(s);
    send_readings(&d, 4, 60, "o");
    wait_synced(&fake, &d, Duration::from_secs(60));
    assert!(fake.stats().outage_rejections > 0, "the outage was felt");
    assert!(d.log_contains("reachable again"), "{}", d.log_text());
    d.stop();
}

#[test]
fn restart_and_kill_9_resume_from_the_cursor_without_doubles() {
    let dir = TestDir::new("sheets-restart");
    let fake = fake_with_sheet();
    let mut d = start(&dir, &fake, "batch_rows = 40");
    send_readings(&d, 3, 60, "r");
    wait_synced(&fake, &d, Duration::from_secs(60));
    d.shutdown();
    // Offline for a while: rows pile up in the CSV only (Sheets off for this run).
    let mut d = Daemon::start(&dir, &["--no-sheets"]);
    send_readings(&d, 3, 60, "offline");
    d.shutdown();
    // Back with Sheets: catch up from the CSV. Slow writes so that kill -9 lands while
    // a write is in flight (applied by Google, not yet recorded in the cursor).
    fake.inject(
        Matching::Only(RequestKind::ValuesBatchUpdate),
        Fault::Delay(Duration::from_millis(300)),
        50,
    );
    let mut d = start(&dir, &fake, "batch_rows = 40");
    assert!(wait_until(Duration::from_secs(30), || fake
        .stats()
        .requests(RequestKind::ValuesBatchUpdate)
        >= 4));
    d.kill9();
    let mut d = start(&dir, &fake, "batch_rows = 40");
    send_readings(&d, 2, 30, "after");
    wait_synced(&fake, &d, Duration::from_secs(60));
    d.shutdown();
    let rows = sheet_matches_csv(&fake, &d.csv).unwrap();
    assert_eq!(rows, rows_for(3 * 60 + 3 * 60 + 2 * 30));
}

#[test]
fn an_expired_token_is_renewed_mid_run() {
    let dir = TestDir::new("sheets-token");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, "batch_rows = 30");
    send_readings(&d, 2, 30, "t1");
    wait_synced(&fake, &d, Duration::from_secs(30));
    let issued = fake.stats().tokens_issued;
    fake.expire_tokens();
    send_readings(&d, 2, 30, "t2");
    wait_synced(&fake, &d, Duration::from_secs(30));
    let st = fake.stats();
    assert!(st.unauthenticated >= 1, "the expired token was refused");
    assert!(st.tokens_issued > issued, "and a new one fetched");
    d.stop();
}

#[test]
fn the_request_budget_is_never_exceeded() {
    let dir = TestDir::new("sheets-budget");
    let fake = fake_with_sheet();
    // Google's quota, scaled down: 10 writes per 2 s; the daemon's budget: 240/min = 8 per 2 s.
    fake.rules(|r| r.quota_window = Duration::from_secs(2));
    fake.rules(|r| (r.write_quota, r.read_quota) = (10, 60));
    let d = start(
        &dir,
        &fake,
        "batch_rows = 5\nrequests_per_minute = 240\nbatch_delay_secs = 0",
    );
    send_readings(&d, 2, 45, "q");
    wait_synced(&fake, &d, Duration::from_secs(60));
    let st = fake.stats();
    assert!(
        st.requests(RequestKind::ValuesBatchUpdate) >= 20,
        "many small batches were sent"
    );
    assert_eq!(st.quota_exceeded, 0, "no 429 for quota: the budget held");
    assert!(
        st.max_writes_in_window <= 9,
        "max writes in a 2 s window: {}",
        st.max_writes_in_window
    );
    d.stop();
}

#[test]
fn the_cell_limit_is_warned_about_and_stops_upload_without_losing_rows() {
    let dir = TestDir::new("sheets-cells");
    let fake = fake_with_sheet(); // Sheet1 is 1000 x 26 = 26,000 cells
    let d = start(
        &dir,
        &fake,
        "max_cells = 27000\nwarn_cells_percent = 80\ngrow_rows = 20\nbatch_rows = 20",
    );
    send_readings(&d, 2, 300, "c"); // 1,000 rows: more than fit
    assert!(
        d.wait_for_log("cells (", Duration::from_secs(30)).is_some(),
        "{}",
        d.log_text()
    );
    assert!(
        d.wait_for_log("is full", Duration::from_secs(60)).is_some(),
        "{}",
        d.log_text()
    );
    assert_eq!(read_csv(&d.csv).len(), rows_for(600) + 1, "the CSV keeps everything");
    let sheet = fake.values(SHEET, "Readings").unwrap();
    assert!(
        sheet.len() > 50 && sheet.len() < 1201,
        "uploaded up to the limit: {}",
        sheet.len()
    );
    d.stop();
}

/// Runs the daemon with the given key/sheet situation and waits for a log line.
fn expect_error(fake: &FakeGoogle, dir: &TestDir, needle: &str) {
    let d = start(dir, fake, "");
    assert!(
        d.wait_for_log(needle, Duration::from_secs(20)).is_some(),
        "expected {needle:?} in:\n{}",
        d.log_text()
    );
    // Ingest carries on regardless.
    send_lines(&mut d.connect(), &["t=1".into()]);
    assert!(wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv).len() == 2));
    d.stop();
}

#[test]
fn remote_set_up_errors_are_clear_and_ingest_goes_on() {
    let fake = FakeGoogle::start();
    fake.add_spreadsheet("someone-elses", &["other@x.iam.gserviceaccount.com"]);
    let dir = TestDir::new("sheets-err-404");
    expect_error(&fake, &dir, &format!("spreadsheet {SHEET} not found"));

    let dir = TestDir::new("sheets-err-403");
    fake.add_spreadsheet(SHEET, &["other@x.iam.gserviceaccount.com"]);
    expect_error(&fake, &dir, &format!("is not shared with {DEFAULT_ACCOUNT}"));

    let dir = TestDir::new("sheets-err-disabled");
    fake.rules(|r| r.api_disabled = true);
    expect_error(&fake, &dir, "API is not enabled");
    fake.rules(|r| r.api_disabled = false);

    let dir = TestDir::new("sheets-err-wrongkey");
    fake.write_key_file(dir.join("key.json"), DEFAULT_ACCOUNT, OTHER_KEY_PEM);
    expect_error(&fake, &dir, "Google refused the service-account key");

    let dir = TestDir::new("sheets-err-othertab");
    let fake = fake_with_sheet();
    fake.add_tab(SHEET, "Readings", 100, 5);
    fake.put_values(
        SHEET,
        "Readings",
        "A1",
        &[vec![Cell::text("name"), Cell::text("score")]],
    );
    expect_error(&fake, &dir, "already holds other data");
    assert_eq!(
        fake.cell(SHEET, "Readings", "A1"),
        Some(Cell::text("name")),
        "left untouched"
    );
}

#[test]
fn key_file_problems_stop_the_daemon_at_start() {
    let fake = fake_with_sheet();
    for (name, contents, needle) in [
        ("missing", None, "cannot read the key file"),
        ("notjson", Some("{oops".to_string()), "is not JSON"),
        (
            "client-secret",
            Some(r#"{"installed":{"client_id":"x"}}"#.to_string()),
            "OAuth client secret",
        ),
        (
            "no-token-uri",
            Some(r#"{"type":"service_account","private_key":"k","client_email":"e"}"#.to_string()),
            "token_uri",
        ),
    ] {
        let dir = TestDir::new(&format!("sheets-key-{name}"));
        if let Some(c) = &contents {
            dir.write("key.json", c);
        } else {
            // config() writes a good key unless one exists: point it at a missing file.
        }
        let cfg = config(&dir, &fake, "");
        if contents.is_none() {
            std::fs::remove_file(dir.join("key.json")).unwrap();
        }
        let mut d = Daemon::spawn(
            &dir,
            &[
                "serve".into(),
                "--config".into(),
                cfg.display().to_string(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            "info",
        );
        let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(st.code(), Some(2), "{name}: a configuration error");
        let log = d.log_text();
        assert!(log.contains(needle) && log.contains("key.json"), "{name}: {log}");
        assert!(
            !dir.join("data/readings.csv").exists() && !dir.join("data").exists(),
            "{name}: issue 8.13, nothing is written before the configuration is accepted"
        );
        assert!(!log.contains("PRIVATE KEY"), "the key never reaches the log");
    }
}

#[test]
fn sheets_check_says_what_works_and_what_to_fix() {
    let fake = fake_with_sheet();
    let dir = TestDir::new("sheets-check");
    let cfg = config(&dir, &fake, "").display().to_string();
    let run = |dir: &TestDir| {
        let mut d = Daemon::spawn(
            dir,
            &["sheets".into(), "check".into(), "--config".into(), cfg.clone()],
            "warn",
        );
        let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
        std::thread::sleep(Duration::from_millis(50));
        (st.code(), d.log_text())
    };
    let (code, out) = run(&dir);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("All checks passed") && out.contains(DEFAULT_ACCOUNT),
        "{out}"
    );
    assert!(fake.values(SHEET, "Readings").is_none(), "check writes nothing");
    assert_eq!(fake.stats().writes_applied, 0);

    fake.share(SHEET, DEFAULT_ACCOUNT, None);
    let (code, out) = run(&dir);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("FAIL") && out.contains(&format!("not shared with {DEFAULT_ACCOUNT}")),
        "{out}"
    );
}

/// Ctrl-C during an outage: the uploader gets its bounded time, records its progress,
/// and the daemon exits 0; the rest goes up at the next start.
#[test]
fn shutdown_during_an_outage_is_bounded_and_the_rest_goes_at_next_start() {
    let dir = TestDir::new("sheets-shutdown");
    let fake = fake_with_sheet();
    let mut d = start(&dir, &fake, "shutdown_timeout_secs = 1");
    wait_synced(&fake, &d, Duration::from_secs(20));
    send_readings(&d, 2, 30, "before");
    wait_synced(&fake, &d, Duration::from_secs(20));
    fake.outage(Duration::from_secs(600));
    send_readings(&d, 2, 30, "during");
    assert!(wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv).len()
        == rows_for(120) + 1));
    let t = Instant::now();
    d.interrupt();
    let st = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(st.success(), "{}", d.log_text());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "bounded by the shutdown timeouts: {:?}",
        t.elapsed()
    );
    assert!(d.log_contains("not yet in the sheet"), "{}", d.log_text());
    let leaks: Vec<String> = d
        .log_text()
        .lines()
        .filter(|l| l.contains("ya29."))
        .map(str::to_string)
        .collect();
    assert!(leaks.is_empty(), "access tokens never reach the log: {leaks:#?}");
    fake.outage(Duration::ZERO);
    let d = start(&dir, &fake, "");
    wait_synced(&fake, &d, Duration::from_secs(30));
    d.stop();
}

/// The sheet equals the CSV files read one after the other (each without its header).
fn sheet_matches_files(fake: &FakeGoogle, files: &[PathBuf]) -> Result<usize, String> {
    let sheet = fake.values(SHEET, "Readings").ok_or("no Readings tab")?;
    let rows: Vec<Vec<String>> = files.iter().flat_map(|f| read_csv(f).into_iter().skip(1)).collect();
    let header: Vec<Cell> = HEADER.iter().map(|h| Cell::text(*h)).collect();
    if sheet.first() != Some(&header) {
        return Err(format!("header row is {:?}", sheet.first()));
    }
    if sheet.len() != rows.len() + 1 {
        return Err(format!(
            "sheet has {} data rows, the CSV files {}",
            sheet.len() - 1,
            rows.len()
        ));
    }
    for (n, (row, have)) in rows.iter().zip(&sheet[1..]).enumerate() {
        if &expected_cells(row) != have {
            return Err(format!("sheet row {}: {have:?}, CSV {:?}", n + 2, expected_cells(row)));
        }
    }
    Ok(rows.len())
}

fn wait_files(fake: &FakeGoogle, d: &Daemon, files: &[PathBuf]) {
    let mut last = String::new();
    let ok = wait_until(Duration::from_secs(60), || match sheet_matches_files(fake, files) {
        Ok(_) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(ok, "{last}\n{}", d.log_text());
}

/// Google is out of reach from the start, and the CSV is rotated before the uploader ever
/// set up: it still reads the file its cursor was checked against first, then the new one.
#[test]
fn a_csv_rotated_before_google_was_reached_is_followed_from_the_first_file() {
    let fake = fake_with_sheet();
    fake.outage(Duration::from_secs(60));
    let dir = TestDir::new("sheets-rotate-early");
    let d = start(&dir, &fake, "");
    let (first, current) = (dir.join("readings.csv.1"), d.csv.clone());
    send_readings(&d, 2, 6, "a");
    std::fs::rename(&current, &first).unwrap();
    d.hangup();
    assert!(d
        .wait_for_log("was moved or deleted", Duration::from_secs(10))
        .is_some());
    send_readings(&d, 1, 6, "c");
    assert_eq!(fake.values(SHEET, "Readings"), None, "Google was out of reach");
    fake.outage(Duration::ZERO);
    wait_files(&fake, &d, &[first, current]);
    let log = d.stop();
    assert!(!log.contains("ERROR"), "{log}");
}

/// The CSV is rotated (moved away, SIGHUP) while rows of it are still waiting for Google
/// (an outage), and again while the daemon is stopped: the sheet gets the old file's
/// rows, then the new file's, each once and in order, and a restart continues the same way.
#[test]
fn a_csv_rotated_mid_stream_goes_to_the_sheet_once_and_in_order() {
    let fake = fake_with_sheet();
    let dir = TestDir::new("sheets-rotate");
    let mut d = start(&dir, &fake, "");
    let (first, second, current) = (dir.join("readings.csv.1"), dir.join("readings.csv.2"), d.csv.clone());
    send_readings(&d, 2, 6, "a");
    wait_synced(&fake, &d, Duration::from_secs(60));
    // These rows are in the old file only, not yet in the sheet, when it is rotated.
    fake.outage(Duration::from_secs(60));
    send_readings(&d, 2, 6, "b");
    std::fs::rename(&current, &first).unwrap();
    d.hangup();
    assert!(d
        .wait_for_log("was moved or deleted", Duration::from_secs(10))
        .is_some());
    send_readings(&d, 2, 9, "c");
    assert_eq!(fake.values(SHEET, "Readings").unwrap().len(), 1 + rows_for(12));
    fake.outage(Duration::ZERO);
    wait_files(&fake, &d, &[first.clone(), current.clone()]);
    let log = d.shutdown();
    assert!(
        log.contains(&format!(
            "was rotated: all {} of its rows are in Google Sheets",
            rows_for(24)
        )),
        "{log}"
    );
    // Rotated while stopped: the cursor's file is gone from the path.
    std::fs::rename(&current, &second).unwrap();
    let d = start(&dir, &fake, "");
    send_readings(&d, 1, 6, "d");
    wait_files(&fake, &d, &[first, second, current]);
    let log = d.stop();
    assert!(
        log.contains("is not the CSV file the Sheets cursor was made for"),
        "{log}"
    );
    assert!(!log.contains("ERROR"), "{log}");
}
