//! `sensorlog simulate`: pretends to be N boards, for newcomers without hardware and as
//! the benchmark's load generator.
//!
//! Each board is one thread with one connection, like a real board. To make sure the
//! generator is not the bottleneck of a benchmark, boards with `--rate 0` format many
//! readings into one buffer and send it with a single `write` (64 KiB at a time), so a
//! board costs one syscall per few hundred readings; the summary reports the
//! generator's own CPU time so a run can show it had headroom.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cli::{Format, SimulateArgs};
use crate::error::{Error, Result};

const SEND_CHUNK_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    failed_boards: AtomicU64,
}

pub fn run(args: &SimulateArgs) -> Result<()> {
    if args.boards == 0 {
        return Err(Error::startup("simulate", "--boards must be at least 1"));
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err(Error::startup("simulate", "--rate must be a number >= 0"));
    }
    let duration = match (args.duration, args.count) {
        (Some(d), _) => Some(Duration::from_secs_f64(d.max(0.0))),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    eprintln!(
        "Sending to {} as {} board{} ({}-1{}), {} lines, {} readings/s each, {}{}.",
        args.addr,
        args.boards,
        if args.boards == 1 { "" } else { "s" },
        args.prefix,
        if args.boards > 1 {
            format!("..{}-{}", args.prefix, args.boards)
        } else {
            String::new()
        },
        format!("{:?}", args.format).to_lowercase(),
        args.rate,
        match (duration, args.count) {
            (Some(d), Some(c)) => format!("for {:.1} s or {c} readings each", d.as_secs_f64()),
            (Some(d), None) => format!("for {:.1} s", d.as_secs_f64()),
            (None, Some(c)) => format!("{c} readings each"),
            (None, None) => String::new(),
        },
        if args.ack {
            ", waiting for each acknowledgement"
        } else {
            " (no acknowledgements asked: --ack waits for each)"
        }
    );
    let start = Instant::now();
    let deadline = duration.map(|d| start + d);
    let counters = Arc::new(Counters::default());
    let done = Arc::new(AtomicBool::new(false));

    let mut idle = Vec::with_capacity(args.idle);
    for i in 0..args.idle {
        match TcpStream::connect_timeout(&args.addr, Duration::from_secs(10)) {
            Ok(s) => idle.push(s),
            Err(e) => {
                return Err(Error::startup(
                    format!("open idle connection {} of {} to {}", i + 1, args.idle, args.addr),
                    e,
                ));
            }
        }
    }
    if args.idle > 0 {
        eprintln!("Holding {} idle connections open.", idle.len());
    }

    let reporter = {
        let (counters, done, ack) = (Arc::clone(&counters), Arc::clone(&done), args.ack);
        std::thread::spawn(move || {
            let mut last = 0;
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if start.elapsed().as_millis() % 1000 < 200 {
                    let sent = counters.sent.load(Relaxed);
                    // "acknowledged 0" without --ack read like a failure: only with --ack.
                    let acked = if ack {
                        format!(", {} acknowledged", counters.acked.load(Relaxed))
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "[{:6.1}s] sent {sent} readings so far ({}/s){acked}",
                        start.elapsed().as_secs_f64(),
                        sent - last,
                    );
                    last = sent;
                }
            }
        })
    };

    let boot = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64
            & 0xffff_ffff_ffff
    );
    let boards: Vec<_> = (1..=args.boards)
        .map(|i| {
            let board = SimBoard {
                addr: args.addr,
                name: format!("{}-{i}", args.prefix),
                boot: format!("{boot}{i:x}"),
                format: args.format,
                rate: args.rate,
                count: args.count,
                deadline,
                ack: args.ack,
                stamp: args.stamp,
                new_names: args.new_name_per_reading,
                values: Values::new(),
                counters: Arc::clone(&counters),
            };
            std::thread::Builder::new()
                .name(format!("sim-{i}"))
                .stack_size(256 * 1024)
                .spawn(move || board.run())
        })
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::startup("start the simulated boards", e))?;
    let mut errors = Vec::new();
    for b in boards {
        match b.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a board thread panicked".to_string()),
        }
    }
    done.store(true, Relaxed);
    let _ = reporter.join();
    let elapsed = start.elapsed().as_secs_f64();
    let sent = counters.sent.load(Relaxed);
    let acked = counters.acked.load(Relaxed);
    let cpu = process_cpu_secs();
    eprintln!(
        "Sent {sent} readings from {} boards in {elapsed:.2} s ({:.0} readings/s){}; generator CPU {cpu:.2} s.",
        args.boards,
        sent as f64 / elapsed.max(1e-9),
        if args.ack {
            format!(", {acked} acknowledged")
        } else {
            String::new()
        }
    );
    for e in &errors {
        eprintln!("Board error: {e}");
    }
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "boards": args.boards, "sent": sent, "acked": acked, "elapsed_secs": elapsed,
                "readings_per_sec": sent as f64 / elapsed.max(1e-9), "generator_cpu_secs": cpu,
                "failed_boards": counters.failed_boards.load(Relaxed), "errors": errors,
            })
        );
    }
    drop(idle);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::startup(
            "simulate",
            format!(
                "{} of {} boards failed; first: {}",
                errors.len(),
                args.boards,
                errors[0]
            ),
        ))
    }
}

