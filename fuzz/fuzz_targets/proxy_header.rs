//! The PROXY protocol header parser (issue 20): total on any bytes, and consistent with
//! how `read_header` uses it on a socket (it parses growing prefixes of what arrived):
//! - a complete header is at most `MAX_HEADER_BYTES` (a v1 line at most 107), is the
//!   same whatever follows it, and every shorter prefix of it is `Incomplete`;
//! - once a prefix is refused, every longer one is refused too (no waiting for bytes
//!   that could never help), and `Incomplete` never holds `MAX_HEADER_BYTES` or more;
//! - the configured version is respected.
//!
//! Input: byte 0 picks the mode (off is not a parser mode: v1, v2, any); the rest is
//! the start of the connection.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sensorlog::server::proxy::{parse, Mode, Parsed, MAX_HEADER_BYTES, V1_MAX_BYTES};

fuzz_target!(|input: &[u8]| {
    let [m, data @ ..] = input else { return };
    let mode = [Mode::V1, Mode::V2, Mode::Any][usize::from(*m % 3)];
    let whole = parse(data, mode);
    match whole {
        Ok(Parsed::Complete { header, len }) => {
            assert!(len <= data.len() && len <= MAX_HEADER_BYTES, "len {len}");
            let v1 = data.starts_with(b"PROXY ");
            assert!(!v1 || len <= V1_MAX_BYTES, "a v1 header of {len} bytes");
            assert!(
                !(v1 && mode == Mode::V2) && !(!v1 && mode == Mode::V1),
                "wrong version accepted"
            );
            assert_eq!(
                parse(&data[..len], mode),
                Ok(Parsed::Complete { header, len }),
                "the header depends on what follows it"
            );
            for k in 0..len {
                let p = parse(&data[..k], mode);
                assert!(
                    matches!(p, Ok(Parsed::Incomplete)) || (k == 0 && p.is_err()),
                    "prefix {k} of a {len}-byte header: {p:?}"
                );
            }
        }
        Ok(Parsed::Incomplete) => {
            assert!(data.len() < MAX_HEADER_BYTES, "incomplete at {} bytes", data.len());
            for k in 1..data.len() {
                assert_eq!(parse(&data[..k], mode), Ok(Parsed::Incomplete), "prefix {k}");
            }
        }
        Err(_) => {
            // Some prefix was refused (or the first bytes already are): no longer one helps.
            if let Some(first_bad) = (1..=data.len()).find(|&k| parse(&data[..k], mode).is_err()) {
                for k in first_bad..=data.len() {
                    assert!(parse(&data[..k], mode).is_err(), "refused at {first_bad}, not at {k}");
                }
            }
        }
    }
});
