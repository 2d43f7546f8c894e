//! Recognises readings a board sends again after a reconnect.
//!
//! A board that asks for acknowledgements keeps each reading until it sees `ACK
//! <seq>` and resends what was not acknowledged. If the daemon had written the
//! reading but the ACK was lost (connection dropped, daemon killed), the resend must
//! not become a second row. The board's `seq` increases within one power-on, which
//! the board names with its `boot` id, so remembering the highest `seq` written per
//! `(device, boot)` is enough: anything at or below it is a duplicate.
//!
//! Readings without a `boot` are never duplicates: their `seq` restarts at every
//! reboot and could not tell a resend from a new reading. The memory is rebuilt
//! from the CSV at start-up (see `sink::csv`), so it survives restarts and crashes.
//! It grows by one entry per `(device, boot)`, i.e. per board power-on.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Dedup {
    /// device -> boot -> highest seq written.
    seen: HashMap<String, HashMap<String, u64>>,
}

/// The identity of an acknowledged-mode reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub device: String,
    pub boot: String,
    pub seq: u64,
}

impl Dedup {
    pub fn is_duplicate(&self, device: &str, boot: &str, seq: u64) -> bool {
        self.seen
            .get(device)
            .and_then(|b| b.get(boot))
            .is_some_and(|&max| seq <= max)
    }

    pub fn record(&mut self, device: &str, boot: &str, seq: u64) {
        let boots = match self.seen.get_mut(device) {
            Some(b) => b,
            None => self.seen.entry(device.to_string()).or_default(),
        };
        match boots.get_mut(boot) {
            Some(max) => *max = (*max).max(seq),
            None => {
                boots.insert(boot.to_string(), seq);
            }
        }
    }

    /// Number of (device, boot) pairs remembered.
    pub fn len(&self) -> usize {
        self.seen.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn highest_seq_per_device_and_boot() {
        let mut d = Dedup::default();
        assert!(!d.is_duplicate("a", "b1", 0));
        d.record("a", "b1", 5);
        d.record("a", "b1", 3);
        assert!(d.is_duplicate("a", "b1", 5));
        assert!(d.is_duplicate("a", "b1", 1));
        assert!(!d.is_duplicate("a", "b1", 6));
        assert!(!d.is_duplicate("a", "b2", 1), "a new boot starts afresh");
        assert!(!d.is_duplicate("z", "b1", 1), "another device is independent");
        assert_eq!(d.len(), 1);
    }
}
