//! Test harness shared by every integration test module.
#![allow(dead_code)] // not every test module uses every helper

pub mod bench;
pub mod daemon;
pub mod fake_google;
pub mod haproxy;
pub mod http;
pub mod needs;
pub mod postgres;
pub mod rng;
pub mod sheets;
pub mod tls;

pub use daemon::{Daemon, TestDir};
