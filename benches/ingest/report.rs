//! The printed result: one table, the ratios that answer "how close is sensorlog to the
//! limit and to rsyslog", latency, notes, and a legend.
//!
//! The legend is part of the result, not decoration: a number without the durability
//! policy behind it (fsync or not) and the machine it ran on cannot be compared with
//! anything, so the report states both every time.

use crate::contenders::Contender;
use crate::latency::Latency;
use crate::load::{Scale, Workload};

/// Everything measured in one contender × workload run.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub contender: Contender,
    pub workload: Workload,
    /// Readings the generator wrote to its sockets.
    pub sent: u64,
    /// Seconds from the start of the load until the last expected line was on disk.
    pub secs: Option<f64>,
    pub lost: Option<u64>,
    pub duplicated: Option<u64>,
    pub peak_rss_kib: Option<u64>,
    pub server_cpu_secs: Option<f64>,
    pub gen_cpu_secs: Option<f64>,
    pub latency: Option<Latency>,
    /// Notes for the report (idle connections held, log lines that signal trouble).
    pub notes: Vec<String>,
    /// readings/s of every round, when the workload ran more than once (`--rounds`).
    pub round_rates: Vec<f64>,
    /// The contender's CPU seconds per reading of every round, in round order (`--rounds`).
    pub round_cpu: Vec<Option<f64>>,
    /// Why it did not run at all.
    pub skipped: Option<String>,
    /// What went wrong, if it did not complete.
    pub failed: Option<String>,
}

impl RunResult {
    pub fn new(contender: Contender, workload: &Workload) -> RunResult {
        RunResult {
            contender,
            workload: workload.clone(),
            sent: 0,
            secs: None,
            lost: None,
            duplicated: None,
            peak_rss_kib: None,
            server_cpu_secs: None,
            gen_cpu_secs: None,
            latency: None,
            notes: Vec::new(),
            round_rates: Vec::new(),
            round_cpu: Vec::new(),
            skipped: None,
            failed: None,
        }
    }

    pub fn readings_per_sec(&self) -> Option<f64> {
        self.secs.filter(|s| *s > 0.0).map(|s| self.sent as f64 / s)
    }

    /// The contender's CPU seconds (user + system) per reading sent.
    fn cpu_per_reading(&self) -> Option<f64> {
        self.server_cpu_secs
            .filter(|_| self.sent > 0)
            .map(|c| c / self.sent as f64)
    }

    /// Several rounds of one contender × workload as one result: the round with the
    /// median readings/s stands for them (this machine's run-to-run spread is wide, so one
    /// round can mislead), while losses and doubles add up over all rounds, peak RSS is
    /// the highest, and the first failure is kept.
    pub fn combine(mut rounds: Vec<RunResult>) -> RunResult {
        let cpu: Vec<Option<f64>> = rounds.iter().map(RunResult::cpu_per_reading).collect();
        if rounds.len() == 1 {
            let mut only = rounds.remove(0);
            only.round_cpu = cpu;
            return only;
        }
        let rates: Vec<f64> = rounds.iter().filter_map(RunResult::readings_per_sec).collect();
        let sum = |f: fn(&RunResult) -> Option<u64>| rounds.iter().map(f).sum::<Option<u64>>();
        let (lost, duplicated) = (sum(|r| r.lost), sum(|r| r.duplicated));
        let peak = rounds.iter().filter_map(|r| r.peak_rss_kib).max();
        let failed = rounds.iter().find_map(|r| r.failed.clone());
        let mut notes: Vec<String> = Vec::new();
        for n in rounds.iter().flat_map(|r| r.notes.iter()) {
            if !notes.contains(n) {
                notes.push(n.clone());
            }
        }
        rounds.sort_by(|a, b| {
            let rate = |r: &RunResult| r.readings_per_sec().unwrap_or(0.0);
            rate(a).total_cmp(&rate(b))
        });
        let mut median = rounds.swap_remove(rounds.len() / 2);
        median.lost = lost;
        median.duplicated = duplicated;
        median.peak_rss_kib = peak;
        median.failed = failed;
        median.notes = notes;
        median.round_rates = rates;
        median.round_cpu = cpu;
        median
    }

    /// Ran, completed, and every reading is in the file exactly once.
    pub fn clean(&self) -> bool {
        self.skipped.is_none()
            && self.failed.is_none()
            && self.secs.is_some()
            && self.lost == Some(0)
            && self.duplicated == Some(0)
    }
}

