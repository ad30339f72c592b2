"""The Python API of the runtime (docs/spec.md §1, §3–§5, §10): class bodies,
inheritance, the foreign registry, keys and values, prehash, table_info, and
bad input (every failed call must change nothing, docs/spec.md §6).

The interner is process-wide, so every test uses its own key namespace
(``key(...)`` below) and never reuses a key string another test binds.
"""

import abc
import ctypes
import hashlib
import itertools

import pytest

import extensibletype as et
from extensibletype import _core

ET = et.ExtensibleType
_counter = itertools.count()


def key(name):
    """A key unique to this test run (the interner is process-wide)."""
    return f"tests.runtime.v1:{name}.{next(_counter)}"


def new_class(cslots=None, bases=(), name="C"):
    ns = {} if cslots is None else {"__cslots__": cslots}
    return ET(name, bases, ns)


# --- values -----------------------------------------------------------------

_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_CAPSULE_NAME = ctypes.create_string_buffer(b"tests.runtime.capsule")  # lives for the module


def capsule(address, named=True):
    return _PyCapsule_New(address, ctypes.addressof(_CAPSULE_NAME) if named else None, None)


INT_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)


def address_of(obj):
    return ctypes.cast(obj, ctypes.c_void_p).value


class Snapshot:
    """Everything observable about a type's slots, to check "nothing changed"."""

    def __init__(self, tp, keys):
        self.slots = et.get_slots(tp)
        self.info = et.table_info(tp)
        inst = tp()
        self.found = {k: et.lookup(inst, k) for k in keys}

    def __eq__(self, other):
        return (self.slots, self.info, self.found) == (other.slots, other.info, other.found)

    def __repr__(self):
        return f"Snapshot(slots={self.slots}, info={self.info}, found={self.found})"


# --- class bodies and inheritance --------------------------------------------


def test_cslots_in_class_body():
    a, b = key("a"), key("b")

    class C(metaclass=ET):
        __cslots__ = {a: 0x1000, b: 0x2000}

    assert et.lookup(C(), a) == 0x1000
    assert et.lookup(C(), b) == 0x2000
    assert et.lookup(C(), key("absent")) is None
    assert et.get_slots(C) == {a: 0x1000, b: 0x2000}
    assert type(C) is ET
    info = et.table_info(C)
    assert info["kind"] == "extensible" and info["count"] == 2


def test_class_without_cslots_is_extensible_and_empty():
    class C(metaclass=ET):
        pass

    assert et.get_slots(C) == {}
    assert et.lookup(C(), key("x")) is None
    info = et.table_info(C)
    assert info["kind"] == "extensible"
    assert info["count"] == 0


def test_single_inheritance_override_and_extend():
    k1, k2, k3 = key("k1"), key("k2"), key("k3")

    class Base(metaclass=ET):
        __cslots__ = {k1: 1, k2: 2}

    class Sub(Base):
        __cslots__ = {k2: 20, k3: 30}

    class SubSub(Sub):
        pass

    assert type(Sub) is ET
    assert et.get_slots(Sub) == {k1: 1, k2: 20, k3: 30}
    assert et.get_slots(SubSub) == {k1: 1, k2: 20, k3: 30}
    assert [et.lookup(SubSub(), k) for k in (k1, k2, k3)] == [1, 20, 30]
    # The base is untouched by its subclasses.
    assert et.get_slots(Base) == {k1: 1, k2: 2}


def test_diamond_mro_first_definition_wins():
    k, only_right, only_top = key("k"), key("right"), key("top")

    class Top(metaclass=ET):
        __cslots__ = {k: 1, only_right: 11, only_top: 111}

    class Left(Top):
        __cslots__ = {k: 2}

    class Right(Top):
        __cslots__ = {k: 3, only_right: 33}

    class LR(Left, Right):
        pass

    class RL(Right, Left):
        pass

    assert LR.__mro__ == (LR, Left, Right, Top, object)
    assert et.lookup(LR(), k) == 2
    assert et.lookup(RL(), k) == 3
    # Right comes before Top in both MROs.
    assert et.lookup(LR(), only_right) == 33
    assert et.lookup(RL(), only_right) == 33
    assert et.lookup(LR(), only_top) == 111
    assert et.get_slots(LR) == {k: 2, only_right: 33, only_top: 111}


