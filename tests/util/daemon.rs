//! The real `sensorlog` binary as a child process, plus a unique temp dir per test.
//!
//! The daemon is started on `127.0.0.1:0`; its stderr is read by a thread and the
//! bound address is taken from the "Listening on" log line. Every wait is bounded,
//! and the child is killed (by its own pid) when the `Daemon` is dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Path of the binary under test, built by cargo for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_sensorlog");

/// A fresh directory under `target/` for one test; removed on drop unless the test failed.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let path = root.join(format!("{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    pub fn write(&self, rel: &str, contents: &str) -> PathBuf {
        let p = self.join(rel);
        std::fs::write(&p, contents).unwrap();
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Everything the daemon printed to stderr so far, shared with the reader thread.
#[derive(Default)]
struct Log {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
    /// Reader threads (stderr, stdout) that have reached end of file.
    finished: AtomicU64,
}

pub struct Daemon {
    child: Child,
    log: Arc<Log>,
    pub addr: SocketAddr,
    pub csv: PathBuf,
}

impl Daemon {
    /// Starts `sensorlog serve` in `dir` with its CSV at `dir/readings.csv`, listening on
    /// 127.0.0.1:0, plus `extra` arguments. Panics if it does not report its address in 20 s.
    pub fn start(dir: &TestDir, extra: &[&str]) -> Daemon {
        let csv = dir.join("readings.csv");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--csv".into(),
            csv.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = Daemon::start_raw(dir, &args);
        d.csv = csv;
        d
    }

    /// Writes `toml` as `dir/sensorlog.toml` and starts the daemon with it, plus `extra`.
    pub fn start_with_config(dir: &TestDir, toml: &str, extra: &[&str]) -> Daemon {
        let cfg = dir.write("sensorlog.toml", toml).display().to_string();
        let mut args = vec!["--config", cfg.as_str()];
        args.extend_from_slice(extra);
        Daemon::start(dir, &args)
    }

