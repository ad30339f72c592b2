"""Fuzz cases for the Python API of extensibletype, each checked against a
pure-Python model where a right answer exists.

Every case is a function of one seed (``random.Random(seed)``) and makes its
own classes, so a case can be re-run alone: ``fuzz_api.py --seeds N:N+1``.
A case raises ``Wrong`` (or any exception) when the extension's answer
differs from the model's; crashes and hangs are caught by the driver.
"""

from __future__ import annotations

import abc
import ctypes
import gc
import hashlib
import math
import os
import random
import re
import struct
import unicodedata
import weakref

import extensibletype as et

try:
    import numpy as np
except ImportError:  # the array cases need NumPy
    np = None

import extensibletype.arrays as xa

ET = et.ExtensibleType
U64 = 1 << 64


class Wrong(AssertionError):
    """The extension's answer differs from the model's."""


def check(cond, what):
    if not cond:
        raise Wrong(what)


# --- the model of keys and values ------------------------------------------


def model_prehash(key):
    """prehash(): md5 of the UTF-8 bytes, first 8 bytes little-endian."""
    if isinstance(key, str):
        data = key.encode("utf-8")  # UnicodeEncodeError for lone surrogates
    elif isinstance(key, bytes):
        data = key
    else:
        raise TypeError("prehash() argument must be str or bytes")
    return struct.unpack("<Q", hashlib.md5(data).digest()[:8])[0]


_SCALAR = r"(?:i8|i16|i32|i64|u8|u16|u32|u64|f32|f64|c64|c128|b)"
_VALUE = rf"(?:\*{{0,8}}(?:{_SCALAR}|p))"
_SIGNATURE = re.compile(rf"(?:{_VALUE}|v)\(O(?:,(?:{_VALUE}|O))*\)(?:!t|!e)?|O\+\(O(?:,(?:{_VALUE}|O))*\)(?:!t|!e)")
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def model_typed_ok(text):
    """A key with '#' is registrable only as a canonical typed key
    (docs/spec.md 1.1), modelled here independently of the runtime."""
    name, _, sig = text.partition("#")
    interface, colon, method = name.rpartition(":")
    if not colon or not interface or not _METHOD.fullmatch(method) or not _SIGNATURE.fullmatch(sig):
        return False
    return not any(c.isspace() or unicodedata.category(c) == "Cc" for c in interface)


def model_key(key):
    """A slot key -> its id, or the exception class it must raise."""
    if isinstance(key, bool):
        return TypeError
    if isinstance(key, int):
        return key if 0 < key < U64 else ValueError
    if isinstance(key, str):
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            return UnicodeEncodeError
        if "#" in key and not model_typed_ok(key):
            return ValueError
        return model_prehash(key) or ValueError
    if isinstance(key, bytes):
        try:
            text = key.decode("utf-8")
        except UnicodeDecodeError:
            return ValueError
        if "#" in text and not model_typed_ok(text):
            return ValueError
        return model_prehash(key) or ValueError
    return TypeError


def model_value(value):
    """A slot value -> its address, None (remove), or the exception class."""
    if value is None:
        return None
    if isinstance(value, bool):
        return TypeError
    if isinstance(value, int):
        return value if 0 < value < U64 else ValueError
    if isinstance(value, (ctypes.c_void_p, ctypes._CFuncPtr, ctypes._Pointer)):
        address = ctypes.cast(value, ctypes.c_void_p).value
        return address if address else ValueError
    if type(value).__name__ == "PyCapsule":
        return CAPSULE_ADDRESS
    return TypeError


_capsule_new = ctypes.pythonapi.PyCapsule_New
_capsule_new.restype = ctypes.py_object
_capsule_new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
CAPSULE_ADDRESS = 0x5EED0000


def is_error(x):
    return isinstance(x, type) and issubclass(x, BaseException)


def raises(expected, fn, *args):
    """Run fn; check it raised `expected` (a class) or return its result."""
    try:
        result = fn(*args)
    except Exception as e:  # noqa: BLE001 - compared against the model
        if expected is None or not isinstance(e, expected):
            raise Wrong(f"{fn.__name__}{args!r:.200}: raised {type(e).__name__}: {e}, expected {expected}") from e
        return e
    if expected is not None:
        raise Wrong(f"{fn.__name__}{args!r:.200}: returned {result!r:.100}, expected {expected}")
    return result


# --- random inputs ---------------------------------------------------------


