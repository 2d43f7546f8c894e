//! The board firmware against the real daemon (issue 4).
//!
//! `make -C firmware/host` compiles the unchanged `esp8266.ino` and `feather_m0.ino`
//! with the host shim (a short reading interval and short retry delays come in as
//! `-D` settings), once per test run. Each test then starts `sensorlog serve`, a
//! fault-injecting TCP proxy in front of it on a port that never changes, and
//! several simulated boards of each kind that reach "the server" through the proxy
//! (`SIM_SERVER`). The boards' serial logs (their stdout) say which readings they
//! took, which the daemon acknowledged and which they dropped; the CSV is checked
//! row by row against them: every reading present exactly once, with every field.
//!
//! Faults: the daemon stopped and started again behind the proxy; the connection
//! cut after the daemon wrote a reading but before its ACK reached the board; the
//! Wi-Fi gone long enough for the RAM buffer to overflow.
//!
//! Issue 11: a board powered off and on again with no entropy at all (the shim's
//! `SIM_ENTROPY=none`) still gets a new boot id from its boot counter in flash
//! (`SIM_FLASH_FILE`), so every reading of its second power-on is written, and
//! its status line (`fw_*` fields) is stored like any reading. Issue 12: the
//! greeting carries the device token (`SENSORLOG_TOKEN`), and the token never
//! appears in the serial log. The Feather's watchdog (4 s in the test build)
//! ends a write() that never returns, but not a connect() that takes longer than
//! its period (WiFi101's may take 20 s), which runs inside a BlockingCall.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::util::daemon::{read_csv, wait_until, HEADER};
use crate::util::{Daemon, TestDir};

/// Settings of the test build of the sketches (`-D`, see firmware/README.md).
const INTERVAL_MS: u64 = 200;
const BUFFER_READINGS: usize = 16;
/// The device token the test build greets with (`secrets.h`'s `SENSORLOG_TOKEN`).
const TOKEN: &str = "fwTestToken-0123456789abcdefABCDEF_xyz";
const BUILD_DEFS: &[&str] = &[
    "-DSENSORLOG_INTERVAL_MS=200",
    "-DSENSORLOG_STATUS_INTERVAL_MS=1000",
    // Quoted for the shell of make's recipe: the macro is a C string literal.
    "-DSENSORLOG_TOKEN=\\\"fwTestToken-0123456789abcdefABCDEF_xyz\\\"",
    "-DSENSORLOG_BUFFER_READINGS=16",
    "-DSENSORLOG_RETRY_MIN_MS=100",
    "-DSENSORLOG_RETRY_MAX_MS=400",
    "-DSENSORLOG_GREETING_TIMEOUT_MS=2000",
    "-DSENSORLOG_ACK_TIMEOUT_MS=3000",
    "-DSENSORLOG_WIFI_JOIN_TIMEOUT_MS=500",
    "-DSENSORLOG_SERIAL_WAIT_MS=0",
    // Feather M0: a 4 s watchdog (16 s on the boards), so that a hang ends quickly.
    "-DSENSORLOG_WATCHDOG_MS=4000",
];

/// How long a board may take to have everything it took acknowledged once the
/// fault is over. Generous: a passing run syncs in a few seconds, but on a machine
/// shared with other builds (load 13 was seen) 20 s was once not enough, and the bound
/// is only there so that a broken build fails instead of hanging.
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The host build

/// Builds both sketches for the host once per test binary; returns the build dir.
fn host_build() -> &'static Path {
    static BUILD: OnceLock<PathBuf> = OnceLock::new();
    BUILD.get_or_init(|| {
        for (p, what, package) in [
            ("make", "make (the firmware host build)", "make"),
            ("g++", "a C++ compiler (the firmware host build)", "g++"),
        ] {
            crate::util::needs::program(&[p], &[], what, package);
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("firmware-host");
        let makefile_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware/host");
        let started = Instant::now();
        let out = Command::new("make")
            .arg("-C")
            .arg(&makefile_dir)
            .arg(format!("BUILD_DIR={}", dir.display()))
            .arg(format!("DEFS={}", BUILD_DEFS.join(" ")))
            .arg("-j2")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run make (needs make and g++): {e}"));
        assert!(
            out.status.success(),
            "host build of the sketches failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("firmware host build: {:?}", started.elapsed());
        dir
    })
}

// ---------------------------------------------------------------------------
// Simulated boards

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Esp8266,
    FeatherM0,
}

impl Kind {
    fn binary(self) -> &'static str {
        match self {
            Kind::Esp8266 => "esp8266",
            Kind::FeatherM0 => "feather_m0",
        }
    }
}

