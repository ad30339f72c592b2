"""Typed methods from numba ``@njit`` code (docs/numba.md).

Importing this module imports numba; ``import extensibletype`` never does.

In njit code (``key`` is a string *literal* or a module-level string constant,
a canonical typed key such as ``"geom.Shape.v1:area#f64(O)"``)::

    import extensibletype.numba as etn

    AREA = "geom.Shape.v1:area#f64(O)"

    @numba.njit(cache=True)
    def total(addrs):                      # addrs = etn.addresses(shapes)
        s = 0.0
        for a in addrs:
            if etn.has_method(a, AREA):
                s += etn.call_method(a, AREA)
        return s

- ``find_method(obj, key) -> intp``: the function pointer stored under ``key``
  on the type of the object at address ``obj``, 0 on a miss (absent, another
  signature, or masked by a Python override: the runtime's own lookup,
  ``ExtType_Find``).
- ``has_method(obj, key) -> bool``: ``find_method(obj, key) != 0``.
- ``call_method(obj, key, *args)``: find and call; ``LookupError`` on a miss.
- ``call_found(fn, key, obj, *args)``: call a pointer ``find_method`` returned
  (hoist the lookup out of a loop over objects of one type).

The id (md5 of the key) is computed at compile time and is a constant of the
machine code; the lookup is ``ExtType_Find`` inline (the type's table, else
the runtime's type cache entry) plus a call of the runtime's ``find_slow`` by
*symbol name*. This module registers that symbol and a data symbol
(metaclass, offsets, the type cache) with
``llvmlite.binding.add_symbol`` when imported, so code cached with
``cache=True`` holds no address of this process and loads in another one.

Objects reach njit code as addresses (``address(obj)``, ``addresses(seq)``):
an address is valid only while the caller holds a reference to the object
(keep the list alive during the call; never store addresses across calls).

Argument types per signature code: ``O`` -- an address (any integer, or
``voidptr``); scalars -- numba's scalar of the same width (numba converts
other numbers as it does for any call); ``p`` -- ``voidptr`` or an integer
address; ``*X`` -- ``CPointer(X)``, ``voidptr`` or an integer address.
Results: scalars, ``p`` -> ``voidptr``, ``*X`` -> ``CPointer(X)``, ``v`` ->
``None``. ``O+`` results and ``c64`` (whose C ABI is not numba's
``{float, float}``) are a TypingError.

Flags: a flagless method is called as is (also under ``nogil=True``). A
``!t`` or ``!e`` method needs the GIL: called from njit code running without
it (``nogil=True``, ``parallel=True`` threads) it is not called and
``RuntimeError`` is raised. ``!e``: when the method returns -1 its Python
exception propagates out of the njit function unchanged (numba's "exception
already set" status; njit ``try/except`` does not catch it).

``method(obj, key)`` is the first-class-function alternative: a
``numba.types.WrapperAddressProtocol`` object that njit code takes as an
argument and calls with the object's address first (``m(m.address, ...)``).
"""

from __future__ import annotations

import ctypes
from typing import Any, Optional, Sequence

import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.errors import TypingError
from numba.core.typing import signature as _signature
from numba.extending import intrinsic

import extensibletype as _et

from . import _core

__all__ = [
    "address",
    "addresses",
    "call_found",
    "call_method",
    "find_method",
    "has_method",
    "method",
    "Method",
    "FIND_SYMBOL",
    "API_SYMBOL",
]

# --- the runtime's lookup, registered by name -----------------------------------

# Code cached by numba (cache=True) names these symbols and reads _NumbaAPI's
# layout, and numba does not know it depends on this module: the layout behind
# a name is frozen. A change needs new names (_v2), and the old ones must stay
# registered for caches made by earlier versions.

