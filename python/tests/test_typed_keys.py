"""Typed method keys (docs/spec.md, typed methods; issue 18): the signature
grammar from Python (``method_key``, ``_core._parse_typed_key``) and the
registration rules (a key with ``#`` must be a canonical typed key; a value
whose signature is known must match it)."""

import pytest

import extensibletype as et
from extensibletype import _core

CANONICAL = ["f64(O)", "v(O,f64)", "i64(O,*f64,i64)", "O+(O)!t", "f64(O,f64)!e", "v(O)!e", "b(O,p)", "c128(O,c128)"]
REJECTED = [
    "f64( O )",
    "double(O)",
    "f64(O)!t!e",
    "f64(O)!e!t",
    "F64(O)",
    "f64(O,v)",
    "f64(O",
    "f64(O,O+)",
    "O(O)",
    "O+(O)",
    "",
    "f64(O)!x",
    "f64(f64)",
]


@pytest.mark.parametrize("sig", CANONICAL)
def test_method_key_canonical(sig):
    key = et.method_key("geom.Shape.v1:area", sig)
    assert key == "geom.Shape.v1:area#" + sig
    iface, method, ret, args, flag = _core._parse_typed_key(key)
    assert (iface, method) == ("geom.Shape.v1", "area")
    assert f"{ret}({','.join(args)})" + (f"!{flag}" if flag else "") == sig


@pytest.mark.parametrize("sig", REJECTED)
def test_method_key_rejected(sig):
    with pytest.raises(ValueError):
        et.method_key("geom.Shape.v1:area", sig)
    with pytest.raises(ValueError):
        _core._parse_typed_key("geom.Shape.v1:area#" + sig)


def test_messages_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown type code 'double' at offset 0"):
        et.method_key("geom.Shape.v1:area", "double(O)")
    with pytest.raises(ValueError, match=r"first argument must be O"):
        et.method_key("geom.Shape.v1:area", "f64(f64)")
    with pytest.raises(ValueError, match=r"more than one flag"):
        et.method_key("geom.Shape.v1:area", "f64(O)!t!e")
    with pytest.raises(ValueError, match=r"not an identifier"):
        et.method_key("geom.Shape.v1:1area", "f64(O)")
    with pytest.raises(ValueError, match=r"no ':'"):
        et.method_key("area", "f64(O)")


def test_parse_typed_key_parts():
    assert _core._parse_typed_key("a.B.v2:get_x#*f64(O,**p,i8)!e") == ("a.B.v2", "get_x", "*f64", ("O", "**p", "i8"), "e")
    assert _core._parse_typed_key("a.B.v2:new#O+(O)!t") == ("a.B.v2", "new", "O+", ("O",), "t")
    with pytest.raises(ValueError, match="not a typed key"):
        _core._parse_typed_key("a.B.v2:get_x")


def test_argument_types():
    with pytest.raises(TypeError):
        et.method_key(b"a.b.v1:m", "f64(O)")
    with pytest.raises(TypeError):
        et.method_key("a.b.v1:m")
    assert "method_key" in et.__all__
    assert et.method_key.__text_signature__ == "($module, name, signature, /)"


# --- registration -----------------------------------------------------------

import ctypes  # noqa: E402


def fresh():
    class C(metaclass=et.ExtensibleType):
        pass

    return C


class Plain:
    pass


@pytest.mark.parametrize("make", [fresh, lambda: type("P", (Plain,), {})], ids=["extensible", "foreign"])
@pytest.mark.parametrize("sig", REJECTED + ["f64(O) ", "f64(O)#"])
def test_non_canonical_typed_keys_are_refused(make, sig):
    tp = make()
    et.set_slots(tp, {"demo.keep.v1:x": 0x1000})
    before = et.get_slots(tp)
    key = "geom.Shape.v1:area#" + sig
    for k in (key, key.encode()):
        with pytest.raises(ValueError, match="not a canonical typed key"):
            et.set_slots(tp, {"demo.other.v1:y": 0x2000, k: 0x3000})
    assert et.get_slots(tp) == before


def test_bad_typed_key_names_are_refused():
    tp = fresh()
    for key in ["area#f64(O)", "g.S.v1:1x#f64(O)", "g.S.v1:a-b#f64(O)", "#f64(O)", "g S:a#f64(O)"]:
        with pytest.raises(ValueError, match="not a canonical typed key"):
            et.set_slots(tp, {key: 0x1000})
    assert et.get_slots(tp) == {}


