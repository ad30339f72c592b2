"""Regression tests for reliability findings: tables after `__bases__`
assignment, a corrupt shared module, out-of-range array arguments."""

import subprocess
import sys
import textwrap

import pytest

import cbuild
import extensibletype as et

ET = et.ExtensibleType


def cls(name, cslots=None, bases=()):
    ns = {} if cslots is None else {"__cslots__": cslots}
    return ET(name, bases, ns)


@pytest.fixture(scope="module")
def consumer():
    if not cbuild.have_compiler():
        pytest.skip("no C compiler (cc)")
    return cbuild.example_extension("shapes_consumer")


# --- __bases__ assignment ---------------------------------------------------


def _finders(consumer):
    """Every lookup route: Python lookup, the C header (ExtType_Find, FindInType)."""
    routes = [lambda obj, key: et.lookup(obj, key)]
    if consumer is not None:
        routes.append(lambda obj, key: consumer.find(obj, key))
        routes.append(lambda obj, key: consumer.find_in_type(type(obj), key))
    return routes


@pytest.fixture
def maybe_consumer(request):
    if not cbuild.have_compiler():
        return None
    return request.getfixturevalue("consumer")


def test_bases_assignment_follows_new_mro(maybe_consumer):
    A = cls("A", {"rel.v1:a": 0x1000})
    B = cls("B", {"rel.v1:b": 0x2000})
    C = cls("C", bases=(A,))
    D = cls("D", {"rel.v1:d": 0x4000}, bases=(C,))  # a subclass of C
    for find in _finders(maybe_consumer):
        assert find(C(), "rel.v1:a") == 0x1000
    C.__bases__ = (B,)
    for find in _finders(maybe_consumer):
        for obj in (C(), D()):
            assert find(obj, "rel.v1:a") is None
            assert find(obj, "rel.v1:b") == 0x2000
        assert find(D(), "rel.v1:d") == 0x4000
    assert set(et.get_slots(C)) == {"rel.v1:b"}
    assert set(et.get_slots(D)) == {"rel.v1:b", "rel.v1:d"}
    # And back, through a base of a base.
    C.__bases__ = (A,)
    assert et.lookup(D(), "rel.v1:a") == 0x1000 and et.lookup(D(), "rel.v1:b") is None
    assert set(et.get_slots(D)) == {"rel.v1:a", "rel.v1:d"}


def test_bases_assignment_of_a_base_reaches_grandchildren():
    A = cls("A", {"rel.v1:k": 1})
    B = cls("B", {"rel.v1:k": 2})
    Mid = cls("Mid", bases=(A,))
    Leaf = cls("Leaf", bases=(Mid,))
    Mid.__bases__ = (B,)
    assert et.lookup(Leaf(), "rel.v1:k") == 2
    assert et.get_slots(Leaf) == {"rel.v1:k": 2}


def test_bases_assignment_with_foreign_and_plain_bases():
    class Plain:
        pass

    class Foreign:
        pass

    et.set_slots(Foreign, {"rel.v1:f": 0x10})
    A = cls("A", {"rel.v1:a": 0x20})
    C = cls("C", bases=(A,))
    C.__bases__ = (Foreign,)
    assert et.lookup(C(), "rel.v1:f") == 0x10 and et.lookup(C(), "rel.v1:a") is None
    C.__bases__ = (Plain,)
    assert et.lookup(C(), "rel.v1:f") is None
    assert et.get_slots(C) == {}


def test_bases_assignment_own_slots_win():
    A = cls("A", {"rel.v1:x": 1, "rel.v1:y": 2})
    B = cls("B", {"rel.v1:x": 3})
    C = cls("C", {"rel.v1:y": 4}, bases=(A,))
    C.__bases__ = (B,)
    assert et.get_slots(C) == {"rel.v1:x": 3, "rel.v1:y": 4}


