//! server.allow / server.deny: decided at accept, before anything is read.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::util::daemon::{read_csv, read_line, send_lines};
use crate::util::{Daemon, TestDir};

/// Connects to `to` from the loopback address `from` (any 127.x.y.z works on Linux).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    s.bind(&local.into()).unwrap();
    s.connect_timeout(&to.into(), Duration::from_secs(5)).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends a greeting and a reading from `from`; returns the first reply (None = closed).
fn try_from(d: &Daemon, from: &str, seq: u32) -> Option<String> {
    let mut s = connect_from(from, d.addr);
    let _ = std::io::Write::write_all(
        &mut s,
        format!("HELLO h{seq} ack=1\nseq={seq} from=\"{from}\"\n").as_bytes(),
    );
    let first = read_line(&mut s);
    if first.is_some() {
        assert_eq!(read_line(&mut s), Some(format!("ACK {seq}")));
    }
    first
}

fn senders(d: &Daemon) -> Vec<String> {
    read_csv(&d.csv).into_iter().skip(1).map(|r| r[3].clone()).collect()
}

#[test]
fn allowlist_accepts_127_0_0_2_and_refuses_127_0_0_1() {
    let dir = TestDir::new("allow-only");
    let mut d = Daemon::start_with_config(&dir, "[server]\nallow = [\"127.0.0.2/32\", \"fd00::/8\"]\n", &[]);
    assert_eq!(try_from(&d, "127.0.0.2", 1).as_deref(), Some("OK HELLO h1"));
    assert_eq!(try_from(&d, "127.0.0.1", 2), None, "closed at accept, nothing read");
    assert_eq!(try_from(&d, "127.0.0.1", 3), None);
    let log = d.shutdown();
    assert_eq!(senders(&d), ["127.0.0.2"]);
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("Refused a connection from 127.0.0.1"))
            .count(),
        1,
        "rate-limited:\n{log}"
    );
    assert!(
        log.contains("Refused 2 connections from peers outside server.allow"),
        "{log}"
    );
}

#[test]
fn deny_wins_inside_an_allowed_range() {
    let dir = TestDir::new("allow-deny");
    let mut d = Daemon::start_with_config(
        &dir,
        "[server]\nallow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.1\"]\n",
        &[],
    );
    assert_eq!(try_from(&d, "127.0.0.1", 1), None);
    assert_eq!(try_from(&d, "127.0.0.3", 2).as_deref(), Some("OK HELLO h2"));
    let mut s = connect_from("127.0.0.2", d.addr);
    send_lines(&mut s, &["t=1".into()]);
    drop(s);
    d.shutdown();
    assert_eq!(senders(&d), ["127.0.0.3", "1"]);
}

#[test]
fn bad_cidrs_stop_the_daemon_naming_the_key() {
    let dir = TestDir::new("allow-bad");
    let cfg = dir.write("sensorlog.toml", "[server]\nallow = [\"10.0.0.0/33\"]\n");
    let out = std::process::Command::new(crate::util::daemon::BIN)
        .args(["serve", "--config", &cfg.display().to_string()])
        .current_dir(&dir.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.allow") && err.contains("10.0.0.0/33"), "{err}");
}
