"""Write benchmark sections into ``docs/results.md`` (each between its own markers)."""

from __future__ import annotations

import os
import re

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "results.md")
_HEAD = "# Measured results\n\nEvery figure below was measured by the command printed with it; " \
        "benchmarks rewrite their own section.\n"


def update_section(name: str, markdown: str, path: str = RESULTS) -> str:
    """Replace (or append) the section ``name`` of the results file; returns the path."""
    text = _HEAD
    if os.path.exists(path):
        with open(path) as fh:
            text = fh.read()
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    pat = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    text = pat.sub(lambda _: block, text) if pat.search(text) else text.rstrip() + "\n\n" + block + "\n"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    return path
