#!/usr/bin/env python3
"""The whole test suite as named steps: `python3 scripts/suite.py [STEP|GROUP ...]`.

`bash scripts/test.sh` (the README's and .ci/run's command) runs every step.
`--list` names the steps; give one or more names to run only those
(`python3 scripts/suite.py py-3.11 fuzz`; groups: `py`, `forky`).

A step passes when its commands exit 0, nothing else: no output is searched
for words. Counts are read for display only: pytest's JUnit XML
(`--junitxml`), the libtest summaries of `cargo test`, the last line
("NAME: N passed, N failed") of the step scripts. A failed step counts at
least one failure in the total even when its command never got as far as
counting (a build failure).

Each step is one or two jobs: a *build* (compiles: `cargo test --no-run`,
`prepare_venv` of scripts/lib.sh, the ASan build) and a *run* (pytest, the
tests, a checker). Jobs run concurrently in a pool of `-j` (default 2, the
cores here), at most one build at a time (`--builds`): a compile uses every
core, while pytest and the forky chroot's runs are mostly single-threaded,
so runs overlap builds and each other. Jobs that touch the same venv or
wheel are ordered (the 3.11 venv is built before the steps that reuse it;
the abi3 wheel once, before every abi3 step).

Logs: target/suite-logs/STEP.log (build then run output), STEP.xml (pytest),
printed on failure. Venvs (.venv/), cargo artefacts (target/), the 3.13t
build and the forky chroot (~/.cache/extensibletype) are reused, so a second
run only tests; built wheels are cached per source digest and build kind
(~/.cache/extensibletype/wheels, scripts/lib.sh), so a fresh clone of an
unchanged tree does not compile them again.

Stdlib only, on the machine's python3 (3.11): the suite must start before
any venv exists (it creates them), and nox or an xtask crate would be one
more thing to install or compile before the first test.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
LOGS = ROOT / "target" / "suite-logs"
LIB = ROOT / "scripts" / "lib.sh"

FORKY_NOTE = ("python 3.14t/3.15t: not provided (the Debian mirror serves python3.14/3.15 binaries only, "
              "no sources to build a free-threaded one; 3.13t is the free-threaded test)")


# --- steps ------------------------------------------------------------------

@dataclass(eq=False)  # compared by identity (`in`, `remove`)
class Job:
    """One command of a step. kind "build" (compiles; at most --builds at a
    time) or "run". `needs`: jobs that must have succeeded first; `after`:
    jobs that must have finished first (ordering only)."""

    step: "Step"
    kind: str
    argv: list
    env: dict = field(default_factory=dict)
    cwd: Path = ROOT
    needs: list = field(default_factory=list)
    after: list = field(default_factory=list)
    # filled in while running
    state: str = "pending"  # pending, running, ok, failed, blocked
    rc: Optional[int] = None
    reason: str = ""
    cause: Optional["Job"] = None  # the failed job that blocked this one
    proc: Optional[subprocess.Popen] = None
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.step.name}:{self.kind}"


@dataclass(eq=False)
class Step:
    name: str
    doc: str
    counts: Callable[["Step"], Optional[tuple]] = lambda step: None
    detail: Callable[["Step"], str] = lambda step: ""
    hidden: bool = False  # a prerequisite only (the forky chroot), not in the summary
    skip: str = ""  # why it cannot run on this machine (not a failure)
    jobs: list = field(default_factory=list)

    @property
    def log(self) -> Path:
        return LOGS / f"{self.name}.log"

    @property
    def xml(self) -> Path:
        return LOGS / f"{self.name}.xml"

    def job(self, kind, argv, **kw) -> Job:
        j = Job(self, kind, argv, **kw)
        self.jobs.append(j)
        return j

    @property
    def ok(self) -> bool:
        return all(j.state == "ok" for j in self.jobs)


def bash(script: str, *args: str) -> list:
    """argv running `script` in bash with scripts/lib.sh sourced ($1.. = args)."""
    return ["bash", "-c", f'source "{LIB}" || exit 1\n{script}', "suite", *args]


# Counts (display only) -------------------------------------------------------

def junit_counts(step: Step):
    """(passed, failed, skipped) from pytest's JUnit XML, None if absent."""
    try:
        root = ET.parse(step.xml).getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    failed = n["failures"] + n["errors"]
    return n["tests"] - failed - n["skipped"], failed, n["skipped"]


