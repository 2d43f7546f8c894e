//! One measurement: a fresh contender, one workload, the wait until every reading is on
//! disk, the stop, and the count.
//!
//! The order is what makes the numbers mean something:
//! 1. start the contender and wait until it accepts (start-up is not timed);
//! 2. for the idle workload, open the idle connections from the harness and wait until
//!    the contender has accepted every one (see below);
//! 3. start the generator; the clock starts now;
//! 4. poll the output file until the expected number of lines is readable: that instant
//!    stops the clock. No growth for [`STALL`] ends the wait and the run reports what is
//!    missing instead of hanging;
//! 5. read peak RSS and CPU from `/proc` and check the idle connections while the
//!    process is still alive, then SIGTERM;
//! 6. only now count readings by identity (the file is final) and delete the file.
//!
//! Why the harness holds the idle connections instead of `simulate --idle`: the generator
//! starts its boards the moment its last idle connect returns, but a connect returns
//! once the kernel has queued the connection, not once the server has accepted it. A
//! thread-per-connection server then spends the whole load still accepting and spawning
//! threads (in a trial, sensorlog had accepted at most 9,002 of 10,000 by the time the
//! boards were done), so the figure measured a connection storm, not "10,000 boards
//! connected while 100 send", and no moment had all 10,000 held. Held by the harness,
//! they are all accepted before the clock starts, the memory they cost is read at that
//! moment, and after the load each one is checked (a refused or closed connection reads
//! as end-of-stream or an `ERR` line, an open one would block).
//!
//! Every wait is bounded; the contender and generator are killed by their guards on every
//! way out of [`one`], panics included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::contenders::{Contender, Setup, SENSORLOG_BIN};
use crate::latency::Tailer;
use crate::load::{Generator, IdleBoards, Scale, Summary, Workload};
use crate::process;
use crate::report::{grouped, RunResult};
use crate::rsyslog::{Tuning, CANDIDATES};
use crate::verify::{self, LineCounter};

/// No new line for this long (once the load has started) ends the wait.
const STALL: Duration = Duration::from_secs(10);
/// How long opening and accepting the idle connections may take.
const IDLE_OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// A hard cap on one run, whatever happens.
const RUN_CAP: Duration = Duration::from_secs(300);
/// Poll period of the output file while waiting.
const POLL: Duration = Duration::from_millis(2);
/// How long a contender may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// What every run shares.
pub struct Bench<'a> {
    pub setup: Setup<'a>,
    pub scale: Scale,
    runs: u32,
}

