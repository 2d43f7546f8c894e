//! `sensorlog simulate` against the real daemon: what it says it sent is what arrives.

use std::collections::HashSet;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::daemon::{read_csv, BIN, HEADER};
use crate::util::{Daemon, TestDir};

/// Runs `sensorlog simulate` with `args` against `d`; returns its JSON summary and what
/// it printed for people.
fn simulate(d: &Daemon, args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(BIN)
        .arg("simulate")
        .arg("--addr")
        .arg(d.addr.to_string())
        .args(args)
        .arg("--json")
        .output()
        .expect("run sensorlog simulate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "simulate failed: {stderr}");
    assert!(stderr.contains("Sent "), "simulate prints what it sent: {stderr}");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("summary is JSON ({e}): {stderr}"));
    (json, stderr.into_owned())
}

#[test]
fn simulated_boards_arrive_in_every_format_with_acks_and_stamps() {
    let dir = TestDir::new("simulate");
    let mut d = Daemon::start(&dir, &[]);
    let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let (json, _) = simulate(
        &d,
        &[
            "--boards", "3", "--count", "40", "--rate", "0", "--prefix", "js", "--ack", "--stamp",
        ],
    );
    assert_eq!(json["sent"], 120, "{json}");
    assert_eq!(json["acked"], 120, "every reading acknowledged: {json}");
    assert_eq!(json["failed_boards"], 0, "{json}");
    let (kv, said) = simulate(
        &d,
        &[
            "--boards", "2", "--count", "25", "--rate", "0", "--prefix", "kv", "--format", "kv", "--idle", "3",
        ],
    );
    assert_eq!(kv["sent"], 50, "{kv}");
    assert!(said.contains("Holding 3 idle connections open."), "{said}");
    let (text, _) = simulate(
        &d,
        &["--boards", "1", "--count", "5", "--rate", "200", "--format", "text"],
    );
    assert_eq!(text["sent"], 5, "{text}");
    d.shutdown();
    let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();

    let mut rows = read_csv(&d.csv);
    assert_eq!(rows.remove(0), HEADER);
    let mut readings = HashSet::new();
    let mut messages = 0;
    for r in &rows {
        let (device, field, seq, device_time) = (&r[1], &r[2], &r[7], &r[8]);
        match field.as_str() {
            "temp_c" => {
                assert!(readings.insert((device.clone(), seq.clone())), "reading doubled: {r:?}");
                if device.starts_with("js-") {
                    let sent: f64 = device_time.parse().unwrap_or_else(|_| panic!("stamp in {r:?}"));
                    assert!((before..=after).contains(&sent), "stamp {sent} outside the run: {r:?}");
                } else {
                    assert_eq!(device_time, "", "no stamp without --stamp: {r:?}");
                }
            }
            "humidity" => {}
            "message" => {
                assert!(r[3].starts_with("sim-1 reading "), "{r:?}");
                messages += 1;
            }
            other => panic!("unexpected field {other:?} in {r:?}"),
        }
    }
    for (prefix, boards, count) in [("js", 3, 40), ("kv", 2, 25)] {
        for b in 1..=boards {
            for n in 1..=count {
                let key = (format!("{prefix}-{b}"), n.to_string());
                assert!(readings.contains(&key), "missing {key:?}");
            }
        }
    }
    assert_eq!(readings.len(), 170);
    assert_eq!(messages, 5);
}

#[test]
fn simulate_reports_an_unreachable_daemon() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = Command::new(BIN)
        .args(["simulate", "--addr", &port.to_string(), "--boards", "2", "--count", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to"), "{stderr}");
}

/// Issue 19: `simulate` says what it sends before it starts, and without `--ack` it does not
/// print "acknowledged 0" (which read like a failure).
#[test]
fn issue19_simulate_says_what_it_sends_and_no_acknowledged_zero_without_ack() {
    let dir = TestDir::new("simulate-says");
    let d = Daemon::start(&dir, &[]);
    let (json, said) = simulate(&d, &["--boards", "2", "--rate", "20", "--duration", "1.5"]);
    assert!(json["sent"].as_u64().unwrap() > 0, "{json}");
    assert!(
        said.contains(&format!(
            "Sending to {} as 2 boards (sim-1..sim-2), json lines, 20 readings/s each, for 1.5 s",
            d.addr
        )),
        "{said}"
    );
    assert!(said.contains("no acknowledgements asked"), "{said}");
    assert!(!said.contains("acknowledged"), "{said}");
    assert!(said.contains("Sent "), "{said}");
    let (_, said) = simulate(&d, &["--boards", "1", "--count", "3", "--ack"]);
    assert!(
        said.contains("as 1 board (sim-1)") && said.contains("waiting for each acknowledgement"),
        "{said}"
    );
    assert!(said.contains("3 acknowledged"), "{said}");
}
