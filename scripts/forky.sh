#!/usr/bin/env bash
# CPython 3.14 and 3.15 (with abi3t, PEP 803) from Debian "forky" binaries, in
# a chroot cached under ~/.cache/extensibletype/forky-root.
#
#   bash scripts/forky.sh            build the root once (cached); print its path
#                                    as the LAST line of stdout
#   bash scripts/forky.sh run CMD..  run CMD inside the root, in the current
#                                    directory (which must be inside this checkout)
#   bash scripts/forky.sh pythons    print the interpreters the root provides,
#                                    one "VERSION|PATH" a line (paths inside the root)
#
# Why a chroot: the Debian mirror serves forky's *binary* python3.14/python3.15
# packages (not their sources, so 3.14t/3.15t cannot be built here), and those
# binaries need forky's libc.  `debootstrap` (installed on the host with
# apt-get when missing; its `sid` script serves forky) builds a minimal root
# with the interpreters, their -dev/-venv packages and gcc/g++.  Nothing else on
# the host changes.
#
# `run` binds /proc, /dev, /sys, the host's Rust toolchain (CARGO_HOME,
# RUSTUP_HOME: the host's cargo runs inside), pip's find-links directory,
# scripts/lib.sh's wheel cache and this checkout at the same paths; it passes
# the host's source digest in (EXTENSIBLETYPE_SOURCE_DIGEST: no git inside).  The mounts are made in a private mount
# namespace (unshare -m), so they vanish with the command whatever way it ends
# and the host's mount table never sees them; without unshare, a trap unmounts
# them.  Concurrent runs are fine (each has its own namespace).
#
# Exit status: non-zero with a message on stderr when the root cannot be
# provided (no debootstrap/apt, no network, not root).  Callers treat that as
# "unavailable".
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_ROOT="${HOME}/.cache/extensibletype"
CHROOT="${CACHE_ROOT}/forky-root"
STAMP="${CHROOT}/.extensibletype-forky-complete"
LOCK="${CACHE_ROOT}/forky-root.lock"
# scripts/lib.sh's wheel cache, bound inside (the abi3 wheel built on the host serves the root too).
WHEEL_CACHE="${EXTENSIBLETYPE_WHEEL_CACHE:-$HOME/.cache/extensibletype/wheels}"
SUITE=forky
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
PACKAGES=python3.14,python3.14-dev,python3.14-venv,python3.15,python3.15-dev,python3.15-venv,gcc,g++,libc6-dev
VERSIONS=(3.14 3.15)

log() { printf '[forky.sh] %s\n' "$*" >&2; }
die() {
    printf '[forky.sh] ERROR: %s\n' "$*" >&2
    printf '[forky.sh] CPython 3.14/3.15 (forky chroot) unavailable\n' >&2
    exit 1
}

# The mirror named by the host's apt sources (shared with cpython.sh).
# shellcheck source=scripts/debian-mirror.sh
source "$ROOT/scripts/debian-mirror.sh"

root_ok() {
    [[ -f "$STAMP" ]] || return 1
    local v
    for v in "${VERSIONS[@]}"; do
        [[ -x "${CHROOT}/usr/bin/python$v" && -f "${CHROOT}/usr/include/python$v/Python.h" ]] || return 1
    done
}

build_root() {
    [[ "$(id -u)" -eq 0 ]] || die "building the chroot needs root (debootstrap, chroot, mount)"
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "installing debootstrap on the host (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends debootstrap >&2 ||
            { apt-get -q update >&2 && DEBIAN_FRONTEND=noninteractive apt-get -q install -y --no-install-recommends debootstrap >&2; } ||
            die "could not install debootstrap"
    fi
    local script=/usr/share/debootstrap/scripts/$SUITE
    [[ -f "$script" ]] || script=/usr/share/debootstrap/scripts/sid   # bookworm's debootstrap has no forky script
    [[ -f "$script" ]] || die "debootstrap has neither a $SUITE nor a sid script"
    local mirror
    mirror=$(find_mirror) || die "no Debian mirror found in the host's apt sources"
    local work="${CACHE_ROOT}/forky-build.$$"
    rm -rf "$work" "${CACHE_ROOT}"/forky-build.*
    log "debootstrap $SUITE from $mirror (about 2 minutes; log: ${CACHE_ROOT}/forky-debootstrap.log)"
    local -a kr=()
    [[ -r "$KEYRING" ]] && kr=(--keyring="$KEYRING")
    if ! debootstrap --variant=minbase "${kr[@]}" --include="$PACKAGES" "$SUITE" "$work" "$mirror" "$script" \
        >"${CACHE_ROOT}/forky-debootstrap.log" 2>&1; then
        tail -5 "${CACHE_ROOT}/forky-debootstrap.log" >&2
        rm -rf "$work"
        die "debootstrap failed"
    fi
    rm -rf "$work/var/cache/apt/archives/"*.deb
    local v
    for v in "${VERSIONS[@]}"; do
        chroot "$work" "/usr/bin/python$v" -c 'import sys, venv, ensurepip, ssl; print(sys.version)' >&2 ||
            { rm -rf "$work"; die "python$v does not run in the new root"; }
    done
    {
        printf 'suite=%s mirror=%s\n' "$SUITE" "$mirror"
        printf 'built=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        for v in "${VERSIONS[@]}"; do chroot "$work" "/usr/bin/python$v" -VV; done
    } >"$work/.extensibletype-forky-complete"
    # Never delete through a bind mount (a fallback-mode run in progress
    # has the host's ~/.cargo and this checkout mounted inside).
    if [[ -e "$CHROOT" ]]; then
        awk -v r="$CHROOT/" 'index($5, r) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo &&
            { rm -rf "$work"; die "$CHROOT has mounts inside (a run in progress?); not replacing it"; }
        rm -rf --one-file-system "$CHROOT"
    fi
    mv "$work" "$CHROOT"
}