LIBTEST = re.compile(r"^test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", re.M)


def libtest_counts(step: Step):
    """Sum of cargo test's per-binary summaries (libtest prints no
    structured output on stable)."""
    found = LIBTEST.findall(read(step.log))
    if not found:
        return None
    return tuple(sum(int(m[i]) for m in found) for i in range(3))


def summary_line_counts(step: Step):
    """The step script's last line "NAME: N passed, N failed"."""
    m = None
    for m in re.finditer(r"^[\w -]+: (\d+) passed, (\d+) failed", read(step.log), re.M):
        pass
    return (int(m[1]), int(m[2]), 0) if m else None


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def version_detail(step: Step) -> str:
    return read(LOGS / f"{step.name}.version").strip()


# The steps ---------------------------------------------------------------------

PYTEST = 'cd python/tests && "$vpy" -m pytest -q -rs -p no:cacheprovider --junitxml="$3" .'
# The interpreter's version and build, into STEP.version (for the summary line).
VERSION = ('"$vpy" -c \'import sys; print(sys.version.split()[0], '
           '"free-threaded" if getattr(sys, "_is_gil_enabled", lambda: True)() is False else "GIL")\' >"$4"')


# pytest in .venv/$1 with CARGO_TARGET_DIR target/py$1 ($2: tag for the tests,
# $3: XML, $4: version file); exit status: pytest's.
PYTHON_TESTS = (f'vpy="$ROOT/.venv/$1/bin/python"\n{VERSION}\n'
                f'export CARGO_TARGET_DIR="$ROOT/target/py$1" EXTENSIBLETYPE_PYTHON_TAG="$2"\n{PYTEST}')


def pyenv_python(v: str) -> Optional[str]:
    found = glob.glob(os.path.expanduser(f"~/.pyenv/versions/{v}.*/bin/python{v}"))
    found.sort(key=lambda p: [int(x) for x in re.findall(r"\d+", Path(p).parents[1].name)])
    return found[-1] if found else None


