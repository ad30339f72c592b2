"""The typed-method call benchmark (benches/c/typed.c) builds and every way
of calling computes the same sums as a direct call (the C code checks it
before timing). A smoke test, not a timing: figures come from
`bash benches/c/typed.sh` (README "Current figures")."""

import pytest

import cbuild

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")


@pytest.fixture(scope="module")
def typed():
    return cbuild.bench_driver("typed")


def test_every_way_agrees(typed):
    mod = typed.build()
    assert mod.ways() == list(typed.LABELS)
    for way in mod.ways():
        for sig in typed.SIGNATURES:
            for workload in typed.WORKLOADS:
                (ns,) = mod.time(way, sig, workload, 4096)
                assert ns > 0
    with pytest.raises(ValueError, match="bad arguments"):
        mod.time("typed", "f64(O", "mono", 10)
    obj = mod.objects()[3]
    assert obj.m5() == 4.0 + 3 * 16 + 5
    assert obj.e5(2.0) == 4.0 * 2.0 + 3 * 16 + 5
    with pytest.raises(ValueError, match="NaN"):
        obj.e5(float("nan"))


def test_driver_quick_run():
    proc = cbuild.run_bench_quick("typed")
    assert proc.returncode == 0, proc.stderr
    assert "**`ExtType_Find` + typed call**" in proc.stdout
    assert proc.stdout.count("target") == 8
