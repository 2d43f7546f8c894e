//! `sheets.stall_warn_secs` (issue 18): an upload with rows waiting that confirms nothing
//! for that long logs a WARN saying what it waits for, again at that pace while it lasts,
//! so a stalled sheet is never silent.

use std::time::{Duration, Instant};

pub struct Watch {
    /// The last confirmed batch, or when rows started waiting.
    since: Instant,
    /// The last WARN.
    warned: Option<Instant>,
}

impl Default for Watch {
    fn default() -> Self {
        Watch {
            since: Instant::now(),
            warned: None,
        }
    }
}

impl Watch {
    /// Google confirmed a batch.
    pub fn progress(&mut self) {
        self.since = Instant::now();
        self.warned = None;
    }

    /// `backlog` rows wait; `cause` says for what. Logs when nothing was confirmed for
    /// `after` (and not in the last `after`).
    pub fn check(&mut self, backlog: u64, cause: &str, after: Duration) {
        if backlog == 0 {
            self.progress();
            return;
        }
        let quiet = self.since.elapsed();
        if quiet >= after && self.warned.is_none_or(|t| t.elapsed() >= after) {
            self.warned = Some(Instant::now());
            log::warn!(
                "Google Sheets: nothing confirmed for {} s with {backlog} rows waiting (sheets.stall_warn_secs); waiting for {cause}.",
                quiet.as_secs()
            );
        }
    }
}