def test_multiple_inheritance_with_plain_mixin():
    k = key("k")

    class Mixin:
        pass

    class Base(metaclass=ET):
        __cslots__ = {k: 5}

    class C(Mixin, Base):
        pass

    assert type(C) is ET
    assert et.lookup(C(), k) == 5


def test_base_change_propagates_to_subclasses_that_did_not_override():
    k, added = key("k"), key("added")

    class Base(metaclass=ET):
        __cslots__ = {k: 1}

    class Plain(Base):
        pass

    class Deep(Plain):
        pass

    class Overrides(Base):
        __cslots__ = {k: 100}

    plain, deep, over = Plain(), Deep(), Overrides()
    et.set_slots(Base, {k: 2, added: 3})
    assert et.lookup(plain, k) == 2
    assert et.lookup(deep, k) == 2
    assert et.lookup(over, k) == 100
    assert et.lookup(deep, added) == 3
    assert et.lookup(over, added) == 3
    assert et.get_slots(Deep) == {k: 2, added: 3}
    assert et.get_slots(Overrides) == {k: 100, added: 3}

    # Removal on the base propagates too.
    et.set_slots(Base, {added: None})
    assert et.lookup(deep, added) is None
    assert et.lookup(over, added) is None


def test_intermediate_change_propagates_below_it_only():
    k = key("k")

    class Base(metaclass=ET):
        __cslots__ = {k: 1}

    class Mid(Base):
        pass

    class Leaf(Mid):
        pass

    class Sibling(Base):
        pass

    et.set_slots(Mid, {k: 2})
    assert et.lookup(Leaf(), k) == 2
    assert et.lookup(Mid(), k) == 2
    assert et.lookup(Sibling(), k) == 1
    assert et.lookup(Base(), k) == 1
    # A later change on Base no longer reaches below Mid, which overrides.
    et.set_slots(Base, {k: 3})
    assert et.lookup(Leaf(), k) == 2
    assert et.lookup(Sibling(), k) == 3


def test_remove_with_none():
    a, b = key("a"), key("b")

    class C(metaclass=ET):
        __cslots__ = {a: 1, b: 2}

    et.set_slots(C, {a: None})
    assert et.lookup(C(), a) is None
    assert et.lookup(C(), b) == 2
    assert et.get_slots(C) == {b: 2}
    et.set_slots(C, {b: None})
    assert et.get_slots(C) == {}
    assert et.lookup(C(), b) is None
    assert et.table_info(C)["count"] == 0


def test_removing_an_override_uncovers_the_inherited_slot():
    k = key("k")

    class Base(metaclass=ET):
        __cslots__ = {k: 1}

    class Sub(Base):
        __cslots__ = {k: 2}

    et.set_slots(Sub, {k: None})  # removes Sub's own slot only
    assert et.lookup(Sub(), k) == 1
    assert et.lookup(Base(), k) == 1


def test_set_slots_adds_and_overrides_without_dropping_others():
    a, b, c = key("a"), key("b"), key("c")
    C = new_class({a: 1, b: 2})
    et.set_slots(C, {b: 20, c: 30})
    assert et.get_slots(C) == {a: 1, b: 20, c: 30}
    et.set_slots(C, {})  # an empty change is fine
    assert et.get_slots(C) == {a: 1, b: 20, c: 30}


