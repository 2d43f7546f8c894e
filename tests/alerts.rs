//! Silent-board alerts: one log line per change, and the webhook through a failing and
//! an absent receiver (a `tiny_http` server on loopback).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::util::daemon::wait_until;
use crate::util::{Daemon, TestDir};

/// A webhook receiver: answers 503 to the first `fail_first` requests, then records
/// each JSON body and answers 200.
struct Receiver {
    got: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(addr: SocketAddr, fail_first: usize) -> Receiver {
        let server = tiny_http::Server::http(addr).expect("bind the webhook receiver");
        let (got, attempts, stop) = (
            Arc::new(Mutex::new(Vec::new())),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (g, a, s) = (Arc::clone(&got), Arc::clone(&attempts), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Acquire) {
                let Ok(Some(mut rq)) = server.recv_timeout(Duration::from_millis(100)) else {
                    continue;
                };
                let n = a.fetch_add(1, Ordering::AcqRel) + 1;
                let mut body = String::new();
                rq.as_reader().take(1 << 20).read_to_string(&mut body).unwrap();
                assert_eq!(rq.method(), &tiny_http::Method::Post);
                let json_type = rq
                    .headers()
                    .iter()
                    .any(|h| h.field.equiv("Content-Type") && h.value.as_str().starts_with("application/json"));
                assert!(json_type, "webhook without a JSON content type");
                if n <= fail_first {
                    let _ = rq.respond(tiny_http::Response::from_string("down").with_status_code(503));
                    continue;
                }
                g.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).expect("webhook body is JSON"));
                let _ = rq.respond(tiny_http::Response::from_string("ok"));
            }
        });
        Receiver {
            got,
            attempts,
            stop,
            handle: Some(handle),
        }
    }

    fn alerts(&self) -> Vec<Value> {
        self.got.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn config(dir: &TestDir, hook: SocketAddr) -> String {
    dir.write(
        "sensorlog.toml",
        &format!(
            "[alerts]\nmin_silent_secs = 1\nsilent_factor = 2\nwebhook_url = \"http://{hook}/hook/secret-token\"\nwebhook_timeout_secs = 2\n"
        ),
    )
    .display()
    .to_string()
}

/// Sends `n` readings from `device`, 200 ms apart, on `s`.
fn readings(s: &mut std::net::TcpStream, device: &str, n: usize) {
    for i in 0..n {
        s.write_all(format!("device={device} level={i}\n").as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn count_lines(d: &Daemon, needle: &str) -> usize {
    d.log_text().lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn silent_board_is_logged_once_each_way_and_the_webhook_gets_both_despite_failures() {
    let dir = TestDir::new("alerts-webhook");
    let hook = free_addr();
    let rx = Receiver::start(hook, 2);
    let cfg = config(&dir, hook);
    let d = Daemon::start(&dir, &["--config", &cfg]);
    let mut s = d.connect();
    readings(&mut s, "pump", 4);
    // Quiet for > 1 s (min_silent_secs): silent. Two 503s first, then delivered.
    assert!(
        wait_until(Duration::from_secs(20), || !rx.alerts().is_empty()),
        "no alert delivered; attempts {}; log:\n{}",
        rx.attempts.load(Ordering::Acquire),
        d.log_text()
    );
    let silent = &rx.alerts()[0];
    assert_eq!(silent["board"], "pump");
    assert_eq!(silent["status"], "silent");
    assert!(silent["last_seen"].as_str().unwrap().ends_with('Z'), "{silent}");
    let usual = silent["usual_interval_secs"].as_f64().unwrap();
    assert!((0.1..1.0).contains(&usual), "usual interval {usual}");
    assert!(
        silent["text"].as_str().unwrap().starts_with("Board pump is silent"),
        "{silent}"
    );
    assert_eq!(rx.attempts.load(Ordering::Acquire), 3, "two failures, then the alert");
    // The board reports again: one "ok" change.
    readings(&mut s, "pump", 1);
    assert!(
        wait_until(Duration::from_secs(10), || rx.alerts().len() >= 2),
        "{}",
        d.log_text()
    );
    assert_eq!(rx.alerts()[1]["status"], "ok");
    assert_eq!(rx.alerts()[1]["board"], "pump");
    // Several checks happened meanwhile, but one line per change.
    assert_eq!(count_lines(&d, "Board pump is silent"), 1, "{}", d.log_text());
    assert_eq!(count_lines(&d, "Board pump is reporting again"), 1, "{}", d.log_text());
    assert!(
        d.log_contains("WARN") && d.log_contains("The alert webhook (http://"),
        "{}",
        d.log_text()
    );
    assert!(!d.log_contains("secret-token"), "the webhook URL's path was logged");
    drop(s);
    d.stop();
}

#[test]
fn alerts_wait_out_a_receiver_outage() {
    let dir = TestDir::new("alerts-outage");
    let hook = free_addr(); // nothing listens there yet
    let cfg = config(&dir, hook);
    let d = Daemon::start(&dir, &["--config", &cfg]);
    let mut s = d.connect();
    readings(&mut s, "valve", 3);
    assert!(
        d.wait_for_log("Board valve is silent", Duration::from_secs(10))
            .is_some(),
        "{}",
        d.log_text()
    );
    assert!(
        d.wait_for_log("The alert webhook (http://", Duration::from_secs(10))
            .is_some(),
        "{}",
        d.log_text()
    );
    // The receiver comes up later; the queued alert still arrives.
    let rx = Receiver::start(hook, 0);
    assert!(
        wait_until(Duration::from_secs(20), || !rx.alerts().is_empty()),
        "{}",
        d.log_text()
    );
    assert_eq!(rx.alerts()[0]["board"], "valve");
    assert_eq!(rx.alerts()[0]["status"], "silent");
    assert!(
        d.wait_for_log("answers again", Duration::from_secs(5)).is_some(),
        "{}",
        d.log_text()
    );
    drop(s);
    d.stop();
}
