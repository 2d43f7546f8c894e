//! Narrowing a batch Google refused as invalid (400 or 413), so that no row can stop the
//! rows after it (see `worker`): the batch is halved until a single row is refused, which
//! then goes up as a placeholder naming it. The limit holds until the rows of the refused
//! batch are confirmed.

use super::client::ApiError;

#[derive(Default)]
pub struct Narrow {
    /// At most this many rows per batch until `rows_done` reaches the end of the refused
    /// batch.
    limit: Option<(usize, u64)>,
    /// Readable layouts: why Google refused the single row now pending (it goes up as a
    /// placeholder).
    reason: Option<String>,
}

impl Narrow {
    /// The most rows the next batch may hold.
    pub fn max_rows(&self, batch_rows: usize) -> usize {
        self.limit.map_or(batch_rows, |(n, _)| n.min(batch_rows))
    }

    /// Whether a refused batch is being narrowed (a batch is due at once).
    pub fn active(&self) -> bool {
        self.limit.is_some()
    }

    /// Google refused CSV rows `first..first + n` with `e`: half as many rows next time.
    pub fn halve(&mut self, first: u64, n: usize, e: &ApiError) {
        self.limit = Some((n / 2, self.end(first, n)));
        log::debug!(
            "Google Sheets refused CSV rows {first}..{} ({e}); trying {} rows.",
            first + n as u64,
            n / 2
        );
    }

    /// Google refused the single row `first` for `reason`: it goes up as a placeholder.
    pub fn one_row(&mut self, first: u64, reason: String) {
        self.limit = Some((1, self.end(first, 1)));
        self.reason = Some(reason);
    }

    /// Why the pending single row was refused, if it was.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The reason, forgotten (the placeholder went up).
    pub fn take_reason(&mut self) -> Option<String> {
        self.reason.take()
    }

    /// Not the rows' fault (the placeholder was refused too): full batches again.
    pub fn clear(&mut self) {
        self.limit = None;
        self.reason = None;
    }

    /// Rows up to `rows_done` are confirmed: the limit ends with the refused batch.
    pub fn confirmed(&mut self, rows_done: u64) {
        if self.limit.is_some_and(|(_, end)| rows_done >= end) {
            self.limit = None;
        }
    }

    fn end(&self, first: u64, n: usize) -> u64 {
        self.limit
            .map_or(first + n as u64, |(_, end)| end.max(first + n as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_request() -> ApiError {
        ApiError::Status {
            code: 400,
            status: "INVALID_ARGUMENT".into(),
            message: "bad cell".into(),
            retry_after: None,
        }
    }

    #[test]
    fn a_refused_batch_halves_until_one_row_and_the_limit_ends_with_the_batch() {
        let mut n = Narrow::default();
        assert_eq!(n.max_rows(500), 500);
        assert!(!n.active());
        n.halve(10, 8, &bad_request()); // rows 10..18 refused
        assert_eq!(n.max_rows(500), 4);
        n.confirmed(14); // the first half went up
        assert_eq!(n.max_rows(500), 4, "the limit holds until row 18");
        n.halve(14, 4, &bad_request());
        n.halve(14, 2, &bad_request());
        assert_eq!(n.max_rows(500), 1);
        n.one_row(14, "bad cell".into());
        assert_eq!(n.reason(), Some("bad cell"));
        assert_eq!(n.take_reason().as_deref(), Some("bad cell"));
        assert_eq!(n.reason(), None);
        n.confirmed(17);
        assert!(n.active());
        n.confirmed(18);
        assert!(!n.active());
        assert_eq!(n.max_rows(500), 500);
    }

    #[test]
    fn clear_forgets_the_limit_and_the_reason() {
        let mut n = Narrow::default();
        n.one_row(3, "x".into());
        n.clear();
        assert!(!n.active());
        assert_eq!(n.reason(), None);
    }
}