def rand_text(rng):
    pick = rng.random()
    n = rng.choice([0, 1, 3, 8, 40, 300])
    if pick < 0.4:
        return "".join(rng.choice("abcxyz.:_v1") for _ in range(n))
    if pick < 0.6:  # any code point, surrogates included
        return "".join(chr(rng.randrange(0x110000)) for _ in range(n))
    if pick < 0.7:
        return "k\x00" + "".join(chr(rng.randrange(0x80, 0x800)) for _ in range(n))
    return "\ud800" if rng.random() < 0.5 else "x" + chr(rng.randrange(0xD800, 0xE000))


def rand_bytes(rng):
    n = rng.choice([0, 1, 4, 17, 200])
    if rng.random() < 0.5:
        return bytes(rng.randrange(256) for _ in range(n))
    return rand_text(rng).encode("utf-8", "surrogatepass")


def rand_int(rng):
    return rng.choice(
        [
            0,
            1,
            -1,
            U64 - 1,
            U64,
            -U64,
            2**63,
            2**31,
            2**32 + 1,
            2**100,
            -(2**100),
            rng.randrange(1, U64),
            rng.randrange(-(2**70), 2**70),
        ]
    )


def rand_key(rng):
    p = rng.random()
    if p < 0.35:
        return rand_text(rng)
    if p < 0.5:
        return rand_bytes(rng)
    if p < 0.8:
        return rand_int(rng)
    return rng.choice([None, True, False, 1.5, [1], (), object(), b"ok".decode, type])


_keep = []  # ctypes objects whose addresses a model compares against


def rand_value(rng):
    p = rng.random()
    if p < 0.15:
        return None
    if p < 0.55:
        return rand_int(rng)
    if p < 0.65:
        v = ctypes.c_void_p(rng.choice([0, 0x1000, rng.randrange(1, U64)]))
        return v
    if p < 0.72:
        f = ctypes.CFUNCTYPE(ctypes.c_int)(lambda: 0)
        _keep.append(f)
        if len(_keep) > 64:
            del _keep[:32]
        return f
    if p < 0.8:
        return _capsule_new(CAPSULE_ADDRESS, b"fuzz.capsule", None)
    return rng.choice([True, 1.5, "0x10", b"", object(), [0x10], ctypes.c_int(5)])


def unique_key(seed, i):
    return f"fuzz{seed}.v1:k{i}"


# --- cases -------------------------------------------------------------------


def case_prehash(rng, seed):
    for _ in range(8):
        key = rng.choice([rand_text, rand_bytes, rand_key])(rng)
        try:
            want = model_prehash(key)
        except (TypeError, UnicodeEncodeError) as e:
            raises(type(e), et.prehash, key)
            continue
        got = et.prehash(key)
        check(got == want, f"prehash({key!r:.80}) = {got:#x}, model {want:#x}")


def case_keys(rng, seed):
    """lookup() with hostile keys on a class holding known slots."""
    keys = [rand_key(rng) for _ in range(6)]
    slots = {}
    for k in keys:
        kid = model_key(k)
        if not is_error(kid):
            slots[kid] = rng.randrange(1, U64)
    cls = ET(f"K{seed}", (), {"__cslots__": dict(slots)})
    obj = cls()
    for k in keys + [rand_key(rng) for _ in range(4)]:
        kid = model_key(k)
        if is_error(kid):
            raises(kid, et.lookup, obj, k)
        else:
            got = et.lookup(obj, k)
            check(got == slots.get(kid), f"lookup({k!r:.60}) = {got}, model {slots.get(kid)}")


def apply_model(own, mapping_items):
    """The model of set_slots: validate everything (a slot named twice in
    one call, by key or by id, is a ValueError), then merge (or raise)."""
    new = dict(own)
    seen = set()
    duplicate = False
    for k, v in mapping_items:
        kid = model_key(k)
        if is_error(kid):
            return kid
        val = model_value(v)
        if is_error(val):
            return val
        duplicate = duplicate or kid in seen
        seen.add(kid)
        if val is None:
            new.pop(kid, None)
        else:
            new[kid] = val
    return ValueError if duplicate else new


def ids_of(slots):
    """get_slots() keys (names where known, else ints) -> ids."""
    return {(k if isinstance(k, int) else model_prehash(k)): v for k, v in slots.items()}


class HostileMapping:
    """A mapping whose items() raises, returns junk, or mutates things."""

    def __init__(self, items, mode, target=None, nested=None):
        self._items, self.mode, self.target, self.nested = items, mode, target, nested

    def items(self):
        if self.mode == "raise":
            raise RuntimeError("items() refuses")
        if self.mode == "junk":
            return [(1,), "ab", 3]
        if self.mode == "mutate" and self.target is not None:
            et.set_slots(self.target, self.nested)  # re-entrant write
        if self.mode == "mutate_lazily":
            return self._lazily()
        if self.mode == "generator":
            return (kv for kv in self._items)
        return list(self._items)

    def _lazily(self):
        """Yield half, write to the target re-entrantly, yield the rest."""
        half = len(self._items) // 2
        yield from self._items[:half]
        et.set_slots(self.target, self.nested)
        yield from self._items[half:]


