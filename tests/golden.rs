//! The golden vectors of `tests/golden/` (docs/spec.md sections 1 and 2),
//! checked from Rust: every key's id (runtime and `const` prehash), the exact
//! bytes [`Table::build`] gives for each fixed id set, and the ABI v1 lookup
//! ([`raw_lookup`]) over the golden bytes themselves.
//!
//! Regenerate the files with `cargo run --example golden`.

use core::ffi::c_void;
use std::path::Path;

use extensibletype::table::raw_lookup;
use extensibletype::{prehash, prehash_const, RawTable, Table};

fn golden(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unquote(s: &str) -> String {
    let inner = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).expect("quoted key");
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' { chars.next().expect("escape") } else { c });
    }
    out
}

fn hex_u64(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

fn ids() -> Vec<(String, u64)> {
    golden("ids.txt")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (id, key) = l.split_once(' ').expect("id key");
            (unquote(key), hex_u64(id))
        })
        .collect()
}

#[derive(Clone)]
struct Golden {
    name: String,
    entries: Vec<(u64, usize)>,
    bytes: Vec<u8>,
    /// What the runtime publishes (`Table::build_published`), when not `bytes`.
    published: Option<Vec<u8>>,
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

fn tables() -> Vec<Golden> {
    let mut out: Vec<Golden> = Vec::new();
    for line in golden("tables.txt").lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Golden { name: name.into(), entries: vec![], bytes: vec![], published: None });
        } else if let Some(rest) = line.strip_prefix("entries ") {
            let set = out.last_mut().expect("[name] first");
            for pair in rest.split(' ') {
                let (id, ptr) = pair.split_once(':').expect("id:ptr");
                set.entries.push((hex_u64(id), hex_u64(ptr) as usize));
            }
        } else if let Some(hex) = line.strip_prefix("bytes ") {
            let set = out.last_mut().expect("[name] first");
            set.bytes = unhex(hex);
        } else if let Some(hex) = line.strip_prefix("published ") {
            out.last_mut().expect("[name] first").published = Some(unhex(hex));
        }
    }
    out
}

#[test]
fn golden_ids() {
    let ids = ids();
    assert!(ids.len() >= 10);
    for (key, id) in ids {
        assert_eq!(prehash(&key), id, "prehash({key:?})");
        assert_eq!(prehash_const(&key), id, "prehash_const({key:?})");
    }
}

#[test]
fn golden_table_bytes() {
    let sets = tables();
    assert!(sets.len() >= 5);
    for set in sets {
        let entries: Vec<(u64, *const c_void)> = set.entries.iter().map(|&(id, p)| (id, p as *const c_void)).collect();
        let table = Table::build(&entries).unwrap();
        assert!(
            table.as_bytes() == set.bytes.as_slice(),
            "table {:?}: Table::build differs from tests/golden/tables.txt \
             (after a deliberate builder change: cargo run --example golden)",
            set.name
        );
        let published = Table::build_published(&entries).unwrap();
        assert!(
            published.as_bytes() == set.published.as_deref().unwrap_or(&set.bytes),
            "table {:?}: Table::build_published differs from tests/golden/tables.txt",
            set.name
        );
        assert_eq!(published.is_flat(), set.published.is_some(), "{}: only flat tables differ", set.name);
    }
}

#[test]
fn golden_bytes_answer_the_lookup_formula() {
    // Independent of the builder: the ABI v1 lookup on the reference bytes
    // (flat tables are ABI v1 tables too).
    let sets = tables();
    assert!(sets.iter().any(|s| s.published.is_some()), "a flat table among the golden sets");
    let all = sets.into_iter().flat_map(|s| {
        let flat = s.published.clone().map(|bytes| Golden { name: format!("{} (published)", s.name), bytes, ..s.clone() });
        core::iter::once(s).chain(flat)
    });
    for set in all {
        // A 64-byte-aligned copy, as tables are published.
        let words = set.bytes.len().div_ceil(64);
        let mut block = vec![[0u64; 8]; words];
        // SAFETY: `block` has at least `bytes.len()` bytes and nothing else
        // refers to it.
        let base = unsafe {
            let base = block.as_mut_ptr().cast::<u8>();
            core::ptr::copy_nonoverlapping(set.bytes.as_ptr(), base, set.bytes.len());
            base.cast::<RawTable>()
        };
        // SAFETY: `base` holds a byte copy of a table built by Table::build.
        let header = unsafe { &*base };
        assert_eq!(header.count as usize, set.entries.len(), "{}", set.name);
        assert_eq!(header.entries_offset as usize + 16 * header.size as usize, set.bytes.len(), "{}", set.name);
        for &(id, ptr) in &set.entries {
            // SAFETY: as above.
            assert_eq!(unsafe { raw_lookup(base, id) } as usize, ptr, "{}: {id:#x}", set.name);
            let absent = id ^ 0x8000_0000_0000_0000;
            if !set.entries.iter().any(|&(other, _)| other == absent) {
                // SAFETY: as above.
                assert!(unsafe { raw_lookup(base, absent) }.is_null(), "{}: {absent:#x}", set.name);
            }
        }
        // SAFETY: as above.
        assert!(unsafe { raw_lookup(base, 0) }.is_null());
    }
}

/// One line of `typed_keys.txt`, split into fields (quoted strings unquoted).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while !rest.is_empty() {
        if rest.starts_with('"') {
            // A quoted field ends at the first unescaped quote.
            let b = rest.as_bytes();
            let mut i = 1;
            while b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            out.push(unquote(&rest[..=i]));
            rest = rest[i + 1..].trim_start_matches(' ');
        } else {
            let (field, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push(field.to_owned());
            rest = tail;
        }
    }
    out
}

#[test]
fn golden_typed_keys() {
    use extensibletype::{method_key, parse_typed_key};
    let text = golden("typed_keys.txt");
    let (mut ok, mut bad) = (0, 0);
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let f = fields(line);
        match f[0].as_str() {
            "ok" => {
                let (id, name, sig, key) = (hex_u64(&f[1]), &f[2], &f[3], &f[4]);
                assert_eq!(method_key(name, sig).as_deref(), Ok(key.as_str()), "{line}");
                let parsed = parse_typed_key(key).unwrap_or_else(|e| panic!("{line}: {e}"));
                assert_eq!(parsed.to_string(), *key);
                assert_eq!(parsed.signature.to_string(), *sig);
                assert_eq!(prehash(key), id, "{line}");
                assert_eq!(prehash_const(key), id, "{line}");
                ok += 1;
            }
            "bad" => {
                let (kind, name, sig) = (&f[1], &f[2], &f[3]);
                let err = method_key(name, sig).expect_err(line);
                assert_eq!(err.kind().as_str(), kind, "{line}: {err}");
                assert!(!err.to_string().is_empty());
                assert!(parse_typed_key(&format!("{name}#{sig}")).is_err(), "{line}");
                bad += 1;
            }
            other => panic!("unknown line kind {other:?}: {line}"),
        }
    }
    assert!(ok >= 8 && bad >= 13, "{ok} accepted, {bad} refused");
}
