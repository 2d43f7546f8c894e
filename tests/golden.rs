//! Issue 22: the CSV bytes and the replies for a fixed input, over every wire format,
//! compared byte for byte with files checked in under `tests/fixtures/golden/`.
//!
//! The ingest path is tuned for speed (timestamps formatted once per millisecond, one
//! scan per line, borrowed fields, reused buffers); none of that may change a byte of
//! what reaches the file or the board. Only what differs per run is masked: the
//! `received_at` column (checked to be a well-formed UTC time of this run first) and
//! the client's ephemeral port in the `peer` column. Everything else (quoting, formula
//! neutralisation, U+FFFD for bad bytes, types, boot and seq, resends, conflicts, the
//! order and text of ACK/ERR replies) must match exactly.
//!
//! After an intended change of the output, regenerate with
//! `SENSORLOG_UPDATE_GOLDEN=1 cargo test --test tests golden` and review the diff.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::util::{Daemon, TestDir};

/// One connection's input: the bytes sent, in pieces (each piece is one `write`, with a
/// short pause after it so that lines also straddle reads).
struct Client {
    name: &'static str,
    pieces: Vec<Vec<u8>>,
}

fn lines(name: &'static str, text: &[&str]) -> Client {
    let mut all = Vec::new();
    for l in text {
        all.extend_from_slice(l.as_bytes());
        all.push(b'\n');
    }
    Client {
        name,
        pieces: vec![all],
    }
}

