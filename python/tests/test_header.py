"""include/extensibletype.h: compiles warning-free as C99, C11 and C++17; the
compilers check every ABI struct against the numbers of docs/spec.md
(tests/abi/abi_layout.c, as C11 and C++17; the Rust structs assert the same
numbers in `const` blocks); the C layout decodes the runtime's real API
struct and tables (read with ctypes); and `python -m extensibletype header`
emits ids equal to prehash.
"""

import ctypes
import json
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import cbuild
import extensibletype as et
from extensibletype import __main__ as cli

pytestmark = pytest.mark.skipif(not cbuild.have_compiler(), reason="no C compiler (cc)")

ROOT = cbuild.ROOT
HEADER = cbuild.INCLUDE / "extensibletype.h"
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
WARN = ["-Wall", "-Wextra", "-Werror"]

# A TU that instantiates every inline function of the header.
USE_ALL = r"""
#include <Python.h>
#include "extensibletype.h"

static const ExtType_SlotDef defs[] = {{"tests.header.v1:x", 0, NULL}};

int use_all(PyObject *obj, PyObject *module, PyType_Spec *spec)
{
    PyObject *tp;
    const ExtType_Table *table;
    int n = 0;
    if (ExtType_Import() < 0) return -1;
    n += ExtType_Find(obj, UINT64_C(0x1234)) != NULL;
    n += ExtType_FindInType(Py_TYPE(obj), 1) != NULL;
    n += ExtType_Prehash("a") == UINT64_C(0xa8b6f1c0b975c10c);
    n += ExtType_PrehashN("ab", 1) != 0;
    n += ExtType_Metaclass() != NULL;
    n += ExtType_GetAPI()->abi_version == EXTTYPE_ABI_VERSION;
    table = ExtType_LoadTable(Py_TYPE(obj), ExtType_GetAPI()->table_offset);
    if (table != NULL) {
        n += ExtType_TableFind(table, 1) != NULL;
        n += ExtType_TableEntries(table)[0].id == 0;
        n += ExtType_TableDisplacements(table)[0] == 0;
    }
    if (ExtType_SetSlots((PyObject *)Py_TYPE(obj), defs, 1) < 0) return -1;
    tp = ExtType_FromSpec(module, spec, NULL, defs, 1);
    Py_XDECREF(tp);
    return n;
}
"""