def test_cslots_typed_key_validated():
    with pytest.raises(ValueError, match=r"unknown type code 'double' at offset 0"):

        class Bad(metaclass=et.ExtensibleType):
            __cslots__ = {"geom.Shape.v1:area#double(O)": 0x1000}

    class Good(metaclass=et.ExtensibleType):
        __cslots__ = {"geom.Shape.v1:area#f64(O)": 0x1000}

    assert et.lookup(Good(), "geom.Shape.v1:area#f64(O)") == 0x1000


def test_canonical_typed_keys_register():
    tp = fresh()
    slots = {f"geom.Shape.v1:m{i}#{sig}": 0x1000 + i for i, sig in enumerate(CANONICAL)}
    et.set_slots(tp, slots)
    assert et.get_slots(tp) == slots


def _cb(restype, *argtypes, py=False):
    proto = (ctypes.PYFUNCTYPE if py else ctypes.CFUNCTYPE)(restype, *argtypes)
    return proto(lambda *a: 0)


MATCHING = [
    ("f64(O)", lambda: _cb(ctypes.c_double, ctypes.py_object)),
    ("f64(O)", lambda: _cb(ctypes.c_double, ctypes.c_void_p)),
    ("v(O,f64)", lambda: _cb(None, ctypes.py_object, ctypes.c_double)),
    ("i64(O,*f64,i64)", lambda: _cb(ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_double), ctypes.c_longlong)),
    ("i64(O,i64)", lambda: _cb(ctypes.c_ssize_t, ctypes.c_void_p, ctypes.c_long)),
    ("i32(O,u8,u16,u32,u64,i8,i16)", lambda: _cb(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint8, ctypes.c_ushort, ctypes.c_uint, ctypes.c_size_t, ctypes.c_byte, ctypes.c_short)),
    ("O+(O)!t", lambda: _cb(ctypes.py_object, ctypes.py_object, py=True)),
    ("f64(O,f64)!e", lambda: _cb(ctypes.c_int32, ctypes.py_object, ctypes.c_double, ctypes.POINTER(ctypes.c_double), py=True)),
    ("v(O)!e", lambda: _cb(ctypes.c_int32, ctypes.py_object, py=True)),
    ("O+(O,f64)!e", lambda: _cb(ctypes.py_object, ctypes.py_object, ctypes.c_double, py=True)),
    ("b(O,p)", lambda: _cb(ctypes.c_bool, ctypes.c_void_p, ctypes.c_void_p)),
    ("f32(O,**f32)", lambda: _cb(ctypes.c_float, ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_float)))),
]

MISMATCHED = [
    ("f64(O)", lambda: _cb(ctypes.c_float, ctypes.py_object)),
    ("f64(O)", lambda: _cb(ctypes.c_double, ctypes.py_object, ctypes.c_double)),
    ("f64(O)", lambda: _cb(ctypes.c_double, ctypes.c_double)),
    ("v(O,f64)", lambda: _cb(ctypes.c_int, ctypes.py_object, ctypes.c_double)),
    ("i64(O)", lambda: _cb(ctypes.c_int32, ctypes.c_void_p)),
    ("p(O)", lambda: _cb(ctypes.py_object, ctypes.c_void_p)),
    ("f64(O,f64)!e", lambda: _cb(ctypes.c_double, ctypes.py_object, ctypes.c_double, py=True)),
    ("f64(O,*f64)", lambda: _cb(ctypes.c_double, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float))),
    ("f64(O,p)", lambda: _cb(ctypes.c_double, ctypes.c_void_p, ctypes.c_char_p)),
]


@pytest.mark.parametrize("sig, make", MATCHING, ids=[s for s, _ in MATCHING])
def test_ctypes_prototype_matches(sig, make):
    tp = fresh()
    fn = make()
    key = et.method_key("geom.Shape.v1:m", sig)
    et.set_slots(tp, {key: fn})
    assert et.lookup(tp(), key) == ctypes.cast(fn, ctypes.c_void_p).value


@pytest.mark.parametrize("sig, make", MISMATCHED, ids=[f"{i}-{s}" for i, (s, _) in enumerate(MISMATCHED)])
def test_ctypes_prototype_mismatch(sig, make):
    tp = fresh()
    key = et.method_key("geom.Shape.v1:m", sig)
    with pytest.raises(ValueError, match=r"the key's signature is .* but the value's is .*ctypes restype") as info:
        et.set_slots(tp, {"demo.keep.v1:x": 0x1000, key: make()})
    assert sig in str(info.value)
    assert et.get_slots(tp) == {}


def test_untyped_or_unknown_prototypes_are_not_checked():
    tp = fresh()
    fn = _cb(ctypes.c_float, ctypes.c_float)
    lib_fn = ctypes.pythonapi.Py_IncRef  # no argtypes: signature unknown
    et.set_slots(tp, {"geom.Shape.v1:untyped": fn, "geom.Shape.v1:m#f64(O)": lib_fn, "geom.Shape.v1:n#f64(O)": 0x1234,
                      "geom.Shape.v1:k#f64(O)": ctypes.c_void_p(0x5678)})
    assert et.lookup(tp(), "geom.Shape.v1:n#f64(O)") == 0x1234


