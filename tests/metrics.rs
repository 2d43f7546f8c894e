//! `/metrics`, `/healthz`, `/readyz`, `/api/boards` and `/events` of the real daemon.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::daemon::{read_line, send_lines, wait_until};
use crate::util::http::get;
use crate::util::{Daemon, TestDir};

/// Checks every line against the text exposition format 0.0.4 (what Prometheus itself
/// accepts), then parses it with `prometheus-parse`. Returns samples by
/// `name{label="value",...}` (labels sorted) for easy lookup.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut typed: HashMap<String, String> = HashMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, tail) = (
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            assert!(name_ok(name), "bad metric name in {line:?}");
            match kind {
                "HELP" => assert!(!tail.is_empty(), "empty help: {line:?}"),
                "TYPE" => {
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&tail),
                        "{line:?}"
                    );
                    assert!(
                        typed.insert(name.to_string(), tail.to_string()).is_none(),
                        "TYPE twice: {line:?}"
                    );
                }
                _ => panic!("unknown comment {line:?}"),
            }
            continue;
        }
        assert!(!line.is_empty(), "blank line in the exposition");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line:?}"
        );
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "bad sample name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample before its TYPE line: {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(name_ok(k) && !k.contains(':'), "bad label name in {line:?}");
                    assert!(
                        !v.trim_end_matches('"').contains('"') || v.contains("\\\""),
                        "unescaped quote in {line:?}"
                    );
                }
            }
        }
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("prometheus-parse rejected the exposition: {e}\n{text}"));
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        labels.sort();
        let key = if labels.is_empty() {
            s.metric.clone()
        } else {
            format!("{}{{{}}}", s.metric, labels.join(","))
        };
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert(key, v);
    }
    out
}

pub(crate) fn scrape(http: std::net::SocketAddr) -> HashMap<String, f64> {
    let (status, text) = get(&format!("http://{http}/metrics"));
    assert_eq!(status, 200, "{text}");
    parse_exposition(&text)
}

pub(crate) fn value(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key)
        .unwrap_or_else(|| panic!("no sample {key}; have: {:?}", m.keys().collect::<Vec<_>>()))
}

#[test]
fn metrics_parse_as_prometheus_exposition_and_count_what_happened() {
    let dir = TestDir::new("metrics");
    let cfg = dir.write("sensorlog.toml", "[http]\nmetrics_max_boards = 2\n");
    let d = Daemon::start(&dir, &["--config", cfg.to_str().unwrap(), "--max-line-bytes", "64"]);
    let http = d.http_addr();
    let mut s = d.connect();
    s.write_all(b"HELLO kitchen boot=b1 ack=1\n{\"seq\":1,\"t\":1}\n{\"seq\":2,\"t\":2}\n{\"seq\":2,\"t\":2}\n")
        .unwrap();
    for want in ["OK HELLO kitchen", "ACK 1", "ACK 2", "ACK 2"] {
        assert_eq!(read_line(&mut s).as_deref(), Some(want));
    }
    let mut g = d.connect();
    let long = format!("device=garage note={}", "x".repeat(100));
    send_lines(&mut g, &["device=garage t=5 h=40".to_string(), long]);
    g.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(wait_until(Duration::from_secs(10), || {
        let m = scrape(http);
        m.get("sensorlog_readings_total{outcome=\"written\"}") == Some(&3.0)
            && m.get("sensorlog_parse_errors_total{kind=\"line_too_long\"}") == Some(&1.0)
    }));
    let m = scrape(http);
    assert_eq!(value(&m, "sensorlog_readings_total{outcome=\"duplicate\"}"), 1.0);
    assert_eq!(value(&m, "sensorlog_readings_total{outcome=\"write_failed\"}"), 0.0);
    assert_eq!(value(&m, "sensorlog_csv_rows_written_total"), 4.0);
    assert!(value(&m, "sensorlog_csv_bytes_written_total") > 100.0);
    assert!(
        value(&m, "sensorlog_csv_write_seconds") >= 2.0,
        "histogram count: appends observed"
    );
    assert_eq!(
        value(
            &m,
            "sensorlog_connections_refused_total{reason=\"too_many_connections\"}"
        ),
        0.0
    );
    assert_eq!(value(&m, "sensorlog_boards{status=\"ok\"}"), 2.0);
    assert_eq!(value(&m, "sensorlog_boards_silent"), 0.0);
    assert_eq!(value(&m, "sensorlog_board_readings_total{device=\"kitchen\"}"), 2.0);
    assert_eq!(value(&m, "sensorlog_board_readings_total{device=\"garage\"}"), 1.0);
    assert_eq!(value(&m, "sensorlog_board_silent{device=\"garage\"}"), 0.0);
    // At the cap (2 boards, http.metrics_max_boards = 2): every board has its series.
    assert_eq!(value(&m, "sensorlog_board_series_omitted"), 0.0);
    assert!(!m.contains_key("sensorlog_sheets_backlog_rows"), "Sheets is off");

    // One over the cap: still 2 per-board series, and the omission is counted.
    let mut z = d.connect();
    send_lines(&mut z, &["device=zebra t=1".to_string()]);
    assert!(wait_until(Duration::from_secs(10), || {
        scrape(http).get("sensorlog_boards{status=\"ok\"}") == Some(&3.0)
    }));
    let m = scrape(http);
    assert_eq!(value(&m, "sensorlog_board_series_omitted"), 1.0);
    let per_board = m
        .keys()
        .filter(|k| k.starts_with("sensorlog_board_readings_total{"))
        .count();
    assert_eq!(per_board, 2, "{m:?}");
    assert!(!m.contains_key("sensorlog_board_readings_total{device=\"zebra\"}"));
    drop((s, g, z));
    d.stop();
}

