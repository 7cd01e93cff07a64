"""pytest collects the Python blocks of README.md and docs/ through sybil (tests/support/doc_examples.py)."""

from sybil import Sybil

from support.doc_examples import PythonBlocks

pytest_collect_file = Sybil(
    parsers=[PythonBlocks()],
    patterns=["README.md", "docs/*.md", "docs/*/*.md"],
    fixtures=["tmp_path", "monkeypatch"],
).pytest()
