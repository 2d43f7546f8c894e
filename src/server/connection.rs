//! One board's connection, served by its own thread: read, frame, parse, write, ack.
//!
//! The loop works a read chunk at a time: every complete line in the chunk is parsed
//! and encoded into one buffer, the buffer goes to the CSV in one locked write, and
//! only then are acknowledgements sent. All lines of a chunk share one receive time
//! (they arrived in the same `read`), which also saves formatting a timestamp per line.
//!
//! Memory per connection stays small and bounded: a silent board costs only its
//! thread's stack (the first read uses a 512-byte stack buffer; the 16 KiB read buffer
//! is allocated once data flows), and the line framer never holds more than
//! `max_line_bytes + 1`.
//!
//! Nothing a board sends can crash this thread: parsing is total, and socket errors
//! end the connection with a debug log line. Were a bug to panic here anyway, the panic
//! stays in this thread and the slot is released by its guard.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::auth::session::{hello_token, Gate, Refusal, Session};
use crate::dedup::Key;
use crate::protocol::framing::{Frame, Leftover, LineFramer};
use crate::protocol::reading::{parse_line, Line, Reading};
use crate::row::{self, rfc3339_millis};
use crate::server::allow::Doorman;
use crate::server::limits::{Conn as Socket, Slot};
use crate::server::tls::{TlsAcceptor, TlsStream};
use crate::shutdown::Shutdown;
use crate::sink::csv::{Batch, CsvSink, Outcome, PendingReading};
use crate::stats::Stats;

const READ_BUF_BYTES: usize = 16 * 1024;
const FIRST_READ_BYTES: usize = 512;

/// What every connection thread shares.
pub struct Shared {
    pub sink: Arc<CsvSink>,
    pub stats: Arc<Stats>,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    pub shutdown: Arc<Shutdown>,
    /// Whether to build owned rows for the uploader.
    pub rows_for_uploader: bool,
    pub csv_path: PathBuf,
    /// Device tokens: who may write as which device (open without a tokens file).
    pub gate: Arc<Gate>,
    /// server.allow / server.deny, applied at accept.
    pub doorman: Arc<Doorman>,
}

/// A board's byte stream: the plain socket or TLS over it.
trait BoardStream: Read + Write {
    /// Ends the stream politely (TLS: close_notify).
    fn finish(&mut self) {}
}

impl BoardStream for &TcpStream {}

impl BoardStream for TlsStream<'_> {
    fn finish(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
    }
}

/// Replies owed to the board, in the order their lines arrived.
enum Reply {
    Text(String),
    /// Acknowledge (or report the failure of) `batch.readings[index]`, seq `seq`.
    Ack {
        index: usize,
        seq: u64,
    },
}

struct Conn<'a> {
    shared: &'a Shared,
    peer: String,
    peer_ip: String,
    hello_device: Option<String>,
    boot: Option<String>,
    ack: bool,
    batch: Batch,
    replies: Vec<Reply>,
    outcomes: Vec<Outcome>,
    out: Vec<u8>,
    received_at: String,
    encoder: row::Encoder,
    peer_addr: IpAddr,
    session: Session,
    /// Set by a refusal that closes the connection: later lines are ignored.
    refused: Option<Refusal>,
}

/// Serves one board until it disconnects, idles out, or the daemon shuts down.
pub fn serve(socket: Arc<Socket>, peer: SocketAddr, shared: Arc<Shared>, _slot: Slot, tls: Option<Arc<TlsAcceptor>>) {
    log::debug!(
        "Board connected from {peer}{}.",
        if tls.is_some() { " (TLS)" } else { "" }
    );
    let stream = &socket.stream;
    let reason = match tls {
        None => run(&socket, &mut { stream }, peer, &shared),
        Some(tls) => {
            // Marked as in a read, so shutdown half-closes a handshake that waits.
            socket.in_read.store(true, Ordering::Release);
            let accepted = tls.accept(stream);
            socket.in_read.store(false, Ordering::Release);
            match accepted {
                Ok(mut tls_stream) => run(&socket, &mut tls_stream, peer, &shared),
                Err(why) => why,
            }
        }
    };
    log::debug!("Board {peer} disconnected: {reason}.");
}

