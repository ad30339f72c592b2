//! The hasher of the runtime's own `HashMap`s and `HashSet`s.
//!
//! Their keys are slot ids (already uniformly random: an md5 prefix of the
//! key string, docs/spec.md), type and object addresses (aligned, so their
//! low bits are constant), small tuples of those, and key strings. std's
//! default SipHash-1-3 costs ~20 ns per u64 key and was about half of the
//! metaclass's own instructions per class statement; this is one 64×64→128
//! multiply per word, folded (high half XOR low half), so that every input
//! bit reaches the low bits `HashMap` indexes with and the high bits it tags
//! with (an aligned address multiplied without the fold would leave its low
//! bits zero and use a sixteenth of the buckets).
//!
//! Hash flooding: SipHash's keyed randomness defends maps filled from
//! untrusted input. Here the keys come from code that registers slots (key
//! strings its author chose, their md5-derived ids, addresses of its types):
//! someone able to pick them could search for keys whose ids collide in a
//! map's low bits, but a collision only costs time (a longer probe), never
//! a wrong answer — maps compare whole keys, and nothing here bounds a
//! probe. A process that registers slots under keys from untrusted input
//! would be slowed, not misled.

use core::hash::{BuildHasherDefault, Hasher};
use std::collections::{HashMap, HashSet};

/// 2⁶⁴/φ (odd): the multiplier of Fibonacci hashing.
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The high and low halves of `a × b`, XORed.
#[inline]
fn folded_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A multiply-and-fold [`Hasher`] for ids, addresses and short strings
/// (see the module documentation for why, and why flooding only costs time).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            // The length in the top byte: "a" and "a\0" differ.
            self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = folded_mul(self.0 ^ n, K);
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The [`core::hash::BuildHasher`] of the runtime's maps (stateless).
pub(crate) type IdBuild = BuildHasherDefault<IdHasher>;

/// A `HashMap` hashed with [`IdHasher`].
pub(crate) type IdMap<K, V> = HashMap<K, V, IdBuild>;

/// A `HashSet` hashed with [`IdHasher`].
pub(crate) type IdSet<K> = HashSet<K, IdBuild>;

#[cfg(test)]
mod tests {
    use super::*;
    use core::hash::BuildHasher;

    /// Nearby aligned addresses spread over the low bits a small map
    /// indexes with, and over the high bits it tags with.
    #[test]
    fn aligned_addresses_spread() {
        let build = IdBuild::default();
        let hashes: Vec<u64> = (0..1024usize).map(|i| build.hash_one(0x7f00_0000_0000usize + 16 * i)).collect();
        let low: HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
        let high: HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 500, "{} distinct low 10-bit buckets of 1024 (64 without the fold)", low.len());
        assert_eq!(high.len(), 128);
    }

    /// Strings differing in one byte, or only in length, hash apart.
    #[test]
    fn strings_differ() {
        let build = IdBuild::default();
        assert_ne!(build.hash_one("area"), build.hash_one("aera"));
        assert_ne!(build.hash_one(&b"a"[..]), build.hash_one(&b"a\0"[..]));
        assert_ne!(build.hash_one("test.mask.v1:area#f64(O)"), build.hash_one("test.mask.v1:area#f64(P)"));
    }

    /// Maps work as maps: every id inserted is found, with its value.
    #[test]
    fn map_round_trip() {
        let mut map: IdMap<u64, usize> = IdMap::default();
        let ids: Vec<u64> = (0..5000u64).map(|i| crate::prehash_bytes(format!("k{i}").as_bytes())).collect();
        for (i, &id) in ids.iter().enumerate() {
            map.insert(id, i);
        }
        assert!(ids.iter().enumerate().all(|(i, id)| map.get(id) == Some(&i)));
    }
}
