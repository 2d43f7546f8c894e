//! TLS against plain TCP: the same daemon, the same 100-board workload as the ingest
//! bench's `100x20000` (JSON readings with two fields, sent as fast as the socket
//! takes them), once over the plain listener and once over the TLS listener.
//!
//! `bash benches/run.sh tls`, or `cargo bench --bench tls`; under `cargo test --all-targets`
//! (no `--bench`) it does a smoke run of 4 boards x 250 readings. The generator runs in
//! this process (one thread per board, rustls for TLS, pinning the daemon's generated
//! certificate), so both runs pay for their own client side on the same CPUs. The clock
//! runs from the first connection to the moment the CSV holds every row; a missing or
//! extra row fails the run (exit 1). Goal: TLS at least 0.5x plain.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, StreamOwned};

#[path = "../tests/util/bench.rs"]
mod bench;
use bench::{csv_rows, serve, spawn_listening};

#[path = "../tests/util/tls.rs"]
mod pinned;
use pinned::Pinned;

const BIN: &str = env!("CARGO_BIN_EXE_sensorlog");
const FIELDS_PER_READING: u64 = 2;

struct Daemon {
    child: Child,
    plain: SocketAddr,
    tls: Option<SocketAddr>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, tls: bool) -> Daemon {
    let cfg = dir.join("sensorlog.toml");
    let toml = if tls {
        "[tls]\nlisten = \"127.0.0.1:0\"\nself_signed = true\n"
    } else {
        ""
    };
    std::fs::write(&cfg, toml).unwrap();
    let cfg = cfg.to_str().expect("a UTF-8 temp path");
    // Every generated board connects from 127.0.0.1 (the per-address cap is 64).
    let limits = [
        "--max-connections",
        "1000",
        "--max-connections-per-ip",
        "1000",
        "--config",
        cfg,
    ];
    let (child, plain, tls_addr) = spawn_listening(&mut serve(BIN, &dir.join("readings.csv"), &limits), tls);
    Daemon {
        child,
        plain,
        tls: tls_addr,
    }
}

fn client_config(cert_pem: &Path) -> Arc<ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_file(cert_pem).expect("read the generated certificate");
    let pin = digest(&SHA256, cert.as_ref()).as_ref().to_vec();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { pin, provider }))
            .with_no_client_auth(),
    )
}

/// One board: `count` JSON readings, written in ~16 KiB chunks, then a clean close.
fn board(mut out: impl Write, id: usize, count: u64) {
    let mut buf = Vec::with_capacity(20 * 1024);
    for seq in 1..=count {
        let t = 20.0 + (seq % 100) as f64 / 10.0;
        writeln!(
            buf,
            r#"{{"device":"tls-{id}","seq":{seq},"temp_c":{t:.1},"humidity":{}}}"#,
            40 + seq % 20
        )
        .unwrap();
        if buf.len() >= 16 * 1024 {
            out.write_all(&buf).expect("send");
            buf.clear();
        }
    }
    out.write_all(&buf).expect("send");
    out.flush().expect("flush");
}

/// Runs the workload against one listener; returns (seconds, rows found).
fn measure(dir: &Path, tls: bool, boards: usize, count: u64) -> (f64, u64) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let d = start(dir, tls);
    let config = tls.then(|| client_config(&dir.join("sensorlog-cert.pem")));
    let addr = d.tls.unwrap_or(d.plain);
    let barrier = Arc::new(Barrier::new(boards + 1));
    let threads: Vec<_> = (0..boards)
        .map(|id| {
            let (barrier, config) = (Arc::clone(&barrier), config.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
                tcp.set_write_timeout(Some(Duration::from_secs(60))).unwrap();
                let _ = tcp.set_nodelay(true);
                match config {
                    None => board(&tcp, id, count),
                    Some(c) => {
                        let conn = ClientConnection::new(c, ServerName::try_from("sensorlog").unwrap()).unwrap();
                        let mut s = StreamOwned::new(conn, tcp);
                        board(&mut s, id, count);
                        s.conn.send_close_notify();
                        let _ = s.flush();
                        // Read to the end, so that nothing unread turns our close into a reset.
                        let _ = s.sock.shutdown(std::net::Shutdown::Write);
                        let _ = s.sock.set_read_timeout(Some(Duration::from_secs(300)));
                        let _ = std::io::copy(&mut s.sock, &mut std::io::sink());
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for t in threads {
        t.join().expect("a board thread failed");
    }
    let want = boards as u64 * count * FIELDS_PER_READING;
    let csv = dir.join("readings.csv");
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut got = csv_rows(&csv);
    while got < want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        got = csv_rows(&csv);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(d);
    (secs, got)
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (boards, count) = if full { (100, 20_000) } else { (4, 250) };
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-tls-{}", std::process::id()));
    let want = boards as u64 * count * FIELDS_PER_READING;
    println!(
        "workload {boards}x{count}: {} readings, {want} CSV rows",
        boards as u64 * count
    );
    println!(
        "{:<10} {:>12} {:>10} {:>14}",
        "listener", "readings", "seconds", "readings/s"
    );
    let mut rates = Vec::new();
    let mut ok = true;
    for (name, tls) in [("plain", false), ("tls", true)] {
        let (secs, rows) = measure(&root.join(name), tls, boards, count);
        let readings = rows / FIELDS_PER_READING;
        let rate = readings as f64 / secs;
        println!("{name:<10} {readings:>12} {secs:>10.2} {rate:>14.0}");
        if rows != want {
            eprintln!("{name}: {rows} rows in the CSV, expected {want}");
            ok = false;
        }
        rates.push(rate);
    }
    println!(
        "TLS / plain = {:.2} (goal >= 0.5; ECDSA P-256 certificate, rustls with ring, TLS 1.3)",
        rates[1] / rates[0]
    );
    let _ = std::fs::remove_dir_all(&root);
    if !ok {
        std::process::exit(1);
    }
}
