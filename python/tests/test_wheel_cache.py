"""scripts/lib.sh's source digest and wheel cache, on a scratch git tree (no
build): a change to a tracked source changes the key, so a changed tree never
installs a stale wheel; without git the digest fails instead of hashing
nothing; the cache keeps the newest wheels of a kind only."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "scripts" / "lib.sh"

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("bash") is None,
                                reason="needs git and bash (the forky chroot has no git)")


def sh(tree, script, *args, env=None, check=True):
    """Run `script` in bash with tree/scripts/lib.sh sourced; stdout."""
    proc = subprocess.run([shutil.which("bash"), "-c", f'source "{tree}/scripts/lib.sh" || exit 1\n{script}',
                           "test", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def tree(tmp_path):
    """A git checkout with lib.sh and a few of the files the digest covers."""
    t = tmp_path / "tree"
    (t / "scripts").mkdir(parents=True)
    shutil.copy(LIB, t / "scripts" / "lib.sh")
    (t / "build_backend").mkdir()
    (t / "build_backend" / "extensibletype_build.py").write_text('PYO3_FT313 = "0.28.0"\n')
    (t / "src").mkdir()
    (t / "src" / "lib.rs").write_text("pub fn f() {}\n")
    (t / "Cargo.toml").write_text("[package]\n")
    (t / ".gitignore").write_text("/target\n")
    git = ["git", "-C", str(t), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(t)], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-qm", "t"], check=True)
    return t


def digest(tree, **env):
    return sh(tree, "source_digest", env={"EXTENSIBLETYPE_SOURCE_DIGEST": "", **env}).stdout.strip()


def test_digest_follows_the_sources(tree):
    d0 = digest(tree)
    assert len(d0) == 64 and digest(tree) == d0
    (tree / "target").mkdir()
    (tree / "target" / "junk.rs").write_text("ignored\n")
    (tree / "README.md").write_text("not part of the wheel\n")
    assert digest(tree) == d0
    (tree / "src" / "lib.rs").write_text("pub fn f() { }\n")
    d1 = digest(tree)
    assert d1 != d0
    (tree / "src" / "lib.rs").rename(tree / "src" / "other.rs")  # same bytes, another name
    assert digest(tree) not in (d0, d1)
    (tree / "src" / "other.rs").rename(tree / "src" / "lib.rs")
    (tree / "src" / "new.rs").write_text("")  # untracked, not ignored: part of the tree
    assert digest(tree) not in (d0, d1)
    (tree / "src" / "new.rs").unlink()
    (tree / "build_backend" / "extensibletype_build.py").write_text('PYO3_FT313 = "0.28.1"\n')
    assert digest(tree) != d1


def test_digest_without_git_fails_loudly(tree, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sed", "cat", "dirname"):
        os.symlink(shutil.which(tool), bare / tool)
    proc = sh(tree, "source_digest", env={"PATH": str(bare), "EXTENSIBLETYPE_SOURCE_DIGEST": ""}, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert "EXTENSIBLETYPE_SOURCE_DIGEST" in proc.stderr
    plain = tmp_path / "plain"  # a copy that is no git checkout
    shutil.copytree(tree, plain, ignore=shutil.ignore_patterns(".git"))
    proc = sh(plain, "source_digest", env={"EXTENSIBLETYPE_SOURCE_DIGEST": ""}, check=False)
    assert proc.returncode != 0 and proc.stdout == ""
    assert digest(plain, EXTENSIBLETYPE_SOURCE_DIGEST="given") == "given"


FAKE_BUILD = 'fake_build() { echo "$BUILT" >"$2/extensibletype-0-py3-none-any.whl"; }\n'


def test_cache_key_changes_with_the_tree(tree, tmp_path):
    env = {"EXTENSIBLETYPE_WHEEL_CACHE": str(tmp_path / "cache"), "EXTENSIBLETYPE_SOURCE_DIGEST": ""}
    kind = sh(tree, 'wheel_kind "$1" cp hooks', shutil.which("python3")).stdout.strip()
    assert kind.startswith("cp3") and "-hooks-" in kind
    flags = sh(tree, 'wheel_kind "$1" cp hooks', shutil.which("python3"), env={"RUSTFLAGS": "-Cdebug-assertions"})
    assert flags.stdout.strip() != kind, "RUSTFLAGS change the code built"
    get = FAKE_BUILD + 'd=$(source_digest) && cached_wheel "$1" "$d" "build" fake_build --out'
    first = sh(tree, get, kind, env={**env, "BUILT": "first"}).stdout.strip()
    assert Path(first).read_text() == "first\n"
    # Unchanged tree: the cached wheel, no build.
    assert sh(tree, get, kind, env={**env, "BUILT": "second"}).stdout.strip() == first
    # Changed tracked source: another key, a new build.
    (tree / "src" / "lib.rs").write_text("pub fn g() {}\n")
    again = sh(tree, get, kind, env={**env, "BUILT": "changed"}).stdout.strip()
    assert again != first and Path(again).read_text() == "changed\n"
    # Another kind (features, interpreter): another key too.
    other = sh(tree, get, kind.replace("-hooks-", "-none-"), env={**env, "BUILT": "k"}).stdout.strip()
    assert Path(other).read_text() == "k\n"


def test_cache_keeps_the_newest(tree, tmp_path):
    env = {"EXTENSIBLETYPE_WHEEL_CACHE": str(tmp_path / "cache"), "EXTENSIBLETYPE_WHEEL_CACHE_KEEP": "2",
           "BUILT": "w"}
    put = FAKE_BUILD + 'cached_wheel cp311-hooks-linux-x86_64-glibc2.36 "$1" build fake_build --out'
    stale = tmp_path / "cache" / "cp310-hooks-linux-x86_64-glibc2.36"  # a kind unused for 40 days
    (stale / "d0").mkdir(parents=True)
    old = __import__("time").time() - 40 * 86400
    os.utime(stale, (old, old))
    for d in ("d1", "d2", "d3"):
        sh(tree, put, d, env=env)
        os.utime(tmp_path / "cache" / "cp311-hooks-linux-x86_64-glibc2.36" / d, (0, 0) if d == "d1" else None)
    kept = sorted(p.name for p in (tmp_path / "cache" / "cp311-hooks-linux-x86_64-glibc2.36").iterdir())
    assert kept == ["d2", "d3"]
    assert not stale.exists()


def test_abi3_from_an_older_glibc_only(tree, tmp_path):
    env = {"EXTENSIBLETYPE_WHEEL_CACHE": str(tmp_path / "cache"), "BUILT": "host"}
    put = FAKE_BUILD + 'cached_wheel "$1" dg build fake_build --out'
    host = sh(tree, put, "abi3-abi3+hooks-linux-x86_64-glibc2.36", env=env).stdout.strip()
    get = 'wheel_cache_get "$1" dg'
    assert sh(tree, get, "abi3-abi3+hooks-linux-x86_64-glibc2.41", env=env).stdout.strip() == host
    assert sh(tree, get, "abi3-abi3+hooks-linux-x86_64-glibc2.31", env=env, check=False).returncode == 1
    assert sh(tree, get, "cp311-hooks-linux-x86_64-glibc2.41", env=env, check=False).returncode == 1


KIND = "cp311-hooks-tc0-linux-x86_64-glibc2.36"


def test_sources_edited_during_the_build_are_not_cached(tree, tmp_path):
    env = {"EXTENSIBLETYPE_WHEEL_CACHE": str(tmp_path / "cache"), "EXTENSIBLETYPE_SOURCE_DIGEST": ""}
    # The build sees an edit made while it runs (an editor saving mid-build).
    editing = ('fake_build() { echo "pub fn edited() {}" >"$ROOT/src/lib.rs"; '
               'echo "$BUILT" >"$2/extensibletype-0-py3-none-any.whl"; }\n')
    get = 'd=$(source_digest) && cached_wheel "$1" "$d" "build" fake_build --out'
    original = (tree / "src" / "lib.rs").read_text()
    mixed = sh(tree, editing + get, KIND, env={**env, "BUILT": "mixed"}).stdout.strip()
    assert Path(mixed).read_text() == "mixed\n", "installed this once"
    # Reverting the edit must not install the wheel built from the edit.
    (tree / "src" / "lib.rs").write_text(original)
    again = sh(tree, FAKE_BUILD + get, KIND, env={**env, "BUILT": "clean"}).stdout.strip()
    assert Path(again).read_text() == "clean\n"
    # ... and that clean build is cached.
    assert sh(tree, FAKE_BUILD + get, KIND, env={**env, "BUILT": "x"}).stdout.strip() == again


def test_a_second_put_keeps_the_first_wheel(tree, tmp_path):
    # Two jobs of the same sources and kind finish their builds one after
    # the other: the second must not delete the wheel the first may be
    # installing from.
    env = {"EXTENSIBLETYPE_WHEEL_CACHE": str(tmp_path / "cache"), "BUILT": "w"}
    put = (FAKE_BUILD + 'mkdir -p "$WHEEL_CACHE" && out=$(mktemp -d "$WHEEL_CACHE/.build.XXXXXX") && '
           'fake_build --out "$out" && wheel_cache_put "$1" dg "$out"')
    first = sh(tree, put, KIND, env=env).stdout.strip()
    inode = os.stat(first).st_ino
    second = sh(tree, put, KIND, env={**env, "BUILT": "w2"}).stdout.strip()
    assert second == first and os.stat(first).st_ino == inode
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [KIND], "no build directory left behind"


def test_a_kind_without_glibc_hits(tree, tmp_path):
    # wheel_kind names musl and other libcs "libc-unknown".
    env = {"EXTENSIBLETYPE_WHEEL_CACHE": str(tmp_path / "cache"), "BUILT": "w"}
    put = FAKE_BUILD + 'cached_wheel "$1" dg build fake_build --out'
    kind = "cp311-hooks-tc0-linux-x86_64-libc-unknown"
    first = sh(tree, put, kind, env=env).stdout.strip()
    assert sh(tree, 'wheel_cache_get "$1" dg', kind, env=env).stdout.strip() == first


def test_bench_port_and_pyo3_config_change_the_kind(tree):
    py = shutil.which("python3")
    kind = sh(tree, 'wheel_kind "$1" cp hooks', py).stdout.strip()
    for var, val in (("EXTENSIBLETYPE_BENCH_RUST_PORT", "1"), ("PYO3_CONFIG_FILE", "/x")):
        assert sh(tree, 'wheel_kind "$1" cp hooks', py, env={var: val}).stdout.strip() != kind, var
