#!/usr/bin/env bash
# ThreadSanitizer, opt-in (not run by scripts/test.sh): the free-threaded
# stress tests on a TSan build of CPython 3.13t.
#
# 1. CPython 3.13t with --with-thread-sanitizer, from the same source as
#    scripts/cpython.sh (Debian trixie's python3.13 upstream tarball):
#    EXTENSIBLETYPE_CPYTHON_FLAVOR=tsan bash scripts/cpython.sh, cached under
#    ~/.cache/extensibletype/cpython-3.13t-tsan (a first build takes tens
#    of minutes on two cores).
# 2. The extension built with RUSTC_BOOTSTRAP=1 RUSTFLAGS=-Zsanitizer=thread
#    from the pyo3-ffi 0.28 tree (free-threaded 3.13 needs it). Only our
#    crates are instrumented: -Zbuild-std (an instrumented std) needs the
#    rust-src component, which this toolchain does not have, and rustc
#    refuses to mix instrumented crates with the uninstrumented std unless
#    told -Cunsafe-allow-abi-mismatch=sanitizer (used here); the standard
#    library's own synchronisation (std::sync::Mutex internals) is invisible
#    to TSan, so a report whose racing accesses are both inside std, or that
#    is ordered only by a std Mutex, may be a false positive. The C test
#    harnesses (python/tests/c, the header's inline lookups) are compiled
#    with -fsanitize=thread too (CC), the interpreter's suppressions
#    (Tools/tsan/suppressions_free_threading.txt) apply to CPython itself.
# 3. pytest on the thread tests: test_nostate_threads.py (pthreads without a
#    thread state vs writers), test_concurrency.py, test_type_cache.py.
#
#   bash scripts/tsan.sh     # last line: "tsan: N passed, N failed, N reports (M in extensibletype)"
#
# TSAN_TESTS overrides the test selection (pytest arguments).
#
# TSAN_CPYTHON=0: skip the TSan interpreter (its first build is long) and
# run the regular 3.13t (scripts/cpython.sh) with GCC's libtsan preloaded
# (plus a shim for the __tsan_mem* entry points newer LLVM emits and GCC 12's
# libtsan lacks): our crates and the C harnesses are instrumented, CPython
# is not (its own synchronisation is invisible: reports whose other side is
# inside CPython may be false positives).
#
# Reports ordered only by a std::sync::Mutex (the type cache's LOCK: its
# `filled` list) are false positives of the uninstrumented std, as are
# reports on the seqlock entries (GCC's TSan does not model
# atomic_thread_fence, which the header's cache probe uses).
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

TRIPLE=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR="$ROOT/target/tsan"
TESTS=${TSAN_TESTS:-"test_nostate_threads.py test_concurrency.py test_type_cache.py"}

PRELOAD=""
if [ "${TSAN_CPYTHON:-1}" = 0 ]; then
    log "tsan: regular CPython 3.13t with libtsan preloaded (TSAN_CPYTHON=0)"
    flavor=""
    libtsan=$(gcc -print-file-name=libtsan.so 2>/dev/null)
    [ -e "$libtsan" ] || libtsan=$(ls /usr/lib/x86_64-linux-gnu/libtsan.so.* 2>/dev/null | head -1)
    shim="$CARGO_TARGET_DIR/tsan_mem_shim.so"
    mkdir -p "$CARGO_TARGET_DIR"
    printf '%s\n' '#include <string.h>' \
        'void *__tsan_memset(void *s, int c, size_t n) { return memset(s, c, n); }' \
        'void *__tsan_memcpy(void *d, const void *s, size_t n) { return memcpy(d, s, n); }' \
        'void *__tsan_memmove(void *d, const void *s, size_t n) { return memmove(d, s, n); }' >"$shim.c"
    if [ ! -e "$libtsan" ] || ! gcc -O1 -shared -fPIC "$shim.c" -o "$shim"; then
        echo "tsan: 0 passed, 1 failed (no libtsan, or the shim does not build)"
        exit 1
    fi
    PRELOAD="$libtsan $shim"
else
    log "tsan: CPython 3.13t with --with-thread-sanitizer (scripts/cpython.sh, flavour tsan)"
    flavor=tsan
fi
if ! py=$(EXTENSIBLETYPE_CPYTHON_FLAVOR=$flavor bash scripts/cpython.sh | tail -1) || [ ! -x "$py" ]; then
    echo "tsan: 0 passed, 1 failed (no CPython 3.13t${flavor:+ ($flavor)}; see scripts/cpython.sh output)"
    exit 1
