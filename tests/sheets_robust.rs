//! Issue 9 against the fake Google: no row can stop the rows after it (cell limit,
//! request size, a refused row), the token endpoint's outages are transient, numbers keep
//! every digit, the cursor never runs ahead of or off the CSV, one line per outage.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::sheets::{config, fake_with_sheet, send_readings, sheet_matches_csv, wait_synced, SHEET};
use crate::util::daemon::{read_csv, read_csv_so_far, send_lines};
use crate::util::fake_google::{Cell, FakeGoogle, Fault, Matching, RequestKind, MAX_CELL_CHARS};
use crate::util::{Daemon, TestDir};

/// The sheets config of `tests/sheets.rs` plus `server` lines (e.g. a longer line cap).
fn start_with(dir: &TestDir, fake: &FakeGoogle, sheets: &str, server: &str) -> Daemon {
    let cfg = config(dir, fake, sheets);
    let text = format!("[server]\n{server}\n{}", std::fs::read_to_string(&cfg).unwrap());
    let cfg = dir.write("sensorlog.toml", &text);
    Daemon::start(dir, &["--config", &cfg.display().to_string()])
}

fn send(d: &Daemon, lines: &[String]) {
    let mut s = d.connect();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    send_lines(&mut s, lines);
}

/// Waits until the CSV has `rows` data rows.
fn wait_csv_rows(d: &Daemon, rows: usize) {
    assert!(
        crate::util::daemon::wait_until(Duration::from_secs(20), || read_csv_so_far(&d.csv).len() > rows),
        "the CSV never reached {rows} rows:\n{}",
        d.log_text()
    );
}

fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// Log lines at ERROR level.
fn errors(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("ERROR")).collect()
}

/// No message ends in "..", nor embeds a sentence's period before another.
fn assert_no_double_periods(log: &str) {
    for line in log.lines() {
        assert!(
            !(line.trim_end().ends_with("..") || line.contains(".. ")),
            "double period in: {line}"
        );
    }
}

#[test]
fn cells_over_googles_limit_are_cut_with_a_marker_and_rows_after_them_arrive() {
    let dir = TestDir::new("sheets-cell-limit");
    let fake = fake_with_sheet();
    let d = start_with(&dir, &fake, "batch_rows = 50", "max_line_bytes = 300000");
    let long = "x".repeat(MAX_CELL_CHARS + 1);
    // 30,000 characters but 60,000 UTF-16 units: over the limit as Google counts it.
    let emoji = "😀".repeat(30_000);
    let exact = "y".repeat(MAX_CELL_CHARS);
    send(
        &d,
        &[
            "device=a n=1".into(),
            format!("device=long note={long}"),
            format!("device=emoji note={emoji}"),
            format!("device=exact note={exact}"),
            "device=b n=2".into(),
        ],
    );
    wait_csv_rows(&d, 5);
    let sheet_ok = crate::util::daemon::wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "Readings").is_some_and(|v| v.len() == 6)
    });
    assert!(sheet_ok, "rows after the long ones never arrived:\n{}", d.log_text());
    let csv = read_csv(&d.csv);
    assert_eq!(csv[2][3], long, "the CSV keeps the whole value");
    let sheet = fake.values(SHEET, "Readings").unwrap();
    for (row, whole) in [(2, &long), (3, &emoji)] {
        let Cell::Text(cut) = &sheet[row][3] else {
            panic!("row {row}: {:?}", sheet[row][3])
        };
        assert!(utf16_len(cut) <= MAX_CELL_CHARS, "row {row} fits: {}", utf16_len(cut));
        assert!(cut.contains("[cut to fit"), "row {row} carries the marker");
        assert!(
            whole.starts_with(cut.split(" [cut").next().unwrap()),
            "a prefix of the value"
        );
    }
    assert_eq!(sheet[4][3], Cell::Text(exact), "exactly the limit is not cut");
    assert_eq!(sheet[5][1], Cell::text("b"));
    d.stop();
}

