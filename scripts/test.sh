#!/usr/bin/env bash
# The whole test suite: `bash scripts/test.sh` (what README and .ci/run call).
#
# 1. cargo test --workspace: every crate's tests (key hashing, tables: unit,
#    property and adversarial tests; doc tests; the runtime's own tests,
#    which embed CPython: the foreign-registry index, interning, bad input).
# 2. For each interpreter: CPython 3.11 (the machine's python3), the pyenv
#    3.12 / 3.13 interpreters when present, and a free-threaded 3.13t built by
#    scripts/cpython.sh (cached under ~/.cache): a venv under .venv/<tag>,
#    the package installed with `pip install .` (PEP 517, maturin), then pytest.
#    The abi3 wheel (feature `abi3`, limited API 3.12) is tested again on
#    3.12 and 3.13 (tags 3.12-abi3, 3.13-abi3).
# 3. CPython 3.14 and 3.15 (both builds) in a Debian forky chroot:
#    scripts/test-forky.sh (its venvs are .venv/forky-*).
#
# 4. scripts/fuzz.sh (the Python API, 100,000 cases on 3.11) and
#    scripts/asan.sh (Rust tests and the 3.11 suite under AddressSanitizer).
#
# Idempotent: venvs, pip packages, the 3.13t build and cargo artefacts are
# reused; a package is reinstalled only when its sources changed.
# Prints one line per interpreter and a final "N passed, N failed" line.
set -uo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

declare -a SUMMARY=()
total_passed=0
total_failed=0

# --- 1. Rust ----------------------------------------------------------------
log "cargo test --workspace (release)"
if cargo test --workspace --release 2>&1 | tee /tmp/extensibletype-cargo-test.log | grep -E '^test result|FAILED|panicked' >&2; then :; fi
cargo_passed=$(grep -Eo '[0-9]+ passed' /tmp/extensibletype-cargo-test.log | awk '{s+=$1} END {print s+0}')
cargo_failed=$(grep -Eo '[0-9]+ failed' /tmp/extensibletype-cargo-test.log | awk '{s+=$1} END {print s+0}')
if ! grep -q '^test result' /tmp/extensibletype-cargo-test.log; then
    cargo_failed=$((cargo_failed + 1))
    log "cargo test did not run (build failure?):"
    tail -30 /tmp/extensibletype-cargo-test.log >&2
fi
SUMMARY+=("cargo test: ${cargo_passed} passed, ${cargo_failed} failed")
total_passed=$((total_passed + cargo_passed))
total_failed=$((total_failed + cargo_failed))

# --- pyo3-ffi 0.28 / 0.29 / 0.30 (scripts/pyo3-versions.sh) -----------------
log "pyo3-ffi versions"
pv_line=$(bash scripts/pyo3-versions.sh 2>/tmp/extensibletype-pyo3-versions.log | tail -1)
pv_passed=$(grep -Eo '[0-9]+ passed' <<<"$pv_line" | grep -Eo '[0-9]+' || echo 0)
pv_failed=$(grep -Eo '[0-9]+ failed' <<<"$pv_line" | grep -Eo '[0-9]+' || echo 1)
SUMMARY+=("pyo3-ffi versions: ${pv_passed} passed, ${pv_failed} failed")
total_passed=$((total_passed + pv_passed))
total_failed=$((total_failed + pv_failed))

# --- 2. Python interpreters -------------------------------------------------
# tag|python executable
interpreters=("3.11|$(command -v python3.11 || command -v python3)")
for v in 3.12 3.13; do
    found=$(ls -d "$HOME"/.pyenv/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -1)
    if [ -n "$found" ]; then
        interpreters+=("$v|$found")
    else
        SUMMARY+=("python $v: not present on this machine (skipped)")
    fi
done
# The stable-ABI (abi3, limited API 3.12) wheel, built once with 3.12 and
# tested on every 3.12+ interpreter above.
for entry in "${interpreters[@]}"; do
    case ${entry%%|*} in 3.12|3.13) interpreters+=("${entry%%|*}-abi3|${entry#*|}") ;; esac