def test_failed_bases_assignment_changes_nothing():
    A = cls("A", {"rel.v1:a": 1})
    B = cls("B", {"rel.v1:b": 2})
    C = cls("C", bases=(A,))
    with pytest.raises(TypeError):
        C.__bases__ = (int,)  # layout conflict: CPython refuses
    with pytest.raises(TypeError):
        C.__bases__ = ()
    assert C.__bases__ == (A,) and et.get_slots(C) == {"rel.v1:a": 1}
    # Too many merged entries: the rebuild fails, the old bases come back.
    Big = cls("Big", {i + 1: 0x1000 for i in range(40000)})
    Big2 = cls("Big2", {i + 100001: 0x1000 for i in range(40000)})
    Both = cls("Both", bases=(Big,))
    with pytest.raises(ValueError, match="too many entries"):
        Both.__bases__ = (Big, Big2)
    assert Both.__bases__ == (Big,)
    assert len(et.get_slots(Both)) == 40000
    assert et.lookup(Both(), 100001) is None
    del B


def test_other_attributes_still_set_normally():
    C = cls("C", {"rel.v1:a": 1})
    C.attr = 5
    assert C.attr == 5
    del C.attr
    assert not hasattr(C, "attr")
    with pytest.raises(TypeError):
        del C.__bases__
    setattr(C, "__doc__", "x")
    assert C.__doc__ == "x"


def test_type_setattr_cannot_bypass_the_hook():
    """type.__setattr__ / object.__setattr__ would skip the metaclass's
    setattro; CPython refuses both (its check against jumping over a C-level
    override), so every route that changes __bases__ goes through the hook."""
    A = cls("A", {"rel.v1:a": 1})
    B = cls("B", {"rel.v1:b": 2})
    C = cls("C", bases=(A,))
    for setattr_ in (type.__setattr__, object.__setattr__):
        with pytest.raises(TypeError, match="can't apply this __setattr__"):
            setattr_(C, "__bases__", (B,))
    assert C.__bases__ == (A,) and et.lookup(C(), "rel.v1:a") == 1


def test_python_submetaclass_setattr():
    class Meta(ET):
        def __setattr__(cls, name, value):
            super().__setattr__(name, value)

    A = cls("A", {"rel.v1:a": 1})
    B = cls("B", {"rel.v1:b": 2})
    C = Meta("C", (A,), {})
    C.__bases__ = (B,)
    assert et.lookup(C(), "rel.v1:a") is None and et.lookup(C(), "rel.v1:b") == 2

    class Sneaky(ET):
        def __setattr__(cls, name, value):
            type.__setattr__(cls, name, value)

    D = Sneaky("D", (A,), {})
    with pytest.raises(TypeError, match="can't apply this __setattr__"):
        D.__bases__ = (B,)
    assert et.lookup(D(), "rel.v1:a") == 1


def test_plain_subclass_of_foreign_follows_bases_assignment():
    """A plain class that is not registered itself walks its MRO: right at once."""

    class P:
        pass

    class Q:
        pass

    et.set_slots(Q, {"rel.v1:q": 0x10})

    class G(P):
        pass

    assert et.lookup(G(), "rel.v1:q") is None
    G.__bases__ = (Q,)
    assert et.lookup(G(), "rel.v1:q") == 0x10 and et.get_slots(G) == {"rel.v1:q": 0x10}
    et.set_slots(Q, {"rel.v1:q": None})


def _registered_plain_class_with_new_bases():
    class P:
        pass

    class Q:
        pass

    et.set_slots(Q, {"rel.v1:q": 0x10})

    class F(P):
        pass

    et.set_slots(F, {"rel.v1:f": 0x20})
    F.__bases__ = (Q,)  # type's own setattr: no hook runs
    return F, Q


@pytest.mark.xfail(strict=True, reason="known limitation: a registered plain class keeps the table of its old "
                   "MRO after its own __bases__ assignment (no hook on type; see README)")
def test_registered_plain_class_follows_its_bases_assignment():
    F, Q = _registered_plain_class_with_new_bases()
    try:
        assert et.lookup(F(), "rel.v1:q") == 0x10
    finally:
        et.set_slots(F, {"rel.v1:f": None})
        et.set_slots(Q, {"rel.v1:q": None})


def test_registered_plain_class_any_write_republishes():
    F, Q = _registered_plain_class_with_new_bases()
    et.set_slots(F, {})  # any write republishes from the current MRO
    assert et.lookup(F(), "rel.v1:q") == 0x10
    assert et.get_slots(F) == {"rel.v1:f": 0x20, "rel.v1:q": 0x10}
    et.set_slots(F, {"rel.v1:f": None})
    et.set_slots(Q, {"rel.v1:q": None})


# --- a corrupt sys.modules["_extensibletype"] -------------------------------

