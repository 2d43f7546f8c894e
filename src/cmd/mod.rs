//! Commands other than `serve`, one file each.

pub mod tls;
pub mod token;
