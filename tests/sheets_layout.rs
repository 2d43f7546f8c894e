//! Issue 10: the readable layouts against the fake Google. A tab per board with one row
//! per reading and a column per field, equal to a model built here from the CSV (not from
//! the daemon's code), exactly once and in order through faults and kill -9; a new field
//! adds a column; tab titles sanitised and made distinct; the overview tab; a layout
//! switch rewrites the new tabs from the CSV.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::time::Duration;

use crate::sheets::{config, csv_lines, expected_cells, fake_with_sheet, send_readings, SHEET};
use crate::util::daemon::{read_csv, send_lines, wait_until};
use crate::util::fake_google::{Cell, FakeGoogle, Fault, Matching, RequestKind};
use crate::util::{Daemon, TestDir};

const PER_DEVICE: &str = "layout = \"per-device\"\n";

pub(crate) fn start(dir: &TestDir, fake: &FakeGoogle, extra: &str) -> Daemon {
    let cfg = config(dir, fake, extra);
    Daemon::start(dir, &["--config", &cfg.display().to_string()])
}

/// The title rule (docs/sheets.md): `[ ] * ? / \ :` and control characters become `_`, at most
/// 100 characters (the tests' devices never collide unless a test says so).
fn title(device: &str) -> String {
    device
        .chars()
        .map(|c| {
            if "[]*?/\\:".contains(c) || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .take(100)
        .collect()
}

/// A board's tab as the CSV says it must be.
#[derive(Default)]
struct Model {
    columns: Vec<String>,
    rows: Vec<BTreeMap<usize, Cell>>,
    last_key: Option<Vec<String>>,
}

/// Per device (in first-seen order): header and rows, from the CSV alone.
pub(crate) fn model(csv: &[Vec<String>]) -> Vec<(String, Vec<Vec<Cell>>)> {
    let mut order: Vec<String> = Vec::new();
    let mut tabs: BTreeMap<String, Model> = BTreeMap::new();
    for row in csv.iter().skip(1) {
        let cells = expected_cells(row);
        let cell = |i: usize| cells.get(i).cloned().unwrap_or(Cell::Empty);
        let device = match &cell(1) {
            Cell::Text(t) => t.clone(),
            _ => String::new(),
        };
        if !tabs.contains_key(&device) {
            order.push(device.clone());
        }
        let m = tabs.entry(device).or_default();
        let key = vec![
            row[0].clone(),
            row[1].clone(),
            row[5].clone(),
            row[6].clone(),
            row[7].clone(),
        ];
        if m.last_key.as_ref() != Some(&key) {
            m.rows.push(BTreeMap::new());
            m.last_key = Some(key);
        }
        let field = match &cell(2) {
            Cell::Text(t) => t.clone(),
            _ => String::new(),
        };
        let mut set = vec![("received_at".to_string(), Cell::Text(row[0].clone()))];
        if !row[8].is_empty() {
            set.push(("device_time".to_string(), cell(8)));
        }
        set.push((format!("field:{field}"), cell(3)));
        for (k, v) in set {
            let i = match m.columns.iter().position(|c| *c == k) {
                Some(i) => i,
                None => {
                    m.columns.push(k);
                    m.columns.len() - 1
                }
            };
            m.rows.last_mut().unwrap().insert(i, v);
        }
    }
    order
        .into_iter()
        .map(|d| {
            let m = &tabs[&d];
            let mut grid = vec![m
                .columns
                .iter()
                .map(|c| Cell::text(c.strip_prefix("field:").unwrap_or(c)))
                .collect::<Vec<_>>()];
            for r in &m.rows {
                let width = r.keys().max().map_or(0, |k| k + 1);
                let mut line: Vec<Cell> = (0..width).map(|i| r.get(&i).cloned().unwrap_or(Cell::Empty)).collect();
                while line.last() == Some(&Cell::Empty) {
                    line.pop();
                }
                grid.push(line);
            }
            (d, grid)
        })
        .collect()
}

/// Every board's tab equals the model of the CSV, cell by cell, row by row.
pub(crate) fn tabs_match_csv(fake: &FakeGoogle, d: &Daemon) -> Result<usize, String> {
    let csv = read_csv(&d.csv);
    let want = model(&csv);
    let mut readings = 0;
    for (device, grid) in &want {
        let t = title(device);
        let have = fake.values(SHEET, &t).ok_or(format!("no tab {t:?}"))?;
        if have.len() != grid.len() {
            return Err(format!(
                "tab {t:?} has {} rows, the CSV makes {}",
                have.len(),
                grid.len()
            ));
        }
        for (n, (h, w)) in have.iter().zip(grid).enumerate() {
            if h != w {
                return Err(format!("tab {t:?} row {}: sheet {h:?}, CSV {w:?}", n + 1));
            }
        }
        readings += grid.len() - 1;
    }
    Ok(readings)
}

pub(crate) fn wait_tabs(fake: &FakeGoogle, d: &Daemon, timeout: Duration) -> usize {
    let mut last = String::new();
    let mut n = 0;
    let ok = wait_until(timeout, || match tabs_match_csv(fake, d) {
        Ok(r) => {
            n = r;
            true
        }
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(ok, "tabs never matched the CSV: {last}\ndaemon log:\n{}", d.log_text());
    n
}

fn send(d: &Daemon, lines: &[&str]) {
    let want = csv_lines(d) + 1;
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    send_lines(&mut s, &lines.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    drop(s);
    assert!(wait_until(Duration::from_secs(20), || csv_lines(d) >= want));
}

#[test]
fn per_device_tabs_equal_the_csv_through_faults_and_kill9() {
    let dir = TestDir::new("layout-faults");
    let fake = fake_with_sheet();
    // Twenty boards appear here, each costing a tab and a chart once: more than Google's
    // 60 writes a minute in a test this short (a 429 is retried, only slowly).
    fake.rules(|r| (r.write_quota, r.read_quota) = (600, 60));
    let extra = format!("{PER_DEVICE}batch_rows = 40\ngrow_rows = 50");
    let mut d = start(&dir, &fake, &extra);
    send_readings(&d, 3, 30, "a");
    let n = wait_tabs(&fake, &d, Duration::from_secs(30));
    assert!(n >= 60, "only {n} readings");
    // The overview is first; every board tab exists.
    let tabs = fake.tabs(SHEET).unwrap();
    assert_eq!(tabs.first().map(String::as_str), Some("Latest"), "{tabs:?}");
    let stages: [&[(Matching, Fault, u32)]; 3] = [
        &[
            (Matching::Only(RequestKind::ValuesBatchUpdate), Fault::ApplyThenDrop, 2),
            (Matching::Writes, Fault::status(503), 1),
        ],
        // New boards: their addSheet is applied and its reply lost.
        &[(Matching::Only(RequestKind::BatchUpdate), Fault::ApplyThenDrop, 2)],
        &[
            (Matching::Only(RequestKind::ValuesBatchUpdate), Fault::status(500), 1),
            (
                Matching::Only(RequestKind::ValuesBatchUpdate),
                Fault::DropBeforeApply,
                1,
            ),
        ],
    ];
    for (i, stage) in stages.iter().enumerate() {
        for (m, f, k) in stage.iter().cloned() {
            fake.inject(m, f, k);
        }
        send_readings(&d, 2, 30, &format!("s{i}"));
        wait_tabs(&fake, &d, Duration::from_secs(60));
    }
    // kill -9 while writes are lost after being applied: the restart rewrites them in place.
    for round in 0..2 {
        fake.inject(Matching::Only(RequestKind::ValuesBatchUpdate), Fault::ApplyThenDrop, 3);
        send_readings(&d, 2, 30, &format!("k{round}"));
        d.kill9();
        fake.clear_faults();
        d = start(&dir, &fake, &extra);
        send_readings(&d, 1, 6, &format!("after{round}"));
        wait_tabs(&fake, &d, Duration::from_secs(60));
    }
    let log = d.shutdown();
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn a_new_field_adds_a_column_and_device_time_has_its_own() {
    let dir = TestDir::new("layout-new-field");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, PER_DEVICE);
    send(&d, &[r#"{"device":"nf","a":1,"ts":"t1"}"#]);
    send(&d, &[r#"{"device":"nf","a":2.5,"b":"x"}"#]);
    send(&d, &[r#"{"device":"nf","c":12345678901234567890}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    let v = fake.values(SHEET, "nf").unwrap();
    let head: Vec<Cell> = ["received_at", "device_time", "a", "b", "c"]
        .iter()
        .map(|h| Cell::text(*h))
        .collect();
    assert_eq!(v[0], head);
    assert_eq!(v.len(), 4, "{v:?}");
    assert_eq!(v[1][1..], [Cell::text("t1"), Cell::Number(1.0)]);
    assert_eq!(v[2][1..], [Cell::Empty, Cell::Number(2.5), Cell::text("x")]);
    // Not exact as a double: the exact text.
    assert_eq!(v[3][4], Cell::text("12345678901234567890"));
    d.stop();
}

#[test]
fn titles_are_sanitised_and_collisions_get_a_suffix() {
    let dir = TestDir::new("layout-titles");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, PER_DEVICE);
    for line in [
        r#"{"device":"a/b","v":1}"#,
        r#"{"device":"A:B","v":2}"#,
        r#"{"device":"latest","v":3}"#,
        r#"{"device":"readings","v":4}"#,
    ] {
        send(&d, &[line]);
    }
    let want = ["Latest", "a_b", "A_B (2)", "latest (2)", "readings (2)"];
    let ok = wait_until(Duration::from_secs(20), || {
        fake.tabs(SHEET)
            .is_some_and(|t| want.iter().all(|w| t.iter().any(|x| x == w)))
    });
    assert!(ok, "tabs {:?}\n{}", fake.tabs(SHEET), d.log_text());
    for (tab, v) in [
        ("a_b", 1.0),
        ("A_B (2)", 2.0),
        ("latest (2)", 3.0),
        ("readings (2)", 4.0),
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || fake.cell(SHEET, tab, "B2")
                == Some(Cell::Number(v))),
            "{tab}: {:?}",
            fake.values(SHEET, tab)
        );
    }
    // The overview lists the boards in first-seen order.
    let rows = fake.values(SHEET, "Latest").unwrap();
    let devices: Vec<Cell> = rows[1..].iter().map(|r| r[0].clone()).collect();
    assert_eq!(devices, ["a/b", "A:B", "latest", "readings"].map(Cell::text));
    d.stop();
}

#[test]
fn overview_has_one_row_per_board_with_latest_values() {
    let dir = TestDir::new("layout-overview");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, PER_DEVICE);
    send(&d, &[r#"{"device":"k","t":1,"h":40}"#]);
    send(&d, &[r#"{"device":"k","t":2}"#]);
    send(&d, &[r#"{"device":"g","on":true}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    let csv = read_csv(&d.csv);
    let last_k = csv.iter().rev().find(|r| r[1] == "k").unwrap()[0].clone();
    let ok = wait_until(Duration::from_secs(10), || {
        fake.values(SHEET, "Latest").is_some_and(|r| r.len() == 3)
    });
    assert!(ok, "{:?}", fake.values(SHEET, "Latest"));
    let rows = fake.values(SHEET, "Latest").unwrap();
    let head: Vec<Cell> = [
        "device",
        "last_seen",
        "seconds_since",
        "readings_today",
        "status",
        "latest_values",
    ]
    .iter()
    .map(|h| Cell::text(*h))
    .collect();
    assert_eq!(rows[0], head);
    assert_eq!(rows[1][0], Cell::text("k"));
    assert_eq!(rows[1][1], Cell::text(last_k));
    assert!(
        matches!(rows[1][2], Cell::Number(s) if (0.0..600.0).contains(&s)),
        "{:?}",
        rows[1]
    );
    assert_eq!(rows[1][3], Cell::Number(2.0), "two readings today: {:?}", rows[1]);
    assert_eq!(rows[1][4], Cell::text("ok"));
    assert_eq!(
        rows[1][5..],
        [Cell::text("t"), Cell::Number(2.0), Cell::text("h"), Cell::Number(40.0)]
    );
    assert_eq!(rows[2][0], Cell::text("g"));
    assert_eq!(rows[2][5..], [Cell::text("on"), Cell::Bool(true)]);
    d.stop();
}

/// The overview row of `device`: (seconds_since, status).
fn overview_status(fake: &FakeGoogle, device: &str) -> Option<(f64, String)> {
    let rows = fake.values(SHEET, "Latest")?;
    let row = rows.iter().find(|r| r.first() == Some(&Cell::text(device)))?;
    match (row.get(2), row.get(4)) {
        (Some(Cell::Number(s)), Some(Cell::Text(status))) => Some((*s, status.clone())),
        _ => None,
    }
}

#[test]
fn a_board_that_stops_turns_silent_in_the_overview_with_no_readings_arriving() {
    let dir = TestDir::new("layout-overview-silent");
    let fake = fake_with_sheet();
    let cfg = config(&dir, &fake, &format!("{PER_DEVICE}overview_refresh_secs = 1\n"));
    // The overview's `silent` is the alerts' rule: one reading, then 3 s of quiet.
    let text = std::fs::read_to_string(&cfg).unwrap() + "[alerts]\nmin_silent_secs = 3\n";
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&dir, &["--config", &cfg.display().to_string()]);
    send(&d, &[r#"{"device":"k","t":1}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    // Nothing else is sent: only the overview's own refresh can turn it silent.
    let mut seen = Vec::new();
    let ok = wait_until(Duration::from_secs(30), || {
        let now = overview_status(&fake, "k");
        if let Some(s) = &now {
            if seen.last() != Some(s) {
                seen.push(s.clone());
            }
        }
        now.is_some_and(|(since, status)| status == "silent" && since >= 3.0)
    });
    assert!(ok, "overview of k went {seen:?}\n{}", d.log_text());
    // seconds_since keeps moving on while the board stays quiet.
    let first = overview_status(&fake, "k").unwrap().0;
    let ok = wait_until(Duration::from_secs(20), || {
        overview_status(&fake, "k").is_some_and(|(since, _)| since > first)
    });
    assert!(ok, "seconds_since stayed at {first}");
    // And no reading was written twice or invented for it.
    assert_eq!(tabs_match_csv(&fake, &d), Ok(1));
    d.stop();
}

#[test]
fn switching_from_csv_layout_writes_the_new_tabs_from_the_csv() {
    let dir = TestDir::new("layout-switch");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, "batch_rows = 100");
    send_readings(&d, 2, 9, "old");
    crate::sheets::wait_synced(&fake, &d, Duration::from_secs(30));
    d.stop();
    let d = start(&dir, &fake, PER_DEVICE);
    send_readings(&d, 1, 6, "new");
    wait_tabs(&fake, &d, Duration::from_secs(30));
    assert!(d.log_contains("Sheets layout is now per-device"), "{}", d.log_text());
    // The csv layout's tab is left as it was.
    assert!(fake.values(SHEET, "Readings").is_some_and(|v| v.len() > 1));
    d.stop();
}

/// The chart on board tab `tab`: (chartId, spec).
fn chart(fake: &FakeGoogle, tab: &str) -> Option<(i64, serde_json::Value)> {
    let charts = fake.charts(SHEET, tab);
    assert!(charts.len() <= 1, "one chart per tab: {charts:?}");
    charts.into_iter().next()
}

/// The chart's series as column indexes, and its domain column.
fn chart_columns(spec: &serde_json::Value) -> (Vec<i64>, i64) {
    let col = |d: &serde_json::Value| {
        let s = &d["sourceRange"]["sources"][0];
        assert!(
            s.get("startRowIndex").is_none() && s.get("endRowIndex").is_none(),
            "whole columns: {s}"
        );
        assert_eq!(
            s["endColumnIndex"].as_i64().unwrap(),
            s["startColumnIndex"].as_i64().unwrap() + 1
        );
        s["startColumnIndex"].as_i64().unwrap()
    };
    let b = &spec["basicChart"];
    assert_eq!(b["chartType"], "LINE");
    assert_eq!(b["headerCount"], 1);
    let series = b["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| col(&s["series"]))
        .collect();
    (series, col(&b["domains"][0]["domain"]))
}

#[test]
fn a_chart_per_board_tab_and_a_new_numeric_field_joins_it() {
    let dir = TestDir::new("layout-charts");
    let fake = fake_with_sheet();
    let mut d = start(&dir, &fake, PER_DEVICE);
    send(&d, &[r#"{"device":"ch","t":1.5,"note":"x"}"#]);
    send(&d, &[r#"{"device":"txt","note":"only text"}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    assert!(wait_until(Duration::from_secs(10), || chart(&fake, "ch").is_some()));
    let (id, spec) = chart(&fake, "ch").unwrap();
    // received_at (A) against t (B); `note` is text, not charted.
    assert_eq!(chart_columns(&spec), (vec![1], 0));
    assert_eq!(spec["title"], "ch");
    assert!(chart(&fake, "txt").is_none(), "no numeric field, no chart");
    // A new numeric field joins the chart, in place (same chart id); through a kill -9
    // with the chart request's reply lost, no second chart appears.
    fake.inject(Matching::Only(RequestKind::BatchUpdate), Fault::ApplyThenDrop, 1);
    send(&d, &[r#"{"device":"ch","t":2,"h":40}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    let ok = wait_until(Duration::from_secs(10), || {
        chart(&fake, "ch").is_some_and(|(_, s)| chart_columns(&s).0.len() == 2)
    });
    assert!(ok, "{:?}\n{}", chart(&fake, "ch"), d.log_text());
    let (id2, spec) = chart(&fake, "ch").unwrap();
    assert_eq!(id2, id);
    assert_eq!(chart_columns(&spec), (vec![1, 3], 0));
    let cursor = format!("{}.sheets-cursor.json", d.csv.display());
    d.kill9();
    std::fs::remove_file(cursor).unwrap();
    // A replay from the CSV's start: the same tabs, cells and one chart each.
    let d = start(&dir, &fake, PER_DEVICE);
    send(&d, &[r#"{"device":"ch","t":3}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    assert_eq!(fake.charts(SHEET, "ch").len(), 1);
    assert_eq!(fake.tabs(SHEET).unwrap().len(), 4, "{:?}", fake.tabs(SHEET));
    let log = d.stop();
    assert!(!log.contains("ERROR") && !log.contains("refused the chart"), "{log}");
}

/// POSTs a spreadsheets.batchUpdate straight to the fake: (HTTP status, body).
fn raw_batch(fake: &FakeGoogle, requests: serde_json::Value) -> (u16, String) {
    use std::io::{Read, Write};
    let token = fake.issue_token(crate::util::fake_google::DEFAULT_ACCOUNT);
    let body = serde_json::json!({ "requests": requests }).to_string();
    let mut s = TcpStream::connect(fake.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST /v4/spreadsheets/{SHEET}:batchUpdate HTTP/1.1\r\nHost: fake\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, reply.split("\r\n\r\n").nth(1).unwrap_or("").to_string())
}

#[test]
fn the_fake_validates_chart_requests_as_google_does() {
    let fake = fake_with_sheet();
    let id = fake.add_tab(SHEET, "b", 10, 5);
    let range =
        |c: i64| serde_json::json!({"sources": [{"sheetId": id, "startColumnIndex": c, "endColumnIndex": c + 1}]});
    let spec = |series: serde_json::Value| serde_json::json!({"basicChart": {"chartType": "LINE", "domains": [{"domain": {"sourceRange": range(0)}}], "series": series, "headerCount": 1}});
    let good = |chart_id: i64| {
        serde_json::json!([{"addChart": {"chart": {"chartId": chart_id, "spec": spec(serde_json::json!([{"series": {"sourceRange": range(1)}, "targetAxis": "LEFT_AXIS"}])),
            "position": {"overlayPosition": {"anchorCell": {"sheetId": id, "rowIndex": 1, "columnIndex": 4}}}}}}])
    };
    assert_eq!(raw_batch(&fake, good(7)).0, 200);
    let (code, body) = raw_batch(&fake, good(7));
    assert!(code == 400 && body.contains("already exists"), "{code} {body}");
    let bad = [
        // No chart type; a series two columns wide; an unknown field; no position;
        // an anchor outside the grid; two chart kinds.
        serde_json::json!([{"addChart": {"chart": {"spec": {"basicChart": {"domains": [{"domain": {"sourceRange": range(0)}}], "series": [{"series": {"sourceRange": range(1)}}]}}, "position": {"sheetId": id}}}}]),
        serde_json::json!([{"addChart": {"chart": {"spec": spec(serde_json::json!([{"series": {"sourceRange": {"sources": [{"sheetId": id, "startColumnIndex": 1, "endColumnIndex": 3}]}}}])), "position": {"sheetId": id}}}}]),
        serde_json::json!([{"addChart": {"chart": {"spec": spec(serde_json::json!([{"series": {"sourceRange": range(1)}, "colour": "red"}])), "position": {"sheetId": id}}}}]),
        serde_json::json!([{"addChart": {"chart": {"spec": spec(serde_json::json!([{"series": {"sourceRange": range(1)}}]))}}}]),
        serde_json::json!([{"addChart": {"chart": {"spec": spec(serde_json::json!([{"series": {"sourceRange": range(1)}}])), "position": {"overlayPosition": {"anchorCell": {"sheetId": id, "rowIndex": 1, "columnIndex": 5}}}}}}]),
        serde_json::json!([{"addChart": {"chart": {"spec": {"basicChart": {"chartType": "LINE"}, "pieChart": {}}, "position": {"sheetId": id}}}}]),
        serde_json::json!([{"updateChartSpec": {"chartId": 8, "spec": spec(serde_json::json!([{"series": {"sourceRange": range(1)}}]))}}]),
    ];
    for (i, b) in bad.iter().enumerate() {
        let (code, body) = raw_batch(&fake, b.clone());
        assert_eq!(code, 400, "case {i}: {body}");
    }
    let update = serde_json::json!([{"updateChartSpec": {"chartId": 7, "spec": spec(serde_json::json!([{"series": {"sourceRange": range(2)}}]))}}]);
    assert_eq!(raw_batch(&fake, update).0, 200);
    assert_eq!(fake.charts(SHEET, "b").len(), 1);
    assert_eq!(
        fake.charts(SHEET, "b")[0].1["basicChart"]["series"][0]["series"]["sourceRange"]["sources"][0]
            ["startColumnIndex"],
        2
    );
}

#[test]
fn the_cell_budget_deletes_the_oldest_rows_and_the_upload_never_stops() {
    let dir = TestDir::new("layout-budget");
    let fake = fake_with_sheet();
    // Sheet1 (1000 x 26) takes 26,000 cells; 95% of 28,000 leaves 600 for two boards of
    // two columns (about 300 rows), and they send 600 readings.
    fake.rules(|r| r.max_cells = 28_000);
    fake.rules(|r| (r.write_quota, r.read_quota) = (6000, 60));
    let extra = format!(
        "{PER_DEVICE}max_cells = 28000\ncell_budget_percent = 95\ngrow_rows = 10\nbatch_rows = 20\noverview_tab = \"\"\ncharts = false"
    );
    let d = start(&dir, &fake, &extra);
    for round in 0..6 {
        // Deletes whose replies are lost after Google applied them: retried, they must
        // not delete twice (the next rows would land below a gap).
        fake.inject(Matching::Only(RequestKind::BatchUpdate), Fault::ApplyThenDrop, 1);
        let want = csv_lines(&d) + 100;
        let threads: Vec<_> = ["b0", "b1"]
            .into_iter()
            .map(|dev| {
                let addr = d.addr;
                std::thread::spawn(move || {
                    let mut s = TcpStream::connect(addr).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                    let lines: Vec<String> = (0..50)
                        .map(|n| format!(r#"{{"device":"{dev}","seq":{},"t":{n}}}"#, round * 50 + n))
                        .collect();
                    send_lines(&mut s, &lines);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(wait_until(Duration::from_secs(20), || csv_lines(&d) >= want));
        // Every tab holds the newest readings, contiguous and in order, ending with the last.
        let csv = read_csv(&d.csv);
        let model = model(&csv);
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(60), || {
            model.iter().all(|(dev, grid)| {
                let Some(have) = fake.values(SHEET, dev) else {
                    last = format!("no tab {dev}");
                    return false;
                };
                let kept = have.len().saturating_sub(1);
                if have.first() != grid.first() || kept == 0 || kept > grid.len() - 1 {
                    last = format!("tab {dev}: {} rows", have.len());
                    return false;
                }
                let tail = &grid[grid.len() - kept..];
                if &have[1..] != tail {
                    last = format!(
                        "tab {dev} is not the newest {kept} readings in order: {:?}",
                        &have[1..3]
                    );
                    return false;
                }
                true
            })
        });
        assert!(ok, "round {round}: {last}\n{}", d.log_text());
        let cells: u64 = ["Sheet1", "b0", "b1"]
            .iter()
            .filter_map(|t| fake.grid(SHEET, t))
            .map(|(r, c, _)| u64::from(r) * u64::from(c))
            .sum();
        assert!(
            cells <= 26_600,
            "round {round}: {cells} cells {:?} {:?}\n{}",
            fake.grid(SHEET, "b0"),
            fake.grid(SHEET, "b1"),
            d.log_text()
        );
    }
    let kept: usize = ["b0", "b1"]
        .iter()
        .map(|t| fake.values(SHEET, t).unwrap().len() - 1)
        .sum();
    assert!(kept < 600, "rows were deleted: {kept} kept");
    let log = d.stop();
    assert!(log.contains("Deleting the"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

#[test]
fn boards_beyond_max_board_tabs_share_a_tab_with_a_warn() {
    let dir = TestDir::new("layout-tab-limit");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, &format!("{PER_DEVICE}max_board_tabs = 1"));
    send(&d, &[r#"{"device":"one","v":1}"#]);
    send(&d, &[r#"{"device":"two","v":2}"#]);
    send(&d, &[r#"{"device":"three","w":3}"#]);
    let ok = wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "Other boards").is_some_and(|v| v.len() == 3)
    });
    assert!(ok, "{:?}\n{}", fake.tabs(SHEET), d.log_text());
    let v = fake.values(SHEET, "Other boards").unwrap();
    assert_eq!(v[0], ["received_at", "device", "v", "w"].map(Cell::text));
    assert_eq!(v[1][1..], [Cell::text("two"), Cell::Number(2.0)]);
    assert_eq!(v[2][1..], [Cell::text("three"), Cell::Empty, Cell::Number(3.0)]);
    assert_eq!(fake.cell(SHEET, "one", "B2"), Some(Cell::Number(1.0)));
    assert!(fake.values(SHEET, "two").is_none() && fake.values(SHEET, "three").is_none());
    let log = d.stop();
    assert!(
        log.contains("WARN") && log.contains("shared tab") && log.contains("\"two\""),
        "{log}"
    );
}

#[test]
fn keep_days_deletes_rows_older_than_that_and_keeps_the_rest() {
    let dir = TestDir::new("layout-keep-days");
    let fake = fake_with_sheet();
    // A CSV from an earlier run: 20 readings of board "old" from 2020.
    let mut csv = crate::util::daemon::HEADER.join(",") + "\n";
    for n in 0..20 {
        csv.push_str(&format!(
            "2020-01-01T00:00:{n:02}.000Z,old,t,{n},number,127.0.0.1:1,b1,{n},\n"
        ));
    }
    dir.write("readings.csv", &csv);
    let d = start(&dir, &fake, &format!("{PER_DEVICE}keep_days = 1\noverview_tab = \"\""));
    // The old rows go up first, then the check runs before the next batch.
    assert!(wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "old").is_some_and(|v| v.len() == 21)
    }));
    send(&d, &[r#"{"device":"old","t":100}"#]);
    let ok = wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "old").is_some_and(|v| v.len() == 3)
    });
    assert!(ok, "{:?}\n{}", fake.values(SHEET, "old"), d.log_text());
    let v = fake.values(SHEET, "old").unwrap();
    // The newest old reading stays (a board keeps its latest row), then the live one.
    assert_eq!(v[1], [Cell::text("2020-01-01T00:00:19.000Z"), Cell::Number(19.0)]);
    assert_eq!(v[2][1], Cell::Number(100.0));
    let log = d.stop();
    assert!(log.contains("Deleting the 19 oldest rows of tab \"old\""), "{log}");
}

#[test]
fn a_replay_after_retention_leaves_out_the_deleted_rows_and_writes_each_reading_once() {
    let dir = TestDir::new("layout-replay-retention");
    let fake = fake_with_sheet();
    // 20 readings from 2020; keep_days deletes the 19 oldest once they are up.
    let mut csv = crate::util::daemon::HEADER.join(",") + "\n";
    for n in 0..20 {
        csv.push_str(&format!(
            "2020-01-01T00:00:{n:02}.000Z,old,t,{n},number,127.0.0.1:1,b1,{n},\n"
        ));
    }
    dir.write("readings.csv", &csv);
    let mut d = start(&dir, &fake, &format!("{PER_DEVICE}keep_days = 1\noverview_tab = \"\""));
    assert!(wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "old").is_some_and(|v| v.len() == 21)
    }));
    send(&d, &[r#"{"device":"old","t":100}"#]);
    let ok = wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "old").is_some_and(|v| v.len() == 3)
    });
    assert!(ok, "{:?}\n{}", fake.values(SHEET, "old"), d.log_text());
    d.shutdown();
    // The cursor no longer matches the CSV (as after a restored backup): the next start
    // replays the CSV from its first row.
    let path = format!("{}.sheets-cursor.json", d.csv.display());
    let mut cursor: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    cursor["last_row"]["fnv1a64"] = "0123456789abcdef".into();
    std::fs::write(&path, serde_json::to_string(&cursor).unwrap()).unwrap();
    // No age limit now: a replay that re-added the deleted rows would leave them there.
    let d = start(&dir, &fake, &format!("{PER_DEVICE}keep_days = 0\noverview_tab = \"\""));
    send(&d, &[r#"{"device":"old","t":200}"#]);
    let want = |v: &Vec<Vec<Cell>>| {
        v.len() == 4 && v[3].get(1) == Some(&Cell::Number(200.0)) && v[2].get(1) == Some(&Cell::Number(100.0))
    };
    let ok = wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "old").is_some_and(|v| want(&v))
    });
    let v = fake.values(SHEET, "old").unwrap();
    assert!(ok, "{v:?}\n{}", d.log_text());
    assert_eq!(v[1], [Cell::text("2020-01-01T00:00:19.000Z"), Cell::Number(19.0)]);
    let log = d.stop();
    assert!(
        log.contains("leaving out the 19 oldest readings that retention deleted"),
        "{log}"
    );
}

#[test]
fn a_csv_rotated_mid_stream_continues_every_board_tab() {
    let dir = TestDir::new("layout-rotate");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, PER_DEVICE);
    send(&d, &[r#"{"device":"k","t":1}"#, r#"{"device":"g","t":2}"#]);
    wait_tabs(&fake, &d, Duration::from_secs(20));
    // A reading waits for Google in the old file when it is rotated away.
    fake.outage(Duration::from_secs(60));
    send(&d, &[r#"{"device":"k","t":3,"h":4}"#]);
    let first = dir.join("readings.csv.1");
    std::fs::rename(&d.csv, &first).unwrap();
    d.hangup();
    assert!(d
        .wait_for_log("was moved or deleted", Duration::from_secs(10))
        .is_some());
    send(&d, &[r#"{"device":"k","t":5}"#, r#"{"device":"n","t":6}"#]);
    fake.outage(Duration::ZERO);
    // The tabs are the two files' readings in order, as if they were one CSV.
    let mut rows = read_csv(&first);
    rows.extend(read_csv(&d.csv).into_iter().skip(1));
    let want = model(&rows);
    assert_eq!(want.iter().map(|(_, g)| g.len() - 1).sum::<usize>(), 5);
    let mut last = Vec::new();
    let ok = wait_until(Duration::from_secs(60), || {
        last = want.iter().map(|(dev, _)| fake.values(SHEET, &title(dev))).collect();
        want.iter()
            .zip(&last)
            .all(|((_, grid), have)| have.as_ref() == Some(grid))
    });
    assert!(ok, "want {want:?}\nhave {last:?}\n{}", d.log_text());
    let log = d.stop();
    assert!(log.contains("was rotated: all 4 of its rows"), "{log}");
}

#[test]
fn the_single_layout_has_one_tab_with_a_device_column() {
    let dir = TestDir::new("layout-single");
    let fake = fake_with_sheet();
    let d = start(&dir, &fake, "layout = \"single\"\noverview_tab = \"\"");
    send(&d, &[r#"{"device":"x","a":1}"#]);
    send(&d, &[r#"{"device":"y","b":"two","a":3}"#]);
    let ok = wait_until(Duration::from_secs(20), || {
        fake.values(SHEET, "All boards").is_some_and(|v| v.len() == 3)
    });
    assert!(ok, "{:?}\n{}", fake.tabs(SHEET), d.log_text());
    let v = fake.values(SHEET, "All boards").unwrap();
    assert_eq!(v[0], ["received_at", "device", "a", "b"].map(Cell::text));
    assert_eq!(v[1][1..], [Cell::text("x"), Cell::Number(1.0)]);
    assert_eq!(v[2][1..], [Cell::text("y"), Cell::Number(3.0), Cell::text("two")]);
    assert!(fake.values(SHEET, "x").is_none() && fake.charts(SHEET, "All boards").is_empty());
    d.stop();
}

#[test]
fn a_refused_row_becomes_a_placeholder_and_the_rows_after_it_go_on() {
    let dir = TestDir::new("layout-refused");
    let fake = fake_with_sheet();
    fake.refuse_cells_containing(SHEET, Some("POISON"));
    let d = start(&dir, &fake, &format!("{PER_DEVICE}overview_tab = \"\""));
    send(&d, &[r#"{"device":"p","v":1}"#]);
    send(&d, &[r#"{"device":"p","note":"POISON"}"#]);
    send(&d, &[r#"{"device":"p","v":3}"#]);
    let ok = wait_until(Duration::from_secs(30), || {
        fake.values(SHEET, "p").is_some_and(|v| v.len() == 4)
    });
    assert!(ok, "{:?}\n{}", fake.values(SHEET, "p"), d.log_text());
    let v = fake.values(SHEET, "p").unwrap();
    assert_eq!(v[1][1], Cell::Number(1.0));
    match &v[2][2] {
        Cell::Text(t) => assert!(t.starts_with("sensorlog: CSV row 2 ") && !t.contains("POISON\""), "{t}"),
        other => panic!("placeholder expected, got {other:?}"),
    }
    assert_eq!(v[3][1], Cell::Number(3.0));
    let log = d.stop();
    assert_eq!(log.matches("ERROR").count(), 1, "{log}");
    assert!(log.contains("Google Sheets refused CSV row 2"), "{log}");
}
