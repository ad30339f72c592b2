"""`python -m extensibletype bench`: runs from the installed package, prints
a table or one JSON object, times user types, refuses bad arguments."""

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

QUICK = ["--iterations", "2000", "--reps", "1"]


def bench(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "extensibletype", "bench", *QUICK, *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=120,
    )


def test_table_and_progress():
    proc = bench()
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("extensibletype lookup latency:")
    rows = {line.split("  ")[0]: line for line in lines[4:]}
    assert "extensible class, hit" in rows and "fixed-offset vtable (baseline)" in rows
    assert rows["extensible class, hit"].split()[-2:] == ["1.00", "hit"]
    assert rows["miss: float"].endswith("miss")
    assert proc.stderr == ""  # progress goes to a terminal only (test_cli.py)


def test_json_is_one_object():
    proc = bench("--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # exactly one JSON document
    assert set(doc) == {"environment", "results"}
    names = [r["case"] for r in doc["results"]]
    for want in ["extensible class, hit", "extensible class, miss", "sub-metaclass class, hit",
                 "foreign bytearray (registered), hit", "subclass of bytearray, hit", "miss: object()",
                 "miss: float", "miss: str", "miss: plain class instance", "PyType_GetSlot(float, nb_add)",
                 "PyObject_GetAttr + PyCapsule_GetPointer", "fixed-offset vtable (baseline)"]:
        assert want in names
    first = doc["results"][0]
    assert first["ratio"] == 1.0 and first["found"] is True
    assert all(r["ns"] > 0 for r in doc["results"])
    assert doc["environment"]["python"] == ".".join(map(str, sys.version_info[:3]))


def test_user_type(tmp_path):
    (tmp_path / "benchmod.py").write_text(textwrap.dedent("""
        import extensibletype as et

        class Shape(metaclass=et.ExtensibleType):
            __cslots__ = {"demo.shape.v1:area": 0x4000}

        class Outer:
            class Inner:
                pass
    """))
    import os

    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = bench("--json", "--type", "benchmod:Shape", "--key", "demo.shape.v1:area", env=env)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout)["results"][-1]
    assert last["case"] == "benchmod:Shape 'demo.shape.v1:area'" and last["found"] is True
    proc = bench("--json", "--type", "benchmod:Outer.Inner", "--key", "demo.shape.v1:area", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["results"][-1]["found"] is False
    proc = bench("--type", "collections:OrderedDict", "--key", "nothing.v1:here")
    assert proc.returncode == 0 and "collections:OrderedDict 'nothing.v1:here'" in proc.stdout


@pytest.mark.parametrize(
    "args, named",
    [
        (["--type", "no_such_module_xyz:Thing", "--key", "k"], "--type"),
        (["--type", "collections", "--key", "k"], "--type"),
        (["--type", "collections:NoSuchThing", "--key", "k"], "--type"),
        (["--type", "os:sep", "--key", "k"], "--type"),
        (["--type", "collections:OrderedDict"], "--key"),
        (["--key", "k"], "--type"),
        (["--type", "collections:OrderedDict", "--key", ""], "--key"),
    ],
)
def test_bad_arguments_exit_2(args, named):
    proc = bench(*args)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"argument {named}" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "value, named",
    [
        (["--iterations", "0"], "--iterations"),
        (["--iterations", "-5"], "--iterations"),
        (["--iterations", str(10**30)], "--iterations"),
        (["--iterations", "lots"], "--iterations"),
        (["--reps", "0"], "--reps"),
        (["--reps", str(2**64)], "--reps"),
        (["--reps", "1.5"], "--reps"),
    ],
)
def test_impossible_sizes_exit_2(value, named):
    """Impossible --iterations/--reps: exit 2 naming the argument, nothing
    measured (the later flag wins over QUICK's)."""
    proc = bench(*value)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"argument {named}" in proc.stderr
    assert proc.stdout == ""


def test_latency_and_throughput_from_objects():
    """Every row has a latency and a throughput figure; the find rows run
    the header compiled into the extension, from an object."""
    proc = bench("--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    for r in doc["results"]:
        assert r["ns"] > 0 and r["throughput_ns"] > 0, r
    first = doc["results"][0]
    assert first["ratio"] == 1.0 and first["throughput_ratio"] == 1.0
    assert all(r["method"] != "find_in_type" for r in doc["results"])
    assert doc["environment"]["lookup_code"] in ("extensibletype.h (C, -O2)", "Rust port (runtime::find)")


def test_user_type_instances(tmp_path):
    """`--type`: the row starts from an instance made without arguments when
    one can be made; otherwise from the type, and the row says so."""
    (tmp_path / "benchmod2.py").write_text(textwrap.dedent("""
        import extensibletype as et

        class Picky(metaclass=et.ExtensibleType):
            __cslots__ = {"demo.shape.v1:area": 0x4000}

            def __new__(cls, needed):
                return super().__new__(cls)
    """))
    import os

    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = bench("--json", "--type", "benchmod2:Picky", "--key", "demo.shape.v1:area", env=env)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout)["results"][-1]
    # object.__new__(Picky) makes one (Picky.__new__ needs an argument).
    assert last["case"] == "benchmod2:Picky 'demo.shape.v1:area'", last
    assert last["method"] == "find" and last["found"] is True
    # Neither FunctionType.__new__ nor object.__new__ makes a function.
    proc = bench("--json", "--type", "types:FunctionType", "--key", "demo.shape.v1:area")
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout)["results"][-1]
    assert last["case"] == "builtins:function 'demo.shape.v1:area' (from the type)", last
    assert last["method"] == "find_in_type" and last["found"] is False


def test_plot(tmp_path):
    out = tmp_path / "bench.png"
    proc = bench("--plot", str(out))
    if importlib.util.find_spec("matplotlib") is None:
        assert proc.returncode == 1
        assert "--plot needs matplotlib" in proc.stderr and not out.exists()
    else:
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
