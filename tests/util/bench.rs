//! What the load benches share (they start the daemon themselves, with their own flags
//! and without the test harness): the daemon's listen addresses read from its log, and
//! rows in a CSV counted without holding the file (they poll files of millions of rows
//! while the daemon appends to them).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// `sensorlog serve` for a load bench: boards and the dashboard on free loopback ports
/// (8090/8091 may be taken by another daemon), no periodic summary, the CSV `csv`, and
/// `extra` flags (limits, `--config`); stdin and stdout closed. Start it with
/// [`spawn_listening`].
pub fn serve(bin: &str, csv: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(["--stats-interval-secs", "0"])
        .args(extra)
        .arg("--csv")
        .arg(csv)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// Starts `cmd` (a `sensorlog serve`) with `RUST_LOG=info` and its stderr read up to the
/// line `Listening on ADDR` and, with `tls`, `Listening for TLS on ADDR`; stderr is
/// drained after that, so the daemon never blocks on a full pipe.
pub fn spawn_listening(cmd: &mut Command, tls: bool) -> (Child, SocketAddr, Option<SocketAddr>) {
    let mut child = cmd
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sensorlog");
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let addr_after = |line: &str, marker: &str| -> Option<SocketAddr> {
        line.split(marker)
            .nth(1)?
            .split_whitespace()
            .next()?
            .trim_end_matches(['.', ','])
            .parse()
            .ok()
    };
    let (mut plain, mut tls_addr) = (None, None);
    while plain.is_none() || (tls && tls_addr.is_none()) {
        let line = lines.next().expect("daemon stderr ended before it listened").unwrap();
        plain = plain.or(addr_after(&line, "Listening on "));
        tls_addr = tls_addr.or(addr_after(&line, "Listening for TLS on "));
    }
    std::thread::spawn(move || for _ in lines {});
    (child, plain.expect("read above"), tls_addr)
}

/// Data rows of the CSV at `path` (lines, less the header); 0 if it cannot be read.
pub fn csv_rows(path: &Path) -> u64 {
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 20];
    if let Ok(mut f) = std::fs::File::open(path) {
        while let Ok(k) = f.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += buf[..k].iter().filter(|&&b| b == b'\n').count() as u64;
        }
    }
    n.saturating_sub(1) // the header
}