@pytest.mark.parametrize("order", ["extensible-first", "abc-first"])
def test_metaclass_combined_with_abcmeta(order):
    k, k2 = key("k"), key("k2")
    bases = (ET, abc.ABCMeta) if order == "extensible-first" else (abc.ABCMeta, ET)
    Meta = type("Meta", bases, {})

    class Base(metaclass=Meta):
        __cslots__ = {k: 7}

        @abc.abstractmethod
        def area(self): ...

    class Concrete(Base):
        def area(self):
            return 1.0

    assert type(Concrete) is Meta
    with pytest.raises(TypeError, match="abstract"):
        Base()
    assert Concrete().area() == 1.0
    assert et.lookup(Concrete(), k) == 7
    assert et.table_info(Concrete)["kind"] == "extensible"

    # ABC registration still works and does not give slots.
    class Virtual:
        pass

    Base.register(Virtual)
    assert isinstance(Virtual(), Base)
    assert et.lookup(Virtual(), k) is None

    # Writers reach types of the sub-metaclass, and propagate.
    et.set_slots(Base, {k2: 8})
    assert et.lookup(Concrete(), k2) == 8
    assert et.get_slots(Concrete) == {k: 7, k2: 8}


def test_type_new_without_init_inherits_from_bases():
    """``type.__new__(ExtensibleType, ...)`` skips the metaclass ``__init__``:
    the type's data was never initialised, and it inherits its bases' slots."""
    a, b = key("a"), key("b")

    class Base(metaclass=ET):
        __cslots__ = {a: 1, b: 2}

    C = type.__new__(ET, "C", (Base,), {})
    assert type(C) is ET
    assert et.lookup(C(), a) == 1
    assert et.get_slots(C) == {a: 1, b: 2}
    info = et.table_info(C)
    assert info["kind"] in ("inherited", "extensible")
    assert info["count"] == 2

    # Later base changes reach it; so do its own.
    et.set_slots(Base, {a: 10})
    assert et.lookup(C(), a) == 10
    c = key("c")
    et.set_slots(C, {c: 3})
    assert et.get_slots(C) == {a: 10, b: 2, c: 3}
    assert et.get_slots(Base) == {a: 10, b: 2}


def test_type_new_without_init_on_a_sub_metaclass():
    """Same as above with a Python subclass of ExtensibleType that no writer
    has seen yet: lookup (the C consumers' path) must agree with get_slots."""
    a = key("a")

    class Base(metaclass=ET):
        __cslots__ = {a: 1}

    Sub = type("SubMeta", (ET,), {})
    C = type.__new__(Sub, "C", (Base,), {})
    assert et.lookup(C(), a) == 1  # before anything registered SubMeta
    assert et.get_slots(C) == {a: 1}
    assert et.lookup(C(), a) == 1


def test_sub_metaclass_classes():
    a = key("a")
    Meta = type("Meta", (ET,), {})

    class C(metaclass=Meta):
        __cslots__ = {a: 4}

    class D(C):
        pass

    assert et.lookup(D(), a) == 4
    assert et.table_info(D)["kind"] == "extensible"


# --- the foreign registry (docs/spec.md §5) --------------------------------------


def test_foreign_bytearray_and_its_subclasses():
    k1, k2, k3 = key("k1"), key("k2"), key("k3")
    et.set_slots(bytearray, {k1: 0x10, k2: 0x20})
    assert et.lookup(bytearray(), k1) == 0x10
    assert et.lookup(bytearray(b"x"), k2) == 0x20
    info = et.table_info(bytearray)
    assert info["kind"] == "foreign" and info["count"] >= 2
    assert et.get_slots(bytearray)[k1] == 0x10

    class Plain(bytearray):
        pass

    assert et.lookup(Plain(), k1) == 0x10
    assert et.get_slots(Plain)[k2] == 0x20

    class Own(bytearray):
        pass

    et.set_slots(Own, {k1: 0x11, k3: 0x30})
    assert et.lookup(Own(), k1) == 0x11  # its own wins
    assert et.lookup(Own(), k2) == 0x20  # still sees the base's other keys
    assert et.lookup(Own(), k3) == 0x30
    assert et.lookup(bytearray(), k3) is None  # not pushed up to the base
    assert et.lookup(Plain(), k3) is None

    class OwnSub(Own):
        pass

    assert et.lookup(OwnSub(), k3) == 0x30
    assert et.lookup(OwnSub(), k2) == 0x20

    # A later base change reaches registered and unregistered subclasses.
    et.set_slots(bytearray, {k2: 0x21})
    assert et.lookup(Own(), k2) == 0x21
    assert et.lookup(OwnSub(), k2) == 0x21
    assert et.lookup(Plain(), k2) == 0x21
    assert et.lookup(Own(), k1) == 0x11

    et.set_slots(bytearray, {k1: None, k2: None})
    assert et.lookup(bytearray(), k1) is None
    assert et.lookup(Plain(), k2) is None
    assert et.lookup(Own(), k2) is None
    assert et.lookup(Own(), k1) == 0x11


