//! Commands other than `serve`: set-up helpers that run once, talk to the outside world
//! and print what they find. (`simulate`, a board simulator, stays in `simulate.rs`.)

pub mod postgres_check;
pub mod sheets_check;