done
if ft=$(bash scripts/cpython.sh | tail -1) && [ -x "$ft" ]; then
    interpreters+=("3.13t|$ft")
else
    SUMMARY+=("python 3.13t: could not be built here (see scripts/cpython.sh output)")
    total_failed=$((total_failed + 1))
fi

for entry in "${interpreters[@]}"; do
    tag=${entry%%|*}
    py=${entry#*|}
    log "python $tag: $py"
    if ! vpy=$(prepare_venv "$tag" "$py"); then
        SUMMARY+=("python $tag: build/install failed")
        total_failed=$((total_failed + 1))
        continue
    fi
    out="/tmp/extensibletype-pytest-$tag.log"
    (cd "$ROOT/python/tests" && CARGO_TARGET_DIR="$ROOT/target/py$tag" EXTENSIBLETYPE_PYTHON_TAG="$tag" \
        "$vpy" -m pytest -q -rs -p no:cacheprovider . 2>&1) | tee "$out" | tail -3 >&2
    line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|no tests ran|error' "$out" | tail -1)
    p=$(grep -Eo '[0-9]+ passed' <<<"$line" | grep -Eo '[0-9]+' || echo 0)
    f=$(grep -Eo '[0-9]+ (failed|error)' <<<"$line" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
    if [ "${p:-0}" = 0 ] && [ "${f:-0}" = 0 ]; then f=1; fi
    SUMMARY+=("python $tag: ${p:-0} passed, ${f:-0} failed ($("$vpy" -c 'import sys; print(sys.version.split()[0], "free-threaded" if getattr(sys, "_is_gil_enabled", lambda: True)() is False else "GIL")'))")
    total_passed=$((total_passed + ${p:-0}))
    total_failed=$((total_failed + ${f:-0}))
done

# --- 3. CPython 3.14 / 3.15 in a Debian forky chroot (scripts/forky.sh) -----
while IFS= read -r line; do
    SUMMARY+=("$line")
    p=$(sed -nE 's/.*: ([0-9]+) passed.*/\1/p' <<<"$line"); f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$line")
    case $line in *unavailable*) f=1 ;; *passed*) ;; *) p=0 f=0 ;; esac  # else: a note
    total_passed=$((total_passed + ${p:-0})); total_failed=$((total_failed + ${f:-0}))
done < <(bash scripts/test-forky.sh)

# --- 4. Checks with a script each: one summary line "NAME: N passed, N failed"
#   typecheck  mypy stubtest + mypy --strict on the stubs (scripts/typecheck.sh)
#   crates     the library crates pack and build from their packages (scripts/crates.sh)
#   docs       the site (mkdocs build --strict into target/site) and rustdoc
#              without warnings (scripts/docs.sh)
#   fuzz       the Python API under hostile input (scripts/fuzz.sh)
#   asan       Rust tests and the 3.11 suite under AddressSanitizer (scripts/asan.sh)
#   dlpack-memcheck  valgrind over every DLPack path (scripts/dlpack-memcheck.sh)
for step in typecheck crates docs fuzz asan dlpack-memcheck; do
    log "$step (scripts/$step.sh)"
    line=$(bash "scripts/$step.sh" 2>"/tmp/extensibletype-$step.err" | tee "/tmp/extensibletype-$step.out" | tail -1)
    [[ $line =~ ^$step:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]] || line="$step: 0 passed, 1 failed (no summary; see /tmp/extensibletype-$step.err)"
    [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed ]]
    SUMMARY+=("$line")
    total_passed=$((total_passed + BASH_REMATCH[1]))
    total_failed=$((total_failed + BASH_REMATCH[2]))
done

echo
echo "== extensibletype test summary =="
printf '%s\n' "${SUMMARY[@]}"
echo "${total_passed} passed, ${total_failed} failed"
[ "$total_failed" -eq 0 ]
