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
use std::time::{Duration, Instant, SystemTime};

use crate::auth::session::{AuthSession, Gate, Refusal};
use crate::protocol::framing::{Frame, Leftover, LineFramer};
use crate::protocol::reading::{
    parse_flat_line, parse_line_unquoted, recycle_fields, Field, FlatField, FlatMemory, FlatReading, Kind, Line,
    Reading, Value, FLAT_MAX_FIELDS,
};
use crate::ratelog::{ByCause, RateLimitedLog};
use crate::server::allow::Doorman;
use crate::server::limits::{BoardSocket, Slot};
use crate::server::tls_listener::{TlsAcceptor, TlsStream};
use crate::shutdown::Shutdown;
use crate::sink::csv::dedup::{content_hash, Key};
use crate::sink::csv::encode;
use crate::sink::csv::{Batch, CsvSink, Outcome, PendingReading};
use crate::stats::Stats;

const READ_BUF_BYTES: usize = 16 * 1024;
/// A line still unfinished after this long is slow (not just split across two reads):
/// the read timeout then shrinks to what is left of `server.line_timeout_secs`.
const SLOW_LINE: Duration = Duration::from_secs(1);
const FIRST_READ_BYTES: usize = 512;

/// What every connection thread shares.
pub struct ConnectionContext {
    pub sink: Arc<CsvSink>,
    pub stats: Arc<Stats>,
    pub max_line_bytes: usize,
    pub idle_timeout: Duration,
    /// How long one line may take from its first byte to its newline.
    pub line_timeout: Duration,
    /// One ERROR line per cause (disk full, permissions, ...) per interval.
    pub write_errors: ByCause,
    /// Refused greetings, logged per interval, not per board.
    pub bad_hellos: RateLimitedLog,
    pub shutdown: Arc<Shutdown>,
    /// Whether to build owned rows for the uploader.
    pub rows_for_uploader: bool,
    pub csv_path: PathBuf,
    /// Live board state for the dashboard and alerts (issue 13); see `DASHBOARD HOOK`.
    pub boards: Option<Arc<crate::fleet::boards::Boards>>,
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

struct Session<'a> {
    shared: &'a ConnectionContext,
    /// The board's address as received (the board state keeps it as an address), and as
    /// text for the CSV and the log.
    peer_socket: SocketAddr,
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
    /// The Unix millisecond `received_at` was formatted for (see `encode::stamp_millis`).
    received_ms: Option<u128>,
    encoder: encode::Encoder,
    /// DASHBOARD HOOK: this chunk's readings, applied to `shared.boards` once written.
    seen: crate::fleet::boards::Sightings,
    /// The field vector each line is parsed into (see `parse_line_reusing`, here `parse_line_unquoted`).
    spare_fields: Vec<Field<'static>>,
    /// What the board's last flat JSON lines left (see `parse_flat_line`).
    flat_memory: FlatMemory,
    /// Set when the board must be disconnected once the replies are sent.
    close_after: Option<String>,
    peer_addr: IpAddr,
    auth: AuthSession,
}

/// A reading's fields as the connection uses them: (name, value as in the CSV, kind,
/// whether a number). Walked up to four times (rows, board state, uploader, resend key).
trait FieldsOf<'r>: Iterator<Item = (&'r str, &'r str, &'static str, bool)> + Clone {}

impl<'r, I: Iterator<Item = (&'r str, &'r str, &'static str, bool)> + Clone> FieldsOf<'r> for I {}

/// What the connection needs of a reading, from either parse: a [`Reading`] of the full
/// path or a `FlatReading` of the one-pass path (issue 22), so both go through the same
/// code to the same bytes.
struct ReadingView<'r, I> {
    device: Option<&'r str>,
    boot: Option<&'r str>,
    seq: Option<u64>,
    device_time: Option<&'r str>,
    json_too_deep: bool,
    /// No field needs CSV quoting (see `parse_line_unquoted`).
    unquoted: bool,
    /// How many fields (rows).
    count: usize,
    fields: I,
}

