//! Helpers for unit tests.

/// A small deterministic xorshift generator: reproducible pseudo-random inputs for
/// property-style tests without a dependency.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    seed |= 1;
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