#[test]
fn health_ready_and_the_boards_api() {
    let dir = TestDir::new("metrics-health");
    let d = Daemon::start(&dir, &[]);
    let http = d.http_addr();
    assert_eq!(get(&format!("http://{http}/healthz")), (200, "ok\n".to_string()));
    assert_eq!(get(&format!("http://{http}/readyz")), (200, "ready\n".to_string()));
    assert_eq!(get(&format!("http://{http}/nope")).0, 404);
    let mut s = d.connect();
    send_lines(
        &mut s,
        &["{\"device\":\"kitchen\",\"temp_c\":21.5,\"note\":\"door open\"}".to_string()],
    );
    let mut api = serde_json::Value::Null;
    assert!(wait_until(Duration::from_secs(10), || {
        let (status, body) = get(&format!("http://{http}/api/boards?series=1"));
        assert_eq!(status, 200);
        api = serde_json::from_str(&body).unwrap();
        api["totals"]["boards"] == 1
    }));
    let b = &api["boards"][0];
    assert_eq!(b["device"], "kitchen");
    assert_eq!(b["status"], "ok");
    assert_eq!(b["ack"], false);
    assert_eq!(b["readings"], 1);
    assert_eq!(b["latest"][0]["value"], "21.5");
    assert_eq!(b["latest"][1]["value"], "door open");
    assert_eq!(b["series"][0]["field"], "temp_c");
    assert_eq!(b["series"][0]["points"][0][1], 21.5);
    assert!(b["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(api["csv"]["bytes"].as_u64().unwrap() > 0);
    assert!(api["sheets"].is_null());
    // The CSV gone from under the daemon: not ready, and /readyz says why.
    std::fs::remove_file(&d.csv).unwrap();
    let (status, body) = get(&format!("http://{http}/readyz"));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("is not writable"), "{body}");
    drop(s);
    d.stop();
}

/// Opens `/events` and returns the stream and its status line.
fn open_events(http: std::net::SocketAddr) -> (BufReader<TcpStream>, String) {
    let mut s = TcpStream::connect_timeout(&http, Duration::from_secs(5)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    (r, status)
}

#[test]
fn event_streams_are_capped_at_n() {
    let dir = TestDir::new("metrics-events");
    let d = Daemon::start_with_config(&dir, "[http]\nmax_event_clients = 1\n", &[]);
    let http = d.http_addr();
    // N = 1: the first stream gets events.
    let (mut first, status) = open_events(http);
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let mut line = String::new();
    let mut got_event = false;
    for _ in 0..20 {
        line.clear();
        if first.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.starts_with("data: {") {
            let v: serde_json::Value = serde_json::from_str(line.trim_start_matches("data: ").trim()).unwrap();
            assert!(v["totals"].is_object(), "{line}");
            got_event = true;
            break;
        }
    }
    assert!(got_event, "no event on the first stream");
    // N + 1: refused with 503 while the first is open.
    let (mut second, status) = open_events(http);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    let mut rest = String::new();
    let _ = second.read_to_string(&mut rest);
    assert!(rest.contains("http.max_event_clients = 1"), "{rest}");
    // Closing the first frees its slot (noticed at its next event).
    drop(first);
    assert!(wait_until(Duration::from_secs(10), || open_events(http)
        .1
        .starts_with("HTTP/1.1 200")));
    d.stop();
}

#[test]
fn empty_http_listen_turns_the_server_off() {
    let dir = TestDir::new("metrics-off");
    let d = Daemon::start(&dir, &["--http-listen", ""]);
    assert!(
        d.wait_for_log("Dashboard and metrics off", Duration::from_secs(10))
            .is_some(),
        "{}",
        d.log_text()
    );
    assert!(!d.log_contains("Dashboard at http://"));
    d.stop();
}

#[test]
fn boards_of_an_earlier_run_are_never_seen_since_start_until_they_report() {
    let dir = TestDir::new("metrics-previous-run");
    let d = Daemon::start(&dir, &[]);
    let mut s = d.connect();
    send_lines(&mut s, &["device=attic t=1".to_string()]);
    drop(s);
    assert!(wait_until(Duration::from_secs(10), || std::fs::read_to_string(&d.csv)
        .unwrap_or_default()
        .contains("attic")));
    d.stop();
    let d = Daemon::start(&dir, &[]);
    let http = d.http_addr();
    let (_, body) = get(&format!("http://{http}/api/boards"));
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api["boards"][0]["device"], "attic", "{api}");
    assert_eq!(api["boards"][0]["status"], "never seen since start", "{api}");
    assert!(
        api["boards"][0]["last_seen_previous_run"]
            .as_str()
            .unwrap()
            .ends_with('Z'),
        "{api}"
    );
    assert_eq!(
        value(&scrape(http), "sensorlog_boards{status=\"never_seen_since_start\"}"),
        1.0
    );
    let mut s = d.connect();
    send_lines(&mut s, &["device=attic t=2".to_string()]);
    assert!(wait_until(Duration::from_secs(10), || {
        let (_, body) = get(&format!("http://{http}/api/boards"));
        body.contains("\"status\":\"ok\"")
    }));
    drop(s);
    d.stop();
}

/// Issue 22: one board that puts a counter in its device name takes at most its
/// connection's burst of places on the dashboard; every one of its readings is still in
/// the CSV, the rest are counted and logged once, and the real boards stay listed.
#[test]
fn a_board_with_a_new_name_per_reading_keeps_its_readings_but_not_the_dashboard() {
    let dir = TestDir::new("metrics-new-name-budget");
    let d = Daemon::start_with_config(
        &dir,
        "[boards]\nmax_boards = 10\nnew_name_burst = 4\nnew_names_per_minute = 1\n",
        &[],
    );
    let http = d.http_addr();
    let mut real = d.connect();
    send_lines(
        &mut real,
        &["device=kitchen t=1".to_string(), "device=attic t=2".to_string()],
    );
    let mut bad = d.connect();
    let lines: Vec<String> = (0..50).map(|i| format!("device=clock-{i:03} t={i}")).collect();
    send_lines(&mut bad, &lines);
    assert!(wait_until(Duration::from_secs(10), || {
        value(&scrape(http), "sensorlog_board_readings_untracked_total") == 46.0
    }));
    let (_, body) = get(&format!("http://{http}/api/boards"));
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = api["boards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["device"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["attic", "clock-000", "clock-001", "clock-002", "clock-003", "kitchen"]
    );
    assert_eq!(api["totals"]["untracked_readings"], 46, "{api}");
    assert_eq!(api["totals"]["evicted"], 0, "{api}");
    // A known name of the flooding connection is still tracked.
    send_lines(&mut bad, &["device=clock-001 t=99".to_string()]);
    assert!(wait_until(Duration::from_secs(10), || {
        get(&format!("http://{http}/api/boards")).1.contains("\"value\":\"99\"")
    }));
    let csv = std::fs::read_to_string(&d.csv).unwrap();
    for i in 0..50 {
        assert!(
            csv.contains(&format!(",clock-{i:03},")),
            "clock-{i:03} missing from the CSV"
        );
    }
    let warning = d
        .wait_for_log("were not tracked on the dashboard", Duration::from_secs(10))
        .expect("a warning names the budget");
    assert!(warning.contains("boards.new_name_burst = 4"), "{warning}");
    assert!(warning.contains("127.0.0.1:"), "{warning}");
    drop((real, bad));
    d.stop();
}