ensure_root() {
    root_ok && return 0
    mkdir -p "$CACHE_ROOT"
    exec 9>"$LOCK"
    flock 9
    root_ok || build_root
    exec 9>&-
    root_ok || die "post-build check failed"
}

# Files copied in on every run (cheap): the CA bundle and pip's configuration
# (the package registry needs them), name resolution.
sync_files() {
    local f
    for f in /etc/ssl/certs/ca-certificates.crt /etc/pip.conf /etc/resolv.conf /etc/hosts; do
        [[ -f "$f" ]] || continue
        mkdir -p "${CHROOT}$(dirname "$f")"
        cmp -s "$f" "${CHROOT}$f" 2>/dev/null || cp -L "$f" "${CHROOT}$f"
    done
}

# Directories bound at the same path inside the root.
bind_dirs() {
    local d
    for d in "${CARGO_HOME:-$HOME/.cargo}" "${RUSTUP_HOME:-$HOME/.rustup}" "$ROOT" "$WHEEL_CACHE" ${PIP_FIND_LINKS:-} ${FORKY_EXTRA_BINDS:-}; do
        [[ -d "$d" ]] && printf '%s\n' "$(cd "$d" && pwd -P)"
    done | sort -u
}

# Inside the (private or not) mount namespace: mount, chroot, run.
# Arguments: CWD CMD...
mount_and_run() {
    local cwd=$1 d
    shift
    mount --rbind /proc "$CHROOT/proc"
    mount --rbind /dev "$CHROOT/dev"
    mount --rbind /sys "$CHROOT/sys"
    while read -r d; do
        mkdir -p "$CHROOT$d"
        mount --rbind "$d" "$CHROOT$d"
    done < <(bind_dirs)
    # A curated environment: the host's PATH/venv variables would point at host binaries.
    local -a envv=(HOME="$HOME" LANG=C.UTF-8 TERM="${TERM:-dumb}"
        PATH="${CARGO_HOME:-$HOME/.cargo}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    local name
    while read -r name; do
        envv+=("$name=${!name}")
    done < <(compgen -e | grep -E '^(PIP_|CARGO_|RUSTUP_|RUST|PYO3_|MATURIN_|EXTENSIBLETYPE_|SSL_CERT_|REQUESTS_CA_BUNDLE$|CC$|CXX$|CFLAGS$|LDFLAGS$)' || true)
    local -a cmd=(chroot "$CHROOT" /usr/bin/env -i "${envv[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@")
    if [[ -z "${FORKY__FALLBACK:-}" ]]; then
        "${cmd[@]}"
        return
    fi
    # No private namespace: run the command in the background and wait, so
    # that a signal reaches our trap at once (it forwards the signal; the
    # EXIT trap unmounts). fd 4: our stdin (a background job gets /dev/null).
    exec 4<&0
    "${cmd[@]}" <&4 &
    FORKY__CHILD=$!
    local rc=0
    while :; do
        wait "$FORKY__CHILD" && rc=0 || rc=$?
        kill -0 "$FORKY__CHILD" 2>/dev/null || break
    done
    return "$rc"
}

unmount_all() {
    local m
    # Deepest first; each recursive bind is taken down with umount -R.
    for m in $(bind_dirs | sort -r) /sys /dev /proc; do
        mountpoint -q "$CHROOT$m" 2>/dev/null && umount -R -l "$CHROOT$m" 2>/dev/null || true
    done
}

run_in_root() {
    ensure_root
    sync_files
    local cwd
    cwd=$(pwd -P)
    case "$cwd/" in
        "$(cd "$ROOT" && pwd -P)"/*) ;;
        *) cwd=/ ;;
    esac
    if [[ "${FORKY_NO_UNSHARE:-0}" != 1 ]] && unshare -m --propagation private true 2>/dev/null; then
        # Re-enter this script in a private mount namespace: its mounts die with it.
        exec unshare -m --propagation private bash "${BASH_SOURCE[0]}" __inside "$cwd" "$@"
    fi
    FORKY__FALLBACK=1
    FORKY__CHILD=
    trap unmount_all EXIT
    trap '[[ -n "$FORKY__CHILD" ]] && kill -TERM "$FORKY__CHILD" 2>/dev/null' INT TERM HUP
    local rc=0
    mount_and_run "$cwd" "$@" || rc=$?
    exit "$rc"
}

case "${1:-}" in
    "" | ensure)
        exec 3>&1 1>&2
        ensure_root
        printf '%s\n' "$CHROOT" >&3
        ;;
    run)
        shift
        [[ $# -gt 0 ]] || die "usage: forky.sh run CMD [ARGS...]"
        # No git inside the root: scripts/lib.sh's source digest is taken
        # here, on the host, unless the caller gave one.
        if [[ -z "${EXTENSIBLETYPE_SOURCE_DIGEST:-}" ]]; then
            EXTENSIBLETYPE_SOURCE_DIGEST=$(bash -c 'source "$1" && source_digest' sh "$ROOT/scripts/lib.sh") ||
                die "cannot take the source digest of $ROOT on the host (scripts/lib.sh source_digest)"
            export EXTENSIBLETYPE_SOURCE_DIGEST
        fi
        mkdir -p "$WHEEL_CACHE"
        run_in_root "$@"
        ;;
    __inside)
        shift
        mount_and_run "$@"
        ;;
    pythons)
        exec 3>&1 1>&2
        ensure_root
        for v in "${VERSIONS[@]}"; do printf '%s|/usr/bin/python%s\n' "$v" "$v" >&3; done
        ;;
    *)
        die "usage: forky.sh [ensure|run CMD...|pythons]"
        ;;
esac
