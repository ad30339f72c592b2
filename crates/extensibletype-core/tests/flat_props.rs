//! The flat-table builder (`table::flat`, groundwork for issue 23 item 4):
//! every built table is injective and probes exactly through the v1 formula
//! (hits give their pointer, absent ids NULL), the bytes do not depend on
//! the input order, and bad input is refused.

use core::ffi::c_void;
use std::collections::BTreeSet;

use extensibletype_core::table::flat::{build_flat, cap_log_m, FlatPolicy, FlatWork, FLAT_ENTRIES_OFFSET};
use extensibletype_core::table::raw_lookup;
use extensibletype_core::BuildError;
use proptest::prelude::*;

fn entries_of(ids: &BTreeSet<u64>) -> Vec<(u64, *const c_void)> {
    ids.iter().enumerate().map(|(i, &id)| (id, (0x1000 + 16 * i) as *const c_void)).collect()
}

const POLICIES: [FlatPolicy; 2] = [FlatPolicy::SMALLEST, FlatPolicy::FAST];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn flat_tables_probe_exactly_through_v1(
        ids in prop::collection::btree_set(1u64.., 1..=40usize),
        absent in prop::collection::vec(any::<u64>(), 32),
        shuffle in any::<u64>(),
    ) {
        let entries = entries_of(&ids);
        for policy in POLICIES {
            let mut work = FlatWork::default();
            let Some(table) = build_flat(&entries, policy, &mut work).expect("valid input") else {
                continue; // over the cap: the caller keeps its v1 table
            };
            prop_assert!(work.attempts >= 1);
            prop_assert!(table.size() <= 1 << cap_log_m(ids.len()));
            prop_assert_eq!(table.len(), ids.len());
            prop_assert_eq!(table.bytes(), FLAT_ENTRIES_OFFSET + 16 * table.size());
            // Injective: every id has its own slot, so all are stored.
            prop_assert_eq!(table.iter().count(), ids.len());
            for &(id, ptr) in &entries {
                // SAFETY: `table` is a live table.
                prop_assert_eq!(unsafe { raw_lookup(table.as_raw(), id) }, ptr);
            }
            for &id in &absent {
                if !ids.contains(&id) {
                    // SAFETY: as above.
                    let found = unsafe { raw_lookup(table.as_raw(), id) };
                    prop_assert!(found.is_null(), "absent id {:#x} found", id);
                }
            }
            // The same set in another order gives the same bytes.
            let mut permuted = entries.clone();
            let len = permuted.len();
            permuted.rotate_left((shuffle as usize) % len);
            if shuffle & 1 == 1 {
                permuted.reverse();
            }
            let again = build_flat(&permuted, policy, &mut FlatWork::default()).expect("valid").expect("same set fits");
            prop_assert_eq!(again.as_bytes(), table.as_bytes());
        }
    }
}

#[test]
fn small_random_sets_always_fit() {
    // n <= 24 under FAST: the whole point is that these get a flat table.
    let mut x = 7u64;
    for n in 1..=24usize {
        for _ in 0..200 {
            let ids: BTreeSet<u64> = (0..n).map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 1) | 1
            }).collect();
            let built = build_flat(&entries_of(&ids), FlatPolicy::FAST, &mut FlatWork::default()).expect("valid");
            assert!(built.is_some(), "n = {n}: no flat table within the cap");
        }
    }
}

#[test]
fn bad_input_is_refused() {
    let p = 0x1000 as *const c_void;
    let mut w = FlatWork::default();
    assert_eq!(build_flat(&[(5, p), (0, p)], FlatPolicy::FAST, &mut w).err(), Some(BuildError::ZeroId { index: 1 }));
    assert_eq!(build_flat(&[(5, core::ptr::null())], FlatPolicy::FAST, &mut w).err(), Some(BuildError::NullPointer { id: 5 }));
    assert_eq!(build_flat(&[(5, p), (9, p), (5, p)], FlatPolicy::FAST, &mut w).err(), Some(BuildError::DuplicateId { id: 5 }));
    let many: Vec<_> = (1..=65u64).map(|id| (id, p)).collect();
    assert!(build_flat(&many, FlatPolicy::FAST, &mut w).expect("not an error").is_none());
    assert!(build_flat(&[], FlatPolicy::FAST, &mut w).expect("empty").is_some());
}