#[test]
fn requests_are_capped_in_bytes() {
    let dir = TestDir::new("sheets-request-bytes");
    let fake = fake_with_sheet();
    // Google refuses bodies over 100 kB here; 200 rows of ~2 kB would be 400 kB in one batch.
    fake.rules(|r| r.max_request_bytes = 100_000);
    let d = start_with(&dir, &fake, "batch_rows = 500\nmax_request_bytes = 60000", "");
    let lines: Vec<String> = (0..200)
        .map(|n| format!("device=w{n} text={}", "z".repeat(2000)))
        .collect();
    send(&d, &lines);
    wait_csv_rows(&d, 200);
    wait_synced(&fake, &d, Duration::from_secs(30));
    let st = fake.stats();
    assert!(
        st.requests(RequestKind::ValuesBatchUpdate) >= 8,
        "split into requests of at most 60 kB: {}",
        st.requests(RequestKind::ValuesBatchUpdate)
    );
    assert!(
        !fake.requests().iter().any(|r| r.status == Some(400)),
        "no request was over Google's limit"
    );
    d.stop();
}

#[test]
fn a_row_google_refuses_becomes_a_placeholder_and_the_upload_goes_on() {
    let dir = TestDir::new("sheets-refused-row");
    let fake = fake_with_sheet();
    fake.refuse_cells_containing(SHEET, Some("POISON"));
    let d = start_with(&dir, &fake, "batch_rows = 50\nbatch_delay_secs = 1", "");
    let lines: Vec<String> = (1..=30)
        .map(|n| {
            if n == 17 {
                "device=bad note=POISON".to_string()
            } else {
                format!("device=ok{n} n={n}")
            }
        })
        .collect();
    send(&d, &lines);
    wait_csv_rows(&d, 30);
    let arrived = crate::util::daemon::wait_until(Duration::from_secs(30), || {
        fake.values(SHEET, "Readings").is_some_and(|v| v.len() == 31)
    });
    assert!(arrived, "the rows never all arrived:\n{}", d.log_text());
    let sheet = fake.values(SHEET, "Readings").unwrap();
    let csv = read_csv(&d.csv);
    for n in 1..=30 {
        if n == 17 {
            let Cell::Text(msg) = &sheet[n][3] else {
                panic!("{:?}", sheet[n])
            };
            assert!(msg.contains("CSV row 17 (line 18 of readings.csv)"), "{msg}");
            assert!(msg.contains("refused by the fake"), "the reason: {msg}");
            assert_eq!(sheet[n][1], Cell::text("bad"), "the device is kept");
        } else {
            assert_eq!(sheet[n][1], Cell::text(csv[n][1].as_str()), "row {n}");
        }
    }
    assert_eq!(csv[17][3], "POISON", "the CSV keeps the row");
    let log = d.stop();
    let errs = errors(&log);
    assert_eq!(errs.len(), 1, "one ERROR line:\n{log}");
    assert!(errs[0].contains("CSV row 17"), "{}", errs[0]);
    assert_no_double_periods(&log);
}

#[test]
fn token_endpoint_failures_are_transient_and_name_the_url() {
    let dir = TestDir::new("sheets-token-transient");
    let fake = fake_with_sheet();
    fake.inject(Matching::Token, Fault::status(503), 1);
    fake.inject(Matching::Token, Fault::status(500), 1);
    fake.inject(Matching::Token, Fault::DropBeforeApply, 1);
    let d = start_with(&dir, &fake, "", "");
    send(&d, &["device=t n=1".into()]);
    wait_csv_rows(&d, 1);
    // Backoff 1 + 2 + 4 s at most, not the 60 s operator stall.
    wait_synced(&fake, &d, Duration::from_secs(30));
    let log = d.stop();
    assert!(errors(&log).is_empty(), "nothing for the operator:\n{log}");
    assert!(!log.contains("refused the service-account key"), "{log}");
    let warn = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("access token"))
        .unwrap_or_else(|| panic!("a WARN about the token:\n{log}"));
    assert!(warn.contains(&fake.token_uri()), "names the URL: {warn}");
    assert_eq!(
        log.matches("reachable again").count(),
        1,
        "one outage, one line:\n{log}"
    );
    assert_no_double_periods(&log);
}

