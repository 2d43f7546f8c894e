//! Commands other than `serve` that talk to the outside world and report to the terminal.
//!
//! `serve` lives in `daemon.rs`; `simulate` (a board simulator) stays in `simulate.rs`.

pub mod sheets_check;
