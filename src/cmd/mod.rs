//! Commands other than `serve`: set-up helpers that run once and print what they find.

pub mod postgres_check;