def test_extensible_subclass_of_a_foreign_type():
    k = key("k")

    class Registered(bytes):
        pass

    et.set_slots(Registered, {k: 1})

    class C(Registered, metaclass=ET):
        pass

    assert et.lookup(C(), k) == 1
    et.set_slots(Registered, {k: 2})
    assert et.lookup(C(), k) == 2


def test_foreign_registration_is_seen_through_any_base():
    """docs/spec.md §5: subclasses of a registered type see its slots unless they
    register their own -- also when the registered type is not the first
    (solid, ``tp_base``) base: C consumers must agree with the MRO."""
    k = key("k")

    class Registered:
        pass

    class Other:
        pass

    et.set_slots(Registered, {k: 1})

    class First(Registered, Other):
        pass

    class Second(Other, Registered):
        pass

    class ExtSecond(Other, Registered, metaclass=ET):
        pass

    assert issubclass(Second, Registered)
    assert et.lookup(First(), k) == 1
    assert et.lookup(ExtSecond(), k) == 1
    assert et.lookup(Second(), k) == 1
    assert et.get_slots(Second) == {k: 1}


def test_unregistered_types_have_no_slots():
    class Plain:
        pass

    assert et.lookup(Plain(), key("x")) is None
    assert et.lookup(3, key("x")) is None
    assert et.get_slots(Plain) == {}
    info = et.table_info(Plain)
    assert info["kind"] == "none" and info["count"] == 0


# --- keys ----------------------------------------------------------------------


def test_keys_as_str_bytes_and_raw_int():
    s, b = key("str"), key("bytes")
    raw = 0x1234_5678_9ABC_DEF1  # never bound to a name
    C = new_class({s: 1, b.encode(): 2, raw: 3})
    obj = C()
    assert et.lookup(obj, s) == 1
    assert et.lookup(obj, s.encode()) == 1
    assert et.lookup(obj, et.prehash(s)) == 1
    assert et.lookup(obj, b) == 2
    assert et.lookup(obj, raw) == 3
    # Names where known (bytes keys are shown as str), ints for raw ids.
    assert et.get_slots(C) == {s: 1, b: 2, raw: 3}


def test_raw_id_of_a_known_name_is_shown_by_name():
    name = key("named")
    C = new_class({et.prehash(name): 5})
    assert et.lookup(C(), name) == 5
    D = new_class({name: 6})  # now the interner knows the name
    assert et.get_slots(D) == {name: 6}
    assert et.get_slots(C) == {name: 5}


def test_bind_key_names_a_raw_id():
    name, raw = key("bound"), 0x0BAD_F00D_0000_0001 + next(_counter)
    _core._bind_key(name, raw)
    C = new_class({raw: 7})
    assert et.get_slots(C) == {name: 7}


def test_max_u64_id_is_a_valid_raw_id():
    C = new_class({2**64 - 1: 9})
    assert et.lookup(C(), 2**64 - 1) == 9


# --- values --------------------------------------------------------------------


def test_value_kinds():
    cb = INT_CB(lambda x: x + 1)
    buf = ctypes.c_int(5)
    voidp = ctypes.c_void_p(0xDEAD0)
    pointer = ctypes.pointer(buf)
    cap = capsule(0xBEEF0)
    cap_unnamed = capsule(0xBEEF8, named=False)
    ks = [key(n) for n in ("int", "cfunc", "voidp", "pointer", "capsule", "capsule0", "api")]
    C = new_class(dict(zip(ks, [0x1000, cb, voidp, pointer, cap, cap_unnamed, et._C_API])))
    found = [et.lookup(C(), k) for k in ks]
    assert found[:6] == [
        0x1000,
        address_of(cb),
        0xDEAD0,
        ctypes.addressof(buf),
        0xBEEF0,
        0xBEEF8,
    ]
    assert found[6] not in (None, 0)
    # The looked-up function pointer is callable.
    assert INT_CB(found[1])(41) == 42


