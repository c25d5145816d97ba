"""MkDocs hooks: the committed evidence (results/*.md and their plots) becomes part of the site.

The ledger and the guides link to `../results/<id>.md`, which GitHub renders; the site serves the same
files under `results/`, so every such link resolves and `mkdocs build --strict` checks them all.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parent / "results"
_LINK = re.compile(r"\]\(\.\./results/")


def on_files(files, config):
    for path in sorted(RESULTS.glob("*")):
        if path.suffix in (".md", ".png"):
            files.append(File.generated(config, f"results/{path.name}", abs_src_path=str(path)))
    return files


def on_page_markdown(markdown, page, config, files):
    if page.file.src_uri.startswith("results/"):
        return markdown
    depth = page.file.src_uri.count("/")
    return _LINK.sub("](" + "../" * depth + "results/", markdown)