/// Thousands separators, for counts a reader compares by eye.
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// What the legend needs besides the results.
pub struct Context {
    pub scale: Scale,
    pub nofile_limit: u64,
    pub rsyslog: Result<String, String>,
    pub rsyslog_choice: String,
    pub rsyslog_config: Option<String>,
}

pub fn print(results: &[RunResult], ctx: &Context) {
    println!();
    println!(
        "Ingest benchmark ({}), loopback 127.0.0.1, load from `sensorlog simulate --format json`:",
        match ctx.scale {
            Scale::Full => "full",
            Scale::Quick => "--quick: counts / 10",
            Scale::Smoke => "smoke run under cargo test: counts / 100",
        }
    );
    println!();
    println!(
        "{:<10} {:<16} {:>10} {:>12} {:>8} {:>8} {:>9} {:>9} {:>9}   rounds",
        "contender", "workload", "readings", "readings/s", "lost", "dup", "peak RSS", "srv CPU", "gen CPU"
    );
    println!(
        "{:<10} {:<16} {:>10} {:>12} {:>8} {:>8} {:>9} {:>9} {:>9}   readings/s, min-max",
        "", "", "", "(median)", "", "", "MiB", "s", "s"
    );
    for r in results {
        if let Some(why) = &r.skipped {
            println!("{:<10} {:<16} skipped: {why}", r.contender.name(), r.workload.name);
            continue;
        }
        let spread = match r
            .round_rates
            .iter()
            .copied()
            .reduce(f64::min)
            .zip(r.round_rates.iter().copied().reduce(f64::max))
        {
            Some((lo, hi)) => format!(
                "{} x, {}-{}",
                r.round_rates.len(),
                grouped(lo.round() as u64),
                grouped(hi.round() as u64)
            ),
            None => "1 x".to_string(),
        };
        println!(
            "{:<10} {:<16} {:>10} {:>12} {:>8} {:>8} {:>9} {:>9} {:>9}   {spread}",
            r.contender.name(),
            r.workload.name,
            grouped(r.sent),
            opt(r.readings_per_sec(), |v| grouped(v.round() as u64)),
            opt(r.lost, grouped),
            opt(r.duplicated, grouped),
            opt(r.peak_rss_kib, |k| format!("{:.1}", k as f64 / 1024.0)),
            opt(r.server_cpu_secs, |s| format!("{s:.2}")),
            opt(r.gen_cpu_secs, |s| format!("{s:.2}")),
        );
        if let Some(e) = &r.failed {
            println!("{:<27} FAILED: {e}", "");
        }
    }

    println!();
    println!("Ratios (readings/s):");
    let mut workloads: Vec<&Workload> = Vec::new();
    for r in results {
        if !workloads.iter().any(|w| w.key == r.workload.key) {
            workloads.push(&r.workload);
        }
    }
    for w in &workloads {
        let rate = |c: Contender| {
            results
                .iter()
                .find(|r| r.workload.key == w.key && r.contender == c)
                .and_then(RunResult::readings_per_sec)
        };
        let ratio = |c: Contender| match (rate(Contender::Sensorlog), rate(c)) {
            (Some(a), Some(b)) => format!("{:.2}", a / b),
            _ => "n/a".to_string(),
        };
        println!(
            "  {:<16} sensorlog / raw copier = {:>5}   sensorlog / rsyslog = {:>5}{}",
            w.name,
            ratio(Contender::RawCopy),
            ratio(Contender::Rsyslog),
            if w.rate > 0.0 {
                "   (paced load: the rate is offered, not a limit)"
            } else {
                ""
            }
        );
    }

    print_cpu_per_reading(results);

    let timed: Vec<&RunResult> = results.iter().filter(|r| r.latency.is_some()).collect();
    if !timed.is_empty() {
        println!();
        println!("Latency, send -> line readable in the file (ms; target for sensorlog: p99 < 10 ms):");
        println!(
            "{:<10} {:<16} {:>8} {:>8} {:>8} {:>9}",
            "contender", "workload", "p50", "p99", "max", "samples"
        );
        for r in timed {
            if let Some(l) = r.latency {
                println!(
                    "{:<10} {:<16} {:>8.2} {:>8.2} {:>8.2} {:>9}",
                    r.contender.name(),
                    r.workload.name,
                    l.p50_ms,
                    l.p99_ms,
                    l.max_ms,
                    grouped(l.samples)
                );
            }
        }
    }

    let noted: Vec<&RunResult> = results.iter().filter(|r| !r.notes.is_empty()).collect();
    if !noted.is_empty() {
        println!();
        println!("Notes:");
        for r in noted {
            for n in &r.notes {
                println!("  {} / {}: {n}", r.contender.name(), r.workload.name);
            }
        }
    }

    legend(results, ctx);
}

