//! Live state per board, for the dashboard, `/metrics` and silent-board alerts.
//!
//! Why it exists: the CSV says what every board sent, but not which board is alive
//! *now*. This module keeps, in memory only, what an operator needs to see that: when
//! each board was last seen, from which peer, whether it uses acknowledgements, its
//! latest values, a short chart ring per numeric field, and its usual interval (the
//! median of its last [`GAPS`] gaps between readings). [`Boards::check`], called once a
//! second by the `board-watch` thread (`crate::fleet::alerts`), turns a board `silent` when it has
//! been quiet for longer than `alerts.silent_factor` times its usual interval and at least
//! `alerts.min_silent_secs`, and back to `ok` when it reports again.
//!
//! Ingest pays little: a connection thread collects the readings of one read chunk in
//! its own reusable [`Sightings`] buffer (no allocation once warm), and after the CSV append
//! applies the written ones under one short mutex ([`Boards::record`]). The HTTP side
//! only ever reads snapshots of this state; it never touches the CSV or the sockets.
//!
//! Bounded by design (device names come from the network):
//! - at most `boards.max_boards` boards; when a new name arrives at the cap, it takes the
//!   place of the least recently seen board (O(1): the boards are kept in a list in the
//!   order they last reported), which is counted in [`Boards::evicted`]. The evicted
//!   board's memory is reused for the new one, so a flood of new names (a misconfigured
//!   board with a timestamp in its name, or anyone who can reach the port) allocates
//!   nothing per name once the cap is reached;
//! - at most `boards.max_fields` fields per board (latest values and chart rings; further
//!   fields are not shown, the CSV keeps them); a latest text value is cut to
//!   [`MAX_VALUE_CHARS`] bytes;
//! - each chart ring holds at most `boards.chart_points` points of 8 bytes (seconds since
//!   start as `u32`, value as `f32`), one per `chart_window_secs / chart_points` bucket
//!   (a reading in the same bucket replaces the bucket's point), so it spans the window.
//!   The rings are created lazily, at a board's second reading: a board heard from once
//!   (every board of a flood of names) has only its latest values, from which its one
//!   chart point is shown. Its gaps, rings and earlier-run time live in a box made at
//!   that second reading (`History`), so the place of a board heard from once, the
//!   place a new name takes at the cap, stays small.
//!
//! - each connection brings in at most `boards.new_name_burst` new device names at once and
//!   `boards.new_names_per_minute` after that (a token bucket per connection, consulted
//!   only for a name not in the table). A reading under a name past that budget is
//!   written to the CSV (and the sheet) as always, but not tracked here: counted in
//!   [`Boards::untracked_readings`] and logged at most once per [`UNTRACKED_LOG_EVERY`].
//!   Without it one board with the time in its name would push every real board out of
//!   the table within `max_boards` readings, and with them their silence alerts; with it
//!   such a board takes at most its burst of places, and a flood of new names costs
//!   a look-up per reading instead of a new place (issue 22).
//!
//! [`Boards::memory_bound_bytes`] states the resulting worst case; `cargo bench --bench
//! boards` measures it for 10,000 boards.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

pub mod settings;
mod sip;

use settings::{AlertsConfig, BoardsConfig};
use sip::SipKey;

use crate::ratelog::RateLimitedLog;

/// Gaps between readings remembered per board for its usual interval.
pub const GAPS: usize = 16;
/// Longest latest value kept per field, in bytes (the dashboard shows values, not essays).
pub const MAX_VALUE_CHARS: usize = 64;
/// Bytes a board's latest-value text grows by beyond what it needs (see [`Latest::room`]).
const TEXT_HEADROOM: usize = 16;
/// Initial capacity of a board's name (see [`Boards::memory_bound_bytes`]).
const NAME_ROOM: usize = 24;
/// At most one log line per this interval about new names past a connection's budget.
pub const UNTRACKED_LOG_EVERY: Duration = Duration::from_secs(60);
/// How much of the CSV's end is read at start to list the boards of earlier runs.
pub const PREVIOUS_RUN_TAIL_BYTES: u64 = 1 << 20;

/// A board's status, as shown on the dashboard and sent to the webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Status {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "silent")]
    Silent,
    /// In the CSV from an earlier run, not heard from since this start.
    #[serde(rename = "never seen since start")]
    Unseen,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Silent => "silent",
            Status::Unseen => "never seen since start",
        }
    }
}

/// The readings of one read chunk, collected before the CSV write: a connection keeps
/// one and reuses it, so collecting allocates nothing once it has grown.
///
/// The ingest path uses [`Sightings::note`]: per reading it only compares the device with
/// the previous reading's and moves a byte range, and [`Boards::record`] reads the last
/// reading of each run back from the chunk's encoded CSV rows. Copying every reading's
/// fields here instead cost about 7% of ingest CPU (callgrind, 20 boards x 10,000 JSON
/// readings). [`Sightings::push`] takes the fields directly, for tests and benchmarks.
///
/// A run (consecutive readings of one device) is the unit [`Boards::record`] applies:
/// there is no second list to convert it into (issue 22: for a flood of new names every
/// reading is a run, and that conversion was ~30 instructions a name).
#[derive(Debug, Default)]
pub struct Sightings {
    /// Device names, field names and values, back to back.
    text: String,
    fields: Vec<FieldText>,
    runs: Vec<Run>,
    /// Whether a run has rows to read back ([`Sightings::resolve`] has work): never for a
    /// flood of new names, where it would look at every run for nothing.
    read_back: bool,
    /// The connection's budget of new names (kept by [`Sightings::clear`]).
    budget: NameBudget,
}

/// A connection's budget of new device names (`boards.new_name_burst`, then
/// `boards.new_names_per_minute`): a token bucket kept as the time it will next be full
/// (the generic cell rate algorithm), so a name costs an add and a compare in integers,
/// with no refill to compute and no rounding (issue 22: this runs for every name of a
/// flood).
#[derive(Debug, Default)]
struct NameBudget {
    /// Microseconds since the boards' start by which every name taken so far would have
    /// been paid for at the steady rate; at or before now, the bucket is full.
    paid_until_us: u64,
}

impl NameBudget {
    /// Takes one name at `now_ms` if the budget allows it: `interval_us` is the steady
    /// rate's time per name, `burst_us` the burst's worth of it.
    #[inline]
    fn take(&mut self, now_ms: u64, interval_us: u64, burst_us: u64) -> bool {
        let now = now_ms.saturating_mul(1000);
        let paid_until = self.paid_until_us.max(now) + interval_us;
        if paid_until - now > burst_us {
            return false;
        }
        self.paid_until_us = paid_until;
        true
    }
}

/// Consecutive readings of one device in a chunk. They all share the chunk's receive
/// time, so only the last one's values matter; all are counted.
#[derive(Debug)]
struct Run {
    device: (usize, usize),
    /// The fields in [`Sightings::fields`]: the first reading's when the run began, the
    /// last reading's once [`Sightings::resolve`] (or [`Sightings::push`]) has run.
    fields: (usize, usize),
    count: usize,
    /// Where the run's last reading's rows are in the chunk's CSV buffer, when later
    /// noted readings joined the run: its values are read back from there, once.
    read_back: Option<std::ops::Range<usize>>,
}

/// Where one field is in a text buffer ([`Sightings::text`], [`Latest::text`]): its
/// name at `start..name_end`, its value (cut to [`MAX_VALUE_CHARS`]) at `name_end..end`.
#[derive(Debug, Clone, Copy)]
struct FieldText {
    start: u32,
    name_end: u32,
    end: u32,
    number: bool,
}

impl FieldText {
    /// The field's name and value in `text`.
    fn in_text<'t>(&self, text: &'t str) -> (&'t str, &'t str) {
        text[self.start as usize..self.end as usize].split_at((self.name_end - self.start) as usize)
    }

    /// The field's name in `text`, as bytes: compared without the character-boundary
    /// checks of a `str` slice (half of [`Latest::set_in_order`]'s cost).
    fn name_bytes<'t>(&self, text: &'t str) -> &'t [u8] {
        &text.as_bytes()[self.start as usize..self.name_end as usize]
    }

    /// Appends `name` and `value` to `text`; returns where they are. Offsets are
    /// `u32`: a chunk's text and a board's latest values are far below 4 GiB (read
    /// chunks and lines are capped).
    #[inline(always)]
    fn append(text: &mut String, name: &str, value: &str, number: bool) -> FieldText {
        let start = text.len() as u32;
        text.push_str(name);
        let name_end = text.len() as u32;
        text.push_str(value);
        FieldText {
            start,
            name_end,
            end: text.len() as u32,
            number,
        }
    }
}

