//! The dashboard port under hostile clients: a flood of idle connections, a request that
//! trickles in, an overlong or malformed one, and the process out of open files. The
//! dashboard must answer each with a clear status, never take the boards' threads or
//! files, and never stop listening.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::util::daemon::{read_csv_so_far, send_lines, wait_until};
use crate::util::{http, Daemon, TestDir};

fn start(name: &str, http_section: &str) -> (TestDir, Daemon, SocketAddr) {
    let dir = TestDir::new(name);
    let d = Daemon::start_with_config(
        &dir,
        &format!("[http]\n{http_section}\n"),
        &["--stats-interval-secs", "0"],
    );
    let http = d.http_addr();
    (dir, d, http)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the dashboard");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Everything the server sends until it closes (15 s at most).
fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `bytes` on a fresh connection and returns the whole reply.
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(bytes).expect("send the request");
    read_to_close(&mut s)
}

/// The daemon's threads serving a dashboard connection (named `http-conn`).
fn connection_threads(d: &Daemon) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", d.pid())) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "http-conn")
        .count()
}

/// What each of the daemon's open files is (from `/proc/PID/fd`).
fn open_files(d: &Daemon) -> Vec<String> {
    let dir = format!("/proc/{}/fd", d.pid());
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {dir}: {e}"));
    entries
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .collect()
}

/// A reading from a board reaches the CSV.
fn board_gets_in(d: &Daemon, device: &str) {
    let mut b = d.connect();
    send_lines(&mut b, &[format!("{{\"device\":\"{device}\",\"t\":1}}")]);
    assert!(
        wait_until(Duration::from_secs(10), || read_csv_so_far(&d.csv)
            .iter()
            .any(|r| r[1] == device)),
        "the reading of {device} never reached the CSV; log:\n{}",
        d.log_text()
    );
}

