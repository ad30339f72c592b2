//! Layer 1: key hashing. No Python, no tables.
//!
//! A *key* is a UTF-8 string such as `"extensibletype.array.v1:acquire"`; its
//! *id* is the first 8 bytes of `md5(key)` read as a little-endian `u64`
//! (docs/spec.md §1, fixed). Id 0 is reserved and never names a slot.
//!
//! [`prehash`] hashes at run time with the `md-5` crate; [`prehash_const`]
//! is a `const fn` so that consumers can bake ids into their code:
//!
//! ```
//! use extensibletype_core::{id, prehash, prehash_const};
//! const ACQUIRE: u64 = prehash_const("extensibletype.array.v1:acquire");
//! assert_eq!(ACQUIRE, prehash("extensibletype.array.v1:acquire"));
//! assert_eq!(id!("extensibletype.array.v1:acquire"), ACQUIRE);
//! ```

use md5::{Digest, Md5};

/// The id of `key`: the first 8 bytes of `md5(key)` as a little-endian `u64`.
///
/// This is the fixed prehash of docs/spec.md §1. The result may (with probability
/// 2^-64) be 0, which is reserved; such a key cannot be registered by name.
///
/// ```
/// assert_eq!(extensibletype_core::prehash("a"), 0xa8b6f1c0b975c10c);
/// ```
pub fn prehash(key: &str) -> u64 {
    prehash_bytes(key.as_bytes())
}

/// [`prehash`] for keys given as raw bytes (the Python API accepts `bytes`).
pub fn prehash_bytes(key: &[u8]) -> u64 {
    let digest = Md5::digest(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// [`prehash`] as a `const fn`, for ids computed at compile time.
///
/// Same result as [`prehash`] for every input (checked by property tests);
/// slower at run time, so prefer [`prehash`] there.
pub const fn prehash_const(key: &str) -> u64 {
    let d = md5_const(key.as_bytes());
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// [`prehash_const`] of the concatenation of `parts` (no buffer needed):
/// `prehash_const_parts(&[b"geom.Shape.v1:area", b"#", b"f64(O)"])` equals
/// `prehash_const("geom.Shape.v1:area#f64(O)")`.
pub const fn prehash_const_parts(parts: &[&[u8]]) -> u64 {
    let d = md5_const_parts(parts);
    u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// The compile-time id of a key literal: `id!("ns.iface.v1:member")`.
#[macro_export]
macro_rules! id {
    ($key:expr) => {{
        const ID: u64 = $crate::prehash_const($key);
        ID
    }};
}

// RFC 1321 constants: per-round shift amounts and K[i] = floor(|sin(i + 1)| * 2^32).
const SHIFTS: [u32; 64] = [
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, //
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, //
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, //
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
];
const SINES: [u32; 64] = [
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
];

/// Byte `i` of the concatenation of `parts` (`i` < their total length).
const fn part_byte(parts: &[&[u8]], mut i: usize) -> u8 {
    let mut p = 0;
    while i >= parts[p].len() {
        i -= parts[p].len();
        p += 1;
    }
    parts[p][i]
}

/// Byte `i` of the MD5-padded message (the concatenation of `parts`, 0x80,
/// zeros, bit length LE).
const fn padded_byte(parts: &[&[u8]], n: usize, padded_len: usize, i: usize) -> u8 {
    if i < n {
        part_byte(parts, i)
    } else if i == n {
        0x80
    } else if i >= padded_len - 8 {
        let bits = (n as u64).wrapping_mul(8);
        (bits >> (8 * (i - (padded_len - 8)))) as u8
    } else {
        0
    }
}

/// MD5 of `msg` in a `const` context (RFC 1321).
const fn md5_const(msg: &[u8]) -> [u8; 16] {
    md5_const_parts(&[msg])
}

/// MD5 of the concatenation of `parts` in a `const` context.
const fn md5_const_parts(parts: &[&[u8]]) -> [u8; 16] {
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        n += parts[p].len();
        p += 1;
    }
    let padded_len = (n + 8) / 64 * 64 + 64;
    let mut state: [u32; 4] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
    let mut block = 0;
    while block < padded_len {
        let mut m = [0u32; 16];
        let mut w = 0;
        while w < 16 {
            let at = block + 4 * w;
            m[w] = u32::from_le_bytes([
                padded_byte(parts, n, padded_len, at),
                padded_byte(parts, n, padded_len, at + 1),
                padded_byte(parts, n, padded_len, at + 2),
                padded_byte(parts, n, padded_len, at + 3),
            ]);
            w += 1;
        }
        let [mut a, mut b, mut c, mut d] = state;
        let mut i = 0;
        while i < 64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let rotated = a
                .wrapping_add(f)
                .wrapping_add(SINES[i])
                .wrapping_add(m[g])
                .rotate_left(SHIFTS[i]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(rotated);
            i += 1;
        }
        state[0] = state[0].wrapping_add(a);
        state[1] = state[1].wrapping_add(b);
        state[2] = state[2].wrapping_add(c);
        state[3] = state[3].wrapping_add(d);
        block += 64;
    }
    let mut out = [0u8; 16];
    let mut j = 0;
    while j < 4 {
        let bytes = state[j].to_le_bytes();
        out[4 * j] = bytes[0];
        out[4 * j + 1] = bytes[1];
        out[4 * j + 2] = bytes[2];
        out[4 * j + 3] = bytes[3];
        j += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors of docs/spec.md §1.
    const VECTORS: [(&str, u64); 4] = [
        ("", 0x04b2008fd98c1dd4),
        ("a", 0xa8b6f1c0b975c10c),
        ("extensibletype.array.v1:data", 0xb598a1668c53afd9),
        ("numpy.ndarray.shape", 0x7780a86e9080477a),
    ];

    #[test]
    fn spec_vectors() {
        for (key, want) in VECTORS {
            assert_eq!(prehash(key), want, "prehash({key:?})");
            assert_eq!(prehash_const(key), want, "prehash_const({key:?})");
        }
    }

    #[test]
    fn const_matches_at_block_boundaries() {
        // Padding edge cases: lengths around 55/56/63/64/119/120/128.
        let long = "x".repeat(200);
        for len in 0..=200 {
            let key = &long[..len];
            assert_eq!(prehash_const(key), prehash(key), "length {len}");
        }
    }

    #[test]
    fn const_parts_match() {
        let long = "y".repeat(150);
        for cut in [0, 1, 55, 56, 64, 100, 150] {
            let (a, b) = long.split_at(cut);
            assert_eq!(prehash_const_parts(&[a.as_bytes(), b"", b.as_bytes()]), prehash(&long), "cut {cut}");
        }
        const AREA: u64 = prehash_const_parts(&[b"geom.Shape.v1:area", b"#", b"f64(O)"]);
        assert_eq!(AREA, prehash("geom.Shape.v1:area#f64(O)"));
    }

    #[test]
    fn id_macro_is_const() {
        const DATA: u64 = id!("extensibletype.array.v1:data");
        assert_eq!(DATA, 0xb598a1668c53afd9);
    }
}
