//! Issue 20: behind a real HAProxy (Debian's `haproxy`, installed by `.ci/run`) with the
//! PROXY protocol. Each test writes its own HAProxy config (`mode tcp`, `send-proxy` or
//! `send-proxy-v2`, health checks with the header) in front of the daemon on loopback;
//! HAProxy connects to the daemon from 127.0.0.100 (`source`), the only trusted proxy, and
//! boards connect to HAProxy from their own loopback addresses (127.0.x.y).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::metrics::{scrape, value};
use crate::tls::{fingerprint, read_tls_line, tls_addr, tls_over};
use crate::util::daemon::{read_csv, read_line, wait_until};
use crate::util::haproxy::{self, Haproxy};
use crate::util::http::get;
use crate::util::{Daemon, TestDir};

/// HAProxy's address when it connects to the daemon.
const PROXY_SOURCE: &str = "127.0.0.100";

/// HAProxy with one TCP frontend per server option string, each relaying to `backend`.
fn haproxy(dir: &TestDir, backend: SocketAddr, server_options: &[&str]) -> Haproxy {
    Haproxy::start(
        haproxy::installed().unwrap_or("haproxy"),
        server_options.len(),
        |fronts| {
            let mut cfg = String::from(
            "global\n  maxconn 4000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n",
        );
            for (i, (opts, front)) in server_options.iter().zip(fronts).enumerate() {
                cfg.push_str(&format!(
                "\nfrontend f{i}\n  bind {front}\n  maxconn 2000\n  default_backend b{i}\n\nbackend b{i}\n  balance source\n  server d {backend} {opts} source {PROXY_SOURCE} maxconn 2000 check inter 200ms\n"
            ));
            }
            dir.write(&format!("haproxy-{}.cfg", fronts[0].port()), &cfg)
        },
    )
}

/// Connects to `to` from the loopback address `from`.
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    haproxy::connect_from(from, to, Duration::from_secs(5), Duration::from_secs(20)).unwrap()
}

fn config(dir: &TestDir, mode: &str, extra: &str) -> String {
    dir.write(
        "sensorlog.toml",
        &format!("[server]\nproxy_protocol = \"{mode}\"\ntrusted_proxies = [\"{PROXY_SOURCE}/32\"]\nproxy_header_timeout_secs = 2\n{extra}"),
    )
    .display()
    .to_string()
}

/// device -> peer, from the CSV.
fn peers(d: &Daemon) -> std::collections::HashMap<String, String> {
    read_csv(&d.csv)
        .into_iter()
        .skip(1)
        .map(|r| (r[1].clone(), r[5].clone()))
        .collect()
}

/// The start helper's retry: when the port picked for a front is taken before HAProxy
/// binds it (here held by the test on the first attempt), HAProxy exits and is started
/// again on a fresh port, which it then listens on.
#[test]
fn haproxy_is_started_again_on_fresh_ports_when_its_port_was_taken() {
    let dir = TestDir::new("proxy-port-taken");
    let (mut attempts, mut held) = (0, None);
    let h = Haproxy::start(haproxy::installed().unwrap_or("haproxy"), 1, |fronts| {
        attempts += 1;
        if attempts == 1 {
            held = Some(std::net::TcpListener::bind(fronts[0]).expect("the picked port is free"));
        }
        let backend = "127.0.0.1:9"; // never reached: nothing connects here
        dir.write(
            &format!("haproxy-{attempts}.cfg"),
            &format!(
                "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
                 frontend f\n  bind {}\n  default_backend b\nbackend b\n  server d {backend}\n",
                fronts[0]
            ),
        )
    });
    let held = held.expect("the first attempt held its port");
    assert_eq!(attempts, 2, "one failed start, one good one");
    assert_ne!(h.fronts[0], held.local_addr().unwrap());
    // HAProxy holds the new port: nobody else can bind it.
    assert!(std::net::TcpListener::bind(h.fronts[0]).is_err());
}