#[test]
fn numbers_go_as_numbers_only_when_no_digit_is_lost() {
    let dir = TestDir::new("sheets-numbers");
    let fake = fake_with_sheet();
    let d = start_with(&dir, &fake, "", "");
    send(
        &d,
        &[
            "device=n a=12345678901234567890".into(),
            "device=n b=9007199254740993".into(),
            "device=n c=0.1000000000000000055511151231257827".into(),
            "device=n d=21.50".into(),
            "device=n e=9007199254740992".into(),
        ],
    );
    wait_csv_rows(&d, 5);
    wait_synced(&fake, &d, Duration::from_secs(20));
    let sheet = fake.values(SHEET, "Readings").unwrap();
    let got: Vec<&Cell> = sheet[1..].iter().map(|r| &r[3]).collect();
    assert_eq!(
        got,
        [
            &Cell::text("12345678901234567890"),
            &Cell::text("9007199254740993"),
            &Cell::text("0.1000000000000000055511151231257827"),
            &Cell::Number(21.5),
            &Cell::Number(9007199254740992.0),
        ]
    );
    d.stop();
}

fn cursor_path(dir: &TestDir) -> PathBuf {
    dir.join("readings.csv.sheets-cursor.json")
}

fn read_cursor(dir: &TestDir) -> Value {
    serde_json::from_str(&std::fs::read_to_string(cursor_path(dir)).unwrap()).unwrap()
}

/// A first run that leaves the sheet in step with 60 rows; returns the daemon stopped.
fn synced_first_run(dir: &TestDir, fake: &FakeGoogle) {
    let mut d = start_with(dir, fake, "batch_rows = 20", "");
    send_readings(&d, 2, 18, "first");
    wait_synced(fake, &d, Duration::from_secs(30));
    d.shutdown();
}

/// Restarts after `tamper`, sends more rows and checks the sheet equals the CSV.
fn restart_and_check(dir: &TestDir, fake: &FakeGoogle, expect_log: &str) -> String {
    let d = start_with(dir, fake, "batch_rows = 20", "");
    send_readings(&d, 1, 9, "second");
    wait_synced(fake, &d, Duration::from_secs(30));
    let log = d.stop();
    let rows = sheet_matches_csv(fake, &dir.join("readings.csv")).unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(rows, 60 + 15);
    assert!(log.contains(expect_log), "expected {expect_log:?} in:\n{log}");
    let c = read_cursor(dir);
    assert!(
        c["last_row"]["fnv1a64"].is_string(),
        "the cursor records its last row: {c}"
    );
    log
}

#[test]
fn a_cursor_ahead_of_the_csv_is_brought_back_to_its_last_row() {
    let dir = TestDir::new("sheets-cursor-ahead");
    let fake = fake_with_sheet();
    synced_first_run(&dir, &fake);
    let mut c = read_cursor(&dir);
    let len = std::fs::metadata(dir.join("readings.csv")).unwrap().len();
    c["rows_done"] = Value::from(c["rows_done"].as_u64().unwrap() + 10);
    c["offset_done"] = Value::from(len + 1000);
    c["last_row"]["offset"] = Value::from(len + 900);
    std::fs::write(cursor_path(&dir), c.to_string()).unwrap();
    let writes = fake.stats().requests(RequestKind::ValuesBatchUpdate);
    restart_and_check(&dir, &fake, "Found that row at CSV row 60");
    // The header, then only the 15 new rows: nothing before them was sent again.
    let sent = fake.stats().requests(RequestKind::ValuesBatchUpdate) - writes;
    assert!(sent <= 3, "{sent} writes: rows before the cursor were sent again");
}

#[test]
fn a_cursor_pointing_into_a_row_never_uploads_a_torn_row() {
    let dir = TestDir::new("sheets-cursor-mid-row");
    let fake = fake_with_sheet();
    synced_first_run(&dir, &fake);
    let mut c = read_cursor(&dir);
    c["offset_done"] = Value::from(c["offset_done"].as_u64().unwrap() - 7);
    std::fs::write(cursor_path(&dir), c.to_string()).unwrap();
    restart_and_check(&dir, &fake, "does not match");
}