class DictWithHostileItems(dict):
    """A dict subclass: set_slots reads the dict itself, never items()."""

    def items(self):
        raise RuntimeError("items() of a dict subclass must not be called")

    def keys(self):
        raise RuntimeError("keys() must not be needed")


def _hashable(k):
    try:
        hash(k)
    except TypeError:
        return False
    return True


def case_set_slots(rng, seed):
    extensible = rng.random() < 0.6
    if extensible:
        cls = ET(f"S{seed}", (), {})
    else:
        cls = type(f"F{seed}", (), {})
    own = {}
    for _ in range(rng.randrange(1, 5)):
        items = [(rand_key(rng) if rng.random() < 0.3 else unique_key(seed, rng.randrange(8)), rand_value(rng)) for _ in range(rng.randrange(0, 6))]
        mode = rng.choice(["dict", "dict", "dictsub", "list", "generator", "raise", "junk", "mutate", "mutate_lazily"])
        mapping_items = items
        nested_model = None
        if mode in ("dict", "dictsub") and not all(isinstance(k, (str, bytes, int, type(None), float, tuple, object)) and _hashable(k) for k, _ in items):
            mode = "list"
        if mode in ("dict", "dictsub"):
            mapping = dict(items) if mode == "dict" else DictWithHostileItems(items)
            mapping_items = list(dict.items(mapping))
        elif mode in ("mutate", "mutate_lazily"):
            nested = {unique_key(seed, 100 + rng.randrange(3)): rng.randrange(1, U64)}
            mapping = HostileMapping(items, mode, cls, nested)
            nested_model = nested
        else:
            mapping = HostileMapping(items, mode)
        if mode == "raise":
            expected = RuntimeError
        elif mode == "junk":
            expected = TypeError
        else:
            base = own
            if nested_model is not None:
                base = apply_model(own, nested_model.items())
            expected = apply_model(base, mapping_items)
        try:
            et.set_slots(cls, mapping)
        except Exception as e:  # noqa: BLE001
            if not (is_error(expected) and isinstance(e, expected)):
                raise Wrong(f"set_slots({mapping_items!r:.200}, mode {mode}) raised {type(e).__name__}: {e}; model {expected!r:.200}")
            if nested_model is not None:
                own = apply_model(own, nested_model.items())  # the nested write succeeded
        else:
            check(not is_error(expected), f"set_slots({mapping_items!r:.200}, mode {mode}) succeeded; model raises {expected}")
            own = expected
        got = ids_of(et.get_slots(cls))
        check(got == own, f"get_slots after mode {mode}: {got!r:.200} != model {own!r:.200}")
        for kid, addr in own.items():
            got = et.lookup(cls(), kid)
            check(got == addr, f"lookup({kid:#x}) = {got}, model {addr}")
    if not extensible:
        et.set_slots(cls, {k: None for k in own})  # leave the registry small


def effective(cls, own):
    merged = {}
    for c in cls.__mro__:
        for k, v in own.get(c, {}).items():
            merged.setdefault(k, v)
    return merged


