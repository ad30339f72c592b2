//! Writes the golden vectors in `tests/golden/` (docs/spec.md sections 1
//! and 2, and typed methods): `ids.txt` (key → id), `tables.txt` (exact
//! table bytes for fixed id sets) and `typed_keys.txt` (typed method keys,
//! accepted and refused). Every binding checks them: `tests/golden.rs` (Rust),
//! `python/tests/test_golden.py` (Python, and C through
//! `tests/golden/golden_c.c`).
//!
//! Regenerate after a deliberate change of the table builder (the bytes
//! depend on how multipliers are derived; the layout and lookup formula do
//! not change):
//!
//! ```text
//! cargo run --example golden
//! ```
//!
//! The id sets and pointers are fixed here; ids come from [`prehash`].

use core::ffi::c_void;
use std::fmt::Write as _;
use std::path::Path;

use extensibletype::signature::{method_key, parse_typed_key, SignatureError};
use extensibletype::{prehash, Table};

/// The keys of `ids.txt`: the spec's vectors, the array.v1 keys, non-ASCII
/// keys, and lengths around md5's block edges (55/56/63/64/65/119/120 bytes).
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "",
        "a",
        "extensibletype.array.v1:data",
        "numpy.ndarray.shape",
        "extensibletype.array.v1:acquire",
        "extensibletype.array.v1:release",
        "demo.units.v1:scale",
        "demo.ключ.v2:get",
        "名前空間.インターフェース.v1:メンバー",
        "with space: and \"quotes\" \\ backslash",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for len in [55, 56, 63, 64, 65, 119, 120] {
        keys.push("x".repeat(len));
    }
    keys
}