#[test]
fn a_cursor_whose_row_changed_uploads_the_csv_again() {
    let dir = TestDir::new("sheets-cursor-hash");
    let fake = fake_with_sheet();
    synced_first_run(&dir, &fake);
    // The last confirmed row is edited in place (same length): the sheet must follow.
    let csv = dir.join("readings.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let last = text[..text.len() - 1].rfind('\n').unwrap() + 1;
    assert_eq!(&text[last..last + 3], "202", "the row starts with its time");
    let edited = format!("{}3{}", &text[..last + 2], &text[last + 3..]);
    std::fs::write(&csv, edited).unwrap();
    restart_and_check(&dir, &fake, "the last of them is not in the file");
}

#[test]
fn one_line_per_outage_with_its_length() {
    let dir = TestDir::new("sheets-outage-line");
    let fake = fake_with_sheet();
    let d = start_with(&dir, &fake, "", "");
    send(&d, &["device=o n=1".into()]);
    wait_synced(&fake, &d, Duration::from_secs(20));
    fake.inject(Matching::Writes, Fault::status(503), 2);
    send(&d, &["device=o n=2".into()]);
    wait_csv_rows(&d, 2);
    wait_synced(&fake, &d, Duration::from_secs(20));
    let log = d.stop();
    let back: Vec<&str> = log.lines().filter(|l| l.contains("reachable again")).collect();
    assert_eq!(back.len(), 1, "{log}");
    assert!(back[0].contains(" s (2 failed attempts)"), "{}", back[0]);
    assert_no_double_periods(&log);
}

#[test]
fn rows_not_yet_durable_are_not_uploaded() {
    let dir = TestDir::new("sheets-durable");
    let fake = fake_with_sheet();
    // The fsync thread would first run in ten minutes: rows are written, not durable.
    let cfg = config(&dir, &fake, "");
    let text = format!(
        "[csv]\nfsync = \"interval\"\nfsync_interval_ms = 600000\n{}",
        std::fs::read_to_string(&cfg).unwrap()
    );
    let mut d = Daemon::start_with_config(&dir, &text, &[]);
    send(&d, &["device=d n=1".into(), "device=d n=2".into()]);
    wait_csv_rows(&d, 2);
    // The header goes up at set-up; the rows must wait for an fsync. A later batch
    // (batch_delay_secs = 0.1) would have carried them by the time the header is seen
    // plus a few batch delays.
    assert!(
        crate::util::daemon::wait_until(Duration::from_secs(10), || fake
            .values(SHEET, "Readings")
            .is_some_and(|v| !v.is_empty())),
        "set-up never happened:\n{}",
        d.log_text()
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        fake.values(SHEET, "Readings").unwrap().len(),
        1,
        "rows went up before they were durable"
    );
    // Shutdown closes the CSV with an fsync: then they go up.
    let log = d.shutdown();
    let rows = sheet_matches_csv(&fake, &d.csv).unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert_eq!(rows, 2);
}

/// An answer longer than `sheets.max_response_bytes` (a wrong `api_base_url`, a proxy's
/// huge error page) is cut off unread and retried like an outage: memory stays bounded,
/// the log names the key, and every row still arrives once.
#[test]
fn an_answer_over_max_response_bytes_is_cut_off_and_retried() {
    let dir = TestDir::new("sheets-response-bytes");
    let fake = fake_with_sheet();
    let huge = |code: u16| Fault::Raw {
        code,
        content_type: "text/html".into(),
        body: "<p>padding</p>".repeat(20_000),
    };
    // The token endpoint's answer is bounded too (yup-oauth2 reads it whole).
    fake.inject(Matching::Token, huge(200), 1);
    let d = start_with(&dir, &fake, "max_response_bytes = 65536", "");
    send(&d, &["device=r n=1".into()]);
    wait_synced(&fake, &d, Duration::from_secs(20));
    fake.inject(Matching::Writes, huge(200), 1);
    fake.inject(Matching::Writes, huge(502), 1);
    send(&d, &["device=r n=2".into(), "device=r n=3".into()]);
    wait_csv_rows(&d, 3);
    wait_synced(&fake, &d, Duration::from_secs(30));
    let log = d.stop();
    let cut: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sheets.max_response_bytes"))
        .collect();
    assert!(
        cut.iter().all(|l| l.contains("(65536 bytes)")),
        "the lines say the limit: {cut:?}"
    );
    for call in [fake.token_uri().as_str(), "values:batchUpdate"] {
        assert!(
            cut.iter().any(|l| l.contains(call)),
            "no line names {call} and sheets.max_response_bytes:\n{log}"
        );
    }
    assert!(errors(&log).is_empty(), "an outage, not an operator error:\n{log}");
    assert_no_double_periods(&log);
}
