//! Child processes the harness starts, and what it reads about them from `/proc`.
//!
//! Every child (a contender, the load generator) is owned by a [`Proc`], which kills it
//! by its own pid when dropped: a panic or an early return must never leave a daemon
//! holding 10,000 sockets, a port or a 300 MB file open on a machine someone else is
//! measuring on. Signals go through the `kill` command so the harness needs no unsafe
//! code, and only pids this process spawned are ever signalled.
//!
//! A Drop guard does not run when the harness itself is interrupted (Ctrl-C, SIGTERM),
//! so live children are also listed in [`LIVE`], which [`kill_all_children`] empties
//! from the harness's signal handler.
//!
//! The children's stdout and stderr are read by one thread each into a shared list of
//! lines, so a child can never block on a full pipe and the harness can wait, bounded,
//! for the line that says a contender is ready.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Pids of children not yet reaped.
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn live() -> std::sync::MutexGuard<'static, Vec<u32>> {
    LIVE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// SIGKILLs every child still running: for the harness's own signal handler, which exits
/// right after (so no guard's Drop will run).
pub fn kill_all_children() {
    for pid in live().drain(..) {
        signal(pid, "KILL");
    }
}

/// Lines a child printed on one stream so far.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Lines {
    fn collect(self: &Arc<Self>, stream: impl Read + Send + 'static, echo: Option<String>) {
        let me = Arc::clone(self);
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Some(prefix) = &echo {
                    // Progress lines ("[  1.0s] sent ...") are the harness's job; pass the rest.
                    if !line.starts_with('[') {
                        eprintln!("{prefix}{line}");
                    }
                }
                me.lines.lock().unwrap_or_else(PoisonError::into_inner).push(line);
                me.changed.notify_all();
            }
        });
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Which of a child's output streams to look at.
#[derive(Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A child process that is killed (by pid) when this guard is dropped.
pub struct Proc {
    name: String,
    child: Child,
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
    exited: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr captured. `keep_stdin` gives the child a pipe
    /// that closes when the harness exits (the raw copier uses it to die with us).
    /// `echo` prints the child's non-progress stderr lines live, with that prefix.
    pub fn spawn(name: &str, mut cmd: Command, keep_stdin: bool, echo: Option<String>) -> std::io::Result<Proc> {
        cmd.stdin(if keep_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        live().push(child.id());
        let (stdout, stderr) = (Arc::new(Lines::default()), Arc::new(Lines::default()));
        if let Some(s) = child.stdout.take() {
            stdout.collect(s, None);
        }
        if let Some(s) = child.stderr.take() {
            stderr.collect(s, echo);
        }
        Ok(Proc {
            name: name.to_string(),
            child,
            stdout,
            stderr,
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the child has exited (never blocks).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
            if self.exited.is_some() {
                // Reaped: from now on the pid may belong to someone else.
                let pid = self.pid();
                live().retain(|&p| p != pid);
            }
        }
        self.exited
    }

    /// Waits at most `timeout` for the child to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (at most `timeout`, and not past the child's exit) for a line containing
    /// `needle`; returns that line.
    pub fn wait_for_line(&mut self, stream: Stream, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let lines = Arc::clone(match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        });
        loop {
            {
                let guard = lines.lines.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(l) = guard.iter().find(|l| l.contains(needle)) {
                    return Some(l.clone());
                }
                let slice = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                if slice.is_zero() {
                    return None;
                }
                let _ = lines.changed.wait_timeout(guard, slice);
            }
            if self.try_wait().is_some() {
                // The pipes may still hold the line: give the reader a moment, look once more.
                std::thread::sleep(Duration::from_millis(50));
                let found = lines.snapshot().into_iter().find(|l| l.contains(needle));
                return found;
            }
        }
    }

    pub fn lines(&self, stream: Stream) -> Vec<String> {
        match stream {
            Stream::Stdout => self.stdout.snapshot(),
            Stream::Stderr => self.stderr.snapshot(),
        }
    }

    /// SIGTERM, then up to `grace` for a clean exit, then SIGKILL. Returns the exit status
    /// and whether the kill was needed.
    pub fn terminate(&mut self, grace: Duration) -> (Option<ExitStatus>, bool) {
        if self.try_wait().is_none() {
            signal(self.pid(), "TERM");
        }
        if let Some(st) = self.wait_timeout(grace) {
            return (Some(st), false);
        }
        let _ = self.child.kill();
        (self.wait_timeout(Duration::from_secs(10)), true)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            // Child::kill sends SIGKILL to this child's own pid.
            let _ = self.child.kill();
            let _ = self.wait_timeout(Duration::from_secs(10));
        }
    }
}

/// Sends `SIG<sig>` to `pid` with the `kill` command. Only ever called with our children's pids.
fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A KiB figure from `/proc/<pid>/status` of a live process: `VmHWM` (peak resident set
/// size) or `VmRSS` (current).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(key).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds of a live process, all its threads included.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; the fields after it start past the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|s| s.parse::<f64>().ok());
    // USER_HZ is 100 on every Linux this runs on (as `sensorlog simulate` also assumes).
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Number of sockets a live process has open (its listener and its connections).
pub fn open_sockets(pid: u32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let n = dir
        .filter_map(Result::ok)
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        })
        .count();
    Some(n as u64)
}

/// The kernel's view of the server side of a listening port.
#[derive(Clone, Copy, Debug, Default)]
pub struct PortStates {
    /// Connections established to the port, accepted by the process or still queued.
    pub established: u64,
    /// Connections the server closed first (FIN_WAIT1/2, CLOSING, TIME_WAIT on its side).
    /// A client that closes first leaves the server in CLOSE_WAIT/LAST_ACK instead, so
    /// before the server is stopped this counts refused or dropped connections.
    pub closed_by_server: u64,
}

/// Reads `/proc/net/tcp{,6}` for the sockets whose local port is `port`.
pub fn port_states(port: u16) -> PortStates {
    let mut s = PortStates::default();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut f = line.split_whitespace();
            let (Some(local), Some(state)) = (f.nth(1), f.nth(1)) else {
                continue;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if local_port != Some(port) {
                continue;
            }
            match state {
                "01" => s.established += 1,
                "04" | "05" | "06" | "0B" => s.closed_by_server += 1,
                _ => {}
            }
        }
    }
    s
}
