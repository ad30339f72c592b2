//! Writes the golden vectors in `tests/golden/` (docs/spec.md sections 1
//! and 2): `ids.txt` (key → id) and `tables.txt` (exact table bytes for fixed
//! id sets). Every binding checks them: `tests/golden.rs` (Rust),
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
         # Format: a `[name]` line, an `entries` line of id:ptr pairs (hex), a `bytes` line (hex).\n\
         # The bytes depend on the builder's multiplier derivation: regenerate with\n\
         # `cargo run --example golden` after changing it deliberately.\n",
    );
    for (name, set) in sets() {
        let entries: Vec<(u64, *const c_void)> =
            set.iter().enumerate().map(|(i, &id)| (id, (0x1000 + 16 * i) as *const c_void)).collect();
        let table = Table::build(&entries).expect("golden id sets build");
        let pairs: Vec<String> = entries.iter().map(|(id, p)| format!("{id:#x}:{:#x}", *p as usize)).collect();
        let _ = writeln!(tables, "\n[{name}]\nentries {}\nbytes {}", pairs.join(" "), hex(table.as_bytes()));
    }
    std::fs::write(dir.join("tables.txt"), tables).expect("write tables.txt");
    println!("wrote {}/ids.txt and tables.txt", dir.display());
}