/// sensorlog's CPU per reading, each workload's median over its rounds, and for a flood of
/// new names the ratio to its stable twin (issue 22's goal: at most 1.5). Rounds of the
/// two workloads alternate, so round k of each ran side by side: the ratio is given both
/// median over median and as the median of the rounds' own ratios, with every round's.
fn print_cpu_per_reading(results: &[RunResult]) {
    let ours: Vec<&RunResult> = results
        .iter()
        .filter(|r| r.contender == Contender::Sensorlog && r.round_cpu.iter().any(Option::is_some))
        .collect();
    if ours.is_empty() {
        return;
    }
    println!();
    println!("CPU per reading (sensorlog's user + system CPU / readings; median of the rounds, min-max):");
    let width = ours.iter().map(|r| r.workload.name.len()).max().unwrap_or(0);
    for r in &ours {
        let cpu: Vec<f64> = r.round_cpu.iter().flatten().copied().collect();
        let (lo, hi) = (
            cpu.iter().copied().fold(f64::MAX, f64::min),
            cpu.iter().copied().fold(0.0, f64::max),
        );
        println!(
            "  {:<width$} {:>6.0} ns   ({:.0}-{:.0} ns, {} x)",
            r.workload.name,
            median(&cpu).unwrap_or(0.0) * 1e9,
            lo * 1e9,
            hi * 1e9,
            cpu.len()
        );
    }
    for flood in ours.iter().filter(|r| r.workload.new_names) {
        // Its twin: the same boards and counts, with stable names and no config of its own.
        let load = &flood.workload;
        let Some(stable) = ours.iter().find(|r| {
            let w = &r.workload;
            !w.new_names
                && w.sensorlog_toml.is_none()
                && (w.boards, w.count, w.idle) == (load.boards, load.count, load.idle)
        }) else {
            continue;
        };
        let per_round: Vec<f64> = flood
            .round_cpu
            .iter()
            .zip(&stable.round_cpu)
            .filter_map(|(f, s)| Some(f.as_ref()? / s.as_ref()?))
            .collect();
        let of_medians = |r: &RunResult| median(&r.round_cpu.iter().flatten().copied().collect::<Vec<_>>());
        let (Some(f), Some(s)) = (of_medians(flood), of_medians(stable)) else {
            continue;
        };
        let rounds: Vec<String> = per_round.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "  {} / {}: {:.2} median over median; round by round {} (median {:.2})",
            flood.workload.name,
            stable.workload.name,
            f / s,
            rounds.join(" "),
            median(&per_round).unwrap_or(f64::NAN)
        );
    }
}

/// The median of `v` (the mean of the middle two for an even count).
fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn legend(results: &[RunResult], ctx: &Context) {
    println!();
    println!("Legend:");
    for c in Contender::ALL {
        if results.iter().any(|r| r.contender == c) {
            println!("  {:<10} {}", c.name(), c.policy());
        }
    }
    match &ctx.rsyslog {
        Ok(v) => println!("  {:<10} {v}; {}", "", ctx.rsyslog_choice),
        Err(why) => println!("  {:<10} skipped: {why}", "rsyslog"),
    }
    println!("  readings/s = readings sent / seconds from the start of the generator until the last expected");
    println!("               line is readable in the output file. In the idle workload the harness first opens");
    println!("               the idle connections and waits until the contender has accepted them all.");
    println!("               lost = sent - distinct (device, seq) in the file; dup = found - distinct.");
    println!("               peak RSS = VmHWM just before SIGTERM; srv CPU = the contender's user+sys CPU;");
    println!("               gen CPU = the load generator's. A fresh contender process per run.");
    println!("               With several rounds (--rounds), the median round is shown; lost and dup add up");
    println!("               over all rounds; rounds of different contenders and workloads alternate.");
    println!(
        "  machine    {} CPUs ({}), Linux {}, open-files limit {}; contender, generator and harness",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        kernel(),
        ctx.nofile_limit
    );
    println!("             share these CPUs.");
    if let Some(bin) = std::env::var_os(crate::contenders::SERVER_BIN_ENV) {
        println!(
            "  sensorlog  binary under test: {} (from {})",
            bin.to_string_lossy(),
            crate::contenders::SERVER_BIN_ENV
        );
    }
    if let Some(conf) = &ctx.rsyslog_config {
        println!();
        println!("rsyslog config used (generated per run; <...> filled in):");
        for l in conf.lines() {
            println!("  {l}");
        }
    }
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}

fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| "?".to_string(), |s| s.trim().to_string())
}
