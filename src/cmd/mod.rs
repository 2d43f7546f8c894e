//! Commands other than `serve`, one file each: set-up helpers that run once, talk to the
//! outside world and print what they find or make. (`simulate`, a board simulator, stays
//! in `simulate.rs`.)

pub mod postgres_check;
pub mod sheets_check;
pub mod tls;
pub mod token;