def case_hierarchy(rng, seed):
    """Random classes, bases, __cslots__, set_slots and __bases__ swaps."""
    own = {}
    classes = []
    keys = [unique_key(seed, i) for i in range(6)]
    ids = {k: model_prehash(k) for k in keys}

    def rand_slots():
        return {k: rng.randrange(1, U64) for k in rng.sample(keys, rng.randrange(0, 4))}

    plain_roots = []
    for i in range(rng.randrange(0, 3)):
        p = type(f"P{seed}_{i}", (), {})
        if rng.random() < 0.5:
            s = rand_slots()
            et.set_slots(p, s)
            own[p] = {ids[k]: v for k, v in s.items()}
        plain_roots.append(p)
    for i in range(rng.randrange(2, 8)):
        pool = classes + plain_roots
        nb = rng.randrange(0, min(3, len(pool)) + 1)
        bases = tuple(rng.sample(pool, nb))
        s = rand_slots()
        try:
            cls = ET(f"H{seed}_{i}", bases, {"__cslots__": dict(s)})
        except TypeError:
            continue  # an impossible MRO: CPython refuses, as for any metaclass
        own[cls] = {ids[k]: v for k, v in s.items()}
        classes.append(cls)
    all_classes = classes + plain_roots
    for step in range(rng.randrange(1, 6)):
        action = rng.random()
        if action < 0.45 and classes:
            c = rng.choice(classes)
            pool = [x for x in all_classes if x is not c]
            new_bases = tuple(rng.sample(pool, rng.randrange(1, min(3, len(pool)) + 1))) if pool else (object,)
            before = c.__bases__
            try:
                c.__bases__ = new_bases
            except TypeError:
                check(c.__bases__ == before, "a refused __bases__ assignment changed __bases__")
        elif action < 0.85:
            c = rng.choice(all_classes)
            change = {k: (None if rng.random() < 0.3 else rng.randrange(1, U64)) for k in rng.sample(keys, rng.randrange(1, 3))}
            et.set_slots(c, change)
            o = own.setdefault(c, {})
            for k, v in change.items():
                if v is None:
                    o.pop(ids[k], None)
                else:
                    o[ids[k]] = v
        else:
            gc.collect(0)
        for c in all_classes:
            want = effective(c, own)
            got = ids_of(et.get_slots(c))
            if c in plain_roots and c not in own:
                pass
            check(got == want, f"step {step}: get_slots({c.__name__}) {got} != model {want} (mro {[x.__name__ for x in c.__mro__]})")
            inst = c()
            for k in keys:
                g = et.lookup(inst, k)
                check(g == want.get(ids[k]), f"step {step}: lookup({c.__name__}, {k}) = {g}, model {want.get(ids[k])}")
    for p in plain_roots:
        if p in own:
            et.set_slots(p, {k: None for k in keys})


def case_foreign_churn(rng, seed):
    """Plain classes (one maybe a bytearray subclass) registered, changed and
    unregistered at random, against the model; unregistered classes die, and
    new classes (often at their addresses) answer nothing."""
    keys = [unique_key(seed, i) for i in range(5)]
    ids = {k: model_prehash(k) for k in keys}
    own = {}
    classes = []
    for i in range(rng.randrange(1, 6)):
        roots = (bytearray,) if i == 0 and rng.random() < 0.3 else ()
        bases = tuple(rng.sample(classes, rng.randrange(0, min(2, len(classes)) + 1))) if classes and not roots else roots
        try:
            c = type(f"FC{seed}_{i}", bases, {})
        except TypeError:
            continue  # an impossible MRO
        classes.append(c)
    for step in range(rng.randrange(1, 12)):
        c = rng.choice(classes)
        o = own.setdefault(c, {})
        if o and rng.random() < 0.35:
            change = {k: None for k in keys}  # unregister
        else:
            change = {k: (None if rng.random() < 0.4 else rng.randrange(1, U64)) for k in rng.sample(keys, rng.randrange(1, 4))}
        et.set_slots(c, change)
        for k, v in change.items():
            if v is None:
                o.pop(ids[k], None)
            else:
                o[ids[k]] = v
        for d in classes:
            want = effective(d, own)
            ours = set(ids.values())  # bytearray may carry the array providers' slots
            got = {i: v for i, v in ids_of(et.get_slots(d)).items() if i in ours}
            check(got == want, f"step {step}: get_slots({d.__name__}) {got} != model {want}")
            kind = et.table_info(d)["kind"]
            check((kind == "foreign") == bool(own.get(d)), f"step {step}: table_info({d.__name__}) kind {kind!r}, own {own.get(d)}")
            inst = d()
            for k in keys:
                g = et.lookup(inst, k)
                check(g == want.get(ids[k]), f"step {step}: lookup({d.__name__}, {k}) = {g}, model {want.get(ids[k])}")
            del inst
    for c in classes:
        et.set_slots(c, {k: None for k in keys})
    refs = [weakref.ref(x) for x in classes]
    del c, d, classes, own, bases
    gc.collect()
    check(all(r() is None for r in refs), "an unregistered plain class was kept alive")
    for i in range(4):
        fresh = type(f"FR{seed}_{i}", (), {})
        for k in keys:
            check(et.lookup(fresh(), k) is None, f"a new class answered {k} (a dead class's table)")


def _heap_in_use():
    """Bytes malloc has handed out (glibc mallinfo2), or None. Rust's
    allocations go through malloc; CPython's small objects (pymalloc arenas,
    mmap) do not, so this follows the registry's memory closely."""
    global _MALLINFO2
    if _MALLINFO2 is None:
        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

        try:
            f = ctypes.CDLL(None).mallinfo2
        except (OSError, AttributeError):
            _MALLINFO2 = False
        else:
            f.restype = MallInfo2
            _MALLINFO2 = f
    return _MALLINFO2().uordblks if _MALLINFO2 else None


_MALLINFO2 = None