CORRUPT_SETUPS = {
    "api_not_capsule": ("m = types.ModuleType('_extensibletype'); m.api_v1 = object()", "api_v1 is not a capsule"),
    "api_wrong_capsule": (
        "m = types.ModuleType('_extensibletype');"
        "m.api_v1 = ctypes.pythonapi.PyCapsule_New(ctypes.c_void_p(8), b'other.name', None)",
        "api_v1 is not a capsule",
    ),
    "meta_only": ("m = types.ModuleType('_extensibletype'); m.ExtensibleType_v1 = 'junk'", "ExtensibleType_v1 (str)"),
    "not_a_module": ("m = 42", "is a int, not a module"),
    "getattr_raises": (
        "m = types.ModuleType('_extensibletype');"
        "exec('def __getattr__(name):\\n    raise RuntimeError(\"boom\")', m.__dict__)",
        "RuntimeError: boom",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT_SETUPS))
def test_corrupt_shared_module_is_an_import_error(case):
    setup, expected = CORRUPT_SETUPS[case]
    code = textwrap.dedent(
        f"""
        import ctypes, sys, types
        ctypes.pythonapi.PyCapsule_New.restype = ctypes.py_object
        ctypes.pythonapi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        {setup}
        sys.modules['_extensibletype'] = m
        before = dict(vars(m)) if isinstance(m, types.ModuleType) else m
        try:
            import extensibletype
        except ImportError as e:
            print('ImportError:', e)
        else:
            print('imported')
        after = dict(vars(m)) if isinstance(m, types.ModuleType) else m
        assert sys.modules['_extensibletype'] is m
        print('unchanged' if after == before else 'CHANGED')
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0].startswith("ImportError:") and "_extensibletype" in lines[0], lines
    assert expected in lines[0], lines
    assert lines[-1] == "unchanged", lines


# --- array arguments out of range ------------------------------------------


def test_view_info_rejects_out_of_range_request():
    from extensibletype import arrays as xa

    ro = xa.Array((3,))
    good = xa.view_info(ro, xa.REQ_C_CONTIGUOUS | xa.REQ_ANY_CONTIGUOUS)
    assert good["shape"] == (3,)
    for bad in (2**32 + 1, 2**32, 2**64, -1, 2**31, -(2**63) - 1, 2**100):
        with pytest.raises(ValueError, match=r"view_info\(\) argument 'request'"):
            xa.view_info(ro, bad)
    for bad in ("1", 1.0, None, True):
        with pytest.raises(TypeError, match=r"view_info\(\) argument 'request'"):
            xa.view_info(ro, bad)


def test_view_info_high_bits_do_not_become_writable():
    np = pytest.importorskip("numpy")
    from extensibletype import arrays as xa

    a = np.zeros(3)
    a.flags.writeable = False
    xa._register_providers()
    try:
        with pytest.raises(ValueError):
            xa.view_info(a, 2**32 + xa.REQ_WRITABLE)
        with pytest.raises(BufferError):
            xa.view_info(a, xa.REQ_WRITABLE)
        assert xa.view_info(a, 0)["readonly"] is True
        with pytest.raises(BufferError, match="unsupported"):
            xa.view_info(a, 2**31 - 1)  # in range: the provider refuses unknown bits
    finally:
        xa._unregister_providers()


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2**64,), r"Array\(\): dimension 18446744073709551616 is too large"),
        ((2**63,), r"Array\(\): dimension 9223372036854775808 is too large"),
        (2**64, r"Array\(\): dimension"),
        ((-(2**64),), r"Array\(\): negative dimension -18446744073709551616"),
        ((2**62, 2**62), r"Array\(\): shape \(4611686018427387904, 4611686018427387904\) is too large"),
        ((0, 2**62, 4), r"Array\(\): shape \(0, 4611686018427387904, 4\) is too large"),
        ((2**60,), r"Array\(\): shape \(1152921504606846976,\) is too large"),
    ],
)
def test_array_huge_shapes_name_array(shape, message):
    from extensibletype import arrays as xa

    with pytest.raises(ValueError, match=message):
        xa.Array(shape)


def test_array_resize_huge_shape_names_resize():
    from extensibletype import arrays as xa

    a = xa.Array((2,))
    with pytest.raises(ValueError, match=r"Array.resize\(\): dimension .* is too large"):
        a.resize((2**64,))
    assert a.shape == (2,)
