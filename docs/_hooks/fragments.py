"""MkDocs hook: a fragment's whole example file, shown folded after it.

A Python block that is only a part of an example is marked, on the line before its
fence, with ``<!-- fragment: examples/NAME.py -->`` (tests/support/doc_examples.py checks
it against that file, which tests/test_examples.py runs). On the site the block is
followed by a folded admonition holding the whole file.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

FRAGMENT = re.compile(
    r"^(?P<indent>[ \t]*)<!--\s*fragment:\s*(?P<path>\S+?)\s*-->\n"
    r"(?P<block>(?P=indent)(?P<fence>`{3,})[^\n]*\n.*?\n(?P=indent)(?P=fence)[ \t]*)$",
    re.MULTILINE | re.DOTALL,
)


def on_page_markdown(markdown: str, *, config: Any, **kwargs: Any) -> str:
    """Follow each fragment with its whole file."""
    root = Path(config["config_file_path"]).parent

    def whole(match: re.Match[str]) -> str:
        indent, path = match["indent"], match["path"]
        source = (root / path).read_text(encoding="utf-8").rstrip("\n")
        folded = f'??? example "The whole of `{path}`, which the tests run"\n\n' + textwrap.indent(
            f"```python\n{source}\n```", "    "
        )
        return f"{match['block']}\n\n{textwrap.indent(folded, indent)}"

    return FRAGMENT.sub(whole, markdown)
