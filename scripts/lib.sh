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

# A digest of everything that goes into the wheel: the names and contents
# of the files git lists (tracked, and untracked but not ignored) under
# DIGEST_PATHS. Reinstall only on change; the source half of a cached
# wheel's key (wheel_cache_*). EXTENSIBLETYPE_SOURCE_DIGEST overrides it:
# the forky chroot has no git, so scripts/forky.sh passes the host's in.
# Without git (or outside a git checkout) and without the override it fails
# loudly: a digest of no files would match every tree.
DIGEST_PATHS=(src crates include python/extensibletype build_backend Cargo.toml Cargo.lock pyproject.toml)
source_digest() {
    if [ -n "${EXTENSIBLETYPE_SOURCE_DIGEST:-}" ]; then echo "$EXTENSIBLETYPE_SOURCE_DIGEST"; return; fi
    local files
    if ! command -v git >/dev/null 2>&1 ||
        ! files=$(git -C "$ROOT" ls-files -co --exclude-standard -- "${DIGEST_PATHS[@]}") || [ -z "$files" ]; then
        log "source_digest: git cannot list the sources of $ROOT (git not installed, or not a git checkout);" \
            "set EXTENSIBLETYPE_SOURCE_DIGEST (scripts/forky.sh run does)"
        return 1
    fi
    # "sha256  name" a file, sorted: a rename or a deleted file changes it too.
    printf '%s\n' "$files" | LC_ALL=C sort -u | (cd "$ROOT" && tr '\n' '\0' | xargs -0 sha256sum 2>&1) |
        sha256sum | cut -d' ' -f1
}

# Built wheels, shared by every checkout of this machine (a fresh clone of an
# unchanged tree installs them instead of compiling):
# WHEEL_CACHE/KIND/DIGEST/NAME.whl. KIND names the build (wheel_kind:
# interpreter tag or abi3/abi3t, cargo features, a hash of `rustc -vV` and
# of RUSTFLAGS/CC/CFLAGS/CARGO_PROFILE_*, platform, the builder's glibc),
# DIGEST is source_digest: a tree whose sources differ has another
# key, so it never installs a stale wheel. The newest WHEEL_CACHE_KEEP
# digests of each KIND are kept (a cache hit counts as new), older ones are
# deleted when a wheel is added, and so is a KIND unused for 30 days.
WHEEL_CACHE=${EXTENSIBLETYPE_WHEEL_CACHE:-$HOME/.cache/extensibletype/wheels}
WHEEL_CACHE_KEEP=${EXTENSIBLETYPE_WHEEL_CACHE_KEEP:-3}

# wheel_kind PYTHON FLAVOUR FEATURES: the KIND of a build with PYTHON
# (FLAVOUR cp: for that interpreter, e.g. cp311, cp313t; abi3 or abi3t) in
# this environment.
wheel_kind() {
    "$1" - "$2" "$3" <<'PY'
import os, re, sys, sysconfig
flavour, features = sys.argv[1:]
if flavour == "cp":
    flavour = "cp%d%d%s" % (*sys.version_info[:2], getattr(sys, "abiflags", ""))
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
except (AttributeError, ValueError, OSError):
    libc = ""
libc = libc.replace(" ", "") if libc.startswith("glibc ") else "libc-unknown"
# The toolchain and the flags that change the code built, as a short hash.
import hashlib, subprocess
try:
    rustc = subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout
except OSError:
    rustc = "no rustc"
env = sorted((k, v) for k, v in os.environ.items()
             if k in ("RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CC", "CFLAGS",
                      "EXTENSIBLETYPE_BENCH_RUST_PORT")  # read by crates/extensibletype-module/build.rs
             or k.startswith(("CARGO_PROFILE_", "PYO3_")))
tc = "tc" + hashlib.sha256(repr((rustc, env)).encode()).hexdigest()[:10]
print(re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join([flavour, features.replace(",", "+"), tc, sysconfig.get_platform(), libc])))
PY
}