#[test]
fn a_flood_of_idle_connections_is_capped_answered_503_and_timed_out_while_boards_get_in() {
    let (_dir, d, http) = start("http-flood", "max_connections = 8\nrequest_timeout_secs = 2");
    // Eight connections that start a request and never finish it hold every place.
    let started = Instant::now();
    let mut idle: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = connect(http);
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    // Let the accept loop take them all before the next ones arrive.
    assert!(
        wait_until(Duration::from_secs(5), || connection_threads(&d) == 8),
        "the eight connections never got their threads: {}",
        connection_threads(&d)
    );
    // The next ones are answered at once with 503, and take no thread.
    for i in 0..20 {
        let reply = read_to_close(&mut connect(http));
        assert!(
            reply.starts_with("HTTP/1.1 503") && reply.contains("http.max_connections"),
            "connection {i} past the cap: {reply:?}"
        );
    }
    assert_eq!(connection_threads(&d), 8, "connection threads after 20 refusals");
    // Boards are not affected.
    board_gets_in(&d, "kitchen");
    // The idle ones get 408 once their request time is up, and are closed.
    for (i, s) in idle.iter_mut().enumerate() {
        let reply = read_to_close(s);
        assert!(
            reply.starts_with("HTTP/1.1 408") && reply.contains("http.request_timeout_secs"),
            "idle connection {i}: {reply:?}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "closed before the timeout");
    // The places are free again: the dashboard answers, and counted the refusals.
    assert!(
        wait_until(Duration::from_secs(5), || connection_threads(&d) == 0),
        "connection threads left: {}",
        connection_threads(&d)
    );
    let (status, metrics) = http::get(&format!("http://{http}/metrics"));
    assert_eq!(status, 200);
    assert!(
        metrics.contains("sensorlog_http_connections_refused_total 20"),
        "{metrics}"
    );
    assert!(
        d.log_contains("Refused a dashboard connection from 127.0.0.1:"),
        "{}",
        d.log_text()
    );
    d.stop();
}

#[test]
fn a_trickled_overlong_or_malformed_request_gets_a_clear_status() {
    let (_dir, d, http) = start(
        "http-bad-requests",
        "request_timeout_secs = 1\nmax_request_bytes = 1024",
    );
    // One deadline for the whole head: a byte every 200 ms does not keep it open. The
    // 408 must come while the bytes still trickle (a timeout per read would never fire).
    let mut s = connect(http);
    s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let started = Instant::now();
    let mut first = [0u8; 64];
    let mut got = 0;
    while got == 0 && started.elapsed() < Duration::from_secs(10) {
        let _ = s.write_all(b"X");
        got = s.read(&mut first).unwrap_or(0);
    }
    let answered_after = started.elapsed();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let reply = String::from_utf8_lossy(&first[..got]).into_owned() + &read_to_close(&mut s);
    assert!(reply.starts_with("HTTP/1.1 408"), "trickle: {reply:?}");
    assert!(
        answered_after < Duration::from_secs(8),
        "the trickle kept the request open for {answered_after:?} (deadline 1 s)"
    );
    let cases: [(&str, &[u8], &str); 5] = [
        ("a head over max_request_bytes", &[b'A'; 2000], "HTTP/1.1 431"),
        (
            "a TLS client hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            "HTTP/1.1 400",
        ),
        (
            "a POST",
            b"POST /api/boards HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            "HTTP/1.1 405",
        ),
        ("HTTP/2's preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 505"),
        ("no path", b"GET healthz HTTP/1.1\r\n\r\n", "HTTP/1.1 400"),
    ];
    for (case, request, status) in cases {
        let reply = exchange(http, request);
        assert!(reply.starts_with(status), "{case}: {reply:?}");
    }
    // HEAD: the headers of GET, no body.
    let reply = exchange(http, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.contains("Content-Length: 3"),
        "{reply:?}"
    );
    assert!(reply.ends_with("\r\n\r\n"), "HEAD sent a body: {reply:?}");
    // A bare-LF client is served too.
    let reply = exchange(http, b"GET /healthz HTTP/1.0\n\n");
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok\n"),
        "{reply:?}"
    );
    board_gets_in(&d, "after-bad-requests");
    d.stop();
}

/// The process runs out of open files (boards holding them all): the dashboard cannot
/// accept meanwhile, says so, and serves again as soon as files are free. The server it
/// replaced stopped listening for good at the first failed accept.
#[test]
fn the_dashboard_keeps_listening_through_running_out_of_open_files() {
    let (_dir, d, http) = start("http-emfile", "");
    let limit = open_files(&d).len() + 8;
    let prlimit = std::process::Command::new("prlimit")
        .args(["--pid", &d.pid().to_string(), &format!("--nofile={limit}:{limit}")])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(prlimit.success(), "prlimit failed");
    // Boards take every file left: the boards' listener then says it cannot accept. One
    // board at a time, so the one that finds no file free is known to have been queued.
    let mut boards: Vec<TcpStream> = Vec::new();
    let out_of_files = "Cannot accept a connection (Too many open files";
    while !d.log_contains(out_of_files) {
        assert!(
            boards.len() < 64,
            "64 boards and the daemon never ran out of files (limit {limit}); it holds {:?}\nlog:\n{}",
            open_files(&d),
            d.log_text()
        );
        boards.push(d.connect());
        d.wait_for_log(out_of_files, Duration::from_millis(200));
    }
    // The dashboard's next accept fails: it says so and keeps trying.
    let mut pending = connect(http);
    pending.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(
        d.wait_for_log("The dashboard cannot accept a connection", Duration::from_secs(10))
            .is_some(),
        "{}",
        d.log_text()
    );
    // Files free again: the waiting request is served, and so are new ones.
    drop(boards);
    let reply = read_to_close(&mut pending);
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("ok\n"),
        "{reply:?}"
    );
    assert_eq!(http::get(&format!("http://{http}/healthz")).0, 200);
    d.stop();
}

/// Past `http.max_refusals_per_sec`, connections are not refused faster: they wait in the
/// kernel's queue and get their 503 in turn, so a client reconnecting in a loop cannot
/// spend the daemon's CPU on refusals.
#[test]
fn refusals_past_their_budget_are_paced_not_dropped() {
    let (_dir, d, http) = start("http-refusal-budget", "max_connections = 1\nmax_refusals_per_sec = 10");
    let mut held = connect(http);
    held.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || connection_threads(&d) == 1),
        "the held connection never got its thread"
    );
    // One refusal per tenth of a second: 15 take at least 1.4 s, and each gets its 503.
    let started = Instant::now();
    for i in 0..15 {
        let reply = read_to_close(&mut connect(http));
        assert!(reply.starts_with("HTTP/1.1 503"), "connection {i}: {reply:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1300),
        "15 refusals in {took:?} at 10 a second"
    );
    board_gets_in(&d, "paced");
    drop(held);
    d.stop();
}