fn clients() -> Vec<Client> {
    // JSON: numbers kept as sent, escapes, bools, null, nested values, repeated keys,
    // reserved keys with valid and invalid values, formula-looking text, commas, quotes
    // and newlines that need CSV quoting, a JSON nested too deep.
    let json = lines(
        "json",
        &[
            r#"{"device":"g-json","t":21.50,"h":-3e2,"ok":true,"off":false}"#,
            r#"{"device":"g-json","seq":7,"ts":"2026-01-02T03:04:05Z","note":"a,\"b\"\nc","n":null}"#,
            r#"{"device":"g-json","nested":{"a":[1, 2,{"b":null}]},"list":[ "x" , 3 ]}"#,
            r#"{"device":"g-json","t":1,"t":2,"esc":"\u00e9\t\u0001\\\/"}"#,
            r#"{"device":"=cmd|'/c calc'!A1","formula":"=1+2","plus":"+x","minus":"-y","at":"@z","num":-5}"#,
            r#"{"device":"  spaced  ","seq":"notanumber","boot":"bad boot!","v":"ünïcødé ✓"}"#,
            r#"{"device":"","v":1}"#,
            r#"{"device":12,"v":1}"#,
            r#"{"only":"reserved","device":"g-json","seq":8,"ts":9}"#,
            r#"{"device":"g-json","seq":9}"#,
            r#"{"device":"g-json"  ,  "v" : 1 }   "#,
            r#"{"broken":"json""#,
            &format!(r#"{{"device":"g-deep","v":{}1{}}}"#, "[".repeat(200), "]".repeat(200)),
            r#"{"device":"a-very-long-device-name-that-goes-on-and-on-past-the-sixty-four-byte-limit-for-names","v":1}"#,
        ],
    );
    // key=value: bare and quoted values, types, reserved keys, odd spacing.
    let kv = lines(
        "kv",
        &[
            "device=g-kv temp_c=21.5 humidity=40 on=true word=hello",
            "device=g-kv seq=3 boot=b00t-1 ts=1700000000.25 v=1",
            "device=g-kv note=\"quoted, with \\\"escapes\\\" and = signs\" n=-0.0",
            "  device=g-kv\tv=1e3   x=@at  ",
            "device=g-kv v=",
            "device=g-kv =novalue",
            "v=no-device-here",
        ],
    );
    // Free text, blank lines, CRLF, control characters, bytes that are not UTF-8, an
    // overlong line (the daemon runs with --max-line-bytes 200).
    let mut text = lines(
        "text",
        &[
            "g-text reading 1 temp 21.5",
            "",
            "   \t ",
            "free text, with a comma and \"quotes\"",
            "=SUM(A1:A9)",
            "control \u{1} char and \u{7f} del",
            "crlf line\r",
            &"x".repeat(300),
            "after the overlong line",
        ],
    );
    text.pieces.push(b"not utf-8: \xff\xfe end\n".to_vec());
    text.pieces.push(b"split across ".to_vec());
    text.pieces.push(b"two writes\n".to_vec());
    // A greeting with acknowledgements: readings with seq are acknowledged in order, a
    // resend with the same content is acknowledged without a row, a resend with other
    // content is written, readings without seq are written without a reply.
    let mut hello = lines(
        "hello",
        &[
            "HELLO g-hello boot=b1 ack=1",
            r#"{"seq":1,"t":20.5}"#,
            "seq=2 t=20.6",
            r#"{"seq":1,"t":20.5}"#,
            r#"{"seq":2,"t":99}"#,
            r#"{"t":21}"#,
            r#"{"device":"g-other","seq":3,"t":1}"#,
            r#"{"seq":4,"boot":"b2","t":2}"#,
            "text without a seq",
            &"y".repeat(300),
        ],
    );
    // The resend of seq 3 arrives in a later read than the first copy.
    hello
        .pieces
        .push(b"{\"device\":\"g-other\",\"seq\":3,\"t\":1}\n".to_vec());
    hello
        .pieces
        .push(b"HELLO g-hello2 boot=b9 ack=1\n{\"seq\":1,\"t\":5}\n".to_vec());
    // The same boot and seq again on a new connection: a resend across connections.
    let resend = lines(
        "resend",
        &[
            "HELLO g-hello boot=b1 ack=1",
            r#"{"seq":1,"t":20.5}"#,
            "seq=2 t=20.6",
            r#"{"seq":5,"t":22}"#,
        ],
    );
    // A bad greeting: refused and closed, the lines after it are not stored.
    let bad = lines("bad-hello", &["HELLO", r#"{"device":"g-bad","v":1}"#]);
    let bad2 = lines("bad-hello-2", &["HELLO g-x ack=maybe", "v=1"]);
    vec![json, kv, text, hello, resend, bad, bad2]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

/// Compares `actual` with the golden file `name` (or writes it when asked to).
fn check_golden(name: &str, actual: &[u8]) {
    let path = golden_dir().join(name);
    if std::env::var_os("SENSORLOG_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with SENSORLOG_UPDATE_GOLDEN=1 cargo test --test tests golden",
            path.display()
        )
    });
    if expected != actual {
        let (e, a) = (String::from_utf8_lossy(&expected), String::from_utf8_lossy(actual));
        let first = e
            .lines()
            .zip(a.lines())
            .position(|(x, y)| x != y)
            .unwrap_or(e.lines().count().min(a.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\n expected: {:?}\n   actual: {:?}\n(whole output:\n{a})",
            path.display(),
            first + 1,
            e.lines().nth(first),
            a.lines().nth(first)
        );
    }
}

/// Checks that a `received_at` cell is `YYYY-MM-DDTHH:MM:SS.mmmZ` within this run.
fn check_time(cell: &str, from_ms: u64, to_ms: u64) {
    let b = cell.as_bytes();
    let shape = b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "received_at {cell:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
    let t: jiff::Timestamp = cell.parse().unwrap_or_else(|e| panic!("received_at {cell:?}: {e}"));
    let ms = t.as_millisecond() as u64;
    assert!(
        (from_ms..=to_ms).contains(&ms),
        "received_at {cell} outside the run ({from_ms}..={to_ms} ms)"
    );
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

#[test]
fn issue_22_csv_bytes_and_replies_match_the_golden_files_for_every_wire_format() {
    let dir = TestDir::new("golden");
    let from_ms = unix_ms();
    let mut d = Daemon::start(&dir, &["--max-line-bytes", "200"]);
    let mut replies = Vec::new();
    let mut peers = Vec::new();
    for c in clients() {
        let mut s = TcpStream::connect(d.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        peers.push((s.local_addr().unwrap().to_string(), format!("<peer-{}>", c.name)));
        for p in &c.pieces {
            // A refused greeting closes the connection: later writes may fail.
            if s.write_all(p).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        let _ = s.shutdown(Shutdown::Write);
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        replies.extend_from_slice(format!("## {}\n", c.name).as_bytes());
        replies.extend_from_slice(&got);
    }
    d.shutdown();
    let to_ms = unix_ms();
    let csv = std::fs::read(&d.csv).unwrap();
    let mut masked = Vec::new();
    for (i, row) in csv.split_inclusive(|&b| b == b'\n').enumerate() {
        if i > 0 {
            let cell = std::str::from_utf8(&row[..24.min(row.len())]).unwrap_or("");
            check_time(cell, from_ms, to_ms);
            masked.extend_from_slice(b"<received_at>");
            masked.extend_from_slice(&row[24..]);
        } else {
            masked.extend_from_slice(row);
        }
    }
    let mut masked = String::from_utf8(masked).expect("the CSV is UTF-8");
    for (addr, label) in &peers {
        masked = masked.replace(addr.as_str(), label);
    }
    check_golden("wire-formats.csv", masked.as_bytes());
    check_golden("wire-formats.replies", &replies);
}
