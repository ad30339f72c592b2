"""A torn flat descriptor on a live class: the word of one publication
paired with the ``flat_k1`` of another (docs/spec.md §3). Both readers, the
header's ``ExtType_FindInType`` and the Rust ``abi::Reader``, must then
answer exactly as the word's table does: every slot found (the table's own
k1 decides), every other id a miss. Nothing else tests the header's
fallback branch: the race tests accept a NULL, so a fallback that missed
would pass them."""

from __future__ import annotations

import ctypes

import pytest

import cbuild
import extensibletype as et
from extensibletype import _core

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

# docs/spec.md §3 (64-bit): flat at table_offset + 24, flat_k1 at + 32.
FLAT = et.TABLE_OFFSET + 24
FLAT_K1 = et.TABLE_OFFSET + 32


@pytest.fixture(scope="module")
def cfind():
    path = cbuild.build(
        "subinterp_find",
        [cbuild.ROOT / "python" / "tests" / "c" / "subinterp_find.c"],
        include_dirs=[cbuild.INCLUDE],
        cflags=cbuild.STRICT,
    )
    return cbuild.load(path)


def flat_class(name, n):
    slots = {f"tests.torn.v1:{name}.{i}": 0x40000 + 0x1000 * len(name) + 16 * i for i in range(n)}
    cls = et.ExtensibleType(name, (), {"__cslots__": slots})
    assert et.table_info(cls)["flat"]
    return cls, {et.prehash(k): v for k, v in slots.items()}


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8, reason="64-bit offsets")
@pytest.mark.parametrize("n", [2, 8, 24])
def test_a_torn_pair_answers_like_the_words_table(cfind, n):
    a, slots_a = flat_class(f"TornA{n}", n)
    b, slots_b = flat_class(f"TornBB{n}", n)
    k1 = ctypes.c_uint64.from_address(id(a) + FLAT_K1)
    word_a = ctypes.c_size_t.from_address(id(a) + FLAT).value
    k1_a, k1_b = k1.value, ctypes.c_uint64.from_address(id(b) + FLAT_K1).value
    assert word_a & 63 and k1_a != k1_b
    try:
        for torn in (k1_b, 0, 1, k1_a ^ (1 << 40), k1_a + 2):
            k1.value = torn
            for ident, ptr in slots_a.items():
                assert cfind.find_in_type(a, ident) == ptr, f"C, k1 {torn:#x}, id {ident:#x}"
                assert _core._bench_lookup("find", a(), ident, 0) == ptr, f"Rust, k1 {torn:#x}"
            for ident in [*slots_b, 1, 0x1234_5678_9ABC_DEF1]:
                assert cfind.find_in_type(a, ident) is None
                assert _core._bench_lookup("find", a(), ident, 0) == 0
    finally:
        k1.value = k1_a
    for ident, ptr in slots_a.items():
        assert cfind.find_in_type(a, ident) == ptr


# A consumer built with today's header on a runtime from before the flat
# descriptor: the real API struct copied with struct_size 128 (no
# flat_offset; the field's bytes are poisoned), as the capsule
# ExtType_Import finds. The header must then read the `table` pointer at
# table_offset and probe every kind of table through it.
_OLD_RUNTIME = r"""
import ctypes, sys
sys.path.insert(0, {dir!r})
import extensibletype as et

get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(("PyCapsule_GetPointer", ctypes.pythonapi))
new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)(("PyCapsule_New", ctypes.pythonapi))
name = ctypes.create_string_buffer(b"extensibletype._C_API")
addr = get(et._C_API, name)
size = ctypes.c_uint32.from_address(addr + 4).value
assert size >= 136, size
buf = (ctypes.c_char * size).from_buffer_copy(ctypes.string_at(addr, size))
ctypes.c_uint32.from_buffer(buf, 4).value = 128
ctypes.c_ssize_t.from_buffer(buf, 128).value = 1 << 44
et._C_API = new(ctypes.addressof(buf), name, None)
import subinterp_find as c

def make(name, n, **kw):
    slots = {{f"tests.torn.v1:old.{{name}}.{{i}}": 0x60000 + 0x1000 * len(name) + 16 * i for i in range(n)}}
    return et.ExtensibleType(name, (), {{"__cslots__": slots}}), {{et.prehash(k): v for k, v in slots.items()}}

flat, fs = make("Flat", 8)
big, bs = make("Big", 40)
assert et.table_info(flat)["flat"] and not et.table_info(big)["flat"]
Empty = et.ExtensibleType("Empty", (), {{}})
for cls, slots, other in [(flat, fs, bs), (big, bs, fs), (Empty, {{}}, fs)]:
    for ident, ptr in slots.items():
        assert c.find_in_type(cls, ident) == ptr, (cls, hex(ident))
        assert c.find(cls(), ident) == ptr
    for ident in [*other, 1]:
        assert c.find_in_type(cls, ident) is None
print("ok")
"""


def test_todays_header_on_a_runtime_without_flat_offset(cfind):
    import subprocess
    import sys
    from pathlib import Path

    code = _OLD_RUNTIME.format(dir=str(Path(cfind.__file__).parent))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr + proc.stdout