fn run(socket: &Socket, io: &mut impl BoardStream, peer: SocketAddr, shared: &Shared) -> String {
    let stream = &socket.stream;
    let idle = if shared.shutdown.is_requested() {
        crate::server::limits::DRAIN_QUIET
    } else {
        shared.idle_timeout
    };
    if let Err(e) = stream.set_read_timeout(Some(idle)) {
        return format!("cannot set the idle timeout: {e}");
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut conn = Conn {
        shared,
        peer: peer.to_string(),
        peer_ip: peer.ip().to_string(),
        hello_device: None,
        boot: None,
        ack: false,
        batch: Batch::default(),
        replies: Vec::new(),
        outcomes: Vec::new(),
        out: Vec::new(),
        received_at: String::new(),
        encoder: row::Encoder::default(),
        peer_addr: match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
            ip => ip,
        },
        session: Session::default(),
        refused: None,
    };
    let mut framer = LineFramer::new(shared.max_line_bytes);
    let mut first = [0u8; FIRST_READ_BYTES];
    let mut buf: Vec<u8> = Vec::new();
    let reason = loop {
        let target: &mut [u8] = if buf.is_empty() { &mut first } else { &mut buf };
        socket.reads.fetch_add(1, Ordering::AcqRel);
        socket.in_read.store(true, Ordering::Release);
        // At shutdown the read timeout drops to limits::DRAIN_QUIET (see close_reads).
        let got = io.read(target);
        socket.in_read.store(false, Ordering::Release);
        let n = match got {
            Ok(0) => break "end of stream".to_string(),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                    && shared.shutdown.is_requested() =>
            {
                break "quiet during shutdown".to_string();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Stats::add(&shared.stats.idle_timeouts, 1);
                let secs = shared.idle_timeout.as_secs();
                let _ = io.write_all(format!("ERR idle-timeout {secs}\n").as_bytes());
                break format!("idle for {secs} s (server.idle_timeout_secs)");
            }
            Err(e) => break format!("read error: {e}"),
        };
        let data: &[u8] = if buf.is_empty() {
            buf = vec![0; READ_BUF_BYTES];
            &first[..n]
        } else {
            &buf[..n]
        };
        conn.received_at = rfc3339_millis(SystemTime::now());
        framer.push(data, |frame| conn.frame(frame));
        if let Err(e) = conn.commit(io) {
            break format!("write error: {e}");
        }
        if let Some(r) = conn.refused {
            break format!("refused ({})", r.reply(None).trim_end());
        }
    };
    match framer.finish() {
        Leftover::Nothing => {}
        Leftover::Partial { bytes } => {
            Stats::add(&shared.stats.partial_lines, 1);
            log::debug!(
                "Dropped an unfinished line of {bytes} bytes from {peer} (no newline before the connection ended)."
            );
        }
        Leftover::Overlong { bytes } => {
            Stats::add(&shared.stats.lines_too_long, 1);
            log::debug!("Dropped an overlong line of {bytes}+ bytes from {peer} at the end of the connection.");
        }
    }
    if shared.shutdown.is_requested() && conn.refused.is_none() {
        let _ = io.write_all(b"ERR shutting-down\n");
    }
    io.finish();
    reason
}

