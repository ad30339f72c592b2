"""The table-format prototype (benches/c/tablev2.c) builds, checks itself
and runs. A smoke test, not a timing: figures come from
`bash benches/c/tablev2.sh --callgrind` (docs/benchmarks.md, "A faster
table")."""

import pytest

import cbuild

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")


@pytest.fixture(scope="module")
def driver():
    return cbuild.bench_driver("tablev2")


def test_every_variant_checked_and_timed(driver):
    mod = driver.build()
    assert mod.selfcheck(2, 7) > 0
    for n in (2, 16, 64):
        keys = driver.key_set(n)
        info = mod.setup(driver.ids_of(keys), driver.miss_ids(n), keys, driver.ATTEMPTS,
                         driver.cap_log_m(n))
        assert info["n"] == n
        assert info["have_flat"] == (n <= 24)  # n = 64 is over the cap: v1 fallback
        for v in mod.variants():
            for kind in driver.KINDS:
                if v in ("floor", "vtable") and kind == "miss":
                    continue
                for mode in driver.MODES:
                    (ns,) = mod.time(v, kind, mode, 1024)
                    assert ns > 0
    with pytest.raises(ValueError, match="bad arguments"):
        mod.time("v2", "hit", "sideways", 10)
    with pytest.raises(ValueError, match="setup"):
        mod.setup([1], [2, 3], None, 64, 12)


def test_lookups_racing_republication_are_exact(driver):
    mod = driver.build()
    st = mod.stress(20_000, 5)  # raises AssertionError on any wrong answer
    assert st["checked"] == 20_000 * 32
    assert st["published"] > 0


def test_builder_refuses_what_no_multiplier_separates(driver):
    mod = driver.build()
    ids = driver.ids_of(driver.key_set(2))
    assert mod.build_stats(2, 1, 64, 12, 1, ids)["ok"] == 1
    # Two equal ids share a slot under every multiplier: no flat block.
    assert mod.build_stats(2, 1, 64, 12, 1, [ids[0], ids[0]])["ok"] == 0


def test_driver_quick_run():
    proc = cbuild.run_bench_quick("tablev2")
    assert proc.returncode == 0, proc.stderr
    assert "lookups exact" in proc.stdout
    assert proc.stdout.count("**proposal**") == len([1, 2, 4, 8, 16, 32, 64, 256])