#: Symbol of ``void *find_slow(PyTypeObject *, uint64_t)`` (the API struct's).
FIND_SYMBOL = "extensibletype_numba_find_slow_v1"
#: Symbol of the data njit code reads (_NumbaAPI): metaclass, table and
#: ob_type offsets, the type cache.
API_SYMBOL = "extensibletype_numba_api_v2"
# The 6-field _NumbaAPI of code cached before v2 (v2's prefix: registered at
# the same address). v2 appended flat_offset and cache_word_offset; code
# naming v2 fails to link against a package that only has v1, instead of
# reading past its struct.
_API_SYMBOL_V1 = "extensibletype_numba_api_v1"


class _CAPI(ctypes.Structure):
    """The prefix of ``ExtType_API`` (include/extensibletype.h) read here."""

    _fields_ = [
        ("abi_version", ctypes.c_uint32),
        ("struct_size", ctypes.c_uint32),
        ("metaclass", ctypes.c_void_p),
        ("table_offset", ctypes.c_ssize_t),
        ("find_slow", ctypes.c_void_p),
        ("prehash", ctypes.c_void_p),
        ("set_slots", ctypes.c_void_p),
        ("from_spec", ctypes.c_void_p),
        ("py_set_slots", ctypes.c_void_p),
        ("py_get_slots", ctypes.c_void_p),
        ("py_table_info", ctypes.c_void_p),
        ("py_lookup", ctypes.c_void_p),
        ("bind_key", ctypes.c_void_p),
        ("foreign_registry", ctypes.c_void_p),
        ("ob_type_offset", ctypes.c_ssize_t),
        ("type_cache", ctypes.c_void_p),
        ("type_cache_bits", ctypes.c_uint32),
        ("version_tag_offset", ctypes.c_int32),
        ("flat_offset", ctypes.c_ssize_t),
    ]


class _CacheEntry(ctypes.Structure):
    """``ExtType_TypeCacheEntry`` (32 bytes)."""

    _fields_ = [
        ("seq", ctypes.c_uint32),
        ("tag", ctypes.c_uint32),
        ("tp", ctypes.c_void_p),
        ("table", ctypes.c_void_p),
        ("flat", ctypes.c_void_p),
    ]


class _NumbaAPI(ctypes.Structure):
    """What njit code loads through API_SYMBOL (lives for the process): the
    fields include/extensibletype.h caches in ExtType_Import(). The layout
    of API_SYMBOL (v2); its first six fields are v1's, so the v1 symbol
    names the same data for code cached by earlier versions."""

    _fields_ = [
        ("metaclass", ctypes.c_void_p),
        ("table_offset", ctypes.c_ssize_t),
        ("ob_type_offset", ctypes.c_ssize_t),
        ("type_cache", ctypes.c_void_p),
        ("type_cache_shift", ctypes.c_uint64),
        ("version_tag_offset", ctypes.c_int64),
        # The flat descriptor's offset in the type data (api->flat_offset),
        # or table_offset for a runtime without it (the word there is then
        # the table pointer, low bits 0).
        ("flat_offset", ctypes.c_ssize_t),
        # Where a type cache entry's word is: its `flat` when the runtime
        # fills it (its API struct has flat_offset), else its `table`.
        ("cache_word_offset", ctypes.c_int64),
    ]


# A runtime from before the type cache: two empty entries (their type is
# NULL, so every probe misses), as include/extensibletype.h does.
_NO_TYPE_CACHE = (_CacheEntry * 2)()


def _has(api: _CAPI, field: str) -> bool:
    f = getattr(_CAPI, field)
    return bool(api.struct_size >= f.offset + f.size)


def _read_capi() -> _CAPI:
    # A private prototype: setting argtypes on ctypes.pythonapi's shared
    # function object would change it for every other user in the process.
    get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi)
    )
    pointer = get(_et._C_API, b"extensibletype._C_API")
    api = _CAPI.from_address(pointer)
    if api.abi_version != 1:
        raise ImportError(f"extensibletype.numba: runtime ABI version {api.abi_version}, expected 1")
    return api