def compile_object(tmp_path, source, suffix, compiler, flags):
    src = tmp_path / f"tu{suffix}"
    src.write_text(source)
    cmd = [*compiler, *flags, f"-I{cbuild.PY_INCLUDE}", f"-I{cbuild.INCLUDE}", "-c", str(src), "-o", str(src) + ".o"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"
    return Path(str(src) + ".o")


@pytest.mark.parametrize(
    "std, suffix",
    [("-std=c99", ".c"), ("-std=c11", ".c"), ("-std=c17", ".c"), ("-std=c++17", ".cpp"), ("-std=c++11", ".cpp")],
)
def test_header_compiles_warning_free(tmp_path, std, suffix):
    compiler = cbuild.cxx() if suffix == ".cpp" else cbuild.cc()
    compile_object(tmp_path, USE_ALL, suffix, compiler, [std, *WARN, "-O2"])


def test_header_compiles_pedantic_c11(tmp_path):
    compile_object(tmp_path, USE_ALL, ".c", cbuild.cc(), ["-std=c11", *WARN, "-Wpedantic", "-Wconversion", "-Wshadow"])


@pytest.mark.skipif(FREE_THREADED, reason="the limited API is not supported by free-threaded CPython 3.13")
def test_header_compiles_with_limited_api(tmp_path):
    compile_object(tmp_path, USE_ALL, ".c", cbuild.cc(), ["-std=c11", *WARN, "-DPy_LIMITED_API=0x030b0000"])


def test_unique_symbol_across_translation_units(tmp_path):
    """EXTTYPE_API_UNIQUE_SYMBOL: one TU (C) imports, another (C++) uses."""
    main = "#define EXTTYPE_API_UNIQUE_SYMBOL tests_exttype_api\n" + USE_ALL
    other = (
        "#define EXTTYPE_API_UNIQUE_SYMBOL tests_exttype_api\n#define EXTTYPE_NO_IMPORT\n"
        "#include <Python.h>\n#include \"extensibletype.h\"\n"
        'extern "C" void *other_find(PyObject *o) { return ExtType_Find(o, 1); }\n'
    )
    a = compile_object(tmp_path, main, ".c", cbuild.cc(), ["-std=c11", "-fPIC", *WARN])
    b = compile_object(tmp_path, other, ".cpp", cbuild.cxx(), ["-std=c++17", "-fPIC", *WARN])
    so = tmp_path / "both.so"
    proc = subprocess.run([*cbuild.cc(), "-shared", str(a), str(b), "-o", str(so)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    syms = subprocess.run(["nm", "-D", "--defined-only", str(so)], capture_output=True, text=True).stdout
    assert re.search(r"\bB tests_exttype_api$", syms, re.M), syms  # one definition, shared


# --- layout: C vs the Rust definitions vs the running runtime ----------------

LAYOUT_C = r"""
#include <Python.h>
#include <stdio.h>
#include "extensibletype.h"

#define S(T) printf("\"%s\": [%zu, %zu],\n", #T, sizeof(T), _Alignof(T))
#define F(T, f) printf("\"%s.%s\": %zu,\n", #T, #f, offsetof(T, f))

int main(void)
{
    printf("{\n");
    S(ExtType_Table);
    F(ExtType_Table, k1); F(ExtType_Table, k2); F(ExtType_Table, s); F(ExtType_Table, t);
    F(ExtType_Table, reserved); F(ExtType_Table, count); F(ExtType_Table, size);
    F(ExtType_Table, entries_offset);
    printf("\"EXTTYPE_TABLE_HEADER_SIZE\": %d,\n", EXTTYPE_TABLE_HEADER_SIZE);
    S(ExtType_Entry); F(ExtType_Entry, id); F(ExtType_Entry, ptr);
    S(ExtType_SlotDef); F(ExtType_SlotDef, key); F(ExtType_SlotDef, id); F(ExtType_SlotDef, ptr);
    S(ExtType_TypeData); F(ExtType_TypeData, table); F(ExtType_TypeData, state); F(ExtType_TypeData, own_table);
    F(ExtType_TypeData, flat); F(ExtType_TypeData, flat_k1);
    S(ExtType_API);
    F(ExtType_API, abi_version); F(ExtType_API, struct_size); F(ExtType_API, metaclass);
    F(ExtType_API, table_offset); F(ExtType_API, find_slow); F(ExtType_API, prehash);
    F(ExtType_API, set_slots); F(ExtType_API, from_spec); F(ExtType_API, py_set_slots);
    F(ExtType_API, py_get_slots); F(ExtType_API, py_table_info); F(ExtType_API, py_lookup);
    F(ExtType_API, bind_key); F(ExtType_API, foreign_registry); F(ExtType_API, ob_type_offset);
    F(ExtType_API, type_cache); F(ExtType_API, type_cache_bits); F(ExtType_API, version_tag_offset);
    F(ExtType_API, flat_offset);
    printf("\"EXTTYPE_ABI_VERSION\": %d\n}\n", EXTTYPE_ABI_VERSION);
    return 0;
}
"""

STRUCTS = ["ExtType_Table", "ExtType_Entry", "ExtType_SlotDef", "ExtType_TypeData", "ExtType_API"]
ABI_LAYOUT_TU = ROOT / "tests" / "abi" / "abi_layout.c"


@pytest.mark.parametrize("std, lang", [("-std=c11", "c"), ("-std=c++17", "c++")])
def test_abi_layout_static_asserts(std, lang):
    """Every ABI struct, field by field, against the numbers written out in
    tests/abi/abi_layout.c (sizeof/offsetof/alignof and the API struct's
    field types): a mismatch is a compile error."""
    compiler = cbuild.cxx() if lang == "c++" else cbuild.cc()
    cmd = [*compiler, "-x", lang, std, *WARN, "-Wpedantic", f"-I{cbuild.PY_INCLUDE}", f"-I{cbuild.INCLUDE}",
           "-fsyntax-only", str(ABI_LAYOUT_TU)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr}"


@pytest.fixture(scope="module")
def c_layout():
    src = cbuild.build_root() / "layout.c"
    src.parent.mkdir(parents=True, exist_ok=True)
    if not src.exists() or src.read_text() != LAYOUT_C:
        src.write_text(LAYOUT_C)
    exe = cbuild.build("layout", [src], kind="program", cflags=["-std=c11", *WARN])
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    raw = json.loads(out)
    layout = {}
    for name in STRUCTS:
        size, align = raw[name]
        fields = {k.split(".", 1)[1]: v for k, v in raw.items() if k.startswith(name + ".")}
        layout[name] = ((size, align), fields)
    layout["consts"] = {k: v for k, v in raw.items() if k.startswith("EXTTYPE_")}
    return layout


def test_abi_version_matches_module(c_layout):
    assert c_layout["consts"]["EXTTYPE_ABI_VERSION"] == et.ABI_VERSION == 1
    assert c_layout["consts"]["EXTTYPE_TABLE_HEADER_SIZE"] == c_layout["ExtType_Table"][0][0]


# --- the running runtime, read with the C offsets ----------------------------

# A private prototype: ctypes.pythonapi.X objects are shared by all modules,
# whose argtypes other tests may set differently.
_GetPointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)
SPEC_NAME = b"test_header.FromSpec"  # lives as long as this module
FINAL_SPEC_NAME = b"test_header.Final"


def api_address():
    return _GetPointer(et._C_API, b"extensibletype._C_API")


def field(c_layout, struct, name, ctype, base):
    return ctype.from_address(base + c_layout[struct][1][name]).value


def slotdef_type(c_layout):
    (size, _), off = c_layout["ExtType_SlotDef"]

    class SlotDef(ctypes.Structure):
        _fields_ = [("key", ctypes.c_char_p), ("id", ctypes.c_uint64), ("ptr", ctypes.c_void_p)]

    assert (ctypes.sizeof(SlotDef), SlotDef.key.offset, SlotDef.id.offset, SlotDef.ptr.offset) == (
        size, off["key"], off["id"], off["ptr"],
    )
    return SlotDef


def test_ob_type_offset_is_measured_and_right(c_layout):
    """The runtime publishes where ob_type is; check it on objects it never
    probed (small ones, instances, an extensible class) against id(type(o))."""
    off = field(c_layout, "ExtType_API", "ob_type_offset", ctypes.c_ssize_t, api_address())
    ptr = ctypes.sizeof(ctypes.c_void_p)
    free_threaded = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    # CPython's layouts: refcount then ob_type; or ob_tid, 8 bytes of flags/
    # mutex/gc bits/local refcount, the shared refcount, then ob_type.
    assert off == (ptr + 8 + ptr if free_threaded else ptr)

    class Plain:
        pass

    Ext = et.ExtensibleType("Ext", (), {})
    for o in (None, 0, 1.5, "s", b"", (), [], {}, Plain(), Plain, Ext, Ext(), et.ExtensibleType, type, object()):
        assert ctypes.c_void_p.from_address(id(o) + off).value == id(type(o)), o


def test_capsule_struct_decodes_with_c_layout(c_layout):
    base = api_address()
    api = lambda name, ctype: field(c_layout, "ExtType_API", name, ctype, base)  # noqa: E731
    assert api("abi_version", ctypes.c_uint32) == 1
    assert api("struct_size", ctypes.c_uint32) == c_layout["ExtType_API"][0][0]
    assert api("metaclass", ctypes.c_void_p) == id(et.ExtensibleType)
    assert api("table_offset", ctypes.c_ssize_t) == et.TABLE_OFFSET

    fn = lambda name, proto: proto(api(name, ctypes.c_void_p))  # noqa: E731
    prehash = fn("prehash", ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t))
    for key in (b"", b"a", b"extensibletype.array.v1:data"):
        assert prehash(key, len(key)) == et.prehash(key)

    key = "tests.header.v1:capsule"
    SlotDef = slotdef_type(c_layout)

    class Foreign:
        pass

    set_slots = fn("set_slots", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.POINTER(SlotDef), ctypes.c_ssize_t))
    defs = (SlotDef * 2)(SlotDef(key.encode(), 0, 0x7000), SlotDef(None, 0x99, 0x7100))
    assert set_slots(Foreign, defs, 2) == 0
    assert et.get_slots(Foreign) == {key: 0x7000, 0x99: 0x7100}

    find_slow = fn("find_slow", ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64))
    assert find_slow(id(Foreign), et.prehash(key)) == 0x7000
    assert find_slow(id(Foreign), 0x98) is None

    py_get_slots = fn("py_get_slots", ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object))
    py_table_info = fn("py_table_info", ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object))
    py_lookup = fn("py_lookup", ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object))
    py_set_slots = fn("py_set_slots", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.py_object))
    bind_key = fn("bind_key", ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_uint64))
    assert py_get_slots(Foreign) == et.get_slots(Foreign)
    assert py_table_info(Foreign) == et.table_info(Foreign)
    assert py_lookup(Foreign(), key) == et.lookup(Foreign(), key) == 0x7000
    assert py_set_slots(Foreign, {0x99: None}) == 0
    assert et.get_slots(Foreign) == {key: 0x7000}
    raw_id = et.prehash("tests.header.v1:bound-by-id") ^ 1
    assert bind_key(b"tests.header.v1:bound", raw_id) == 0
    assert py_set_slots(Foreign, {raw_id: 0x7200}) == 0
    assert et.get_slots(Foreign)["tests.header.v1:bound"] == 0x7200

    class PyTypeSlot(ctypes.Structure):
        _fields_ = [("slot", ctypes.c_int), ("pfunc", ctypes.c_void_p)]

    class PyTypeSpec(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("basicsize", ctypes.c_int), ("itemsize", ctypes.c_int),
                    ("flags", ctypes.c_uint), ("slots", ctypes.POINTER(PyTypeSlot))]

    slots = (PyTypeSlot * 1)(PyTypeSlot(0, None))
    spec = PyTypeSpec(SPEC_NAME, 0, 0, 1 << 10, slots)  # Py_TPFLAGS_BASETYPE
    from_spec = fn("from_spec", ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.POINTER(PyTypeSpec),
                                                  ctypes.c_void_p, ctypes.POINTER(SlotDef), ctypes.c_ssize_t))
    cls = from_spec(None, ctypes.byref(spec), None, defs, 1)
    assert type(cls) is et.ExtensibleType and cls.__name__ == "FromSpec"
    assert et.lookup(cls(), key) == 0x7000


