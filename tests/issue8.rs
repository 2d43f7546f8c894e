//! Issue 8, "Nothing lost, for real": one regression test per case, each against the
//! real binary over loopback (or the real file system) where the case is about them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::daemon::{read_csv, read_line, send_lines, wait_until};
use crate::util::{Daemon, TestDir};

fn rows(d: &Daemon) -> Vec<Vec<String>> {
    read_csv(&d.csv).into_iter().skip(1).collect()
}

/// Connects to the daemon from a chosen loopback source address.
fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn issue_8_11_a_greeting_that_would_be_misread_gets_err_and_nothing_is_stored() {
    let dir = TestDir::new("i8-hello");
    let mut d = Daemon::start(&dir, &[]);
    for (hello, reason) in [
        ("HELLO living room ack=1", "cannot read \"room ack=1\""),
        ("HELLO kitchen,hall ack=1", "cannot read \"hall ack=1\""),
        ("HELLO  ack=1", "missing device name"),
        ("HELLO k boot=not/valid ack=1", "boot id"),
    ] {
        let mut s = d.connect();
        send_lines(&mut s, &[hello.into(), "seq=1 t=21".into()]);
        let reply = read_line(&mut s).unwrap_or_default();
        assert!(
            reply.starts_with("ERR bad-hello") && reply.contains(reason),
            "{hello:?} -> {reply:?}"
        );
        assert_eq!(read_line(&mut s), None, "then the connection is closed");
    }
    // A 36-character UUID boot id is accepted and recognises the resend.
    let uuid = "0f8fad5b-d9cb-469f-a165-70867728950e";
    for _ in 0..2 {
        let mut s = d.connect();
        send_lines(&mut s, &[format!("HELLO hall boot={uuid} ack=1"), "seq=1 t=20".into()]);
        assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO hall"));
        assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"));
    }
    d.shutdown();
    let rows = rows(&d);
    assert_eq!(rows.len(), 1, "only the hall reading, once: {rows:?}");
    assert_eq!((&*rows[0][1], &*rows[0][6]), ("hall", uuid));
    assert!(d.log_contains("Refused the greeting"), "{}", d.log_text());
}

#[test]
fn issue_8_8_a_bracket_bomb_at_the_smallest_stack_in_a_debug_build_is_kept_as_text() {
    let dir = TestDir::new("i8-deep");
    let mut d = Daemon::start(&dir, &["--thread-stack-kib", "64"]);
    let bomb = format!("{{\"x\":{}", "[".repeat(127)) + &"]".repeat(127) + "}";
    let mut s = d.connect();
    send_lines(&mut s, &[bomb.clone(), "{\"t\":1}".into()]);
    drop(s);
    // The daemon is alive and serving.
    let mut s = d.connect();
    send_lines(&mut s, &["HELLO alive ack=1".into()]);
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO alive"));
    drop(s);
    d.shutdown();
    let rows = rows(&d);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!((&*rows[0][2], &*rows[0][3]), ("message", bomb.as_str()));
    assert_eq!((&*rows[1][2], &*rows[1][3]), ("t", "1"));
}

#[test]
fn issue_8_9_one_address_cannot_hold_every_slot() {
    let dir = TestDir::new("i8-perip");
    let mut d = Daemon::start(&dir, &["--max-connections", "3000", "--max-connections-per-ip", "2000"]);
    // 127.0.0.1 opens 2,000 slow connections, each dripping one byte without a newline.
    let mut slow: Vec<TcpStream> = Vec::new();
    for _ in 0..2000 {
        let mut s = connect_from("127.0.0.1", d.addr);
        s.write_all(b"x").unwrap();
        slow.push(s);
    }
    let mut extra = connect_from("127.0.0.1", d.addr);
    assert_eq!(
        read_line(&mut extra).as_deref(),
        Some("ERR too-many-connections-from-address 2000"),
        "the 2,001st from the same address is refused"
    );
    let mut board = connect_from("127.0.0.2", d.addr);
    send_lines(&mut board, &["HELLO other ack=1".into(), "seq=1 t=5".into()]);
    assert_eq!(read_line(&mut board).as_deref(), Some("OK HELLO other"));
    assert_eq!(read_line(&mut board).as_deref(), Some("ACK 1"));
    drop(slow);
    d.shutdown();
    assert!(d.log_contains("server.max_connections_per_ip"), "{}", d.log_text());
}

