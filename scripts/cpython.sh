#!/usr/bin/env bash
# Provide a free-threaded CPython 3.13 ("3.13t", --disable-gil, pip via
# ensurepip) and print the path of its python3.13t executable as the LAST line
# of stdout.  All progress output goes to stderr.
#
# Source: the upstream tarball (.orig.tar.xz) of Debian's `python3.13` source
# package from the `trixie` suite, fetched with `apt-get source` from the
# Debian mirror already named in this machine's apt sources.  A private apt
# state directory is used, so the system's apt configuration is not modified
# and no trixie binaries are ever installed.
#
# Install location: ~/.cache/extensibletype/cpython-3.13t (cached; a finished
# build is marked by a stamp file written only after everything succeeded).
#
# Exit status: non-zero (with a message on stderr) when 3.13t cannot be
# provided, e.g. no apt or no network.  Callers treat that as "unavailable".
#
# EXTENSIBLETYPE_CPYTHON_FLAVOR=tsan (scripts/tsan.sh): the same source
# configured --with-thread-sanitizer, installed in cpython-3.13t-tsan, with
# CPython's TSan suppressions copied to share/extensibletype-tsan/.
set -euo pipefail

# From here on, stdout is reserved for the final path: send everything else to
# stderr and keep the real stdout on fd 3.
exec 3>&1 1>&2

FLAVOR="${EXTENSIBLETYPE_CPYTHON_FLAVOR:-}"
case "$FLAVOR" in
    "") NAME="cpython-3.13t"; EXTRA_CONFIGURE=() ;;
    tsan) NAME="cpython-3.13t-tsan"; EXTRA_CONFIGURE=(--with-thread-sanitizer) ;;
    *) printf '[cpython.sh] ERROR: unknown EXTENSIBLETYPE_CPYTHON_FLAVOR=%s (known: tsan)\n' "$FLAVOR" >&2; exit 1 ;;
esac
CACHE_ROOT="${HOME}/.cache/extensibletype"
PREFIX="${CACHE_ROOT}/${NAME}"
PY="${PREFIX}/bin/python3.13t"
STAMP="${PREFIX}/.extensibletype-build-complete"
LOCK="${CACHE_ROOT}/${NAME}.lock"
SRC_PKG="python3.13"
SUITE="trixie"
KEYRING="/usr/share/keyrings/debian-archive-keyring.gpg"

log() { printf '[cpython.sh] %s\n' "$*" >&2; }
die() {
    printf '[cpython.sh] ERROR: %s\n' "$*" >&2
    printf '[cpython.sh] free-threaded CPython 3.13t is unavailable\n' >&2
    exit 1
}

# A usable install: stamp present, binary runs, it is a free-threaded build
# (sys._is_gil_enabled exists, Py_GIL_DISABLED=1) and pip works.
install_ok() {
    [[ -f "$STAMP" && -x "$PY" ]] || return 1
    "$PY" -I -c '
import sys, sysconfig
assert sys.version_info[:2] == (3, 13), sys.version
assert hasattr(sys, "_is_gil_enabled")
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1
' >/dev/null 2>&1 || return 1
    "$PY" -I -m pip --version >/dev/null 2>&1 || return 1
}

# ---------------------------------------------------------------------------
# 1. Fast path: already built.
# ---------------------------------------------------------------------------
if install_ok; then
    printf '%s\n' "$PY" >&3
    exit 0
fi

# ---------------------------------------------------------------------------
# 2. Serialise concurrent builds, then re-check (another run may have
#    finished the build while we waited for the lock).
# ---------------------------------------------------------------------------
mkdir -p "$CACHE_ROOT"
exec 9>"$LOCK"
flock 9
if install_ok; then
    printf '%s\n' "$PY" >&3
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "apt-get not found (this script needs a Debian-based system)"