fi
prefix=$(cd "$(dirname "$py")/.." && pwd)
supp="$prefix/share/extensibletype-tsan/suppressions_free_threading.txt"
reports_dir=/tmp/extensibletype-tsan-reports
rm -rf "$reports_dir" && mkdir -p "$reports_dir"
# Every process (pytest and the tests' subprocesses) writes its reports to
# $reports_dir/report.<pid>.
export TSAN_OPTIONS="halt_on_error=0:report_signal_unsafe=0:second_deadlock_stack=1:log_path=$reports_dir/report${TSAN_EXTRA_OPTIONS:+:$TSAN_EXTRA_OPTIONS}"
[ -f "$supp" ] && TSAN_OPTIONS="$TSAN_OPTIONS:suppressions=$supp"

venv="$ROOT/.venv/3.13t${flavor:+-$flavor}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv" >&2 || { echo "tsan: 0 passed, 1 failed (venv)"; exit 1; }
fi
vpy="$venv/bin/python"
"$vpy" -m pip show -q pytest >/dev/null 2>&1 || "$vpy" -m pip install -q pytest >&2

log "tsan: build the extension (-Zsanitizer=thread, pyo3-ffi $PYO3_FT313)"
src=$(tree_with_pyo3 "$PYO3_FT313") || { echo "tsan: 0 passed, 1 failed (pyo3-ffi $PYO3_FT313 tree)"; exit 1; }
build_log=/tmp/extensibletype-tsan-build.log
if ! (cd "$src" && env RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=thread -Cunsafe-allow-abi-mismatch=sanitizer" PYO3_PYTHON="$vpy" \
    cargo rustc -p extensibletype-module --release --lib --features extension-module,hooks --target "$TRIPLE") >"$build_log" 2>&1; then
    tail -30 "$build_log" >&2
    echo "tsan: 0 passed, 1 failed (extension build failed)"
    exit 1
fi
stage="$CARGO_TARGET_DIR/stage"
rm -rf "$stage" && mkdir -p "$stage"
cp -rL python/extensibletype "$stage/"
suffix=$("$vpy" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
cp "$CARGO_TARGET_DIR/$TRIPLE/release/lib_core.so" "$stage/extensibletype/_core$suffix"

# -Wno-tsan: GCC warns that TSan does not model atomic_thread_fence.
pre=()
[ -n "$PRELOAD" ] && pre=(LD_PRELOAD="$PRELOAD")
run() { env "${pre[@]}" PYTHONPATH="$stage" CC="cc -fsanitize=thread -Wno-tsan" \
    CARGO_TARGET_DIR="$CARGO_TARGET_DIR" EXTENSIBLETYPE_PYTHON_TAG=3.13t-tsan PYTHON_GIL=0 "$@"; }
if ! run "$vpy" -c "import extensibletype._core as c, sys; sys.exit(not c.__file__.startswith('$stage'))"; then
    echo "tsan: 0 passed, 1 failed (the TSan build does not import)"
    exit 1
fi
log "tsan: pytest $TESTS (TSAN_OPTIONS=$TSAN_OPTIONS)"
py_log=/tmp/extensibletype-tsan-pytest.log
# shellcheck disable=SC2086
(cd python/tests && run "$vpy" -m pytest -q -rs -p no:cacheprovider $TESTS >"$py_log" 2>&1)
tail -5 "$py_log" >&2
passed=$(grep -Eo '[0-9]+ passed' "$py_log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ (failed|error)' "$py_log" | awk '{s+=$1} END {print s+0}')
all_reports=$(cat "$reports_dir"/report.* 2>/dev/null)
reports=$(grep -c 'WARNING: ThreadSanitizer' <<<"$all_reports")
# Reports with a frame in our code (the runtime, the module, the C harnesses
# and header inlines).
ours=$(awk '/WARNING: ThreadSanitizer/{r=1; hit=0} r && /extensibletype|_core|nostate_readers|cache_readers/{hit=1} r && /^SUMMARY: ThreadSanitizer/{if (hit) n++; r=0} END {print n+0}' <<<"$all_reports")
grep '^SUMMARY: ThreadSanitizer' <<<"$all_reports" | sort | uniq -c | sort -rn | head -20 >&2
log "tsan: reports in $reports_dir"
echo "tsan: $passed passed, $failed failed, $reports reports ($ours in extensibletype)"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
