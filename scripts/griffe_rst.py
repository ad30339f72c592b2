"""A griffe extension for the docs site (mkdocs.yml, mkdocstrings): the
package's docstrings are written for ``help()`` and doctest, in reST style;
mkdocstrings renders Markdown. Before rendering: ``:func:`x``` and the other
roles become code, ``x`` (double backquotes) single ones, and doctest
examples (``>>>`` blocks) fenced ``pycon`` code."""

import re

import griffe

ROLE = re.compile(r":(?:func|class|data|mod|meth|attr|exc|obj|const):`~?([^`]+)`")


def markdown(text):
    text = ROLE.sub(r"`\1`", text)
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    out, block = [], []
    for line in text.split("\n") + [""]:
        if line.lstrip().startswith(">>>") or (block and line.strip()):
            block.append(line.strip() if not line.lstrip().startswith(("...", ">>>")) else line.lstrip())
            continue
        if block:
            out += ["```pycon", *block, "```"]
            block = []
        out.append(line)
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
