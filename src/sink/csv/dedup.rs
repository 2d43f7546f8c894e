//! The resend memory: recognises a reading a board sends again after a lost ACK.
//!
//! A board that asks for acknowledgements keeps each reading until it sees `ACK <seq>`
//! and resends what was not acknowledged, so the daemon may receive a reading it has
//! already written. The rule, and why:
//!
//! - **A resend is a reading whose exact `(device, boot, seq)` has been written, with
//!   the same content.** Only then is it answered `ACK` without a second row. The old
//!   rule, "anything at or below the highest seq written", let one forged line with
//!   `seq=18446744073709551615` swallow every later reading of that boot.
//! - **Same key, different content is written**, and reported: a board that reused a
//!   boot id (no entropy at power-on) or a glitch. Losing a reading is worse than a
//!   suspicious row, so the row goes in and a WARN names the device and boot.
//! - **Content** is a 64-bit hash of the reading's field names, values, types and
//!   device time: what the board sent, not when it arrived or from which port.
//!
//! # Bounded by design
//! Keys come from the network, so the memory is capped three ways (all in config):
//! - per boot, only the last `dedup.window_seqs` seqs written are kept (a board can only
//!   resend what its own buffer still holds: 64 readings in the bundled firmware);
//! - per board, only the current and the previous boot;
//! - at most `dedup.max_boards` boards; past that, the least recently seen tenth are
//!   forgotten in one sweep (amortised O(log n) per new board).
//!
//! A forgotten key only means that a late resend is written twice: never that a reading
//! is dropped. Worst case memory is about `max_boards × (2 × window_seqs × 16 B + 300 B)`,
//! 44 MB at the defaults, and only with 10,000 boards all sending with acknowledgements.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::sink::csv::settings::DedupConfig;

/// The identity of an acknowledged-mode reading, and a hash of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub device: String,
    pub boot: String,
    pub seq: u64,
    pub content: u64,
}

/// What the memory says about a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not written before (as far as the window reaches): write it.
    New,
    /// Written before with the same content: acknowledge, do not write.
    Resend,
    /// Written before with other content: write it and warn.
    Conflict,
}

/// Hashes a reading's content: `(field, value, type)` of each row, and the device time.
/// Start-up recovery computes the same hash incrementally (`recover.rs`): keep the two
/// in step (a unit test there checks it).
pub fn content_hash<'a>(rows: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>, device_time: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for (field, value, kind) in rows {
        (field, value, kind).hash(&mut h);
    }
    device_time.hash(&mut h);
    h.finish()
}

#[derive(Debug)]
struct Boot {
    id: Box<str>,
    /// (seq, content) of the last `window` readings written, oldest first.
    written: VecDeque<(u64, u64)>,
    max_seq: u64,
}

impl Boot {
    fn new(id: &str) -> Boot {
        Boot {
            id: id.into(),
            written: VecDeque::new(),
            max_seq: 0,
        }
    }

    fn find(&self, seq: u64) -> Option<u64> {
        if self.written.is_empty() || seq > self.max_seq {
            return None; // the common case: a new reading, above everything written
        }
        self.written.iter().rev().find(|(s, _)| *s == seq).map(|(_, c)| *c)
    }
}

#[derive(Debug)]
struct DeviceBoots {
    current: Boot,
    previous: Option<Boot>,
    last_seen: u64,
}

#[derive(Debug)]
pub struct Dedup {
    limits: DedupConfig,
    boards: HashMap<Box<str>, DeviceBoots>,
    clock: u64,
    forgotten: u64,
}

impl Default for Dedup {
    fn default() -> Dedup {
        Dedup::new(DedupConfig::default())
    }
}

impl Dedup {
    pub fn new(limits: DedupConfig) -> Dedup {
        Dedup {
            limits,
            boards: HashMap::new(),
            clock: 0,
            forgotten: 0,
        }
    }

    pub fn check(&self, key: &Key) -> Verdict {
        let Some(board) = self.boards.get(key.device.as_str()) else {
            return Verdict::New;
        };
        let boot = if *board.current.id == key.boot {
            &board.current
        } else {
            match &board.previous {
                Some(p) if *p.id == key.boot => p,
                _ => return Verdict::New,
            }
        };
        match boot.find(key.seq) {
            None => Verdict::New,
            Some(c) if c == key.content => Verdict::Resend,
            Some(_) => Verdict::Conflict,
        }
    }