def define_steps() -> list:
    steps = []

    def step(name, doc, **kw) -> Step:
        s = Step(name, doc, **kw)
        steps.append(s)
        return s

    # Build order = job order: the 3.11 venv first (five steps reuse it).
    py311 = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    host = [("3.11", py311), ("3.12", pyenv_python("3.12")), ("3.13", pyenv_python("3.13"))]
    host += [(f"{v}-abi3", p) for v, p in host if v in ("3.12", "3.13")]
    builds = {}
    abi3_builds = []
    for tag, py in host:
        s = step(f"py-{tag}", f"pytest on CPython {tag} ({'the abi3 wheel' if 'abi3' in tag else 'pip install .'}, .venv/{tag})",
                 counts=junit_counts, detail=version_detail,
                 skip="" if py else f"no python{tag[:4]} under ~/.pyenv/versions")
        b = s.job("build", bash('prepare_venv "$1" "$2" >/dev/null', tag, py or ""),
                  after=list(abi3_builds) if "abi3" in tag else [])
        if "abi3" in tag:
            abi3_builds.append(b)
        builds[tag] = b
        s.job("run", bash(PYTHON_TESTS, tag, tag, str(s.xml), str(LOGS / f"{s.name}.version")), needs=[b])
        if tag == "3.11":
            cargo = step("cargo", "cargo test --workspace --release (root crate with `arrays`): every crate's unit, property, "
                         "adversarial and doc tests, the runtime's embedding CPython", counts=libtest_counts)
            # The root crate's `python`/`arrays` code (src/methods.rs) has tests too.
            cargo_args = ["cargo", "test", "--workspace", "--release", "--features", "extensibletype/arrays"]
            cb = cargo.job("build", cargo_args + ["--no-run"])
            cargo.job("run", cargo_args, needs=[cb])

    s = step("py-3.13t", "pytest on free-threaded CPython 3.13t (built once by scripts/cpython.sh; pip install .)",
             counts=junit_counts, detail=version_detail)
    b = s.job("build", bash('ft=$(bash scripts/cpython.sh | tail -1) && [ -x "$ft" ] && prepare_venv 3.13t "$ft" >/dev/null'))
    s.job("run", bash(PYTHON_TESTS, "3.13t", "3.13t", str(s.xml), str(LOGS / f"{s.name}.version")), needs=[b])

    # CPython 3.14 / 3.15 in the Debian forky chroot (scripts/forky.sh).
    root = step("forky-root", "the forky chroot (scripts/forky.sh; built once, needs root)", hidden=True)
    if os.geteuid() != 0:
        root.job("run", ["sh", "-c", 'echo "needs root: debootstrap, chroot and bind mounts"; exit 1'])
    else:
        root.job("run", ["bash", "scripts/forky.sh"])
    forky_abi3 = list(abi3_builds)
    for tag in ("3.14", "3.15", "3.14-abi3", "3.15-abi3", "3.15-abi3t"):
        v = tag.split("-")[0]
        s = step(f"forky-{tag}", f"pytest on CPython {tag} in the forky chroot (.venv/forky-{tag})",
                 counts=junit_counts, detail=lambda st: f"{version_detail(st) or 'CPython'} in the forky chroot")
        chroot = ["bash", "scripts/forky.sh", "run"]
        b = s.job("build", chroot + bash('prepare_venv "forky-$1" "/usr/bin/python$2" >/dev/null', tag, v),
                  needs=[root.jobs[0]], after=list(forky_abi3) if tag.endswith("-abi3") else [])
        if tag.endswith("-abi3"):
            forky_abi3.append(b)
        s.job("run", chroot + bash(PYTHON_TESTS, f"forky-{tag}", f"forky-{tag}", str(s.xml),
                                   str(LOGS / f"{s.name}.version")), needs=[b])

    # Checks with a script each (exit status: theirs; last line "NAME: N passed, N failed").
    def script_step(name, doc, kind, needs=()):
        s = step(name, doc, counts=summary_line_counts)
        s.job(kind, ["bash", f"scripts/{name}.sh"], needs=list(needs))
        return s

    script_step("typecheck", "mypy stubtest and mypy --strict on the stubs (scripts/typecheck.sh)", "run", [builds["3.11"]])
    script_step("fuzz", "the Python API under hostile input, FUZZ_SEEDS (scripts/fuzz.sh)", "run", [builds["3.11"]])
    s = step("asan", "Rust tests, the 3.11 suite and fuzz cases under AddressSanitizer (scripts/asan.sh)",
             counts=summary_line_counts)
    ab = s.job("build", ["bash", "scripts/asan.sh", "--build-only"], needs=[builds["3.11"]])
    s.job("run", ["bash", "scripts/asan.sh"], needs=[ab])
    script_step("dlpack-memcheck", "valgrind over every DLPack path (scripts/dlpack-memcheck.sh)", "run", [builds["3.11"]])
    script_step("pyo3-versions", "cargo check against pyo3-ffi 0.28, 0.29, 0.30 (scripts/pyo3-versions.sh)", "build")
    script_step("crates", "the library crates pack and build from their packages (scripts/crates.sh)", "build")
    script_step("docs", "mkdocs build --strict and rustdoc without warnings (scripts/docs.sh)", "build")
    return sorted(steps, key=lambda s: ORDER.index(s.name) if s.name in ORDER else len(ORDER))


# Listing and summary order (the run order is `priority`).
ORDER = ["cargo", "pyo3-versions", "py-3.11", "py-3.12", "py-3.13", "py-3.12-abi3", "py-3.13-abi3", "py-3.13t",
         "forky-3.14", "forky-3.15", "forky-3.14-abi3", "forky-3.15-abi3", "forky-3.15-abi3t",
         "typecheck", "crates", "docs", "fuzz", "asan", "dlpack-memcheck"]


# Order among ready jobs: a build first (one at a time: it keeps the runs
# fed), in an order that unblocks the longest runs early; the other slots
# take runs, the longest first.
RUN_FIRST = ["asan", "py-3.11", "fuzz", "forky-3.15", "forky-3.14", "py-3.13t", "py-3.13", "py-3.12",
             "dlpack-memcheck", "cargo", "typecheck"]
BUILD_FIRST = ["py-3.11", "cargo", "forky-3.15", "forky-3.14", "py-3.13t", "py-3.13", "py-3.12", "asan",
               "py-3.12-abi3", "py-3.13-abi3", "forky-3.14-abi3", "forky-3.15-abi3", "forky-3.15-abi3t",
               "docs", "pyo3-versions", "crates"]