# wheel_cache_get KIND DIGEST: print the cached wheel, or fail. An abi3 or
# abi3t wheel built against an older glibc runs here too (the host's, in the
# forky chroot), so it counts.
wheel_cache_get() {
    local kind=$1 digest=$2 d v mine=${1##*-glibc} w
    local -a dirs=("$WHEEL_CACHE/$kind/$digest")
    case $kind in abi3*-glibc*) dirs+=("$WHEEL_CACHE/${kind%-glibc*}"-glibc*/"$digest") ;; esac
    for d in "${dirs[@]}"; do
        # Only a kind with a glibc version compares versions (without one,
        # v and mine are the whole path and kind, which never compare so).
        v=${d%/*}
        v=${v##*-glibc}
        [ "$d" = "${dirs[0]}" ] || [ "$v" = "$mine" ] ||
            [ "$(printf '%s\n' "$v" "$mine" | sort -V | head -1)" = "$v" ] || continue
        for w in "$d"/*.whl; do
            [ -f "$w" ] || continue
            touch "$d" "${d%/*}"
            echo "$w"
            return 0
        done
    done
    return 1
}

# wheel_cache_put KIND DIGEST OUT: move the wheel that a build left in the
# directory OUT into the cache, drop the oldest of KIND beyond
# WHEEL_CACHE_KEEP; print the cached wheel.
wheel_cache_put() {
    local kind=$1 digest=$2 out=$3 dst="$WHEEL_CACHE/$1/$2" w
    w=$(ls "$out"/*.whl 2>/dev/null)
    if [ "$(printf '%s\n' "$w" | grep -c .)" != 1 ]; then
        log "wheel_cache_put: expected one wheel in $out, found: ${w:-none}"
        rm -rf "$out"
        return 1
    fi
    mkdir -p "$WHEEL_CACHE/$kind" || return 1
    # Atomic (readers see no half-written wheel), and never over an entry
    # another job of the same sources put meanwhile (it may be installing
    # from it): keep that one. An entry without a wheel is debris: replace it.
    if ! mv -T "$out" "$dst" 2>/dev/null; then
        if ! ls "$dst"/*.whl >/dev/null 2>&1; then
            rm -rf "$dst"
            mv -T "$out" "$dst" || { rm -rf "$out"; return 1; }
        else
            rm -rf "$out"
            w=$(ls "$dst"/*.whl | head -1)
        fi
    fi
    ls -1dt "$WHEEL_CACHE/$kind"/*/ | tail -n +"$((WHEEL_CACHE_KEEP + 1))" | while IFS= read -r d; do rm -rf "$d"; done
    # Kinds unused for 30 days (another toolchain, flags, interpreter) and
    # builds interrupted a day ago go too.
    find "$WHEEL_CACHE" -mindepth 1 -maxdepth 1 -type d \( -name '.build.*' -mtime +0 -o ! -name '.build.*' -mtime +30 \) \
        -exec rm -rf {} + 2>/dev/null
    echo "$dst/${w##*/}"
}

# cached_wheel KIND DIGEST WHAT CMD...: the cached wheel, or build it by
# running CMD with the output directory appended (stdout to stderr) and
# cache it. Prints the wheel's path.
cached_wheel() {
    local kind=$1 digest=$2 what=$3 out before
    shift 3
    wheel_cache_get "$kind" "$digest" && return 0
    mkdir -p "$WHEEL_CACHE" && out=$(mktemp -d "$WHEEL_CACHE/.build.XXXXXX") || return 1
    log "$what (wheel cache miss: $kind)"
    before=$(source_digest 2>/dev/null)
    "$@" "$out" >&2 || { rm -rf "$out"; return 1; }
    # Sources edited during the build: the wheel is not that of `digest`;
    # install it this once (the venv's digest then differs next time) but
    # cache nothing, or reverting the edit would install it as `digest`'s.
    # (Left in .build.*, removed a day later.)
    if [ "$(source_digest 2>/dev/null)" != "$before" ]; then
        log "$what: sources changed during the build; wheel not cached"
        ls "$out"/*.whl | head -1
        return 0
    fi
    wheel_cache_put "$kind" "$digest" "$out"
}

# Cargo features of the module for test and demo builds (not release
# wheels, scripts/wheels.sh): `hooks` adds the test/bench hooks of `_arrays`
# (`_set_threads`, `_set_par_min`, `_set_stream_min`, `_bench_view_cost`,
# `_bench_dlpack_cost`) that the suite
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
    digest=$(source_digest) || return 1
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

# Build a limited-API wheel once per source digest (wheel cache), then install
# it with $1. $3 is the kind, abi3 or abi3t (PEP 803: pyo3-ffi 0.30's
# abi3t-py315 feature, with CPython 3.15); each has its own target dir.
install_limited() {
    local vpy=$1 digest=$2 abi=$3 feature kind whl
    case $abi in
        abi3) feature=abi3 ;;
        abi3t) feature=pyo3-ffi/abi3t-py315 ;;
        *) echo "install_limited: unknown kind $abi" >&2; return 2 ;;
    esac
    kind=$(wheel_kind "$vpy" "$abi" "$feature,$TEST_FEATURES") &&
        whl=$(cached_wheel "$kind" "$digest" "maturin build --features $feature,$TEST_FEATURES" \
            env CARGO_TARGET_DIR="$ROOT/target/$abi" "$vpy" -m maturin build -q --release --features "$feature,$TEST_FEATURES" -i "$vpy" --out) &&
        "$vpy" -m pip install -q --no-deps --force-reinstall "$whl" >&2
}

# The wheel `pip install .` would build for $1 (on free-threaded 3.13 the
# build backend moves a copy of the tree to pyo3-ffi 0.28:
# build_backend/extensibletype_build.py), built once per source digest (wheel
# cache): `pip wheel .` then `pip install` of it, which is what `pip install .` does.
install_tree() {
    local vpy=$1 digest=$2 tag=$3 kind whl
    kind=$(wheel_kind "$vpy" cp "$TEST_FEATURES") &&
        whl=$(cached_wheel "$kind" "$digest" "pip wheel . (python $tag)" \
            env PATH="${vpy%/python}:$PATH" CARGO_TARGET_DIR="$ROOT/target/py$tag" MATURIN_PEP517_ARGS="--features $TEST_FEATURES" \
            "$vpy" -m pip wheel -q --no-build-isolation --no-deps "$ROOT" -w) &&
        "$vpy" -m pip install -q --no-deps --force-reinstall "$whl" >&2
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
    digest=$(source_digest) || return 1
    if [ "$(cat "$venv/.extensibletype-digest" 2>/dev/null)" != "$digest" ]; then
        case $tag in
            *-abi3) install_limited "$vpy" "$digest" abi3 ;;
            *-abi3t) install_limited "$vpy" "$digest" abi3t ;;
            *) install_tree "$vpy" "$digest" "$tag" ;;
        esac || { log "build/install failed for $tag"; return 1; }
        echo "$digest" >"$venv/.extensibletype-digest"
    fi
    echo "$vpy"
}