def case_memory_bound(rng, seed):
    """set_slots cycling through a few contents on one type (foreign plain
    class, bytearray subclass, or class made with the metaclass, with a
    subclass): after each content was published once, 300 more calls do not
    grow the heap (tables are interned by content); answers match the model."""
    keys = [unique_key(seed, i) for i in range(4)]
    ids = {k: model_prehash(k) for k in keys}
    kind = rng.choice(["plain", "bytearray", "extensible"])
    if kind == "plain":
        cls = type(f"MB{seed}", (), {})
    elif kind == "bytearray":
        cls = type(f"MB{seed}", (bytearray,), {})
    else:
        cls = ET(f"MB{seed}", (), {})
    sub = type(cls)(f"MBS{seed}", (cls,), {})
    contents = []
    for _ in range(rng.randrange(1, 5)):
        contents.append({k: rng.randrange(1, U64) for k in rng.sample(keys, rng.randrange(1, 5))})

    def apply(content):
        et.set_slots(cls, {k: content.get(k) for k in keys})  # None removes the rest

    for c in contents:
        apply(c)
    before = _heap_in_use()
    last = contents[-1]
    for _ in range(300):
        last = rng.choice(contents)
        apply(last)
    after = _heap_in_use()
    want = {ids[k]: v for k, v in last.items()}
    got = {i: v for i, v in ids_of(et.get_slots(cls)).items() if i in set(ids.values())}  # bytearray's own slots aside
    check(got == want, f"get_slots {got} != model {want}")
    for k in keys:
        check(et.lookup(sub(), k) == want.get(ids[k]), f"lookup(sub, {k}) != model {want.get(ids[k])}")
    if before is not None:
        # The old registry: >= 200 bytes per call (60 KB here).
        check(after - before <= 8192, f"{kind}: heap grew by {after - before} bytes over 300 set_slots cycling {len(contents)} contents")
    et.set_slots(cls, {k: None for k in keys})


class SubET(ET):
    pass


class OtherMeta(type):
    pass


def case_metaclass(rng, seed):
    """Metaclass combinations: conflicts must be TypeError, winners work."""
    metas = [ET, SubET, abc.ABCMeta, type, OtherMeta]
    if rng.random() < 0.3:
        metas.append(type(f"Mix{seed}", (ET, abc.ABCMeta), {}))
    key = unique_key(seed, 0)
    bases = []
    for i in range(rng.randrange(0, 3)):
        m = rng.choice(metas)
        bases.append(m(f"B{seed}_{i}", (), {"__cslots__": {key: 0x1000 + i}} if issubclass(m, ET) else {}))
    explicit = rng.choice(metas + [None])
    # The model: CPython's metaclass calculation (the most derived one).
    winner = explicit or type
    conflict = False
    for b in bases:
        mb = type(b)
        if issubclass(winner, mb):
            continue
        if issubclass(mb, winner):
            winner = mb
            continue
        conflict = True
    kwds = {} if explicit is None else {"metaclass": explicit}
    ns = {"__cslots__": {key: 0x2000}} if rng.random() < 0.5 else {}
    try:
        cls = _make_class(f"M{seed}", tuple(bases), ns, kwds)
    except TypeError:
        check(conflict or len(set(bases)) != len(bases), f"class with {explicit} and bases {bases}: TypeError, model has no conflict")
        return
    check(not conflict, f"class with metaclass {explicit} and bases of {[type(b) for b in bases]} created; model: conflict")
    check(type(cls) is winner, f"metaclass {type(cls)}, model {winner}")
    extensible = issubclass(winner, ET)
    # Own slots only on an extensible class; then the first extensible class
    # of the MRO that defines the key (a plain class inherits through it).
    want = 0x2000 if ns and extensible else next(
        (c.__dict__["__cslots__"][key] for c in cls.__mro__[1:] if isinstance(c, ET) and "__cslots__" in c.__dict__), None
    )
    got = et.lookup(cls(), key)
    check(got == want, f"lookup on a {winner.__name__} class = {got}, model {want}")


def _make_class(name, bases, ns, kwds):
    import types

    return types.new_class(name, bases, kwds, lambda d: d.update(ns))


# --- arrays --------------------------------------------------------------------

SUPPORTED = {"float64", "float32", "int64"}


