//! The three receivers under test, behind one small interface: start on loopback with a
//! fresh output file, say where you listen, be stopped with SIGTERM.
//!
//! A fresh process per workload, so that the peak RSS (`VmHWM`) read just before the stop
//! belongs to that workload alone, and no contender profits from a warm heap or
//! connection table left by the previous one.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::{Proc, Stream};
use crate::rawcopy;
use crate::rsyslog::{self, Rsyslogd, Tuning};
use crate::verify::Output;

/// The daemon under test, built by cargo for this bench (release profile under `cargo bench`).
pub const SENSORLOG_BIN: &str = env!("CARGO_BIN_EXE_sensorlog");

/// Set to another `sensorlog` binary (an older build, say) to measure it as the daemon
/// under test with everything else unchanged, the generator included: how the
/// before/after figures in docs/performance.md were taken.
pub const SERVER_BIN_ENV: &str = "SENSORLOG_BENCH_SERVER_BIN";

/// What `bin serve --help` prints (empty if it cannot be run).
fn serve_help(bin: &std::ffi::OsStr) -> String {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// sensorlog gets a limit above the 10,100 connections of the idle workload.
const MAX_CONNECTIONS: &str = "11000";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Contender {
    Sensorlog,
    RawCopy,
    Rsyslog,
}

impl Contender {
    pub const ALL: [Contender; 3] = [Contender::Sensorlog, Contender::RawCopy, Contender::Rsyslog];

    pub fn name(self) -> &'static str {
        match self {
            Contender::Sensorlog => "sensorlog",
            Contender::RawCopy => "raw-copy",
            Contender::Rsyslog => "rsyslog",
        }
    }

    pub fn output(self) -> Output {
        match self {
            Contender::Sensorlog => Output::Csv,
            Contender::RawCopy | Contender::Rsyslog => Output::Lines,
        }
    }

    /// What it promises about the data once received, for the legend.
    pub fn policy(self) -> &'static str {
        match self {
            Contender::Sensorlog => {
                "parses every line, one CSV row per field, each write reaches the OS at once; \
                 fsync every 1000 ms (default csv.fsync = interval)"
            }
            Contender::RawCopy => {
                "no parsing; a thread per connection, complete lines appended with one write_all \
                 per 64 KiB read under a mutex; fsync every 1 s (same policy as sensorlog's default)"
            }
            Contender::Rsyslog => {
                "raw line (%rawmsg%), ruleset queue, omfile 256 KiB buffer flushed at the end of \
                 each batch (flushOnTXEnd); never fsyncs (omfile default)"
            }
        }
    }
}

/// A started contender.
pub struct Server {
    pub proc: Proc,
    pub addr: SocketAddr,
    /// Where rsyslog writes its own messages.
    internal_log: Option<std::path::PathBuf>,
}

/// What starting a contender needs.
pub struct Setup<'a> {
    pub dir: &'a Path,
    pub rsyslogd: Option<&'a Rsyslogd>,
    pub tuning: Tuning,
}

const START_TIMEOUT: Duration = Duration::from_secs(20);

