"""Split a valgrind memcheck log into the extension's reports and CPython's.

    python memcheck_filter.py VALGRIND_LOG

Prints each report (error or definite leak) with a frame in the extension
(the `_core` module of extensibletype, or Rust code of the crate), then a
last line "N in the extension, M in CPython's own frames".
"""

import re
import sys

OURS = re.compile(r"extensibletype|_core\.cpython|/src/(runtime|arrays|table|key|module)\b|\.rs:\d+")


def reports(lines):
    """Yield each report: the lines from its headline to the blank line."""
    block = []
    for line in lines:
        body = re.sub(r"^==\d+== ?", "", line.rstrip("\n"))
        if not body:
            if block:
                yield block
            block = []
        elif line.startswith("=="):
            block.append(body)
    if block:
        yield block


def main(path):
    ours, theirs = [], 0
    with open(path, errors="replace") as f:
        for block in reports(f):
            head = block[0]
            is_error = head.startswith(("Invalid", "Conditional", "Use of uninitialised", "Syscall param", "Mismatched", "Source and destination"))
            is_leak = "definitely lost in loss record" in head
            if not (is_error or is_leak):
                continue
            if any(OURS.search(l) for l in block[1:]):
                ours.append("\n".join(block))
            else:
                theirs += 1
    for r in ours[:20]:
        print(r, end="\n\n")
    print(f"{len(ours)} in the extension, {theirs} in CPython's own frames")


if __name__ == "__main__":
    main(sys.argv[1])