def rand_numpy(rng, shape=None):
    dtype = rng.choice(["float64", "float64", "float32", "int64", "int32", "uint8", "bool", "complex128", "float16", ">f8"])
    if shape is None:
        shape = tuple(rng.choice([0, 1, 2, 3, 5, 7]) for _ in range(rng.randrange(0, 4)))
    base_shape = tuple(2 * n + 1 for n in shape)
    transpose = len(shape) >= 2 and rng.random() < 0.3
    if dtype in ("bool",):
        base = np.asarray([rng.random() < 0.5 for _ in range(math.prod(base_shape))]).reshape(base_shape)
    elif "int" in dtype:
        base = np.asarray([rng.randrange(-(2**62), 2**62) if dtype == "int64" else rng.randrange(0, 100) for _ in range(math.prod(base_shape))], dtype=dtype).reshape(base_shape)
    else:
        base = np.asarray([rng.uniform(-1e3, 1e3) for _ in range(math.prod(base_shape))]).astype(dtype).reshape(base_shape)
    if transpose:  # Fortran-order memory, same shape
        base = np.ascontiguousarray(base.T).T
    # odd strides: steps and reversals, then trimmed to `shape`
    index = tuple(slice(None, None, -2) if rng.random() < 0.3 else slice(0, 2 * n, rng.choice([1, 2])) for n in shape)
    a = base[index + (Ellipsis,)]
    a = a[tuple(slice(0, n) for n in shape) + (Ellipsis,)]
    assert a.shape == shape, (a.shape, shape)
    if rng.random() < 0.2:
        a = a.copy()
    if rng.random() < 0.15:
        a.flags.writeable = False
    return a


def native_kind(a):
    return a.dtype.isnative and a.dtype.name in SUPPORTED


def model_sum(a):
    if a.dtype.name == "int64":
        s = sum(int(v) for v in a.ravel()) % U64
        return s - U64 if s >= 2**63 else s
    return math.fsum(float(v) for v in a.ravel())


def close(got, want, a, tol):
    scale = sum(abs(float(v)) for v in np.asarray(a).ravel()) + 1.0
    return abs(got - want) <= tol * scale


def kinds_and_shapes(fn, args, x, y):
    """The checks of dot/axpy after both views are acquired: dtype (TypeError)
    and shape (ValueError). True when both pass."""
    bad_kind = not native_kind(x) or not native_kind(y) or x.dtype != y.dtype
    bad_shape = x.shape != y.shape
    if bad_kind and bad_shape:
        raises((TypeError, ValueError), fn, *args)
    elif bad_kind:
        raises(TypeError, fn, *args)
    elif bad_shape:
        raises(ValueError, fn, *args)
    return not (bad_kind or bad_shape)


