#!/usr/bin/env bash
# Opt-in: the Python suite on CPython 3.11 under valgrind's memcheck, with
# leak checking. Not part of scripts/test.sh (about 2 minutes here, against
# 20 s natively; test modules and pytest arguments pass through).
#
#   bash scripts/memcheck.sh                 # the whole suite
#   bash scripts/memcheck.sh test_runtime.py -k bases
#
# CPython itself reports errors under memcheck (its allocator, interned
# strings and static types live until exit), so the report is filtered: an
# error or definite leak counts against us only when a frame of its stack is
# in the extension (extensibletype's _core module or Rust code). Everything
# else is listed as CPython's own. Installs valgrind with apt-get if missing.
# RSS-flatness tests are skipped (EXTENSIBLETYPE_MEMCHECK=1).
# Last line: "memcheck: N passed, N failed" (failed = pytest failures +
# extension errors). Full log: /tmp/extensibletype-memcheck.log.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if ! command -v valgrind >/dev/null; then
    log "memcheck: installing valgrind"
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q valgrind >&2; else sudo apt-get install -y -q valgrind >&2; fi
fi
command -v valgrind >/dev/null || { echo "memcheck: 0 passed, 1 failed (valgrind not available)"; exit 1; }
vpy=$(prepare_venv 3.11 "$(command -v python3.11 || command -v python3)") || {
    echo "memcheck: 0 passed, 1 failed (could not prepare .venv/3.11)"
    exit 1
}
vg_log=/tmp/extensibletype-memcheck.valgrind.log
py_log=/tmp/extensibletype-memcheck.log
log "memcheck: python 3.11 suite under valgrind (slow)"
t0=$SECONDS
(cd python/tests && env PYTHONMALLOC=malloc EXTENSIBLETYPE_MEMCHECK=1 CARGO_TARGET_DIR="$ROOT/target/py3.11" \
    valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --num-callers=50 --log-file="$vg_log" \
    "$vpy" -m pytest -q -rs -p no:cacheprovider "${@:-.}" >"$py_log" 2>&1)
tail -3 "$py_log" >&2
p=$(grep -Eo '[0-9]+ passed' "$py_log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
f=$(grep -Eo '[0-9]+ (failed|error)' "$py_log" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
ours=$("$vpy" "$ROOT/scripts/memcheck_filter.py" "$vg_log")
log "memcheck: $(tail -1 <<<"$ours") ($((SECONDS - t0)) s)"
n_ours=$(tail -1 <<<"$ours" | grep -Eo '^[0-9]+')
[ "${n_ours:-1}" -gt 0 ] && sed '$d' <<<"$ours" >&2
echo "memcheck: ${p:-0} passed, $(( ${f:-0} + ${n_ours:-1} )) failed"
[ $(( ${f:-0} + ${n_ours:-1} )) -eq 0 ]