impl<'r> ReadingView<'r, ()> {
    fn of(r: &'r Reading<'r>, unquoted: bool) -> ReadingView<'r, impl FieldsOf<'r>> {
        ReadingView {
            device: r.device.as_deref(),
            boot: r.boot.as_deref(),
            seq: r.seq,
            device_time: r.device_time.as_deref(),
            json_too_deep: r.json_too_deep,
            unquoted,
            count: r.fields.len(),
            fields: r.fields.iter().map(|f| {
                (
                    &*f.name,
                    f.value.as_text(),
                    f.value.kind(),
                    matches!(f.value, Value::Number(_)),
                )
            }),
        }
    }
}

impl<'r> ReadingView<'r, ()> {
    /// The view of a reading of `parse_flat_line`, whose fields are `fields[..r.count]`.
    fn of_flat(r: &FlatReading<'r>, fields: &'r [FlatField<'r>]) -> ReadingView<'r, impl FieldsOf<'r>> {
        ReadingView {
            device: r.device,
            boot: r.boot,
            seq: r.seq,
            device_time: r.device_time,
            json_too_deep: false,
            unquoted: r.unquoted,
            count: r.count,
            fields: fields[..r.count]
                .iter()
                .map(|f| (f.name, f.value, f.kind.as_str(), f.kind == Kind::Number)),
        }
    }
}

/// Appends the reading's rows to `out`: what the CSV holds of it.
fn encode_reading<'r, I: FieldsOf<'r>>(
    common: &encode::ReadingColumns<'_>,
    r: &ReadingView<'r, I>,
    encoder: &mut encode::Encoder,
    out: &mut Vec<u8>,
) {
    let fields = r.fields.clone().map(|(name, value, kind, _)| (name, value, kind));
    if r.unquoted {
        common.encode_rows_unquoted(fields, encoder, out);
    } else {
        common.encode_rows(fields, encoder, out);
    }
}

/// Serves one board until it disconnects, idles out, or the daemon shuts down.
pub fn serve(
    socket: Arc<BoardSocket>,
    peer: SocketAddr,
    shared: Arc<ConnectionContext>,
    _slot: Slot,
    tls: Option<Arc<TlsAcceptor>>,
) {
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

fn run(socket: &BoardSocket, io: &mut impl BoardStream, peer: SocketAddr, shared: &ConnectionContext) -> String {
    let stream = &socket.stream;
    let idle = if shared.shutdown.is_requested() {
        crate::server::limits::DRAIN_QUIET // a TLS handshake finished during shutdown
    } else {
        shared.idle_timeout
    };
    if let Err(e) = stream.set_read_timeout(Some(idle)) {
        return format!("cannot set the idle timeout: {e}");
    }
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let mut conn = Session {
        shared,
        peer_socket: peer,
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
        received_ms: None,
        encoder: encode::Encoder::default(),
        seen: crate::fleet::boards::Sightings::default(),
        spare_fields: Vec::new(),
        flat_memory: FlatMemory::default(),
        close_after: None,
        peer_addr: match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer.ip(), IpAddr::V4),
            ip => ip,
        },
        auth: AuthSession::default(),
    };
    // When the line now waiting for its newline began, and whether the socket's read
    // timeout was shortened for it (only for a line that is slow, not merely split
    // across two reads, so that normal traffic costs no extra system calls).
    let mut partial_since: Option<Instant> = None;
    let mut short_timeout = false;
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
            Err(e)
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
                    && partial_since.is_some_and(|t| t.elapsed() >= shared.line_timeout) =>
            {
                break line_timed_out(shared, io);
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
        encode::stamp_millis(&mut conn.received_at, &mut conn.received_ms, SystemTime::now());
        // The fields of the chunk's flat lines, one after another (made once per chunk, not
        // per line: issue 22).
        let mut fields = [FlatField::default(); FLAT_MAX_FIELDS];
        framer.push_text(data, |frame, text| conn.frame(frame, text, &mut fields));
        if let Err(e) = conn.commit(io) {
            break format!("write error: {e}");
        }
        if let Some(reason) = conn.close_after.take() {
            break reason;
        }
        match (framer.has_partial(), partial_since) {
            (false, _) => {
                partial_since = None;
                if std::mem::take(&mut short_timeout) {
                    let _ = stream.set_read_timeout(Some(shared.idle_timeout));
                }
            }
            (true, None) => partial_since = Some(Instant::now()),
            (true, Some(since)) => {
                let waited = since.elapsed();
                if waited >= shared.line_timeout {
                    break line_timed_out(shared, io);
                }
                if !short_timeout && waited >= SLOW_LINE {
                    short_timeout = true;
                    let left = (shared.line_timeout - waited).max(Duration::from_millis(10));
                    let _ = stream.set_read_timeout(Some(left.min(shared.idle_timeout)));
                }
            }
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
    if shared.shutdown.is_requested() {
        let _ = io.write_all(b"ERR shutting-down\n");
    }
    io.finish();
    reason
}

/// Cuts a board whose line has taken longer than `server.line_timeout_secs`: a client
/// dripping a byte at a time would otherwise hold its slot forever.
fn line_timed_out(shared: &ConnectionContext, io: &mut impl Write) -> String {
    Stats::add(&shared.stats.line_timeouts, 1);
    let secs = shared.line_timeout.as_secs();
    let _ = io.write_all(format!("ERR line-timeout {secs}\n").as_bytes());
    format!("a line took longer than {secs} s (server.line_timeout_secs)")
}

impl Session<'_> {
    /// One framed line; `text`: the line as text, if the framer has checked it; `fields`:
    /// room for a flat line's fields.
    fn frame<'d>(&mut self, frame: Frame<'_>, text: Option<&'d str>, fields: &mut [FlatField<'d>; FLAT_MAX_FIELDS]) {
        if self.close_after.is_some() {
            // Lines after a refused greeting are not stored: the board is disconnected.
            return;
        }
        // The common reading, in one pass from the line to its rows (issue 22); anything
        // else takes the full parse below, which gives the same reading.
        if let Some(r) = text.and_then(|t| parse_flat_line(t, &mut self.flat_memory, fields)) {
            return match self.shared.gate.reading(&self.auth, r.device) {
                Ok(()) => self.add_reading(ReadingView::of_flat(&r, fields)),
                Err(refusal) => self.refuse(refusal, r.seq),
            };
        }
        match frame {
            Frame::Line(line) => match parse_line_unquoted(line, &mut self.spare_fields) {
                (Line::Blank, _) => {}
                (Line::Hello(h), _) => {
                    let gate = &self.shared.gate;
                    if let Err(r) = gate.hello(&mut self.auth, self.peer_addr, &h.device, h.token.as_deref()) {
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
                (Line::BadHello(reason), _) => {
                    Stats::add(&self.shared.stats.bad_hellos, 1);
                    self.shared.bad_hellos.log(|n| {
                        log::warn!(
                            "Refused the greeting of board {}: {reason} ({n} refused greetings so far). Fix the board's HELLO line; see docs/protocol.md.",
                            self.peer
                        )
                    });
                    self.replies.push(Reply::Text(format!("ERR bad-hello {reason}\n")));
                    if self.close_after.is_none() {
                        self.close_after = Some(format!("refused greeting: {reason}"));
                    }
                }
                (Line::Reading(r), unquoted) => {
                    match self.shared.gate.reading(&self.auth, r.device.as_deref()) {
                        Ok(()) => self.add_reading(ReadingView::of(&r, unquoted)),
                        Err(refusal) => self.refuse(refusal, r.seq),
                    }
                    self.spare_fields = recycle_fields(r.fields);
                }
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

    /// Answers a refused line; a refusal that closes ends the connection after the replies.
    fn refuse(&mut self, r: Refusal, seq: Option<u64>) {
        let reply = r.reply(seq);
        log::debug!("Refused a line from {}: {}.", self.peer, reply.trim_end());
        if r.closes() {
            self.close_after = Some(format!("refused ({})", reply.trim_end()));
        }
        self.replies.push(Reply::Text(reply));
    }

    /// Encodes a reading's rows into the chunk's batch and notes what the rest of the
    /// daemon needs of it (board state, rows for the uploader, resend key, ACK).
    fn add_reading<'r, I: FieldsOf<'r>>(&mut self, r: ReadingView<'r, I>) {
        if r.json_too_deep {
            Stats::add(&self.shared.stats.json_too_deep, 1);
        }
        let device = r.device.or(self.hello_device.as_deref()).unwrap_or(&self.peer_ip);
        let boot = r.boot.or(self.boot.as_deref()).unwrap_or("");
        let bytes_start = self.batch.buf.len();
        let rows_start = self.batch.rows.len();
        let common = encode::ReadingColumns {
            received_at: &self.received_at,
            device,
            peer: &self.peer,
            boot,
            seq: r.seq,
            device_time: r.device_time.unwrap_or(""),
        };
        encode_reading(&common, &r, &mut self.encoder, &mut self.batch.buf);
        if self.shared.boards.is_some() {
            // DASHBOARD HOOK (1/2): note where the reading's rows are. The first reading of
            // a run of one device's readings copies its fields; a longer run's values are
            // read back from the rows after the CSV append (once per run).
            let fields = r.fields.clone().map(|(name, value, _, number)| (name, value, number));
            self.seen.note(device, bytes_start..self.batch.buf.len(), fields);
        }
        if self.shared.rows_for_uploader {
            for (name, value, kind, _) in r.fields.clone() {
                self.batch.rows.push(common.row(name, value, kind).to_owned_row());
            }
        }
        let key = match (boot, r.seq) {
            ("", _) | (_, None) => None,
            (boot, Some(seq)) => Some(Key {
                device: device.to_string(),
                boot: boot.to_string(),
                seq,
                content: content_hash(
                    r.fields.clone().map(|(name, value, kind, _)| (name, value, kind)),
                    r.device_time.unwrap_or(""),
                ),
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
            row_count: r.count as u64,
            key,
        });
    }

    /// Writes the chunk's readings to the CSV, then sends the replies in order.
    fn commit(&mut self, stream: &mut impl Write) -> std::io::Result<()> {
        // Outcomes belong to this chunk only: a stale failure from an earlier chunk
        // must not close the connection or turn a later ACK into an ERR.
        self.outcomes.clear();
        if !self.batch.is_empty() {
            let started = std::time::Instant::now();
            let result = self.shared.sink.append(&self.batch, &mut self.outcomes);
            let stats = &self.shared.stats;
            // DASHBOARD HOOK (2/2): latency, readiness, and the written readings' board state.
            stats.csv_write_seconds.observe(started.elapsed());
            let append_failed = result.is_err() || self.outcomes.contains(&Outcome::Failed);
            stats.csv_last_append_failed.store(append_failed, Ordering::Relaxed);
            if let Some(boards) = &self.shared.boards {
                let written = self.outcomes.iter().map(|o| *o == Outcome::Written);
                boards.record(&mut self.seen, &self.batch.buf, written, self.peer_socket, self.ack);
            }
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
                if !matches!(e, crate::sink::csv::error::CsvError::Closed) {
                    let lost = self.outcomes.iter().filter(|o| **o == Outcome::Failed).count();
                    let path = self.shared.csv_path.display();
                    self.shared.write_errors.log(&e.cause(), |n| {
                        log::error!(
                            "Cannot write readings to {path}: {e} ({n} failed writes of this kind since the last such line; this one from {}, {lost} readings). Free disk space or fix permissions; boards that use acknowledgements will resend, readings from boards without them are lost.",
                            self.peer
                        )
                    });
                }
            }
        }
        self.out.clear();
        let mut ack_failed = false;
        for reply in self.replies.drain(..) {
            match reply {
                Reply::Text(t) => self.out.extend_from_slice(t.as_bytes()),
                Reply::Ack { index, seq } => {
                    let line = match self.outcomes.get(index) {
                        Some(Outcome::Written | Outcome::Duplicate) => format!("ACK {seq}\n"),
                        _ => {
                            ack_failed = true;
                            format!("ERR {seq} write-failed\n")
                        }
                    };
                    self.out.extend_from_slice(line.as_bytes());
                }
            }
        }
        self.batch.clear();
        if !self.out.is_empty() {
            stream.write_all(&self.out)?;
        }
        if ack_failed {
            // Stop here, so that the readings after the failed one are not written
            // before its resend: the board reconnects and resends in order. Only a
            // failure of a reading that asked for an ACK counts; readings sent before
            // the board turned acknowledgements on are not its to resend.
            return Err(std::io::Error::other(
                "a write failed; closing so that the board resends in order",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::reading::{mutate_line, parse_line, MAX_BOOT_CHARS, MAX_DEVICE_CHARS, MUTATION_PIECES};

    /// What the connection takes from a view: everything but the fields' iterator type.
    type Parts<'r> = (
        Option<&'r str>,
        Option<&'r str>,
        Option<u64>,
        Option<&'r str>,
        bool,
        usize,
        Vec<(&'r str, &'r str, &'static str, bool)>,
    );

    fn parts<'r, I: FieldsOf<'r>>(v: &ReadingView<'r, I>) -> Parts<'r> {
        (
            v.device,
            v.boot,
            v.seq,
            v.device_time,
            v.json_too_deep,
            v.count,
            v.fields.clone().collect(),
        )
    }

    /// The rows `view` makes, as `add_reading` encodes them (defaults as a greeting-less
    /// board's: device from the peer, no boot).
    fn rows<'r, I: FieldsOf<'r>>(v: &ReadingView<'r, I>, enc: &mut encode::Encoder) -> Vec<u8> {
        let common = encode::ReadingColumns {
            received_at: "2026-12-07T15:00:00.000Z",
            device: v.device.unwrap_or("127.0.0.1"),
            peer: "127.0.0.1:5000",
            boot: v.boot.unwrap_or(""),
            seq: v.seq,
            device_time: v.device_time.unwrap_or(""),
        };
        let mut out = Vec::new();
        encode_reading(&common, v, enc, &mut out);
        out
    }

    /// Issue 22: the one-pass path (`parse_flat_line` straight to rows) writes exactly the
    /// bytes of the full path (`parse_line`, then rows with the quoting test on every
    /// field) and hands the rest of the connection the same reading, on random lines
    /// and on lines at each of its fallback boundaries; and it does take the common ones.
    #[test]
    fn issue_22_one_pass_path_writes_what_the_full_path_writes() {
        let mut next = crate::testing::xorshift(0x7a3c_1d22_5e0f_b961);
        let name = |n: usize| format!("\"{}\"", "d".repeat(n));
        let boot = |n: usize| format!("\"{}\"", "b".repeat(n));
        let field = |i: usize| format!("\"f{i}\":{i}");
        let fields = |n: usize| (0..n).map(field).collect::<Vec<_>>().join(",");
        let mut lines: Vec<String> = vec![
            r#"{"device":"sim-01","seq":12,"temp_c":21.50,"humidity":40.5}"#.into(),
            r#" { "device" : "k" , "t" : 1 } "#.into(),
            "\t{\"t\":1}\t".into(),
            r#"{"t":1}"#.into(),
            "{}".into(),
            r#"{"device":"k"}"#.into(),
            r#"{"seq":1,"boot":"b1","ts":"x"}"#.into(),
            r#"{"a":null,"b":true,"c":false,"d":"","e":-0.5,"f":"=1+2","g":"-x","h":"'q"}"#.into(),
            r#"{"=f":1,"+g":"@h","@":"\t"}"#.into(),
            r#"{"note":"a, b","t":1}"#.into(),
            r#"{"note":"a b","t":1}"#.into(),
            r#"{"a":1,"a":2}"#.into(),
            r#"{"a":1e3}"#.into(),
            r#"{"a":[1]}"#.into(),
            r#"{"a":"\u0041"}"#.into(),
            "{\"a\":\"\u{e9}\"}".into(),
            "{\"a\":1}\r".into(),
            r#"{"device":true,"t":1}"#.into(),
            r#"{"device":null,"t":1}"#.into(),
            r#"{"device":"","t":1}"#.into(),
            r#"{"device":" k","t":1}"#.into(),
            r#"{"device":"k ","t":1}"#.into(),
            r#"{"device":12,"t":1}"#.into(),
            r#"{"seq":"12","t":1}"#.into(),
            r#"{"seq":-1,"t":1}"#.into(),
            r#"{"seq":1.5,"t":1}"#.into(),
            r#"{"seq":18446744073709551615,"t":1}"#.into(),
            r#"{"seq":18446744073709551616,"t":1}"#.into(),
            r#"{"seq":true,"t":1}"#.into(),
            r#"{"ts":null,"t":1}"#.into(),
            r#"{"ts":false,"t":1}"#.into(),
            r#"{"ts":7,"t":1}"#.into(),
            r#"{"ts":"=now","t":1}"#.into(),
            r#"{"boot":"has!bang","t":1}"#.into(),
            r#"{"boot":7,"t":1}"#.into(),
            r#"{"boot":"-b","t":1}"#.into(),
        ];
        for n in [MAX_DEVICE_CHARS - 1, MAX_DEVICE_CHARS, MAX_DEVICE_CHARS + 1] {
            lines.push(format!("{{\"device\":{},\"t\":1}}", name(n)));
        }
        for n in [MAX_BOOT_CHARS, MAX_BOOT_CHARS + 1] {
            lines.push(format!("{{\"boot\":{},\"t\":1}}", boot(n)));
        }
        for n in [1, FLAT_MAX_FIELDS - 1, FLAT_MAX_FIELDS, FLAT_MAX_FIELDS + 1, 16, 17] {
            lines.push(format!("{{\"device\":\"k\",\"seq\":3,{}}}", fields(n)));
        }
        let (long_name, wide) = (name(MAX_DEVICE_CHARS + 1), field(99));
        let extra = ["\"a,b\"", "=", "'", "\"", &long_name, &wide];
        let pieces: Vec<&str> = MUTATION_PIECES.iter().copied().chain(extra).collect();
        let base = lines.len();
        for round in 0..30_000 {
            // Each mutation right after the line it mutates, so that it is read with that
            // line's shape kept (see `protocol::shape`): the near misses of a kept shape.
            let mut text = lines[round % base].clone();
            lines.push(text.clone());
            mutate_line(&mut text, round % 4, &pieces, &mut next);
            lines.push(text);
        }
        let (mut enc_fast, mut enc_full) = (encode::Encoder::default(), encode::Encoder::default());
        let (mut taken, mut taken_quoted) = (0, 0);
        // One memory (the line shape) across the lines, as a board's connection keeps it.
        let mut memory = FlatMemory::default();
        for line in &lines {
            let mut array = [FlatField::default(); FLAT_MAX_FIELDS];
            let Some(fast) = parse_flat_line(line, &mut memory, &mut array) else {
                continue;
            };
            let Line::Reading(full) = parse_line(line.as_bytes()) else {
                panic!("{line:?}: taken by the one-pass path, but not a reading");
            };
            let fast = ReadingView::of_flat(&fast, &array);
            // The reference encodes with the quoting test on every field.
            let full = ReadingView::of(&full, false);
            assert_eq!(parts(&fast), parts(&full), "line {line:?}");
            assert_eq!(
                String::from_utf8(rows(&fast, &mut enc_fast)).unwrap(),
                String::from_utf8(rows(&full, &mut enc_full)).unwrap(),
                "line {line:?}"
            );
            taken += 1;
            taken_quoted += usize::from(!fast.unquoted);
        }
        assert!(
            taken > 3_000 && taken_quoted > 100,
            "the one-pass path took {taken} lines, {taken_quoted} with quoting"
        );
        for fallback in [
            format!("{{\"device\":{},\"t\":1}}", name(MAX_DEVICE_CHARS + 1)),
            format!("{{\"boot\":{},\"t\":1}}", boot(MAX_BOOT_CHARS + 1)),
            format!("{{{}}}", fields(FLAT_MAX_FIELDS + 1)),
            r#"{"seq":18446744073709551616,"t":1}"#.into(),
            r#"{"seq":1}"#.into(),
            r#"{"ts":null,"t":1}"#.into(),
            "{\"a\":1}\r".into(),
        ] {
            let mut array = [FlatField::default(); FLAT_MAX_FIELDS];
            assert_eq!(
                parse_flat_line(&fallback, &mut memory, &mut array),
                None,
                "{fallback:?}"
            );
        }
        for taken in [
            format!("{{\"device\":{},\"t\":1}}", name(MAX_DEVICE_CHARS)),
            format!("{{\"boot\":{},\"t\":1}}", boot(MAX_BOOT_CHARS)),
            format!("{{{}}}", fields(FLAT_MAX_FIELDS)),
            r#"{"seq":18446744073709551615,"t":1}"#.into(),
        ] {
            let mut array = [FlatField::default(); FLAT_MAX_FIELDS];
            assert!(parse_flat_line(&taken, &mut memory, &mut array).is_some(), "{taken:?}");
        }
    }
}
