//! Keyed SipHash of a board's name (issue 22).
//!
//! The boards' index hashes every new device name. Names come from the network, so the
//! hash is keyed SipHash-1-3, the standard library's `RandomState` algorithm: without the
//! key nobody can choose names that collide (HashDoS). The standard library's hasher is a
//! streaming one (it keeps a partial word between `write` calls, and a `str` adds a second
//! write for its terminator); a name is hashed in one piece, so the `siphasher` crate's
//! one-shot `hash(&[u8])` does it in one pass over whole words. The key is drawn from
//! `RandomState`'s per-process random keys.

use siphasher::sip::SipHasher13;

/// A SipHash-1-3 hasher under a random key.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SipKey(SipHasher13);

impl SipKey {
    /// A fresh random key, derived from the standard library's random hash keys.
    pub(crate) fn random() -> SipKey {
        use std::hash::BuildHasher;
        let state = std::hash::RandomState::new();
        SipKey(SipHasher13::new_with_keys(state.hash_one(0u64), state.hash_one(1u64)))
    }

    /// SipHash-1-3 of `bytes` under this key.
    #[inline]
    pub(crate) fn hash(&self, bytes: &[u8]) -> u64 {
        self.0.hash(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_22_each_index_has_its_own_key() {
        let (a, b) = (SipKey::random(), SipKey::random());
        assert_ne!(a.hash(b"board-1"), b.hash(b"board-1"));
        assert_ne!(a.hash(b"board-1"), a.hash(b"board-2"));
    }
}