def case_arrays(rng, seed):
    if np is None:
        return
    op = rng.choice(["sum", "dot", "axpy", "view_info", "array", "resize"])
    if op == "sum":
        a = rand_numpy(rng)
        if not native_kind(a):
            raises(TypeError, xa.sum, a)
            return
        got = xa.sum(a)
        want = model_sum(a)
        if a.dtype.name == "int64":
            check(got == want, f"sum int64 {a.shape} {a.strides}: {got} != {want}")
        else:
            check(close(got, want, a, 1e-9 if a.dtype.name == "float64" else 1e-5), f"sum {a.dtype} {a.shape} {a.strides}: {got} != {want}")
    elif op == "dot":
        x = rand_numpy(rng)
        y = rand_numpy(rng, shape=x.shape if rng.random() < 0.7 else None)
        if not kinds_and_shapes(xa.dot, (x, y), x, y):
            return
        got = xa.dot(x, y)
        if x.dtype.name == "int64":
            s = sum(int(p) * int(q) for p, q in zip(x.ravel(), y.ravel())) % U64
            want = s - U64 if s >= 2**63 else s
            check(got == want, f"dot int64: {got} != {want}")
        else:
            want = math.fsum(float(p) * float(q) for p, q in zip(x.ravel(), y.ravel()))
            scale = math.fsum(abs(float(p) * float(q)) for p, q in zip(x.ravel(), y.ravel())) + 1.0
            tol = 1e-9 if x.dtype.name == "float64" else 1e-5
            check(abs(got - want) <= tol * scale, f"dot {x.dtype} {x.shape}: {got} != {want}")
    elif op == "axpy":
        x = rand_numpy(rng)
        overlap = rng.random() < 0.2 and x.flags.writeable and x.ndim == 1
        y = x[::-1] if overlap else rand_numpy(rng, shape=x.shape if rng.random() < 0.8 else None)
        a = rng.choice([2, -3, 0, True, 1.5, 2**70, "x"])
        xb, yb = x.copy(), y.copy()
        if not y.flags.writeable:  # y is acquired writable before any check
            raises(BufferError, xa.axpy, a, x, y)
            return
        if not kinds_and_shapes(xa.axpy, (a, x, y), x, y):
            return
        if isinstance(a, str) or (x.dtype.name == "int64" and isinstance(a, float)):
            raises(TypeError, xa.axpy, a, x, y)
            return
        if x.dtype.name == "int64" and not -(2**63) <= a < 2**63:
            raises(OverflowError, xa.axpy, a, x, y)
            return
        xa.axpy(a, x, y)
        if x.dtype.name == "int64":
            want = [((int(q) + a * int(p)) + 2**63) % U64 - 2**63 for p, q in zip(xb.ravel(), yb.ravel())]
            check([int(v) for v in y.ravel()] == want, f"axpy int64 {x.shape}: {y.ravel()[:5]} != {want[:5]}")
        else:
            want = yb.astype(np.float64) + float(a) * xb.astype(np.float64)
            tol = 1e-12 if x.dtype.name == "float64" else 1e-4
            err = np.abs(y.astype(np.float64) - want)
            check(bool(np.all(err <= tol * (np.abs(want) + 1.0))), f"axpy {x.dtype} {x.shape} overlap={overlap}: max err {err.max() if err.size else 0}")
    elif op == "view_info":
        x = rand_numpy(rng)
        flags = rng.choice([0, 1, 2, 4, 7, 8, 2**31 - 1, 2**31, 2**32 + 1, -1, 2**64, True, 1.0])
        if isinstance(flags, bool) or not isinstance(flags, int):
            raises(TypeError, xa.view_info, x, flags)
            return
        if not 0 <= flags < 2**31:
            raises(ValueError, xa.view_info, x, flags)
            return
        if flags & ~7:
            raises(BufferError, xa.view_info, x, flags)
            return
        try:
            info = xa.view_info(x, flags)
        except BufferError:
            ok = (flags & 1 and not x.flags.writeable) or (flags & 2 and not x.flags.c_contiguous) or (flags & 4 and not (x.flags.c_contiguous or x.flags.f_contiguous))
            check(ok, f"view_info({x.dtype} {x.shape} {x.strides}, {flags}) refused")
            return
        check(info["shape"] == x.shape, f"view_info shape {info['shape']} != {x.shape}")
        if x.size:
            check(info["strides"] == x.strides, f"view_info strides {info['strides']} != {x.strides}")
        check(info["readonly"] == (not x.flags.writeable), "view_info readonly")
    elif op == "array":
        shape = rng.choice([(), 0, 3, (2, 3), (0, 5), (2**64,), (2**63,), (-1,), (2**62, 4), (1,) * 40, "ab", (1.5,), [2, 2], (0, 2**62, 8)])
        dtype = rng.choice(["float64", "float32", "int64", "int8", None, np.float32 if np else "float32", "bogus", 5])
        try:
            arr = xa.Array(shape, dtype) if dtype is not None else xa.Array(shape)
        except (TypeError, ValueError) as e:
            check("Array()" in str(e), f"Array({shape!r}, {dtype!r}) error without naming Array(): {e}")
            return
        want_shape = (shape,) if isinstance(shape, int) else tuple(shape)
        check(arr.shape == want_shape, f"Array shape {arr.shape} != {want_shape}")
        check(xa.sum(arr) == 0, "Array not zero-filled")
        check(np.asarray(arr).shape == want_shape, "buffer shape")
    elif op == "resize":
        arr = xa.Array((rng.randrange(0, 6),), rng.choice(["float64", "int64"]))
        arr.fill(1)
        old = arr.shape[0]
        held = memoryview(arr) if rng.random() < 0.5 else None
        new = rng.choice([(0,), (3,), (2, 2), (2**64,), (-1,), "x"])
        try:
            arr.resize(new)
        except BufferError:
            check(held is not None, "resize refused without an export")
            return
        except (TypeError, ValueError) as e:
            check("Array.resize()" in str(e), f"resize error without naming Array.resize(): {e}")
            return
        check(held is None, "resize succeeded while a memoryview was held")
        check(arr.shape == new, f"resize shape {arr.shape} != {new}")
        # The common prefix of the memory is kept, the rest is zero.
        check(xa.sum(arr) == min(old, math.prod(new)), f"resize contents: sum {xa.sum(arr)}")


# --- subinterpreters ---------------------------------------------------------
#
# A pool of legacy subinterpreters kept across seeds (created lazily, one
# destroyed and replaced now and then): each case runs a few tasks in random
# interpreters; a task makes a class of a random kind, looks its slots up and
# compares with the model, then lets the class die, so addresses (and, on
# 3.12+, per-interpreter version tags) are reused across interpreters.

SUB_KEYS = ["fuzz.sub.v1:%d" % i for i in range(4)]
# Slots of the foreign type every interpreter subclasses (set once, in the
# main interpreter: the registry is process-wide).
SUB_FOREIGN = {SUB_KEYS[0]: 0xF000, SUB_KEYS[1]: 0xF001}
_SUB_POOL: list = []