def _install() -> _NumbaAPI:
    api = _read_capi()
    ob_type_offset = api.ob_type_offset if _has(api, "ob_type_offset") else 0
    if ob_type_offset == 0:  # PyObject_HEAD of a GIL build: ob_refcnt, ob_type
        ob_type_offset = ctypes.sizeof(ctypes.c_ssize_t)
    if _has(api, "version_tag_offset"):
        if not api.type_cache or not 1 <= api.type_cache_bits <= 32:
            raise ImportError("extensibletype.numba: the runtime's API struct has no valid type cache")
        cache = (api.type_cache, 64 - api.type_cache_bits, api.version_tag_offset)
    else:
        cache = (ctypes.addressof(_NO_TYPE_CACHE), 63, 0)
    if _has(api, "flat_offset"):
        flat = (api.flat_offset, _CacheEntry.flat.offset)
    else:
        flat = (api.table_offset, _CacheEntry.table.offset)
    data = _NumbaAPI(api.metaclass, api.table_offset, ob_type_offset, *cache, *flat)
    _llvm.add_symbol(FIND_SYMBOL, api.find_slow)
    _llvm.add_symbol(API_SYMBOL, ctypes.addressof(data))
    _llvm.add_symbol(_API_SYMBOL_V1, ctypes.addressof(data))
    return data


# Kept alive for the process, and installed once: code already linked holds
# its address, so a reload of this module must not free or move it.
_DATA: _NumbaAPI = getattr(_core, "_numba_api_data", None) or _install()
_core._numba_api_data = _DATA  # type: ignore[attr-defined]


# --- objects as addresses ------------------------------------------------------


def address(obj: object) -> int:
    """The address of ``obj`` (CPython's ``id``), for njit code. Valid only
    while the caller holds a reference to ``obj``."""
    return id(obj)


def addresses(objs: Sequence[object]) -> "np.ndarray[Any, np.dtype[np.intp]]":
    """The addresses of ``objs`` as an ``intp`` array, for a loop in njit
    code. Valid only while the caller holds ``objs`` (and so each object)."""
    return np.fromiter((id(o) for o in objs), dtype=np.intp, count=len(objs))


# --- signatures ----------------------------------------------------------------

_SCALARS = {
    "i8": types.int8,
    "i16": types.int16,
    "i32": types.int32,
    "i64": types.int64,
    "u8": types.uint8,
    "u16": types.uint16,
    "u32": types.uint32,
    "u64": types.uint64,
    "f32": types.float32,
    "f64": types.float64,
    "c128": types.complex128,
    "b": types.boolean,
    "p": types.voidptr,
    "O": types.voidptr,
}


def _value_type(code: str, key: str) -> types.Type:
    stars = len(code) - len(code.lstrip("*"))
    base = code[stars:]
    if base == "c64":
        raise TypingError(f"{key!r}: c64 is not supported in njit code (its C ABI is not numba's complex64)")
    if base == "O+":
        raise TypingError(f"{key!r}: O+ results (new references) are not supported in njit code; use extensibletype.bind")
    ty = _SCALARS[base]
    for _ in range(stars):
        ty = types.CPointer(ty)
    return ty


class _Key:
    """A typed key parsed for njit code (compile time only)."""

    def __init__(self, key: str) -> None:
        try:
            _iface, _meth, ret, args, flag = _core._parse_typed_key(key)
        except ValueError as e:
            raise TypingError(f"extensibletype.numba: {e}") from None
        self.key = key
        self.id = _core.prehash(key)
        self.flag = flag
        self.args = [_value_type(a, key) for a in args]  # args[0] is O
        self.ret_code = ret
        self.ret = types.none if ret == "v" else _value_type(ret, key)
        # The C function's LLVM-level signature (numba types).
        cargs = list(self.args)
        if flag == "e":
            cret: types.Type = types.int32
            if ret != "v":
                cargs.append(types.CPointer(self.ret))
        else:
            cret = types.void if ret == "v" else self.ret
        self.c_signature = _signature(cret, *cargs)


_parsed: dict = {}


def _key_of(key_type: Any) -> _Key:
    if not isinstance(key_type, types.StringLiteral):
        raise TypingError("extensibletype.numba: the key must be a string literal (or a global str constant)")
    key = key_type.literal_value
    entry = _parsed.get(key)
    if entry is None:
        entry = _parsed[key] = _Key(key)
    return entry


