//! Behind HAProxy with the PROXY protocol (issue 20): what the header costs.
//!
//! 1. Connect storm: 1,000 boards, each from its own loopback address (127.1.x.y), opened
//!    by 50 client threads at once (each opens its 20 one after another, as fast as they
//!    get in); each board greets with acknowledgements on, sends one reading and waits for
//!    its ACK; all stay connected to the end. Three ways: straight to the daemon, through HAProxy
//!    without the header (`proxy_protocol = "off"`; the daemon sees HAProxy's address,
//!    so the per-address cap is raised to let them in), and through HAProxy with
//!    `send-proxy-v2` (`proxy_protocol = "v2"`). Printed: the time until every board
//!    had its ACK, and the median and 99th percentile of one board's connect-to-ACK time.
//! 2. Ingest throughput: 100 boards x 20,000 JSON readings (two fields) as fast as the
//!    sockets take them, direct and through HAProxy with `send-proxy-v2` (the daemon runs
//!    with `proxy_protocol = "v2"` both times: direct boards are peeked at once); the
//!    clock runs from the first connection to the moment the CSV holds every row.
//!
//! Each measurement runs 5 rounds, the paths alternating, on a fresh daemon; the median
//! is printed with the range (this shared VM's load swings the figures a lot).
//!
//! `cargo bench --bench proxy`; under `cargo test --all-targets` (no `--bench`) a smoke
//! run of 50 boards and 4 x 250 readings. Needs Debian's `haproxy` (`.ci/run` installs
//! it); without it the bench says so and exits 0. A board without its ACK or a missing
//! row fails the run (exit 1). Boards, HAProxy and the daemon share the machine's CPUs.

#[path = "../tests/util/bench.rs"]
mod bench;
use bench::{csv_rows, serve, spawn_listening};
#[path = "../tests/util/haproxy.rs"]
mod haproxy;
use haproxy::Haproxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sensorlog");
const PROXY_SOURCE: &str = "127.0.0.100";
const FIELDS_PER_READING: u64 = 2;
/// Threads opening the storm's connections (each opens its share, one after another).
const STORM_THREADS: usize = 50;

/// The daemon, killed (by its pid) on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon, with `server.proxy_protocol = mode`; returns it and its address.
fn daemon(dir: &Path, mode: &str) -> (Process, SocketAddr) {
    let cfg = dir.join("sensorlog.toml");
    let trusted = if mode == "off" {
        String::new()
    } else {
        format!("trusted_proxies = [\"{PROXY_SOURCE}\"]\n")
    };
    std::fs::write(&cfg, format!("[server]\nproxy_protocol = \"{mode}\"\n{trusted}")).unwrap();
    let cfg = cfg.to_str().expect("a UTF-8 temp path");
    let limits = [
        "--max-connections",
        "3000",
        "--max-connections-per-ip",
        "3000",
        "--config",
        cfg,
    ];
    let (child, addr, _) = spawn_listening(&mut serve(BIN, &dir.join("readings.csv"), &limits), false);
    (Process(child), addr)
}

/// HAProxy in TCP mode in front of `backend`, with `opts` on the server line.
fn haproxy(dir: &Path, backend: SocketAddr, opts: &str) -> (Haproxy, SocketAddr) {
    let bin = haproxy::installed().expect("checked before the runs");
    let h = Haproxy::start(bin, 1, |fronts| {
        let front = fronts[0];
        let cfg = format!(
            "global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n\
             frontend f\n  bind {front}\n  maxconn 4000\n  default_backend b\nbackend b\n  server d {backend} {opts} source {PROXY_SOURCE} maxconn 4000\n"
        );
        let path = dir.join("haproxy.cfg");
        std::fs::write(&path, cfg).unwrap();
        path
    });
    let front = h.fronts[0];
    (h, front)
}

/// Board `i`'s own loopback address.
fn board_ip(i: usize) -> String {
    format!("127.1.{}.{}", i / 250, i % 250 + 1)
}

fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    haproxy::connect_from(from, to, Duration::from_secs(30), Duration::from_secs(60))
}

fn read_line(s: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(1) => out.push(b[0]),
            _ => return None,
        }
    }
}

/// The storm against `addr`: (seconds until all acked, per-board connect-to-ACK times, failures).
fn storm(addr: SocketAddr, boards: usize) -> (f64, Vec<Duration>, usize) {
    let threads = STORM_THREADS.min(boards);
    let barrier = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, done) = (Arc::clone(&barrier), Arc::clone(&done));
            std::thread::spawn(move || {
                barrier.wait();
                let mut held = Vec::new();
                let mut times = Vec::new();
                let mut failed = 0;
                for i in (t..boards).step_by(threads) {
                    let t0 = Instant::now();
                    let ok = connect_from(&board_ip(i), addr).ok().and_then(|mut s| {
                        write!(s, "HELLO storm-{i} ack=1\nseq=1 t=1\n").ok()?;
                        let hello = read_line(&mut s)?;
                        let ack = read_line(&mut s)?;
                        (hello.starts_with("OK HELLO") && ack == "ACK 1").then_some(s)
                    });
                    match ok {
                        Some(s) => {
                            times.push(t0.elapsed());
                            held.push(s);
                        }
                        None => failed += 1,
                    }
                }
                // Everyone stays connected until every board is in.
                done.wait();
                drop(held);
                (times, failed)
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    done.wait();
    let secs = started.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut failed = 0;
    for h in handles {
        let (t, f) = h.join().expect("a storm thread panicked");
        times.extend(t);
        failed += f;
    }
    times.sort();
    (secs, times, failed)
}

/// `boards` x `count` readings to `addr`; returns (seconds until all rows are in the CSV, rows).
fn ingest(addr: SocketAddr, csv: &Path, rows_before: u64, boards: usize, count: u64) -> (f64, u64) {
    let barrier = Arc::new(Barrier::new(boards + 1));
    let threads: Vec<_> = (0..boards)
        .map(|id| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let s = connect_from(&board_ip(2000 + id), addr).expect("connect");
                let mut buf = Vec::with_capacity(20 * 1024);
                for seq in 1..=count {
                    writeln!(
                        buf,
                        r#"{{"device":"ingest-{id}","seq":{seq},"temp_c":{:.1},"humidity":{}}}"#,
                        20.0 + (seq % 100) as f64 / 10.0,
                        40 + seq % 20
                    )
                    .unwrap();
                    if buf.len() >= 16 * 1024 {
                        (&s).write_all(&buf).expect("send");
                        buf.clear();
                    }
                }
                (&s).write_all(&buf).expect("send");
                let _ = s.shutdown(std::net::Shutdown::Write);
                let _ = std::io::copy(&mut &s, &mut std::io::sink());
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for t in threads {
        t.join().expect("a board thread failed");
    }
    let want = rows_before + boards as u64 * count * FIELDS_PER_READING;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut got = csv_rows(csv);
    while got < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        got = csv_rows(csv);
    }
    (started.elapsed().as_secs_f64(), got - rows_before)
}

fn pct(times: &[Duration], p: f64) -> f64 {
    if times.is_empty() {
        return f64::NAN;
    }
    let i = ((times.len() as f64 - 1.0) * p).round() as usize;
    times[i].as_secs_f64() * 1000.0
}

/// The median and the range of `v` (sorted here).
fn median_range(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if haproxy::installed().is_none() {
        println!("haproxy is not installed (Debian package `haproxy`; .ci/run installs it): skipped");
        return;
    }
    let (storm_boards, boards, count, rounds) = if full { (1000, 100, 20_000, 5) } else { (50, 4, 250, 1) };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-proxy-{}", std::process::id()));
    let mut ok = true;
    let paths = [
        ("direct", "off", None),
        ("haproxy, no header", "off", Some("")),
        ("haproxy, send-proxy-v2", "v2", Some("send-proxy-v2")),
    ];

    println!(
        "connect storm: {storm_boards} boards from {STORM_THREADS} threads, each board from its own address, greet + 1 reading + ACK, all held open; {rounds} rounds, alternating, median shown"
    );
    println!(
        "{:<24} {:>7} {:>9} {:>11} {:>9} {:>17}",
        "path", "acked", "seconds", "median ms", "p99 ms", "seconds min-max"
    );
    let mut storms: Vec<Vec<(f64, f64, f64, usize)>> = vec![Vec::new(); paths.len()];
    for round in 0..rounds {
        for (i, (name, mode, via)) in paths.iter().enumerate() {
            let dir = root.join(format!("storm-{round}-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (_d, addr) = daemon(&dir, mode);
            let proxy = via.map(|opts| haproxy(&dir, addr, opts));
            let target = proxy.as_ref().map_or(addr, |p| p.1);
            let (secs, times, failed) = storm(target, storm_boards);
            if failed > 0 {
                eprintln!("{name}: {failed} boards got no ACK");
                ok = false;
            }
            storms[i].push((secs, pct(&times, 0.5), pct(&times, 0.99), times.len()));
        }
    }
    for (i, (name, _, _)) in paths.iter().enumerate() {
        let r = &storms[i];
        let (secs, lo, hi) = median_range(&mut r.iter().map(|x| x.0).collect::<Vec<_>>());
        let (p50, _, _) = median_range(&mut r.iter().map(|x| x.1).collect::<Vec<_>>());
        let (p99, _, _) = median_range(&mut r.iter().map(|x| x.2).collect::<Vec<_>>());
        let acked = r.iter().map(|x| x.3).min().unwrap_or(0);
        println!(
            "{name:<24} {acked:>7} {secs:>9.2} {p50:>11.1} {p99:>9.1} {:>17}",
            format!("{lo:.2}-{hi:.2}")
        );
    }

    println!();
    println!(
        "ingest: {boards} boards x {count} JSON readings ({} CSV rows); {rounds} rounds, alternating, median shown",
        boards as u64 * count * FIELDS_PER_READING
    );
    println!(
        "{:<24} {:>10} {:>9} {:>12} {:>23}",
        "path", "readings", "seconds", "readings/s", "readings/s min-max"
    );
    let ingest_paths = [
        ("direct", "v2", None),
        ("haproxy, send-proxy-v2", "v2", Some("send-proxy-v2")),
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ingest_paths.len()];
    let mut secs_all: Vec<Vec<f64>> = vec![Vec::new(); ingest_paths.len()];
    for round in 0..rounds {
        for (i, (name, mode, via)) in ingest_paths.iter().enumerate() {
            let dir = root.join(format!("ingest-{round}-{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            let (_d, addr) = daemon(&dir, mode);
            let proxy = via.map(|opts| haproxy(&dir, addr, opts));
            let target = proxy.as_ref().map_or(addr, |p| p.1);
            let csv = dir.join("readings.csv");
            let (secs, rows) = ingest(target, &csv, csv_rows(&csv), boards, count);
            let want = boards as u64 * count * FIELDS_PER_READING;
            if rows != want {
                eprintln!("{name}: {rows} rows in the CSV, expected {want}");
                ok = false;
            }
            rates[i].push((rows / FIELDS_PER_READING) as f64 / secs);
            secs_all[i].push(secs);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let mut medians = Vec::new();
    for (i, (name, _, _)) in ingest_paths.iter().enumerate() {
        let (rate, lo, hi) = median_range(&mut rates[i]);
        let (secs, _, _) = median_range(&mut secs_all[i]);
        println!(
            "{name:<24} {:>10} {secs:>9.2} {rate:>12.0} {:>23}",
            boards as u64 * count,
            format!("{lo:.0}-{hi:.0}")
        );
        medians.push(rate);
    }
    println!("through HAProxy / direct = {:.2} (medians)", medians[1] / medians[0]);
    let _ = std::fs::remove_dir_all(&root);
    if !ok {
        std::process::exit(1);
    }
}
