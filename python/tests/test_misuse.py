"""Misuses a newcomer meets first (issue "A newcomer's first hour", point 9):
each is a clear error that changes nothing, or documented behaviour
(docs/spec.md §2, "Keys and ids")."""

import pytest

import extensibletype as et


def test_set_slots_on_object_is_refused():
    with pytest.raises(ValueError, match=r"set_slots\(\) cannot set slots on object: every type inherits them"):
        et.set_slots(object, {"test.misuse.v1:everything": 0x1000})
    assert et.lookup(object(), "test.misuse.v1:everything") is None
    assert et.lookup(3, "test.misuse.v1:everything") is None


def test_cslots_after_creation_is_refused():
    class C(metaclass=et.ExtensibleType):
        __cslots__ = {"test.misuse.v1:a": 0x1000}

    for change in (lambda: setattr(C, "__cslots__", {"test.misuse.v1:a": 0x2000}), lambda: delattr(C, "__cslots__")):
        with pytest.raises(AttributeError, match=r"__cslots__ is read only when the class is created; .*set_slots"):
            change()
    assert et.lookup(C(), "test.misuse.v1:a") == 0x1000
    assert C.__cslots__ == {"test.misuse.v1:a": 0x1000}


def test_inherited_entries_count_and_the_message_says_so():
    base_slots = {i: 0x1000 + i for i in range(1, 40_001)}

    class Base(metaclass=et.ExtensibleType):
        __cslots__ = base_slots

    with pytest.raises(ValueError, match=r"too many entries: .* counts the type's own slots and every slot it inherits"):
        class Sub(Base):
            __cslots__ = {i: 0x1000 + i for i in range(50_001, 80_001)}
    assert et.lookup(Base(), 40_000) == 0x1000 + 40_000


def test_any_utf8_key_is_a_key():
    """Keys are namespaced by convention only (docs/spec.md §2): the empty
    key and keys without ':' are keys like any other (their ids are md5's)."""

    class C(metaclass=et.ExtensibleType):
        pass

    et.set_slots(C, {"": 0x10, "plain": 0x20})
    assert et.lookup(C(), "") == 0x10 and et.lookup(C(), et.prehash("")) == 0x10
    assert et.lookup(C(), "plain") == 0x20
    assert et.prehash("") == 0x04B2008FD98C1DD4
