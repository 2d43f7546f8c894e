//! The one pseudo-random generator of the tests and benches: xorshift64, small and
//! reproducible (a failing run prints its seed). The library's unit tests include this
//! file as `crate::testing` (src/lib.rs); the daemon itself draws randomness from `ring`.

use std::time::{SystemTime, UNIX_EPOCH};

/// A xorshift64 generator started at `seed` (0 is made odd: xorshift never leaves 0).
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    seed |= 1;
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// A generator seeded from the clock, with its seed (print it when a test fails, to run
/// the same case again with [`xorshift`]).
pub fn from_clock() -> (u64, impl FnMut() -> u64) {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    (seed, xorshift(seed))
}
