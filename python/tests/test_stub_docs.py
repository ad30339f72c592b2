"""The rendered Python API (scripts/docs.sh, mkdocstrings) reads the type
stubs statically, so ``_core.pyi`` repeats the extension's docstrings: each
docstring there must be the runtime's ``__doc__`` (text signature aside),
word for word up to line breaks and code markup (backquotes)."""

import ast
import inspect
from pathlib import Path

import extensibletype._core as core

STUB = Path(__file__).resolve().parents[2] / "python" / "extensibletype" / "_core.pyi"


def stub_docstrings():
    tree = ast.parse(STUB.read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            doc = ast.get_docstring(node)
            if doc:
                out[node.name] = doc
    return out


def words(text):
    return " ".join((text or "").replace("`", "").split())


def test_stub_docstrings_match_runtime():
    docs = stub_docstrings()
    assert {"prehash", "set_slots", "get_slots", "lookup", "table_info", "method_key", "ExtensibleType"} <= set(docs)
    for name, doc in docs.items():
        if name == "bind" and not hasattr(core, "bind"):
            continue  # the register path is not built here (abi3t): the stub says so
        assert words(doc) == words(inspect.getdoc(getattr(core, name))), name


def test_every_public_function_has_a_stub_docstring():
    docs = stub_docstrings()
    public = [n for n in dir(core) if not n.startswith("_") and callable(getattr(core, n))]
    assert public
    assert [n for n in public if n not in docs] == []
