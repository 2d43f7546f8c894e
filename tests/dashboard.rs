//! The dashboard as a person sees it: real Chromium driven through WebDriver
//! (chromedriver, plain W3C WebDriver calls), two boards over TCP, a live update without
//! reload, a board turning silent, and the screenshot in docs/dashboard.png.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/test --install` installs them).
//! Missing, the test fails and says so: a browser test that skips itself would prove nothing.
//! `SENSORLOG_UPDATE_SCREENSHOT=1` also copies the screenshot to docs/dashboard.png.

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::daemon::{read_line, wait_until};
use crate::util::needs::program;
use crate::util::{Daemon, TestDir};

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1100,760",
];

/// chromedriver as a child process plus one browser session; both end on drop.
struct Browser {
    child: Child,
    http: reqwest::blocking::Client,
    base: String,
    session: String,
}

impl Browser {
    fn start(dir: &TestDir) -> Browser {
        let chromium = program(
            &["chromium", "chromium-browser"],
            &["/usr/lib/chromium"],
            "Chromium (the dashboard's browser test)",
            "chromium",
        );
        let driver = program(
            &["chromedriver"],
            &["/usr/lib/chromium"],
            "chromedriver (drives Chromium)",
            "chromium-driver",
        );
        let http = crate::util::http::client(Duration::from_secs(60));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let mut b = Browser {
            child,
            http,
            base,
            session: String::new(),
        };
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(1)).is_ok()
        });
        assert!(up, "chromedriver did not listen on port {port} within 20 s");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", dir.join("chromium-profile").display()));
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let v = b.call("POST", "/session", caps);
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session from chromedriver: {v}"))
            .to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{}", self.base, path);
        let req = match method {
            "POST" => self.http.post(&url).json(&body),
            "DELETE" => self.http.delete(&url),
            _ => self.http.get(&url),
        };
        let resp = req.send().unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp
            .json()
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: bad JSON: {e}"));
        assert!(status.is_success(), "WebDriver {method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn goto(&self, url: &str) {
        self.session_call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Polls `script` until `pred` holds or `timeout` passes; returns the last value.
    fn wait_js(&self, script: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> (bool, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.js(script);
            if pred(&v) {
                return (true, v);
            }
            if Instant::now() >= deadline {
                return (false, v);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let v = self.session_call("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("screenshot is base64"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(to, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .http
                .delete(format!("{}/session/{}", self.base, self.session))
                .send();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A board on its own thread: one reading every `every`, `temp_c` from `value`
/// (hundredths), until `stop`. With acks it waits for each ACK.
struct Board {
    value: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Board {
    fn start(d: &Daemon, name: &'static str, ack: bool, every: Duration, start_value: u64) -> Board {
        let mut s = d.connect();
        let (value, sent, stop) = (
            Arc::new(AtomicU64::new(start_value)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (v, n, st) = (Arc::clone(&value), Arc::clone(&sent), Arc::clone(&stop));
        let handle = std::thread::spawn(move || {
            if ack {
                s.write_all(format!("HELLO {name} boot=b1 ack=1\n").as_bytes()).unwrap();
                assert_eq!(read_line(&mut s).as_deref(), Some(&*format!("OK HELLO {name}")));
            }
            let mut seq = 0u64;
            // Bounded: at most 10 minutes of readings even if nobody stops it.
            while !st.load(Ordering::Acquire) && seq < (600.0 / every.as_secs_f64().max(0.01)) as u64 {
                seq += 1;
                let t = v.load(Ordering::Acquire);
                let humidity = 40 + (seq % 7);
                let line = if ack {
                    format!(
                        "{{\"seq\":{seq},\"temp_c\":{}.{:02},\"humidity\":{humidity}}}\n",
                        t / 100,
                        t % 100
                    )
                } else {
                    format!("device={name} temp_c={}.{:02} humidity={humidity}\n", t / 100, t % 100)
                };
                if s.write_all(line.as_bytes()).is_err() {
                    break;
                }
                if ack {
                    assert_eq!(read_line(&mut s), Some(format!("ACK {seq}")));
                }
                n.fetch_add(1, Ordering::AcqRel);
                std::thread::sleep(every);
            }
        });
        Board {
            value,
            sent,
            stop,
            handle: Some(handle),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn card(device: &str, what: &str) -> String {
    format!("const c = document.querySelector('section.board[data-device=\"{device}\"]'); return c ? {what} : null;")
}

#[test]
fn dashboard_shows_boards_live_and_turns_a_stopped_board_silent() {
    let dir = TestDir::new("dashboard");
    let d = Daemon::start_with_config(&dir, "[boards]\nchart_window_secs = 60\nchart_points = 60\nnew_name_burst = 2\n[alerts]\nmin_silent_secs = 2\nsilent_factor = 3\n", &[]);
    let http = d.http_addr();
    let mut kitchen = Board::start(&d, "kitchen", true, Duration::from_millis(250), 2150);
    let mut garage = Board::start(&d, "garage", false, Duration::from_millis(250), 1200);
    assert!(
        wait_until(Duration::from_secs(10), || kitchen.sent.load(Ordering::Acquire) >= 4
            && garage.sent.load(Ordering::Acquire) >= 4),
        "boards could not send; log:\n{}",
        d.log_text()
    );

    let browser = Browser::start(&dir);
    browser.goto(&format!("http://{http}/"));
    // Both boards on the page, ok, with values, peer and acknowledgement use.
    for (device, ack) in [("kitchen", "acks on"), ("garage", "acks off")] {
        let (ok, v) = browser.wait_js(
            &card(device, "[c.dataset.status, c.querySelector('.ack').textContent, c.querySelector('.peer').textContent, c.querySelector('.seen').textContent]"),
            Duration::from_secs(10),
            |v| v[0] == "ok",
        );
        assert!(ok, "{device} not shown as ok: {v}");
        assert_eq!(v[1], ack, "{device}: {v}");
        assert!(v[2].as_str().unwrap().starts_with("peer 127.0.0.1:"), "{device}: {v}");
        assert!(v[3].as_str().unwrap().starts_with("last seen "), "{device}: {v}");
    }
    let header = browser.js("return document.getElementById('totals').textContent;");
    assert!(
        header.as_str().unwrap().starts_with("2 boards (2 ok, 0 silent)"),
        "{header}"
    );
    assert!(header.as_str().unwrap().contains("Sheets off"), "{header}");

    // A new value reaches the value cell and the chart within 2 s, without a reload.
    browser.js("window.__sameDocument = true; return null;");
    let canvas = card("kitchen", "c.querySelector('canvas').toDataURL()");
    let before = browser.js(&canvas);
    let sent_before = kitchen.sent.load(Ordering::Acquire);
    kitchen.value.store(9_950, Ordering::Release);
    // The reading is in the CSV once it is acknowledged: time starts there.
    assert!(wait_until(Duration::from_secs(5), || kitchen
        .sent
        .load(Ordering::Acquire)
        > sent_before + 1));
    let (ok, v) = browser.wait_js(
        &card(
            "kitchen",
            "[c.querySelector('td.value[data-field=\"temp_c\"]').textContent, (() => { const d = window.sensorlog.boards.get('kitchen').chart.data; const ys = d[1]; return ys[ys.length - 1]; })()]",
        ),
        Duration::from_secs(2),
        |v| v[0] == "99.50" && v[1] == 99.5,
    );
    assert!(ok, "the new value did not reach the page and its chart within 2 s: {v}");
    let after = browser.js(&canvas);
    assert_ne!(before, after, "the chart was not redrawn");
    assert_eq!(
        browser.js("return window.__sameDocument === true;"),
        true,
        "the page reloaded"
    );

    // garage stops: it turns silent on the page (its usual interval is 0.25 s).
    garage.stop();
    let (ok, v) = browser.wait_js(&card("garage", "c.dataset.status"), Duration::from_secs(15), |v| {
        v == "silent"
    });
    assert!(ok, "garage did not turn silent: {v}; log:\n{}", d.log_text());
    assert!(
        d.log_contains("Board garage is silent: nothing for"),
        "{}",
        d.log_text()
    );
    let (ok, header) = browser.wait_js(
        "return document.getElementById('totals').textContent;",
        Duration::from_secs(3),
        |v| v.as_str().unwrap_or("").starts_with("2 boards (1 ok, 1 silent)"),
    );
    assert!(ok, "{header}");
    assert_eq!(browser.js(&card("kitchen", "c.dataset.status")), "ok");

    // Settle the kitchen chart on its usual values for the picture.
    kitchen.value.store(2_180, Ordering::Release);
    std::thread::sleep(Duration::from_millis(1500));
    let shot = dir.join("dashboard.png");
    browser.screenshot(&shot);
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::copy(&shot, &artifact).unwrap();
    if std::env::var_os("SENSORLOG_UPDATE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png")).unwrap();
    }
    // Readable on a phone: at 390 px wide nothing runs off the side, the cards stack.
    browser.session_call("POST", "/window/rect", json!({"width": 390, "height": 844}));
    let (ok, v) = browser.wait_js(
        "const a = document.querySelectorAll('section.board'); return [document.documentElement.scrollWidth, window.innerWidth, a.length, a[0].getBoundingClientRect().right, a[1].getBoundingClientRect().top > a[0].getBoundingClientRect().bottom];",
        Duration::from_secs(5),
        |v| v[0].as_f64() <= v[1].as_f64() && v[4] == true,
    );
    assert!(
        ok,
        "not phone-sized: [page width, window width, cards, card right edge, stacked] = {v}"
    );
    browser.screenshot(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-phone.png"));

    // Issue 22: a connection past its budget of new names (2 here): the header says how
    // many readings the dashboard leaves out.
    let mut clock = d.connect();
    clock
        .write_all(b"device=clock-1 t=1\ndevice=clock-2 t=2\ndevice=clock-3 t=3\ndevice=clock-4 t=4\n")
        .unwrap();
    let (ok, header) = browser.wait_js(
        "return document.getElementById('totals').textContent;",
        Duration::from_secs(5),
        |v| {
            v.as_str()
                .unwrap_or("")
                .contains("2 readings under new names not tracked (boards.new_name_burst)")
        },
    );
    assert!(ok, "{header}");
    assert!(header.as_str().unwrap().starts_with("4 boards"), "{header}");
    drop(clock);
    kitchen.stop();
    drop(browser);
    d.stop();
}

/// Issue 19: right after the quick start a board has sent one reading, so its chart has one
/// point. uPlot pads a one-point time axis by 86,400,000 s; the chart's range kept that end
/// and the point was drawn ~1000 days to the left of the plot. Its point must be inside.
#[test]
fn issue19_a_board_with_exactly_one_reading_draws_its_point_inside_the_chart() {
    let dir = TestDir::new("dashboard-one-point");
    let d = Daemon::start_with_config(&dir, "[boards]\nchart_window_secs = 600\n", &[]);
    let mut s = d.connect();
    s.write_all(b"HELLO attic boot=b1 ack=1\n").unwrap();
    assert_eq!(read_line(&mut s).as_deref(), Some("OK HELLO attic"));
    s.write_all(b"{\"seq\":1,\"temp_c\":19.5}\n").unwrap();
    assert_eq!(read_line(&mut s).as_deref(), Some("ACK 1"), "log:\n{}", d.log_text());

    let browser = Browser::start(&dir);
    browser.goto(&format!("http://{}/", d.http_addr()));
    // [points in the chart, the point's x in CSS px from the plot's left edge, plot width,
    //  the x scale's ends and the point's time in seconds]
    let probe = "const b = window.sensorlog.boards.get('attic'); if (!b) return null; \
         b.root.scrollIntoView(); const u = b.chart; \
         if (!u || u.data[0].length === 0) return null; const t = u.data[0][0]; \
         return [u.data[0].length, u.valToPos(t, 'x'), u.over.clientWidth, u.scales.x.min, u.scales.x.max, t];";
    let (ok, v) = browser.wait_js(probe, Duration::from_secs(10), |v| !v.is_null());
    assert!(ok, "the attic board's chart was not drawn: {v}; log:\n{}", d.log_text());
    assert_eq!(v[0], 1, "one reading, one point: {v}");
    let (x, width) = (v[1].as_f64().unwrap(), v[2].as_f64().unwrap());
    assert!(width > 100.0, "plot width {width}: {v}");
    assert!(
        (0.0..=width).contains(&x),
        "the only point is drawn at x = {x} px, outside the plot (0..{width} px); \
         [points, x, width, scale min, scale max, point time] = {v}"
    );
    let (max, t) = (v[4].as_f64().unwrap(), v[5].as_f64().unwrap());
    assert!(
        max - t < 3600.0,
        "the time axis ends {} s after the point: {v}",
        max - t
    );
    drop(browser);
    drop(s);
    d.stop();
}