def test_error_names_the_c_function_of_e_signatures():
    tp = fresh()
    with pytest.raises(ValueError, match=r"f64\(O,f64\)!e \(the C function i32\(O,f64,\*f64\)\)"):
        et.set_slots(tp, {"g.S.v1:m#f64(O,f64)!e": _cb(ctypes.c_double, ctypes.py_object, ctypes.c_double)})


def test_lookup_refuses_non_canonical_typed_keys():
    tp = fresh()
    with pytest.raises(ValueError, match="not a canonical typed key"):
        et.lookup(tp(), "geom.Shape.v1:area#f64( O )")
    assert et.lookup(tp(), "geom.Shape.v1:area#f64(O)") is None


# A stand-in for numba's CFunc (detected by module and class name, never by
# importing numba): the checks run without numba installed.
class _NbType:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return self.name


class _NbSig:
    def __init__(self, ret, *args):
        self.return_type, self.args = _NbType(ret), tuple(_NbType(a) for a in args)

    def __str__(self):
        return f"({', '.join(map(str, self.args))}) -> {self.return_type}"


def _fake_cfunc(sig, address=0x4000, private=True):
    cls = type("CFunc", (), {"__module__": "numba.core.ccallback"})
    obj = cls()
    obj.address = address
    if private:
        obj._sig = sig
    else:
        obj.nopython_signatures = [sig]
    return obj


@pytest.mark.parametrize("private", [True, False], ids=["_sig", "nopython_signatures"])
def test_numba_like_cfunc_without_numba(private):
    tp = fresh()
    ok = _fake_cfunc(_NbSig("float64", "void*", "int64", "bool", "float64*", "void**", "complex64"), private=private)
    key = "geom.Shape.v1:m#f64(O,i64,b,*f64,*p,c64)"
    et.set_slots(tp, {key: ok})
    assert et.lookup(tp(), key) == 0x4000
    bad = _fake_cfunc(_NbSig("float32", "void*"), private=private)
    with pytest.raises(ValueError, match=r"signature is f64\(O\), but the value's is f32\(O\)|signature is f64\(O\), but the value's is f32\(p\)"):
        et.set_slots(tp, {"geom.Shape.v1:n#f64(O)": bad})
    e_sig = _fake_cfunc(_NbSig("int32", "void*", "float64", "float64*"), private=private)
    et.set_slots(tp, {"geom.Shape.v1:at#f64(O,f64)!e": e_sig, "geom.Shape.v1:void#v(O)": _fake_cfunc(_NbSig("none", "void*"))})


def test_numba_like_cfunc_is_kept_alive():
    import gc
    import weakref

    tp = fresh()
    f = _fake_cfunc(_NbSig("float64", "void*"))
    ref = weakref.ref(f)
    et.set_slots(tp, {"geom.Shape.v1:area#f64(O)": f})
    del f
    gc.collect()
    assert ref() is not None
    et.set_slots(tp, {"geom.Shape.v1:area#f64(O)": None})


def test_numba_like_cfunc_without_signature():
    cls = type("CFunc", (), {"__module__": "numba.core.ccallback", "address": 0x4000})
    with pytest.raises(TypeError, match="cannot read the signature of numba cfunc"):
        et.set_slots(fresh(), {"geom.Shape.v1:area#f64(O)": cls()})


def test_random_signatures_never_crash():
    """Canonical signatures with random edits: ValueError or a canonical key
    that re-renders identically, never another exception."""
    import random

    rng = random.Random(18)
    alphabet = list("iufcbpvO+*(),!te0123468 #xé")
    accepted = 0
    for _ in range(3000):
        sig = list(rng.choice(CANONICAL + ["**f64(O,*p,u8)!t", "O+(O,O)!e"]))
        for _ in range(rng.randrange(0, 3)):
            at = rng.randrange(0, len(sig) + 1)
            edit = rng.randrange(3)
            if edit == 0 and at < len(sig):
                del sig[at]
            elif edit == 1:
                sig.insert(at, rng.choice(alphabet))
            elif at < len(sig):
                sig[at] = rng.choice(alphabet)
        sig = "".join(sig)
        try:
            key = et.method_key("demo.fuzz.v1:m", sig)
        except ValueError:
            continue
        accepted += 1
        _, _, ret, args, flag = _core._parse_typed_key(key)
        assert f"{ret}({','.join(args)})" + (f"!{flag}" if flag else "") == sig
    assert 300 < accepted < 3000