def test_bool_is_not_an_address():
    C = new_class({key("a"): 1})
    before = Snapshot(C, [])
    with pytest.raises(TypeError, match="slot value"):
        et.set_slots(C, {key("b"): True})
    assert Snapshot(C, []) == before


# --- prehash ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", 0x04B2008FD98C1DD4),
        ("a", 0xA8B6F1C0B975C10C),
        ("extensibletype.array.v1:data", 0xB598A1668C53AFD9),
        ("numpy.ndarray.shape", 0x7780A86E9080477A),
    ],
)
def test_prehash_vectors(text, expected):
    assert et.prehash(text) == expected
    assert et.prehash(text.encode()) == expected


@pytest.mark.parametrize("text", ["x", "numpy.ndarray.strides", "é ü 漢字", "a" * 1000])
def test_prehash_is_md5_prefix_of_utf8(text):
    digest = hashlib.md5(text.encode("utf-8")).digest()
    assert et.prehash(text) == int.from_bytes(digest[:8], "little")


@pytest.mark.parametrize("bad", [1, 1.5, None, bytearray(b"a")])
def test_prehash_rejects_non_text(bad):
    with pytest.raises(TypeError, match="str or bytes"):
        et.prehash(bad)


def test_module_constants():
    assert et.ABI_VERSION == 1
    assert isinstance(et.TABLE_OFFSET, int) and et.TABLE_OFFSET > 0
    assert type(et._C_API).__name__ == "PyCapsule"
    assert "extensibletype._C_API" in repr(et._C_API)


# --- table_info --------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 17, 100, 1024])
def test_table_info_is_sane(count):
    C = new_class({i + 1: 0x1000 + i for i in range(count)})
    info = et.table_info(C)
    assert set(info) >= {"size", "bins", "count", "bytes", "kind"}
    size, bins = info["size"], info["bins"]
    assert info["count"] == count == len(et.get_slots(C))
    assert size >= 2 and size & (size - 1) == 0, size
    assert bins >= 2 and bins & (bins - 1) == 0, bins
    assert size >= count
    assert size <= 65536
    assert info["bytes"] >= 16 * size + 2 * bins
    if count == 1024:
        assert info["bytes"] <= 20 * count + 128, info
    assert all(et.lookup(C(), i + 1) == 0x1000 + i for i in range(count))


def test_table_info_counts_effective_slots():
    a, b = key("a"), key("b")
    Base = new_class({a: 1})
    Sub = new_class({b: 2}, bases=(Base,))
    assert et.table_info(Base)["count"] == 1
    assert et.table_info(Sub)["count"] == 2


def test_table_info_rejects_non_types():
    with pytest.raises(TypeError, match="type"):
        et.table_info(42)
    with pytest.raises(TypeError, match="type"):
        et.get_slots(42)


def test_lookup_rejects_bad_keys():
    C = new_class({key("a"): 1})
    with pytest.raises(TypeError, match="str, bytes or int"):
        et.lookup(C(), 1.5)
    with pytest.raises(ValueError, match="UTF-8"):
        et.lookup(C(), b"\xff\xfe")
    with pytest.raises(ValueError, match="reserved"):
        et.lookup(C(), 0)


# --- bad input: each changes nothing ----------------------------------------------


@pytest.fixture
def victim():
    """An extensible type with a subclass, a known slot, and its snapshot."""
    k, sub_k = key("victim"), key("victim.sub")
    Base = new_class({k: 0x5000})
    Sub = new_class({sub_k: 0x6000}, bases=(Base,))

    class V:
        base, sub, key, sub_key = Base, Sub, k, sub_k
        keys = [k, sub_k]

        @staticmethod
        def snapshot():
            return Snapshot(Base, V.keys), Snapshot(Sub, V.keys)

        @staticmethod
        def assert_unchanged(before):
            assert V.snapshot() == before
            assert et.lookup(Base(), k) == 0x5000
            assert et.lookup(Sub(), k) == 0x5000
            assert et.lookup(Sub(), sub_k) == 0x6000

    return V