def _is_address(ty: Any) -> bool:
    return isinstance(ty, types.Integer) or ty == types.voidptr


def _check_address(ty: Any, what: str) -> None:
    if not _is_address(ty):
        raise TypingError(f"extensibletype.numba: {what} must be an address (an integer or voidptr), not {ty}")


def _check_args(typingctx: Any, k: _Key, given: Sequence[Any]) -> None:
    want = k.args[1:]
    if len(given) != len(want):
        raise TypingError(f"{k.key!r} takes {len(want)} argument(s) after the object, got {len(given)}")
    for i, (g, w) in enumerate(zip(given, want), 1):
        if w == types.voidptr or isinstance(w, types.CPointer):
            if g == w or _is_address(g):
                continue
        elif typingctx.can_convert(g, w) is not None:
            continue
        raise TypingError(f"{k.key!r}: argument {i} must be {w}, not {g}")


# --- code generation -------------------------------------------------------------

_I8P = ir.IntType(8).as_pointer()
_I64 = ir.IntType(64)


def _as_pointer(builder: Any, ty: Any, value: Any) -> Any:
    if isinstance(ty, types.Integer):
        return builder.inttoptr(value, _I8P)
    return builder.bitcast(value, _I8P)


def _load_at(builder: Any, base: Any, offset: Any, llty: Any) -> Any:
    """``*(llty *)((char *)base + offset)``; offset: an i64 value or int."""
    if isinstance(offset, int):
        offset = _I64(offset)
    return builder.load(builder.bitcast(builder.gep(base, [offset]), llty.as_pointer()))


def _emit_find(context: Any, builder: Any, obj: Any, id_: int) -> Any:
    """ExtType_Find(obj, id) as i8* (NULL on a miss or when obj is NULL), as
    include/extensibletype.h does it: the flat descriptor word of an
    ExtensibleType instance's type, or the word the runtime's type cache
    names for any other type; a flat table (low bits of the word set) is
    probed in one level, any other with the v1 formula; api->find_slow for
    everything else. The flat probe takes k1 from the table's own header,
    which always pairs with the word (one load more than the header's
    type-data path, which reads k1 beside the word and checks the pair)."""
    module = builder.module
    api_ty = ir.LiteralStructType([_I8P, _I64, _I64, _I8P, _I64, _I64, _I64, _I64])
    api = module.globals.get(API_SYMBOL)
    if api is None:
        api = ir.GlobalVariable(module, api_ty, API_SYMBOL)  # external: by name
    find_ty = ir.FunctionType(_I8P, [_I8P, _I64])
    find_slow = cgutils.get_or_insert_function(module, find_ty, FIND_SYMBOL)
    ident = _I64(id_)

    result = cgutils.alloca_once_value(builder, _I8P(None))
    with builder.if_then(cgutils.is_not_null(builder, obj), likely=True):
        metaclass = builder.load(cgutils.gep_inbounds(builder, api, 0, 0))
        ob_type_offset = builder.load(cgutils.gep_inbounds(builder, api, 0, 2))
        flat_offset = builder.load(cgutils.gep_inbounds(builder, api, 0, 6))
        tp = _load_at(builder, obj, ob_type_offset, _I8P)
        meta = _load_at(builder, tp, ob_type_offset, _I8P)
        word = cgutils.alloca_once_value(builder, _I64(0))
        with builder.if_then(builder.icmp_unsigned("==", meta, metaclass), likely=True):
            slot = builder.bitcast(builder.gep(tp, [flat_offset]), _I64.as_pointer())
            builder.store(builder.load_atomic(slot, "acquire", 8), word)
        with builder.if_then(builder.icmp_unsigned("==", builder.load(word), _I64(0)), likely=False):
            builder.store(_emit_cached_word(builder, api, tp), word)
        w = builder.load(word)
        shift = builder.and_(w, _I64(63))
        with builder.if_else(builder.icmp_unsigned("!=", shift, _I64(0)), likely=True) as (flat, other):
            with flat:  # ExtType__DescriptorFind, k1 from the table
                entries = builder.inttoptr(builder.and_(w, _I64(~63)), _I8P)
                k1 = _load_at(builder, entries, -64, _I64)
                offset = builder.and_(builder.lshr(builder.mul(ident, k1), shift), _I64(~15))
                eid = _load_at(builder, entries, offset, _I64)
                eptr = _load_at(builder, entries, builder.add(offset, _I64(8)), _I8P)
                hit = builder.icmp_unsigned("==", eid, ident)
                builder.store(builder.select(hit, eptr, _I8P(None)), result)
            with other:
                with builder.if_else(builder.icmp_unsigned("!=", w, _I64(0)), likely=True) as (v1, slow):
                    with v1:  # ExtType_TableFind
                        tab = builder.inttoptr(w, _I8P)
                        k1 = _load_at(builder, tab, 0, _I64)
                        k2 = _load_at(builder, tab, 8, _I64)
                        s = builder.zext(_load_at(builder, tab, 16, ir.IntType(8)), _I64)
                        t = builder.zext(_load_at(builder, tab, 17, ir.IntType(8)), _I64)
                        entries_offset = builder.zext(_load_at(builder, tab, 28, ir.IntType(32)), _I64)
                        slot_i = builder.lshr(builder.mul(ident, k1), s)
                        bin_i = builder.lshr(builder.mul(ident, k2), t)
                        d = _load_at(builder, tab, builder.add(_I64(32), builder.shl(bin_i, _I64(1))), ir.IntType(16))
                        index = builder.xor(slot_i, builder.zext(d, _I64))
                        entry = builder.add(entries_offset, builder.shl(index, _I64(4)))
                        eid = _load_at(builder, tab, entry, _I64)
                        eptr = _load_at(builder, tab, builder.add(entry, _I64(8)), _I8P)
                        hit = builder.icmp_unsigned("==", eid, ident)
                        builder.store(builder.select(hit, eptr, _I8P(None)), result)
                    with slow:
                        builder.store(builder.call(find_slow, [tp, ident]), result)
    return builder.load(result)


