//! The raw copier: "TCP in, file out" with no parsing at all, as the physical limit that
//! sensorlog is measured against.
//!
//! It has sensorlog's shape on purpose, so the gap between the two is the cost of what
//! sensorlog does per reading (framing, parsing, one CSV row per field, dedup), not a
//! different architecture: one OS thread per connection, one shared append-only file
//! behind a mutex, an fsync every second by a side thread. Each thread reads 64 KiB,
//! writes everything up to the last newline with one `write_all` (so lines from two
//! connections never interleave) and keeps the partial last line for the next read.
//! Like sensorlog, it binds with a listen backlog of 4096 rather than std's 128, so a
//! burst of 1,000 boards is not refused by the kernel.
//!
//! It runs as its own process (the bench binary re-executed with [`ROLE_ENV`] set) so its
//! memory and CPU are measured apart from the harness. It prints its address on stdout,
//! and exits, after an fsync, on SIGTERM or when its stdin closes, so it cannot outlive
//! the harness.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// Set to [`ROLE`] to make the bench binary a raw copier.
pub const ROLE_ENV: &str = "SENSORLOG_BENCH_ROLE";
pub const ROLE: &str = "rawcopy";
/// The output file of the copier.
pub const OUT_ENV: &str = "SENSORLOG_BENCH_RAWCOPY_OUT";

const CHUNK_BYTES: usize = 64 * 1024;
const THREAD_STACK_BYTES: usize = 128 * 1024;
const FSYNC_EVERY: Duration = Duration::from_secs(1);
const LISTEN_BACKLOG: i32 = 4096;

pub fn is_role() -> bool {
    std::env::var_os(ROLE_ENV).is_some_and(|v| v == ROLE)
}

/// The copier's `main`: never returns.
pub fn main() -> ! {
    match serve() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("raw copier: {e}");
            std::process::exit(1)
        }
    }
}

struct Sink {
    file: Mutex<File>,
    dirty: AtomicBool,
}

impl Sink {
    fn append(&self, bytes: &[u8]) -> io::Result<()> {
        let mut f = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        f.write_all(bytes)?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }
}

fn serve() -> io::Result<()> {
    let path = std::env::var_os(OUT_ENV).ok_or_else(|| io::Error::other(format!("{OUT_ENV} is not set")))?;
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    // fsync goes through a second handle so it never holds the writers' mutex.
    let sync = Arc::new(file.try_clone()?);
    let sink = Arc::new(Sink {
        file: Mutex::new(file),
        dirty: AtomicBool::new(false),
    });

    let listener = bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
    println!("{}", listener.local_addr()?);
    io::stdout().flush()?;

    {
        let (sync, sink) = (Arc::clone(&sync), Arc::clone(&sink));
        std::thread::Builder::new().name("fsync".into()).spawn(move || loop {
            std::thread::sleep(FSYNC_EVERY);
            if sink.dirty.swap(false, Ordering::AcqRel) {
                let _ = sync.sync_data();
            }
        })?;
    }
    {
        let sync = Arc::clone(&sync);
        std::thread::Builder::new().name("stdin".into()).spawn(move || {
            let _ = io::copy(&mut io::stdin(), &mut io::sink());
            let _ = sync.sync_data();
            std::process::exit(0);
        })?;
    }
    {
        let sync = Arc::clone(&sync);
        ctrlc::set_handler(move || {
            let _ = sync.sync_data();
            std::process::exit(0);
        })
        .map_err(io::Error::other)?;
    }

    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let sink = Arc::clone(&sink);
                let spawned = std::thread::Builder::new()
                    .stack_size(THREAD_STACK_BYTES)
                    .spawn(move || copy(stream, &sink));
                if let Err(e) = spawned {
                    eprintln!("raw copier: cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                eprintln!("raw copier: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    Ok(())
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Copies one connection's complete lines to the file until the peer closes.
fn copy(mut stream: TcpStream, sink: &Sink) {
    // An idle board costs its thread and nothing more: the 64 KiB buffer is allocated
    // once the first bytes arrive.
    let mut first = [0u8; 1024];
    let mut got = read_some(&mut stream, &mut first);
    if got == 0 {
        return;
    }
    let mut buf = vec![0u8; CHUNK_BYTES];
    buf[..got].copy_from_slice(&first[..got]);
    let mut filled = 0;
    while got > 0 {
        let end = filled + got;
        match memchr::memrchr(b'\n', &buf[filled..end]) {
            Some(i) => {
                let cut = filled + i + 1;
                if let Err(e) = sink.append(&buf[..cut]) {
                    eprintln!("raw copier: write failed: {e}");
                    return;
                }
                buf.copy_within(cut..end, 0);
                filled = end - cut;
            }
            None => filled = end,
        }
        if filled == buf.len() {
            // A line longer than the buffer: grow rather than split it.
            buf.resize(buf.len() * 2, 0);
        }
        got = read_some(&mut stream, &mut buf[filled..]);
    }
    if filled > 0 {
        // A last line without its newline is still a line.
        buf.truncate(filled);
        buf.push(b'\n');
        if let Err(e) = sink.append(&buf) {
            eprintln!("raw copier: write failed: {e}");
        }
    }
}

/// One read; 0 at end of stream or on an error (the peer is gone either way).
fn read_some(stream: &mut TcpStream, buf: &mut [u8]) -> usize {
    loop {
        match stream.read(buf) {
            Ok(n) => return n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return 0,
        }
    }
}
