"""The golden vectors of tests/golden/ (docs/spec.md sections 1 and 2) from
Python and from C: every key's id (``prehash``, the C header's
``ExtType_PrehashN``), the exact bytes of the table the runtime publishes
for each fixed id set, and the C header's inline lookup on those bytes.
The Rust side is tests/golden.rs; regenerate with ``cargo run --example golden``.
"""

import ctypes

import pytest

import cbuild
import extensibletype as et

GOLDEN = cbuild.ROOT / "tests" / "golden"


def unquote(s):
    assert s.startswith('"') and s.endswith('"'), s
    out, it = [], iter(s[1:-1])
    for c in it:
        out.append(next(it) if c == "\\" else c)
    return "".join(out)


def read_ids():
    out = []
    for line in (GOLDEN / "ids.txt").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            ident, key = line.split(" ", 1)
            out.append((unquote(key), int(ident, 16)))
    return out


def read_tables():
    sets = []
    for line in (GOLDEN / "tables.txt").read_text().splitlines():
        if line.startswith("["):
            sets.append({"name": line.strip("[]"), "entries": [], "bytes": b""})
        elif line.startswith("entries "):
            sets[-1]["entries"] = [tuple(int(x, 16) for x in p.split(":")) for p in line.split()[1:]]
        elif line.startswith("bytes "):
            sets[-1]["bytes"] = bytes.fromhex(line.split()[1])
        elif line.startswith("published "):  # the runtime's flat table, when not `bytes`
            sets[-1]["published"] = bytes.fromhex(line.split()[1])
    return sets


IDS = read_ids()
TABLES = read_tables()


@pytest.fixture(scope="module")
def golden_c():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    path = cbuild.build("golden_c", [GOLDEN / "golden_c.c"], cflags=["-std=c11", *cbuild.STRICT])
    return cbuild.load(path)


def test_golden_files_are_populated():
    assert len(IDS) >= 10 and len(TABLES) >= 5
    assert all(t["entries"] and t["bytes"] for t in TABLES)


@pytest.mark.parametrize("key, ident", IDS, ids=[f"id{i}" for i in range(len(IDS))])
def test_python_prehash(key, ident):
    assert et.prehash(key) == ident
    assert et.prehash(key.encode("utf-8")) == ident


def test_c_prehash(golden_c):
    for key, ident in IDS:
        assert golden_c.prehash(key.encode("utf-8")) == ident, key


def published_table_bytes(cls):
    ptr = ctypes.c_void_p.from_address(id(cls) + et.TABLE_OFFSET).value
    assert ptr, "no published table"
    return ctypes.string_at(ptr, et.table_info(cls)["bytes"])


@pytest.mark.parametrize("golden", TABLES, ids=[t["name"] for t in TABLES])
def test_runtime_table_bytes(golden):
    """A class given exactly these (id, pointer) slots publishes exactly
    these bytes (nothing inherited: its effective table is its own): the
    `published` table when the set has one (a flat table), else `bytes`."""
    cls = et.ExtensibleType(f"Golden_{golden['name']}", (), {})
    et.set_slots(cls, dict(golden["entries"]))
    assert et.table_info(cls)["flat"] == ("published" in golden)
    assert published_table_bytes(cls) == golden.get("published", golden["bytes"]), (
        "the runtime's table differs from tests/golden/tables.txt "
        "(after a deliberate builder change: cargo run --example golden)"
    )


# Every table of the golden file, Table::build's and the runtime's flat ones
# (ABI v1 tables too: the header's v1 probe must answer on both).
VARIANTS = [(t, "bytes") for t in TABLES] + [(t, "published") for t in TABLES if "published" in t]


def test_golden_file_has_flat_tables():
    assert any(kind == "published" for _, kind in VARIANTS)


