"""The Python blocks of README.md and docs/, as sybil examples that pytest runs.

Three kinds of block, told apart by the line before the fence:

- A complete block (the default) runs as a module of its own, in a fresh namespace whose
  ``__name__`` is not ``"__main__"``: its imports, objects, decorators and settings are
  checked, and the ``if __name__ == "__main__":`` part that would serve is not run. It runs
  in an empty temporary directory, with no ``BASTION_*`` variable set and a data directory
  of its own, so what it writes (a SQLite file) goes nowhere else.
- A fragment follows ``<!-- fragment: examples/NAME.py -->``: a part of a complete example
  file that tests/test_examples.py runs. The fragment must compile (``await`` allowed at
  its top level), the file must exist and be tested, and every name the fragment imports
  from bastion must be imported by the file too.
- A program follows ``<!-- program: tests/PATH.py -->``: a walkthrough's program (one that
  serves, or signs in through a browser) that the named test runs as written, in the setting
  the walkthrough builds step by step. Here it must compile, and that test must read this
  document.

A block whose fence says ``python title="FastMCP"`` quotes another library (docs/peers.md)
and is not run; its title must name one of ``PEERS``. Shell, console and other blocks are
not run.
"""

from __future__ import annotations

import ast
import logging
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer as SDKMCPServer
from sybil import Document, Example, Region
from sybil.parsers.markdown.lexers import FencedCodeBlockLexer, RawFencedCodeBlockLexer

__all__ = ["FRAGMENT", "PROGRAM", "ROOT", "PythonBlocks", "bastion_imports"]

ROOT = Path(__file__).parents[2]
#: The marker on the line before a fragment's fence.
FRAGMENT = re.compile(r"<!--\s*fragment:\s*(?P<path>\S+?)\s*-->")
#: The marker on the line before a walkthrough's program, naming the test that runs it.
PROGRAM = re.compile(r"<!--\s*program:\s*(?P<path>\S+?)\s*-->")
#: A module name that is not "__main__", so the serving part of a block does not run.
MODULE_NAME = "docs_example"
#: Loggers a block may configure (docs/operations.md adds a handler to the audit logger).
LOGGERS = ("bastion", "bastion.audit")
#: The libraries whose code docs/peers.md quotes (not run: they are not bastion's dependencies).
PEERS = ("FastMCP", "FastAPI-MCP", "MCP SDK", "TypeScript SDK")


class PythonBlocks:
    """A sybil parser: each fenced ``python`` block, as a module to run or a fragment to check.

    A block with more on its fence line than the language is another library's code quoted
    beside bastion's (docs/peers.md): its title must name that library, and it is not run.
    """

    def __init__(self) -> None:
        self.lexer = FencedCodeBlockLexer("python|py")
        self.quoted = RawFencedCodeBlockLexer(re.compile(r"(?:python|py)[ \t]+(?P<info>[^\n]*)$\n", re.MULTILINE))

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in self.quoted(document):
            region.parsed = str(region.lexemes["info"])
            region.evaluator = quoted_peer
            yield region
        for region in self.lexer(document):
            before = document.text[: region.start].rstrip().rsplit("\n", 1)[-1].strip()
            region.parsed = str(region.lexemes["source"])
            if marker := FRAGMENT.fullmatch(before):
                region.evaluator = Fragment(marker["path"])
            elif marker := PROGRAM.fullmatch(before):
                region.evaluator = Program(marker["path"])
            else:
                region.evaluator = run_module
            yield region


def run_module(example: Example) -> None:
    """Run a complete block as a module, isolated from the environment and the other blocks."""
    monkeypatch: pytest.MonkeyPatch = example.namespace["monkeypatch"]
    tmp_path: Path = example.namespace["tmp_path"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in list(os.environ):
        if name.upper().startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(SDKMCPServer, "run", _serves)
    monkeypatch.setattr(uvicorn, "run", _serves)
    # The block's first line is the one after the fence: tracebacks name the Markdown's lines.
    code = compile("\n" * example.line + example.parsed, str(example.path), "exec")
    with _restored_global_state():
        exec(code, {"__name__": MODULE_NAME})  # the documentation's own examples


def quoted_peer(example: Example) -> None:
    """A quoted block names the library it is from (``title="FastMCP"``)."""
    title = re.fullmatch(r'title="(?P<title>[^"]+)"', example.parsed.strip())
    assert title is not None, f"a Python block's fence carries only a title naming a library: {example.parsed!r}"
    assert title["title"].startswith(PEERS), f"{title['title']!r} names none of {PEERS}: only their code is quoted"


def _serves(*args: object, **kwargs: object) -> None:
    raise AssertionError('a complete block serves only under if __name__ == "__main__":')


@dataclass(frozen=True)
class Fragment:
    """Check a fragment against the complete, tested example file it names."""

    path: str

    def __call__(self, example: Example) -> None:
        file = ROOT / self.path
        assert file.parent == ROOT / "examples", f"a fragment names a file under examples/, not {self.path}"
        assert file.is_file(), f"{self.path} does not exist"
        tested = (ROOT / "tests" / "test_examples.py").read_text(encoding="utf-8")
        assert f'"{file.stem}"' in tested, f"tests/test_examples.py does not run {self.path}"
        fragment = ast.parse(example.parsed, str(example.path))
        compile(fragment, str(example.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        missing = bastion_imports(fragment) - bastion_imports(ast.parse(file.read_text(encoding="utf-8")))
        assert not missing, f"{self.path} does not import {sorted(missing)}, which the fragment imports"


@dataclass(frozen=True)
class Program:
    """Check a walkthrough's program: it compiles, and the test it names reads its document."""

    path: str

    def __call__(self, example: Example) -> None:
        test = ROOT / self.path
        assert test.is_relative_to(ROOT / "tests"), f"{self.path} is not a test file"
        assert test.is_file(), f"{self.path} does not exist"
        document = Path(example.path).name
        assert document in test.read_text(encoding="utf-8"), f"{self.path} does not read {document}"
        compile(example.parsed, str(example.path), "exec", dont_inherit=True)


def bastion_imports(tree: ast.AST) -> set[str]:
    """``module.name`` for each name imported from bastion by ``tree``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "bastion":
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.split(".")[0] == "bastion")
    return names


@contextmanager
def _restored_global_state() -> Iterator[None]:
    """Undo what a block may change for the whole process: logging, instrumentation, providers."""
    from bastion import uninstrument
    from bastion.providers._env import PROVIDERS

    loggers = [logging.getLogger(name) for name in LOGGERS]
    saved = [(logger.level, logger.propagate, list(logger.handlers)) for logger in loggers]
    providers = dict(PROVIDERS)  # docs/providers.md registers a provider of its own
    try:
        yield
    finally:
        uninstrument()
        PROVIDERS.clear()
        PROVIDERS.update(providers)
        for logger, (level, propagate, handlers) in zip(loggers, saved, strict=True):
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.setLevel(level)
            logger.propagate = propagate
            logger.handlers[:] = handlers
