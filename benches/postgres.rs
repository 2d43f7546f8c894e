//! PostgreSQL sink benchmark: `cargo bench --bench postgres` (about 2-4 minutes).
//!
//! Starts a private PostgreSQL server (Debian's `postgresql` package, default fsync
//! settings) and prints:
//! 1. rows/s into the table with binary COPY, in the sink's own transactions (cursor
//!    locked, COPY, cursor updated, COMMIT; 10,000-row batches), against a plain
//!    multi-row INSERT baseline (1,000 rows per statement) doing the same work, and
//!    the ceiling: the server alone loading the same rows from a file, with and
//!    without the index;
//! 2. the catch-up of a 1,000,000-row CSV backlog by the real daemon (`sensorlog serve`
//!    with a `[postgres]` section, timed from its log);
//! 3. ingest throughput (readings/s into the CSV, `sensorlog simulate` flat out) with
//!    the sink off and on.
//!
//! Options: `--rows N` (backlog size, default 1,000,000), `--insert-rows N` (baseline
//! size, default 200,000), `--readings N` (per ingest round, default 400,000),
//! `--rounds N` (ingest rounds, sink off and on alternating; default 5, medians
//! reported). Without `--bench` (as under `cargo test --all-targets`) it runs once on 2,000 rows as a smoke
//! test, so it keeps working.

#[path = "../tests/util/postgres.rs"]
#[allow(dead_code)]
mod server;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::Transaction;
use sensorlog::sink::csv::encode::{original, original_value};
use sensorlog::sink::follower::rows::SourceRow;
use sensorlog::sink::follower::rows::{read_rows, Position};
use sensorlog::sink::postgres::copy::{copy_rows, numeric_value, pg_micros, CopyBuffers, PgTime};
use sensorlog::sink::postgres::schema::COPY_COLUMNS;
use sensorlog::sink::postgres::schema::{self, Names};
use sensorlog::sink::postgres::settings::{PostgresConfig, PostgresFile};
use server::{PgServer, SUPER_PASSWORD};

const BIN: &str = env!("CARGO_BIN_EXE_sensorlog");

/// The baseline COPY is compared with (the sink never inserts this way): multi-row `INSERT ... VALUES`
/// statements of up to 1,000 rows (65,535 parameters at most per statement).
fn insert_rows(
    tx: &mut Transaction<'_>,
    names: &Names,
    source: &str,
    rows: &[SourceRow],
) -> Result<(), postgres::Error> {
    for chunk in rows.chunks(1000) {
        let mut sql = format!("INSERT INTO {} ({COPY_COLUMNS}) VALUES ", names.table);
        let mut owned: Vec<(PgTime, Option<f64>, Option<i64>, i64)> = Vec::with_capacity(chunk.len());
        for r in chunk {
            let f = &r.fields;
            owned.push((
                PgTime(pg_micros(&f[0]).unwrap_or(i64::MIN)),
                numeric_value(original_value(&f[3], &f[4]), &f[4]),
                f[7].parse().ok(),
                r.start as i64,
            ));
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 12);
        let texts: Vec<[Option<&str>; 8]> = chunk
            .iter()
            .map(|r| {
                let f = &r.fields;
                [
                    Some(original(&f[1])),
                    Some(original(&f[2])),
                    Some(original_value(&f[3], &f[4])),
                    Some(&f[4]),
                    non_empty(&f[5]),
                    non_empty(original(&f[6])),
                    non_empty(original(&f[8])),
                    Some(source),
                ]
            })
            .collect();
        for (i, (o, t)) in owned.iter().zip(texts.iter()).enumerate() {
            let b = i * 12;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                b + 11,
                b + 12
            ));
            params.extend_from_slice(&[
                &o.0, &t[0], &t[1], &o.1, &t[2], &t[3], &t[4], &t[5], &o.2, &t[6], &t[7], &o.3,
            ]);
        }
        tx.execute(&sql, &params)?;
    }
    Ok(())
}

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