/// One simulated board: the host-built sketch as a child process. Killed (by its
/// own pid) on drop.
struct Board {
    kind: Kind,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

impl Board {
    fn spawn(kind: Kind, chip_id: u32, server: SocketAddr, env: &[(&str, String)]) -> Board {
        let mut cmd = Command::new(host_build().join(kind.binary()));
        cmd.env("SIM_SERVER", server.to_string())
            .env("SIM_CHIP_ID", format!("{chip_id:06x}"))
            .env("SIM_RUN_MS", "60000")
            .env("SIM_WIFI_JOIN_MS", "100")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn a simulated board");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for (stream, prefix) in [
            (Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>, ""),
            (Box::new(child.stderr.take().unwrap()), "stderr: "),
        ] {
            let log = Arc::clone(&log);
            readers.push(thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    log.lock()
                        .unwrap()
                        .push(format!("{prefix}{}", line.trim_end_matches('\r')));
                }
            }));
        }
        Board {
            kind,
            child,
            log,
            readers,
            exit: None,
        }
    }

    fn report(&self) -> BoardLog {
        BoardLog::parse(&self.log.lock().unwrap())
    }

    fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then waits (bounded) for a clean exit and the end of its output.
    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.exit.is_none() && Instant::now() < deadline {
            self.exit = self.child.try_wait().unwrap();
            thread::sleep(Duration::from_millis(10));
        }
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return;
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a board's serial log says.
#[derive(Debug, Default)]
struct BoardLog {
    device: String,
    boot: String,
    /// The boot counter of this power-on (`boots=` of the boot line).
    boots: u64,
    /// seq -> the reading's key=value pairs as taken (seq and ts included).
    taken: BTreeMap<u64, Vec<(String, String)>>,
    acked: BTreeSet<u64>,
    dropped: BTreeSet<u64>,
    resent: BTreeSet<u64>,
    wifi_lost: usize,
}

impl BoardLog {
    fn parse(lines: &[String]) -> BoardLog {
        let mut log = BoardLog::default();
        for line in lines {
            // "[     1.234] message"
            let Some(msg) = line.strip_prefix('[').and_then(|l| l.split_once("] ")).map(|(_, m)| m) else {
                continue;
            };
            if let Some(rest) = msg.strip_prefix("Boot: ") {
                let pairs = pairs(rest.trim_end_matches('.'));
                log.device = value_of(&pairs, "device").unwrap_or_default();
                log.boot = value_of(&pairs, "boot").unwrap_or_default();
                log.boots = value_of(&pairs, "boots").and_then(|b| b.parse().ok()).unwrap_or(0);
            } else if let Some(rest) = msg.strip_prefix("Reading taken: ") {
                let pairs = pairs(rest);
                let seq = value_of(&pairs, "seq").and_then(|s| s.parse().ok()).expect("seq");
                log.taken.insert(seq, pairs);
            } else if let Some(rest) = msg.strip_prefix("Acknowledged seq=") {
                log.acked.insert(leading_number(rest));
            } else if let Some(i) = msg.find("dropped seq=") {
                log.dropped.insert(leading_number(&msg[i + "dropped seq=".len()..]));
            } else if let Some(rest) = msg.strip_prefix("Resent seq=") {
                log.resent.insert(leading_number(rest));
            } else if msg.starts_with("Wi-Fi lost") || msg.starts_with("Wi-Fi is down") {
                log.wifi_lost += 1;
            }
        }
        log
    }

    fn last_taken(&self) -> Option<u64> {
        self.taken.keys().next_back().copied()
    }

    /// Everything taken so far is acknowledged (or was dropped).
    fn synced(&self) -> Option<u64> {
        let last = self.last_taken()?;
        let all = self
            .taken
            .keys()
            .all(|s| self.acked.contains(s) || self.dropped.contains(s));
        all.then_some(last)
    }
}

