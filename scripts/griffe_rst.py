"""A griffe extension for the docs site (mkdocs.yml, mkdocstrings): the
package's docstrings are written for ``help()`` and doctest, in reST style;
mkdocstrings renders Markdown. Before rendering: ``:func:`x``` and the other
roles become code, ``x`` (double backquotes) single ones, bare dunder
names code (not bold), and doctest examples (``>>>`` blocks) fenced
``pycon`` code."""

import re

import griffe

ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|exc|obj|const):`~?([^`]+)`")


# A bare dunder name (``__cslots__``) outside code: Markdown would read it as bold.
DUNDER = re.compile(r"(?<![`\w])(__\w+__)(?![`\w])")


def inline(line):
    line = ROLE.sub(r"`\1`", line)
    line = re.sub(r"``([^`]+)``", r"`\1`", line)
    # Only outside code spans: split on backquoted spans, escape the rest.
    parts = re.split(r"(`[^`]*`)", line)
    return "".join(p if p.startswith("`") else DUNDER.sub(r"`\1`", p) for p in parts)


def markdown(text):
    out, block = [], []
    for line in text.split("\n") + [""]:
        if line.lstrip().startswith(">>>") or (block and line.strip()):
            block.append(line.strip() if not line.lstrip().startswith(("...", ">>>")) else line.lstrip())
            continue
        if block:
            out += ["```pycon", *block, "```"]
            block = []
        out.append(inline(line))
    return "\n".join(out[:-1])


class ReSTToMarkdown(griffe.Extension):
    def on_package(self, *, pkg, **kwargs):
        seen = set()

        def walk(obj):
            if obj.is_alias or id(obj) in seen:
                return
            seen.add(id(obj))
            if obj.docstring is not None:
                obj.docstring.value = markdown(obj.docstring.value)
            for member in obj.members.values():
                walk(member)

        walk(pkg)