def test_from_spec_without_basetype_flag(c_layout):
    """A spec that does not allow subclassing (the default) must work too."""

    class PyTypeSlot(ctypes.Structure):
        _fields_ = [("slot", ctypes.c_int), ("pfunc", ctypes.c_void_p)]

    class PyTypeSpec(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("basicsize", ctypes.c_int), ("itemsize", ctypes.c_int),
                    ("flags", ctypes.c_uint), ("slots", ctypes.POINTER(PyTypeSlot))]

    SlotDef = slotdef_type(c_layout)
    defs = (SlotDef * 1)(SlotDef(b"tests.header.v1:final", 0, 0x7300))
    slots = (PyTypeSlot * 1)(PyTypeSlot(0, None))
    spec = PyTypeSpec(FINAL_SPEC_NAME, 0, 0, 0, slots)
    base = api_address() + c_layout["ExtType_API"][1]["from_spec"]
    from_spec = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.POINTER(PyTypeSpec),
                                  ctypes.c_void_p, ctypes.POINTER(SlotDef), ctypes.c_ssize_t)(
        ctypes.c_void_p.from_address(base).value)
    cls = from_spec(None, ctypes.byref(spec), None, defs, 1)
    assert et.lookup(cls(), "tests.header.v1:final") == 0x7300
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (cls,), {})
    with pytest.raises(TypeError, match="not an acceptable base type"):
        type("Sub", (cls,), {})


