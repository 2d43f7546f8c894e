//! The load: the five workloads, always driven by `sensorlog simulate` in its own process.
//!
//! One generator for every contender keeps the comparison about the receivers: the same
//! bytes, the same connection pattern, the same pacing. The generator runs as a separate
//! process so its CPU time can be reported (on two cores, a generator that eats a core
//! caps everyone; the table shows how much it used).
//!
//! The idle boards of workload C are the exception: [`IdleBoards`] holds them in the
//! harness, so that they can all be accepted before the load starts and checked one by
//! one after it (`run.rs` explains why `simulate --idle` cannot give that).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{Proc, Stream};

/// How big a run is: the full benchmark, `--quick` (a tenth), or the smoke run that
/// `cargo test --all-targets` does (a hundredth), which only has to prove the harness works.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scale {
    Full,
    Quick,
    Smoke,
}

impl Scale {
    fn divisor(self) -> u64 {
        match self {
            Scale::Full => 1,
            Scale::Quick => 10,
            Scale::Smoke => 100,
        }
    }
}

/// One load pattern. `count` boards send as fast as they can; `rate` boards are paced
/// for `duration_secs`.
#[derive(Clone, Debug)]
pub struct Workload {
    /// A, B, C, D: a short name for filters that does not change with the scale.
    pub key: char,
    pub name: String,
    pub boards: u64,
    pub count: Option<u64>,
    pub rate: f64,
    pub duration_secs: Option<f64>,
    pub idle: u64,
    pub stamp: bool,
    /// Every reading under a device name never used before (`simulate
    /// --new-name-per-reading`): what a flood of new names costs (issue 22).
    pub new_names: bool,
    /// A config file for sensorlog in this workload (the other contenders have no such
    /// setting), as TOML text.
    pub sensorlog_toml: Option<&'static str>,
}

/// sensorlog's config for workload F: no connection runs out of its budget of new names.
const TRACK_EVERY_NAME: &str = "[boards]\nnew_name_burst = 1000000\nnew_names_per_minute = 1000000\n";

/// The six workloads at `scale`.
pub fn workloads(scale: Scale) -> Vec<Workload> {
    let d = scale.divisor();
    let throughput = |key, boards: u64, count: u64| Workload {
        key,
        name: format!("{boards}x{}", count / d),
        boards,
        count: Some(count / d),
        rate: 0.0,
        duration_secs: None,
        idle: 0,
        stamp: false,
        new_names: false,
        sensorlog_toml: None,
    };
    let idle = 10_000 / d;
    let idle_name = if idle.is_multiple_of(1000) {
        format!("{}k", idle / 1000)
    } else {
        idle.to_string()
    };
    let secs = (10.0 / d as f64).max(0.5);
    vec![
        throughput('A', 100, 20_000),
        throughput('B', 1000, 200),
        Workload {
            key: 'C',
            name: format!("{idle_name}-idle+100"),
            idle,
            ..throughput('C', 100, 2000)
        },
        Workload {
            key: 'D',
            name: "latency@5000/s".to_string(),
            boards: 50,
            count: None,
            rate: 100.0,
            duration_secs: Some(secs),
            idle: 0,
            stamp: true,
            new_names: false,
            sensorlog_toml: None,
        },
        Workload {
            key: 'E',
            name: format!("100x{}-new-names", 20_000 / d),
            new_names: true,
            ..throughput('E', 100, 20_000)
        },
        // E with every new name tracked on the dashboard (by default a connection brings
        // in 100, then 60 a minute): the board table's own worst case, side by side.
        Workload {
            key: 'F',
            name: format!("100x{}-new-names-tracked", 20_000 / d),
            new_names: true,
            sensorlog_toml: Some(TRACK_EVERY_NAME),
            ..throughput('F', 100, 20_000)
        },
    ]
}

impl Workload {
    /// Readings the generator is asked for; for a paced workload, what the pacing should give.
    pub fn nominal_readings(&self) -> u64 {
        match self.count {
            Some(c) => c * self.boards,
            None => (self.boards as f64 * self.rate * self.duration_secs.unwrap_or(0.0)).round() as u64,
        }
    }

    /// Whether a count-based workload: its total is known before the generator finishes.
    pub fn counted(&self) -> bool {
        self.count.is_some()
    }

