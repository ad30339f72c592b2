"""``extensibletype.bind``: call a typed method (docs/spec.md §1.1)
from Python through ctypes.

``bind(obj, key)`` looks the typed slot ``key`` up on ``type(obj)`` (the
same lookup C consumers do, so a Python override masks it) and returns the C
function as a callable with ``obj`` bound as its first argument, or ``None``
on a miss. Arguments and the result are converted per the key's signature:

==========  ===================================  =================================
code        argument accepts                     result
==========  ===================================  =================================
i8..u64     ``int`` (ctypes' conversion)         ``int``
f32, f64    ``float`` / ``int``                  ``float``
c64, c128   ``complex`` / ``float`` / ``int``    ``complex``
b           any object (truth value)             ``bool``
p           ``int`` address, ``None``, ctypes    ``int`` address (0 for NULL)
            pointer/array/``byref``
``*X``      ``int`` address, or a ctypes         a ctypes ``POINTER(X)``
            pointer/array/``byref`` of ``X``
O           any object (borrowed)                --
O+          --                                   the object (the new reference
                                                 is taken over)
v           --                                   ``None``
==========  ===================================  =================================

Calling convention, from the flag:

- no flag: ``ctypes.CFUNCTYPE``, so the call releases the GIL (the function
  may run with no thread state and never raises);
- ``!t``: ``ctypes.PYFUNCTYPE``: called with the thread state attached;
- ``!e``: ``PYFUNCTYPE`` too; the C function returns ``int32_t`` (0, or -1
  with an exception set, which propagates) and writes a non-``v`` result
  through a trailing out-pointer that ``bind`` allocates; ``O+(...)!e``
  returns the object (``NULL`` with an exception set) instead.

Complex values cross as a ``struct {double re, im;}`` (``float`` for c64):
ctypes has no complex type, and on x86-64 (System V) and AArch64 a struct of
two doubles (floats) is passed and returned exactly as ``double _Complex``
(``float _Complex``): two SSE/FP registers (one for c64), checked by
python/tests/test_bind.py against a C provider and a C caller.

Caches: the parsed key (and its ctypes prototype, shared by every key of the
same signature) per key string, and the ctypes function object per address
of that key. Nothing is keyed by type: every ``bind`` does the lookup, so a
type that died, a reused address or a slot changed by ``set_slots`` or
masked by a Python override can never be answered from the cache. Both
caches are bounded (cleared when full).
"""

from __future__ import annotations

import ctypes
import sys
import types
from typing import Any, Callable, NamedTuple, Optional

import _ctypes

from . import _core

__all__ = ["bind"]

_MAX_KEYS = 1024  # parsed keys kept
_MAX_ADDRESSES = 64  # function objects kept per key

# --- signature codes -> ctypes ------------------------------------------------
#
# The runtime parses and validates typed keys (_core._parse_typed_key: the
# grammar method_key checks, one validator for every surface); this module
# only maps the codes it returns to ctypes types.

_SCALARS = {
    "i8": ctypes.c_int8,
    "i16": ctypes.c_int16,
    "i32": ctypes.c_int32,
    "i64": ctypes.c_int64,
    "u8": ctypes.c_uint8,
    "u16": ctypes.c_uint16,
    "u32": ctypes.c_uint32,
    "u64": ctypes.c_uint64,
    "f32": ctypes.c_float,
    "f64": ctypes.c_double,
    "b": ctypes.c_bool,
    "p": ctypes.c_void_p,
}