#[test]
fn issue_8_9_a_line_dripped_a_byte_at_a_time_is_cut_at_the_line_timeout() {
    let dir = TestDir::new("i8-drip");
    let mut d = Daemon::start(&dir, &["--line-timeout-secs", "2", "--idle-timeout-secs", "60"]);
    let mut s = d.connect();
    let started = Instant::now();
    let mut reply = String::new();
    // One byte every 200 ms never trips the idle timeout; the line timeout cuts it.
    for _ in 0..100 {
        if s.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        if let Ok(n) = s.read(&mut buf) {
            reply.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        s.set_nonblocking(false).unwrap();
        if reply.contains('\n') {
            break;
        }
    }
    assert_eq!(reply, "ERR line-timeout 2\n");
    assert!(started.elapsed() < Duration::from_secs(15));
    // A board sending whole lines slowly is not affected.
    let mut ok = d.connect();
    for i in 0..3 {
        send_lines(&mut ok, &[format!("t={i}")]);
        std::thread::sleep(Duration::from_millis(1100));
    }
    send_lines(&mut ok, &["HELLO ok ack=1".into()]);
    assert_eq!(read_line(&mut ok).as_deref(), Some("OK HELLO ok"));
    drop(ok);
    d.shutdown();
    assert_eq!(rows(&d).len(), 3);
}

#[test]
fn issue_8_14_a_refused_board_reads_the_reason_even_after_sending_data() {
    let dir = TestDir::new("i8-refuse");
    let mut d = Daemon::start(&dir, &["--max-connections", "1"]);
    let mut held = d.connect();
    send_lines(&mut held, &["HELLO a ack=1".into()]);
    assert_eq!(read_line(&mut held).as_deref(), Some("OK HELLO a"));
    for _ in 0..20 {
        // The refused board has already sent a burst: its unread input must not turn
        // the close into a reset that swallows the ERR line.
        let mut s = d.connect();
        let _ = s.write_all(&b"t=1\n".repeat(2000));
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(read_line(&mut s).as_deref(), Some("ERR too-many-connections 1"));
    }
    drop(held);
    d.shutdown();
}

#[test]
fn issue_8_1_a_huge_seq_does_not_poison_the_boards_later_readings() {
    let dir = TestDir::new("i8-poison");
    let mut d = Daemon::start(&dir, &[]);
    let mut s = d.connect();
    send_lines(
        &mut s,
        &[r#"{"device":"kitchen","boot":"3f9a1c07","seq":18446744073709551615}"#.into()],
    );
    drop(s);
    let send = |d: &Daemon| {
        let mut s = d.connect();
        send_lines(&mut s, &["HELLO kitchen boot=3f9a1c07 ack=1".into()]);
        assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO kitchen"));
        for seq in 1..=3 {
            send_lines(&mut s, &[format!("seq={seq} t={seq}")]);
            assert_eq!(read_line(&mut s), Some(format!("ACK {seq}")));
        }
    };
    send(&d);
    d.shutdown();
    // Across a restart too: the memory rebuilt from the file must not swallow them.
    let mut d = Daemon::start(&dir, &[]);
    let mut s = d.connect();
    send_lines(
        &mut s,
        &["HELLO kitchen boot=3f9a1c07 ack=1".into(), "seq=4 t=4".into()],
    );
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO kitchen"));
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 4"));
    drop(s);
    d.shutdown();
    let t: Vec<String> = rows(&d).iter().filter(|r| r[2] == "t").map(|r| r[3].clone()).collect();
    assert_eq!(t, ["1", "2", "3", "4"]);
}

#[test]
fn issue_8_1_a_resend_with_different_content_is_written_and_warned_about() {
    let dir = TestDir::new("i8-conflict");
    let mut d = Daemon::start(&dir, &[]);
    let exchange = |d: &Daemon, line: &str| {
        let mut s = d.connect();
        send_lines(&mut s, &["HELLO porch boot=b1 ack=1".into(), line.into()]);
        assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO porch"));
        assert_eq!(read_line(&mut s).as_deref(), Some("ACK 7"));
    };
    exchange(&d, "seq=7 t=1");
    exchange(&d, "seq=7 t=1"); // a true resend: not written again
    exchange(&d, "seq=7 t=2"); // same key, other content: a reused boot id
    d.shutdown();
    let t: Vec<String> = rows(&d).iter().map(|r| r[3].clone()).collect();
    assert_eq!(t, ["1", "2"]);
    assert!(
        wait_until(Duration::from_secs(1), || d.log_contains("porch")
            && d.log_contains("boot b1")
            && d.log_contains("different content")),
        "{}",
        d.log_text()
    );
}
