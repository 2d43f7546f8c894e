//! rsyslog, the best-known peer: its own foreground `rsyslogd` with a generated config,
//! never the system service.
//!
//! Fairness rules, because a benchmark against a crippled peer proves nothing:
//! - it writes the raw line (`%rawmsg%`), so it is not charged for formatting a syslog
//!   header that sensorlog does not write either;
//! - its ruleset has its own in-memory queue (200,000 messages, batches of 1,024) and
//!   omfile a 256 KiB buffer flushed at the end of each batch (`flushOnTXEnd`), without
//!   fsync (omfile's default), which is a weaker durability promise than sensorlog's;
//! - the input module and the number of queue workers are chosen by measurement: in a
//!   full or `--quick` run, [`CANDIDATES`] each take a 500,000-reading throughput run
//!   (three rounds, alternating, in a full run) and the one with the fastest median
//!   round is used for every workload (the report shows the trial). On rsyslog 8.2302
//!   imtcp has no worker-thread setting (it polls with a fixed pool), so the trial
//!   compares it with imptcp, rsyslog's Linux-only "plain TCP" input, whose `threads`
//!   parameter is its worker count.
//!
//! Every parameter is checked by `rsyslogd -N1` before each start, so a version that
//! renames one fails loudly instead of silently running with a default. rsyslog's own
//! messages go to a file next to the config (`processInternalMessages="on"`), never to
//! the system log; the harness reads that file for errors such as refused sessions.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::Proc;

/// Set by `benches/run.sh` when installing rsyslog failed: the reason, shown in the report.
pub const SKIP_ENV: &str = "SENSORLOG_BENCH_RSYSLOG_SKIP";

/// Most TCP sessions rsyslog accepts at once (the idle workload holds 10,100).
const MAX_SESSIONS: u32 = 11_000;

/// An installed rsyslogd.
#[derive(Clone, Debug)]
pub struct Rsyslogd {
    pub path: PathBuf,
    pub version: String,
}

/// Finds rsyslogd, or says why rsyslog is skipped.
pub fn detect() -> Result<Rsyslogd, String> {
    if let Some(reason) = std::env::var_os(SKIP_ENV) {
        return Err(reason.to_string_lossy().into_owned());
    }
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let path = dirs
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join("rsyslogd"))
        .find(|p| p.is_file())
        .ok_or("rsyslogd is not installed (benches/run.sh installs it: apt-get install rsyslog)")?;
    let out = Command::new(&path)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("rsyslogd (unknown version)")
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Rsyslogd { path, version })
}

/// The input module rsyslog receives TCP with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    Imtcp,
    Imptcp { threads: u32 },
}

/// The settings the trial chooses between; everything else is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    pub input: Input,
    pub queue_workers: u32,
}

/// What the trial compares (the first one is used without a trial, e.g. in the smoke run).
pub const CANDIDATES: [Tuning; 4] = [
    Tuning {
        input: Input::Imtcp,
        queue_workers: 1,
    },
    Tuning {
        input: Input::Imtcp,
        queue_workers: 2,
    },
    Tuning {
        input: Input::Imptcp { threads: 2 },
        queue_workers: 1,
    },
    Tuning {
        input: Input::Imptcp { threads: 1 },
        queue_workers: 1,
    },
];

impl std::fmt::Display for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.input {
            Input::Imtcp => write!(f, "imtcp")?,
            Input::Imptcp { threads } => write!(f, "imptcp threads={threads}")?,
        }
        write!(f, ", queue.workerThreads={}", self.queue_workers)
    }
}