@pytest.mark.parametrize("target", [42, "str", None], ids=["int", "str", "None"])
def test_set_slots_on_non_type(target, victim):
    before = victim.snapshot()
    with pytest.raises(TypeError, match="must be a type") as exc:
        et.set_slots(target, {victim.key: 1})
    assert type(target).__name__ in str(exc.value)
    victim.assert_unchanged(before)


def test_set_slots_on_an_instance(victim):
    before = victim.snapshot()
    with pytest.raises(TypeError, match="must be a type"):
        et.set_slots(victim.base(), {victim.key: 1})
    victim.assert_unchanged(before)


@pytest.mark.parametrize("bad_key", [1.5, None, ("a", "b"), True], ids=["float", "None", "tuple", "bool"])
def test_bad_key_type(bad_key, victim):
    before = victim.snapshot()
    new = key("new")
    with pytest.raises(TypeError, match="slot key must be str, bytes or int") as exc:
        # The valid change before the bad key must not be applied either.
        et.set_slots(victim.base, {victim.key: 0x7777, new: 1, bad_key: 2})
    assert type(bad_key).__name__ in str(exc.value)
    victim.assert_unchanged(before)
    assert et.lookup(victim.sub(), new) is None


def test_zero_id(victim):
    before = victim.snapshot()
    with pytest.raises(ValueError, match="0 is reserved"):
        et.set_slots(victim.base, {victim.key: 0x7777, 0: 1})
    victim.assert_unchanged(before)


@pytest.mark.parametrize("bad_id", [-1, -(2**63), 2**64, 2**70], ids=["-1", "-2**63", "2**64", "2**70"])
def test_id_out_of_range(bad_id, victim):
    before = victim.snapshot()
    with pytest.raises(ValueError, match="out of range") as exc:
        et.set_slots(victim.base, {victim.key: 0x7777, bad_id: 1})
    assert str(bad_id) in str(exc.value)
    victim.assert_unchanged(before)


def test_key_bytes_not_utf8(victim):
    before = victim.snapshot()
    with pytest.raises(ValueError, match="UTF-8"):
        et.set_slots(victim.base, {victim.key: 0x7777, b"\xff\xfeabc": 1})
    victim.assert_unchanged(before)


@pytest.mark.parametrize("bad_value", ["x", 1.5, b"\x00" * 8, object(), [1]], ids=["str", "float", "bytes", "object", "list"])
def test_bad_value_type(bad_value, victim):
    before = victim.snapshot()
    with pytest.raises(TypeError, match="slot value must be") as exc:
        et.set_slots(victim.base, {victim.key: 0x7777, key("new"): bad_value})
    assert type(bad_value).__name__ in str(exc.value)
    victim.assert_unchanged(before)


@pytest.mark.parametrize("bad_value", [-1, 2**64], ids=["-1", "2**64"])
def test_address_out_of_range(bad_value, victim):
    before = victim.snapshot()
    with pytest.raises(ValueError, match="out of range"):
        et.set_slots(victim.base, {victim.key: 0x7777, key("new"): bad_value})
    victim.assert_unchanged(before)


@pytest.mark.parametrize(
    "null",
    [0, ctypes.c_void_p(None), ctypes.c_void_p(0), ctypes.POINTER(ctypes.c_int)()],
    ids=["int", "c_void_p(None)", "c_void_p(0)", "NULL-pointer"],
)
def test_address_zero_is_rejected(null, victim):
    """Address 0 (NULL) is refused as a value: NULL means "absent" to C
    consumers, so it could never be found; ``None`` is how to remove a slot."""
    before = victim.snapshot()
    with pytest.raises(ValueError, match="address 0") as exc:
        et.set_slots(victim.base, {victim.key: 0x7777, key("new"): null})
    assert "None" in str(exc.value)
    victim.assert_unchanged(before)


