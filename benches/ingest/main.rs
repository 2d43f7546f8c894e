//! Ingest benchmark: how many readings per second sensorlog gets from TCP onto disk, how
//! that compares with the physical limit of this machine and with rsyslog, and whether
//! anything is lost or doubled on the way.
//!
//! `bash benches/run.sh` runs it (it installs rsyslog first if needed), or directly
//! `cargo bench --bench ingest -- [--quick] [FILTER...]`; a filter is a contender name
//! (`sensorlog`, `raw`, `rsyslog`) or a workload letter or name (`A`..`F`, `idle`,
//! `latency`). Under `cargo test --all-targets` (no `--bench` argument) it does a smoke
//! run at a hundredth of the size, so CI keeps the harness working, not just compiling.
//!
//! Each number compares receivers under the same load: a contender is its own process
//! (never a thread of the harness, whose polling would blur its CPU and memory), started
//! fresh per workload, fed by `sensorlog simulate` in a third process, and measured to
//! the moment its file holds every reading. The files say who does what:
//! - `contenders.rs`: sensorlog, the raw copier and rsyslog behind one start/stop interface;
//! - `rawcopy.rs`: the raw copier itself (this binary re-executed in that role);
//! - `rsyslog.rs`: rsyslog's generated config, validation and tuning candidates;
//! - `load.rs`: the workloads and the generator process;
//! - `run.rs`: one measurement, step by step, and the rsyslog tuning trial;
//! - `verify.rs`: waiting for lines on disk, then counting readings by identity;
//! - `latency.rs`: the tailer that timestamps lines as they become readable;
//! - `process.rs`: child-process guards and `/proc` readings;
//! - `report.rs`: the table, ratios and legend.
//!
//! Exit code: 0 when sensorlog and the raw copier delivered every reading exactly once,
//! 1 otherwise (rsyslog's results are reported, not judged), 2 for bad arguments.

mod contenders;
mod latency;
mod load;
mod process;
mod rawcopy;
mod report;
mod rsyslog;
mod run;
mod verify;

use contenders::{Contender, Setup};
use load::{Scale, Workload};
use report::RunResult;

const USAGE: &str = "usage: cargo bench --bench ingest -- [--quick] [--rounds N] [FILTER...]
  --quick    counts divided by 10 (a smoke run of a few seconds per contender)
  --rounds N run each workload N times per contender, alternating contenders and
             workloads, and report the median (default 3 for a full run, 1 otherwise)
  FILTER     run only matching contenders (sensorlog, raw, rsyslog) and/or workloads
             (A B C D E F, or part of a name: 100x, idle, latency, new-names, tracked)";

struct Options {
    scale: Scale,
    rounds: usize,
    filters: Vec<String>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> Result<Options, String> {
        let (mut bench, mut quick, mut filters) = (false, false, Vec::new());
        let mut rounds = None;
        let mut args = args.peekable();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--bench" => bench = true,
                "--quick" => quick = true,
                "--rounds" => {
                    let n = args
                        .next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .filter(|&n| (1..=20).contains(&n));
                    rounds = Some(n.ok_or("--rounds takes a number from 1 to 20")?);
                }
                "-h" | "--help" => return Err(String::new()),
                s if s.starts_with('-') => eprintln!("ingest bench: ignoring unknown option {s:?}"),
                s => filters.push(s.to_lowercase()),
            }
        }
        let scale = match (quick, bench) {
            (true, _) => Scale::Quick,
            (false, true) => Scale::Full,
            (false, false) => Scale::Smoke,
        };
        let rounds = rounds.unwrap_or(if scale == Scale::Full { 3 } else { 1 });
        Ok(Options { scale, rounds, filters })
    }

    /// The contenders and workloads the filters select (all of a kind no filter names).
    fn select(&self, workloads: Vec<Workload>) -> Result<(Vec<Contender>, Vec<Workload>), String> {
        let names_contender = |f: &str, c: Contender| f.len() > 1 && c.name().contains(f);
        let names_workload = |f: &str, w: &Workload| {
            (f.len() == 1 && f.starts_with(w.key.to_ascii_lowercase())) || (f.len() > 1 && w.name.contains(f))
        };
        for f in &self.filters {
            if !Contender::ALL.iter().any(|&c| names_contender(f, c)) && !workloads.iter().any(|w| names_workload(f, w))
            {
                return Err(format!("{f:?} names no contender and no workload"));
            }
        }
        let mut contenders: Vec<Contender> = Contender::ALL
            .into_iter()
            .filter(|&c| self.filters.iter().any(|f| names_contender(f, c)))
            .collect();
        if contenders.is_empty() {
            contenders = Contender::ALL.to_vec();
        }
        let chosen: Vec<Workload> = workloads
            .iter()
            .filter(|w| self.filters.iter().any(|f| names_workload(f, w)))
            .cloned()
            .collect();
        Ok((contenders, if chosen.is_empty() { workloads } else { chosen }))
    }
}