/// The config for one instance. `dir` is its work directory.
pub fn config(tuning: Tuning, dir: &Path, port: u16, out: &Path, internal_log: &Path) -> String {
    let input = match tuning.input {
        Input::Imtcp => format!(
            "module(load=\"imtcp\" MaxSessions=\"{MAX_SESSIONS}\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"bench\" SupportOctetCountedFraming=\"off\")\n"
        ),
        Input::Imptcp { threads } => format!(
            "module(load=\"imptcp\" threads=\"{threads}\")\n\
             input(type=\"imptcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"bench\" SupportOctetCountedFraming=\"off\" socketBacklog=\"4096\" maxSessions=\"{MAX_SESSIONS}\")\n"
        ),
    };
    format!(
        "# Generated by benches/ingest (rsyslog.rs) for one benchmark run.\n\
         global(workDirectory=\"{dir}\" processInternalMessages=\"on\")\n\
         {input}\
         template(name=\"raw\" type=\"string\" string=\"%rawmsg%\\n\")\n\
         ruleset(name=\"bench\" queue.type=\"LinkedList\" queue.size=\"200000\" queue.dequeueBatchSize=\"1024\" queue.workerThreads=\"{workers}\") {{\n\
         \x20 action(type=\"omfile\" file=\"{out}\" template=\"raw\" ioBufferSize=\"256k\" flushOnTXEnd=\"on\" asyncWriting=\"off\")\n\
         }}\n\
         # rsyslog's own messages (start, stop, errors), for the harness to read.\n\
         action(type=\"omfile\" file=\"{log}\")\n",
        dir = dir.display(),
        workers = tuning.queue_workers,
        out = out.display(),
        log = internal_log.display(),
    )
}

/// A started rsyslogd: its process, address, and the file its own messages go to.
pub struct Instance {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub internal_log: PathBuf,
}

/// Writes the config, validates it, starts rsyslogd in the foreground and waits until it
/// accepts connections.
pub fn start(rsd: &Rsyslogd, tuning: Tuning, dir: &Path, name: &str, out: &Path) -> Result<Instance, String> {
    let conf = dir.join(format!("{name}.rsyslog.conf"));
    let pidfile = dir.join(format!("{name}.rsyslog.pid"));
    let internal_log = dir.join(format!("{name}.rsyslog-internal.log"));
    let port = free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
    std::fs::write(&conf, config(tuning, dir, port, out, &internal_log))
        .map_err(|e| format!("write {}: {e}", conf.display()))?;

    let check = Command::new(&rsd.path)
        .args(["-N1", "-f"])
        .arg(&conf)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run rsyslogd -N1: {e}"))?;
    if !check.status.success() {
        let text = String::from_utf8_lossy(&check.stderr);
        let why = text
            .lines()
            .filter(|l| l.contains("error"))
            .collect::<Vec<_>>()
            .join(" / ");
        return Err(format!(
            "rsyslogd -N1 rejects the generated config {}: {why}",
            conf.display()
        ));
    }

    let mut cmd = Command::new(&rsd.path);
    cmd.arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(&pidfile)
        .current_dir(dir);
    let mut proc = Proc::spawn("rsyslogd", cmd, false, None).map_err(|e| format!("spawn rsyslogd: {e}"))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(st) = proc.try_wait() {
            let log = std::fs::read_to_string(&internal_log).unwrap_or_default();
            return Err(format!("rsyslogd exited at start ({st}); its log: {log}"));
        }
        // An empty session: rsyslog logs nothing for it.
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("rsyslogd did not accept connections on {addr} within 15 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Instance {
        proc,
        addr,
        internal_log,
    })
}

/// A port nobody listens on right now (bound, read, released: rsyslog needs a number).
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// rsyslog's own messages that are routine, not a problem (its log has no severity to go by).
const ROUTINE: [&str; 3] = [
    "] start",
    "exiting on signal",
    // A queue starting another worker under load.
    "high activity - starting",
];

/// Lines of rsyslog's own log that may report a problem (anything not known as routine,
/// so a message never seen before is shown rather than hidden).
pub fn problems(internal_log: &Path) -> Vec<String> {
    std::fs::read_to_string(internal_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| !ROUTINE.iter().any(|r| l.contains(r)))
        .map(str::to_string)
        .collect()
}