impl Sightings {
    /// Adds one reading: its device and its fields as `(name, value text, is a number)`.
    ///
    /// A board sends many readings per read chunk when it is busy; they all share one
    /// receive time, so a run of readings from the same device is kept as one entry
    /// (the last reading's fields, and a count). This keeps the hook's cost per chunk,
    /// not per reading, on the ingest path.
    pub fn push<'a>(&mut self, device: &str, fields: impl Iterator<Item = (&'a str, &'a str, bool)>) {
        let same = self.runs.last().is_some_and(|r| self.get(r.device) == device);
        if same {
            let last = self.runs.last_mut().expect("checked");
            last.count += 1;
            last.read_back = None;
            // The device's text is just before its fields': keep it, drop the fields.
            self.text.truncate(last.device.1);
            self.fields.truncate(last.fields.0);
        } else {
            let device = self.add_text(device);
            let first = self.fields.len();
            self.runs.push(Run {
                device,
                fields: (first, first),
                count: 1,
                read_back: None,
            });
        }
        for (name, value, number) in fields {
            self.add_field(name, value, number);
        }
        let end = self.fields.len();
        self.runs.last_mut().expect("pushed above").fields.1 = end;
    }

    /// Notes one reading of `device` with `fields` as `(name, value text, is a number)`,
    /// whose rows the encoder wrote at `rows` of the chunk's CSV buffer. Cheap by design
    /// (it runs for every reading): a reading of the same device as the one before only
    /// moves the range, and the run's values are read back once, after the append; the
    /// first reading of a run copies its fields (once per run, so a board sending many
    /// readings per chunk pays it once, and a stream of new names pays no read-back:
    /// reading 160 bytes of rows back was half of a new name's cost, issue 22).
    #[inline]
    pub fn note<'a>(
        &mut self,
        device: &str,
        rows: std::ops::Range<usize>,
        fields: impl Iterator<Item = (&'a str, &'a str, bool)>,
    ) {
        if let Some(run) = self.runs.last_mut() {
            // In word compares, not a `bcmp` call: a flood's consecutive names differ
            // only at their end (issue 22, sixth round).
            if crate::sink::csv::encode::same(&self.text.as_bytes()[run.device.0..run.device.1], device.as_bytes()) {
                run.count += 1;
                run.read_back = Some(rows);
                self.read_back = true;
                return;
            }
        }
        let device = self.add_text(device);
        let first = self.fields.len();
        for (name, value, number) in fields {
            self.add_field(name, value, number);
        }
        self.runs.push(Run {
            device,
            fields: (first, self.fields.len()),
            count: 1,
            read_back: None,
        });
    }

    /// Whether nothing was noted or pushed since the last [`Sightings::clear`].
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Reads the last readings of the runs that need it back from `csv`, the chunk's
    /// encoded rows (the buffer the ranges given to [`Sightings::note`] point into).
    fn resolve(&mut self, csv: &[u8]) {
        if !std::mem::take(&mut self.read_back) {
            return;
        }
        for i in 0..self.runs.len() {
            let Some(rows) = self.runs[i].read_back.take() else {
                continue;
            };
            let first = self.fields.len();
            let rows = csv.get(rows).and_then(|b| std::str::from_utf8(b).ok());
            for line in rows.unwrap_or("").split_terminator('\n') {
                let mut cells = crate::sink::csv::encode::cells_of(line).skip(2);
                let (Some(name), Some(value), Some(kind)) = (cells.next(), cells.next(), cells.next()) else {
                    continue;
                };
                self.add_field(
                    crate::sink::csv::encode::original(&name),
                    crate::sink::csv::encode::original_value(&value, &kind),
                    kind == "number",
                );
            }
            self.runs[i].fields = (first, self.fields.len());
        }
    }

    pub fn clear(&mut self) {
        self.read_back = false;
        self.text.clear();
        self.fields.clear();
        self.runs.clear();
    }

    /// Inline: it runs for every field of a run's first reading, and the call's register
    /// saves were a fifth of its cost (issue 22, sixth round).
    #[inline(always)]
    fn add_field(&mut self, name: &str, value: &str, number: bool) {
        let field = FieldText::append(&mut self.text, name, truncate(value, MAX_VALUE_CHARS), number);
        self.fields.push(field);
    }

    fn add_text(&mut self, s: &str) -> (usize, usize) {
        let start = self.text.len();
        self.text.push_str(s);
        (start, self.text.len())
    }

    fn get(&self, (a, b): (usize, usize)) -> &str {
        &self.text[a..b]
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A status change found by [`Boards::check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub device: String,
    pub status: Status,
    /// Unix milliseconds of the board's last reading.
    pub last_seen_unix_ms: u64,
    /// Median gap between its recent readings, if it sent at least two.
    pub usual_interval_secs: Option<f64>,
    /// How long it had been quiet (for `silent`) or silent (for `ok`), in seconds.
    pub quiet_secs: f64,
}

/// A board's latest value per field, in first-seen order, at most `boards.max_fields`:
/// names and values back to back in one buffer, kept when the board's place is reused.
/// A new board's first reading is copied in one piece from its run in [`Sightings`]
/// (issue 22: two `String`s per field cost ~140 instructions a field for a new name).
#[derive(Debug, Default)]
struct Latest {
    text: String,
    fields: Vec<FieldText>,
}

impl Latest {
    fn len(&self) -> usize {
        self.fields.len()
    }

    fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn clear(&mut self) {
        self.text.clear();
        self.fields.clear();
    }

    /// Field `i`: (name, value, is a number).
    fn get(&self, i: usize) -> (&str, &str, bool) {
        let f = &self.fields[i];
        let (name, value) = f.in_text(&self.text);
        (name, value, f.number)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        (0..self.len()).map(|i| self.get(i))
    }

    fn name(&self, i: usize) -> &str {
        self.get(i).0
    }

    /// Sets the latest value of field `name`; returns its index, or `None` when the
    /// board has `max_fields` others already.
    fn set(&mut self, name: &str, value: &str, number: bool, max_fields: usize) -> Option<usize> {
        let Some(i) = (0..self.len()).find(|&i| self.name(i) == name) else {
            if self.len() >= max_fields {
                return None;
            }
            self.room(name.len() + value.len(), 1);
            let field = FieldText::append(&mut self.text, name, value, number);
            self.fields.push(field);
            return Some(self.len() - 1);
        };
        let f = self.fields[i];
        let new_end = f.name_end + value.len() as u32;
        self.room(new_end.saturating_sub(f.end) as usize, 0);
        // In place; later fields move by the change in length.
        self.text.replace_range(f.name_end as usize..f.end as usize, value);
        self.fields[i].end = new_end;
        self.fields[i].number = number;
        if new_end != f.end {
            for g in &mut self.fields[i + 1..] {
                g.start = g.start + new_end - f.end;
                g.name_end = g.name_end + new_end - f.end;
                g.end = g.end + new_end - f.end;
            }
        }
        Some(i)
    }

    /// Makes room for `bytes` more of text and `fields` more fields, growing each buffer
    /// to about that (no doubling slack: see [`Boards::memory_bound_bytes`]); the text
    /// gets [`TEXT_HEADROOM`] bytes more, so that a board taking this place with a
    /// slightly longer value does not reallocate (a flood of new names allocated 0.001
    /// times per reading without it, `cargo bench --bench boards`). The checks are
    /// inline; `reserve_exact` is a call even when there is room (~30 instructions).
    fn room(&mut self, bytes: usize, fields: usize) {
        if self.text.capacity() - self.text.len() < bytes {
            self.text.reserve_exact(bytes + TEXT_HEADROOM);
        }
        if self.fields.capacity() - self.fields.len() < fields {
            self.fields.reserve_exact(fields);
        }
    }

    /// Sets one reading's values, `fields` of `text` (contiguous in it), in one piece
    /// when that keeps every rule of [`Latest::set`]: for a new board (no values yet)
    /// when the names are distinct and within `max_fields`; for a known board when they
    /// are its names in its order (the same firmware sends the same fields). Then field
    /// `i` of `fields` is field `i` here, and it returns true; otherwise it sets nothing
    /// and returns false (the caller sets them one by one).
    fn set_in_order(&mut self, text: &str, fields: &[FieldText], max_fields: usize) -> bool {
        let name = |t, f: &FieldText| f.name_bytes(t);
        let same = if self.is_empty() {
            fields.len() <= max_fields
                && (1..fields.len()).all(|i| fields[..i].iter().all(|g| name(text, g) != name(text, &fields[i])))
        } else {
            fields.len() == self.len()
                && fields
                    .iter()
                    .zip(&self.fields)
                    .all(|(f, l)| name(text, f) == name(&self.text, l))
        };
        if !same {
            return false;
        }
        self.clear();
        let (Some(first), Some(last)) = (fields.first(), fields.last()) else {
            return true;
        };
        let whole = &text[first.start as usize..last.end as usize];
        self.room(whole.len(), fields.len());
        self.text.push_str(whole);
        // One room check for all (a `push` each was ~10 instructions a field more).
        let from = first.start;
        self.fields.extend(fields.iter().map(|f| FieldText {
            start: f.start - from,
            name_end: f.name_end - from,
            end: f.end - from,
            number: f.number,
        }));
        true
    }
}

#[derive(Debug)]
struct Series {
    /// The field: an index into the board's latest values (never removed while the board lives).
    field: usize,
    /// (seconds since start, value), oldest first.
    points: VecDeque<(u32, f32)>,
}

/// What a board has only once it has reported twice: its gaps (for its usual interval),
/// its chart rings, and the time of its last row of an earlier run. Kept apart, behind a
/// box made at a board's second reading (or when it is listed from an earlier run), so
/// that the place of a board heard from once is small: a new name at the cap reuses the
/// least recently seen board's place, and in a flood of new names that board was itself
/// heard from once, so its place is three cache lines, none of them here (issue 22,
/// eighth round: the place was five lines, all touched by every new name). A place that
/// held a board with history keeps the box for the next one.
#[derive(Debug, Default)]
struct History {
    gaps: [u32; GAPS],
    gap_count: u8,
    gap_next: u8,
    /// Chart rings, created at the board's second reading (see the module docs).
    charted: bool,
    series: Vec<Series>,
    /// `received_at` of its last CSV row from an earlier run.
    previous_run: Option<Box<str>>,
}

impl History {
    fn clear(&mut self) {
        (self.gap_count, self.gap_next, self.charted) = (0, 0, false);
        self.series.clear();
        self.previous_run = None;
    }

    fn add_gap(&mut self, gap: u64) {
        self.gaps[self.gap_next as usize] = gap.min(u64::from(u32::MAX)) as u32;
        self.gap_next = ((self.gap_next as usize + 1) % GAPS) as u8;
        self.gap_count = (self.gap_count + 1).min(GAPS as u8);
    }
}

#[derive(Debug, Default)]
struct BoardState {
    /// Where its last reading came from, kept as the address and not as its text: a new
    /// name's place is then compared and set without touching a heap buffer (issue 22,
    /// eighth round). `None` for a board of an earlier run.
    peer: Option<SocketAddr>,
    ack: bool,
    /// Milliseconds since start of the last reading; `None` for a board of an earlier run.
    last_ms: Option<u64>,
    readings: u64,
    minute: u64,
    this_minute: u32,
    last_minute: u32,
    latest: Latest,
    silent_since_ms: Option<u64>,
    /// `None` until the board has history (see [`History`]); a cleared one when the
    /// place's earlier board had some.
    history: Option<Box<History>>,
}

impl BoardState {
    /// Turns the board into a new one, keeping its buffers. Only what the first
    /// reading's [`BoardState::heard`] does not set is reset here, and in place: the
    /// peer's text stays for `heard` to compare (a flood from one connection copies it
    /// once, not once per name), the gaps stay behind `gap_count` = 0 (issue 22).
    #[inline(always)]
    fn reset(&mut self) {
        (self.last_ms, self.readings) = (None, 0);
        (self.minute, self.this_minute, self.last_minute) = (0, 0, 0);
        self.latest.clear();
        self.silent_since_ms = None;
        if let Some(h) = &mut self.history {
            h.clear();
        }
    }

    /// The board's history, made on first use (a reused place keeps its box, which
    /// [`BoardState::reset`] cleared).
    fn history(&mut self) -> &mut History {
        self.history.get_or_insert_with(Box::default)
    }

    fn charted(&self) -> bool {
        self.history.as_ref().is_some_and(|h| h.charted)
    }

    fn previous_run(&self) -> Option<&str> {
        self.history.as_ref().and_then(|h| h.previous_run.as_deref())
    }

    /// A new board (or a reused place) after its first `n` readings, received at `now_ms`
    /// from `peer`: what [`BoardState::reset`] and then [`BoardState::heard`] make of it,
    /// in one pass (issue 22, sixth round: a flood of new names does this for every
    /// reading, and the second pass stored every counter twice).
    /// (The reset is inlined, so the values it stores and this overwrites are not stored.)
    fn start(&mut self, peer: SocketAddr, ack: bool, n: u64, now_ms: u64) {
        self.reset();
        self.peer = Some(peer);
        self.ack = ack;
        (self.last_ms, self.readings) = (Some(now_ms), n);
        (self.minute, self.this_minute) = (now_ms / 60_000, n as u32);
    }

    /// Counts `n` readings received at `now_ms` from `peer`; returns the time of the
    /// board's reading before them (`None`: its first in this run of the daemon).
    fn heard(&mut self, peer: SocketAddr, ack: bool, n: u64, now_ms: u64) -> Option<u64> {
        self.peer = Some(peer);
        self.ack = ack;
        let before = self.last_ms;
        if let Some(last) = before {
            let gap = now_ms.saturating_sub(last);
            // Readings of one chunk share a receive time; only real gaps count.
            if gap > 0 {
                self.history().add_gap(gap);
            }
        }
        self.last_ms = Some(now_ms);
        if let Some(h) = &mut self.history {
            h.previous_run = None;
        }
        self.readings += n;
        let minute = now_ms / 60_000;
        if minute == self.minute {
            self.this_minute += n as u32;
        } else {
            self.last_minute = if minute == self.minute + 1 { self.this_minute } else { 0 };
            self.this_minute = n as u32;
            self.minute = minute;
        }
        before
    }

    /// The chart points: the rings, or for a board not yet charted (one reading), the
    /// point its latest values make.
    fn chart(&self, start_secs: u64) -> Vec<FieldSeries> {
        let Some(h) = self.history.as_ref().filter(|h| h.charted) else {
            let Some(last) = self.last_ms else { return Vec::new() };
            let t = start_secs + last / 1000;
            return self
                .latest
                .iter()
                .filter(|&(_, _, number)| number)
                .filter_map(|(name, value, _)| {
                    let v = value.parse::<f64>().ok().filter(|v| v.is_finite())?;
                    Some(FieldSeries {
                        field: name.to_string(),
                        points: vec![(t, v as f32)],
                    })
                })
                .collect();
        };
        h.series
            .iter()
            .map(|s| FieldSeries {
                field: self.latest.name(s.field).to_string(),
                points: s.points.iter().map(|&(t, v)| (start_secs + u64::from(t), v)).collect(),
            })
            .collect()
    }

    fn usual_interval_ms(&self) -> Option<u64> {
        let h = self.history.as_ref()?;
        let n = h.gap_count as usize;
        if n == 0 {
            return None;
        }
        let mut g = h.gaps;
        let g = &mut g[..n];
        g.sort_unstable();
        Some(u64::from(g[n / 2]))
    }

    fn readings_per_min(&self, now_ms: u64) -> f64 {
        let idx = now_ms / 60_000;
        let frac = (now_ms % 60_000) as f64 / 60_000.0;
        if self.last_ms.is_none() {
            0.0
        } else if idx == self.minute {
            f64::from(self.last_minute) * (1.0 - frac) + f64::from(self.this_minute)
        } else if idx == self.minute + 1 {
            f64::from(self.this_minute) * (1.0 - frac)
        } else {
            0.0
        }
    }

    fn status(&self) -> Status {
        match (self.last_ms, self.silent_since_ms) {
            (None, _) => Status::Unseen,
            (Some(_), Some(_)) => Status::Silent,
            (Some(_), None) => Status::Ok,
        }
    }
}

/// One board as `/api/boards` and the dashboard show it.
#[derive(Debug, Clone, Serialize)]
pub struct BoardView {
    pub device: String,
    pub status: Status,
    /// Unix milliseconds of the last reading in this run.
    pub last_seen_unix_ms: Option<u64>,
    /// Seconds since the last reading in this run.
    pub last_seen_secs_ago: Option<f64>,
    /// `received_at` of its last row in the CSV, for boards not seen since start.
    pub last_seen_previous_run: Option<String>,
    pub readings: u64,
    pub readings_per_min: f64,
    pub usual_interval_secs: Option<f64>,
    pub peer: String,
    pub ack: bool,
    /// Latest value of each field (up to `boards.max_fields`), in first-seen order.
    pub latest: Vec<FieldValue>,
    /// Chart points per numeric field: `[unix seconds, value]`, oldest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<FieldSeries>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldValue {
    pub field: String,
    pub value: String,
    pub number: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldSeries {
    pub field: String,
    pub points: Vec<(u64, f32)>,
}

/// One board's `/metrics` series: (device, silent, readings, last seen in unix seconds).
pub type MetricRow = (String, bool, u64, Option<f64>);

/// Totals over all tracked boards.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BoardTotals {
    pub boards: usize,
    pub ok: usize,
    pub silent: usize,
    pub unseen: usize,
    pub readings_per_min: f64,
    pub evicted: u64,
    /// Readings under new names past their connection's budget ([`Boards::untracked_readings`]).
    pub untracked_readings: u64,
}

/// No slot: the end of the recency list.
const NIL: u32 = u32::MAX;

#[derive(Debug, Default)]
struct Slot {
    name: String,
    /// `name`'s hash in [`Inner::index`], kept so that evicting the board needs no new
    /// hash of its name.
    hash: u64,
    board: BoardState,
    /// Neighbours in the recency list: `prev` reported more recently, `next` less.
    prev: u32,
    next: u32,
}

/// The boards in slots, found by name through `index`, and linked in the order they last
/// reported (`head` the most recent, `tail` the least: the one a new name replaces at
/// the cap). Boards of earlier runs are put at the tail end as they are listed.
///
/// The index holds slot numbers and is searched with the hash of a name, made once per
/// look-up with keyed SipHash-1-3, the standard library's algorithm, in one pass
/// ([`sip`]; names come from the network: a flood of chosen names must not collide). A new name is hashed once for its look-up
/// and insertion, and an evicted board leaves by its kept hash; with a
/// `HashMap<String, u32>` a new name cost three SipHash hashes and a second copy of
/// the name (issue 22).
#[derive(Debug)]
struct Inner {
    index: hashbrown::HashTable<u32>,
    key: SipKey,
    slots: Vec<Slot>,
    head: u32,
    tail: u32,
}

impl Default for Inner {
    fn default() -> Inner {
        Inner {
            index: hashbrown::HashTable::new(),
            key: SipKey::random(),
            slots: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }
}

impl Inner {
    /// The keyed SipHash of `name`'s bytes, in one pass (see [`sip`]). Names are
    /// compared in full on a match.
    fn hash(&self, name: &str) -> u64 {
        self.key.hash(name.as_bytes())
    }

    /// The slot of board `name`, whose hash is `hash`.
    #[inline]
    fn find(&self, name: &str, hash: u64) -> Option<u32> {
        let slots = &self.slots;
        self.index.find(hash, |&i| slots[i as usize].name == name).copied()
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.slots[i as usize].prev, self.slots[i as usize].next);
        match prev {
            NIL => self.head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }

    /// Links slot `i` in at the head of the recency list (the most recently seen), or
    /// at the tail with `front == false` (the first to make room).
    fn link(&mut self, i: u32, front: bool) {
        let old = if front { self.head } else { self.tail };
        let slot = &mut self.slots[i as usize];
        (slot.prev, slot.next) = if front { (NIL, old) } else { (old, NIL) };
        match old {
            NIL => (self.head, self.tail) = (i, i),
            o if front => self.slots[o as usize].prev = i,
            o => self.slots[o as usize].next = i,
        }
        if front {
            self.head = i;
        } else {
            self.tail = i;
        }
    }

    /// Marks slot `i` as the most recently seen.
    fn touch(&mut self, i: u32) {
        if self.head != i {
            self.unlink(i);
            self.link(i, true);
        }
    }

    /// The slot of a new board `name` (not in the map): a new slot below `max`, else the
    /// least recently seen board's (returned as evicted). The board in it is not reset
    /// here: the caller starts it ([`BoardState::start`]) or resets it. O(1), and no
    /// allocation when the evicted board's buffers are large enough.
    /// `hash`: `name`'s, from [`Inner::hash`].
    fn insert(&mut self, name: &str, hash: u64, max: usize) -> (u32, bool) {
        if self.slots.len() < max.max(1) {
            let i = self.slots.len() as u32;
            // Room for a somewhat longer name: the next board in this place reuses it.
            let mut room = String::with_capacity(name.len().max(NAME_ROOM));
            room.push_str(name);
            self.slots.push(Slot {
                name: room,
                hash,
                ..Slot::default()
            });
            let slots = &self.slots;
            self.index.insert_unique(hash, i, |&j| slots[j as usize].hash);
            self.link(i, true);
            return (i, false);
        }
        let i = self.tail;
        let slot = &mut self.slots[i as usize];
        if let Ok(entry) = self.index.find_entry(slot.hash, |&j| j == i) {
            entry.remove();
        }
        slot.name.clear();
        slot.name.push_str(name);
        slot.hash = hash;
        let slots = &self.slots;
        self.index.insert_unique(hash, i, |&j| slots[j as usize].hash);
        self.tail_to_head();
        (i, true)
    }

    /// [`Inner::touch`] for the tail (the place a new name takes at the cap), without
    /// the general unlink's and link's cases (issue 22, sixth round).
    fn tail_to_head(&mut self) {
        let (i, old) = (self.tail, self.head);
        if i == old {
            return;
        }
        // The tail is not the head, so it has a previous slot and the head is another.
        let prev = self.slots[i as usize].prev;
        self.slots[prev as usize].next = NIL;
        self.tail = prev;
        (self.slots[i as usize].prev, self.slots[i as usize].next) = (NIL, old);
        self.slots[old as usize].prev = i;
        self.head = i;
    }

    fn boards(&self) -> impl Iterator<Item = (&str, &BoardState)> {
        self.slots.iter().map(|s| (s.name.as_str(), &s.board))
    }
}

/// All boards' live state; see the module docs.
#[derive(Debug)]
pub struct Boards {
    inner: Mutex<Inner>,
    max_boards: usize,
    max_fields: usize,
    chart_points: usize,
    chart_window_secs: u32,
    bucket_secs: u32,
    silent_factor: f64,
    min_silent_ms: u64,
    start: Instant,
    start_unix_ms: u64,
    evicted: AtomicU64,
    new_name_burst: u32,
    new_names_per_minute: u32,
    /// The budget of new names per connection as [`NameBudget::take`] wants it.
    new_name_interval_us: u64,
    new_name_burst_us: u64,
    untracked: AtomicU64,
    untracked_log: RateLimitedLog,
}

impl Boards {
    pub fn new(cfg: &BoardsConfig, alerts: &AlertsConfig) -> Boards {
        let window = cfg.chart_window.as_secs().min(u64::from(u32::MAX)) as u32;
        let name_interval_us = 60_000_000 / u64::from(cfg.new_names_per_minute.max(1));
        Boards {
            inner: Mutex::new(Inner::default()),
            max_boards: cfg.max_boards,
            max_fields: cfg.max_fields,
            chart_points: cfg.chart_points,
            chart_window_secs: window,
            bucket_secs: (window / cfg.chart_points as u32).max(1),
            silent_factor: alerts.silent_factor,
            min_silent_ms: alerts.min_silent.as_millis() as u64,
            start: Instant::now(),
            start_unix_ms: unix_ms(SystemTime::now()),
            evicted: AtomicU64::new(0),
            new_name_burst: cfg.new_name_burst,
            new_names_per_minute: cfg.new_names_per_minute,
            new_name_interval_us: name_interval_us,
            new_name_burst_us: u64::from(cfg.new_name_burst) * name_interval_us,
            untracked: AtomicU64::new(0),
            untracked_log: RateLimitedLog::new(UNTRACKED_LOG_EVERY),
        }
    }

    /// Seconds per chart point (`chart_window_secs / chart_points`, at least 1).
    pub fn bucket_secs(&self) -> u32 {
        self.bucket_secs
    }

    pub fn chart_window_secs(&self) -> u32 {
        self.chart_window_secs
    }

    /// Boards dropped from memory because `boards.max_boards` was reached.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Relaxed)
    }

    /// Readings not tracked because their device name was new and their connection had
    /// used its budget of new names (`boards.new_name_burst`,
    /// `boards.new_names_per_minute`); they are in the CSV all the same.
    pub fn untracked_readings(&self) -> u64 {
        self.untracked.load(Relaxed)
    }

    /// Worst-case bytes for `max_boards` boards each with `max_fields` full rings and
    /// latest values (heap only, including hash-map slack), for the documented bound.
    pub fn memory_bound_bytes(cfg: &BoardsConfig) -> u64 {
        use std::mem::size_of;
        let ring = (cfg.chart_points + 1).next_power_of_two() as u64 * 8 + size_of::<Series>() as u64 + 32;
        // A field's place, its name (typically under 32 bytes) and its value (at most 64),
        // in the board's two latest-value buffers, which grow exactly (no doubling slack).
        let latest = size_of::<FieldText>() as u64 + 32 + MAX_VALUE_CHARS as u64;
        // The slot (the peer's address is in it), its history's box (with the
        // allocator's 16 bytes), its name, the previous run's time, and the allocator's
        // slack on the two latest-value buffers (the text's headroom too).
        let history = size_of::<History>() as u64 + 16;
        let board = size_of::<Slot>() as u64 + history + 64 + 48 + 2 * 32 + TEXT_HEADROOM as u64;
        let per_board = board + cfg.max_fields as u64 * (ring + latest);
        // The index: a slot number and a control byte per bucket (the names live in the
        // slots only); see `index_buckets_bound`.
        cfg.max_boards as u64 * per_board + index_buckets_bound(cfg.max_boards) * (size_of::<u32>() as u64 + 1)
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Plain in-memory state, consistent after every statement that could panic.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the readings of `seen` whose entry in `written` is true (the CSV append
    /// succeeded for them), then clears `seen`. `csv` is the chunk's encoded rows, which
    /// the ranges given to [`Sightings::note`] point into (empty when only [`Sightings::push`] was
    /// used). One lock per call.
    pub fn record(
        &self,
        seen: &mut Sightings,
        csv: &[u8],
        written: impl Iterator<Item = bool>,
        peer: SocketAddr,
        ack: bool,
    ) {
        if !seen.is_empty() {
            seen.resolve(csv);
            self.record_at(seen, written, peer, ack, self.now_ms());
        }
        seen.clear();
    }

    /// [`Boards::record`] at an explicit time (milliseconds since start), for tests and
    /// the memory benchmark.
    #[doc(hidden)]
    pub fn record_at(
        &self,
        seen: &mut Sightings,
        written: impl Iterator<Item = bool>,
        peer: SocketAddr,
        ack: bool,
        now_ms: u64,
    ) {
        let mut inner = self.lock();
        let mut written = written;
        // Added to [`Boards::evicted`] once, after the loop: an atomic add is a locked
        // instruction, a full fence on x86 that waited, for every new name of a flood at
        // the cap, for the cache misses on the reused place before going on (issue 22,
        // seventh round).
        let mut evicted = 0;
        // New names past the connection's budget, and the last of them, logged after the lock.
        let (mut untracked, mut untracked_name) = (0u64, None);
        let Sightings {
            runs,
            fields,
            text,
            budget,
            ..
        } = seen;
        for r in runs.iter() {
            debug_assert!(r.read_back.is_none(), "resolved before");
            // The outcomes of the readings merged into `r`: count the written ones; the
            // values are the last reading's, applied only if that one was written.
            let (mut n, mut last_ok) = (0u64, false);
            if r.count == 1 {
                // A run of one reading (every run of a flood of new names).
                last_ok = written.next().unwrap_or(false);
                n = u64::from(last_ok);
            } else {
                for ok in written.by_ref().take(r.count) {
                    n += u64::from(ok);
                    last_ok = ok;
                }
            }
            if n == 0 {
                continue;
            }
            let device = &text[r.device.0..r.device.1];
            let hash = inner.hash(device);
            let (i, before) = match inner.find(device, hash) {
                Some(i) => {
                    inner.touch(i);
                    (i, inner.slots[i as usize].board.heard(peer, ack, n, now_ms))
                }
                None => {
                    if !budget.take(now_ms, self.new_name_interval_us, self.new_name_burst_us) {
                        untracked += n;
                        untracked_name = Some(r.device);
                        continue;
                    }
                    let (i, reused) = inner.insert(device, hash, self.max_boards);
                    evicted += u64::from(reused);
                    inner.slots[i as usize].board.start(peer, ack, n, now_ms);
                    (i, None)
                }
            };
            let b = &mut inner.slots[i as usize].board;
            if !last_ok {
                continue;
            }
            if !b.charted() {
                if let Some(last) = before {
                    // The second reading: the rings start with the point of the first,
                    // which the latest values still hold.
                    self.start_chart(b, last);
                }
            }
            let fields = &fields[r.fields.0..r.fields.1];
            // A new board's first reading, and a known board's usual one, in one piece.
            let in_order = b.latest.set_in_order(text, fields, self.max_fields);
            if in_order && !b.charted() {
                continue;
            }
            let secs = (now_ms / 1000).min(u64::from(u32::MAX)) as u32;
            for (i, f) in fields.iter().enumerate() {
                let (name, value) = f.in_text(text);
                let field = if in_order {
                    i
                } else {
                    let Some(field) = b.latest.set(name, value, f.number, self.max_fields) else {
                        continue; // over boards.max_fields: not shown (the CSV has it)
                    };
                    field
                };
                if f.number {
                    let Some(h) = b.history.as_mut().filter(|h| h.charted) else {
                        continue;
                    };
                    let Ok(v) = value.parse::<f64>() else { continue };
                    self.add_point(&mut h.series, field, secs, v);
                }
            }
        }
        drop(inner);
        if evicted > 0 {
            self.evicted.fetch_add(evicted, Relaxed);
        }
        if let Some(name) = untracked_name {
            let total = self.untracked.fetch_add(untracked, Relaxed) + untracked;
            let name = &text[name.0..name.1];
            self.untracked_log.log(|_| {
                log::warn!(
                    "{total} readings under new device names were not tracked on the dashboard since start (the latest: {name:?} from {peer}): a connection may bring in boards.new_name_burst = {} new names at once and boards.new_names_per_minute = {} after that. Their readings are in the CSV as usual. A board that puts a counter or the time in its device name should be fixed; for a gateway that forwards many boards over one connection, raise boards.new_name_burst.",
                    self.new_name_burst,
                    self.new_names_per_minute
                )
            });
        }
    }

    /// Creates a board's chart rings from its latest values, read at `last_ms` (what its
    /// first reading would have put in them).
    fn start_chart(&self, b: &mut BoardState, last_ms: u64) {
        let h = b.history.get_or_insert_with(Box::default);
        h.charted = true;
        let secs = (last_ms / 1000).min(u64::from(u32::MAX)) as u32;
        for field in 0..b.latest.len() {
            let (_, value, number) = b.latest.get(field);
            if !number {
                continue;
            }
            if let Ok(v) = value.parse::<f64>() {
                self.add_point(&mut h.series, field, secs, v);
            }
        }
    }

    fn add_point(&self, series: &mut Vec<Series>, field: usize, secs: u32, v: f64) {
        if !v.is_finite() {
            return;
        }
        let idx = match series.iter().position(|s| s.field == field) {
            Some(i) => i,
            None if series.len() < self.max_fields => {
                series.push(Series {
                    field,
                    points: VecDeque::new(),
                });
                series.len() - 1
            }
            None => return,
        };
        let points = &mut series[idx].points;
        match points.back_mut() {
            Some(p) if p.0 / self.bucket_secs == secs / self.bucket_secs => *p = (secs, v as f32),
            _ => points.push_back((secs, v as f32)),
        }
        while points.len() > self.chart_points
            || points
                .front()
                .is_some_and(|p| p.0.saturating_add(self.chart_window_secs) < secs)
        {
            points.pop_front();
        }
    }

    /// Finds boards that went silent or came back since the last call; marks them.
    pub fn check(&self) -> Vec<Change> {
        self.check_at(self.now_ms())
    }

    #[doc(hidden)]
    pub fn check_at(&self, now_ms: u64) -> Vec<Change> {
        let mut changes = Vec::new();
        let mut inner = self.lock();
        for slot in inner.slots.iter_mut() {
            let (device, b) = (&slot.name, &mut slot.board);
            let Some(last) = b.last_ms else { continue };
            let usual = b.usual_interval_ms();
            let limit = usual
                .map_or(0, |u| (u as f64 * self.silent_factor) as u64)
                .max(self.min_silent_ms);
            let quiet = now_ms.saturating_sub(last);
            let change = match b.silent_since_ms {
                None if quiet > limit => {
                    b.silent_since_ms = Some(now_ms);
                    Some((Status::Silent, quiet))
                }
                Some(since) if quiet <= limit => {
                    b.silent_since_ms = None;
                    Some((Status::Ok, last.saturating_sub(since) + limit))
                }
                _ => None,
            };
            if let Some((status, quiet_ms)) = change {
                changes.push(Change {
                    device: device.to_string(),
                    status,
                    last_seen_unix_ms: self.start_unix_ms + last,
                    usual_interval_secs: usual.map(|u| u as f64 / 1000.0),
                    quiet_secs: quiet_ms as f64 / 1000.0,
                });
            }
        }
        changes.sort_by(|a, b| a.device.cmp(&b.device));
        changes
    }

    /// Totals, and the boards sorted by name (at most `limit`), with chart points if
    /// `series`.
    pub fn snapshot(&self, series: bool, limit: usize) -> (BoardTotals, Vec<BoardView>) {
        let now_ms = self.now_ms();
        let inner = self.lock();
        let mut totals = BoardTotals {
            boards: inner.slots.len(),
            evicted: self.evicted(),
            untracked_readings: self.untracked_readings(),
            ..BoardTotals::default()
        };
        let mut names: Vec<(&str, &BoardState)> = Vec::with_capacity(inner.slots.len());
        for (name, b) in inner.boards() {
            match b.status() {
                Status::Ok => totals.ok += 1,
                Status::Silent => totals.silent += 1,
                Status::Unseen => totals.unseen += 1,
            }
            totals.readings_per_min += b.readings_per_min(now_ms);
            names.push((name, b));
        }
        names.sort_unstable_by_key(|(name, _)| *name);
        names.truncate(limit);
        let views = names
            .into_iter()
            .map(|(name, b)| BoardView {
                device: name.to_string(),
                status: b.status(),
                last_seen_unix_ms: b.last_ms.map(|l| self.start_unix_ms + l),
                last_seen_secs_ago: b.last_ms.map(|l| now_ms.saturating_sub(l) as f64 / 1000.0),
                last_seen_previous_run: b.previous_run().map(str::to_string),
                readings: b.readings,
                readings_per_min: (b.readings_per_min(now_ms) * 10.0).round() / 10.0,
                usual_interval_secs: b.usual_interval_ms().map(|u| u as f64 / 1000.0),
                peer: b.peer.map_or_else(String::new, |p| p.to_string()),
                ack: b.ack,
                latest: b
                    .latest
                    .iter()
                    .map(|(name, value, number)| FieldValue {
                        field: name.to_string(),
                        value: value.to_string(),
                        number,
                    })
                    .collect(),
                series: series.then(|| b.chart(self.start_unix_ms / 1000)),
            })
            .collect();
        (totals, views)
    }

    /// Per-board facts for `/metrics`, sorted by name, at most `limit`; the second
    /// value is how many were left out.
    pub fn metric_rows(&self, limit: usize) -> (Vec<MetricRow>, usize) {
        let inner = self.lock();
        let mut names: Vec<(&str, &BoardState)> = inner.boards().collect();
        names.sort_unstable_by_key(|(name, _)| *name);
        let left_out = names.len().saturating_sub(limit);
        let rows = names
            .into_iter()
            .take(limit)
            .map(|(n, b)| {
                (
                    n.to_string(),
                    b.silent_since_ms.is_some(),
                    b.readings,
                    b.last_ms.map(|l| (self.start_unix_ms + l) as f64 / 1000.0),
                )
            })
            .collect();
        (rows, left_out)
    }

    /// Lists the boards found in the last [`PREVIOUS_RUN_TAIL_BYTES`] of an existing CSV
    /// as `never seen since start`, with the time of their last row. Returns how many.
    pub fn load_previous_run(&self, csv_path: &Path) -> std::io::Result<usize> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = match std::fs::File::open(csv_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let from = len.saturating_sub(PREVIOUS_RUN_TAIL_BYTES);
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::new();
        f.take(PREVIOUS_RUN_TAIL_BYTES).read_to_end(&mut buf)?;
        // Start at a row boundary (the header row is skipped by its content below).
        let start = if from == 0 {
            0
        } else {
            memchr::memchr(b'\n', &buf).map_or(buf.len(), |i| i + 1)
        };
        let mut last: HashMap<String, String> = HashMap::new();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&buf[start..]);
        for rec in rdr.records().flatten() {
            if let (Some(at), Some(device)) = (rec.get(0), rec.get(1)) {
                if at != "received_at" && !device.is_empty() {
                    last.insert(device.to_string(), at.to_string());
                }
            }
        }
        let mut inner = self.lock();
        let mut n = 0;
        for (device, at) in last {
            if inner.slots.len() >= self.max_boards {
                break;
            }
            let hash = inner.hash(&device);
            if inner.find(&device, hash).is_some() {
                continue;
            }
            let (i, _) = inner.insert(&device, hash, self.max_boards);
            // Not heard from in this run: first in line to make room for new names.
            inner.unlink(i);
            inner.link(i, false);
            let b = &mut inner.slots[i as usize].board;
            b.reset();
            b.history().previous_run = Some(at.into_boxed_str());
            n += 1;
        }
        Ok(n)
    }
}

/// The most buckets the boards' index has for `max_boards` boards: at most `max_boards`
/// entries at ~7/8 load, rounded up to a power of two, and then doubled once: at the cap
/// every new name removes an entry and adds one, the removals leave tombstones that use
/// up the table's room, and the first time it has none hashbrown grows it (it rehashes in
/// place only below half load). From there on it is under half load and stays that size
/// (found in the sixth round of issue 22: 16,384 -> 32,768 buckets for 10,000 boards
/// during a long flood of new names, 80 KiB more than the bound counted then).
fn index_buckets_bound(max_boards: usize) -> u64 {
    2 * (max_boards.max(1) as u64 * 8 / 7 + 1).next_power_of_two()
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)), 5000);

    fn boards(max_boards: usize, min_silent_secs: u64) -> Boards {
        Boards::new(&boards_config(max_boards), &alerts_config(min_silent_secs))
    }

    /// Small boards for tests; a budget of new names no test reaches unless it sets one.
    fn boards_config(max_boards: usize) -> BoardsConfig {
        BoardsConfig {
            max_boards,
            max_fields: 2,
            chart_window: Duration::from_secs(60),
            chart_points: 6,
            new_name_burst: 1_000_000,
            new_names_per_minute: 60,
        }
    }

    fn alerts_config(min_silent_secs: u64) -> AlertsConfig {
        AlertsConfig {
            silent_factor: 5.0,
            min_silent: Duration::from_secs(min_silent_secs),
            webhook_url: None,
            webhook_queue: 10,
            webhook_timeout: Duration::from_secs(1),
        }
    }

    fn send(b: &Boards, device: &str, fields: &[(&str, &str, bool)], at_ms: u64) {
        let mut s = Sightings::default();
        s.push(device, fields.iter().copied());
        b.record_at(&mut s, std::iter::once(true), PEER, true, at_ms);
    }

    #[test]
    fn noted_readings_are_read_back_from_the_csv_rows_as_the_board_sent_them() {
        use crate::sink::csv::encode::{Encoder, ReadingColumns};
        let b = boards(10, 1);
        let mut s = Sightings::default();
        let mut csv = Vec::new();
        let mut enc = Encoder::default();
        // Two runs of "k" around one of "=evil" (a device name neutralised in the CSV);
        // each run's values are its last reading's, each reading counted.
        type Fields<'a> = &'a [(&'a str, &'a str, &'a str)];
        let readings: [(&str, Fields); 4] = [
            ("k", &[("t", "1", "number"), ("note", "=1+2", "text")]),
            ("k", &[("t", "2", "number"), ("note", "a,\"b\"", "text")]),
            ("=evil", &[("x", "-5", "number")]),
            ("k", &[("t", "3", "number"), ("note", "'q,\"b\"", "text")]),
        ];
        for (device, fields) in readings {
            let start = csv.len();
            let cols = ReadingColumns {
                received_at: "2026-12-01T00:00:00.000Z",
                device,
                peer: "10.0.0.1:5000",
                boot: "",
                seq: None,
                device_time: "",
            };
            cols.encode_rows(fields.iter().copied(), &mut enc, &mut csv);
            // What the board sent; runs of several readings are read back from the rows.
            let sent = fields.iter().map(|(n, v, kind)| (*n, *v, *kind == "number"));
            s.note(device, start..csv.len(), sent);
        }
        assert_eq!(s.runs.len(), 3, "three runs");
        b.record(&mut s, &csv, [true; 4].into_iter(), PEER, false);
        assert!(s.is_empty());
        let (_, views) = b.snapshot(false, 10);
        let view = |d: &str| {
            views
                .iter()
                .find(|v| v.device == d)
                .unwrap_or_else(|| panic!("{d}: {views:?}"))
        };
        let k = view("k");
        assert_eq!(k.readings, 3);
        let latest: Vec<(&str, &str)> = k.latest.iter().map(|f| (f.field.as_str(), f.value.as_str())).collect();
        assert_eq!(latest, [("t", "3"), ("note", "'q,\"b\"")]);
        let evil = view("=evil");
        assert_eq!((evil.readings, evil.latest[0].value.as_str()), (1, "-5"));
        // A chunk whose only run is read back (the flag that lets `resolve` skip a chunk
        // without such runs is set, and cleared with the chunk).
        csv.clear();
        for t in ["5", "6"] {
            let start = csv.len();
            let cols = ReadingColumns {
                received_at: "2026-12-01T00:00:01.000Z",
                device: "k",
                peer: "10.0.0.1:5000",
                boot: "",
                seq: None,
                device_time: "",
            };
            cols.encode_rows([("t", t, "number")], &mut enc, &mut csv);
            s.note("k", start..csv.len(), [("t", t, true)].into_iter());
        }
        b.record(&mut s, &csv, [true; 2].into_iter(), PEER, false);
        let (_, views) = b.snapshot(false, 10);
        let k = views.iter().find(|v| v.device == "k").expect("k");
        assert_eq!((k.readings, k.latest[0].value.as_str()), (5, "6"));
    }

    #[test]
    fn latest_values_rings_and_field_cap() {
        let b = boards(10, 1);
        for i in 0..20u64 {
            let v = i.to_string();
            send(
                &b,
                "k",
                &[("t", &v, true), ("note", "hi", false), ("third", "1", true)],
                i * 10_000,
            );
        }
        let (totals, views) = b.snapshot(true, 10);
        assert_eq!(totals.boards, 1);
        let k = &views[0];
        assert_eq!(k.readings, 20);
        assert_eq!(k.latest.len(), 2, "max_fields = 2: {:?}", k.latest);
        assert_eq!(k.latest[0].value, "19");
        assert_eq!(k.latest[1].value, "hi");
        let series = k.series.as_ref().unwrap();
        assert_eq!(series.len(), 1, "only numeric fields within the cap get a ring");
        let points = &series[0].points;
        // 10 s buckets, 60 s window: the last 6 readings, one per bucket.
        assert_eq!(points.len(), 6, "{points:?}");
        assert_eq!(points.last().unwrap().1, 19.0);
        assert_eq!(k.usual_interval_secs, Some(10.0));
        assert!(k.ack);
        assert_eq!(k.peer, "10.0.0.1:5000");
    }

    #[test]
    fn same_bucket_replaces_the_point() {
        let b = boards(10, 1);
        send(&b, "k", &[("t", "1", true)], 1_000);
        send(&b, "k", &[("t", "2", true)], 2_000);
        let (_, v) = b.snapshot(true, 10);
        assert_eq!(v[0].series.as_ref().unwrap()[0].points.len(), 1);
        assert_eq!(v[0].series.as_ref().unwrap()[0].points[0].1, 2.0);
    }

    #[test]
    fn silent_after_factor_times_usual_interval_and_back() {
        let b = boards(10, 1);
        for i in 0..5 {
            send(&b, "k", &[("t", "1", true)], i * 1000);
        }
        // Usual interval 1 s, factor 5: silent after more than 5 s of quiet.
        assert!(b.check_at(9_000).is_empty());
        let c = b.check_at(9_001);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].status, Status::Silent);
        assert_eq!(c[0].usual_interval_secs, Some(1.0));
        assert!(b.check_at(20_000).is_empty(), "one change, not one per check");
        send(&b, "k", &[("t", "1", true)], 21_000);
        let c = b.check_at(21_100);
        assert_eq!(c[0].status, Status::Ok);
        assert!(b.check_at(21_200).is_empty());
    }

    #[test]
    fn min_silent_secs_is_the_floor() {
        let b = boards(10, 120);
        for i in 0..5 {
            send(&b, "k", &[("t", "1", true)], i * 1000);
        }
        assert!(b.check_at(4_000 + 120_000).is_empty(), "at N: not yet");
        assert_eq!(b.check_at(4_000 + 120_001).len(), 1, "at N+1: silent");
    }

    #[test]
    fn cap_evicts_least_recently_seen() {
        let b = boards(16, 1);
        for i in 0..16u64 {
            send(&b, &format!("d{i:02}"), &[("t", "1", true)], i);
        }
        assert_eq!(b.snapshot(false, 100).0.boards, 16);
        assert_eq!(b.evicted(), 0, "at the cap: nothing evicted");
        // d00 reports again: d01 is now the least recently seen.
        send(&b, "d00", &[("t", "2", true)], 50);
        send(&b, "new", &[("t", "1", true)], 100);
        let (t, v) = b.snapshot(false, 100);
        assert_eq!(b.evicted(), 1, "one over: the least recently seen goes");
        assert_eq!(t.boards, 16);
        assert!(!v.iter().any(|x| x.device == "d01"));
        assert!(v.iter().any(|x| x.device == "d00"));
        let new = v.iter().find(|x| x.device == "new").expect("the new board");
        assert_eq!(
            (new.readings, new.latest.len()),
            (1, 1),
            "a fresh board in d01's place: {new:?}"
        );
        send(&b, "newer", &[("t", "1", true)], 200);
        assert_eq!(b.evicted(), 2);
        assert!(!b.snapshot(false, 100).1.iter().any(|x| x.device == "d02"));
    }

    /// The index stays exact through many evictions: every board's name leads to its own
    /// slot, an evicted name to none, and it holds one entry per slot.
    #[test]
    fn issue_22_the_index_finds_every_board_and_no_evicted_one() {
        let mut inner = Inner::default();
        let name = |n: usize| format!("board-{n}");
        for n in 0..500 {
            let hash = inner.hash(&name(n));
            if inner.find(&name(n), hash).is_none() {
                inner.insert(&name(n), hash, 64);
            }
            // Some boards report again, so eviction does not simply follow arrival order.
            if n % 3 == 0 {
                let again = name(n / 2);
                if let Some(i) = inner.find(&again, inner.hash(&again)) {
                    inner.touch(i);
                }
            }
        }
        assert_eq!(inner.slots.len(), 64);
        assert_eq!(inner.index.len(), 64, "one index entry per slot");
        let mut found = 0;
        for n in 0..500 {
            let hash = inner.hash(&name(n));
            if let Some(i) = inner.find(&name(n), hash) {
                assert_eq!(inner.slots[i as usize].name, name(n));
                assert_eq!(inner.slots[i as usize].hash, hash);
                found += 1;
            }
        }
        assert_eq!(found, 64, "exactly the boards in the slots are found");
        assert!(
            inner.find(&name(0), inner.hash(&name(0))).is_none(),
            "board-0 was evicted"
        );
        assert!(
            inner.find(&name(499), inner.hash(&name(499))).is_some(),
            "the newest stays"
        );
    }

    /// A long flood of new names at the cap grows the index at most to the size that
    /// [`Boards::memory_bound_bytes`] counts (it doubled once, unseen, before the sixth
    /// round of issue 22), for small and larger caps.
    #[test]
    fn issue_22_the_index_stays_within_the_bound_through_a_flood() {
        for max in [1usize, 2, 7, 100, 1_000] {
            let mut inner = Inner::default();
            let mut grown = 0;
            for n in 0..(max * 50 + 5_000) {
                let name = format!("flood-{n}");
                let hash = inner.hash(&name);
                inner.insert(&name, hash, max);
                grown = grown.max(inner.index.capacity());
            }
            assert_eq!(inner.index.len(), max);
            // A table's capacity is below its bucket count.
            assert!(
                (grown as u64) < index_buckets_bound(max),
                "max {max}: capacity {grown}, bound {} buckets",
                index_buckets_bound(max)
            );
        }
    }

    /// The recency list after new names at the cap (the tail moved to the head) and
    /// boards reporting again, against a list of names, walked both ways; caps 1 to 5.
    #[test]
    fn issue_22_the_recency_list_follows_a_model() {
        for cap in 1..=5usize {
            let mut inner = Inner::default();
            let mut model: VecDeque<String> = VecDeque::new(); // most recent first
            for n in 0..60usize {
                // A new name, or (every third step) a known board again.
                let name = if n % 3 == 2 && !model.is_empty() {
                    model[(n * 7) % model.len()].clone()
                } else {
                    format!("b{n}")
                };
                let hash = inner.hash(&name);
                match inner.find(&name, hash) {
                    Some(i) => inner.touch(i),
                    None => {
                        let (_, evicted) = inner.insert(&name, hash, cap);
                        assert_eq!(evicted, model.len() == cap);
                        if evicted {
                            model.pop_back();
                        }
                    }
                }
                model.retain(|m| *m != name);
                model.push_front(name);
                let (mut forward, mut i) = (Vec::new(), inner.head);
                while i != NIL && forward.len() <= cap {
                    forward.push(inner.slots[i as usize].name.clone());
                    i = inner.slots[i as usize].next;
                }
                let (mut backward, mut i) = (Vec::new(), inner.tail);
                while i != NIL && backward.len() <= cap {
                    backward.push(inner.slots[i as usize].name.clone());
                    i = inner.slots[i as usize].prev;
                }
                backward.reverse();
                assert_eq!(forward, Vec::from(model.clone()), "cap {cap}, step {n}");
                assert_eq!(backward, forward, "cap {cap}, step {n}");
            }
        }
    }

    /// Notes one reading of each of `devices` on the connection `s`, then records them.
    fn send_on(b: &Boards, s: &mut Sightings, devices: &[&str], at_ms: u64) {
        for d in devices {
            s.push(d, [("t", "1", true)].into_iter());
        }
        b.record_at(s, std::iter::repeat(true), PEER, true, at_ms);
        s.clear();
    }

    fn tracked(b: &Boards) -> Vec<String> {
        b.snapshot(false, usize::MAX).1.into_iter().map(|v| v.device).collect()
    }

    #[test]
    fn issue_22_a_connection_brings_in_its_burst_of_new_names_then_its_rate() {
        let b = Boards::new(
            &BoardsConfig {
                new_name_burst: 3,
                new_names_per_minute: 60,
                ..boards_config(100)
            },
            &alerts_config(1),
        );
        let mut conn = Sightings::default();
        send_on(&b, &mut conn, &["n1", "n2", "n3", "n4", "n5"], 0);
        assert_eq!(tracked(&b), ["n1", "n2", "n3"], "the burst, in order");
        assert_eq!(b.untracked_readings(), 2);
        // A known name costs no budget and goes on being tracked.
        send_on(&b, &mut conn, &["n1", "n1"], 100);
        assert_eq!(b.snapshot(false, 1).1[0].readings, 3);
        // One name a second at 60 a minute: none after half a second, one after a second.
        send_on(&b, &mut conn, &["n6"], 500);
        send_on(&b, &mut conn, &["n7"], 1000);
        assert_eq!(tracked(&b), ["n1", "n2", "n3", "n7"]);
        assert_eq!(b.untracked_readings(), 3);
        // The refill stops at the burst, however long the connection was quiet.
        send_on(&b, &mut conn, &["a", "b", "c", "d"], 3_600_000);
        assert_eq!(b.untracked_readings(), 4, "three of four after an hour");
        // Another connection has its own budget.
        let mut other = Sightings::default();
        send_on(&b, &mut other, &["o1", "o2"], 3_600_000);
        assert_eq!(b.snapshot(false, 0).0.boards, 9);
        assert_eq!(b.snapshot(false, 0).0.untracked_readings, 4);
    }

    #[test]
    fn issue_22_one_flooding_connection_cannot_push_the_real_boards_out() {
        let b = Boards::new(
            &BoardsConfig {
                new_name_burst: 5,
                ..boards_config(10)
            },
            &alerts_config(1),
        );
        for d in ["real-1", "real-2", "real-3"] {
            send(&b, d, &[("t", "1", true)], 0);
        }
        let mut flood = Sightings::default();
        let names: Vec<String> = (0..1000).map(|i| format!("ts-{i}")).collect();
        for (k, chunk) in names.chunks(100).enumerate() {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            send_on(&b, &mut flood, &chunk, k as u64);
        }
        let now = tracked(&b);
        assert_eq!(now.len(), 8, "{now:?}");
        assert!(now.iter().filter(|d| d.starts_with("real-")).count() == 3, "{now:?}");
        assert_eq!(b.evicted(), 0);
        assert_eq!(b.untracked_readings(), 995);
    }

    #[test]
    fn issue_22_a_reused_place_keeps_nothing_of_the_evicted_board() {
        let b = boards(1, 1);
        for i in 0..3u64 {
            send(&b, "old", &[("t", "5", true), ("note", "x", false)], i * 10_000);
        }
        b.check_at(1_000_000);
        send(&b, "new", &[("h", "7", true)], 2_000_000);
        let (t, v) = b.snapshot(true, 10);
        assert_eq!((t.boards, t.silent, b.evicted()), (1, 0, 1));
        let new = &v[0];
        assert_eq!(
            (new.device.as_str(), new.readings, new.usual_interval_secs),
            ("new", 1, None)
        );
        let latest: Vec<_> = new
            .latest
            .iter()
            .map(|f| (f.field.as_str(), f.value.as_str()))
            .collect();
        assert_eq!(latest, [("h", "7")]);
        let series = new.series.as_ref().unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!((series[0].field.as_str(), series[0].points.len()), ("h", 1));
    }

    #[test]
    fn issue_22_rings_start_at_the_second_reading_with_the_first_ones_point() {
        let b = boards(10, 1);
        send(
            &b,
            "k",
            &[("t", "1", true), ("s", "a", false), ("inf", "1e999", true)],
            1_000,
        );
        let (_, v) = b.snapshot(true, 10);
        let one = v[0].series.clone().unwrap();
        assert_eq!(one.len(), 1, "one point per finite numeric field: {one:?}");
        assert_eq!((one[0].field.as_str(), one[0].points[0].1), ("t", 1.0));
        send(&b, "k", &[("t", "2", true)], 20_000);
        let (_, v) = b.snapshot(true, 10);
        let two = v[0].series.clone().unwrap();
        assert_eq!(two.len(), 1);
        let values: Vec<f32> = two[0].points.iter().map(|p| p.1).collect();
        assert_eq!(values, [1.0, 2.0], "the first reading's point, then the second's");
        assert_eq!(two[0].points[0].0, one[0].points[0].0, "at the first reading's time");
    }

    /// The one-buffer latest values agree with a plain model (a list of owned name,
    /// value and kind, first-seen order, last value wins, at most `max` names) through
    /// values that grow and shrink, repeated names and the cap, whether a board's first
    /// reading is copied in one piece or field by field.
    /// `start` (a new board's first readings in one pass) leaves a board exactly as
    /// `reset` then `heard` did, whatever the place held before, in the same minute
    /// as its last reading, the next one, or later.
    #[test]
    fn issue_22_start_is_reset_then_heard() {
        let used = |peer: SocketAddr| {
            let mut b = BoardState::default();
            for (i, t) in [1_000u64, 61_500, 62_000, 190_000].into_iter().enumerate() {
                b.heard(peer, i % 2 == 0, 3, t);
            }
            b.latest.set("t", "21.5", true, 8);
            b.latest.set("note", "x", false, 8);
            let h = b.history();
            h.series.push(Series {
                field: 0,
                points: VecDeque::from([(1, 21.5)]),
            });
            (h.charted, h.previous_run) = (true, Some("then".into()));
            b.silent_since_ms = Some(5);
            b
        };
        let mut cases = 0;
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for old_peer in [addr("10.0.0.1:5000"), addr("10.0.0.22:50000")] {
            for (peer, ack, n) in [(addr("10.0.0.1:5000"), true, 1), (addr("10.0.0.3:7"), false, 4)] {
                for now_ms in [0, 5, 59_999, 60_000, 190_500, 250_000, 10_000_000] {
                    let (mut a, mut b) = (used(old_peer), used(old_peer));
                    a.start(peer, ack, n, now_ms);
                    b.reset();
                    assert_eq!(b.heard(peer, ack, n, now_ms), None);
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{peer} {now_ms}");
                    assert_eq!(a.peer, Some(peer));
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 28);
    }

    #[test]
    fn issue_22_latest_values_in_one_buffer_agree_with_a_model() {
        let names = ["t", "humidity", "t", "x", "note", "h"];
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        fn next(rng: &mut u64, n: u64) -> usize {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            (*rng % n) as usize
        }
        fn value(rng: &mut u64) -> String {
            let digits = next(rng, 1000);
            format!("{digits}{}", "v".repeat(next(rng, MAX_VALUE_CHARS as u64 + 8)))
        }
        for round in 0..300 {
            let max = 1 + next(&mut rng, 4);
            let mut latest = Latest::default();
            let mut model: Vec<(String, String, bool)> = Vec::new();
            for reading in 0..1 + next(&mut rng, 6) {
                let mut seen = Sightings::default();
                // Often the board's own names in its order (a known board's usual reading).
                let own = !model.is_empty() && next(&mut rng, 2) == 0;
                let count = if own { model.len() } else { next(&mut rng, 5) };
                let fields: Vec<(String, String, bool)> = (0..count)
                    .map(|i| {
                        let name = if own {
                            model[i].0.clone()
                        } else {
                            names[next(&mut rng, names.len() as u64)].to_string()
                        };
                        (name, value(&mut rng), next(&mut rng, 2) == 0)
                    })
                    .collect();
                seen.push("d", fields.iter().map(|(n, v, k)| (n.as_str(), v.as_str(), *k)));
                let seen_fields = &seen.fields[seen.runs[0].fields.0..seen.runs[0].fields.1];
                // Half the rounds try the one-piece path first, as `record` does.
                if round % 2 == 1 || !latest.set_in_order(&seen.text, seen_fields, max) {
                    for f in seen_fields {
                        let (n, v) = f.in_text(&seen.text);
                        latest.set(n, v, f.number, max);
                    }
                }
                for (n, v, k) in &fields {
                    let v = truncate(v, MAX_VALUE_CHARS).to_string();
                    match model.iter().position(|m| m.0 == *n) {
                        Some(i) => (model[i].1, model[i].2) = (v, *k),
                        None if model.len() < max => model.push((n.clone(), v, *k)),
                        None => {}
                    }
                }
                let got: Vec<(String, String, bool)> = latest.iter().map(|(n, v, k)| (n.into(), v.into(), k)).collect();
                assert_eq!(got, model, "round {round}, reading {reading}");
            }
        }
    }

    #[test]
    fn failed_writes_are_not_recorded() {
        let b = boards(10, 1);
        let mut s = Sightings::default();
        s.push("a", [("t", "1", true)].into_iter());
        s.push("b", [("t", "1", true)].into_iter());
        b.record(&mut s, &[], [false, true].into_iter(), PEER, false);
        assert!(s.is_empty());
        let (_, v) = b.snapshot(false, 10);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].device, "b");
    }

    #[test]
    fn previous_run_boards_are_unseen_until_they_report() {
        let csv = crate::sink::csv::tests::tmp("boards-previous-run");
        std::fs::write(
            &csv,
            "received_at,device,field,value,type,peer,boot,seq,device_time\n\
             2026-01-01T00:00:00.000Z,old,t,1,number,p,,,\n\
             2026-01-01T00:00:05.000Z,old,t,2,number,p,,,\n",
        )
        .unwrap();
        let b = boards(10, 1);
        assert_eq!(b.load_previous_run(&csv).unwrap(), 1);
        let (t, v) = b.snapshot(false, 10);
        assert_eq!(t.unseen, 1);
        assert_eq!(v[0].status, Status::Unseen);
        assert_eq!(v[0].last_seen_previous_run.as_deref(), Some("2026-01-01T00:00:05.000Z"));
        assert!(b.check_at(1_000_000).is_empty(), "boards of earlier runs do not alert");
        send(&b, "old", &[("t", "1", true)], 10);
        assert_eq!(b.snapshot(false, 10).1[0].status, Status::Ok);
        let _ = std::fs::remove_dir_all(csv.parent().unwrap());
    }
}