def decode_table(c_layout, tp):
    """The published table of an extensible type, decoded with the C layout,
    and a lookup function written against the C offsets (pure Python)."""
    ptr = ctypes.c_void_p.from_address(id(tp) + et.TABLE_OFFSET).value
    assert ptr, "no published table"
    (_, off) = c_layout["ExtType_Table"]
    (entry_size, _), eoff = c_layout["ExtType_Entry"]
    u = lambda ctype, name: ctype.from_address(ptr + off[name]).value  # noqa: E731
    h = dict(
        k1=u(ctypes.c_uint64, "k1"), k2=u(ctypes.c_uint64, "k2"), s=u(ctypes.c_uint8, "s"),
        t=u(ctypes.c_uint8, "t"), reserved=u(ctypes.c_uint16, "reserved"), count=u(ctypes.c_uint32, "count"),
        size=u(ctypes.c_uint32, "size"), entries_offset=u(ctypes.c_uint32, "entries_offset"),
    )
    d0 = ptr + c_layout["consts"]["EXTTYPE_TABLE_HEADER_SIZE"]
    bins = 1 << (64 - h["t"])

    def entry(i):
        base = ptr + h["entries_offset"] + i * entry_size
        return ctypes.c_uint64.from_address(base + eoff["id"]).value, ctypes.c_void_p.from_address(base + eoff["ptr"]).value

    def lookup(ident):
        mask = (1 << 64) - 1
        slot = ((ident * h["k1"]) & mask) >> h["s"]
        b = ((ident * h["k2"]) & mask) >> h["t"]
        i = slot ^ ctypes.c_uint16.from_address(d0 + 2 * b).value
        found_id, found_ptr = entry(i)
        return found_ptr if found_id == ident else None

    displacements = [ctypes.c_uint16.from_address(d0 + 2 * b).value for b in range(bins)]
    entries = [entry(i) for i in range(h["size"])]
    return ptr, h, bins, displacements, entries, lookup


@pytest.mark.parametrize("n", [1, 3, 17, 200])
def test_runtime_table_decodes_with_c_layout(c_layout, n):
    keys = [f"tests.header.v1:table{n}.{i}" for i in range(n)]
    slots = {k: 0x10000 + 16 * i for i, k in enumerate(keys)}
    cls = et.ExtensibleType(f"T{n}", (), {"__cslots__": slots})
    ptr, h, bins, displacements, entries, lookup = decode_table(c_layout, cls)
    info = et.table_info(cls)
    assert ptr % 64 == 0
    assert h["reserved"] == 0 and h["k1"] & 1 and h["k2"] & 1
    assert (h["count"], h["size"], bins) == (n, info["size"], info["bins"]) == (info["count"], info["size"], info["bins"])
    assert h["size"] == 1 << (64 - h["s"])
    assert h["entries_offset"] % 16 == 0 and h["entries_offset"] >= 32 + 2 * bins
    assert info["bytes"] == h["entries_offset"] + h["size"] * c_layout["ExtType_Entry"][0][0]
    assert all(d < h["size"] for d in displacements)
    assert sum(1 for i, _ in entries if i) == n
    assert all(p is None for i, p in entries if i == 0)
    for k, v in slots.items():
        assert lookup(et.prehash(k)) == v == et.lookup(cls(), k)
    for miss in ("tests.header.v1:absent", "a", ""):
        assert lookup(et.prehash(miss)) is None
    assert lookup(0) is None  # id 0 may match an empty entry, whose ptr is NULL


def descriptor_of(c_layout, tp):
    """The flat descriptor (word, k1) in the type data of `tp`, read at the
    API struct's flat_offset."""
    base = api_address()
    flat_offset = field(c_layout, "ExtType_API", "flat_offset", ctypes.c_ssize_t, base)
    (_, off) = c_layout["ExtType_TypeData"]
    assert flat_offset == et.TABLE_OFFSET + off["flat"]
    k1_at = flat_offset + off["flat_k1"] - off["flat"]
    return ctypes.c_size_t.from_address(id(tp) + flat_offset).value, ctypes.c_uint64.from_address(id(tp) + k1_at).value


def descriptor_lookup(c_layout, word, k1, ident):
    """docs/spec.md's one-level probe through a flat descriptor (pure Python)."""
    (entry_size, _), eoff = c_layout["ExtType_Entry"]
    mask = (1 << 64) - 1
    entries, shift = word & ~63, word & 63
    at = entries + ((((ident * k1) & mask) >> shift) & ~(entry_size - 1))
    found = ctypes.c_uint64.from_address(at + eoff["id"]).value
    return ctypes.c_void_p.from_address(at + eoff["ptr"]).value if found == ident else None


