"""Command-line tools: ``python -m extensibletype <command>``.

``header KEYS.txt [-o OUT.h]``
    Turn a list of keys (one per line; blank lines and lines starting with
    ``#`` are ignored; surrounding whitespace is stripped) into a C header of
    compile-time ids::

        /* "extensibletype.array.v1:acquire" */
        #define EXTTYPE_ID_EXTENSIBLETYPE_ARRAY_V1__ACQUIRE UINT64_C(0x...)
        #define EXTTYPE_KEY_EXTENSIBLETYPE_ARRAY_V1__ACQUIRE "extensibletype.array.v1:acquire"

    Naming scheme: the key, upper-cased, with each ``:`` replaced by ``__``
    and every other run of characters outside ``[A-Za-z0-9]`` replaced by one
    ``_``; then prefixed with ``EXTTYPE_ID_`` (the id) and ``EXTTYPE_KEY_``
    (the key string, for ``ExtType_SlotDef.key``). ``--id-prefix`` and
    ``--key-prefix`` change the prefixes (an empty key prefix omits the key
    macros). Distinct keys that map to the same name, or whose ids collide
    (64-bit prehash collision or the reserved id 0), are refused with an error
    naming the keys: nothing is written. A key listed twice is emitted once.

    Typed keys (``<interface>:<method>#<signature>``, docs/spec.md "Typed
    methods") must be canonical (else a one-line error naming the problem,
    exit 2). Their name part is named as above; the signature adds
    ``__<RET>__<ARG>_<ARG>...`` and, with a flag, ``__T`` or ``__E``, where
    each type is its code upper-cased (``F64``, ``I64``, ``C128``, ``B``,
    ``P`` for ``p``, ``O``), ``O+`` is ``ONEW``, ``v`` is ``V`` and each
    ``*`` is ``PTR_``::

        geom.Shape.v1:area#f64(O)          -> GEOM_SHAPE_V1__AREA__F64__O
        geom.Shape.v1:sum#i64(O,*f64,i64)  -> GEOM_SHAPE_V1__SUM__I64__O_PTR_F64_I64
        geom.Shape.v1:new#O+(O)!t          -> GEOM_SHAPE_V1__NEW__ONEW__O__T
        geom.Shape.v1:scale#v(O,f64)!e     -> GEOM_SHAPE_V1__SCALE__V__O_F64__E

``include``
    Print the directory holding ``extensibletype.h`` (for ``-I``).

``prehash KEY...``
    Print ``0x<id>  KEY`` for each key.

``bench [--type MOD:CLASS --key KEY] [--json] [--plot FILE.png]``
    Lookup latency and throughput on this machine, timed in loops compiled
    into the extension (see :mod:`extensibletype.bench`): a table of ns per
    lookup and ratios to a hit on an extensible class; ``--json`` prints one
    JSON object. Exit 2 on a bad ``--type``/``--key``/``--iterations``/
    ``--reps``; 1 for ``--plot`` without matplotlib.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
from typing import Iterable, List, Optional, Sequence, Tuple

DEFAULT_ID_PREFIX = "EXTTYPE_ID_"
DEFAULT_KEY_PREFIX = "EXTTYPE_KEY_"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class KeyListError(ValueError):
    """A key list that cannot be turned into a header (message says why)."""


class TypedKeyError(KeyListError):
    """A key with ``#`` that is not a canonical typed key (a usage error: exit 2)."""


def _type_token(code: str) -> str:
    """A signature type code as a macro-name token (see module doc)."""
    depth = len(code) - len(code.lstrip("*"))
    base = code[depth:]
    return "PTR_" * depth + {"O+": "ONEW"}.get(base, base.upper())


def macro_suffix(key: str) -> str:
    """The part of the macro name derived from ``key`` (see module doc).

    Raises ValueError for a key with ``#`` that is not a canonical typed key.
    """
    if "#" in key:
        from ._core import _parse_typed_key  # the runtime's grammar

        interface, method, ret, args, flag = _parse_typed_key(key)
        sig = "__".join([_type_token(ret), "_".join(_type_token(a) for a in args)] + ([flag.upper()] if flag else []))
        return macro_suffix(f"{interface}:{method}") + "__" + sig
    parts = [re.sub(r"[^A-Za-z0-9]+", "_", part).upper() for part in key.split(":")]
    return "__".join(parts)


def read_keys(lines: Iterable[str], source: str = "<keys>") -> List[Tuple[str, int]]:
    """``(key, line number)`` for each key line, in order, without repeats."""
    keys: List[Tuple[str, int]] = []
    seen = set()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line in seen:
            continue
        seen.add(line)
        keys.append((line, number))
    return keys


def _c_string(key: str) -> str:
    """``key`` as a C string literal (UTF-8 bytes; octal escapes, which
    unlike ``\\x`` cannot swallow the characters that follow)."""
    out = []
    for byte in key.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= byte < 0x7F and ch != "?":  # '?': no trigraphs
            out.append(ch)
        else:
            out.append("\\%03o" % byte)
    return '"' + "".join(out) + '"'


def _comment(text: str) -> str:
    return text.replace("*/", "* /")


