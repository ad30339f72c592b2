#!/usr/bin/env bash
# The Python suite on CPython 3.14 and 3.15 (Debian forky binaries in the
# chroot of scripts/forky.sh): for each, a version-specific build (`pip
# install .`, venv .venv/forky-<v>) and the abi3 wheel (the one scripts/test.sh
# builds on the host for 3.12/3.13, installed in .venv/forky-<v>-abi3; built
# here only if missing), and on 3.15 the abi3t wheel (PEP 803, built there
# with pyo3-ffi 0.30's abi3t-py315). Venvs and cargo target dirs carry a `forky-` prefix,
# so they never collide with the host's.
#
# stdout: one line per run, "python forky-<tag>: N passed, N failed (version)",
# or "python forky-<tag>: unavailable (reason)" (counted as one failure),
# and a note naming the interpreters it cannot provide.
# Progress goes to stderr.
set -uo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# EXTENSIBLETYPE_FORKY_TAGS="3.15 3.15-abi3" runs a subset.
read -r -a TAGS <<<"${EXTENSIBLETYPE_FORKY_TAGS:-3.14 3.15 3.14-abi3 3.15-abi3 3.15-abi3t}"
echo "python 3.14t/3.15t: not provided (the Debian mirror serves python3.14/3.15 binaries only, no sources to build a free-threaded one; 3.13t is the free-threaded test)"
why=
if [ "$(id -u)" -ne 0 ]; then
    why="needs root: debootstrap, chroot and bind mounts"
elif ! bash scripts/forky.sh >/dev/null 2>/tmp/extensibletype-forky.log; then
    why=$(grep -m1 ERROR /tmp/extensibletype-forky.log | sed 's/^\[forky.sh\] ERROR: //')
    why=${why:-scripts/forky.sh failed, see /tmp/extensibletype-forky.log}
fi
if [ -n "$why" ]; then
    for tag in "${TAGS[@]}"; do echo "python forky-$tag: unavailable ($why)"; done
    exit 0
fi

export EXTENSIBLETYPE_SOURCE_DIGEST
EXTENSIBLETYPE_SOURCE_DIGEST=$(source_digest)
for tag in "${TAGS[@]}"; do
    v=${tag%%-*}
    out="/tmp/extensibletype-pytest-forky-$tag.log"
    log "python forky-$tag (chroot)"
    # Inside the chroot: venv + package, then pytest; the last line is the version.
    bash scripts/forky.sh run bash -c '
        source scripts/lib.sh
        vpy=$(prepare_venv "forky-$1" "/usr/bin/python$2") || { echo "BUILD-FAILED"; exit 0; }
        cd python/tests && CARGO_TARGET_DIR="$ROOT/target/pyforky-$1" EXTENSIBLETYPE_PYTHON_TAG="forky-$1" \
            "$vpy" -m pytest -q -rs -p no:cacheprovider . 2>&1
        echo "VERSION $("$vpy" -c "import sys; print(sys.version.split()[0])")"
    ' sh "$tag" "$v" >"$out" 2>&1
    tail -3 "$out" >&2
    if grep -q '^BUILD-FAILED' "$out"; then
        echo "python forky-$tag: 0 passed, 1 failed (build/install failed, see $out)"
        continue
    fi
    line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|no tests ran|error' "$out" | tail -1)
    p=$(grep -Eo '[0-9]+ passed' <<<"$line" | grep -Eo '[0-9]+' || echo 0)
    f=$(grep -Eo '[0-9]+ (failed|error)' <<<"$line" | grep -Eo '[0-9]+' | awk '{s+=$1} END {print s+0}')
    if [ "${p:-0}" = 0 ] && [ "${f:-0}" = 0 ]; then f=1; fi
    echo "python forky-$tag: ${p:-0} passed, ${f:-0} failed ($(sed -n 's/^VERSION //p' "$out" | tail -1) in the forky chroot)"
done