#[test]
fn two_hundred_boards_through_haproxy_none_refused_each_with_its_own_peer() {
    let dir = TestDir::new("proxy-200");
    // The default per-address cap (64): without the header, 250 boards through one
    // balancer would be 186 refusals.
    let cfg = config(&dir, "any", "");
    let mut d = Daemon::start(&dir, &["--config", &cfg]);
    let h = haproxy(&dir, d.addr, &["send-proxy-v2", "send-proxy"]);
    // 200 boards through send-proxy-v2 and 50 through send-proxy (v1), all connected at once.
    let boards: Vec<(String, String, SocketAddr)> = (1..=200)
        .map(|i| (format!("v2-{i}"), format!("127.0.1.{i}"), h.fronts[0]))
        .chain((1..=50).map(|i| (format!("v1-{i}"), format!("127.0.2.{i}"), h.fronts[1])))
        .collect();
    let mut conns: Vec<TcpStream> = boards
        .iter()
        .enumerate()
        .map(|(n, (device, from, front))| {
            let mut s = connect_from(from, *front);
            write!(s, "HELLO {device} ack=1\nseq=1 n={n}\n").unwrap();
            s
        })
        .collect();
    for (s, (device, from, _)) in conns.iter_mut().zip(&boards) {
        assert_eq!(
            read_line(s),
            Some(format!("OK HELLO {device}")),
            "board {device} from {from}"
        );
        assert_eq!(read_line(s).as_deref(), Some("ACK 1"), "board {device} from {from}");
    }
    let http = d.http_addr();
    // Health checks (the header with LOCAL / UNKNOWN) are seen, and are no boards.
    assert!(
        wait_until(Duration::from_secs(10), || value(
            &scrape(http),
            "sensorlog_proxy_connections_total{header=\"health_check\"}"
        ) >= 2.0),
        "no health check seen; log:\n{}",
        d.log_text()
    );
    let m = scrape(http);
    assert_eq!(
        value(&m, "sensorlog_connections_open"),
        250.0,
        "every board connected at once"
    );
    assert_eq!(
        value(&m, "sensorlog_proxy_connections_total{header=\"proxied\"}"),
        250.0
    );
    assert_eq!(
        value(&m, "sensorlog_connections_refused_total{reason=\"too_many_from_ip\"}"),
        0.0
    );
    let (_, api) = get(&format!("http://{http}/api/boards"));
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["totals"]["boards"], 250, "health checks are not boards");
    assert_eq!(api["refused"], serde_json::json!([]));
    drop(conns);
    drop(h);
    d.shutdown();
    let peers = peers(&d);
    assert_eq!(peers.len(), 250);
    for (device, from, _) in &boards {
        let peer = &peers[device];
        assert!(
            peer.starts_with(&format!("{from}:")),
            "{device}: peer {peer}, expected {from}"
        );
    }
}

#[test]
fn the_per_address_cap_and_the_allowlist_judge_the_boards_not_haproxy() {
    let dir = TestDir::new("proxy-limits");
    // HAProxy (127.0.0.100) itself is outside server.allow: only the boards' addresses count.
    let cfg = config(&dir, "v2", "max_connections_per_ip = 2\nallow = [\"127.0.3.0/24\"]\n");
    let mut d = Daemon::start(&dir, &["--config", &cfg]);
    let h = haproxy(&dir, d.addr, &["send-proxy-v2"]);
    let front = h.fronts[0];
    let hello = |from: &str, device: &str| {
        let mut s = connect_from(from, front);
        writeln!(s, "HELLO {device} ack=1").unwrap();
        let reply = read_line(&mut s);
        (s, reply)
    };
    let (_a1, r1) = hello("127.0.3.1", "a1");
    let (_a2, r2) = hello("127.0.3.1", "a2");
    assert_eq!(
        (r1.as_deref(), r2.as_deref()),
        (Some("OK HELLO a1"), Some("OK HELLO a2"))
    );
    let (_a3, r3) = hello("127.0.3.1", "a3");
    assert_eq!(
        r3.as_deref(),
        Some("ERR too-many-connections-from-address 2 server.max_connections_per_ip"),
        "the third from one board's address is refused, naming the setting"
    );
    let (_b, rb) = hello("127.0.3.2", "b");
    assert_eq!(
        rb.as_deref(),
        Some("OK HELLO b"),
        "another board through the same HAProxy gets in"
    );
    let (_c, rc) = hello("127.0.4.1", "c");
    assert_eq!(rc, None, "a board outside server.allow is closed, through HAProxy too");
    let http = d.http_addr();
    let m = scrape(http);
    assert_eq!(
        value(
            &m,
            "sensorlog_connections_refused_by_address_total{address=\"127.0.3.1\",reason=\"too_many_from_ip\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "sensorlog_connections_refused_by_address_total{address=\"127.0.4.1\",reason=\"not_allowed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&m, "sensorlog_connections_refused_total{reason=\"not_allowed\"}"),
        1.0
    );
    let (_, api) = get(&format!("http://{http}/api/boards"));
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    let refused = api["refused"].as_array().unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r["address"] == "127.0.3.1" && r["reason"] == "too_many_from_ip" && r["count"] == 1),
        "{refused:?}"
    );
    let log = d.shutdown();
    assert!(
        log.contains("Refused board 127.0.3.1:") && log.contains("raise server.max_connections_per_ip"),
        "the refusal names the board and the setting:\n{log}"
    );
    assert!(log.contains("Refused a connection from 127.0.4.1"), "{log}");
    assert!(
        !log.contains("Refused board 127.0.0.100"),
        "HAProxy was never judged:\n{log}"
    );
}

