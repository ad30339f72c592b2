#!/usr/bin/env bash
# The main job (README): `bash scripts/demo.sh`.
#
# 1. Sets up .venv/3.11 with the package (`pip install .`, a release build
#    of the Rust extension: the only slow step, first run only; later runs
#    reuse it until the sources change). Only what the demo needs is
#    installed (maturin, NumPy); scripts/test.sh adds the test tools later.
# 2. Slot lookup latency (`python -m extensibletype bench`): the lookup a C
#    consumer compiles in, on every kind of type, next to CPython's own
#    mechanisms.
# 3. Duck-typed arrays (examples/arrays_demo.py): registers the array.v1
#    providers (extensibletype.arrays.Array, numpy.ndarray, the buffer
#    protocol types, a ctypes class), runs sum/dot/axpy across provider
#    pairs, measures the per-call cost of getting an array view from C next
#    to the buffer protocol, __array_struct__, __dlpack__ and
#    __array_interface__, and times the kernels against NumPy; it ends with
#    what the figures mean.
#
# Each step prints a line with its elapsed time. The tables underneath, from
# Rust (build and lookup costs next to HashMap), are a separate example
# because it builds the benchmarks' dependencies first (minutes):
# `cargo run --release --example demo`.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# The demo's own needs; the test suite installs the rest into the same venv.
PY_DEPS=(maturin numpy)
PY_DEPS_311=()

start=$SECONDS
step() { printf '\n[demo %s/3, %ds] %s\n' "$1" "$((SECONDS - start))" "$2" >&2; }

step 1 "Python 3.11 venv (.venv/3.11) with extensibletype installed from this tree"
vpy_file=$(mktemp)
trap 'rm -f "$vpy_file"' EXIT
py=$(command -v python3.11 || command -v python3)
if [ -x .venv/3.11/bin/python ] && [ "$(cat .venv/3.11/.extensibletype-digest 2>/dev/null)" = "$(source_digest)" ]; then
    log "already installed (sources unchanged)"
    prepare_venv 3.11 "$py" >"$vpy_file"
else
    log "first run (or changed sources): pip install, then a release build of the Rust"
    log "extension (about 1-3 minutes on 2 cores; cached in target/py3.11 afterwards)"
    prepare_venv 3.11 "$py" >"$vpy_file" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        [ $(((SECONDS - start) % 20)) -eq 0 ] && kill -0 "$pid" 2>/dev/null && log "... still building ($((SECONDS - start)) s)"
    done
    wait "$pid"
fi
vpy=$(cat "$vpy_file")

step 2 "slot lookup latency (python -m extensibletype bench)"
mkdir -p target/demo
"$vpy" -m extensibletype bench --json >target/demo/lookup.json

step 3 "duck-typed arrays (examples/arrays_demo.py)"
echo >&2
# NumPy's BLAS may use several threads for x @ y; our kernels use one.
OPENBLAS_NUM_THREADS=1 "$vpy" examples/arrays_demo.py --lookup-json target/demo/lookup.json
log "demo done in $((SECONDS - start)) s"