    /// Starts the binary with exactly `args` and waits (20 s at most) for its address.
    pub fn start_raw(dir: &TestDir, args: &[String]) -> Daemon {
        let mut d = Daemon::spawn(dir, args, "debug");
        let line = d
            .wait_for_log("Listening on", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("daemon did not start; log:\n{}", d.log_text()));
        let addr = line
            .split("Listening on ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .map(|s| s.trim_end_matches(['.', ',']))
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        d.addr = addr.parse().unwrap_or_else(|e| panic!("bad address {addr:?}: {e}"));
        d
    }

    /// Spawns the binary with exactly `args` (no wait for readiness). `rust_log` sets RUST_LOG.
    pub fn spawn(dir: &TestDir, args: &[String], rust_log: &str) -> Daemon {
        // Parallel tests cannot all have the dashboard's default port: pick a free one.
        let mut args = args.to_vec();
        if args.first().is_some_and(|a| a == "serve") && !args.iter().any(|a| a == "--http-listen") {
            args.extend(["--http-listen".to_string(), "127.0.0.1:0".to_string()]);
        }
        // A bench may run an older build for its "before" figure (`SENSORLOG_BENCH_BIN`).
        let bin = std::env::var_os("SENSORLOG_BENCH_BIN").unwrap_or_else(|| BIN.into());
        let mut child = Command::new(bin)
            .args(&args)
            .current_dir(&dir.path)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sensorlog");
        let log = Arc::new(Log::default());
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lines.lock().unwrap().push(line);
                    log.changed.notify_all();
                }
                log.finished.fetch_add(1, Ordering::SeqCst);
                log.changed.notify_all();
            });
        }
        Daemon {
            child,
            log,
            addr: "127.0.0.1:0".parse().unwrap(),
            csv: dir.join("readings.csv"),
        }
    }

    /// The dashboard's address, from the "Dashboard at http://ADDR/" log line (20 s at most).
    pub fn http_addr(&self) -> SocketAddr {
        let line = self
            .wait_for_log("Dashboard at http://", Duration::from_secs(20))
            .unwrap_or_else(|| panic!("no dashboard address in the log:\n{}", self.log_text()));
        let addr = line
            .split("Dashboard at http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or("");
        addr.parse()
            .unwrap_or_else(|e| panic!("bad dashboard address {addr:?}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until a log line contains `needle`; returns that line.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.log.lines.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return Some(l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self.log.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lines.lock().unwrap().join("\n")
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lines.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends SIGTERM (graceful shutdown) to the daemon.
    pub fn terminate(&self) {
        signal(self.pid(), "TERM");
    }

    /// Sends SIGHUP (reopen the CSV: the logrotate convention).
    pub fn hangup(&self) {
        signal(self.pid(), "HUP");
    }

    /// Sends SIGINT (Ctrl-C) to the daemon.
    pub fn interrupt(&self) {
        signal(self.pid(), "INT");
    }

    /// SIGKILL: the crash case. Waits for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit, up to `timeout`, and then for its last log lines
    /// (the reader threads see end of file a moment after the exit).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let drained = Instant::now() + Duration::from_secs(5);
        let mut lines = self.log.lines.lock().unwrap();
        while self.log.finished.load(Ordering::SeqCst) < 2 && Instant::now() < drained {
            lines = self
                .log
                .changed
                .wait_timeout(lines, Duration::from_millis(50))
                .unwrap()
                .0;
        }
        Some(status)
    }

    /// SIGTERM and wait for a clean exit; panics with the log if it does not exit 0 in 30 s.
    pub fn stop(mut self) -> String {
        self.shutdown()
    }

    /// As [`Daemon::stop`], keeping the handle (for its log and CSV path).
    pub fn shutdown(&mut self) -> String {
        self.terminate();
        let st = self.wait_exit(Duration::from_secs(30));
        let log = self.log_text();
        assert!(
            matches!(st, Some(s) if s.success()),
            "daemon did not exit cleanly ({st:?}); log:\n{log}"
        );
        log
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Sends every line (adding `\n`) and then half-closes the write side.
pub fn send_lines(stream: &mut TcpStream, lines: &[String]) {
    let mut buf = String::new();
    for l in lines {
        buf.push_str(l);
        buf.push('\n');
    }
    stream.write_all(buf.as_bytes()).unwrap();
}

/// Reads one `\n`-terminated line (without it) or `None` at EOF / timeout.
pub fn read_line(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return if out.is_empty() { None } else { Some(lossy(out)) },
            Ok(_) if byte[0] == b'\n' => return Some(lossy(out)),
            Ok(_) => out.push(byte[0]),
            Err(_) => return None,
        }
    }
}

fn lossy(v: Vec<u8>) -> String {
    String::from_utf8_lossy(&v).trim_end_matches('\r').to_string()
}

/// After the daemon died mid-write (`kill -9`, a second Ctrl-C): every row up to the
/// file's last newline is whole, and past it there may be a torn row (the kernel stops a
/// large write at a page boundary; CI has seen files of exactly 780 and 3,392 pages). No
/// reading in a torn row was acknowledged. Starts the daemon again in `dir` with `extra`
/// and checks that it cuts a torn row exactly when there is one; returns it and the whole
/// rows the crash left.
pub fn restart_after_a_crash(dir: &TestDir, extra: &[&str]) -> (Daemon, Vec<Vec<String>>) {
    let csv = dir.join("readings.csv");
    let torn = !std::fs::read(&csv).unwrap().ends_with(b"\n");
    let rows = read_csv_so_far(&csv);
    assert!(rows.iter().all(|r| r.len() == HEADER.len()), "whole rows only");
    let d = Daemon::start(dir, extra);
    assert_eq!(
        d.log_contains("cut a torn last row"),
        torn,
        "a torn last row is cut at start, and only then; log:\n{}",
        d.log_text()
    );
    (d, rows)
}

/// [`read_csv`] for polling a file the daemon is still writing: only complete lines
/// count. A row being appended can be seen half-written (a large write reaches the page
/// cache in pieces), which is not yet a row, not a broken file.
pub fn read_csv_so_far(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    parse_csv(path, &bytes[..complete])
}

/// Parses the CSV at `path` into records (header included), panicking with context.
pub fn read_csv(path: &Path) -> Vec<Vec<String>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    parse_csv(path, &bytes)
}

fn parse_csv(path: &Path, bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| {
            r.unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// The CSV header the daemon writes. Deliberately a copy, not `sensorlog::sink::csv::encode::HEADER`:
/// changing the header breaks every existing CSV file, so it must break a test too.
pub const HEADER: [&str; 9] = [
    "received_at",
    "device",
    "field",
    "value",
    "type",
    "peer",
    "boot",
    "seq",
    "device_time",
];

/// Polls until `pred` holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if pred() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}
