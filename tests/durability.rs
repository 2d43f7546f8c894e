//! The CSV survives restarts and crashes: appended to, never rewritten, repaired.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::util::daemon::{
    read_csv, read_csv_so_far, read_line, restart_after_a_crash, send_lines, wait_until, HEADER,
};
use crate::util::{Daemon, TestDir};

#[test]
fn restart_appends_to_the_existing_csv() {
    let dir = TestDir::new("durable-restart");
    let mut d = Daemon::start(&dir, &[]);
    send_lines(&mut d.connect(), &["t=1".into(), "t=2".into()]);
    assert!(wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv).len() == 3));
    d.shutdown();
    let mut d = Daemon::start(&dir, &[]);
    assert!(d.log_contains("2 rows already there"), "{}", d.log_text());
    send_lines(&mut d.connect(), &["t=3".into()]);
    assert!(wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv).len() == 4));
    d.shutdown();
    let rows = read_csv(&d.csv);
    assert_eq!(rows[0], HEADER);
    let values: Vec<&str> = rows[1..].iter().map(|r| r[3].as_str()).collect();
    assert_eq!(values, ["1", "2", "3"], "one header, rows appended in order");
}

#[test]
fn a_csv_with_another_header_is_refused_and_left_untouched() {
    let dir = TestDir::new("durable-foreign");
    let original = "time,temperature\n2019-06-11,21.5\n";
    let path = dir.write("readings.csv", original);
    let mut d = Daemon::spawn(
        &dir,
        &[
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--csv".into(),
            path.display().to_string(),
        ],
        "info",
    );
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert_eq!(status.code(), Some(1));
    let log = d.log_text();
    assert!(
        log.contains("different header") && log.contains("readings.csv"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), original);
}

#[test]
fn a_torn_last_row_is_repaired_at_start_and_said_so() {
    let dir = TestDir::new("durable-torn");
    let mut d = Daemon::start(&dir, &[]);
    send_lines(&mut d.connect(), &["t=1".into()]);
    assert!(wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv).len() == 2));
    d.shutdown();
    // What a crash in the middle of a write leaves: a row without its end.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&d.csv)
        .unwrap()
        .write_all(b"2026-01-01T00:00:00.000Z,dev,t,\"unfinished")
        .unwrap();
    let mut d = Daemon::start(&dir, &[]);
    assert!(d.log_contains("Repaired"), "{}", d.log_text());
    send_lines(&mut d.connect(), &["t=2".into()]);
    assert!(wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv).len() == 3));
    d.shutdown();
    let values: Vec<String> = read_csv(&d.csv)[1..].iter().map(|r| r[3].clone()).collect();
    assert_eq!(values, ["1", "2"], "the torn row is gone, not glued to the next");
}

/// kill -9 in the middle of heavy ingest, then restart: the file parses, every row is
/// whole, and every acknowledged reading is there exactly once after the boards resend.
#[test]
fn kill_9_during_heavy_ingest_then_restart() {
    let dir = TestDir::new("durable-kill9");
    let mut d = Daemon::start(&dir, &[]);
    let stop = Arc::new(AtomicBool::new(false));
    // Plain boards hammering the daemon.
    let hammers: Vec<_> = (0..6)
        .map(|b| {
            let (addr, stop) = (d.addr, Arc::clone(&stop));
            std::thread::spawn(move || {
                let Ok(mut s) = TcpStream::connect(addr) else { return };
                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) && n < 2_000_000 {
                    let mut buf = String::new();
                    for _ in 0..200 {
                        buf.push_str(&format!(
                            "{{\"device\":\"h{b}\",\"n\":{n},\"note\":\"x,y\\\"z\",\"t\":1.5}}\n"
                        ));
                        n += 1;
                    }
                    if s.write_all(buf.as_bytes()).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    // The ingest must really be heavy when the kill comes: on a loaded machine the
    // acknowledged board below can otherwise finish its 150 round trips first.
    let csv = d.csv.clone();
    let lines = move || std::fs::read(&csv).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count());
    assert!(
        wait_until(Duration::from_secs(30), || lines() > 5_000),
        "the hammers never got going"
    );
    // One acknowledged board recording what was acknowledged.
    let mut acked = Vec::new();
    let mut s = d.connect();
    send_lines(&mut s, &["HELLO careful boot=k9 ack=1".into()]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO careful"));
    for seq in 1..=300u64 {
        send_lines(&mut s, &[format!("seq={seq} a=1 b=2 c=3")]);
        match read_line(&mut s) {
            Some(l) if l == format!("ACK {seq}") => acked.push(seq),
            _ => break,
        }
        if seq == 150 {
            d.kill9();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        let _ = h.join();
    }
    assert!(acked.len() >= 150, "acked {}", acked.len());
    // The file parses after the crash, every row whole up to its last newline, and the
    // restart cuts a torn row past it. The board then resends everything it had not seen
    // acknowledged, plus (as a stress of the duplicate check) the last 64 it had: a
    // board's whole buffer (SENSORLOG_BUFFER_READINGS), within the daemon's resend window
    // (dedup.window_seqs).
    let (mut d, rows) = restart_after_a_crash(&dir, &[]);
    assert!(rows.len() > 1000, "heavy ingest wrote {} rows", rows.len());
    let mut s = d.connect();
    send_lines(&mut s, &["HELLO careful boot=k9 ack=1".into()]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO careful"));
    let first_resent = acked.len() as u64 - 63;
    for seq in first_resent..=200u64 {
        send_lines(&mut s, &[format!("seq={seq} a=1 b=2 c=3")]);
        assert_eq!(read_line(&mut s), Some(format!("ACK {seq}")));
    }
    drop(s);
    d.shutdown();
    let rows = read_csv(&d.csv);
    assert_eq!(rows[0], HEADER);
    let mut per_seq: HashMap<u64, Vec<String>> = HashMap::new();
    for r in &rows[1..] {
        assert_eq!(r.len(), HEADER.len(), "whole rows only: {r:?}");
        if r[1] == "careful" {
            per_seq.entry(r[7].parse().unwrap()).or_default().push(r[2].clone());
        } else {
            assert!(r[3] == "x,y\"z" || r[2] != "note", "{r:?}");
        }
    }
    for seq in 1..=200u64 {
        if seq < first_resent && !acked.contains(&seq) {
            continue;
        }
        let mut fields = per_seq.remove(&seq).unwrap_or_default();
        fields.sort();
        assert_eq!(fields, ["a", "b", "c"], "seq {seq}: every field once");
    }
    assert!(per_seq.is_empty(), "nothing beyond what was sent: {per_seq:?}");
}