struct SimBoard {
    addr: SocketAddr,
    name: String,
    boot: String,
    format: Format,
    rate: f64,
    count: Option<u64>,
    deadline: Option<Instant>,
    ack: bool,
    stamp: bool,
    /// Every reading under a new device name (`--new-name-per-reading`).
    new_names: bool,
    values: Values,
    counters: Arc<Counters>,
}

impl SimBoard {
    fn run(self) -> std::result::Result<(), String> {
        let r = self.send_all();
        if r.is_err() {
            self.counters.failed_boards.fetch_add(1, Relaxed);
        }
        r
    }

    fn send_all(&self) -> std::result::Result<(), String> {
        let mut stream = connect_with_retry(self.addr)
            .map_err(|e| format!("{}: cannot connect to {}: {e}", self.name, self.addr))?;
        let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
        let acks = if self.ack {
            stream
                .write_all(format!("HELLO {} boot={} ack=1\n", self.name, self.boot).as_bytes())
                .map_err(|e| format!("{}: {e}", self.name))?;
            let reader = stream.try_clone().map_err(|e| e.to_string())?;
            let counters = Arc::clone(&self.counters);
            Some(std::thread::spawn(move || read_acks(reader, &counters)))
        } else {
            None
        };
        let start = Instant::now();
        let mut buf = Vec::with_capacity(SEND_CHUNK_BYTES + 256);
        let mut seq: u64 = 0;
        loop {
            let more = self.count.is_none_or(|c| seq < c) && self.deadline.is_none_or(|d| Instant::now() < d);
            if !more {
                break;
            }
            seq += 1;
            self.format_reading(&mut buf, seq);
            let flush_now = self.rate > 0.0 || buf.len() >= SEND_CHUNK_BYTES;
            if flush_now {
                stream
                    .write_all(&buf)
                    .map_err(|e| format!("{}: send failed after {} readings: {e}", self.name, seq - 1))?;
                self.counters.sent.fetch_add(lines_in(&buf), Relaxed);
                buf.clear();
            }
            if self.rate > 0.0 {
                let due = start + Duration::from_secs_f64(seq as f64 / self.rate);
                let now = Instant::now();
                if due > now {
                    let cap = self.deadline.map_or(due, |d| due.min(d));
                    std::thread::sleep(cap.saturating_duration_since(now));
                }
            }
        }
        if !buf.is_empty() {
            stream
                .write_all(&buf)
                .map_err(|e| format!("{}: send failed: {e}", self.name))?;
            self.counters.sent.fetch_add(lines_in(&buf), Relaxed);
        }
        if let Some(h) = acks {
            // The daemon acknowledges everything, then closes when it sees our end of
            // stream; the reader's 30 s timeout bounds the wait.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let acked = h.join().unwrap_or(0);
            if acked < seq {
                return Err(format!(
                    "{}: only {acked} of {seq} readings were acknowledged",
                    self.name
                ));
            }
        } else {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    fn format_reading(&self, buf: &mut Vec<u8>, seq: u64) {
        // A gentle wave, so a chart of simulated data looks like something. The values
        // repeat, so they are formatted once (`Values`): float formatting per reading
        // made the generator cost as much CPU as the daemon it was measuring.
        let t = &self.values.temp[(seq % 360) as usize];
        let h = &self.values.humidity[(seq % 17) as usize];
        let mut seq_text = Vec::with_capacity(20);
        crate::sink::csv::encode::push_u64(&mut seq_text, seq);
        let seq = std::str::from_utf8(&seq_text).unwrap_or("0");
        let ts = if self.stamp {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            format!("{}.{:06}", now.as_secs(), now.subsec_micros())
        } else {
            String::new()
        };
        let flood_name;
        let name = if self.new_names {
            flood_name = format!("{}-{seq}", self.name);
            &flood_name
        } else {
            &self.name
        };
        let parts: [&str; 11] = match (self.format, self.stamp) {
            (Format::Json, false) => [
                r#"{"device":""#,
                name,
                r#"","seq":"#,
                seq,
                "",
                "",
                r#","temp_c":"#,
                t,
                r#","humidity":"#,
                h,
                "}",
            ],
            (Format::Json, true) => [
                r#"{"device":""#,
                name,
                r#"","seq":"#,
                seq,
                r#","ts":"#,
                &ts,
                r#","temp_c":"#,
                t,
                r#","humidity":"#,
                h,
                "}",
            ],
            (Format::Kv, false) => [
                "device=",
                name,
                " seq=",
                seq,
                "",
                "",
                " temp_c=",
                t,
                " humidity=",
                h,
                "",
            ],
            (Format::Kv, true) => [
                "device=",
                name,
                " seq=",
                seq,
                " ts=",
                &ts,
                " temp_c=",
                t,
                " humidity=",
                h,
                "",
            ],
            (Format::Text, false) => ["", name, " reading ", seq, "", "", " temp ", t, " humidity ", h, ""],
            (Format::Text, true) => [
                "",
                name,
                " reading ",
                seq,
                "",
                "",
                " temp ",
                t,
                " humidity ",
                h,
                &format!(" at {ts}"),
            ],
        };
        for p in parts {
            buf.extend_from_slice(p.as_bytes());
        }
        buf.push(b'\n');
    }
}

/// The simulated values, formatted once per board.
struct Values {
    temp: Vec<String>,
    humidity: Vec<String>,
}

impl Values {
    fn new() -> Values {
        Values {
            temp: (0..360)
                .map(|d| format!("{:.2}", 20.0 + f64::from(d).to_radians().sin() * 3.0))
                .collect(),
            humidity: (0..17).map(|i| format!("{:.1}", 40.0 + f64::from(i) * 0.5)).collect(),
        }
    }
}

fn lines_in(buf: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', buf).count() as u64
}

fn connect_with_retry(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let mut wait = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
            Ok(s) => return Ok(s),
            Err(e) if tries >= 6 => return Err(e),
            Err(_) => {
                std::thread::sleep(wait);
                wait *= 2;
                tries += 1;
            }
        }
    }
}

/// Counts `ACK` lines until the daemon closes the connection; returns the count.
fn read_acks(stream: TcpStream, counters: &Counters) -> u64 {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut n = 0;
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        if line.starts_with("ACK ") {
            n += 1;
            counters.acked.fetch_add(1, Relaxed);
        }
    }
    n
}

/// This process's user + system CPU seconds so far (Linux; 0 elsewhere).
pub fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) close with ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}