    fn simulate_args(&self, addr: SocketAddr, prefix: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "simulate".into(),
            "--addr".into(),
            addr.to_string(),
            "--json".into(),
            "--format".into(),
            "json".into(),
            "--prefix".into(),
            prefix.into(),
            "--boards".into(),
            self.boards.to_string(),
            "--rate".into(),
            self.rate.to_string(),
        ];
        if let Some(c) = self.count {
            a.extend(["--count".into(), c.to_string()]);
        }
        if let Some(s) = self.duration_secs {
            a.extend(["--duration".into(), s.to_string()]);
        }
        if self.stamp {
            a.push("--stamp".into());
        }
        if self.new_names {
            a.push("--new-name-per-reading".into());
        }
        a
    }
}

/// What the generator says it did (its `--json` line).
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub sent: u64,
    pub cpu_secs: f64,
    pub failed_boards: u64,
    pub errors: Vec<String>,
}

/// A running `sensorlog simulate`.
pub struct Generator {
    proc: Proc,
}

impl Generator {
    pub fn start(bin: &Path, wl: &Workload, addr: SocketAddr, prefix: &str) -> std::io::Result<Generator> {
        let mut cmd = Command::new(bin);
        cmd.args(wl.simulate_args(addr, prefix));
        let proc = Proc::spawn("simulate", cmd, false, Some("      simulate: ".to_string()))?;
        Ok(Generator { proc })
    }

    pub fn exited(&mut self) -> bool {
        self.proc.try_wait().is_some()
    }

    /// Waits (at most `timeout`) for the generator to finish and reads its summary.
    pub fn finish(&mut self, timeout: Duration) -> Result<Summary, String> {
        let Some(status) = self.proc.wait_timeout(timeout) else {
            return Err(format!("the generator did not finish within {} s", timeout.as_secs()));
        };
        // The summary is printed just before exit; the reader thread may lag a moment.
        let line = self
            .proc
            .wait_for_line(Stream::Stdout, "\"sent\"", Duration::from_secs(2));
        let Some(line) = line else {
            let tail: Vec<String> = self.proc.lines(Stream::Stderr).into_iter().rev().take(3).collect();
            return Err(format!(
                "the generator exited ({status}) without a summary; last words: {tail:?}"
            ));
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("unreadable generator summary {line:?}: {e}"))?;
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64).unwrap_or(0.0);
        Ok(Summary {
            sent: num("sent") as u64,
            cpu_secs: num("generator_cpu_secs"),
            failed_boards: num("failed_boards") as u64,
            errors: v
                .get("errors")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        })
    }
}

/// Connections that connect and never send, like boards between readings.
pub struct IdleBoards {
    conns: Vec<TcpStream>,
}

impl IdleBoards {
    /// Opens `n` connections to `addr`, all within `timeout`.
    pub fn open(addr: SocketAddr, n: u64, timeout: Duration) -> Result<IdleBoards, String> {
        let deadline = Instant::now() + timeout;
        let mut conns = Vec::with_capacity(n as usize);
        for i in 0..n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "opened only {i} of {n} idle connections in {} s",
                    timeout.as_secs()
                ));
            }
            let s = TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(10)))
                .map_err(|e| format!("idle connection {} of {n}: {e}", i + 1))?;
            s.set_nonblocking(true)
                .map_err(|e| format!("idle connection {}: {e}", i + 1))?;
            conns.push(s);
        }
        Ok(IdleBoards { conns })
    }

    /// Checks that the server still holds every connection: a read must find nothing to
    /// read. End of stream, a reset or an `ERR ...` line means it refused or closed it.
    pub fn check(&self) -> Result<(), String> {
        let (mut closed, mut answered, mut first) = (0, 0, None);
        let mut buf = [0u8; 256];
        for mut s in &self.conns {
            match s.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Ok(n @ 1..) => {
                    answered += 1;
                    first.get_or_insert_with(|| String::from_utf8_lossy(&buf[..n]).trim().to_string());
                }
                Ok(0) | Err(_) => closed += 1,
            }
        }
        if closed + answered == 0 {
            Ok(())
        } else {
            Err(format!(
                "of {} connections, {closed} were closed and {answered} got an answer (first: {:?})",
                self.conns.len(),
                first.unwrap_or_default()
            ))
        }
    }
}