class _Complex128(ctypes.Structure):
    """``double _Complex`` as ctypes sees it (see the module docstring)."""

    _fields_ = [("re", ctypes.c_double), ("im", ctypes.c_double)]

    @classmethod
    def from_param(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        z = complex(value)
        return cls(z.real, z.imag)


class _Complex64(ctypes.Structure):
    """``float _Complex`` as ctypes sees it."""

    _fields_ = [("re", ctypes.c_float), ("im", ctypes.c_float)]

    @classmethod
    def from_param(cls, value: Any) -> Any:
        if isinstance(value, cls):
            return value
        z = complex(value)
        return cls(z.real, z.imag)


_COMPLEX = {"c128": _Complex128, "c64": _Complex64}


def _value_ctype(code: str) -> Any:
    """The ctypes type of a VALUE code (``*X`` is ``POINTER(X)``)."""
    stars = len(code) - len(code.lstrip("*"))
    base = code[stars:]
    ctype = _COMPLEX.get(base) or _SCALARS[base]
    for _ in range(stars):
        ctype = ctypes.POINTER(ctype)
    return ctype


class _PointerArg:
    """Argument type of ``*X``: an ``int`` address (or ``None``), or what
    ``POINTER(X).from_param`` accepts (a pointer, array or ``byref`` of X)."""

    def __init__(self, pointer_type: Any) -> None:
        self.pointer_type = pointer_type

    def from_param(self, value: Any) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return ctypes.c_void_p(value)
        return self.pointer_type.from_param(value)


def _arg_ctype(code: str) -> Any:
    if code == "O":
        return ctypes.py_object
    if code.startswith("*"):
        return _PointerArg(_value_ctype(code))
    return _value_ctype(code)


class _Parsed(NamedTuple):
    ret: str
    args: tuple[str, ...]
    flag: str  # "", "t" or "e"


def _parse_key(key: str) -> _Parsed:
    """Validate ``key`` as a canonical typed key (the runtime's ValueError,
    naming the problem, otherwise) and parse its signature."""
    if not isinstance(key, str):
        raise TypeError(f"bind() key must be str, not {type(key).__name__}")
    _interface, _method, ret, args, flag = _core._parse_typed_key(key)
    return _Parsed(ret, tuple(args), flag)


# --- prototypes and callables --------------------------------------------------


def _complex_result(result: Any, func: Any, args: Any) -> complex:
    return complex(result.re, result.im)


def _raise_without_exception(func: Any) -> None:
    raise SystemError(f"{func!r} returned -1 without setting an exception")


def _prototype(restype: Any, argtypes: list[Any], python_api: bool) -> Any:
    """``CFUNCTYPE(restype, *argtypes)`` (``PYFUNCTYPE`` when ``python_api``)
    that refuses extra arguments: ctypes passes any number of extra
    arguments to a cdecl prototype; without FUNCFLAG_CDECL it asks for
    exactly ``len(argtypes)``, and outside Windows the flag changes nothing
    else (the calling convention is libffi's default either way)."""
    if sys.platform == "win32":  # there, no CDECL means stdcall: keep it
        factory = ctypes.PYFUNCTYPE if python_api else ctypes.CFUNCTYPE
        return factory(restype, *argtypes)

    class Prototype(_ctypes.CFuncPtr):
        _argtypes_ = tuple(argtypes)
        _restype_ = restype
        _flags_ = _ctypes.FUNCFLAG_PYTHONAPI if python_api else 0

    return Prototype


class _Signature:
    """Everything built once per signature: the ctypes prototype and how a
    function object of that prototype is wrapped."""

    def __init__(self, parsed: _Parsed) -> None:
        self.parsed = parsed
        ret, args, flag = parsed
        argtypes = [_arg_ctype(a) for a in args]
        self.out_type: Any = None
        errcheck: Any = None
        if flag == "e" and ret != "O+":
            restype: Any = ctypes.c_int32
            if ret != "v":
                self.out_type = _value_ctype(ret)
                argtypes.append(ctypes.POINTER(self.out_type))
        elif ret == "v":
            restype = None
        elif ret == "O+":
            restype = ctypes.py_object  # ctypes takes the new reference over
        else:
            # p: an int address, 0 for NULL (c_void_p would give None).
            restype = ctypes.c_size_t if ret == "p" else _value_ctype(ret)
            if ret in _COMPLEX:
                errcheck = _complex_result
        self.prototype = _prototype(restype, argtypes, python_api=bool(flag))
        self.errcheck = errcheck
        self.raises = flag == "e" and ret != "O+"
        self.complex_out = ret in _COMPLEX

    def function(self, address: int) -> Callable[..., Any]:
        """A callable for the C function at ``address`` (its first argument
        still to be bound)."""
        cfunc = self.prototype(address)
        if self.errcheck is not None:
            cfunc.errcheck = self.errcheck
        if not self.raises:
            return cfunc
        out_type = self.out_type
        if out_type is None:  # v(...)!e

            def call_void(*args: Any) -> None:
                if cfunc(*args):
                    _raise_without_exception(cfunc)

            return call_void
        byref = ctypes.byref
        if self.complex_out:

            def call_complex_out(*args: Any) -> complex:
                out = out_type()
                if cfunc(*args, byref(out)):
                    _raise_without_exception(cfunc)
                return complex(out.re, out.im)

            return call_complex_out
        if self.parsed.ret.startswith("*"):

            def call_pointer_out(*args: Any) -> Any:
                out = out_type()
                if cfunc(*args, byref(out)):
                    _raise_without_exception(cfunc)
                return out

            return call_pointer_out

        def call_out(*args: Any) -> Any:
            out = out_type()
            if cfunc(*args, byref(out)):
                _raise_without_exception(cfunc)
            return out.value

        return call_out


_signatures: dict[_Parsed, _Signature] = {}


class _Key:
    __slots__ = ("id", "signature", "functions")

    def __init__(self, key: str) -> None:
        parsed = _parse_key(key)
        signature = _signatures.get(parsed)
        if signature is None:
            if len(_signatures) >= _MAX_KEYS:
                _signatures.clear()
            signature = _signatures[parsed] = _Signature(parsed)
        self.id = _core.prehash(key)
        self.signature = signature
        self.functions: dict[int, Callable[..., Any]] = {}


_keys: dict[str, _Key] = {}


def bind(obj: object, key: str, /) -> Optional[Callable[..., Any]]:
    """The typed method ``key`` of ``type(obj)`` as a callable with ``obj``
    bound as its first argument, or ``None`` when the lookup misses (absent,
    registered under another signature, or masked by a Python override).

    ``key`` is a canonical typed key ``"<interface>:<method>#<signature>"``
    (ValueError otherwise). Arguments and the result are converted per the
    signature; a ``!e`` method's exception propagates. See the module
    ``extensibletype._bind`` for the conversions and calling conventions.
    """
    entry = _keys.get(key)
    if entry is None:
        entry = _Key(key)
        if len(_keys) >= _MAX_KEYS:
            _keys.clear()
        _keys[key] = entry
    address = _core.lookup(obj, entry.id)
    if address is None:
        return None
    function = entry.functions.get(address)
    if function is None:
        function = entry.signature.function(address)
        if len(entry.functions) >= _MAX_ADDRESSES:
            entry.functions.clear()
        entry.functions[address] = function
    # A bound method: cheaper to make and to call than functools.partial.
    return types.MethodType(function, obj)
