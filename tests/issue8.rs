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
        Some("ERR too-many-connections-from-address 2000 server.max_connections_per_ip"),
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

/// A small tmpfs, so that the disk really fills up. Needs root (CI runs as root);
/// unmounted on drop.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn new(dir: &TestDir, kib: u32) -> SmallDisk {
        let path = dir.join("disk");
        std::fs::create_dir_all(&path).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mounting a {kib} KiB tmpfs failed: this test needs root to fill a real disk (CI runs as root)"
        );
        SmallDisk { path }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn issue_8_10_and_14_a_full_disk_logs_once_per_cause_and_recovers() {
    let dir = TestDir::new("i8-full");
    let disk = SmallDisk::new(&dir, 64);
    let csv = disk.path.join("readings.csv");
    let mut d = Daemon::start_raw(
        &dir,
        &[
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--csv".into(),
            csv.display().to_string(),
        ],
    );
    // A board without acknowledgements fills the disk, and keeps writing.
    let mut plain = d.connect();
    let line = format!("note={}\n", "x".repeat(1000));
    for _ in 0..200 {
        if plain.write_all(line.as_bytes()).is_err() {
            break;
        }
    }
    assert!(
        wait_until(Duration::from_secs(10), || d.log_contains("Cannot write readings")),
        "{}",
        d.log_text()
    );
    for _ in 0..300 {
        let _ = plain.write_all(line.as_bytes());
    }
    // Issue 8.14: that board then asks for acknowledgements; the failures of its earlier
    // chunks must not close it.
    send_lines(&mut plain, &["HELLO later ack=1".into()]);
    assert_eq!(read_line(&mut plain).as_deref(), Some("OK HELLO later"));
    // Space comes back (the disk grows): writing resumes at once, acknowledged.
    let st = std::process::Command::new("mount")
        .args(["-o", "remount,size=1024k"])
        .arg(&disk.path)
        .status()
        .unwrap();
    assert!(st.success());
    send_lines(&mut plain, &["seq=1 v=back".into()]);
    assert_eq!(read_line(&mut plain).as_deref(), Some("ACK 1"), "{}", d.log_text());
    drop(plain);
    d.shutdown();
    let errors = d
        .log_text()
        .lines()
        .filter(|l| l.contains("Cannot write readings"))
        .count();
    assert!(
        (1..=3).contains(&errors),
        "one ERROR line per cause per 10 s, not one per failed write: {errors}"
    );
    let rows = read_csv(&csv);
    assert!(rows.len() > 1, "some rows made it");
    for r in &rows {
        assert_eq!(r.len(), 9, "whole rows only: {r:?}");
    }
    assert_eq!(rows.last().map(|r| r[3].as_str()), Some("back"));
}

#[test]
fn issue_8_5_a_moved_csv_is_reopened_and_sighup_works_for_logrotate() {
    let dir = TestDir::new("i8-rotate");
    let mut d = Daemon::start(&dir, &[]);
    let send = |d: &Daemon, v: &str| {
        let mut s = d.connect();
        send_lines(&mut s, &["HELLO r ack=1".into(), format!("seq=1 v={v}")]);
        assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO r"));
        assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"));
    };
    send(&d, "before");
    // logrotate without copytruncate: rename, then SIGHUP.
    std::fs::rename(&d.csv, dir.join("readings.csv.1")).unwrap();
    d.hangup();
    // The new file appears a moment before the daemon switches to it: wait for the switch.
    let reopened = |d: &Daemon, n: usize| d.log_text().matches("was moved or deleted").count() >= n;
    assert!(
        wait_until(Duration::from_secs(5), || reopened(&d, 1)),
        "{}",
        d.log_text()
    );
    send(&d, "after-hup");
    // A user deletes it: noticed within seconds, without a signal.
    std::fs::remove_file(&d.csv).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || reopened(&d, 2)),
        "{}",
        d.log_text()
    );
    send(&d, "after-delete");
    let log = d.shutdown();
    let values =
        |p: &std::path::Path| -> Vec<String> { read_csv(p).into_iter().skip(1).map(|r| r[3].clone()).collect() };
    assert_eq!(values(&dir.join("readings.csv.1")), ["before"]);
    assert_eq!(values(&d.csv), ["after-delete"]);
    assert!(log.contains("was moved or deleted"), "{log}");
    assert_eq!(
        log.matches("Stop requested").count(),
        1,
        "SIGHUP is not a stop, only the final SIGTERM: {log}"
    );
}

#[test]
fn issue_8_6_a_second_daemon_on_the_same_csv_stops_naming_the_holder() {
    let dir = TestDir::new("i8-lock");
    let mut first = Daemon::start(&dir, &[]);
    let mut second = Daemon::spawn(
        &dir,
        &[
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--csv".into(),
            first.csv.display().to_string(),
        ],
        "info",
    );
    let st = second.wait_exit(Duration::from_secs(20)).expect("the second one exits");
    assert!(!st.success());
    let log = second.log_text();
    assert!(
        log.contains("in use by another sensorlog") && log.contains(&format!("process {}", first.pid())),
        "{log}"
    );
    first.shutdown();
}

#[test]
fn issue_8_2_repair_never_removes_another_boards_acknowledged_rows() {
    let dir = TestDir::new("i8-torn");
    let h = "received_at,device,field,value,type,peer,boot,seq,device_time\n";
    let t = "2026-12-01T10:00:00.000Z";
    // Another board's acknowledged rows share the torn row's millisecond; peers empty.
    let kept = format!("{t},other,a,1,number,,x,1,\n{t},other,b,2,number,,x,1,\n{t},d,a,1,number,,b,5,\n");
    std::fs::write(dir.join("readings.csv"), format!("{h}{kept}{t},d,c,3,num")).unwrap();
    let mut d = Daemon::start(&dir, &[]);
    // The board resends reading 5 whole: it is written (the torn copy was incomplete);
    // the other board's resend is recognised.
    for (hello, line) in [
        ("HELLO d boot=b ack=1", "seq=5 a=1 c=3"),
        ("HELLO other boot=x ack=1", "seq=1 a=1 b=2"),
    ] {
        let mut s = d.connect();
        send_lines(&mut s, &[hello.into(), line.into()]);
        read_line(&mut s);
        assert_eq!(
            read_line(&mut s).as_deref(),
            Some(if line.contains("seq=5") { "ACK 5" } else { "ACK 1" })
        );
    }
    let log = d.shutdown();
    let text = std::fs::read_to_string(&d.csv).unwrap();
    assert!(text.starts_with(&format!("{h}{kept}")), "{text}");
    assert_eq!(rows(&d).len(), 5, "3 kept + the resend's 2: {text}");
    let torn = format!("{t},d,c,3,num").len();
    assert!(log.contains(&format!("cut a torn last row ({torn} bytes)")), "{log}");
}