def _emit_cached_word(builder: Any, api: Any, tp: Any) -> Any:
    """ExtType__CachedWord(tp): the descriptor word of the table the
    runtime's type cache names for ``tp`` (i64), or 0 (then find_slow
    answers and fills the entry). One entry read under its seqlock, plus
    tp->tp_version_tag."""
    i32 = ir.IntType(32)
    cache = builder.load(cgutils.gep_inbounds(builder, api, 0, 3))
    shift = builder.load(cgutils.gep_inbounds(builder, api, 0, 4))
    tag_offset = builder.load(cgutils.gep_inbounds(builder, api, 0, 5))
    word_offset = builder.load(cgutils.gep_inbounds(builder, api, 0, 7))
    index = builder.lshr(builder.mul(builder.ptrtoint(tp, _I64), _I64(0x9E3779B97F4A7C15)), shift)
    entry = builder.gep(cache, [builder.shl(index, _I64(5))])

    def field(offset: Any, llty: Any, ordering: str) -> Any:
        off = offset if not isinstance(offset, int) else _I64(offset)
        ptr = builder.bitcast(builder.gep(entry, [off]), llty.as_pointer())
        return builder.load_atomic(ptr, ordering, llty.width // 8 if isinstance(llty, ir.IntType) else 8)

    seq = field(0, i32, "acquire")
    etype = field(8, _I8P, "monotonic")
    etag = field(4, i32, "monotonic")
    word = field(word_offset, _I64, "monotonic")
    builder.fence("acquire")
    tag_ptr = builder.bitcast(builder.gep(tp, [tag_offset]), i32.as_pointer())
    tag = builder.load_atomic(tag_ptr, "monotonic", 4)
    seq2 = field(0, i32, "monotonic")
    bad = builder.or_(builder.or_(builder.xor(seq, seq2), builder.and_(seq, i32(1))), builder.xor(etag, tag))
    ok = builder.and_(builder.icmp_unsigned("==", bad, i32(0)), builder.icmp_unsigned("==", etype, tp))
    return builder.select(ok, word, _I64(0))


def _raise_without_gil(context: Any, builder: Any, k: _Key) -> None:
    """!t / !e: RuntimeError unless the calling thread holds the GIL."""
    check = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "PyGILState_Check")
    held = builder.icmp_signed("!=", builder.call(check, []), ir.IntType(32)(0))
    with builder.if_then(builder.not_(held), likely=False):
        context.call_conv.return_user_exc(
            builder, RuntimeError, (f"{k.key!r} (!{k.flag}) needs the GIL: njit code running without it (nogil=True, parallel) cannot call it",)
        )