impl Conn<'_> {
    fn frame(&mut self, frame: Frame<'_>) {
        if self.refused.is_some() {
            return; // nothing after a refusal that closes the connection is looked at
        }
        match frame {
            Frame::Line(line) => match parse_line(line) {
                Line::Blank => {}
                Line::Hello(h) => {
                    let gate = &self.shared.gate;
                    if let Err(r) = gate.hello(&mut self.session, self.peer_addr, &h.device, hello_token(line)) {
                        return self.refuse(r, None);
                    }
                    log::debug!(
                        "Board {} says it is {:?} (boot {:?}, acknowledgements {}).",
                        self.peer,
                        h.device,
                        h.boot,
                        if h.ack { "on" } else { "off" }
                    );
                    if h.ack {
                        self.replies.push(Reply::Text(format!("OK HELLO {}\n", h.device)));
                    }
                    self.hello_device = Some(h.device);
                    self.boot = h.boot;
                    self.ack = h.ack;
                }
                Line::Reading(r) => match self.shared.gate.reading(&self.session, r.device.as_deref()) {
                    Ok(()) => self.add_reading(&r),
                    Err(refusal) => self.refuse(refusal, r.seq),
                },
            },
            Frame::Overlong { bytes } => {
                Stats::add(&self.shared.stats.lines_too_long, 1);
                log::debug!(
                    "Discarded a line of {bytes} bytes from {} (limit {} bytes, server.max_line_bytes).",
                    self.peer,
                    self.shared.max_line_bytes
                );
                if self.ack {
                    self.replies.push(Reply::Text("ERR - line-too-long\n".to_string()));
                }
            }
        }
    }

    /// Answers a refused line; a refusal that closes stops this connection's reading.
    fn refuse(&mut self, r: Refusal, seq: Option<u64>) {
        log::debug!("Refused a line from {}: {}.", self.peer, r.reply(seq).trim_end());
        self.replies.push(Reply::Text(r.reply(seq)));
        if r.closes() {
            self.refused = Some(r);
        }
    }

    fn add_reading(&mut self, r: &Reading) {
        let device = r
            .device
            .as_deref()
            .or(self.hello_device.as_deref())
            .unwrap_or(&self.peer_ip);
        let boot = r.boot.as_deref().or(self.boot.as_deref()).unwrap_or("");
        let bytes_start = self.batch.buf.len();
        let rows_start = self.batch.rows.len();
        let common = row::Shared {
            received_at: &self.received_at,
            device,
            peer: &self.peer,
            boot,
            seq: r.seq,
            device_time: r.device_time.as_deref().unwrap_or(""),
        };
        let fields = r.fields.iter().map(|f| (&*f.name, f.value.as_text(), f.value.kind()));
        common.encode_rows(fields, &mut self.encoder, &mut self.batch.buf);
        if self.shared.rows_for_uploader {
            for f in &r.fields {
                let row = common.row(&f.name, f.value.as_text(), f.value.kind());
                self.batch.rows.push(row.to_owned_row());
            }
        }
        let key = match (boot, r.seq) {
            ("", _) | (_, None) => None,
            (boot, Some(seq)) => Some(Key {
                device: device.to_string(),
                boot: boot.to_string(),
                seq,
            }),
        };
        if let (true, Some(seq)) = (self.ack, r.seq) {
            self.replies.push(Reply::Ack {
                index: self.batch.readings.len(),
                seq,
            });
        }
        self.batch.readings.push(PendingReading {
            bytes: bytes_start..self.batch.buf.len(),
            rows: rows_start..self.batch.rows.len(),
            row_count: r.fields.len() as u64,
            key,
        });
    }

    /// Writes the chunk's readings to the CSV, then sends the replies in order.
    fn commit(&mut self, stream: &mut impl Write) -> std::io::Result<()> {
        if !self.batch.is_empty() {
            let result = self.shared.sink.append(&self.batch, &mut self.outcomes);
            let stats = &self.shared.stats;
            let mut written = 0;
            let mut rows = 0;
            for (o, r) in self.outcomes.iter().zip(&self.batch.readings) {
                match o {
                    Outcome::Written => {
                        written += 1;
                        rows += r.row_count;
                    }
                    Outcome::Duplicate => Stats::add(&stats.duplicates, 1),
                    Outcome::Failed => Stats::add(&stats.write_failures, 1),
                }
            }
            Stats::add(&stats.readings, written);
            Stats::add(&stats.rows_written, rows);
            if let Err(e) = result {
                if !matches!(e, crate::sink::csv::CsvError::Closed) {
                    log::error!(
                        "Lost {} readings from {}: {e}. Free disk space or fix permissions on {}; boards that use acknowledgements will resend.",
                        self.batch.readings.len(),
                        self.peer,
                        self.shared.csv_path.display()
                    );
                }
            }
        }
        self.out.clear();
        for reply in self.replies.drain(..) {
            match reply {
                Reply::Text(t) => self.out.extend_from_slice(t.as_bytes()),
                Reply::Ack { index, seq } => {
                    let line = match self.outcomes.get(index) {
                        Some(Outcome::Written | Outcome::Duplicate) => format!("ACK {seq}\n"),
                        _ => format!("ERR {seq} write-failed\n"),
                    };
                    self.out.extend_from_slice(line.as_bytes());
                }
            }
        }
        let failed = self.outcomes.contains(&Outcome::Failed);
        self.batch.clear();
        if !self.out.is_empty() {
            stream.write_all(&self.out)?;
        }
        if failed && self.ack {
            // Stop here: were a later reading written after this failure, the duplicate
            // check (highest seq per boot) would take the board's resend of the failed one
            // for a duplicate. The board reconnects and resends in order.
            return Err(std::io::Error::other(
                "a write failed; closing so that the board resends in order",
            ));
        }
        Ok(())
    }
}
