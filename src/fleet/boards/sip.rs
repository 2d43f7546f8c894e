//! Keyed SipHash of a board's name, in one pass (issue 22).
//!
//! The boards' index hashes every new device name. Names come from the network, so the
//! hash is keyed SipHash, as the standard library's `RandomState` is: without the key
//! nobody can choose names that collide (HashDoS). The standard library's hasher is a
//! streaming one (it keeps a partial word between `write` calls, and a `str` adds a
//! second write for its terminator); a name is hashed in one piece, so here it is done in
//! one pass over whole words: callgrind counted ~150 instructions for a ~20-byte name
//! through `hash_one` (~190 with the terminator) and ~95 here. Same algorithm and rounds
//! (SipHash-1-3); the key is drawn from `RandomState`'s per-process random keys.

/// A random SipHash-1-3 key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SipKey {
    k0: u64,
    k1: u64,
}

impl SipKey {
    /// A fresh random key, derived from the standard library's random hash keys.
    pub(crate) fn random() -> SipKey {
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        SipKey {
            k0: state.hash_one(0u64),
            k1: state.hash_one(1u64),
        }
    }

    /// SipHash-1-3 of `bytes` under this key.
    #[inline]
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        sip::<1, 3>(self.k0, self.k1, bytes)
    }
}

/// SipHash-c-d of `bytes` (Aumasson and Bernstein), `C` rounds per word, `D` at the end.
#[inline]
fn sip<const C: usize, const D: usize>(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        compress::<C>(&mut v, word(w));
    }
    let rest = words.remainder().len();
    // The last 1 to 7 bytes, little-endian: from the message's last whole word when
    // there is one (one load), else byte by byte.
    let tail = match rest {
        0 => 0,
        _ if bytes.len() >= 8 => word(&bytes[bytes.len() - 8..]) >> (8 * (8 - rest)),
        _ => bytes.iter().rev().fold(0, |m, &b| (m << 8) | u64::from(b)),
    };
    compress::<C>(&mut v, tail | ((bytes.len() as u64) << 56));
    v[2] ^= 0xff;
    for _ in 0..D {
        round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

#[inline(always)]
fn compress<const C: usize>(v: &mut [u64; 4], m: u64) {
    v[3] ^= m;
    for _ in 0..C {
        round(v);
    }
    v[0] ^= m;
}

#[inline(always)]
fn round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same code with SipHash-2-4's rounds agrees with the standard library's
    /// SipHash-2-4 (deprecated as a public hasher, still the reference implementation)
    /// for every length around the word boundaries, under several keys.
    #[test]
    #[allow(deprecated)]
    fn issue_22_one_pass_siphash_agrees_with_the_standard_library() {
        use std::hash::{Hasher, SipHasher};
        let message: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
        for (k0, k1) in [(0, 0), (0x0706050403020100, 0x0f0e0d0c0b0a0908), (u64::MAX, 12345)] {
            for len in 0..=message.len() {
                let bytes = &message[..len];
                let mut reference = SipHasher::new_with_keys(k0, k1);
                reference.write(bytes);
                assert_eq!(sip::<2, 4>(k0, k1, bytes), reference.finish(), "length {len}");
            }
        }
        // The paper's first test vector: key 00..0f, empty message.
        assert_eq!(
            sip::<2, 4>(0x0706050403020100, 0x0f0e0d0c0b0a0908, b""),
            0x726fdb47dd0e0e31
        );
    }

    #[test]
    fn issue_22_each_index_has_its_own_key() {
        let (a, b) = (SipKey::random(), SipKey::random());
        assert_ne!(a.hash(b"board-1"), b.hash(b"board-1"));
        assert_ne!(a.hash(b"board-1"), a.hash(b"board-2"));
    }
}