/// A CSV like the daemon writes: 2 rows per reading (a number and a text field).
fn generate(path: &Path, rows: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "received_at,device,field,value,type,peer,boot,seq,device_time").unwrap();
    for i in 0..rows {
        let t = format!(
            "2026-03-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + i / 864_000 % 28,
            i / 36_000 % 24,
            i / 600 % 60,
            i / 10 % 60,
            i % 1000
        );
        let dev = format!("board-{:03}", i % 200);
        if i % 2 == 0 {
            writeln!(
                f,
                "{t},{dev},temp_c,{}.{},number,10.0.0.{}:4000,b1,{},",
                15 + i % 15,
                i % 10,
                i % 200,
                i / 2
            )
            .unwrap();
        } else {
            writeln!(
                f,
                "{t},{dev},status,ok {},text,10.0.0.{}:4000,b1,{},",
                i % 7,
                i % 200,
                i / 2
            )
            .unwrap();
        }
    }
    f.flush().unwrap();
}

/// CPU seconds (user + system) used so far by process `pid` (Linux /proc).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command name start at 3 (state); utime and stime are 14 and 15.
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    (tick(11) + tick(12)) as f64 / 100.0
}

fn pg_config(pg: &PgServer, db: &str, extra: PostgresFile) -> PostgresConfig {
    PostgresConfig::build(
        PostgresFile {
            url: Some(pg.url("postgres", db)),
            ..extra
        },
        Some(SUPER_PASSWORD.into()),
    )
    .unwrap()
    .unwrap()
}

