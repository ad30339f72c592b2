#!/usr/bin/env bash
# Release artefacts into dist/ (or --out DIR):
#
#   extensibletype-<v>-cp312-abi3-manylinux_2_28_x86_64.whl   CPython 3.12 and later
#                                                              (feature abi3: limited API 3.12)
#   extensibletype-<v>-cp311-cp311-manylinux_2_28_x86_64.whl  CPython 3.11 (abi3 needs 3.12)
#   extensibletype-<v>-cp313-cp313t-manylinux_2_28_x86_64.whl free-threaded 3.13t: only with
#                                                              --only cp313t (builds CPython 3.13t
#                                                              first, ~10 min, cached), or when
#                                                              that build is already cached
#   extensibletype-<v>.tar.gz                                  the sdist
#
# Wheels are stripped (`strip = true` in pyproject.toml: the abi3 `.so` is
# about 1.2 MB instead of 8 MB with debug info); `cargo build --release`
# keeps symbols for profiling.
#
# The abi3t wheel (PEP 803, one binary for 3.15 and 3.15t) needs a CPython
# 3.15 to build against; scripts/test-forky.sh builds and tests it in the
# Debian forky chroot (scripts/lib.sh install_limited abi3t), not here.
#
# Wheels are linked with zig (`maturin build --zig --compatibility
# manylinux_2_28`), so they run on glibc 2.28+ systems (RHEL 8, Debian 10)
# although this machine has a newer glibc. maturin and zig (PyPI's
# `ziglang`) live in a dedicated venv, .venv/wheels. The script checks each
# wheel's tag and the newest glibc symbol its extension needs.
#
# Usage: bash scripts/wheels.sh [--out DIR] [--only abi3|cp311|cp313t|sdist]
# Takes about 1-2 minutes per wheel on a 2-core machine (cargo caches under
# target/wheels-*).
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

OUT="$ROOT/dist"
ONLY=""
while [ $# -gt 0 ]; do
    case $1 in
        --out) OUT=$(realpath -m "$2"); shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
GLIBC_MAX=2.28

# --- the build venv: maturin + ziglang ----------------------------------------
BVENV="$ROOT/.venv/wheels"
host_py=$(command -v python3.11 || command -v python3)
py311=$(command -v python3.11 || true) # before .venv/wheels goes on PATH
if [ ! -x "$BVENV/bin/python" ]; then
    "$host_py" -m venv "$BVENV"
fi
if ! "$BVENV/bin/python" -m pip show -q maturin ziglang >/dev/null 2>&1; then
    log "pip install maturin ziglang (.venv/wheels)"
    "$BVENV/bin/python" -m pip install -q "maturin>=1.9.3,<2" ziglang >&2
fi
export PATH="$BVENV/bin:$PATH" # maturin finds zig (python -m ziglang) through it

# --- what to build -------------------------------------------------------------
# name|interpreter|extra maturin arguments
py312=$(ls -d "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V | tail -1 || true)
# Building CPython 3.13t takes minutes: only when asked for, else if cached.
ft_cached="$HOME/.cache/extensibletype/cpython-3.13t" # scripts/cpython.sh CACHE_ROOT
ft=""
if [ "$ONLY" = cp313t ] || [ -f "$ft_cached/.extensibletype-build-complete" ]; then
    ft=$(bash scripts/cpython.sh 2>/dev/null | tail -1 || true)
fi
BUILDS=()
BUILDS+=("abi3|${py312:-$host_py}|--features abi3")
if [ -n "$py311" ]; then
    BUILDS+=("cp311|$py311|")
else
    log "no python3.11 on PATH: skipping the cp311 wheel"
fi
if [ -n "$ft" ] && [ -x "$ft" ]; then
    BUILDS+=("cp313t|$ft|")
else
    log "no free-threaded 3.13t interpreter cached: skipping the cp313t wheel (--only cp313t builds one)"
fi

mkdir -p "$OUT"
built=()

check_wheel() { # check_wheel WHEEL: tag and glibc symbol versions
    local whl=$1 tmp newest
    case $(basename "$whl") in
        *manylinux_2_28*) ;;
        *) log "$(basename "$whl"): not tagged manylinux_2_28"; return 1 ;;
    esac
    tmp=$(mktemp -d)
    "$BVENV/bin/python" -m zipfile -e "$whl" "$tmp"
    newest=$(find "$tmp" -name '*.so' -exec objdump -T {} \; | grep -Eo 'GLIBC_[0-9]+\.[0-9]+' \
        | sed 's/GLIBC_//' | sort -V | tail -1)
    rm -rf "$tmp"
    if [ -n "$newest" ] && [ "$(printf '%s\n%s\n' "$newest" "$GLIBC_MAX" | sort -V | tail -1)" != "$GLIBC_MAX" ]; then
        log "$(basename "$whl"): needs GLIBC_$newest > $GLIBC_MAX"
        return 1
    fi
    log "$(basename "$whl"): ok (newest glibc symbol: GLIBC_${newest:-none})"
}

for entry in "${BUILDS[@]}"; do
    IFS='|' read -r name py extra <<<"$entry"
    [ -z "$ONLY" ] || [ "$ONLY" = "$name" ] || continue
    log "wheel $name ($py)"
    stage=$(mktemp -d)
    # Free-threaded 3.13 needs pyo3-ffi 0.28: build from a copy of the tree
    # whose Cargo.lock holds it (lib.sh).
    src=$ROOT
    if [ "$name" = cp313t ]; then src=$(tree_with_pyo3 "$PYO3_FT313") || exit 1; fi
    # shellcheck disable=SC2086
    (cd "$src" && CARGO_TARGET_DIR="$ROOT/target/wheels-$name" maturin build --release --zig \
        --compatibility manylinux_2_28 -i "$py" $extra --out "$stage") >&2
    for whl in "$stage"/*.whl; do
        check_wheel "$whl"
        mv -f "$whl" "$OUT/"
        built+=("$OUT/$(basename "$whl")")
    done
    rm -rf "$stage"
done

if [ -z "$ONLY" ] || [ "$ONLY" = sdist ]; then
    log "sdist"
    stage=$(mktemp -d)
    maturin sdist --out "$stage" >&2
    for sd in "$stage"/*.tar.gz; do
        mv -f "$sd" "$OUT/"
        built+=("$OUT/$(basename "$sd")")
    done
    rm -rf "$stage"
fi

printf '%s\n' "${built[@]}"