@pytest.mark.parametrize("n", [1, 2, 3, 8, 17, 24, 25, 40, 200])
def test_flat_descriptor_is_published_with_the_table(c_layout, n):
    """Every class publishes its table's descriptor next to it: for a flat
    table (every class of up to 24 slots) `&entries[0] | (s - 4)` and its
    k1, which probe every slot in one level; for a larger class the v1
    table itself (low bits 0). Republishing moves both; no table, 0."""
    keys = [f"tests.header.v1:flat{n}.{i}" for i in range(n)]
    slots = {k: 0x20000 + 16 * i for i, k in enumerate(keys)}
    cls = et.ExtensibleType(f"F{n}", (), {"__cslots__": slots})
    ptr, h, bins, displacements, _, lookup = decode_table(c_layout, cls)
    word, k1 = descriptor_of(c_layout, cls)
    flat = et.table_info(cls)["flat"]
    assert flat == (h["entries_offset"] == 64 and not any(displacements))
    if n <= 24:
        assert flat, "classes of up to 24 slots get a flat table"
    if flat:
        assert (word, k1) == ((ptr + 64) | (h["s"] - 4), h["k1"])
        for k, v in slots.items():
            assert descriptor_lookup(c_layout, word, k1, et.prehash(k)) == v == lookup(et.prehash(k))
        for miss in ("tests.header.v1:absent", "a", ""):
            assert descriptor_lookup(c_layout, word, k1, et.prehash(miss)) is None
    else:
        assert (word, k1) == (ptr, 0)
    # A republish with another size moves the table and its descriptor.
    more = {f"tests.header.v1:flat{n}.more{i}": 0x30000 + 16 * i for i in range(30)}
    et.set_slots(cls, more)
    ptr2, *_ = decode_table(c_layout, cls)
    assert descriptor_of(c_layout, cls) == (ptr2, 0) and ptr2 != ptr
    et.set_slots(cls, {k: None for k in [*slots, *more]})
    assert ctypes.c_void_p.from_address(id(cls) + et.TABLE_OFFSET).value is None
    assert descriptor_of(c_layout, cls) == (0, 0)


# --- python -m extensibletype header ----------------------------------------

KEYS = [
    "extensibletype.array.v1:acquire",
    "numpy.ndarray.shape",
    "a-b c:d:e",
    "demo.ключ.v2:get",
    'odd."quote"\\slash?:x*/y',
    "",  # blank line: skipped
    "# a comment",
    "   extensibletype.array.v1:release   ",
    "extensibletype.array.v1:acquire",  # repeated: emitted once
]
EXPECTED_NAMES = {
    "extensibletype.array.v1:acquire": "EXTENSIBLETYPE_ARRAY_V1__ACQUIRE",
    "numpy.ndarray.shape": "NUMPY_NDARRAY_SHAPE",
    "a-b c:d:e": "A_B_C__D__E",
    "demo.ключ.v2:get": "DEMO_V2__GET",
    'odd."quote"\\slash?:x*/y': "ODD_QUOTE_SLASH___X_Y",
    "extensibletype.array.v1:release": "EXTENSIBLETYPE_ARRAY_V1__RELEASE",
}