    /// Remembers that `key` was written (call only once it is in the file).
    pub fn record(&mut self, key: &Key) {
        self.clock += 1;
        let now = self.clock;
        let window = self.limits.window_seqs;
        let board = match self.boards.get_mut(key.device.as_str()) {
            Some(b) => b,
            None => {
                if self.boards.len() >= self.limits.max_boards {
                    self.forget_least_recent();
                }
                self.boards.entry(key.device.as_str().into()).or_insert(DeviceBoots {
                    current: Boot::new(&key.boot),
                    previous: None,
                    last_seen: now,
                })
            }
        };
        board.last_seen = now;
        if *board.current.id != key.boot {
            match board.previous.take() {
                // An old boot's straggler: back into its own window, order unchanged.
                Some(p) if *p.id == key.boot => {
                    let mut p = p;
                    push(&mut p, key, window);
                    board.previous = Some(p);
                    return;
                }
                _ => {
                    let old = std::mem::replace(&mut board.current, Boot::new(&key.boot));
                    board.previous = Some(old);
                }
            }
        }
        push(&mut board.current, key, window);
    }

    /// Forgets the least recently seen tenth of the boards (at least one).
    fn forget_least_recent(&mut self) {
        let mut seen: Vec<u64> = self.boards.values().map(|b| b.last_seen).collect();
        let n = (seen.len() / 10).max(1);
        let (_, cutoff, _) = seen.select_nth_unstable(n - 1);
        let cutoff = *cutoff;
        let before = self.boards.len();
        self.boards.retain(|_, b| b.last_seen > cutoff);
        self.forgotten += (before - self.boards.len()) as u64;
    }

    /// Boards remembered.
    pub fn len(&self) -> usize {
        self.boards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.boards.is_empty()
    }

    /// Boards forgotten so far to stay under `dedup.max_boards`.
    pub fn forgotten(&self) -> u64 {
        self.forgotten
    }
}

fn push(boot: &mut Boot, key: &Key, window: usize) {
    if boot.written.len() >= window {
        boot.written.pop_front();
    }
    boot.written.push_back((key.seq, key.content));
    // At least the largest seq in the window (possibly one that has left it): above
    // it, nothing can be a resend, and the scan is skipped.
    boot.max_seq = boot.max_seq.max(key.seq);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(device: &str, boot: &str, seq: u64, content: u64) -> Key {
        Key {
            device: device.into(),
            boot: boot.into(),
            seq,
            content,
        }
    }

    fn limits(max_boards: usize, window_seqs: usize) -> DedupConfig {
        DedupConfig {
            max_boards,
            window_seqs,
            ..DedupConfig::default()
        }
    }

    #[test]
    fn only_exactly_what_was_written_is_a_resend() {
        let mut d = Dedup::default();
        let k = key("kitchen", "3f9a1c07", u64::MAX, 1);
        assert_eq!(d.check(&k), Verdict::New);
        d.record(&k);
        assert_eq!(d.check(&k), Verdict::Resend);
        for seq in [0, 1, 2, 100] {
            assert_eq!(d.check(&key("kitchen", "3f9a1c07", seq, 1)), Verdict::New, "seq {seq}");
        }
        assert_eq!(d.check(&key("kitchen", "3f9a1c07", u64::MAX, 2)), Verdict::Conflict);
        assert_eq!(d.check(&key("kitchen", "other", u64::MAX, 1)), Verdict::New);
        assert_eq!(d.check(&key("hall", "3f9a1c07", u64::MAX, 1)), Verdict::New);
    }

    #[test]
    fn the_window_keeps_the_last_n_seqs_of_the_current_and_previous_boot() {
        let mut d = Dedup::new(limits(10, 4));
        for seq in 1..=6 {
            d.record(&key("a", "b1", seq, seq));
        }
        assert_eq!(d.check(&key("a", "b1", 2, 2)), Verdict::New, "fell out of the window");
        assert_eq!(d.check(&key("a", "b1", 3, 3)), Verdict::Resend);
        assert_eq!(d.check(&key("a", "b1", 6, 6)), Verdict::Resend);
        d.record(&key("a", "b2", 1, 9));
        assert_eq!(d.check(&key("a", "b1", 6, 6)), Verdict::Resend, "previous boot kept");
        d.record(&key("a", "b3", 1, 9));
        assert_eq!(d.check(&key("a", "b1", 6, 6)), Verdict::New, "only one previous boot");
        assert_eq!(d.check(&key("a", "b2", 1, 9)), Verdict::Resend);
    }

    #[test]
    fn boards_past_the_cap_forget_the_least_recently_seen() {
        let mut d = Dedup::new(limits(100, 4));
        for i in 0..100 {
            d.record(&key(&format!("b{i}"), "x", 1, 1));
        }
        d.record(&key("b0", "x", 2, 2)); // b0 is now the most recent
        for i in 100..1000 {
            d.record(&key(&format!("b{i}"), "x", 1, 1));
            assert!(d.len() <= 100);
        }
        assert_eq!(d.check(&key("b999", "x", 1, 1)), Verdict::Resend);
        assert_eq!(d.check(&key("b1", "x", 1, 1)), Verdict::New, "forgotten");
        assert!(d.forgotten() >= 900);
    }
}