impl Contender {
    /// Starts the contender writing to `out`; returns once it accepts connections.
    /// `sensorlog_toml`: a config file for sensorlog, as text (ignored by the others).
    pub fn start(self, setup: &Setup, name: &str, out: &Path, sensorlog_toml: Option<&str>) -> Result<Server, String> {
        match self {
            Contender::Sensorlog => {
                let other_build = std::env::var_os(SERVER_BIN_ENV);
                let mut cmd = Command::new(other_build.clone().unwrap_or_else(|| SENSORLOG_BIN.into()));
                cmd.args(["serve", "--listen", "127.0.0.1:0", "--csv"])
                    .arg(out)
                    .args(["--max-connections", MAX_CONNECTIONS])
                    .env("RUST_LOG", "info")
                    .current_dir(setup.dir);
                // Every generated board connects from 127.0.0.1; the dashboard is on (as
                // by default) but on a free port, since runs may overlap. Another build,
                // measured through SENSORLOG_BENCH_SERVER_BIN, gets each flag it knows
                // (older builds have neither; without the first, boards past its
                // per-address limit would be refused).
                let help = other_build.as_deref().map(serve_help);
                let knows = |flag: &str| help.as_deref().is_none_or(|h| h.contains(flag));
                if knows("--max-connections-per-ip") {
                    cmd.args(["--max-connections-per-ip", MAX_CONNECTIONS]);
                }
                if knows("--http-listen") {
                    cmd.args(["--http-listen", "127.0.0.1:0"]);
                }
                if let Some(toml) = sensorlog_toml {
                    let path = setup.dir.join(format!("{name}.sensorlog.toml"));
                    std::fs::write(&path, toml).map_err(|e| format!("write {}: {e}", path.display()))?;
                    cmd.arg("--config").arg(path);
                }
                let mut proc =
                    Proc::spawn("sensorlog", cmd, false, None).map_err(|e| format!("spawn sensorlog: {e}"))?;
                let line = proc
                    .wait_for_line(Stream::Stderr, "Listening on ", START_TIMEOUT)
                    .ok_or_else(|| {
                        format!(
                            "sensorlog did not report its address; its log: {:?}",
                            proc.lines(Stream::Stderr)
                        )
                    })?;
                let addr = line
                    .split("Listening on ")
                    .nth(1)
                    .and_then(|s| s.split_whitespace().next())
                    .map(|s| s.trim_end_matches(['.', ',']))
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("no address in sensorlog's line {line:?}"))?;
                Ok(Server {
                    proc,
                    addr,
                    internal_log: None,
                })
            }
            Contender::RawCopy => {
                let exe = std::env::current_exe().map_err(|e| format!("find the bench binary: {e}"))?;
                let mut cmd = Command::new(exe);
                cmd.env(rawcopy::ROLE_ENV, rawcopy::ROLE)
                    .env(rawcopy::OUT_ENV, out)
                    .current_dir(setup.dir);
                let mut proc =
                    Proc::spawn("raw-copy", cmd, true, None).map_err(|e| format!("spawn raw copier: {e}"))?;
                let line = proc
                    .wait_for_line(Stream::Stdout, ":", START_TIMEOUT)
                    .ok_or_else(|| format!("raw copier did not print its address: {:?}", proc.lines(Stream::Stderr)))?;
                let addr = line
                    .trim()
                    .parse()
                    .map_err(|e| format!("raw copier address {line:?}: {e}"))?;
                Ok(Server {
                    proc,
                    addr,
                    internal_log: None,
                })
            }
            Contender::Rsyslog => {
                let rsd = setup.rsyslogd.ok_or("rsyslogd is not available")?;
                let inst = rsyslog::start(rsd, setup.tuning, setup.dir, name, out)?;
                Ok(Server {
                    proc: inst.proc,
                    addr: inst.addr,
                    internal_log: Some(inst.internal_log),
                })
            }
        }
    }
}

impl Server {
    /// Lines the contender logged that say something went wrong (warnings, errors,
    /// refused connections), for the report.
    pub fn problems(&self) -> Vec<String> {
        if let Some(log) = &self.internal_log {
            return rsyslog::problems(log);
        }
        let mut lines = self.proc.lines(Stream::Stderr);
        if self.proc.name() == "sensorlog" {
            // env_logger's level sits right after the timestamp: "[... WARN  target] ...".
            lines.retain(|l| {
                l.contains(" WARN ")
                    || l.contains(" ERROR ")
                    || l.contains("too-many-connections")
                    || l.contains("Refused")
            });
        }
        lines
    }

    /// Deletes the log rsyslog left beside the output.
    pub fn cleanup(&self) {
        if let Some(log) = &self.internal_log {
            let _ = std::fs::remove_file(log);
        }
    }
}
