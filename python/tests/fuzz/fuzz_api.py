"""Fuzz the Python API of extensibletype: random and hostile arguments, each
result checked against a pure-Python model (cases.py).

    python fuzz_api.py                      # the CI range: seeds 0:100000
    python fuzz_api.py --seeds 0:1000000    # longer
    python fuzz_api.py --seeds 1234:1235    # re-run one case

Cases run in worker subprocesses (one per core by default), one seed at a
time, so a crash or a hang of one case is reported with its seed and kind
(the worker is then restarted) instead of ending the run. Prints one line per
failure and a final ``fuzz: N passed, N failed``; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import selectors
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# Kinds by seed: the parent names a crashed case without importing anything.
KINDS = ["prehash", "keys", "set_slots", "hierarchy", "metaclass", "arrays", "hierarchy", "arrays", "set_slots",
         "foreign_churn", "memory_bound"] * 2 + ["subinterpreters"]


def kind_of(seed: int) -> str:
    return KINDS[seed % len(KINDS)]


def worker() -> None:
    """Read seeds from stdin, one per line; answer `ok` or `fail <message>`."""
    sys.path.insert(0, HERE)
    import cases

    cases.setup()
    out = sys.stdout
    for line in sys.stdin:
        seed = int(line)
        try:
            cases.run(kind_of(seed), seed)
        except BaseException as e:  # noqa: BLE001 - every failure is reported
            last = traceback.extract_tb(e.__traceback__)[-1]
            msg = f"{type(e).__name__}: {e} (at {os.path.basename(last.filename)}:{last.lineno})"
            out.write("fail " + msg.replace("\n", " ")[:400] + "\n")
        else:
            out.write("ok\n")
        out.flush()


class Worker:
    def __init__(self, python: str) -> None:
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self.seed: int | None = None
        self.started = 0.0

    def send(self, seed: int) -> None:
        self.seed, self.started = seed, time.monotonic()
        self.proc.stdin.write(f"{seed}\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0:100000", help="half-open seed range A:B (default 0:100000, the CI range)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the workers")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker()
        return 0

    start, end = (int(x) for x in args.seeds.split(":"))
    pending = iter(range(start, end))
    passed = failed = 0
    failures: list[str] = []
    sel = selectors.DefaultSelector()
    t0 = time.monotonic()

    def spawn() -> Worker | None:
        seed = next(pending, None)
        if seed is None:
            return None
        w = Worker(args.python)
        sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        w.send(seed)
        return w

    live = [w for w in (spawn() for _ in range(max(1, args.workers))) if w is not None]
    while live:
        events = sel.select(timeout=1.0)
        now = time.monotonic()
        for key, _ in events:
            w: Worker = key.data
            line = w.proc.stdout.readline()
            if not line:  # the worker died inside this case
                w.proc.wait()
                rc = w.proc.returncode
                failed += 1
                failures.append(f"seed {w.seed} ({kind_of(w.seed)}): CRASH, worker exit status {rc}")
                sel.unregister(w.proc.stdout)
                live.remove(w)
                nw = spawn()
                if nw is not None:
                    live.append(nw)
                continue
            if line.startswith("ok"):
                passed += 1
            else:
                failed += 1
                failures.append(f"seed {w.seed} ({kind_of(w.seed)}): {line[5:].strip()}")
            seed = next(pending, None)
            if seed is None:
                sel.unregister(w.proc.stdout)
                w.proc.stdin.close()
                w.proc.wait()
                live.remove(w)
            else:
                w.send(seed)
        for w in list(live):
            if now - w.started > args.timeout:
                failed += 1
                failures.append(f"seed {w.seed} ({kind_of(w.seed)}): HANG (> {args.timeout:.0f} s), worker killed")
                sel.unregister(w.proc.stdout)
                w.kill()
                live.remove(w)
                nw = spawn()
                if nw is not None:
                    live.append(nw)
    for f in failures[:50]:
        print(f)
    if len(failures) > 50:
        print(f"... and {len(failures) - 50} more")
    if failures:
        print(f"re-run one: {sys.executable} {os.path.abspath(__file__)} --seeds N:N+1", file=sys.stderr)
    print(f"fuzz: seeds {start}:{end} in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    print(f"fuzz: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