def priority(job: Job):
    order = RUN_FIRST if job.kind == "run" else BUILD_FIRST
    rank = order.index(job.step.name) if job.step.name in order else len(order)
    return (0 if job.kind == "build" else 1, rank)


# --- scheduler ----------------------------------------------------------------

def fmt(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def say(msg: str) -> None:
    print(f"[suite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_job(job: Job, env: dict, done: queue.Queue) -> None:
    first = job is job.step.jobs[0]
    t0 = time.monotonic()
    try:
        with open(job.step.log, "w" if first else "a") as log:
            log.write(f"$ {' '.join(job.argv)}\n")
            log.flush()
            # Its own process group, so that an interrupted suite can stop it whole.
            job.proc = subprocess.Popen(job.argv, cwd=job.cwd, env={**env, **job.env}, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            rc = job.proc.wait()
            log.write(f"\n[suite] exit status {rc}\n")
    except Exception as e:  # the command could not start (or the log not be written)
        rc, job.reason = 127, str(e)
    job.seconds = time.monotonic() - t0
    done.put((job, rc))


def run(jobs: list, max_jobs: int, max_builds: int, env: dict) -> None:
    pending = sorted(jobs, key=priority)
    running = []
    done: queue.Queue = queue.Queue()
    while pending or running:
        blocked = True
        while blocked:  # a failed job blocks what needs it, transitively
            blocked = False
            for job in list(pending):
                bad = next((n for n in job.needs if n.state in ("failed", "blocked")), None)
                if bad:
                    job.cause = bad.cause or bad
                    job.state, job.reason = "blocked", f"{job.cause.name} failed"
                    pending.remove(job)
                    blocked = True
        started = True
        while started:
            started = False
            for job in pending:
                if len(running) >= max_jobs:
                    break
                if any(n.state not in ("ok", "failed", "blocked") for n in job.needs + job.after if n in jobs):
                    continue
                if job.kind == "build" and sum(j.kind == "build" for j in running) >= max_builds:
                    continue
                pending.remove(job)
                running.append(job)
                job.state = "running"
                say(f"start {job.name}")
                threading.Thread(target=run_job, args=(job, env, done), daemon=True).start()
                started = True
                break
        if not running:
            for job in pending:  # unreachable (a cycle would be a bug here)
                job.state, job.reason = "blocked", "never ready"
            break
        job, rc = done.get()
        running.remove(job)
        job.rc = rc
        job.state = "ok" if rc == 0 else "failed"
        say(f"{'done' if rc == 0 else 'FAILED'} {job.name} ({fmt(job.seconds)}"
            + ("" if rc == 0 else f", exit status {rc}, log: {rel(job.step.log)}") + ")")
        if rc != 0:
            tail = read(job.step.log).splitlines()[-25:]
            print("\n".join(f"    {line}" for line in tail), file=sys.stderr, flush=True)


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- main ---------------------------------------------------------------------

def caller_path() -> str:
    """PATH as the caller had it. A pyenv shim (`python3`) runs us with its
    own directories in front; pyo3's build script reruns when PATH changes,
    so cargo would rebuild the crates between `cargo test` by hand and the
    suite, every time."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    root = os.environ.get("PYENV_ROOT")
    if root:
        ours = re.compile(re.escape(root.rstrip("/")) + r"/(versions/[^/]+/bin|libexec|plugins/[^/]+/bin)/?$")
        while path and ours.match(path[0]):
            path.pop(0)
    return os.pathsep.join(path)


GROUPS = {"py": lambda s: s.name.startswith("py-"), "forky": lambda s: s.name.startswith("forky-")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("steps", nargs="*", metavar="STEP", help="steps or groups to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the steps and exit")
    ap.add_argument("-j", "--jobs", type=int, default=max(2, os.cpu_count() or 1),
                    help="jobs at once (default: the number of cores, at least 2)")
    ap.add_argument("--builds", type=int, default=1, help="compiling jobs at once (default 1)")
    args = ap.parse_args(argv)

    steps = define_steps()
    visible = [s for s in steps if not s.hidden]
    if args.list:
        width = max(len(s.name) for s in visible)
        for s in visible:
            print(f"{s.name:<{width}}  {s.doc}" + (f" [skipped here: {s.skip}]" if s.skip else ""))
        print(f"{'groups':<{width}}  " + ", ".join(f"{g} (" + " ".join(s.name for s in visible if f(s)) + ")"
                                                  for g, f in GROUPS.items()))
        return 0

    chosen = []
    for name in args.steps or [s.name for s in visible]:
        match = [s for s in visible if s.name == name] or [s for s in visible if name in GROUPS and GROUPS[name](s)]
        if not match:
            ap.error(f"unknown step {name!r} (see --list)")
        chosen += [s for s in match if s not in chosen]
    # Prerequisite jobs of other steps (the 3.11 venv, the forky chroot, the
    # abi3 wheel) come along; ordering-only ones (`after`) do not.
    jobs = [j for s in chosen if not s.skip for j in s.jobs]
    for job in jobs:
        for n in job.needs:
            if n not in jobs:
                jobs.append(n)
    for job in jobs:
        if job.step not in chosen and not job.step.hidden:
            job.step.hidden = True  # shown under the steps that needed it

    LOGS.mkdir(parents=True, exist_ok=True)
    # One suite per checkout: two would race on the venvs, wheels and logs.
    lock = open(LOGS / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"suite.py: another suite is running in this checkout ({rel(LOGS)}/.lock)", file=sys.stderr)
        return 2
    for s in chosen:
        for p in (s.xml, LOGS / f"{s.name}.version"):
            p.unlink(missing_ok=True)
    env = {**os.environ, "CARGO_TERM_COLOR": "never", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PATH": caller_path()}
    if any(j.step.name.startswith("forky-") for j in jobs):
        # No git inside the chroot: lib.sh's source digest comes from here.
        env["EXTENSIBLETYPE_SOURCE_DIGEST"] = subprocess.run(
            bash("source_digest"), cwd=ROOT, capture_output=True, text=True).stdout.strip()
    say(f"{len(chosen)} step(s), {len(jobs)} job(s), {args.jobs} at once, {args.builds} compiling; logs in {rel(LOGS)}/")
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        run(jobs, max(1, args.jobs), max(1, args.builds), env)
    except BaseException:  # Ctrl-C, SIGTERM: stop the jobs' process groups
        for job in jobs:
            if job.state == "running" and job.proc and job.proc.poll() is None:
                say(f"stopping {job.name}")
                try:
                    os.killpg(job.proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        raise
    wall = time.monotonic() - t0

    print("\n== extensibletype test summary ==")
    total_passed = total_failed = 0
    busy = 0.0
    forky_last = ([None] + [s for s in chosen if s.name.startswith("forky-")])[-1]
    for s in chosen:
        if s.skip:
            print(f"{s.name}: skipped ({s.skip})")
            continue
        counts = s.counts(s)
        passed, failed, skipped = counts or (0, 0, 0)
        notes = [s.detail(s)] if s.ok or counts else []
        notes.append(", ".join(f"{j.kind} {fmt(j.seconds)}" for j in s.jobs if j.state in ("ok", "failed")))
        busy += sum(j.seconds for j in s.jobs)
        if not s.ok:
            failed = max(failed, 1)
            bad = next(j for j in s.jobs if j.state != "ok")
            cause = bad.cause or bad
            why = f"{bad.kind}: {bad.reason}" if bad.state == "blocked" else f"{bad.kind} exit status {bad.rc}"
            notes.append(f"FAILED: {why}, log: {rel(cause.step.log)}")
        line = f"{s.name}: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else "")
        print(f"{line} ({'; '.join(n for n in notes if n)})")
        total_passed += passed
        total_failed += failed
        if s is forky_last:
            print(FORKY_NOTE)
    for s in steps:  # prerequisites that were not chosen themselves
        busy += sum(j.seconds for j in s.jobs if s not in chosen and j in jobs)
    print(f"wall time {fmt(wall)} ({fmt(busy)} of jobs, {args.jobs} at once)")
    print(f"{total_passed} passed, {total_failed} failed")
    return 0 if all(s.ok for s in chosen if not s.skip) and all(j.state == "ok" for j in jobs) else 1


if __name__ == "__main__":
    sys.exit(main())
