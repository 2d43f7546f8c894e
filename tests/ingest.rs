//! Many boards at once, in every wire format: every line lands exactly once.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::util::daemon::{read_csv, read_line, send_lines, HEADER};
use crate::util::{Daemon, TestDir};

/// Rows of the CSV (header checked and removed).
fn data_rows(d: &Daemon) -> Vec<Vec<String>> {
    let mut rows = read_csv(&d.csv);
    assert_eq!(rows.remove(0), HEADER, "header");
    for r in &rows {
        assert_eq!(r.len(), HEADER.len(), "row {r:?}");
    }
    rows
}

#[test]
fn concurrent_clients_in_all_formats_lose_and_double_nothing() {
    let dir = TestDir::new("ingest-formats");
    let mut d = Daemon::start(&dir, &[]);
    const CLIENTS: usize = 24;
    const LINES: usize = 150;
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let addr = d.addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut out = String::new();
                for n in 0..LINES {
                    let id = format!("c{c}-n{n}");
                    let line = match n % 3 {
                        0 => format!(r#"{{"device":"dev-{c}","id":"{id}","v":{n},"note":"a,\"q\""}}"#),
                        1 => format!("device=dev-{c} id={id} v={n}"),
                        _ => format!("free text {id} from a board, with a comma"),
                    };
                    out.push_str(&line);
                    out.push_str(if n % 2 == 0 { "\n" } else { "\r\n" });
                }
                // Send in awkward fragments so lines straddle reads.
                for chunk in out.as_bytes().chunks(7 + c) {
                    s.write_all(chunk).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    d.shutdown();
    let rows = data_rows(&d);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in &rows {
        let (device, field, value, kind) = (&r[1], &r[2], &r[3], &r[4]);
        match field.as_str() {
            "id" => {
                let c = value.split('-').next().unwrap().trim_start_matches('c');
                assert_eq!(device, &format!("dev-{c}"), "{r:?}");
                assert_eq!(kind, "text");
                *seen.entry(value.clone()).or_default() += 1;
            }
            "message" => {
                assert_eq!(device, "127.0.0.1", "text lines take the peer address: {r:?}");
                let id = value.split_whitespace().nth(2).unwrap().to_string();
                assert_eq!(value, &format!("free text {id} from a board, with a comma"));
                *seen.entry(id).or_default() += 1;
            }
            "v" => assert_eq!(kind, "number"),
            "note" => assert_eq!(value, "a,\"q\""),
            other => panic!("unexpected field {other} in {r:?}"),
        }
    }
    for c in 0..CLIENTS {
        for n in 0..LINES {
            let id = format!("c{c}-n{n}");
            assert_eq!(seen.get(&id), Some(&1), "reading {id} must be present exactly once");
        }
    }
    assert_eq!(seen.len(), CLIENTS * LINES);
}

/// The failure of the original server: 1,000 boards connect at the same moment, each
/// sends 200 lines and closes. With a small listen backlog the kernel resets some of
/// them after they wrote; every reading must arrive.
#[test]
fn burst_of_1000_boards_connecting_at_once_loses_nothing() {
    let dir = TestDir::new("ingest-burst");
    let mut d = Daemon::start(&dir, &["--max-connections", "2000", "--max-connections-per-ip", "2000"]);
    const BOARDS: usize = 1000;
    const LINES: u64 = 200;
    let barrier = Arc::new(Barrier::new(BOARDS));
    let handles: Vec<_> = (0..BOARDS)
        .map(|b| {
            let (addr, barrier) = (d.addr, Arc::clone(&barrier));
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let lines: Vec<String> = (0..LINES).map(|n| format!("device=b{b} seq={n} t=1")).collect();
                    barrier.wait();
                    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(20)).unwrap();
                    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
                    send_lines(&mut s, &lines);
                })
                .unwrap()
        })
        .collect();
    for h in handles {
        h.join().expect("a board could not send");
    }
    d.shutdown();
    let rows = data_rows(&d);
    let mut per_board: HashMap<String, Vec<u64>> = HashMap::new();
    for r in rows {
        per_board.entry(r[1].clone()).or_default().push(r[7].parse().unwrap());
    }
    assert_eq!(per_board.len(), BOARDS, "every board's readings arrived");
    for (board, mut seqs) in per_board {
        seqs.sort_unstable();
        assert_eq!(seqs, (0..LINES).collect::<Vec<_>>(), "board {board}");
    }
}

#[test]
fn device_name_comes_from_line_then_greeting_then_peer() {
    let dir = TestDir::new("ingest-device");
    let mut d = Daemon::start(&dir, &[]);
    let mut a = d.connect();
    send_lines(
        &mut a,
        &[
            "t=1".into(),
            "HELLO porch".into(),
            "t=2".into(),
            "device=attic t=3".into(),
            r#"{"t":4}"#.into(),
        ],
    );
    drop(a);
    d.shutdown();
    let rows = data_rows(&d);
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r[1].as_str(), r[3].as_str())).collect();
    assert_eq!(
        got,
        [("127.0.0.1", "1"), ("porch", "2"), ("attic", "3"), ("porch", "4")]
    );
}

#[test]
fn acknowledged_readings_are_written_once_even_when_resent() {
    let dir = TestDir::new("ingest-ack");
    let mut d = Daemon::start(&dir, &[]);
    let mut s = d.connect();
    send_lines(
        &mut s,
        &[
            "HELLO shed boot=b1 ack=1".into(),
            "seq=1 t=1".into(),
            "seq=2 t=2".into(),
        ],
    );
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO shed"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 2"));
    drop(s);
    // Reconnect and resend 2 (its ACK "was lost") plus a new 3.
    let mut s = d.connect();
    send_lines(
        &mut s,
        &[
            "HELLO shed boot=b1 ack=1".into(),
            "seq=2 t=2".into(),
            "seq=3 t=3".into(),
        ],
    );
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO shed"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 2"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 3"));
    // A new boot starts its own sequence.
    send_lines(&mut s, &["HELLO shed boot=b2 ack=1".into(), "seq=1 t=9".into()]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO shed"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"));
    drop(s);
    d.shutdown();
    let rows = data_rows(&d);
    let got: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r[6].as_str(), r[7].as_str(), r[3].as_str()))
        .collect();
    assert_eq!(
        got,
        [("b1", "1", "1"), ("b1", "2", "2"), ("b1", "3", "3"), ("b2", "1", "9")]
    );
}
