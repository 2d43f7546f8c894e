//! Every limit at exactly N and at N+1, and input that must not hurt the daemon.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::util::daemon::{read_csv, read_line, send_lines, wait_until};
use crate::util::{Daemon, TestDir};

fn values(d: &Daemon) -> Vec<String> {
    read_csv(&d.csv).into_iter().skip(1).map(|r| r[3].clone()).collect()
}

#[test]
fn line_of_exactly_max_bytes_is_kept_and_one_more_is_discarded() {
    let dir = TestDir::new("limit-line");
    let mut d = Daemon::start(&dir, &["--max-line-bytes", "64"]);
    let exact = format!("v={}", "x".repeat(62)); // 64 bytes
    let over = format!("v={}", "y".repeat(63)); // 65 bytes
    assert_eq!(exact.len(), 64);
    let mut s = d.connect();
    send_lines(&mut s, &[exact.clone(), over, "v=after".into()]);
    // A 4 MiB line: discarded with bounded memory, and the connection carries on.
    let huge = vec![b'z'; 4 << 20];
    s.write_all(&huge).unwrap();
    s.write_all(b"\r\nv=last\r\n").unwrap();
    drop(s);
    d.shutdown();
    let x = "x".repeat(62);
    assert_eq!(values(&d), [x.as_str(), "after", "last"]);
    assert!(
        d.log_contains("Discarded a line of 65 bytes") && d.log_contains("Discarded a line of 4194304 bytes"),
        "{}",
        d.log_text()
    );
}

/// Opens a connection and proves it holds a slot (the greeting is answered).
fn occupy(d: &Daemon, name: &str) -> TcpStream {
    let mut s = d.connect();
    send_lines(&mut s, &[format!("HELLO {name} ack=1")]);
    assert_eq!(read_line(&mut s), Some(format!("OK HELLO {name}")));
    s
}

#[test]
fn max_connections_at_n_and_n_plus_1() {
    let dir = TestDir::new("limit-conns");
    let mut d = Daemon::start(&dir, &["--max-connections", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|i| occupy(&d, &format!("b{i}"))).collect();
    let mut fourth = d.connect();
    assert_eq!(read_line(&mut fourth).as_deref(), Some("ERR too-many-connections 3"));
    assert_eq!(read_line(&mut fourth), None, "then closed");
    // Freeing one slot lets the next board in; the daemon stayed up.
    drop(held);
    assert!(wait_until(Duration::from_secs(10), || {
        let mut s = d.connect();
        send_lines(&mut s, &["HELLO again ack=1".into(), "seq=1 t=1".into()]);
        read_line(&mut s).as_deref() == Some("OK HELLO again")
    }));
    d.shutdown();
    assert!(d.log_contains("Refused board"), "{}", d.log_text());
}

#[test]
fn silent_connections_are_closed_after_the_idle_timeout() {
    let dir = TestDir::new("limit-idle");
    let mut d = Daemon::start(&dir, &["--idle-timeout-secs", "1"]);
    let started = Instant::now();
    let mut silent = d.connect();
    let mut talker = d.connect();
    // The talker sends every 300 ms for 2.5 s, and must not be cut off.
    for i in 0..8 {
        send_lines(&mut talker, &[format!("t={i}")]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(read_line(&mut silent).as_deref(), Some("ERR idle-timeout 1"));
    assert_eq!(read_line(&mut silent), None);
    assert!(started.elapsed() >= Duration::from_millis(900));
    send_lines(&mut talker, &["t=last".into()]);
    drop(talker);
    d.shutdown();
    assert_eq!(values(&d).last().map(String::as_str), Some("last"));
    assert_eq!(values(&d).len(), 9);
}

#[test]
fn garbage_bytes_never_crash_or_corrupt_the_csv() {
    let dir = TestDir::new("limit-garbage");
    let mut d = Daemon::start(&dir, &["--max-line-bytes", "256"]);
    let mut next = crate::util::rng::xorshift(0x1234_5678_9abc_def1);
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let bytes: Vec<u8> = (0..200_000).map(|_| (next() % 256) as u8).collect();
            let addr = d.addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"\n").unwrap();
                for (i, chunk) in bytes.chunks(4096).enumerate() {
                    s.write_all(chunk).unwrap();
                    // A good line between the garbage: it must survive intact.
                    s.write_all(format!("\ndevice=good-{t} i={i}\n").as_bytes()).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The daemon is still accepting and answering.
    let mut s = d.connect();
    send_lines(&mut s, &["HELLO alive ack=1".into()]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO alive"));
    drop(s);
    d.shutdown();
    let rows = read_csv(&d.csv); // panics if the file does not parse
    for r in &rows {
        assert_eq!(r.len(), 9, "{r:?}");
        for cell in r {
            assert!(!cell.contains('\0'), "NUL reached the CSV: {r:?}");
        }
    }
    for t in 0..8 {
        let good: Vec<u64> = rows
            .iter()
            .filter(|r| r[1] == format!("good-{t}"))
            .map(|r| r[3].parse().unwrap())
            .collect();
        assert_eq!(
            good,
            (0..49).collect::<Vec<_>>(),
            "good lines of client {t}; log:\n{}",
            d.log_text()
        );
    }
}

#[test]
fn a_client_that_disconnects_mid_line_loses_nothing_it_completed() {
    let dir = TestDir::new("limit-midline");
    let mut d = Daemon::start(&dir, &[]);
    let mut s = d.connect();
    s.write_all(b"t=1\nt=2\nt=3 unfinish").unwrap();
    drop(s);
    // Nothing arrives from the half line; and a reader of a closed socket is fine.
    let mut buf = [0u8; 1];
    let mut probe = d.connect();
    probe.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    assert!(probe.read(&mut buf).is_err(), "the daemon sends nothing unasked");
    drop(probe);
    d.shutdown();
    assert_eq!(values(&d), ["1", "2"]);
}
