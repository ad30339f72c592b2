#!/usr/bin/env bash
# AddressSanitizer: the Rust tests (the runtime's, which embed CPython,
# included), then the Python suite on CPython 3.11
# and 20,000 fuzz cases (ASAN_FUZZ_SEEDS) against the extension built with
# -Zsanitizer=address (stable toolchain,
# RUSTC_BOOTSTRAP=1; GCC's libasan preloaded into Python only, never into
# cargo or rustc; detect_leaks=0: CPython keeps memory until exit by design).
# The RSS-flatness tests are skipped there (EXTENSIBLETYPE_ASAN=1; ASan
# quarantines freed memory). Artefacts: target/asan (cached, incremental).
#
#   bash scripts/asan.sh            # last line: "asan: N passed, N failed"
#   bash scripts/asan.sh --build-only   # only compile (scripts/suite.py's build job)
#
# Exit status 1 when a phase's command fails (cargo test, pytest or the fuzz
# target exit non-zero; an ASan report aborts the process: abort_on_error=1).
# The counts are for the summary line only.
set -uo pipefail
build_only=
[ "${1:-}" = --build-only ] && build_only=1
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

TRIPLE=x86_64-unknown-linux-gnu
LIBASAN=${LIBASAN:-$(gcc -print-file-name=libasan.so 2>/dev/null)}
[ -e "$LIBASAN" ] || LIBASAN=$(ls /usr/lib/x86_64-linux-gnu/libasan.so.* 2>/dev/null | head -1)
export CARGO_TARGET_DIR="$ROOT/target/asan"
passed=0 failed=0 phases_failed=0
t0=$SECONDS
count() { # LOG: add the "N passed" / "N failed" of cargo or pytest output
    passed=$((passed + $(grep -Eo '[0-9]+ passed' "$1" | awk '{s+=$1} END {print s+0}')))
    failed=$((failed + $(grep -Eo '[0-9]+ (failed|error)' "$1" | awk '{s+=$1} END {print s+0}')))
}
asan_env() { env RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" "$@"; }

if [ ! -e "$LIBASAN" ]; then
    log "asan: no libasan found (gcc -print-file-name=libasan.so)"
    echo "asan: 0 passed, 1 failed"
    exit 1
fi

# 1. Rust: unit, property and adversarial tests, doc tests; the crates
#    without Python with leak detection, then the runtime and the module,
#    whose tests embed CPython, without (CPython keeps memory until exit).
mkdir -p "$CARGO_TARGET_DIR"
rust_log="$CARGO_TARGET_DIR/cargo-test.log"
: >"$rust_log"
rust_tests() { # [--no-run]: every Rust test under ASan; exit status 1 if either run failed
    local rc=0
    asan_env cargo test --target "$TRIPLE" "$@" >>"$rust_log" 2>&1 || rc=1
    ASAN_OPTIONS=detect_leaks=0 asan_env cargo test --target "$TRIPLE" \
        -p extensibletype-runtime -p extensibletype-module "$@" >>"$rust_log" 2>&1 || rc=1
    return $rc
}
if [ -n "$build_only" ]; then
    log "asan: cargo test --no-run (-Zsanitizer=address)"
    rust_tests --no-run || { tail -30 "$rust_log" >&2; exit 1; }
else
    log "asan: cargo test (-Zsanitizer=address)"
    rust_tests
    rc=$?
    grep -E '^test result|FAILED|panicked|ERROR: (Address|Leak)Sanitizer' "$rust_log" >&2
    count "$rust_log"
    if [ $rc -ne 0 ]; then
        phases_failed=$((phases_failed + 1)) # failed tests, a build failure or an ASan abort
        tail -30 "$rust_log" >&2
    fi
fi
t_rust=$((SECONDS - t0))

# 2. The extension under ASan, the Python suite on 3.11.
t1=$SECONDS
if ! vpy=$(prepare_venv 3.11 "$(command -v python3.11 || command -v python3)"); then
    echo "asan: $passed passed, $((failed + 1)) failed (could not prepare .venv/3.11)"
    exit 1
fi
log "asan: build the extension (-Zsanitizer=address)"
build_log="$CARGO_TARGET_DIR/build.log"
if ! asan_env PYO3_PYTHON="$vpy" cargo rustc -p extensibletype-module --release --lib --features extension-module,hooks \
    --target "$TRIPLE" >"$build_log" 2>&1; then
    tail -30 "$build_log" >&2
    echo "asan: $passed passed, $((failed + 1)) failed (extension build failed)"
    exit 1
fi
[ -z "$build_only" ] || exit 0
stage="$CARGO_TARGET_DIR/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp -rL python/extensibletype "$stage/"

suffix=$("$vpy" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
cp "$CARGO_TARGET_DIR/$TRIPLE/release/lib_core.so" "$stage/extensibletype/_core$suffix"

run_asan() { env PYTHONPATH="$stage" LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" \
    EXTENSIBLETYPE_ASAN=1 "$@"; }
# The suite must import the instrumented build, not the venv's.
if ! run_asan "$vpy" -c "import extensibletype._core as c, sys; sys.exit(not c.__file__.startswith('$stage'))"; then
    echo "asan: $passed passed, $((failed + 1)) failed (the ASan build does not import)"
    exit 1
fi
log "asan: python 3.11 suite (LD_PRELOAD=$LIBASAN)"
py_log="$CARGO_TARGET_DIR/pytest.log"
(cd python/tests && run_asan env CARGO_TARGET_DIR="$ROOT/target/py3.11" EXTENSIBLETYPE_PYTHON_TAG=3.11-asan \
    "$vpy" -m pytest -q -rs -p no:cacheprovider . >"$py_log" 2>&1)
rc=$?
tail -5 "$py_log" >&2
count "$py_log"
if [ $rc -ne 0 ]; then
    phases_failed=$((phases_failed + 1)) # failed tests, or pytest aborted by an ASan report
    grep -A30 'ERROR: AddressSanitizer' "$py_log" | head -40 >&2
fi
t_py=$((SECONDS - t1))

# 3. The fuzz target against the ASan build (a memory error aborts a worker:
#    reported as a crash with its seed).
t2=$SECONDS
log "asan: fuzz ${ASAN_FUZZ_SEEDS:=0:20000} (python/tests/fuzz)"
fuzz_log="$CARGO_TARGET_DIR/fuzz.log"
run_asan "$vpy" python/tests/fuzz/fuzz_api.py --seeds "$ASAN_FUZZ_SEEDS" >"$fuzz_log" 2>/dev/null
rc=$?
count "$fuzz_log"
if [ $rc -ne 0 ]; then
    phases_failed=$((phases_failed + 1))
    head -20 "$fuzz_log" >&2
fi
log "asan: rust ${t_rust} s, python ${t_py} s, fuzz $((SECONDS - t2)) s, total $((SECONDS - t0)) s"
# A phase that failed without counting a failure (a build failure, an abort) counts one.
[ "$phases_failed" -le "$failed" ] || failed=$phases_failed
echo "asan: $passed passed, $failed failed"
[ "$phases_failed" -eq 0 ]