def test_generated_ids_equal_prehash(tmp_path):
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(KEYS) + "\n", encoding="utf-8")
    out = tmp_path / "ids.h"
    subprocess.run([sys.executable, "-m", "extensibletype", "header", str(keys_file), "-o", str(out)], check=True)
    text = out.read_text(encoding="utf-8")
    assert text.count("#define EXTTYPE_ID_EXTENSIBLETYPE_ARRAY_V1__ACQUIRE ") == 1
    prog = ["#include <stdio.h>", "#include <inttypes.h>", f'#include "{out}"', "", "static void show(const char *n, uint64_t id, const char *key) {",
            '    printf("%s %016" PRIx64 " ", n, id);',
            '    for (; *key; key++) printf("%02x", (unsigned char)*key);',
            '    printf("\\n");', "}", "int main(void) {"]
    for suffix in EXPECTED_NAMES.values():
        prog.append(f'    show("{suffix}", EXTTYPE_ID_{suffix}, EXTTYPE_KEY_{suffix});')
    prog += ["    return 0;", "}"]
    src = tmp_path / "ids.c"
    src.write_text("\n".join(prog))
    exe = tmp_path / "ids"
    for std in ("-std=c99", "-std=c11"):
        proc = subprocess.run([*cbuild.cc(), std, *WARN, str(src), "-o", str(exe)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split("\n")
    got = {name: (int(h, 16), bytes.fromhex(k).decode("utf-8")) for name, h, k in (l.split(" ") for l in lines if l)}
    for key, suffix in EXPECTED_NAMES.items():
        assert got[suffix] == (et.prehash(key), key)


def test_generated_header_errors():
    with pytest.raises(cli.KeyListError, match=r"'a\.b' and 'a_b' .*EXTTYPE_ID_A_B"):
        cli.generate_header(cli.read_keys(["a_b", "a.b"]))
    fake = {"x.one": 5, "x.two": 5, "zero": 0}.get
    with pytest.raises(cli.KeyListError, match=r"64-bit id collision: 'x\.two' and 'x\.one'"):
        cli.generate_header(cli.read_keys(["x.one", "x.two"]), prehash=fake)
    with pytest.raises(cli.KeyListError, match="reserved id 0"):
        cli.generate_header(cli.read_keys(["zero"]), prehash=fake)
    with pytest.raises(cli.KeyListError, match="no letters or digits"):
        cli.generate_header(cli.read_keys(["ключ:ü"]))
    proc = subprocess.run([sys.executable, "-m", "extensibletype", "header", "-"], input="a.b\na_b\n",
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "both map to the macro name" in proc.stderr and proc.stdout == ""


def test_generated_header_options():
    text = cli.generate_header(cli.read_keys(["p.q:r"]), id_prefix="MY_", key_prefix="")
    assert "#define MY_P_Q__R UINT64_C(0x%016x)" % et.prehash("p.q:r") in text
    assert "KEY" not in text.replace("/* id = first 8 bytes of md5(key)", "")


def test_example_ids_header_is_up_to_date():
    keys = cbuild.EXAMPLES_C / "shapes_keys.txt"
    expected = cli.generate_header(cli.read_keys(keys.read_text().splitlines()), source=str(keys))
    assert (cbuild.EXAMPLES_C / "shapes_ids.h").read_text() == expected, (
        "regenerate: python -m extensibletype header examples/c/shapes_keys.txt -o examples/c/shapes_ids.h"
    )


def test_cli_include_and_prehash():
    out = subprocess.run([sys.executable, "-m", "extensibletype", "include"], capture_output=True, text=True, check=True)
    assert Path(out.stdout.strip()) == Path(et.get_include())
    out = subprocess.run([sys.executable, "-m", "extensibletype", "prehash", "a"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0xa8b6f1c0b975c10c", "a"]


def test_get_include_ships_the_header():
    shipped = Path(et.get_include()) / "extensibletype.h"
    assert shipped.is_file(), f"{shipped} missing: the header must ship in the package"
    assert shipped.read_bytes() == HEADER.read_bytes()


# --- C++: include/extensibletype.hpp -----------------------------------------

HPP = cbuild.INCLUDE / "extensibletype.hpp"
CXX_STDS = ["-std=c++17", "-std=c++20"]
CXX_WARN = [*WARN, "-Wpedantic", "-Wconversion", "-Wsign-conversion", "-Wshadow"]
# The spec's canonical signatures (docs/spec.md, "Typed methods") and the
# C++ (Sig, Flag) that spell them.
CANONICAL_CPP = [
    ("f64(O)", "double(PyObject *)", "et::no_flag"),
    ("v(O,f64)", "void(PyObject *, double)", "et::no_flag"),
    ("i64(O,*f64,i64)", "std::int64_t(PyObject *, double *, Py_ssize_t)", "et::no_flag"),
    ("O+(O)!t", "PyObject *(PyObject *)", "et::needs_thread"),
    ("f64(O,f64)!e", "double(PyObject *, double)", "et::may_raise"),
    ("v(O)!e", "void(PyObject *)", "et::may_raise"),
    ("b(O,p)", "bool(PyObject *, void *)", "et::no_flag"),
    ("c128(O,c128)", "std::complex<double>(PyObject *, std::complex<double>)", "et::no_flag"),
]
# By width, never by C name: the type on the left is spelled by the code.
CPP_WIDTHS = [
    ("long", "i64" if ctypes.sizeof(ctypes.c_long) == 8 else "i32"),
    ("long long", "i64"),
    ("Py_ssize_t", "i64" if ctypes.sizeof(ctypes.c_ssize_t) == 8 else "i32"),
    ("size_t", "u64" if ctypes.sizeof(ctypes.c_size_t) == 8 else "u32"),
    ("unsigned", "u32"),
    ("short", "i16"),
    ("std::uint16_t", "u16"),
    ("signed char", "i8"),
    ("unsigned char", "u8"),
    ("std::int32_t", "i32"),
    ("float", "f32"),
    ("std::complex<float>", "c64"),
    ("const double *", "*f64"),
    ("double **", "**f64"),
    ("void **", "*p"),
    ("const void *", "p"),
    ("bool *", "*b"),
]

# C codes -> C++ types (the inverse mapping, for signatures read from files).
_CPP_SCALARS = {
    "i8": "std::int8_t", "i16": "std::int16_t", "i32": "std::int32_t", "i64": "std::int64_t",
    "u8": "std::uint8_t", "u16": "std::uint16_t", "u32": "std::uint32_t", "u64": "std::uint64_t",
    "f32": "float", "f64": "double", "c64": "std::complex<float>", "c128": "std::complex<double>",
    "b": "bool", "p": "void *", "O": "PyObject *", "O+": "PyObject *", "v": "void",
}
_CPP_FLAGS = {"": "et::no_flag", "!t": "et::needs_thread", "!e": "et::may_raise"}


def cpp_type_of(code):
    stars = len(code) - len(code.lstrip("*"))
    base = _CPP_SCALARS[code[stars:]]
    return base + (" " if stars and not base.endswith("*") else "") + "*" * stars


def cpp_sig_of(signature):
    """A canonical signature -> (C++ function type, flag type)."""
    m = re.fullmatch(r"([^()]+)\(([^()]*)\)(!t|!e)?", signature)
    assert m, signature
    ret, args, flag = m.group(1), m.group(2).split(","), m.group(3) or ""
    return f"{cpp_type_of(ret)}({', '.join(map(cpp_type_of, args))})", _CPP_FLAGS[flag]


def cpp_tu(body):
    return (
        "#include <Python.h>\n#include \"extensibletype.hpp\"\n#include <cstdint>\n#include <complex>\n"
        "namespace et = extensibletype;\n" + body
    )


def prehash_asserts(keys):
    return "".join(f'static_assert(et::prehash("{k}") == UINT64_C(0x{et.prehash(k):016x}));\n' for k in keys)


def test_cpp_prehash_vectors_are_cpp_literals():
    keys = ["", "a", "extensibletype.array.v1:data", "numpy.ndarray.shape"]
    assert [et.prehash(k) for k in keys] == [0x04B2008FD98C1DD4, 0xA8B6F1C0B975C10C, 0xB598A1668C53AFD9, 0x7780A86E9080477A]


@pytest.mark.parametrize("std", CXX_STDS)
@pytest.mark.parametrize("limited", [False, True, "abi3t"], ids=["full", "limited", "abi3t"])
def test_cpp_header_static_asserts(tmp_path, std, limited):
    """prehash, signature, method_id and c_function_t checked by the compiler
    (static_assert), warning-free as C++17 and C++20, with the full and the
    limited API (and abi3t on CPython 3.15+); find_method instantiated for
    every canonical signature."""
    if limited is True and FREE_THREADED:
        pytest.skip("the limited API is not supported by free-threaded CPython 3.13")
    if limited == "abi3t" and sys.version_info < (3, 15):
        pytest.skip("abi3t (PEP 803) needs CPython 3.15 headers")
    # md5 block boundaries (55/56/63/64/65 bytes) and non-ASCII UTF-8.
    keys = ["", "a", "extensibletype.array.v1:data", "numpy.ndarray.shape", "geom.Shape.v1:area#f64(O)"]
    keys += ["k" * n for n in (55, 56, 63, 64, 65, 119, 120, 128, 200)]
    body = prehash_asserts(keys)
    body += 'static_assert(et::prehash("\\xc3\\xbc") == UINT64_C(0x%016x));\n' % et.prehash("ü")
    body += (
        'static_assert(et::method_id<double(PyObject *)>("geom.Shape.v1:area") == '
        'et::prehash("geom.Shape.v1:area#f64(O)"));\n'
    )
    for i, (sig, cpp, flag) in enumerate(CANONICAL_CPP):
        key = f"geom.Shape.v1:m{i}#{sig}"
        body += f'static_assert(et::signature<{cpp}, {flag}>() == "{sig}");\n'
        body += f'static_assert(et::method_id<{cpp}, {flag}>("geom.Shape.v1:m{i}") == UINT64_C(0x{et.prehash(key):016x}));\n'
        body += f'static_assert(et::typed_method<{cpp}, {flag}>("geom.Shape.v1:m{i}").id == et::prehash("{key}"));\n'
        body += f"void *use{i}(PyObject *o) {{ return reinterpret_cast<void *>(et::find_method<{cpp}, {flag}>(o, 1)); }}\n"
    for cpp, code in CPP_WIDTHS:
        body += f'static_assert(et::signature<void(PyObject *, {cpp})>() == "v(O,{code})");\n'
    body += 'static_assert(et::signature<double(PyObject *) noexcept>() == "f64(O)");\n'
    body += 'static_assert(et::signature<PyObject *(PyObject *, PyObject *), et::may_raise>() == "O+(O,O)!e");\n'
    # !e: R(O, A...) is int32_t(O, A..., R *out); void and O+ keep their shape.
    body += (
        "static_assert(std::is_same_v<et::c_function_t<double(PyObject *, double), et::may_raise>,"
        " std::int32_t(PyObject *, double, double *)>);\n"
        "static_assert(std::is_same_v<et::c_function_t<void(PyObject *), et::may_raise>, std::int32_t(PyObject *)>);\n"
        "static_assert(std::is_same_v<et::c_function_t<PyObject *(PyObject *), et::may_raise>, PyObject *(PyObject *)>);\n"
        "static_assert(std::is_same_v<et::c_function_t<PyObject *(PyObject *), et::needs_thread>, PyObject *(PyObject *)>);\n"
        "static_assert(std::is_same_v<decltype(et::find_method<double(PyObject *)>(nullptr, 1)), double (*)(PyObject *)>);\n"
        "static_assert(std::is_same_v<et::c_function_t<float(PyObject *) noexcept, et::may_raise>,"
        " std::int32_t(PyObject *, float *) noexcept>);\n"
    )
    # Not "<interface>:<method>": id 0, which no lookup finds.
    for bad in ["area", ":area", "geom.Shape.v1:", "geom.Shape.v1:2d", "geom.Shape.v1:a-b", "geom#x:area", "ge om:area"]:
        body += f'static_assert(et::method_id<double(PyObject *)>("{bad}") == 0);\n'
    flags = [std, *CXX_WARN]
    if limited is True:
        flags.append("-DPy_LIMITED_API=0x030c0000")
    elif limited == "abi3t":
        flags.append("-DPy_TARGET_ABI3T=0x030f0000")
    compile_object(tmp_path, cpp_tu(body), ".cpp", cbuild.cxx(), flags)


@pytest.mark.parametrize(
    "decl, message",
    [
        ("et::method_id<PyObject *(PyObject *)>", "needs a flag"),
        ("et::method_id<double(double)>", "first argument is PyObject"),
        ("et::method_id<double(PyObject *, long double)>", "no signature code"),
        ("et::method_id<double(PyObject *, PyObject **)>", "never \\*O"),
        ("et::method_id<double(PyObject *, double *********)>", "at most 8 levels"),
        ("et::method_id<double(PyObject *), int>", "the flag is"),
    ],
)
def test_cpp_header_refuses_unspellable_signatures(tmp_path, decl, message):
    src = tmp_path / "bad.cpp"
    src.write_text(cpp_tu(f'constexpr std::uint64_t id = {decl}("geom.Shape.v1:m");\n'))
    proc = subprocess.run([*cbuild.cxx(), "-std=c++17", f"-I{cbuild.PY_INCLUDE}", f"-I{cbuild.INCLUDE}",
                           "-fsyntax-only", str(src)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert re.search(message, proc.stderr), proc.stderr


def test_cpp_header_wants_cpp17(tmp_path):
    src = tmp_path / "old.cpp"
    src.write_text(cpp_tu(""))
    proc = subprocess.run([*cbuild.cxx(), "-std=c++14", f"-I{cbuild.PY_INCLUDE}", f"-I{cbuild.INCLUDE}",
                           "-fsyntax-only", str(src)], capture_output=True, text=True)
    assert proc.returncode != 0 and "needs C++17" in proc.stderr


def test_get_include_ships_the_cpp_header():
    shipped = Path(et.get_include()) / "extensibletype.hpp"
    assert shipped.is_file(), f"{shipped} missing: the C++ header must ship in the package"
    assert shipped.read_bytes() == HPP.read_bytes()


GOLDEN_TYPED = ROOT / "tests" / "golden" / "typed_keys.txt"


def _golden_strings(line):
    return [re.sub(r"\\(.)", r"\1", m) for m in re.findall(r'"((?:[^"\\]|\\.)*)"', line)]


def golden_typed_keys():
    """From tests/golden/typed_keys.txt: the accepted cases as (name,
    signature, key, id), and the names refused as not "<interface>:<method>"
    (kind `key`, with a valid signature)."""
    ok, bad_names = [], []
    for line in GOLDEN_TYPED.read_text(encoding="utf-8").splitlines():
        fields = line.split(" ", 2)
        if fields[0] == "ok":
            name, signature, key = _golden_strings(line)
            ok.append((name, signature, key, int(fields[1], 16)))
        elif fields[0] == "bad" and fields[1] == "key":
            name, signature = _golden_strings(line)
            bad_names.append((name, signature))
    return ok, bad_names


def c_literal(text):
    """A C/C++ narrow string literal of text's UTF-8 bytes (octal escapes,
    which never swallow the following characters)."""
    out = []
    for byte in text.encode("utf-8"):
        c = chr(byte)
        out.append(c if 0x20 <= byte < 0x7F and c not in '"\\?' else "\\%03o" % byte)
    return '"' + "".join(out) + '"'


@pytest.mark.skipif(not GOLDEN_TYPED.exists(), reason="tests/golden/typed_keys.txt not in this tree yet")
@pytest.mark.parametrize("std", CXX_STDS)
def test_cpp_golden_typed_keys(tmp_path, std):
    """Every accepted golden typed key: method_id<Sig, Flag>(name), with Sig
    and Flag spelled from the key's signature, equals the golden id, and
    signature<Sig, Flag>() the signature (static_assert); every name refused
    as not "<interface>:<method>" gives id 0."""
    ok, bad_names = golden_typed_keys()
    assert ok and bad_names, f"no cases found in {GOLDEN_TYPED}"
    body = ""
    for name, signature, key, ident in ok:
        assert key == name + "#" + signature and et.prehash(key) == ident, key
        cpp, flag = cpp_sig_of(signature)
        body += (f"static_assert(et::method_id<{cpp}, {flag}>({c_literal(name)}) == UINT64_C(0x{ident:016x}), "
                 f"{c_literal(key)});\n")
        body += f"static_assert(et::signature<{cpp}, {flag}>() == {c_literal(signature)});\n"
        body += f"static_assert(et::prehash({c_literal(key)}) == UINT64_C(0x{ident:016x}));\n"
    for name, signature in bad_names:
        cpp, flag = cpp_sig_of(signature)
        body += f"static_assert(et::method_id<{cpp}, {flag}>({c_literal(name)}) == 0, {c_literal(name)});\n"
    compile_object(tmp_path, cpp_tu(body), ".cpp", cbuild.cxx(), [std, *CXX_WARN])
