//! Micro-benchmarks of the pure hot path: framing, parsing, row encoding.
//!
//! `cargo bench --bench parse` prints throughput for each; `cargo test --all-targets`
//! runs every case once as a smoke test (no `--bench` argument), so they keep working.

use std::hint::black_box;
use std::time::{Duration, Instant};

use sensorlog::protocol::framing::{Frame, LineFramer};
use sensorlog::protocol::reading::{parse_line, Line, Reading};
use sensorlog::sink::csv::encode::{rfc3339_millis, Encoder, ReadingColumns};

fn input(lines: usize) -> Vec<u8> {
    let mut v = Vec::new();
    for i in 0..lines {
        match i % 3 {
            0 => v.extend_from_slice(
                format!("{{\"device\":\"kitchen-{i}\",\"seq\":{i},\"temp_c\":21.53,\"humidity\":40.1}}\n").as_bytes(),
            ),
            1 => v.extend_from_slice(format!("device=hall-{i} seq={i} temp_c=21.53 humidity=40.1\n").as_bytes()),
            _ => v.extend_from_slice(format!("board {i} says hello, all is well\n").as_bytes()),
        }
    }
    v
}

/// A reading's rows, as a connection thread encodes them.
fn encode(r: &Reading<'_>, now: &str, enc: &mut Encoder, out: &mut Vec<u8>) {
    let common = ReadingColumns {
        received_at: now,
        device: r.device.as_deref().unwrap_or("127.0.0.1"),
        peer: "127.0.0.1:50000",
        boot: "",
        seq: r.seq,
        device_time: r.device_time.as_deref().unwrap_or(""),
    };
    let fields = r.fields.iter().map(|f| (&*f.name, f.value.as_text(), f.value.kind()));
    common.encode_rows(fields, enc, out);
}

/// Runs `f` repeatedly for about `budget`, returns (iterations, elapsed).
fn measure(budget: Duration, mut f: impl FnMut()) -> (u64, Duration) {
    let start = Instant::now();
    let mut n = 0;
    while n == 0 || start.elapsed() < budget {
        f();
        n += 1;
    }
    (n, start.elapsed())
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let budget = if bench { Duration::from_secs(2) } else { Duration::ZERO };
    let lines = 30_000;
    let data = input(lines);
    let parsed: Vec<Line> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(parse_line)
        .collect();
    let now = rfc3339_millis(std::time::SystemTime::now());

    let report = |name: &str, (n, t): (u64, Duration), per_iter: usize| {
        let rate = n as f64 * per_iter as f64 / t.as_secs_f64();
        println!(
            "{name:<28} {:>12.0} lines/s  ({:.1} MB/s)",
            rate,
            rate * data.len() as f64 / lines as f64 / 1e6
        );
    };

    report(
        "framing (64 KiB chunks)",
        measure(budget, || {
            let mut f = LineFramer::new(4096);
            let mut count = 0usize;
            for chunk in data.chunks(64 * 1024) {
                f.push(chunk, |fr| {
                    if let Frame::Line(l) = fr {
                        count += l.len();
                    }
                });
            }
            black_box(count);
        }),
        lines,
    );
    report(
        "parse_line (mixed formats)",
        measure(budget, || {
            for l in data.split(|&b| b == b'\n') {
                black_box(parse_line(l));
            }
        }),
        lines,
    );
    let mut out = Vec::with_capacity(data.len() * 3);
    let mut enc = Encoder::default();
    report(
        "row encoding",
        measure(budget, || {
            out.clear();
            for p in &parsed {
                if let Line::Reading(r) = p {
                    encode(r, &now, &mut enc, &mut out);
                }
            }
            black_box(out.len());
        }),
        lines,
    );
    // What a connection thread does per line of `sensorlog simulate --format json`.
    let json: Vec<u8> = (0..lines)
        .flat_map(|i| {
            format!(
                "{{\"device\":\"sim-{}\",\"seq\":{i},\"temp_c\":21.53,\"humidity\":40.5}}\n",
                i % 100
            )
            .into_bytes()
        })
        .collect();
    report(
        "JSON line -> CSV rows",
        measure(budget, || {
            out.clear();
            for l in json.split(|&b| b == b'\n') {
                if let Line::Reading(r) = parse_line(l) {
                    encode(&r, &now, &mut enc, &mut out);
                }
            }
            black_box(out.len());
        }),
        lines,
    );
    // The same rows through csv_core::Writer (the csv crate's allocation-free core),
    // which the STYLE asks us to prefer unless the hand-written encoder is faster.
    let rows: Vec<[String; 9]> = parsed
        .iter()
        .filter_map(|p| match p {
            Line::Reading(r) => Some(r),
            _ => None,
        })
        .flat_map(|r| {
            r.fields.iter().map(|f| {
                let row = ReadingColumns {
                    received_at: &now,
                    device: r.device.as_deref().unwrap_or("127.0.0.1"),
                    peer: "127.0.0.1:50000",
                    boot: "",
                    seq: r.seq,
                    device_time: r.device_time.as_deref().unwrap_or(""),
                }
                .row(&f.name, f.value.as_text(), f.value.kind())
                .to_owned_row();
                std::array::from_fn(|i| row.0[i].clone())
            })
        })
        .collect();
    let rows_per_line = rows.len() as f64 / lines as f64;
    report(
        "row encoding (csv_core)",
        measure(budget, || {
            out.clear();
            let mut w = csv_core::Writer::new();
            let mut buf = [0u8; 4096];
            for row in &rows {
                for (i, cell) in row.iter().enumerate() {
                    if i > 0 {
                        let (_, n) = w.delimiter(&mut buf);
                        out.extend_from_slice(&buf[..n]);
                    }
                    let (_, _, n) = w.field(cell.as_bytes(), &mut buf);
                    out.extend_from_slice(&buf[..n]);
                    let (_, n) = w.finish(&mut buf);
                    out.extend_from_slice(&buf[..n]);
                }
                let (_, n) = w.terminator(&mut buf);
                out.extend_from_slice(&buf[..n]);
            }
            black_box(out.len());
        }),
        lines,
    );
    println!("{:<28} ({rows_per_line:.2} rows per line in both encodings)", "");
    report(
        "timestamp (jiff)",
        measure(budget, || {
            for _ in 0..1000 {
                black_box(format!("{:.3}", jiff::Timestamp::now()));
            }
        }),
        1000,
    );
    report(
        "timestamp formatting",
        measure(budget, || {
            for _ in 0..1000 {
                black_box(rfc3339_millis(std::time::SystemTime::now()));
            }
        }),
        1000,
    );
}