def _emit_call(context: Any, builder: Any, k: _Key, fn: Any, obj: Any, arg_types: Sequence[Any], args: Sequence[Any]) -> Any:
    """Call the C function ``fn`` (i8*) of key ``k`` with obj and args; the
    numba value of type k.ret."""
    if k.flag:
        _raise_without_gil(context, builder, k)
    values = [builder.bitcast(obj, context.get_value_type(types.voidptr))]
    for g, w, v in zip(arg_types, k.args[1:], args):
        if w == types.voidptr or isinstance(w, types.CPointer):
            v = _as_pointer(builder, g, v) if g != w else v
            v = builder.bitcast(v, context.get_value_type(w))
        else:
            v = context.cast(builder, v, g, w)
            if w == types.boolean or (isinstance(w, types.Integer) and w.bitwidth < 32):
                # C promotes bool, char and short arguments to int: extend
                # to 32 bits as clang-compiled callees assume.
                v = (builder.sext if getattr(w, "signed", False) else builder.zext)(v, ir.IntType(32))
        values.append(v)
    out = None
    if k.flag == "e" and k.ret_code != "v":
        out = cgutils.alloca_once(builder, context.get_value_type(k.ret))
        values.append(out)
    cs = k.c_signature
    fnty = ir.FunctionType(
        ir.VoidType() if cs.return_type == types.void else context.get_value_type(cs.return_type),
        [v.type for v in values],
    )
    callee = builder.bitcast(fn, fnty.as_pointer())
    ret = builder.call(callee, values)
    if k.flag == "e":
        failed = builder.icmp_signed("!=", ret, ir.IntType(32)(0))
        with builder.if_then(failed, likely=False):
            context.call_conv.return_exc(builder)  # the provider's exception is set
        return context.get_dummy_value() if out is None else builder.load(out)
    if k.ret == types.none:
        return context.get_dummy_value()
    return ret  # a C bool result is 0 or 1 in the low byte: numba's i1 reads bit 0


# --- the intrinsics -------------------------------------------------------------


@intrinsic(prefer_literal=True)
def find_method(typingctx: Any, obj: Any, key: Any) -> Any:
    """``find_method(obj, key) -> intp``: the typed slot ``key`` of the type
    of the object at address ``obj``, 0 on a miss."""
    _check_address(obj, "obj")
    k = _key_of(key)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        found = _emit_find(context, builder, _as_pointer(builder, obj, args[0]), k.id)
        return builder.ptrtoint(found, context.get_value_type(types.intp))

    return types.intp(obj, key), codegen


@intrinsic(prefer_literal=True)
def has_method(typingctx: Any, obj: Any, key: Any) -> Any:
    """``has_method(obj, key) -> bool``: whether ``find_method`` hits."""
    _check_address(obj, "obj")
    k = _key_of(key)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        found = _emit_find(context, builder, _as_pointer(builder, obj, args[0]), k.id)
        return cgutils.is_not_null(builder, found)

    return types.boolean(obj, key), codegen


def _unpack(builder: Any, star: Any) -> list:
    """The values of a *args tuple."""
    return [builder.extract_value(star, i) for i in range(len(star.type.elements))] if hasattr(star.type, "elements") else []


def _call_miss(context: Any, builder: Any, k: _Key) -> None:
    context.call_conv.return_user_exc(builder, LookupError, (f"no typed method {k.key!r} on the object's type",))