fn main() {
    if rawcopy::is_role() {
        rawcopy::main();
    }
    let code = match Options::parse(std::env::args().skip(1)) {
        Ok(opts) => run(&opts),
        // An empty message is a request for help.
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            0
        }
        Err(e) => {
            eprintln!("ingest bench: {e}\n{USAGE}");
            2
        }
    };
    std::process::exit(code);
}

fn run(opts: &Options) -> i32 {
    let (contenders, workloads) = match opts.select(load::workloads(opts.scale)) {
        Ok(sel) => sel,
        Err(e) => {
            eprintln!("ingest bench: {e}\n{USAGE}");
            return 2;
        }
    };
    // The idle workload holds 10,000 sockets in the harness and 10,100 in the contender;
    // children inherit the raised limit.
    let nofile_limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ingest bench: cannot raise the open-files limit: {e}");
            0
        }
    };
    let scratch = match run::Scratch::create() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ingest bench: cannot create the scratch directory: {e}");
            return 1;
        }
    };
    {
        // Interrupted: no guard's Drop runs after exit, so kill the children and clean up here.
        let dir = scratch.path.clone();
        let handler = ctrlc::set_handler(move || {
            process::kill_all_children();
            let _ = std::fs::remove_dir_all(&dir);
            eprintln!("ingest bench: interrupted; stopped every child process.");
            std::process::exit(130);
        });
        if let Err(e) = handler {
            eprintln!(
                "ingest bench: cannot install the Ctrl-C handler ({e}); an interrupt may leave children running."
            );
        }
    }
    let rsyslogd = if contenders.contains(&Contender::Rsyslog) {
        rsyslog::detect()
    } else {
        Err("not selected".to_string())
    };
    let mut bench = run::Bench::new(
        Setup {
            dir: &scratch.path,
            rsyslogd: rsyslogd.as_ref().ok(),
            tuning: rsyslog::CANDIDATES[0],
        },
        opts.scale,
    );
    let mut rsyslog_choice = format!("tuning {} (no trial in a smoke run)", rsyslog::CANDIDATES[0]);
    if rsyslogd.is_ok() && opts.scale != Scale::Smoke {
        let trial = run::choose_rsyslog_tuning(&mut bench);
        rsyslog_choice = format!(
            "tuning chosen by a throughput trial: {} (trial: {})",
            bench.setup.tuning,
            trial.join("; ")
        );
    }
    eprintln!(
        "Scratch directory {}; open-files limit {nofile_limit}.",
        scratch.path.display()
    );

    // Rounds outermost: round k of every workload and contender runs before round k + 1 of
    // any, so a drift of the machine over the bench touches every row alike, and round k of
    // two workloads (stable names and a flood of new ones) can be compared pair by pair.
    let mut runs: Vec<Vec<Vec<RunResult>>> = vec![vec![Vec::new(); contenders.len()]; workloads.len()];
    for round in 1..=opts.rounds {
        for (w, wl) in workloads.iter().enumerate() {
            if opts.rounds > 1 {
                eprintln!("-- {}: round {round} of {}", wl.name, opts.rounds);
            }
            for (i, &c) in contenders.iter().enumerate() {
                if c == Contender::Rsyslog {
                    if let Err(why) = &rsyslogd {
                        if round == 1 {
                            let mut r = RunResult::new(c, wl);
                            r.skipped = Some(why.clone());
                            runs[w][i].push(r);
                        }
                        continue;
                    }
                }
                runs[w][i].push(run::one(&mut bench, c, wl));
            }
        }
    }
    let results: Vec<RunResult> = runs.into_iter().flatten().map(RunResult::combine).collect();

    let rsyslog_config = rsyslogd.as_ref().ok().map(|_| {
        rsyslog::config(
            bench.setup.tuning,
            std::path::Path::new("<scratch>"),
            0,
            std::path::Path::new("<out>"),
            std::path::Path::new("<scratch>/<run>.rsyslog-internal.log"),
        )
        .replace("port=\"0\"", "port=\"<free port>\"")
    });
    report::print(
        &results,
        &report::Context {
            scale: opts.scale,
            nofile_limit,
            rsyslog: rsyslogd.as_ref().map(|r| r.version.clone()).map_err(Clone::clone),
            rsyslog_choice,
            rsyslog_config,
        },
    );
    let judged_ok = results
        .iter()
        .filter(|r| r.contender != Contender::Rsyslog)
        .all(RunResult::clean);
    if judged_ok {
        0
    } else {
        1
    }
}