/// Loads the CSV into a fresh table in the sink's transactions, with COPY or INSERT.
/// Returns rows, wall seconds, and CPU seconds of (this process, the server backend).
fn load(pg: &PgServer, db: &str, csv: &Path, max_rows: usize, use_copy: bool) -> (usize, f64, (f64, f64)) {
    pg.create_db(db);
    let cfg = pg_config(pg, db, PostgresFile::default());
    let names = Names::new(&cfg);
    let mut client = cfg.pg.connect(postgres::NoTls).unwrap();
    schema::migrate(&mut client, &names).unwrap();
    let mut pos = Position::start();
    schema::save_cursor(&mut client, &names, "bench", &pos).unwrap();
    let len = std::fs::metadata(csv).unwrap().len();
    let mut file = std::fs::File::open(csv).unwrap();
    let mut buf = Vec::new();
    let backend: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let cpu0 = (cpu_secs(std::process::id()), cpu_secs(backend as u32));
    let start = Instant::now();
    let mut done = 0;
    let mut bufs = CopyBuffers::default();
    let mut rows = read_rows(&mut file, pos.offset, len, 10_000.min(max_rows), &mut buf).unwrap();
    while done < max_rows && !rows.is_empty() {
        let mut tx = client.transaction().unwrap();
        assert_eq!(schema::load_cursor(&mut tx, &names, "bench", true).unwrap(), Some(pos));
        let next = pos.after(&rows);
        let want = 10_000.min(max_rows - done - rows.len());
        let mut ahead = Vec::new();
        if use_copy {
            // As the sink does: the next batch is read while the server works.
            copy_rows(&mut tx, &names, "bench", &rows, &mut bufs, || {
                ahead = read_rows(&mut file, next.offset, len, want, &mut buf).unwrap();
            })
            .unwrap();
        } else {
            insert_rows(&mut tx, &names, "bench", &rows).unwrap();
            ahead = read_rows(&mut file, next.offset, len, want, &mut buf).unwrap();
        }
        schema::save_cursor(&mut tx, &names, "bench", &next).unwrap();
        tx.commit().unwrap();
        pos = next;
        done += rows.len();
        rows = ahead;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = (cpu_secs(std::process::id()) - cpu0.0, cpu_secs(backend as u32) - cpu0.1);
    let n: i64 = client.query_one("SELECT count(*) FROM readings", &[]).unwrap().get(0);
    assert_eq!(n as usize, done, "every row loaded once");
    (done, secs, cpu)
}

/// The ceiling: the server alone loading the same rows from a binary COPY file on its
/// own disk (no client, one transaction), into the table with its index and into a
/// bare copy of it. Returns (rows, wall s, server CPU s) for both.
fn ceiling(pg: &PgServer, db: &str) -> [(i64, f64, f64); 2] {
    let mut c = pg.admin(db);
    let data_dir: String = c.query_one("SHOW data_directory", &[]).unwrap().get(0);
    let file = format!("{data_dir}/sensorlog-bench.bin");
    c.batch_execute(&format!("COPY readings TO '{file}' (FORMAT binary)"))
        .unwrap();
    let n: i64 = c.query_one("SELECT count(*) FROM readings", &[]).unwrap().get(0);
    let backend: i32 = c.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut out = [(0, 0.0, 0.0); 2];
    for (i, like) in ["INCLUDING INDEXES", "EXCLUDING INDEXES"].iter().enumerate() {
        c.batch_execute(&format!(
            "DROP TABLE IF EXISTS ceiling; CREATE TABLE ceiling (LIKE readings {like})"
        ))
        .unwrap();
        let cpu0 = cpu_secs(backend as u32);
        let start = Instant::now();
        c.batch_execute(&format!("COPY ceiling FROM '{file}' (FORMAT binary)"))
            .unwrap();
        out[i] = (n, start.elapsed().as_secs_f64(), cpu_secs(backend as u32) - cpu0);
    }
    c.batch_execute("DROP TABLE ceiling").unwrap();
    let _ = std::fs::remove_file(file);
    out
}

struct Daemon {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Daemon {
    fn start(dir: &Path, config: Option<&Path>) -> (Daemon, String) {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            // The dashboard on a free port: 8091 may be taken by another daemon.
            "--http-listen",
            "127.0.0.1:0",
            "--stats-interval-secs",
            "0",
            "--max-connections-per-ip", // the 100 simulated boards share 127.0.0.1
            "1000",
            "--csv",
        ])
        .arg(dir.join("readings.csv"))
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut d = Daemon {
            child,
            lines,
            log: Vec::new(),
        };
        let line = d.wait_for("Listening on", Duration::from_secs(60));
        let addr = line
            .split("Listening on ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap();
        let addr = addr.trim_end_matches(['.', ',']).to_string();
        (d, addr)
    }

    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(l) = self.log.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        while let Ok(l) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.log.push(l.clone());
            if l.contains(needle) {
                return l;
            }
        }
        panic!("no {needle:?} in the daemon's log:\n{}", self.log.join("\n"));
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// Readings/s into the CSV: from the start of `simulate` until the CSV stops growing.
fn ingest(dir: &Path, config: Option<&Path>, readings: usize) -> f64 {
    let _ = std::fs::remove_file(dir.join("readings.csv"));
    let (d, addr) = Daemon::start(dir, config);
    let boards = 100;
    let start = Instant::now();
    let out = Command::new(BIN)
        .args([
            "simulate",
            "--addr",
            &addr,
            "--boards",
            &boards.to_string(),
            "--rate",
            "0",
        ])
        .args(["--count", &(readings / boards).to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = dir.join("readings.csv");
    let (mut last_len, mut last_change) = (0, Instant::now());
    while last_change.elapsed() < Duration::from_millis(300) {
        let len = std::fs::metadata(&csv).map(|m| m.len()).unwrap_or(0);
        if len != last_len {
            (last_len, last_change) = (len, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let secs = (last_change - start).as_secs_f64();
    d.stop();
    readings as f64 / secs
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rows = arg("--rows", if full { 1_000_000 } else { 2_000 });
    let insert_n = arg("--insert-rows", if full { 200_000 } else { 1_000 });
    let readings = arg("--readings", if full { 400_000 } else { 2_000 });
    let pg = PgServer::start_with("bench", true);
    let dir: PathBuf = std::env::temp_dir().join(format!("sensorlog-pg-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let csv = dir.join("backlog.csv");
    generate(&csv, rows);
    println!(
        "PostgreSQL sink benchmark: {rows} CSV rows ({:.0} MB), PostgreSQL {} with default fsync, loopback.",
        std::fs::metadata(&csv).unwrap().len() as f64 / 1e6,
        pg.admin("postgres")
            .query_one("SHOW server_version", &[])
            .unwrap()
            .get::<_, String>(0)
    );

    let load_avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Machine: {} CPUs, load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_avg.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!("                                              rows     wall s      rows/s   client CPU s   server CPU s   rows per CPU-s (both)");
    let mut rates = Vec::new();
    for (name, use_copy, n_rows) in [
        ("COPY (binary), 10,000-row transactions", true, rows),
        ("INSERT ... VALUES (1,000 rows/statement)", false, insert_n),
    ] {
        let db = if use_copy { "bench_copy" } else { "bench_insert" };
        let (n, secs, (cc, sc)) = load(&pg, db, &csv, n_rows, use_copy);
        println!(
            "{name:<42} {n:>9} {secs:>9.2} {:>11.0} {cc:>14.2} {sc:>14.2} {:>22.0}",
            n as f64 / secs,
            n as f64 / (cc + sc).max(1e-9)
        );
        rates.push((n as f64 / secs, n as f64 / (cc + sc).max(1e-9)));
    }
    println!(
        "COPY / INSERT: {:.1}x in rows/s, {:.1}x in rows per CPU-second",
        rates[0].0 / rates[1].0,
        rates[0].1 / rates[1].1
    );
    for ((n, secs, cpu), what) in ceiling(&pg, "bench_copy")
        .into_iter()
        .zip(["with the index", "bare table, no index"])
    {
        println!(
            "Ceiling: server-side COPY of the same rows from a binary file, {what}: {n} rows in {secs:.2} s = {:.0} rows/s; server CPU {cpu:.2} s = {:.0} rows per CPU-second",
            n as f64 / secs,
            n as f64 / cpu.max(1e-9)
        );
    }

    // The daemon catching up with a backlog.
    pg.create_db("bench_daemon");
    let run_dir = dir.join("catchup");
    std::fs::create_dir_all(&run_dir).unwrap();
    std::fs::copy(&csv, run_dir.join("readings.csv")).unwrap();
    std::fs::write(run_dir.join("pw"), SUPER_PASSWORD).unwrap();
    let config = run_dir.join("sensorlog.toml");
    std::fs::write(
        &config,
        format!(
            "[postgres]\nurl = \"{}\"\npassword_file = \"{}\"\nsource = \"bench\"\nbatch_rows = {}\n",
            pg.url("postgres", "bench_daemon"),
            run_dir.join("pw").display(),
            (rows / 4).clamp(1, 10_000)
        ),
    )
    .unwrap();
    let (mut d, _) = Daemon::start(&run_dir, Some(&config));
    let line = d.wait_for("PostgreSQL caught up", Duration::from_secs(600));
    let daemon_cpu = cpu_secs(d.child.id());
    let backend: Option<i32> = pg
        .admin("bench_daemon")
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'sensorlog' AND datname = 'bench_daemon'",
            &[],
        )
        .unwrap()
        .map(|r| r.get(0));
    let server_cpu = backend.map_or(0.0, |p| cpu_secs(p as u32));
    d.stop();
    println!(
        "Daemon catch-up of the backlog: {} CPU: daemon {daemon_cpu:.2} s (with its start-up scan of the CSV), server backend {server_cpu:.2} s = {:.0} rows per CPU-second.",
        line.split("PostgreSQL caught up: ").nth(1).unwrap_or(&line),
        rows as f64 / (daemon_cpu + server_cpu).max(1e-9)
    );

    // Ingest with the sink off and on (a fresh database each time), rounds alternating.
    let rounds = arg("--rounds", if full { 5 } else { 1 });
    let (mut offs, mut ons) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        offs.push(ingest(&run_dir, None, readings));
        pg.create_db("bench_daemon");
        ons.push(ingest(&run_dir, Some(&config), readings));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(" ");
    println!(
        "Ingest, {readings} readings from 100 boards flat out, {rounds} rounds each: sink off {} readings/s, sink on {}",
        fmt(&offs),
        fmt(&ons)
    );
    let (off, on) = (median(&mut offs), median(&mut ons));
    println!(
        "Ingest medians: sink off {off:.0} readings/s, sink on {on:.0} readings/s ({:+.1}%)",
        (on / off - 1.0) * 100.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