SUB_TASK = """
import ctypes, gc, os, random
import extensibletype as et
from extensibletype import _core
rng = random.Random(SEED)
K = %r
FOREIGN = %r
OFF = _core._VERSION_TAG_OFFSET
def tag(t):
    return ctypes.c_uint32.from_address(id(t) + OFF).value if OFF else 0
# Adversarial: bring this interpreter's tag counter up to the tag of the class
# that just died in another interpreter (3.12+: counters are per
# interpreter), so that the class made next may get its address and its tag.
if TARGET and OFF:
    for _ in range(300):
        d = type("D", (), {})
        getattr(d, "no_such_attribute", None)
        t = tag(d)
        del d
        gc.collect()
        if t == 0 or t >= TARGET - 1:
            break
vals = {k: rng.randrange(1, 1 << 40) for k in rng.sample(K, rng.randrange(0, len(K) + 1))}
kind = rng.choice(["plain", "plain_registered", "foreign", "extensible", "extensible_sub", "foreign_extensible"])
def m(self):
    return 1
if kind in ("plain", "plain_registered"):
    C = type("C", (), {"m": m})
    want = {}
    if kind == "plain_registered":
        et.set_slots(C, vals)
        want = vals
elif kind == "foreign":
    C = type("C", (bytearray,), {"m": m})
    want = dict(FOREIGN)
elif kind == "extensible":
    C = et.ExtensibleType("C", (), {"m": m, "__cslots__": vals})
    want = vals
elif kind == "extensible_sub":
    B = et.ExtensibleType("B", (), {"__cslots__": vals})
    C = type(B)("C", (B,), {"m": m})
    want = vals
else:
    C = et.ExtensibleType("C", (bytearray,), {"m": m, "__cslots__": vals})
    want = dict(FOREIGN)
    want.update(vals)
o = C()
o.m()
for _ in range(rng.randrange(1, 3)):
    for k in K:
        got = et.lookup(o, k)
        assert got == want.get(k), (SEED, kind, k, got, want.get(k))
if kind == "plain_registered" and vals:
    et.set_slots(C, {k: None for k in vals})
os.write(FD, b"%%d\\n" %% tag(C))
del o, C
B = None
gc.collect()
"""


def _new_legacy_interpreter():
    import sys

    if sys.version_info >= (3, 13):
        import _interpreters as interp

        return interp, interp.create("legacy")
    import _xxsubinterpreters as interp

    return interp, interp.create(isolated=False)


def _run_in(interp, i, code):
    err = interp.run_string(i, code)
    if err is not None:  # 3.13+: the exception as data
        raise Wrong(f"in subinterpreter: {err.formatted}")


def case_subinterpreters(rng, seed):
    import importlib
    import sys

    try:
        importlib.import_module("_interpreters" if sys.version_info >= (3, 13) else "_xxsubinterpreters")
    except ImportError:
        return  # no subinterpreters on this interpreter
    if not _SUB_POOL:
        et.set_slots(bytearray, SUB_FOREIGN)
    while len(_SUB_POOL) < 3:
        interp, i = _new_legacy_interpreter()
        _run_in(interp, i, "import extensibletype")
        _SUB_POOL.append((interp, i))
    if rng.random() < 0.05:  # an interpreter dies; a fresh one restarts its tag counter
        interp, i = _SUB_POOL.pop(rng.randrange(len(_SUB_POOL)))
        interp.destroy(i)
        return
    r, w = os.pipe()
    target = 0
    try:
        for n in range(rng.randrange(1, 4)):
            where = rng.randrange(len(_SUB_POOL) + 1)
            code = f"SEED = {seed * 8 + n}\nTARGET = {target}\nFD = {w}\n" + SUB_TASK % (SUB_KEYS, SUB_FOREIGN)
            if where == len(_SUB_POOL):
                exec(code, {"__name__": "fuzz_sub_main"})  # the main interpreter takes a turn
            else:
                interp, i = _SUB_POOL[where]
                try:
                    _run_in(interp, i, code)
                except Wrong:
                    raise
                except Exception as e:  # 3.11/3.12 raise RunFailedError
                    raise Wrong(f"in subinterpreter: {e}") from None
            target = int(os.read(r, 64).split()[-1])
    finally:
        os.close(r)
        os.close(w)

CASES = {
    "prehash": case_prehash,
    "keys": case_keys,
    "set_slots": case_set_slots,
    "hierarchy": case_hierarchy,
    "metaclass": case_metaclass,
    "arrays": case_arrays,
    "foreign_churn": case_foreign_churn,
    "memory_bound": case_memory_bound,
    "subinterpreters": case_subinterpreters,
}


def setup():
    xa._register_providers()


def run(kind, seed):
    CASES[kind](random.Random(seed), seed)