@intrinsic(prefer_literal=True)
def call_method(typingctx: Any, obj: Any, key: Any, *args: Any) -> Any:
    """``call_method(obj, key, *args)``: find the typed method ``key`` on the
    object at address ``obj`` and call it; LookupError on a miss."""
    _check_address(obj, "obj")
    k = _key_of(key)
    _check_args(typingctx, k, args)

    def codegen(context: Any, builder: Any, sig: Any, llargs: Any) -> Any:
        optr = _as_pointer(builder, obj, llargs[0])
        found = _emit_find(context, builder, optr, k.id)
        with builder.if_then(cgutils.is_null(builder, found), likely=False):
            _call_miss(context, builder, k)
        return _emit_call(context, builder, k, found, optr, args, _unpack(builder, llargs[2]))

    return _signature(k.ret, obj, key, types.StarArgTuple.from_types(args)), codegen


@intrinsic(prefer_literal=True)
def call_found(typingctx: Any, fn: Any, key: Any, obj: Any, *args: Any) -> Any:
    """``call_found(fn, key, obj, *args)``: call ``fn``, a non-zero result of
    ``find_method(obj', key)`` for an object of the same type as ``obj``
    (the key must be the one it was found with: the signature comes from it);
    LookupError if ``fn`` is 0."""
    _check_address(fn, "fn")
    _check_address(obj, "obj")
    k = _key_of(key)
    _check_args(typingctx, k, args)

    def codegen(context: Any, builder: Any, sig: Any, llargs: Any) -> Any:
        fptr = _as_pointer(builder, fn, llargs[0])
        with builder.if_then(cgutils.is_null(builder, fptr), likely=False):
            _call_miss(context, builder, k)
        optr = _as_pointer(builder, obj, llargs[2])
        return _emit_call(context, builder, k, fptr, optr, args, _unpack(builder, llargs[3]))

    return _signature(k.ret, fn, key, obj, types.StarArgTuple.from_types(args)), codegen


# --- first-class functions --------------------------------------------------------


class Method(types.WrapperAddressProtocol):  # type: ignore[misc]
    """A typed method of one object as a numba first-class function: njit
    code takes it as an argument and calls it with the object's address
    first (``m(m.address, *args)``); its signature is the key's with ``O``
    as ``intp``. Holds a reference to the object, so
    ``m.address`` stays valid while ``m`` lives. Flagless and ``!t`` keys
    only (``!t``: call it with the GIL held)."""

    def __init__(self, obj: object, key: str, fn: int) -> None:
        self.obj = obj
        self.key = key
        self.address = id(obj)
        self._fn = fn
        k = _Key(key)
        _iface, _meth, _ret, codes, _flag = _core._parse_typed_key(key)
        # ``O`` as intp: an address as njit code holds it (same register as
        # a pointer in the C calling conventions numba targets).
        args = [types.intp if c == "O" else t for c, t in zip(codes, k.args)]
        self._sig = _signature(k.ret, *args)

    def __wrapper_address__(self) -> int:
        return self._fn

    def signature(self) -> Any:
        return self._sig

    def __call__(self, *args: Any) -> Any:
        bound = _et.bind(self.obj, self.key)
        if bound is None:
            raise LookupError(f"no typed method {self.key!r} on {type(self.obj).__name__}")
        return bound(*args)


def method(obj: object, key: str) -> Optional[Method]:
    """The typed method ``key`` of ``type(obj)`` as a :class:`Method`, or
    ``None`` on a miss. ValueError for a key that is not a canonical typed
    key, or one with ``!e``, an ``O+`` result or ``c64`` (use
    :func:`call_method` in njit code, or ``extensibletype.bind``)."""
    _iface, _meth, ret, args, flag = _core._parse_typed_key(key)
    if flag == "e" or ret == "O+" or "c64" in (ret, *args):
        raise ValueError(f"{key!r}: method() takes flagless and !t keys without c64 or O+ (use call_method)")
    fn = _et.lookup(obj, key)
    if fn is None:
        return None
    return Method(obj, key, fn)