# Run privileged apt commands directly as root, else through passwordless sudo.
if [[ "$(id -u)" -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    SUDO=()   # only needed if build dependencies are missing (checked below)
fi

WORK="$(mktemp -d "${CACHE_ROOT}/build.XXXXXX")"
cleanup() {
    if [[ "${KEEP_BUILD:-0}" == 1 ]]; then
        log "keeping build directory ${WORK}"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# ---------------------------------------------------------------------------
# 3. Find the Debian mirror named by the existing apt sources.
#    Prints "URI SUITE" for each enabled deb/deb-src entry, from one-line
#    *.list files and deb822 *.sources files.
# ---------------------------------------------------------------------------
# shellcheck source=scripts/debian-mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/debian-mirror.sh"

MIRROR="$(find_mirror)" || die "no Debian mirror found in /etc/apt/sources.list{,.d/*}"
log "Debian mirror from apt sources: ${MIRROR}"

# ---------------------------------------------------------------------------
# 4. Signature verification keyring.  Prefer the machine's archive keyring if
#    it carries the trixie keys.  Otherwise fall back to the machine's keyring
#    plus any separate trixie keyring files: Debian signs each suite's
#    InRelease with the current AND the previous release's archive keys, so an
#    older (bookworm) keyring still verifies trixie.  We never disable
#    verification; if it fails, apt-get update fails and we stop.
# ---------------------------------------------------------------------------
[[ -r "$KEYRING" ]] || die "keyring ${KEYRING} not found (install debian-archive-keyring)"
SIGNED_BY="$KEYRING"
has_trixie_key=0
mkdir -m 700 "${WORK}/gnupg"
if command -v gpg >/dev/null 2>&1 &&
    gpg --batch --no-default-keyring --homedir "${WORK}/gnupg" --keyring "$KEYRING" \
        --list-keys 2>/dev/null | grep -q '13/trixie'; then
    has_trixie_key=1
fi
if [[ "$has_trixie_key" == 0 ]]; then
    for f in /usr/share/keyrings/debian-archive-trixie-*.gpg; do
        [[ -r "$f" ]] && SIGNED_BY="${SIGNED_BY},${f}"
    done
    log "note: ${KEYRING} has no (detectable) trixie key; verifying with: ${SIGNED_BY}"
fi

# ---------------------------------------------------------------------------
# 5. Fetch the trixie source package with a private apt configuration: only
#    our deb-src entry, private lists/cache directories.  Nothing under /etc/apt
#    or /var/lib/apt is changed and no binary package is downloaded.
# ---------------------------------------------------------------------------
APTDIR="${WORK}/apt"
mkdir -p "${APTDIR}/lists/partial" "${APTDIR}/cache/archives/partial" \
    "${APTDIR}/sources.list.d" "${WORK}/dl"
printf 'deb-src [signed-by=%s] %s %s main\n' "$SIGNED_BY" "$MIRROR" "$SUITE" \
    >"${APTDIR}/sources.list"
APT_OPTS=(
    -o "Dir::Etc::SourceList=${APTDIR}/sources.list"
    -o "Dir::Etc::SourceParts=${APTDIR}/sources.list.d"
    -o "Dir::State::Lists=${APTDIR}/lists"
    -o "Dir::Cache=${APTDIR}/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    # The _apt sandbox user cannot write into our private directories; run
    # the download as the invoking user instead (what apt would fall back to).
    -o "APT::Sandbox::User=$(id -un)"
)

log "fetching ${SRC_PKG} source index for ${SUITE}"
apt-get "${APT_OPTS[@]}" -q update ||
    die "apt-get update for ${MIRROR} ${SUITE} (deb-src) failed (no network or signature problem?)"

log "downloading ${SRC_PKG} source package"
(cd "${WORK}/dl" && apt-get "${APT_OPTS[@]}" -q source --download-only "$SRC_PKG") ||
    die "apt-get source ${SRC_PKG} failed"

shopt -s nullglob
origs=("${WORK}/dl/${SRC_PKG}"_*.orig.tar.{xz,gz,bz2})  # not the .asc
shopt -u nullglob
((${#origs[@]} == 1)) || die "expected exactly one ${SRC_PKG} .orig tarball, found ${#origs[@]}"
log "upstream tarball: $(basename "${origs[0]}")"

# ---------------------------------------------------------------------------
# 6. Build dependencies (from the machine's normal apt sources): only what
#    the compiler toolchain, pip (ssl, zlib, bz2/lzma for archives) and
#    ctypes (libffi) need.  `apt-get update` only if the first install fails.
# ---------------------------------------------------------------------------
DEPS=(gcc make libc6-dev pkg-config xz-utils
    libssl-dev libffi-dev zlib1g-dev libbz2-dev liblzma-dev)
missing=()
for p in "${DEPS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$p")
done
if ((${#missing[@]})); then
    log "installing build dependencies: ${missing[*]}"
    if [[ "$(id -u)" -ne 0 && ${#SUDO[@]} -eq 0 ]]; then
        die "missing build dependencies (${missing[*]}) and not root / no passwordless sudo"
    fi
    apt_install() {
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get -q install -y --no-install-recommends "${missing[@]}"
    }
    if ! apt_install; then
        log "install failed; running apt-get update and retrying"
        "${SUDO[@]}" apt-get -q update || die "apt-get update failed"
        apt_install || die "could not install build dependencies: ${missing[*]}"
    fi
fi

# ---------------------------------------------------------------------------
# 7. Unpack the upstream sources (Debian patches are deliberately not applied:
#    they target Debian's multiarch /usr layout, not a private prefix).
# ---------------------------------------------------------------------------
SRC="${WORK}/src"
mkdir -p "$SRC"
tar -xf "${origs[0]}" -C "$SRC" --strip-components=1
[[ -x "${SRC}/configure" ]] || die "unpacked tarball has no configure script"

# ---------------------------------------------------------------------------
# 8. Configure, build, install.  Any previous partial install (no stamp) is
#    removed first.  Static libpython (no --enable-shared), so no rpath needed.
# ---------------------------------------------------------------------------
rm -rf "$PREFIX"
cd "$SRC"
log "configuring (free-threaded${FLAVOR:+, $FLAVOR}, prefix ${PREFIX})"
./configure --disable-gil --prefix="$PREFIX" --with-ensurepip=install "${EXTRA_CONFIGURE[@]}" ||
    die "configure failed"
log "building (make -j2)"
make -j2 || die "make failed"
log "installing"
make install || die "make install failed"
if [[ "$FLAVOR" == tsan ]]; then
    mkdir -p "${PREFIX}/share/extensibletype-tsan"
    cp Tools/tsan/*.txt "${PREFIX}/share/extensibletype-tsan/" 2>/dev/null || log "note: no Tools/tsan suppressions in this source"
fi

# ---------------------------------------------------------------------------
# 9. Verify the result, then write the stamp that marks the install complete.
# ---------------------------------------------------------------------------
[[ -x "$PY" ]] || die "${PY} was not installed"
"$PY" -I -c 'import sys, ctypes, ssl, zlib; print(sys.version, "GIL enabled:", sys._is_gil_enabled())' ||
    die "installed python lacks ctypes/ssl/zlib or is not free-threaded"
"$PY" -I -m pip --version || die "pip does not work in ${PY}"
{
    printf 'source=%s\n' "$(basename "${origs[0]}")"
    printf 'mirror=%s suite=%s\n' "$MIRROR" "$SUITE"
    printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"${STAMP}.tmp"
mv "${STAMP}.tmp" "$STAMP"
install_ok || die "post-install check failed"

log "done"
printf '%s\n' "$PY" >&3
