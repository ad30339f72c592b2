#!/usr/bin/env bash
# Opt-in release check: the sdist builds and works from a clean venv.
#
#   1. `maturin sdist` (or the sdist given as $1, e.g. from scripts/wheels.sh)
#   2. a brand-new venv (python3.11) in a temporary directory
#   3. `pip install <sdist>` with build isolation: pip fetches maturin from
#      PyPI and cargo compiles the crate from the unpacked sdist alone
#      (dependencies cached under target/sdist-test)
#   4. a smoke part of the suite, from the unpacked sdist (its own tests,
#      headers and golden files, not this checkout's) against that install:
#      test_runtime.py, test_golden.py and test_header.py (C header, ABI
#      asserts, golden vectors), plus test_arrays.py when NumPy is present in
#      that venv (it is not, by default).
#
# Prints "sdist: N passed, N failed". Not called by scripts/test.sh: it takes
# about 45-70 s on a 2-core machine (cargo dependencies cached under
# target/sdist-test; pip fetches maturin each time).
set -uo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

py=$(command -v python3.11 || command -v python3)
work=$(mktemp -d -t extensibletype-sdist.XXXXXX)
trap 'rm -rf "$work"' EXIT

if [ $# -ge 1 ]; then
    sdist=$(realpath "$1")
else
    mvpy=$(prepare_venv 3.11 "$py") || { echo "sdist: 0 passed, 1 failed (venv)"; exit 1; }
    log "maturin sdist"
    "$mvpy" -m maturin sdist --out "$work/sdist" >&2 || { echo "sdist: 0 passed, 1 failed (maturin sdist)"; exit 1; }
    sdist=$(ls "$work"/sdist/*.tar.gz)
fi
log "sdist: $sdist"

"$py" -m venv "$work/venv" >&2
vpy="$work/venv/bin/python"
log "pip install <sdist> into a clean venv"
if ! CARGO_TARGET_DIR="$ROOT/target/sdist-test" MATURIN_PEP517_ARGS="--features $TEST_FEATURES" "$vpy" -m pip install -q "$sdist" >&2; then
    echo "sdist: 0 passed, 1 failed (pip install of the sdist)"
    exit 1
fi
"$vpy" -m pip install -q pytest >&2

mkdir -p "$work/src"
tar -xzf "$sdist" -C "$work/src" --strip-components=1 || { echo "sdist: 0 passed, 1 failed (unpack)"; exit 1; }

# The installed package, not the source tree: run from the tests directory
# (python/ is not on sys.path there) and check where it came from.
origin=$(cd "$work" && "$vpy" -c 'import extensibletype; print(extensibletype.__file__)')
case $origin in "$work"/venv/*) ;; *) echo "sdist: 0 passed, 1 failed (imported $origin)"; exit 1 ;; esac

tests=(test_runtime.py test_golden.py test_header.py)
"$vpy" -c 'import numpy' 2>/dev/null && tests+=(test_arrays.py)
out="$work/pytest.log"
(cd "$work/src/python/tests" && CARGO_TARGET_DIR="$work/c-build" "$vpy" -m pytest -q -p no:cacheprovider "${tests[@]}" 2>&1) \
    | tee "$out" | tail -3 >&2
line=$(grep -E '[0-9]+ (passed|failed)' "$out" | tail -1)
p=$(grep -Eo '[0-9]+ passed' <<<"$line" | grep -Eo '[0-9]+' || echo 0)
f=$(grep -Eo '[0-9]+ (failed|error)' <<<"$line" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
if [ "${p:-0}" = 0 ] && [ "${f:-0}" = 0 ]; then f=1; fi
echo "sdist: ${p:-0} passed, ${f:-0} failed"
[ "${f:-0}" -eq 0 ]