/// `"..."` with `\` and `"` escaped (the only escapes the readers know).
fn quote(key: &str) -> String {
    format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The fixed id sets of `tables.txt`; pointer `i` of a set is `0x1000 + 16 * i`.
fn sets() -> Vec<(&'static str, Vec<u64>)> {
    vec![
        ("one", vec![1]),
        ("three", vec![1, 2, 3]),
        ("keys", keys().iter().map(|k| prehash(k)).collect()),
        ("high-bits", vec![1 << 20, 1 << 40, 1 << 60]),
        ("pointer-like", (0..40).map(|i| 0x7f3a_1c00_0000 + 64 * i).collect()),
        ("multiples", (1..=64).map(|k| k * 0x1_0000_0000).collect()),
    ]
}

/// `(name, signature)` pairs of `typed_keys.txt`: the canonical and refused
/// cases of docs/spec.md (typed methods) and more.
fn typed_cases() -> Vec<(&'static str, &'static str)> {
    let area = "geom.Shape.v1:area";
    let mut cases = vec![
        // Canonical (the spec's list).
        (area, "f64(O)"),
        ("geom.Shape.v1:scale", "v(O,f64)"),
        ("geom.Shape.v1:sum", "i64(O,*f64,i64)"),
        ("geom.Shape.v1:copy", "O+(O)!t"),
        ("geom.Shape.v1:at", "f64(O,f64)!e"),
        ("geom.Shape.v1:check", "v(O)!e"),
        ("geom.Shape.v1:has", "b(O,p)"),
        ("geom.Shape.v1:rot", "c128(O,c128)"),
        // More: every scalar, pointers, flags, O+ with !e, odd names.
        ("demo.all.v1:ints", "i8(O,i16,i32,i64,u8,u16,u32,u64)"),
        ("demo.all.v1:floats", "f32(O,f64,c64,c128,b,p)"),
        ("demo.all.v1:ptrs", "**f64(O,*p,***u8,*b)!t"),
        ("demo.all.v1:make", "O+(O,O,i64)!e"),
        ("demo.all.v1:out", "*c64(O)!e"),
        ("demo.all.v1:_priv9", "v(O)!t"),
        ("demo.ключ.v2:get", "f64(O)"),
        ("a:b", "v(O)"),
        // Refused (the spec's list).
        (area, "f64( O )"),
        (area, "double(O)"),
        (area, "f64(O)!t!e"),
        (area, "f64(O)!e!t"),
        (area, "F64(O)"),
        (area, "f64(O,v)"),
        (area, "f64(O"),
        (area, "f64(O,O+)"),
        (area, "O(O)"),
        (area, "O+(O)"),
        (area, ""),
        (area, "f64(O)!x"),
        (area, "f64(f64)"),
        // More refused signatures.
        (area, "f64()"),
        (area, "f64(O,)"),
        (area, "f64(O))"),
        (area, "f64"),
        (area, "f64(O)!"),
        (area, "*O(O)"),
        (area, "v(O,*v)"),
        (area, "f64(O,*O)"),
        (area, "f64(O,*********f64)"),
        (area, "f64(O)#"),
        (area, "long(O)"),
        (area, "f64(O,é)"),
        // Refused names.
        ("area", "f64(O)"),
        (":area", "f64(O)"),
        ("geom.Shape.v1:1area", "f64(O)"),
        ("geom.Shape.v1:ar-ea", "f64(O)"),
        ("geom.Shape.v1:", "f64(O)"),
        ("geom Shape.v1:area", "f64(O)"),
        ("geom.Shape.v1:area#x", "f64(O)"),
    ];
    cases.dedup();
    cases
}

/// The macro-name suffix `python -m extensibletype header` gives a typed key
/// (its module docstring): the name part upper-cased with `:` → `__` and
/// other non-alphanumeric runs → `_`, then `__RET__ARG_ARG[__T|__E]`.
fn macro_suffix(name: &str, sig: &extensibletype::Signature) -> String {
    let part = |s: &str| {
        let mut out = String::new();
        let mut gap = false;
        for c in s.chars() {
            if c.is_ascii_alphanumeric() {
                out.push(c.to_ascii_uppercase());
                gap = false;
            } else if !gap {
                out.push('_');
                gap = true;
            }
        }
        out
    };
    let token = |t: &extensibletype::signature::Type| {
        let code = t.base_code();
        let base = if code == "O+" { "ONEW".to_owned() } else { code.to_ascii_uppercase() };
        format!("{}{base}", "PTR_".repeat(t.depth as usize))
    };
    let mut out: Vec<String> = name.split(':').map(part).collect::<Vec<_>>();
    out.push(token(&sig.ret));
    out.push(sig.args.iter().map(token).collect::<Vec<_>>().join("_"));
    if !sig.flag.letter().is_empty() {
        out.push(sig.flag.letter().to_ascii_uppercase());
    }
    out.join("__")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    std::fs::create_dir_all(&dir).expect("create tests/golden");

    let mut ids = String::from(
        "# key -> id: id = first 8 bytes of md5(key), little-endian (docs/spec.md section 1).\n\
         # Format: 0x<16 hex digits> \"<key, UTF-8, with \\\\ and \\\" escaped>\"\n\
         # Written by `cargo run --example golden`.\n",
    );
    for key in keys() {
        let _ = writeln!(ids, "{:#018x} {}", prehash(&key), quote(&key));
    }
    std::fs::write(dir.join("ids.txt"), ids).expect("write ids.txt");

    let mut tables = String::from(
        "# Exact table bytes (docs/spec.md section 2; little-endian, 64-bit) for fixed id sets.\n\
         # Format: a `[name]` line, an `entries` line of id:ptr pairs (hex), a `bytes` line (hex):\n\
         # Table::build's table; a `published` line (hex) when the runtime publishes\n\
         # another table for the set (Table::build_published: a flat table, section 2.4).\n\
         # The bytes depend on the builder's multiplier derivation: regenerate with\n\
         # `cargo run --example golden` after changing it deliberately.\n",
    );
    for (name, set) in sets() {
        let entries: Vec<(u64, *const c_void)> =
            set.iter().enumerate().map(|(i, &id)| (id, (0x1000 + 16 * i) as *const c_void)).collect();
        let table = Table::build(&entries).expect("golden id sets build");
        let pairs: Vec<String> = entries.iter().map(|(id, p)| format!("{id:#x}:{:#x}", *p as usize)).collect();
        let _ = writeln!(tables, "\n[{name}]\nentries {}\nbytes {}", pairs.join(" "), hex(table.as_bytes()));
        // What the runtime publishes for this set, when it differs: a flat
        // table (docs/spec.md §2.4), also an ABI v1 table.
        let published = Table::build_published(&entries).expect("golden sets are valid");
        if published.as_bytes() != table.as_bytes() {
            let _ = writeln!(tables, "published {}", hex(published.as_bytes()));
        }
    }
    std::fs::write(dir.join("tables.txt"), tables).expect("write tables.txt");

    let mut typed = String::from(
        "# Typed method keys (docs/spec.md, typed methods). Written by `cargo run --example golden`.\n\
         # One case per line; fields separated by one space; strings double-quoted, UTF-8, with\n\
         # \\\\ and \\\" escaped (as in ids.txt).\n\
         # ok 0x<id> \"<name>\" \"<signature>\" \"<key>\" <MACRO>\n\
         #   accepted: method_key(name, signature) == key (= name#signature), prehash(key) == id,\n\
         #   and `python -m extensibletype header` names it EXTTYPE_ID_<MACRO>.\n\
         # bad <kind> \"<name>\" \"<signature>\"\n\
         #   refused: method_key(name, signature) and the key name#signature are errors\n\
         #   (Python ValueError); <kind> is the Rust SignatureErrorKind::as_str() of method_key's error.\n",
    );
    for (name, sig) in typed_cases() {
        let key = format!("{name}#{sig}");
        match method_key(name, sig) {
            Ok(canonical) => {
                assert_eq!(canonical, key);
                let parsed = parse_typed_key(&key).expect("method_key and parse_typed_key agree");
                let _ = writeln!(
                    typed,
                    "ok {:#018x} {} {} {} {}",
                    prehash(&key),
                    quote(name),
                    quote(sig),
                    quote(&key),
                    macro_suffix(name, &parsed.signature)
                );
            }
            Err(e) => {
                let e: SignatureError = e;
                assert!(parse_typed_key(&key).is_err(), "{key}");
                let _ = writeln!(typed, "bad {} {} {}", e.kind().as_str(), quote(name), quote(sig));
            }
        }
    }
    std::fs::write(dir.join("typed_keys.txt"), typed).expect("write typed_keys.txt");
    println!("wrote {}/ids.txt, tables.txt and typed_keys.txt", dir.display());
}