def test_too_many_entries_in_one_call(victim):
    before = victim.snapshot()
    with pytest.raises(ValueError, match="too many entries") as exc:
        et.set_slots(victim.base, {i + 1: 0x1000 for i in range(65537)})
    assert "65536" in str(exc.value)
    victim.assert_unchanged(before)


def test_too_many_entries_overall(victim):
    """65,536 own slots fit; one more through another call does not."""
    C = new_class({i + 1: 0x1000 + i for i in range(65536)})
    assert et.table_info(C)["count"] == 65536
    before = Snapshot(C, [1, 65536])
    with pytest.raises(ValueError, match="too many entries"):
        et.set_slots(C, {65537: 1})
    assert Snapshot(C, [1, 65536]) == before


def test_failure_in_a_subclass_table_changes_nothing():
    """A base change valid for the base but too big for a subclass's effective
    table fails as a whole: neither the base nor the subclass changes."""
    k = key("k")
    Base = new_class({k: 1})
    Sub = new_class({i + 1: 0x1000 for i in range(65535)}, bases=(Base,))
    assert et.table_info(Sub)["count"] == 65536
    before = Snapshot(Base, [k]), Snapshot(Sub, [k, 1])
    with pytest.raises(ValueError, match="too many entries"):
        et.set_slots(Base, {k: 2, key("one.more"): 3})
    assert (Snapshot(Base, [k]), Snapshot(Sub, [k, 1])) == before


def test_64bit_collision_names_both_strings(victim):
    mine, other = key("mykey"), key("other")
    _core._bind_key(other, et.prehash(mine))
    before = victim.snapshot()
    with pytest.raises(ValueError, match="collision") as exc:
        et.set_slots(victim.base, {victim.key: 0x7777, mine: 1})
    assert mine in str(exc.value) and other in str(exc.value)
    victim.assert_unchanged(before)
    # The registered name keeps its id; the colliding one stays unknown.
    C = new_class({et.prehash(mine): 2})
    assert et.get_slots(C) == {other: 2}
    # A class body is refused the same way.
    with pytest.raises(ValueError, match="collision"):

        class Bad(metaclass=ET):
            __cslots__ = {mine: 1}


def test_bind_key_collision_is_refused():
    a, b = key("a"), key("b")
    _core._bind_key(a, 0xC011_1510_0000_0000 + next(_counter))
    C = new_class({b: 1})
    with pytest.raises(ValueError, match="collision") as exc:
        _core._bind_key(a, et.prehash(b))
    assert a in str(exc.value) and b in str(exc.value)
    assert et.get_slots(C) == {b: 1}


@pytest.mark.parametrize("bad", [[("a", 1)], "abc", 42, None], ids=["list", "str", "int", "None"])
def test_set_slots_mapping_must_be_a_mapping(bad, victim):
    before = victim.snapshot()
    with pytest.raises(TypeError, match="mapping"):
        et.set_slots(victim.base, bad)
    victim.assert_unchanged(before)


@pytest.mark.parametrize("bad", [[("tests.runtime.v1:list", 1)], "abc", 42], ids=["list", "str", "int"])
def test_cslots_must_be_a_mapping(bad):
    with pytest.raises(TypeError, match="__cslots__ must be a mapping"):

        class C(metaclass=ET):
            __cslots__ = bad


def test_cslots_with_a_bad_value_fails_the_class_statement():
    k = key("k")
    with pytest.raises(TypeError, match="slot value must be"):

        class C(metaclass=ET):
            __cslots__ = {k: "not an address"}


def test_cslots_may_be_any_mapping():
    import types

    k = key("k")

    class C(metaclass=ET):
        __cslots__ = types.MappingProxyType({k: 3})

    assert et.lookup(C(), k) == 3


def test_set_slots_wrong_arity():
    with pytest.raises(TypeError, match="2 arguments"):
        et.set_slots(bytearray)
    with pytest.raises(TypeError, match="2 arguments"):
        et.lookup(1)
