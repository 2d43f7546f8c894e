//! Commands other than `serve`, one file each: set-up helpers that run once and print
//! what they find or make.

pub mod postgres_check;
pub mod tls;
pub mod token;
