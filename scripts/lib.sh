# Shared by scripts/test.sh and scripts/demo.sh (source it; bash only).
# Sets up a venv per interpreter with the package installed from this tree.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CARGO_TERM_COLOR=never PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf '[extensibletype] %s\n' "$*" >&2; }

# Python packages every venv gets (maturin builds the wheel; the rest are
# what the tests and the demo use).
PY_DEPS=(maturin pytest cython numpy setuptools wheel)
# Only for the 3.11 venv (binary wheels for cp311 linux x86_64): numba, whose
# @cfunc objects set_slots accepts under typed keys, and meson-python + ninja
# for the meson build recipe (tests importorskip them); mypy for
# scripts/typecheck.sh (installed here, with the venv, not by that step while
# other steps run from the venv).
PY_DEPS_311=(numba meson-python ninja mypy)

# A digest of everything that goes into the wheel: reinstall only on change.
# EXTENSIBLETYPE_SOURCE_DIGEST overrides it (scripts/test-forky.sh: no git in the chroot).
source_digest() {
    if [ -n "${EXTENSIBLETYPE_SOURCE_DIGEST:-}" ]; then echo "$EXTENSIBLETYPE_SOURCE_DIGEST"; return; fi
    git -C "$ROOT" ls-files -co --exclude-standard -- src crates include python/extensibletype Cargo.toml Cargo.lock pyproject.toml \
        | sort | (cd "$ROOT" && xargs cat 2>/dev/null) | sha256sum | cut -d' ' -f1
}

# Cargo features of the module for test and demo builds (not release
# wheels, scripts/wheels.sh): `hooks` adds the test/bench hooks of `_arrays`
# (`_set_threads`, `_bench_view_cost`, `_bench_dlpack_cost`) that the suite
# and examples/arrays_demo.py call.
TEST_FEATURES=hooks

# pyo3-ffi that free-threaded CPython 3.13 needs (0.29+ refuse it); the
# root Cargo.lock holds the newest.
PYO3_FT313=$(sed -n 's/^PYO3_FT313 = "\(.*\)"$/\1/p' "$ROOT/build_backend/extensibletype_build.py") # one place: the build backend

# tree_with_pyo3 VERSION: a copy of the tracked tree under
# target/trees/pyo3-VERSION whose Cargo.lock is moved to pyo3-ffi (and
# pyo3-build-config) VERSION with `cargo update --precise`. Refreshed when
# the sources change. Prints its path.
tree_with_pyo3() {
    local v=$1 dst="$ROOT/target/trees/pyo3-$1" digest
    digest=$(source_digest)
    if [ "$(cat "$dst/.digest" 2>/dev/null)" != "$digest" ]; then
        rm -rf "$dst" && mkdir -p "$dst" || return 1
        (cd "$ROOT" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$dst" -xf - || return 1
        local old
        old=$(grep -A1 '^name = "pyo3-build-config"' "$dst/Cargo.lock" | sed -n 2p | cut -d'"' -f2)
        if [ "$old" != "$v" ]; then
            (cd "$dst" && cargo update -q -p pyo3-ffi --precise "$v" &&
                cargo update -q -p "pyo3-build-config@$old" --precise "$v") >&2 || return 1
        fi
        echo "$digest" >"$dst/.digest"
    fi
    echo "$dst"
}

# Build the abi3 wheel once per source digest, then install it with $1.
install_abi3() {
    local vpy=$1 digest=$2 dist="$ROOT/target/wheels-abi3/$2"
    if ! ls "$dist"/*abi3*.whl >/dev/null 2>&1; then
        log "maturin build --features abi3,$TEST_FEATURES"
        rm -rf "$ROOT/target/wheels-abi3"
        CARGO_TARGET_DIR="$ROOT/target/abi3" "$vpy" -m maturin build -q --release --features "abi3,$TEST_FEATURES" -i "$vpy" --out "$dist" >&2 || return 1
    fi
    "$vpy" -m pip install -q --no-deps --force-reinstall "$dist"/*abi3*.whl >&2
}

# Build the abi3t wheel (PEP 803; pyo3-ffi 0.30's abi3t-py315 feature, with
# CPython 3.15) once per source digest, then install it with $1.
install_abi3t() {
    local vpy=$1 digest=$2 dist="$ROOT/target/wheels-abi3t/$2"
    if ! ls "$dist"/*abi3t*.whl >/dev/null 2>&1; then
        log "maturin build --features pyo3-ffi/abi3t-py315,$TEST_FEATURES"
        rm -rf "$ROOT/target/wheels-abi3t"
        CARGO_TARGET_DIR="$ROOT/target/abi3t" "$vpy" -m maturin build -q --release --features "pyo3-ffi/abi3t-py315,$TEST_FEATURES" -i "$vpy" --out "$dist" >&2 || return 1
    fi
    "$vpy" -m pip install -q --no-deps --force-reinstall "$dist"/*abi3t*.whl >&2
}

# prepare_venv TAG PYTHON: .venv/TAG with PY_DEPS and the package (`pip
# install .`, the abi3 wheel for TAG *-abi3, the abi3t wheel for TAG
# *-abi3t). Prints the venv's python.
prepare_venv() {
    local tag=$1 py=$2 venv="$ROOT/.venv/$1" digest dep missing
    if [ ! -x "$venv/bin/python" ]; then
        "$py" -m venv "$venv" >&2 || { log "venv creation failed for $tag"; return 1; }
    fi
    local vpy="$venv/bin/python"
    local deps=("${PY_DEPS[@]}")
    [ "$tag" = 3.11 ] && deps+=("${PY_DEPS_311[@]}")
    # One interpreter start for all of them (`pip show` takes seconds each).
    read -r -a missing < <("$vpy" -c '
import importlib.metadata as m, sys
def absent(d):
    try:
        m.distribution(d)
    except m.PackageNotFoundError:
        return True
print(*[d for d in sys.argv[1:] if absent(d)])' "${deps[@]}")
    if [ ${#missing[@]} -gt 0 ]; then
        log "pip install ${missing[*]} (python $tag)"
        # One at a time on failure: a package without a wheel for this
        # interpreter only skips the tests that need it (with a reason).
        "$vpy" -m pip install -q "${missing[@]}" >&2 ||
            for dep in "${missing[@]}"; do "$vpy" -m pip install -q "$dep" >&2 || log "could not install $dep for $tag"; done
    fi
    digest=$(source_digest)
    if [ "$(cat "$venv/.extensibletype-digest" 2>/dev/null)" != "$digest" ]; then
        case $tag in
            *-abi3) install_abi3 "$vpy" "$digest" ;;
            *-abi3t) install_abi3t "$vpy" "$digest" ;;
            *)
                # Exactly what a user runs: `pip install .` (on free-threaded
                # 3.13 the build backend moves a copy of the tree to pyo3-ffi
                # 0.28: build_backend/extensibletype_build.py).
                log "pip install . (python $tag)"
                PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$ROOT/target/py$tag" MATURIN_PEP517_ARGS="--features $TEST_FEATURES" \
                    "$vpy" -m pip install -q --no-build-isolation --no-deps --force-reinstall "$ROOT" >&2
                ;;
        esac || { log "build/install failed for $tag"; return 1; }
        echo "$digest" >"$venv/.extensibletype-digest"
    fi
    echo "$vpy"
}
