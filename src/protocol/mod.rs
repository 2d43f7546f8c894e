//! The wire protocol: newline-delimited readings from the boards.
//!
//! [`framing`] cuts the byte stream into lines under a length cap; [`reading`] turns a
//! line into a greeting or a reading, with [`json`] scanning the JSON format in place and
//! [`shape`] matching a board's next line against the skeleton of its last one. All are
//! pure functions over bytes, so they are
//! unit-tested, property-tested and fuzzed without sockets. The protocol itself, with
//! examples and the acknowledgement extension, is specified in `docs/protocol.md`.

pub mod framing;
pub mod json;
pub mod reading;
pub mod shape;