#[test]
fn headers_from_untrusted_peers_bad_and_late_headers_are_refused_direct_boards_connect() {
    let dir = TestDir::new("proxy-untrusted");
    let cfg = config(&dir, "any", "");
    let mut d = Daemon::start(&dir, &["--config", &cfg]);
    // A peer outside server.trusted_proxies claims another address.
    let mut liar = connect_from("127.0.0.5", d.addr);
    liar.write_all(b"PROXY TCP4 10.9.9.9 127.0.0.1 1234 8090\r\nHELLO liar ack=1\n")
        .unwrap();
    assert_eq!(read_line(&mut liar).as_deref(), Some("ERR proxy-header-not-trusted"));
    assert_eq!(read_line(&mut liar), None);
    let mut liar2 = connect_from("127.0.0.5", d.addr);
    liar2.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c").unwrap();
    assert_eq!(read_line(&mut liar2).as_deref(), Some("ERR proxy-header-not-trusted"));
    // A direct board needs no header and keeps its own address.
    let mut direct = connect_from("127.0.0.6", d.addr);
    direct.write_all(b"HELLO direct ack=1\nseq=1 t=1\n").unwrap();
    assert_eq!(read_line(&mut direct).as_deref(), Some("OK HELLO direct"));
    assert_eq!(read_line(&mut direct).as_deref(), Some("ACK 1"));
    // The trusted proxy's address with garbage, with no header, and with a header cut short.
    let mut garbage = connect_from(PROXY_SOURCE, d.addr);
    garbage.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").unwrap();
    assert_eq!(read_line(&mut garbage).as_deref(), Some("ERR bad-proxy-header"));
    let mut headerless = connect_from(PROXY_SOURCE, d.addr);
    headerless.write_all(b"HELLO sneaky ack=1\n").unwrap();
    assert_eq!(read_line(&mut headerless).as_deref(), Some("ERR bad-proxy-header"));
    let mut oversize = connect_from(PROXY_SOURCE, d.addr);
    oversize.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff").unwrap();
    assert_eq!(read_line(&mut oversize).as_deref(), Some("ERR bad-proxy-header"));
    let mut late = connect_from(PROXY_SOURCE, d.addr);
    late.write_all(b"PROXY TCP4 1.2.3.4").unwrap();
    let mut rest = Vec::new();
    let _ = late.read_to_end(&mut rest);
    assert!(rest.is_empty(), "a late header is closed without a reply: {rest:?}");
    // A LOCAL header (v2) that ends: a health check. UNKNOWN (v1) with data: the proxy's own.
    let mut local = connect_from(PROXY_SOURCE, d.addr);
    local.write_all(b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00").unwrap();
    local.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_line(&mut local), None);
    let mut own = connect_from(PROXY_SOURCE, d.addr);
    own.write_all(b"PROXY UNKNOWN\r\nHELLO own ack=1\nseq=1 t=1\n").unwrap();
    assert_eq!(read_line(&mut own).as_deref(), Some("OK HELLO own"));
    assert_eq!(read_line(&mut own).as_deref(), Some("ACK 1"));
    // An IPv6 board behind the proxy (v1 TCP6), its reading right behind the header.
    let mut v6 = connect_from(PROXY_SOURCE, d.addr);
    v6.write_all(b"PROXY TCP6 2001:db8::7 ::1 5000 8090\r\nHELLO six ack=1\nseq=1 t=1\n")
        .unwrap();
    assert_eq!(read_line(&mut v6).as_deref(), Some("OK HELLO six"));
    assert_eq!(read_line(&mut v6).as_deref(), Some("ACK 1"));
    let m = scrape(d.http_addr());
    assert_eq!(
        value(&m, "sensorlog_proxy_connections_total{header=\"health_check\"}"),
        1.0
    );
    assert_eq!(value(&m, "sensorlog_proxy_connections_total{header=\"proxied\"}"), 1.0);
    for (reason, n) in [
        ("proxy_header_not_trusted", 2.0),
        ("bad_proxy_header", 3.0),
        ("proxy_header_timeout", 1.0),
    ] {
        assert_eq!(
            value(
                &m,
                &format!("sensorlog_connections_refused_total{{reason=\"{reason}\"}}")
            ),
            n,
            "{reason}"
        );
    }
    let log = d.shutdown();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains("from proxy 127.0.0.100")).collect();
    assert_eq!(
        warns.len(),
        1,
        "bad and late headers: one WARN per proxy per interval:\n{log}"
    );
    assert!(
        warns[0].contains("WARN") && warns[0].contains("server.proxy_protocol"),
        "{}",
        warns[0]
    );
    assert!(log.contains("Refused a PROXY header from 127.0.0.5:"), "{log}");
    let peers = peers(&d);
    let mut devices: Vec<&String> = peers.keys().collect();
    devices.sort();
    assert_eq!(devices, ["direct", "own", "six"], "nothing from refused connections");
    assert!(peers["direct"].starts_with("127.0.0.6:"));
    assert!(
        peers["own"].starts_with("127.0.0.100:"),
        "UNKNOWN keeps the proxy's address"
    );
    assert_eq!(peers["six"], "[2001:db8::7]:5000");
}

