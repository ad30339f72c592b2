//! The table's observable behaviour, pinned in the core crate itself (so
//! that `cargo mutants -p extensibletype-core` sees it): the golden bytes of
//! `tests/golden/tables.txt` (docs/spec.md §2), a fingerprint of the builder's
//! choices on structured id sets (the bounded ladder's heuristics change
//! work and bytes, not correctness), and the accessors and error messages.
//!
//! After a deliberate change of the builder: regenerate the golden files
//! (`cargo run --example golden`) and print the new fingerprints with
//! `EXTENSIBLETYPE_PRINT_FINGERPRINTS=1 cargo test -p extensibletype-core --test table_pinned -- --nocapture`.

use core::ffi::c_void;
use std::path::Path;

use extensibletype_core::table::{raw_lookup, HEADER_SIZE, TABLE_ALIGN};
use extensibletype_core::{BuildError, Builder, RawEntry, Table, MAX_ENTRIES};

fn ptr(i: u64) -> *const c_void {
    (0x1000 + 16 * i) as *const c_void
}

fn entries(ids: &[u64]) -> Vec<(u64, *const c_void)> {
    ids.iter().zip(0..).map(|(&id, i)| (id, ptr(i))).collect()
}

fn hex_u64(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex")
}

/// One golden set: name, entries, table bytes.
type GoldenSet = (String, Vec<(u64, *const c_void)>, Vec<u8>);

/// The sets of tests/golden/tables.txt.
fn golden_tables() -> Vec<GoldenSet> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/tables.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out: Vec<GoldenSet> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.into(), vec![], vec![]));
        } else if let Some(rest) = line.strip_prefix("entries ") {
            let set = out.last_mut().expect("[name] first");
            for pair in rest.split(' ') {
                let (id, p) = pair.split_once(':').expect("id:ptr");
                set.1
                    .push((hex_u64(id), hex_u64(p) as usize as *const c_void));
            }
        } else if let Some(hex) = line.strip_prefix("bytes ") {
            let set = out.last_mut().expect("[name] first");
            set.2 = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
        } else if let Some(hex) = line.strip_prefix("published ") {
            // What the runtime publishes instead (a flat table): pinned by
            // the workspace's tests/golden.rs and python/tests/test_golden.py.
            let _ = hex;
        }
    }
    out
}

#[test]
fn golden_table_bytes() {
    let sets = golden_tables();
    assert!(sets.len() >= 6);
    let mut builder = Builder::new();
    for (name, input, bytes) in sets {
        let table = Table::build(&input).unwrap();
        assert!(
            table.as_bytes() == bytes.as_slice(),
            "{name}: Table::build differs from tests/golden/tables.txt"
        );
        let again = builder.build(&input).unwrap();
        assert!(
            again.as_bytes() == bytes.as_slice(),
            "{name}: Builder::build differs from Table::build"
        );
    }
}