@pytest.mark.parametrize("golden, kind", VARIANTS, ids=[f"{t['name']}-{k}" for t, k in VARIANTS])
def test_c_lookup_on_golden_bytes(golden_c, golden, kind):
    raw = golden[kind]
    k1, k2, s, t, count, size, entries_offset = golden_c.header(raw)
    assert count == len(golden["entries"]) and k1 & 1 and k2 & 1
    assert (1 << (64 - s)) == size and entries_offset + 16 * size == len(raw)
    present = {i for i, _ in golden["entries"]}
    for ident, ptr in golden["entries"]:
        assert golden_c.table_find(raw, ident) == ptr
        absent = ident ^ (1 << 63)
        if absent not in present:
            assert golden_c.table_find(raw, absent) is None
    assert golden_c.table_find(raw, 0) is None


# --- typed method keys (tests/golden/typed_keys.txt) --------------------------


def _fields(line):
    out, rest = [], line
    while rest:
        if rest.startswith('"'):
            i = 1
            while rest[i] != '"':
                i += 2 if rest[i] == "\\" else 1
            out.append(unquote(rest[: i + 1]))
            rest = rest[i + 1 :].lstrip(" ")
        else:
            field, _, rest = rest.partition(" ")
            out.append(field)
    return out


def read_typed():
    ok, bad = [], []
    for line in (GOLDEN / "typed_keys.txt").read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        f = _fields(line)
        if f[0] == "ok":
            ok.append((int(f[1], 16), f[2], f[3], f[4], f[5]))
        else:
            assert f[0] == "bad", line
            bad.append((f[1], f[2], f[3]))
    return ok, bad


TYPED_OK, TYPED_BAD = read_typed()


def test_typed_golden_is_populated():
    assert len(TYPED_OK) >= 8 and len(TYPED_BAD) >= 13


@pytest.mark.parametrize("ident, name, sig, key, macro", TYPED_OK, ids=[k for _, _, _, k, _ in TYPED_OK])
def test_typed_ok(ident, name, sig, key, macro):
    assert et.method_key(name, sig) == key
    assert et.prehash(key) == ident
    from extensibletype import _core

    interface, method, ret, args, flag = _core._parse_typed_key(key)
    assert f"{interface}:{method}" == name
    assert f"{ret}({','.join(args)})" + ("!" + flag if flag else "") == sig


@pytest.mark.parametrize("kind, name, sig", TYPED_BAD, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(TYPED_BAD)])
def test_typed_bad(kind, name, sig):
    with pytest.raises(ValueError):
        et.method_key(name, sig)
    from extensibletype import _core

    with pytest.raises(ValueError):
        _core._parse_typed_key(f"{name}#{sig}")

    class C(metaclass=et.ExtensibleType):
        pass

    with pytest.raises(ValueError, match="not a canonical typed key"):
        et.set_slots(C, {f"{name}#{sig}": 0x1000})
    assert et.get_slots(C) == {}


def test_typed_header(tmp_path):
    """`python -m extensibletype header` names and hashes the golden typed keys
    as the file says, and refuses each refused key with a one-line error (exit 2)."""
    import subprocess
    import sys

    keys = tmp_path / "typed.txt"
    keys.write_text("\n".join(k for _, _, _, k, _ in TYPED_OK) + "\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "extensibletype", "header", str(keys)], capture_output=True, text=True, encoding="utf-8")
    assert proc.returncode == 0, proc.stderr
    for ident, _, _, key, macro in TYPED_OK:
        assert f"#define EXTTYPE_ID_{macro} UINT64_C(0x{ident:016x})\n" in proc.stdout, key
    bad = "\n".join(f"{name}#{sig}".strip() for _, name, sig in TYPED_BAD if f"{name}#{sig}".strip() == f"{name}#{sig}")
    for line in bad.splitlines():
        proc = subprocess.run([sys.executable, "-m", "extensibletype", "header", "-"], input=line + "\n",
                              capture_output=True, text=True, encoding="utf-8")
        assert proc.returncode == 2, (line, proc.returncode, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stdout == ""