impl<'a> Bench<'a> {
    pub fn new(setup: Setup<'a>, scale: Scale) -> Bench<'a> {
        Bench { setup, scale, runs: 0 }
    }
}

/// Runs `contender` under `wl` and reports; never panics on a misbehaving contender.
pub fn one(bench: &mut Bench, contender: Contender, wl: &Workload) -> RunResult {
    bench.runs += 1;
    let n = bench.runs;
    let name = format!("{}-{}{n}", contender.name(), wl.key);
    // Device names differ per run, so a stray line from an earlier run can never pass as ours.
    let prefix = format!("r{n}{}", wl.key.to_ascii_lowercase());
    let ext = match contender.output() {
        verify::Output::Csv => "csv",
        verify::Output::Lines => "log",
    };
    let out = bench.setup.dir.join(format!("{name}.{ext}"));
    let mut result = RunResult::new(contender, wl);
    eprintln!(
        "== {} / {}: {} readings from {} boards{}",
        contender.name(),
        wl.name,
        grouped(wl.nominal_readings()),
        wl.boards,
        if wl.idle > 0 {
            format!(" with {} idle connections", wl.idle)
        } else {
            String::new()
        }
    );
    if let Err(e) = measure(bench, contender, wl, &name, &prefix, &out, &mut result) {
        eprintln!("   failed: {e}");
        result.failed = Some(e);
    }
    let _ = std::fs::remove_file(&out);
    result
}

fn measure(
    bench: &Bench,
    contender: Contender,
    wl: &Workload,
    name: &str,
    prefix: &str,
    out: &Path,
    result: &mut RunResult,
) -> Result<(), String> {
    let _ = std::fs::remove_file(out);
    let mut server = contender.start(&bench.setup, name, out, wl.sensorlog_toml)?;
    let pid = server.proc.pid();
    let idle = if wl.idle > 0 {
        Some(hold_idle(pid, server.addr, wl.idle, result)?)
    } else {
        None
    };
    let tailer = if wl.stamp {
        Some(Tailer::start(out, contender.output()).map_err(|e| format!("start the latency tailer: {e}"))?)
    } else {
        None
    };

    let started = Instant::now();
    let mut gen = Generator::start(Path::new(SENSORLOG_BIN), wl, server.addr, prefix)
        .map_err(|e| format!("spawn the generator: {e}"))?;
    let output = contender.output();
    let mut counter = LineCounter::new(out);
    let mut summary: Option<Result<Summary, String>> = None;
    let (mut last_lines, mut last_growth) = (0, started);
    let mut next_progress = started + Duration::from_secs(1);
    let reached = loop {
        let lines = counter.poll();
        let now = Instant::now();
        if summary.is_none() && gen.exited() {
            summary = Some(gen.finish(Duration::from_secs(5)));
        }
        // The total is known up front for counted workloads, else from the generator's summary.
        let target = match &summary {
            Some(Ok(s)) => Some(s.sent),
            _ if wl.counted() => Some(wl.nominal_readings()),
            _ => None,
        }
        .map(|readings| output.expected_lines(readings));
        if target.is_some_and(|t| lines >= t) {
            break Some(now);
        }
        if lines != last_lines {
            (last_lines, last_growth) = (lines, now);
        }
        let give_up = if now - last_growth > STALL {
            Some(format!(
                "no new line for {} s: {} of {} lines on disk",
                STALL.as_secs(),
                grouped(lines),
                target.map_or("?".to_string(), grouped)
            ))
        } else if now - started > RUN_CAP {
            Some(format!("the run took more than {} s", RUN_CAP.as_secs()))
        } else {
            None
        };
        if let Some(why) = give_up {
            eprintln!("   gave up waiting: {why}");
            result.notes.push(why);
            break None;
        }
        if now >= next_progress {
            next_progress += Duration::from_secs(1);
            eprintln!(
                "   [{:5.1} s] {} of {} lines on disk",
                (now - started).as_secs_f64(),
                grouped(lines),
                target.map_or("?".to_string(), grouped)
            );
        }
        std::thread::sleep(POLL);
    };
    result.secs = reached.map(|end| (end - started).as_secs_f64());
    result.latency = tailer.and_then(Tailer::finish);
    let summary = match summary {
        Some(s) => s,
        None => gen.finish(Duration::from_secs(60)),
    };

    // Everything that needs the contender alive, before SIGTERM (a stopping server closes
    // connections itself).
    result.peak_rss_kib = process::status_kib(pid, "VmHWM");
    result.server_cpu_secs = process::cpu_secs(pid);
    let closed = process::port_states(server.addr.port()).closed_by_server;
    let problems = server.problems();
    if let Some(idle) = idle {
        let refusals = problems
            .iter()
            .filter(|l| l.contains("too-many-connections") || l.contains("Refused"))
            .count();
        result.notes.push(match idle.check() {
            Ok(()) if refusals == 0 => format!(
                "every idle connection stayed open through the load ({} checked one by one; no refusal in the log)",
                grouped(wl.idle)
            ),
            Ok(()) => format!("every idle connection stayed open, but the log has {refusals} refusals"),
            Err(e) => format!("idle connections NOT all held: {e}; {refusals} refusals in the log"),
        });
    }
    if closed > 0 {
        result.notes.push(format!(
            "the contender closed {} connections before their boards did (refused or dropped)",
            grouped(closed)
        ));
    }
    let (status, killed) = server.proc.terminate(STOP_GRACE);
    if killed {
        result.notes.push(format!(
            "did not exit within {} s of SIGTERM; killed",
            STOP_GRACE.as_secs()
        ));
    } else if !status.is_some_and(|s| s.success()) {
        result.notes.push(format!("exited with {status:?} after SIGTERM"));
    }
    for p in problems.iter().take(5) {
        result.notes.push(format!("log: {p}"));
    }
    if problems.len() > 5 {
        result
            .notes
            .push(format!("log: ... {} more such lines", problems.len() - 5));
    }
    server.cleanup();

    let summary = summary?;
    result.sent = summary.sent;
    result.gen_cpu_secs = Some(summary.cpu_secs);
    if summary.failed_boards > 0 || (wl.counted() && summary.sent < wl.nominal_readings()) {
        result.notes.push(format!(
            "the generator sent {} of {} readings; {} boards failed; first error: {}",
            grouped(summary.sent),
            grouped(wl.nominal_readings()),
            summary.failed_boards,
            summary.errors.first().map_or("none", String::as_str)
        ));
    }
    let tally = verify::tally(out, output, wl.new_names)?;
    result.lost = Some(tally.lost(summary.sent));
    result.duplicated = Some(tally.duplicated());
    if tally.unreadable > 0 {
        result.notes.push(format!(
            "{} lines in the output are not a simulated reading",
            tally.unreadable
        ));
    }
    eprintln!(
        "   {} readings/s, lost {}, duplicated {}, peak RSS {:.1} MiB",
        result
            .readings_per_sec()
            .map_or("-".to_string(), |v| grouped(v.round() as u64)),
        grouped(tally.lost(summary.sent)),
        grouped(tally.duplicated()),
        result.peak_rss_kib.unwrap_or(0) as f64 / 1024.0
    );
    Ok(())
}

/// Opens the idle boards and waits until the contender has accepted every one, so the
/// load then runs against a server that really holds them all. Notes what holding them
/// costs in memory.
fn hold_idle(pid: u32, addr: SocketAddr, n: u64, result: &mut RunResult) -> Result<IdleBoards, String> {
    let before_kib = process::status_kib(pid, "VmRSS").unwrap_or(0);
    let t = Instant::now();
    let idle = IdleBoards::open(addr, n, IDLE_OPEN_TIMEOUT)?;
    // The listener plus one socket per board.
    let mut polls = 0u32;
    let accepted = loop {
        let held = process::open_sockets(pid).unwrap_or(0).saturating_sub(1);
        if held >= n {
            break true;
        }
        // Reading /proc costs CPU the contender needs for accepting: look every 50 ms,
        // and at the kernel's table of 20,000 connections every 500 ms.
        let refused = if polls % 10 == 9 {
            process::port_states(addr.port()).closed_by_server
        } else {
            0
        };
        polls += 1;
        if refused > 0 {
            result.notes.push(format!(
                "{} of {} idle connections accepted; the contender closed {} (refused)",
                grouped(held),
                grouped(n),
                grouped(refused)
            ));
            break false;
        }
        if t.elapsed() > IDLE_OPEN_TIMEOUT {
            result.notes.push(format!(
                "only {} of {} idle connections accepted after {} s",
                grouped(held),
                grouped(n),
                IDLE_OPEN_TIMEOUT.as_secs()
            ));
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if accepted {
        let after_kib = process::status_kib(pid, "VmRSS").unwrap_or(0);
        result.notes.push(format!(
            "{} idle connections opened and accepted in {:.1} s; RSS holding them, before the load: {:.1} MiB \
             ({:.1} KiB per connection)",
            grouped(n),
            t.elapsed().as_secs_f64(),
            after_kib as f64 / 1024.0,
            after_kib.saturating_sub(before_kib) as f64 / n as f64
        ));
    }
    Ok(idle)
}

/// Tries each rsyslog tuning on a short throughput run and keeps the fastest that lost
/// nothing. Returns the trial's lines for the report.
pub fn choose_rsyslog_tuning(bench: &mut Bench) -> Vec<String> {
    // Smaller trials are dominated by start-up and rank the candidates at random.
    let count = 5000;
    let rounds = if bench.scale == Scale::Full { 3 } else { 1 };
    let trial = Workload {
        key: 'T',
        name: format!("trial 100x{count}"),
        boards: 100,
        count: Some(count),
        rate: 0.0,
        duration_secs: None,
        idle: 0,
        stamp: false,
        new_names: false,
        sensorlog_toml: None,
    };
    // Rounds alternate the candidates, so a disturbance on the machine does not hit one
    // candidate's every try; each is ranked by its median round (a single lucky round
    // must not decide), and a candidate that lost a reading is out.
    let mut seen: Vec<(Tuning, Vec<Option<f64>>)> = CANDIDATES.iter().map(|&t| (t, Vec::new())).collect();
    let mut lines: Vec<String> = Vec::new();
    for round in 1..=rounds {
        for (t, tries) in &mut seen {
            bench.setup.tuning = *t;
            eprintln!("-- rsyslog tuning trial {round}/{rounds}: {t}");
            let r = one(bench, Contender::Rsyslog, &trial);
            let rate = r.readings_per_sec().filter(|_| r.clean());
            if rate.is_none() {
                lines.push(format!(
                    "{t}: a round was not clean ({})",
                    r.failed.or(r.notes.first().cloned()).unwrap_or_default()
                ));
            }
            tries.push(rate);
        }
    }
    let mut winner: Option<(Tuning, f64)> = None;
    for (t, tries) in &seen {
        let mut rates: Vec<f64> = tries.iter().flatten().copied().collect();
        if rates.len() < tries.len() {
            continue;
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let shown: Vec<String> = tries.iter().flatten().map(|v| grouped(v.round() as u64)).collect();
        lines.push(format!("{t}: {} readings/s", shown.join(", ")));
        if winner.is_none_or(|(_, best)| median > best) {
            winner = Some((*t, median));
        }
    }
    bench.setup.tuning = winner.map_or(CANDIDATES[0], |(t, _)| t);
    lines
}

/// Where runs put their files: `<target>/bench-ingest/<pid>`, removed when dropped.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn create() -> std::io::Result<Scratch> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), |t| manifest.join(t));
        let path = target.join("bench-ingest").join(std::process::id().to_string());
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
