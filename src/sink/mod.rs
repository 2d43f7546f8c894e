//! Where rows go: the CSV file first, then (optionally) Google Sheets.
//!
//! The contract between the two: a row is in the CSV before anything else sees it,
//! and the CSV is the source of truth. The uploader receives rows over a bounded
//! channel as a fast path, but it never relies on it: its progress is a cursor into
//! the CSV (row position and byte offset), so after a restart, an outage or a full
//! channel it reads what it is missing back from the file.

pub mod csv;
pub(crate) mod cursor;
pub mod follower;
pub mod postgres;
pub mod sheets;