#[test]
fn the_tls_listener_behind_send_proxy_v2() {
    let dir = TestDir::new("proxy-tls");
    let cfg = config(
        &dir,
        "v2",
        "listen = \"\"\n[tls]\nlisten = \"127.0.0.1:0\"\nself_signed = true\n",
    );
    let (_, pin) = fingerprint(&dir, &cfg);
    let mut d = Daemon::spawn(
        &dir,
        &[
            "serve".into(),
            "--config".into(),
            cfg.clone(),
            "--csv".into(),
            d_csv(&dir),
        ],
        "debug",
    );
    let tls = tls_addr(&d);
    let h = haproxy(&dir, tls, &["send-proxy-v2"]);
    for (i, from) in ["127.0.5.1", "127.0.5.2"].iter().enumerate() {
        let mut s = tls_over(connect_from(from, h.fronts[0]), &pin, &rustls::version::TLS13);
        write!(s, "HELLO t{i} ack=1\nseq=1 v={i}\n").unwrap();
        assert_eq!(read_tls_line(&mut s), Some(format!("OK HELLO t{i}")));
        assert_eq!(read_tls_line(&mut s).as_deref(), Some("ACK 1"));
    }
    drop(h);
    d.shutdown();
    let peers = peers(&d);
    assert!(peers["t0"].starts_with("127.0.5.1:"), "{peers:?}");
    assert!(peers["t1"].starts_with("127.0.5.2:"), "{peers:?}");
}

fn d_csv(dir: &TestDir) -> String {
    dir.join("readings.csv").display().to_string()
}

#[test]
fn start_up_refuses_proxy_protocol_without_trusted_proxies() {
    let dir = TestDir::new("proxy-untrusted-config");
    let cfg = dir.write("sensorlog.toml", "[server]\nproxy_protocol = \"v2\"\n");
    let mut d = Daemon::spawn(
        &dir,
        &["serve".into(), "--config".into(), cfg.display().to_string()],
        "info",
    );
    let status = d.wait_exit(Duration::from_secs(20)).expect("exits");
    assert!(!status.success());
    std::thread::sleep(Duration::from_millis(50));
    let log = d.log_text();
    assert!(
        log.contains("server.proxy_protocol") && log.contains("server.trusted_proxies is empty"),
        "{log}"
    );
    let bad = dir.write(
        "bad.toml",
        "[server]\nproxy_protocol = \"v3\"\ntrusted_proxies = [\"10.0.0.1\"]\n",
    );
    let mut d = Daemon::spawn(
        &dir,
        &["serve".into(), "--config".into(), bad.display().to_string()],
        "info",
    );
    assert!(!d.wait_exit(Duration::from_secs(20)).expect("exits").success());
    std::thread::sleep(Duration::from_millis(50));
    assert!(d.log_text().contains("\"v3\""), "{}", d.log_text());
}

#[test]
fn the_token_backoff_holds_back_the_guessing_board_not_the_others_behind_haproxy() {
    let dir = TestDir::new("proxy-backoff");
    let token = crate::auth::add_token(&dir, "kitchen");
    let cfg = crate::auth::auth_config(
        &dir,
        &format!("failures_before_backoff = 1\nmax_backoff_secs = 60\n[server]\nproxy_protocol = \"v2\"\ntrusted_proxies = [\"{PROXY_SOURCE}\"]\n"),
    );
    let mut d = Daemon::start(&dir, &["--config", &cfg]);
    let h = haproxy(&dir, d.addr, &["send-proxy-v2"]);
    let greet = |from: &str, token: &str| {
        let mut s = connect_from(from, h.fronts[0]);
        writeln!(s, "HELLO kitchen token={token} ack=1").unwrap();
        read_line(&mut s)
    };
    for guess in ["guess0", "guess1"] {
        assert_eq!(greet("127.0.6.1", guess).as_deref(), Some("ERR bad-token"));
    }
    let held = greet("127.0.6.1", &token).unwrap();
    assert!(
        held.starts_with("ERR auth-backoff "),
        "the guessing board backs off: {held}"
    );
    assert_eq!(
        greet("127.0.6.2", &token).as_deref(),
        Some("OK HELLO kitchen"),
        "another board behind the same HAProxy is not held back"
    );
    drop(h);
    let log = d.shutdown();
    let line = log
        .lines()
        .find(|l| l.contains("Refused a wrong or unknown token"))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("127.0.6.1") && !line.contains("127.0.0.100"), "{line}");
}