def generate_header(
    keys: Sequence[Tuple[str, int]],
    *,
    source: str = "<keys>",
    id_prefix: str = DEFAULT_ID_PREFIX,
    key_prefix: Optional[str] = DEFAULT_KEY_PREFIX,
    prehash=None,
) -> str:
    """The header text for ``keys`` (from :func:`read_keys`).

    Raises :class:`KeyListError` on a name clash, an id collision or id 0,
    :class:`TypedKeyError` (one line, the first) for a typed key that is not
    canonical.
    """
    if prehash is None:
        from . import prehash  # the runtime's, so header and runtime agree
    if not _IDENT.match(id_prefix + "X"):
        raise KeyListError(f"--id-prefix {id_prefix!r} does not start a C identifier")
    if key_prefix and not _IDENT.match(key_prefix + "X"):
        raise KeyListError(f"--key-prefix {key_prefix!r} does not start a C identifier")

    for key, line in keys:
        if "#" in key:
            try:
                macro_suffix(key)
            except ValueError as e:
                raise TypedKeyError(f"{source}:{line}: {e}") from None

    names = {}  # macro name -> (key, line)
    ids = {}  # id -> (key, line)
    rows = []
    errors = []
    for key, line in keys:
        suffix = macro_suffix(key)
        if not suffix.strip("_"):
            errors.append(f"{source}:{line}: key {key!r} has no letters or digits to name a macro")
            continue
        ident = prehash(key)
        if ident == 0:
            errors.append(f"{source}:{line}: key {key!r} hashes to the reserved id 0")
        if ident in ids:
            other, other_line = ids[ident]
            errors.append(
                f"{source}:{line}: 64-bit id collision: {key!r} and {other!r} (line {other_line}) "
                f"both have id {ident:#018x}"
            )
        ids.setdefault(ident, (key, line))
        macros = [id_prefix + suffix]
        if key_prefix:
            macros.append(key_prefix + suffix)
        for macro in macros:
            if macro in names:
                other, other_line = names[macro]
                errors.append(
                    f"{source}:{line}: keys {key!r} and {other!r} (line {other_line}) "
                    f"both map to the macro name {macro}"
                )
            names.setdefault(macro, (key, line))
        rows.append((key, suffix, ident))
    if errors:
        raise KeyListError("\n".join(errors))

    digest = hashlib.sha256("\n".join(k for k, _ in keys).encode("utf-8")).hexdigest()[:12].upper()
    guard = f"EXTTYPE_IDS_{digest}_H"
    out = [
        f"/* Generated by `python -m extensibletype header` from {_comment(os.path.basename(source))}. Do not edit. */",
        "/* id = first 8 bytes of md5(key), little-endian (extensibletype ABI v1). */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
    ]
    for key, suffix, ident in rows:
        literal = _c_string(key)
        out.append(f"/* {_comment(literal)} */")
        out.append(f"#define {id_prefix}{suffix} UINT64_C(0x{ident:016x})")
        if key_prefix:
            out.append(f"#define {key_prefix}{suffix} {literal}")
    out += ["", f"#endif /* {guard} */", ""]
    return "\n".join(out)


def _cmd_header(args: argparse.Namespace) -> int:
    if args.keys == "-":
        lines, source = sys.stdin.read().splitlines(), "<stdin>"
    else:
        try:
            with open(args.keys, encoding="utf-8") as f:
                lines, source = f.read().splitlines(), args.keys
        except (OSError, UnicodeDecodeError) as e:
            print(f"error: argument KEYS: cannot read {args.keys!r}: {_reason(e)}", file=sys.stderr)
            return 2
    try:
        text = generate_header(
            read_keys(lines, source),
            source=source,
            id_prefix=args.id_prefix,
            key_prefix=args.key_prefix,
        )
    except TypedKeyError as e:
        print(f"error: argument KEYS: {e}", file=sys.stderr)
        return 2
    except KeyListError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        try:
            with open(args.output, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        except OSError as e:
            print(f"error: argument -o/--output: cannot write {args.output!r}: {_reason(e)}", file=sys.stderr)
            return 2
    return 0


def _reason(e: BaseException) -> str:
    """An OS or decoding error as one line, without the errno prefix."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def _cmd_include(args: argparse.Namespace) -> int:
    from . import get_include

    print(get_include())
    return 0


def _cmd_prehash(args: argparse.Namespace) -> int:
    from . import prehash

    for key in args.key:
        print(f"0x{prehash(key):016x}  {key}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m extensibletype", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("header", help="C header of compile-time ids from a key list")
    p.add_argument("keys", help="file with one key per line ('#' comments), or - for stdin")
    p.add_argument("-o", "--output", help="output file (default: stdout)")
    p.add_argument("--id-prefix", default=DEFAULT_ID_PREFIX, help="prefix of id macros (default %(default)s)")
    p.add_argument(
        "--key-prefix",
        default=DEFAULT_KEY_PREFIX,
        help="prefix of key-string macros; empty to omit them (default %(default)s)",
    )
    p.set_defaults(func=_cmd_header)
    p = sub.add_parser("include", help="print the directory holding extensibletype.h")
    p.set_defaults(func=_cmd_include)
    p = sub.add_parser("prehash", help="print the id of each key")
    p.add_argument("key", nargs="+")
    p.set_defaults(func=_cmd_prehash)
    from . import bench

    bench.add_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly. Point stdout at
        # /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
