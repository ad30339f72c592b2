//! `Builder::last_work`, the deterministic cost measure the bounded-build
//! tests compare against (`work <= 5 x random`): it must actually count.
//! A counter stuck at any constant (0 passes `0 <= 5 * 0`) fails here: a
//! build of `n` keys hashes every key at least twice (bins, then slots), and
//! a random set costs a few units per key, so work grows linearly with `n`.

use core::ffi::c_void;

use extensibletype_core::Builder;

/// SplitMix64: random-looking ids.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn random_entries(n: usize, set: u64) -> Vec<(u64, *const c_void)> {
    (0..n as u64)
        .map(|k| (mix(k ^ set << 40) | 1, (0x1000 + 16 * k) as *const c_void))
        .collect()
}

fn work(builder: &mut Builder, entries: &[(u64, *const c_void)]) -> u64 {
    builder.build(entries).expect("builds");
    builder.last_work()
}

#[test]
fn work_is_at_least_two_hashes_per_key_and_a_few_per_key_at_most() {
    let mut builder = Builder::new();
    for n in [1usize, 2, 8, 100, 1000, 4096, 30_000] {
        for set in 0..3 {
            let w = work(&mut builder, &random_entries(n, set));
            let n = n as u64;
            assert!(
                w >= 2 * n + 2,
                "n {n}: work {w} < 2n + 2 (each key is hashed into a bin and a slot)"
            );
            // Random sets cost about 4n (the doc of last_work); 16n + 512 is
            // far above any ladder a random set climbs.
            assert!(w <= 16 * n + 512, "n {n}: work {w} > 16n + 512");
        }
    }
}

#[test]
fn work_grows_linearly_with_the_number_of_keys() {
    let mut builder = Builder::new();
    let median = |builder: &mut Builder, n: usize| {
        let mut w: Vec<u64> = (0..5)
            .map(|set| work(builder, &random_entries(n, set)))
            .collect();
        w.sort_unstable();
        w[2]
    };
    let small = median(&mut builder, 1024);
    let large = median(&mut builder, 16_384);
    // 16x the keys: between 8x and 32x the work.
    assert!(
        small > 0 && large >= 8 * small && large <= 32 * small,
        "work {small} at n = 1024, {large} at n = 16384"
    );
}

#[test]
fn work_counts_only_the_last_build() {
    let small = random_entries(10, 1);
    let large = random_entries(5000, 2);
    let fresh = work(&mut Builder::new(), &small);
    let mut builder = Builder::new();
    assert_eq!(builder.last_work(), 0, "nothing built yet");
    work(&mut builder, &large);
    assert_eq!(
        work(&mut builder, &small),
        fresh,
        "a reused builder reports only its last build"
    );
    // Deterministic, like the table: the same set costs the same again.
    assert_eq!(work(&mut builder, &small), fresh);
    assert!(work(&mut builder, &large) > fresh);
}

#[test]
fn a_harder_set_costs_more_than_an_easy_one_of_the_same_size() {
    // Ids on a lattice (k << 40) defeat the first multipliers the ladder
    // tries; the work must see the extra attempts.
    let mut builder = Builder::new();
    let n = 4096u64;
    let lattice: Vec<(u64, *const c_void)> = (1..=n)
        .map(|k| (k << 40, (0x1000 + 16 * k) as *const c_void))
        .collect();
    let easy = work(&mut builder, &random_entries(n as usize, 0));
    let hard = work(&mut builder, &lattice);
    assert!(hard > easy, "lattice work {hard} <= random work {easy}");
}