fn pairs(text: &str) -> Vec<(String, String)> {
    text.split_whitespace()
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn value_of(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn leading_number(text: &str) -> u64 {
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no number at the start of {text:?}"))
}

/// Three boards of each kind (distinct chip ids, hence device names).
fn spawn_fleet(server: SocketAddr, first_chip: u32) -> Vec<Board> {
    let mut boards = Vec::new();
    for i in 0..3 {
        boards.push(Board::spawn(Kind::Esp8266, first_chip + i, server, &[]));
        boards.push(Board::spawn(Kind::FeatherM0, first_chip + 0x100 + i, server, &[]));
    }
    boards
}

/// Waits (bounded) until every board has had all its readings acknowledged at
/// some moment after `since_seq`, then stops them all with SIGTERM. Returns each
/// board's log and the seq up to which it was in sync.
fn sync_and_stop(boards: &mut [Board], min_readings: u64) -> Vec<(BoardLog, u64)> {
    let mut sync: Vec<Option<u64>> = vec![None; boards.len()];
    let ok = wait_until(SYNC_TIMEOUT, || {
        for (i, b) in boards.iter().enumerate() {
            if sync[i].is_none() {
                let r = b.report();
                sync[i] = r.synced().filter(|&s| s >= min_readings);
            }
        }
        sync.iter().all(Option::is_some)
    });
    if !ok {
        let mut msg = String::from("boards did not get all their readings acknowledged:\n");
        for (i, b) in boards.iter().enumerate() {
            if sync[i].is_none() {
                let r = b.report();
                let open: Vec<u64> = r
                    .taken
                    .keys()
                    .copied()
                    .filter(|s| !r.acked.contains(s) && !r.dropped.contains(s))
                    .collect();
                msg.push_str(&format!(
                    "--- {:?} board {i} ({}), never acknowledged: {open:?}\n{}\n",
                    b.kind,
                    r.device,
                    b.log_tail(30)
                ));
            }
        }
        panic!("{msg}");
    }
    for b in boards.iter_mut() {
        b.terminate();
    }
    let mut out = Vec::new();
    for (i, b) in boards.iter().enumerate() {
        assert!(
            matches!(b.exit, Some(st) if st.success()),
            "{:?} board {i} did not stop cleanly on SIGTERM ({:?}):\n{}",
            b.kind,
            b.exit,
            b.log_tail(20)
        );
        assert!(
            b.log
                .lock()
                .unwrap()
                .iter()
                .any(|l| l.contains("[host] Stopping: stop signal received")),
            "board {i} did not report its stop"
        );
        out.push((b.report(), sync[i].unwrap()));
    }
    out
}

// ---------------------------------------------------------------------------
// The CSV check

/// One field of one reading as found in the CSV (keyed by device, seq and field).
struct CsvCell {
    value: String,
    typ: String,
    device_time: String,
    rows: usize,
}

/// Every row belongs to a reading a board took; no (device, boot, seq, field)
/// twice; every reading a board had acknowledged, and every reading up to its
/// sync point that it did not drop, is there with exactly its fields and values.
fn check_csv(csv: &Path, boards: &[(BoardLog, u64)]) {
    let rows = read_csv(csv);
    assert_eq!(
        rows.first().map(|r| r.as_slice()),
        Some(&HEADER.map(String::from)[..]),
        "header"
    );
    let by_device: HashMap<&str, &BoardLog> = boards.iter().map(|(b, _)| (b.device.as_str(), b)).collect();
    assert_eq!(by_device.len(), boards.len(), "device names are not distinct");

    let mut found: HashMap<(String, u64), BTreeMap<String, CsvCell>> = HashMap::new();
    for (n, row) in rows.iter().enumerate().skip(1) {
        assert_eq!(row.len(), HEADER.len(), "row {n}: {row:?}");
        let (device, field, value, typ, boot, seq, ts) =
            (&row[1], &row[2], &row[3], &row[4], &row[6], &row[7], &row[8]);
        let board = by_device
            .get(device.as_str())
            .unwrap_or_else(|| panic!("row {n} is from no simulated board: {row:?}"));
        assert_eq!(boot, &board.boot, "row {n}: boot id");
        let seq: u64 = seq.parse().unwrap_or_else(|_| panic!("row {n}: seq {seq:?}"));
        assert!(board.taken.contains_key(&seq), "row {n}: {device} never took seq {seq}");
        let entry = found.entry((device.clone(), seq)).or_default();
        let cell = entry.entry(field.clone()).or_insert(CsvCell {
            value: value.clone(),
            typ: typ.clone(),
            device_time: ts.clone(),
            rows: 0,
        });
        cell.rows += 1;
        assert_eq!(cell.rows, 1, "row {n}: {device} seq {seq} field {field} written twice");
    }

    for (board, synced) in boards {
        eprintln!(
            "{}: {} readings taken, {} acknowledged, {} dropped, {} resent; in sync up to seq {synced}; {} in the CSV",
            board.device,
            board.taken.len(),
            board.acked.len(),
            board.dropped.len(),
            board.resent.len(),
            found.keys().filter(|(d, _)| d == &board.device).count()
        );
        let must: BTreeSet<u64> = board
            .taken
            .keys()
            .copied()
            .filter(|s| (*s <= *synced && !board.dropped.contains(s)) || board.acked.contains(s))
            .collect();
        for (&seq, pairs) in &board.taken {
            let key = (board.device.clone(), seq);
            let Some(fields) = found.get(&key) else {
                assert!(
                    !must.contains(&seq),
                    "{} seq {seq} is missing from the CSV",
                    board.device
                );
                continue;
            };
            let ts = value_of(pairs, "ts").unwrap();
            let expected: BTreeMap<&str, &str> = pairs
                .iter()
                .filter(|(k, _)| k != "seq" && k != "ts")
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let got: Vec<&str> = fields.keys().map(String::as_str).collect();
            let want: Vec<&str> = expected.keys().copied().collect();
            assert_eq!(got, want, "{} seq {seq}: fields", board.device);
            for (
                field,
                CsvCell {
                    value,
                    typ,
                    device_time,
                    ..
                },
            ) in fields
            {
                let want = expected[field.as_str()];
                assert_eq!(typ, "number", "{} seq {seq} {field}: type", board.device);
                let (a, b): (f64, f64) = (value.parse().unwrap(), want.parse().unwrap());
                assert_eq!(
                    a, b,
                    "{} seq {seq} {field}: {value} in the CSV, {want} taken",
                    board.device
                );
                assert_eq!(device_time, &ts, "{} seq {seq}: device_time", board.device);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The fault-injecting proxy

/// A TCP proxy on a fixed local port between the boards and whichever daemon is
/// current. It forwards whole lines, notes which readings it forwarded (per
/// device and seq), and can swallow ACKs: all of them, or the n-th ACK of each
/// connection, cutting that connection at once (the reading is written, its ACK
/// never arrives). With no daemon behind it, it accepts and closes at once.
struct Proxy {
    addr: SocketAddr,
    shared: Arc<ProxyShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ProxyShared {
    upstream: Mutex<Option<SocketAddr>>,
    /// 0: forward every ACK; n: cut each connection when its n-th ACK comes.
    cut_at_ack: AtomicU32,
    /// Drop every ACK (without cutting) while set.
    swallow_acks: AtomicBool,
    stop: AtomicBool,
    /// (device, seq) -> how many times a reading line went to a daemon.
    forwarded: Mutex<HashMap<(String, u64), u32>>,
    /// ACKs that never reached their board because the proxy cut or swallowed them.
    lost_acks: Mutex<Vec<(String, u64)>>,
    sockets: Mutex<Vec<TcpStream>>,
}

struct ProxyConn {
    device: Mutex<String>,
    acks: AtomicU32,
}

impl Proxy {
    fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(ProxyShared::default());
        *shared.upstream.lock().unwrap() = Some(upstream);
        let s = Arc::clone(&shared);
        let acceptor = thread::spawn(move || {
            while !s.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((board, _)) => Proxy::serve(&s, board),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(5)),
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Proxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    fn set_upstream(&self, upstream: Option<SocketAddr>) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    /// Closes every connection going through the proxy (both sides).
    fn cut_all(&self) {
        for t in self.shared.sockets.lock().unwrap().drain(..) {
            let _ = t.shutdown(Shutdown::Both);
        }
    }

    fn serve(s: &Arc<ProxyShared>, board: TcpStream) {
        let _ = board.set_nonblocking(false);
        let Some(up) = *s.upstream.lock().unwrap() else {
            return; // no daemon: the board's connection closes at once
        };
        let Ok(daemon) = TcpStream::connect_timeout(&up, Duration::from_secs(1)) else {
            return;
        };
        let conn = Arc::new(ProxyConn {
            device: Mutex::new(String::new()),
            acks: AtomicU32::new(0),
        });
        {
            let mut sockets = s.sockets.lock().unwrap();
            sockets.retain(|t| t.peer_addr().is_ok());
            sockets.push(board.try_clone().unwrap());
            sockets.push(daemon.try_clone().unwrap());
        }
        for to_daemon in [true, false] {
            let (from, to) = if to_daemon {
                (board.try_clone().unwrap(), daemon.try_clone().unwrap())
            } else {
                (daemon.try_clone().unwrap(), board.try_clone().unwrap())
            };
            let (s, conn) = (Arc::clone(s), Arc::clone(&conn));
            thread::spawn(move || pump(&s, &conn, from, to, to_daemon));
        }
    }

    fn forwarded(&self) -> HashMap<(String, u64), u32> {
        self.shared.forwarded.lock().unwrap().clone()
    }

    fn lost_acks(&self) -> Vec<(String, u64)> {
        self.shared.lost_acks.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for t in self.shared.sockets.lock().unwrap().iter() {
            let _ = t.shutdown(Shutdown::Both);
        }
    }
}

/// Forwards complete lines from `from` to `to` until either side closes, the
/// proxy stops, or a fault cuts the connection; then shuts both sockets down.
fn pump(s: &ProxyShared, conn: &ProxyConn, mut from: TcpStream, mut to: TcpStream, to_daemon: bool) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let _ = to.set_write_timeout(Some(Duration::from_secs(5)));
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    'conn: while !s.stop.load(Ordering::SeqCst) {
        match from.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => break,
        }
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            if to_daemon {
                if let Some(rest) = text.strip_prefix("HELLO ") {
                    let device = rest.split_whitespace().next().unwrap_or("").to_string();
                    *conn.device.lock().unwrap() = device;
                } else if let Some(seq) = pairs(&text).iter().find(|(k, _)| k == "seq") {
                    let key = (conn.device.lock().unwrap().clone(), seq.1.parse().unwrap_or(0));
                    *s.forwarded.lock().unwrap().entry(key).or_insert(0) += 1;
                }
            } else if let Some(seq) = text.strip_prefix("ACK ") {
                let n = conn.acks.fetch_add(1, Ordering::SeqCst) + 1;
                let cut_at = s.cut_at_ack.load(Ordering::SeqCst);
                let key = (conn.device.lock().unwrap().clone(), seq.parse().unwrap_or(0));
                if s.swallow_acks.load(Ordering::SeqCst) {
                    s.lost_acks.lock().unwrap().push(key);
                    continue;
                }
                if cut_at != 0 && n >= cut_at {
                    s.lost_acks.lock().unwrap().push(key);
                    break 'conn;
                }
            }
            if to.write_all(&line).is_err() {
                break 'conn;
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

// ---------------------------------------------------------------------------
// The scenarios

fn readings_in(d: Duration) -> u64 {
    d.as_millis() as u64 / INTERVAL_MS
}

/// Normal operation: six boards, one of them running through the millis()
/// wrap-around; every reading arrives exactly once.
#[test]
fn firmware_boards_deliver_every_reading_exactly_once() {
    host_build();
    let dir = TestDir::new("firmware-normal");
    let daemon = Daemon::start(&dir, &[]);
    let proxy = Proxy::start(daemon.addr);
    let mut boards = spawn_fleet(proxy.addr, 0x10a000);
    // millis() wraps 1.5 s after power-on on this one.
    let wrap_start = (u32::MAX - 1500).to_string();
    boards.push(Board::spawn(
        Kind::Esp8266,
        0x10afff,
        proxy.addr,
        &[("SIM_MILLIS_START", wrap_start)],
    ));
    let run = Duration::from_secs(3);
    thread::sleep(run);
    let logs = sync_and_stop(&mut boards, readings_in(run) - 3);
    let csv = daemon.csv.clone();
    daemon.stop();
    check_csv(&csv, &logs);
    for (log, _) in &logs {
        assert!(
            log.dropped.is_empty(),
            "{} dropped readings without an outage",
            log.device
        );
        assert!(log.resent.is_empty(), "{} resent readings without a fault", log.device);
    }
    let wrapped = &logs.last().unwrap().0;
    let ts: Vec<u64> = wrapped
        .taken
        .values()
        .map(|p| value_of(p, "ts").unwrap().parse().unwrap())
        .collect();
    assert!(ts.windows(2).any(|w| w[1] < w[0]), "millis() did not wrap: {ts:?}");
}

/// The daemon stops (its last ACKs lost on the way), stays down while the boards
/// keep taking readings, and a new daemon starts on the same CSV behind the same
/// address: the boards reconnect and resend; nothing is lost, nothing doubled.
#[test]
fn firmware_boards_buffer_while_the_daemon_is_down_and_resend_after_restart() {
    host_build();
    let dir = TestDir::new("firmware-restart");
    let first = Daemon::start(&dir, &[]);
    let proxy = Proxy::start(first.addr);
    let mut boards = spawn_fleet(proxy.addr, 0x20a000);
    thread::sleep(Duration::from_millis(1500));

    // The daemon writes what arrives now, but the boards never hear of it.
    proxy.shared.swallow_acks.store(true, Ordering::SeqCst);
    thread::sleep(Duration::from_millis(400));
    proxy.set_upstream(None);
    first.stop();
    proxy.shared.swallow_acks.store(false, Ordering::SeqCst);
    let down_at: Vec<u64> = boards.iter().map(|b| b.report().last_taken().unwrap_or(0)).collect();

    thread::sleep(Duration::from_millis(1000));
    for (b, &at) in boards.iter().zip(&down_at) {
        let r = b.report();
        assert!(
            r.last_taken().unwrap_or(0) >= at + 3,
            "{:?} stopped taking readings:\n{}",
            b.kind,
            b.log_tail(20)
        );
    }

    let second = Daemon::start(&dir, &[]);
    proxy.set_upstream(Some(second.addr));
    let logs = sync_and_stop(&mut boards, down_at.iter().copied().max().unwrap() + 3);
    let csv = second.csv.clone();
    second.stop();
    check_csv(&csv, &logs);

    let lost = proxy.lost_acks();
    assert!(
        !lost.is_empty(),
        "no ACK was lost around the shutdown: the test proves nothing"
    );
    let forwarded = proxy.forwarded();
    for key in &lost {
        assert!(
            forwarded.get(key).copied().unwrap_or(0) >= 2,
            "{key:?} was written, its ACK lost, but it was never resent"
        );
    }
    for (log, _) in &logs {
        assert!(
            log.dropped.is_empty(),
            "{}: the buffer ({BUFFER_READINGS}) overflowed",
            log.device
        );
    }
}

/// The proxy cuts each connection right after the daemon acknowledged its third
/// reading, before the ACK reaches the board: the board resends that reading on
/// its next connection and the daemon recognises it (device, boot, seq).
#[test]
fn firmware_reading_resent_after_a_cut_between_write_and_ack_is_written_once() {
    host_build();
    let dir = TestDir::new("firmware-cut");
    let daemon = Daemon::start(&dir, &[]);
    let proxy = Proxy::start(daemon.addr);
    let mut boards = spawn_fleet(proxy.addr, 0x30a000);
    thread::sleep(Duration::from_millis(500));
    proxy.shared.cut_at_ack.store(3, Ordering::SeqCst);
    thread::sleep(Duration::from_secs(3));
    proxy.shared.cut_at_ack.store(0, Ordering::SeqCst);
    let logs = sync_and_stop(&mut boards, readings_in(Duration::from_millis(3500)) - 3);
    let csv = daemon.csv.clone();
    daemon.stop();
    check_csv(&csv, &logs);

    let lost = proxy.lost_acks();
    let forwarded = proxy.forwarded();
    for (log, _) in &logs {
        let cuts: Vec<u64> = lost.iter().filter(|(d, _)| d == &log.device).map(|(_, s)| *s).collect();
        assert!(cuts.len() >= 2, "{}: only {} cuts", log.device, cuts.len());
        for seq in cuts {
            let key = (log.device.clone(), seq);
            assert!(
                forwarded.get(&key).copied().unwrap_or(0) >= 2,
                "{key:?}: ACK cut but never resent"
            );
            assert!(log.resent.contains(&seq), "{key:?}: the board does not log the resend");
            assert!(log.acked.contains(&seq), "{key:?}: never acknowledged in the end");
        }
    }
}

/// The Wi-Fi goes for a while (the boards notice, rejoin and catch up), then the
/// server is unreachable for longer than the RAM buffer lasts: the boards keep
/// taking readings on schedule, drop (and count) only the oldest, and deliver all
/// the rest exactly once.
#[test]
fn firmware_boards_rejoin_wifi_and_drop_only_the_oldest_when_the_buffer_overflows() {
    host_build();
    let dir = TestDir::new("firmware-overflow");
    let daemon = Daemon::start(&dir, &[]);
    let proxy = Proxy::start(daemon.addr);
    let down_file = dir.join("wifi-down");
    let env = [("SIM_WIFI_DOWN_FILE", down_file.display().to_string())];
    let mut boards = vec![
        Board::spawn(Kind::Esp8266, 0x40a001, proxy.addr, &env),
        Board::spawn(Kind::FeatherM0, 0x40a101, proxy.addr, &env),
    ];
    thread::sleep(Duration::from_millis(1000));

    // The access point goes away for 2 s, then comes back.
    std::fs::write(&down_file, b"").unwrap();
    thread::sleep(Duration::from_millis(2000));
    std::fs::remove_file(&down_file).unwrap();
    let back_at: Vec<u64> = boards.iter().map(|b| b.report().last_taken().unwrap_or(0)).collect();
    let caught_up = wait_until(SYNC_TIMEOUT, || {
        boards
            .iter()
            .zip(&back_at)
            .all(|(b, &at)| b.report().synced().is_some_and(|s| s > at))
    });
    assert!(caught_up, "boards did not catch up after the Wi-Fi came back");

    // The server is unreachable for longer than the buffer lasts.
    proxy.set_upstream(None);
    proxy.cut_all();
    thread::sleep(Duration::from_millis(INTERVAL_MS * (BUFFER_READINGS as u64 + 6)));
    let restored_at = boards
        .iter()
        .map(|b| b.report().last_taken().unwrap_or(0))
        .max()
        .unwrap();
    proxy.set_upstream(Some(daemon.addr));
    let logs = sync_and_stop(&mut boards, restored_at + 2);
    let csv = daemon.csv.clone();
    daemon.stop();
    check_csv(&csv, &logs);

    for (log, _) in &logs {
        assert!(log.wifi_lost >= 1, "{}: never noticed the Wi-Fi going", log.device);
        assert!(log.dropped.len() >= 3, "{}: dropped only {:?}", log.device, log.dropped);
        // Only the oldest go, one after the other, and later readings count them.
        let first_dropped = *log.dropped.iter().next().unwrap();
        let last_dropped = *log.dropped.iter().next_back().unwrap();
        assert_eq!(
            log.dropped.iter().copied().collect::<Vec<_>>(),
            (first_dropped..=last_dropped).collect::<Vec<_>>(),
            "{}: the dropped readings are not a run of the oldest",
            log.device
        );
        let dropped_field = |seq: u64| -> u64 { value_of(&log.taken[&seq], "dropped").unwrap().parse().unwrap() };
        assert_eq!(dropped_field(first_dropped), 0, "{}", log.device);
        let after = log
            .taken
            .keys()
            .copied()
            .find(|&s| s > last_dropped + BUFFER_READINGS as u64);
        let after = after.expect("a reading after the last drop");
        assert_eq!(
            dropped_field(after),
            log.dropped.len() as u64,
            "{}: the dropped counter",
            log.device
        );
    }
}

/// Powers a board on, waits until it has had at least `min_readings` readings
/// acknowledged, and powers it off (SIGTERM). Returns its log and sync point.
fn power_cycle(
    kind: Kind,
    chip: u32,
    server: SocketAddr,
    env: &[(&str, String)],
    min_readings: u64,
) -> (BoardLog, u64) {
    let mut board = vec![Board::spawn(kind, chip, server, env)];
    sync_and_stop(&mut board, min_readings).pop().unwrap()
}

/// The rows of `csv` whose boot column is `boot`, as a CSV of their own.
fn csv_of_boot(csv: &Path, boot: &str, out: &Path) -> usize {
    let rows = read_csv(csv);
    let mut w = csv::Writer::from_path(out).unwrap();
    let mut n = 0;
    for (i, row) in rows.iter().enumerate() {
        if i == 0 || row.get(6).map(String::as_str) == Some(boot) {
            w.write_record(row).unwrap();
            n += usize::from(i > 0);
        }
    }
    w.flush().unwrap();
    n
}

/// A board powered off and on again with no entropy at all: only its boot
/// counter in flash tells the two power-ons apart, and it does: a new boot id,
/// and every reading of the second power-on in the CSV under it. Without the
/// flash (the control), the same board gets the same boot id at every power-on,
/// which proves the entropy really is gone.
#[test]
fn firmware_boot_ids_never_repeat_across_power_cycles_without_entropy() {
    host_build();
    let dir = TestDir::new("firmware-boot-counter");
    let daemon = Daemon::start(&dir, &[]);
    for (kind, chip) in [(Kind::Esp8266, 0x50a001u32), (Kind::FeatherM0, 0x50a101)] {
        // Control: no flash, no entropy: the boot id repeats.
        let no_flash = [("SIM_ENTROPY", "none".to_string())];
        let ids: Vec<String> = (0..2)
            .map(|_| {
                let mut b = Board::spawn(kind, chip, "127.0.0.1:9".parse().unwrap(), &no_flash);
                assert!(
                    wait_until(Duration::from_secs(10), || !b.report().boot.is_empty()),
                    "{kind:?}: no boot line"
                );
                b.terminate();
                b.report().boot
            })
            .collect();
        assert_eq!(ids[0], ids[1], "{kind:?}: the boot id still has entropy in it");

        let env = [
            ("SIM_ENTROPY", "none".to_string()),
            (
                "SIM_FLASH_FILE",
                dir.join(&format!("flash-{chip:x}")).display().to_string(),
            ),
        ];
        let (first, synced1) = power_cycle(kind, chip, daemon.addr, &env, 6);
        let (second, synced2) = power_cycle(kind, chip, daemon.addr, &env, 6);
        assert_eq!(first.device, second.device);
        assert_eq!((first.boots, second.boots), (1, 2), "{kind:?}: the boot counter");
        assert_ne!(first.boot, second.boot, "{kind:?}: the boot id repeated");
        // Without entropy the id is a function of the device and the count alone:
        // the first power-on is the control's, the second one is not.
        assert_eq!(first.boot, ids[0], "{kind:?}: the first boot id");

        let csv = daemon.csv.clone();
        let (second_device, second_boot) = (second.device.clone(), second.boot.clone());
        for (n, (log, synced)) in [(first, synced1), (second, synced2)].into_iter().enumerate() {
            let part = dir.join(&format!("boot-{chip:x}-{n}.csv"));
            let rows = csv_of_boot(&csv, &log.boot, &part);
            assert!(rows > 0, "{kind:?} power-on {}: nothing written", n + 1);
            // Every reading the board took (each was acknowledged: nothing was
            // dropped), with exactly its fields, under this power-on's boot id.
            assert!(log.dropped.is_empty());
            check_csv(&part, &[(log, synced)]);
        }
        // The status line is stored like a reading, as fields of the board.
        let rows = read_csv(&csv);
        let status = |field: &str| -> Vec<&str> {
            rows.iter()
                .filter(|r| r[1] == second_device && r[6] == second_boot && r[2] == field)
                .map(|r| r[3].as_str())
                .collect()
        };
        assert!(
            status("fw_boots").contains(&"2"),
            "{kind:?}: no status line of the second power-on"
        );
        for field in [
            "fw_taken",
            "fw_dropped",
            "fw_skipped",
            "fw_reconnects",
            "fw_uptime_s",
            "fw_heap",
            "fw_reset",
        ] {
            assert!(!status(field).is_empty(), "{kind:?}: no {field} in the CSV");
        }
        assert!(
            status("fw_dropped").iter().all(|v| *v == "0"),
            "{kind:?}: dropped without an outage"
        );
    }
    daemon.stop();
}

/// The greeting carries the device token (issue 12) and the board never prints
/// it. What the daemon would receive is read by a plain listener in the test.
#[test]
fn firmware_greeting_carries_the_device_token() {
    host_build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    for (kind, chip) in [(Kind::Esp8266, 0x60a001u32), (Kind::FeatherM0, 0x60a101)] {
        let mut board = Board::spawn(kind, chip, addr, &[]);
        let mut conn = None;
        wait_until(Duration::from_secs(10), || {
            conn = listener.accept().ok().map(|(s, _)| s);
            conn.is_some()
        });
        let conn = conn.unwrap_or_else(|| panic!("{kind:?} never connected:\n{}", board.log_tail(20)));
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut hello = String::new();
        BufReader::new(&conn).read_line(&mut hello).unwrap();
        board.terminate();
        let log = board.report();
        assert_eq!(
            hello.trim_end(),
            format!("HELLO {} token={TOKEN} ack=1 boot={}", log.device, log.boot),
            "{kind:?}"
        );
        let text = board.log.lock().unwrap().join("\n");
        assert!(!text.contains(TOKEN), "{kind:?} printed its token:\n{text}");
        assert!(
            text.contains("token=set"),
            "{kind:?}: the boot line does not say a token is set"
        );
    }
}

/// Feather M0: a `write()` that never returns (WiFi101's write loop retrying a
/// full buffer) ends in a watchdog reset; a `connect()` that takes longer than
/// the watchdog period (5 s against 4 s; WiFi101's may take 20 s) does not,
/// because it runs inside a BlockingCall, and the board delivers its readings.
#[test]
fn firmware_feather_watchdog_resets_a_hang_but_not_a_slow_connect() {
    host_build();
    let dir = TestDir::new("firmware-watchdog");
    let daemon = Daemon::start(&dir, &[]);
    let mut hung = Board::spawn(
        Kind::FeatherM0,
        0x70a101,
        daemon.addr,
        &[("SIM_WRITE_HANG_AFTER_MS", "1500".to_string())],
    );
    let mut slow = vec![Board::spawn(
        Kind::FeatherM0,
        0x70a102,
        daemon.addr,
        &[("SIM_CONNECT_DELAY_MS", "5000".to_string())],
    )];
    // sync_and_stop also asserts that the board ran until SIGTERM and stopped cleanly.
    let (log, _) = sync_and_stop(&mut slow, 3).pop().unwrap();
    assert!(log.acked.len() >= 3, "the slow-connect board delivered {:?}", log.acked);
    assert!(
        !slow[0].log.lock().unwrap().iter().any(|l| l.contains("Watchdog reset")),
        "a slow connect reset the board"
    );

    let exited = wait_until(Duration::from_secs(15), || {
        hung.exit = hung.child.try_wait().unwrap();
        hung.exit.is_some()
    });
    assert!(
        exited,
        "a hung write() did not end in a watchdog reset:\n{}",
        hung.log_tail(20)
    );
    assert_eq!(hung.exit.and_then(|s| s.code()), Some(3), "{}", hung.log_tail(20));
    assert!(
        hung.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("[host] Watchdog reset: not patted for")),
        "{}",
        hung.log_tail(20)
    );
    daemon.stop();
}