/// FNV-1a of the table bytes.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Id sets for the bounded pass's decisions: random sets, and lattices
/// (`k << s`, `k * c`, aligned addresses) whose first multipliers crowd the
/// bins or stall placement.
fn fingerprint_sets() -> Vec<(&'static str, Vec<u64>)> {
    let seq = |n: u64, f: &dyn Fn(u64) -> u64| (1..=n).map(f).collect::<Vec<u64>>();
    vec![
        ("random 5", seq(5, &|k| mix(k) | 1)),
        ("random 33", seq(33, &|k| mix(k + 100) | 1)),
        ("random 1000", seq(1000, &|k| mix(k + 7000) | 1)),
        ("random 5000", seq(5000, &|k| mix(k + 90_000) | 1)),
        ("sequential 64", seq(64, &|k| k)),
        ("sequential 4096", seq(4096, &|k| k)),
        ("k << 47 + 7, 1024", seq(1024, &|k| (k << 47) + 7)),
        ("k << 18, 8192", seq(8192, &|k| k << 18)),
        ("k << 38, 4096", seq(4096, &|k| k << 38)),
        ("k << 5, 4096", seq(4096, &|k| k << 5)),
        (
            "k * golden, 4096",
            seq(4096, &|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        ),
        (
            "aligned 16, 1024",
            seq(1024, &|k| 0x7f00_0000_0000 + 16 * k),
        ),
        ("single bits", (0..64).map(|b| 1u64 << b).collect()),
        ("k << 60 | k, 16", seq(16, &|k| (k << 60) | k)),
        ("k << 32, 300", seq(300, &|k| k << 32)),
        ("k << 40, 3", seq(3, &|k| k << 40)),
        ("k * 3 << 20, 2000", seq(2000, &|k| (k * 3) << 20)),
        // A set whose first bin multiplier needs more than its 4 slot
        // multipliers (a slot collision each time), and one whose bins sit
        // exactly at the crowding limit.
        (
            "random 48, 5th slot multiplier",
            seq(48, &|k| mix(k + (7 << 32) + (48 << 48)) | 1),
        ),
        ("k << 56 + 7, 8", seq(8, &|k| (k << 56) + 7)),
        // Displacements of 64 and more (the occupancy bitmap's word index).
        (
            "random 500, large displacements",
            seq(500, &|k| mix(k + (3 << 32) + (500 << 48)) | 1),
        ),
    ]
}

/// `(work, size, bins, fnv(bytes))` per set, in the order above.
const FINGERPRINTS: &[(u64, usize, usize, u64)] = &[
    (26, 8, 16, 0xa8ae8f4d240f7cbe),         // random 5
    (139, 64, 64, 0xfbb3c4ee6469f403),       // random 33
    (3939, 1024, 1024, 0x451db190d44b3fa3),  // random 1000
    (19672, 8192, 8192, 0x6747b125c24f6482), // random 5000
    (248, 64, 64, 0xd48a9f04274bec96),       // sequential 64
    (57884, 4096, 4096, 0xf95c27815e8ae4fc), // sequential 4096
    (9279, 1024, 1024, 0xfb59b590c3eda0a4),  // k << 47 + 7, 1024
    (74410, 8192, 8192, 0xc16288051f08da4d), // k << 18, 8192
    (13246, 4096, 4096, 0x9233dfeb5d58e3f9), // k << 38, 4096
    (17121, 4096, 4096, 0x5dca470697e0481a), // k << 5, 4096
    (15800, 4096, 4096, 0x0f0f9b6adcc81674), // k * golden, 4096
    (3618, 1024, 1024, 0x30006b224e5ae209),  // aligned 16, 1024
    (259, 64, 64, 0x96e43fe6a89726b1),       // single bits
    (78, 16, 32, 0x1d5a202e12364894),        // k << 60 | k, 16
    (1393, 512, 512, 0x810afed0b65694d5),    // k << 32, 300
    (14, 4, 8, 0xed9d55e445020fa4),          // k << 40, 3
    (6358, 2048, 2048, 0x7f1fd88a41e4f825),  // k * 3 << 20, 2000
    (719, 64, 64, 0x517e0461b38af8c1),       // random 48, 5th slot multiplier
    (113, 8, 16, 0x2dd157b254659e76),        // k << 56 + 7, 8
    (2210, 512, 512, 0x4b5b0b0a882e20a2),    // random 500, large displacements
];

#[test]
fn builder_fingerprints_on_structured_sets() {
    let mut builder = Builder::new();
    let got: Vec<(u64, usize, usize, u64)> = fingerprint_sets()
        .iter()
        .map(|(name, ids)| {
            let table = builder
                .build(&entries(ids))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            for (i, &id) in ids.iter().enumerate() {
                assert_eq!(table.get(id), Some(ptr(i as u64)), "{name}: {id:#x}");
            }
            (
                builder.last_work(),
                table.size(),
                table.bins(),
                fnv(table.as_bytes()),
            )
        })
        .collect();
    if std::env::var_os("EXTENSIBLETYPE_PRINT_FINGERPRINTS").is_some() {
        for (fp, (name, _)) in got.iter().zip(fingerprint_sets()) {
            println!(
                "    ({}, {}, {}, {:#018x}), // {name}",
                fp.0, fp.1, fp.2, fp.3
            );
        }
    }
    for ((fp, want), (name, _)) in got.iter().zip(FINGERPRINTS).zip(fingerprint_sets()) {
        assert_eq!(
            fp, want,
            "{name}: (work, size, bins, bytes hash) changed (see the module doc to regenerate)"
        );
    }
    assert_eq!(got.len(), FINGERPRINTS.len());
}

#[test]
fn accessors_describe_the_allocation() {
    let empty = Table::build(&[]).unwrap();
    assert!(empty.is_empty());
    assert_eq!((empty.len(), empty.size(), empty.bins()), (0, 2, 4));
    assert_eq!(empty.iter().count(), 0);
    let ids: Vec<u64> = (1..=100).map(|k| mix(k) | 1).collect();
    let table = Table::build(&entries(&ids)).unwrap();
    assert!(!table.is_empty());
    assert_eq!(table.len(), 100);
    assert_eq!(table.size(), 128);
    assert!(
        table.bins() == 128 || table.bins() == 256,
        "bins {}",
        table.bins()
    );
    let header = table.as_raw();
    // SAFETY: the table is live.
    let (s, t, entries_offset, count, size) = unsafe {
        (
            (*header).s,
            (*header).t,
            (*header).entries_offset,
            (*header).count,
            (*header).size,
        )
    };
    assert_eq!((u32::from(s), count, size), (64 - 7, 100, 128));
    assert_eq!(table.bins(), 1usize << (64 - u32::from(t)));
    assert_eq!(
        entries_offset as usize,
        (HEADER_SIZE + 2 * table.bins()).next_multiple_of(16)
    );
    assert_eq!(
        table.bytes(),
        entries_offset as usize + 128 * core::mem::size_of::<RawEntry>()
    );
    assert_eq!(table.as_bytes().len(), table.bytes());
    assert_eq!(
        header as usize % TABLE_ALIGN,
        0,
        "tables are cache-line aligned"
    );
    let mut got: Vec<(u64, *const c_void)> = table.iter().collect();
    got.sort_by_key(|e| e.0);
    let mut want = entries(&ids);
    want.sort_by_key(|e| e.0);
    assert_eq!(got, want, "iter yields exactly the entries");
    let debug = format!("{table:?}");
    assert_eq!(
        debug,
        format!(
            "Table {{ len: 100, size: 128, bins: {}, bytes: {} }}",
            table.bins(),
            table.bytes()
        )
    );
    assert_eq!(HEADER_SIZE, 32);
}

#[test]
fn lookups_hit_members_and_miss_everything_else() {
    for n in [1u64, 2, 3, 31, 32, 33, 500] {
        let ids: Vec<u64> = (1..=n).map(|k| mix(k * 31 + n)).collect();
        let table = Table::build(&entries(&ids)).unwrap();
        for (i, &id) in ids.iter().enumerate() {
            assert_eq!(table.get(id), Some(ptr(i as u64)));
            // SAFETY: the table is live.
            assert_eq!(unsafe { raw_lookup(table.as_raw(), id) }, ptr(i as u64));
        }
        for k in 0..2000u64 {
            let other = mix(k + 1_000_000);
            if !ids.contains(&other) {
                assert_eq!(table.get(other), None, "n {n}: {other:#x}");
                // SAFETY: the table is live.
                assert!(unsafe { raw_lookup(table.as_raw(), other) }.is_null());
            }
        }
        assert_eq!(table.get(0), None);
    }
}

#[test]
fn sizes_grow_with_the_number_of_entries() {
    for (n, size) in [
        (0usize, 2usize),
        (1, 2),
        (2, 2),
        (3, 4),
        (4, 4),
        (5, 8),
        (64, 64),
        (65, 128),
        (4096, 4096),
        (4097, 8192),
    ] {
        let ids: Vec<u64> = (1..=n as u64).map(|k| mix(k) | 1).collect();
        let table = Table::build(&entries(&ids)).unwrap();
        assert_eq!(table.size(), size, "n {n}");
        // Small tables get twice as many bins as slots.
        if size <= 32 {
            assert_eq!(table.bins(), 2 * size, "n {n}");
        }
    }
}

#[test]
fn errors_say_what_is_wrong() {
    let mut builder = Builder::new();
    assert_eq!(
        builder.build(&[(5, ptr(0)), (0, ptr(1))]).unwrap_err(),
        BuildError::ZeroId { index: 1 }
    );
    assert_eq!(
        builder.build(&[(0, ptr(0))]).unwrap_err(),
        BuildError::ZeroId { index: 0 }
    );
    assert_eq!(
        builder.build(&[(7, core::ptr::null())]).unwrap_err(),
        BuildError::NullPointer { id: 7 }
    );
    assert_eq!(
        builder.build(&[(9, ptr(0)), (9, ptr(1))]).unwrap_err(),
        BuildError::DuplicateId { id: 9 }
    );
    let too_many: Vec<u64> = (1..=MAX_ENTRIES as u64 + 1).collect();
    assert_eq!(
        Table::build(&entries(&too_many)).unwrap_err(),
        BuildError::TooMany {
            count: MAX_ENTRIES + 1
        }
    );
    let exactly: Vec<u64> = (1..=MAX_ENTRIES as u64).collect();
    assert_eq!(
        builder.build(&entries(&exactly)).unwrap().len(),
        MAX_ENTRIES
    );
    let messages = [
        (
            BuildError::ZeroId { index: 3 },
            "id 0 is reserved and cannot name a slot (entry 3)",
        ),
        (
            BuildError::DuplicateId { id: 0xab },
            "duplicate id 0x00000000000000ab",
        ),
        (
            BuildError::TooMany { count: 70_000 },
            "too many entries: 70000 (a table holds at most 65536)",
        ),
        (
            BuildError::NullPointer { id: 0x10 },
            "NULL pointer for id 0x0000000000000010 (NULL means 'absent' to consumers)",
        ),
        (
            BuildError::Exhausted { count: 12 },
            "no perfect hash found for 12 entries (please report this id set)",
        ),
    ];
    for (err, text) in messages {
        assert_eq!(err.to_string(), text);
    }
}

#[test]
fn a_duplicate_in_a_large_set_is_reported_not_built_around() {
    // Duplicates that share a bin with other keys (n large enough that bins
    // hold several keys) are found during placement.
    for n in [40u64, 1000, 5000] {
        let mut input = entries(&(1..=n).map(|k| mix(k) | 1).collect::<Vec<_>>());
        let dup = input[(n / 2) as usize].0;
        input.push((dup, ptr(99_999)));
        assert_eq!(
            Table::build(&input).unwrap_err(),
            BuildError::DuplicateId { id: dup },
            "n {n}"
        );
    }
}
