"""MkDocs hooks (mkdocs.yml): links in the pages that point to this
repository's Markdown files on GitHub (README.md uses absolute links so that
they work on PyPI and crates.io) become links to the site's own pages, so
that the strict build checks them, anchors included. Links to other files of
the repository (headers, examples) stay on GitHub."""

import posixpath
import re

from mkdocs.plugins import event_priority

REPO_BLOB = "https://github.com/extensibletype/extensibletype/blob/main/"
# repository path -> page (docs_dir-relative)
PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
LINK = re.compile(r"\]\(" + re.escape(REPO_BLOB) + r"([^)#\s]+)(#[^)\s]*)?\)")


@event_priority(-100)  # after include-markdown has pulled README.md etc. in
def on_page_markdown(markdown, page, config, files):
    here = posixpath.dirname(page.file.src_uri)

    def local(m):
        path, anchor = m.group(1), m.group(2) or ""
        target = PAGES.get(path)
        if target is None and path.startswith("docs/") and path.endswith(".md"):
            target = path[len("docs/"):]
        if target is None or files.get_file_from_path(target) is None:
            return m.group(0)
        return "](" + posixpath.relpath(target, here or ".") + anchor + ")"

    return LINK.sub(local, markdown)
