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
