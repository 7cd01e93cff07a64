"""The documentation cannot drift from the code: every variable on the configuration page, every block run."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
from sybil import Example, Sybil

from bastion._config.auth import known_variables
from bastion._config.settings import _Settings
from bastion.providers._env import PROVIDERS

from support.doc_examples import PythonBlocks

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
FENCE = "```python\n{}```\n\n"
#: Variables named in docstrings as examples, not read by anything.
EXAMPLES = {"BASTION_ACME_DOMAIN", "BASTION_ACME_CLIENT_ID", "BASTION_ACME_CLIENT_SECRET", "BASTION_ACME_SCOPES"}


def hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("config_table", DOCS / "_hooks" / "config_table.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_configuration_page_is_generated_from_the_settings() -> None:
    config = hook()
    assert config.MARKER in (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert config.on_page_markdown(config.MARKER) == config.variables_markdown()


def test_every_variable_the_code_reads_is_on_the_configuration_page() -> None:
    page = hook().variables_markdown()
    named_in_code = {
        name
        for path in (ROOT / "src" / "bastion").rglob("*.py")
        for name in re.findall(r"\bBASTION_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8"))
    }
    for name in (set(known_variables()) | named_in_code) - EXAMPLES:
        assert f"`{name}`" in page, name


def test_every_variable_has_a_meaning() -> None:
    for name, field in _Settings.model_fields.items():
        assert field.description, name
    rows = re.findall(r"^\| `(BASTION_\w+)` \| (.*?) \|", hook().variables_markdown(), re.MULTILINE)
    meanings = dict(rows)
    for entry in PROVIDERS.values():
        for variable in entry.env.variables:
            # A provider's variable is described by the argument it sets, in the class's docstring.
            assert meanings[variable].strip(" .").removesuffix("Never shown").strip(), variable


def blocks(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, name: str = "page.md") -> list[Example]:
    """The examples sybil finds in a page of Markdown ``text``, ready to evaluate."""
    page = tmp_path / name
    page.write_text(text, encoding="utf-8")
    document = Sybil([PythonBlocks()], path=str(tmp_path)).parse(page)
    document.namespace.update(tmp_path=tmp_path, monkeypatch=monkeypatch)
    return list(document.examples())


def test_a_complete_block_runs_as_a_module_that_does_not_serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good, serving, broken = blocks(
        tmp_path,
        FENCE.format('import os\nassert __name__ != "__main__"\nopen("here", "w").close()\n')
        + FENCE.format('from bastion import MCPServer\nMCPServer("Notes").run(transport="http")\n')
        + FENCE.format("print(undefined_name)\n"),
        monkeypatch,
    )
    good.evaluate()
    assert (tmp_path / "here").exists()  # it ran in the page's own temporary directory
    with pytest.raises(AssertionError, match="__main__"):
        serving.evaluate()
    with pytest.raises(NameError):
        broken.evaluate()


def test_a_fragment_names_a_tested_example_that_imports_what_it_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fragment = "<!-- fragment: {} -->\n" + FENCE
    good, missing, untested, unimported = blocks(
        tmp_path,
        fragment.format("examples/jwks_verification.py", "from bastion import JWTVerifier\nawait something()\n")
        + fragment.format("examples/nowhere.py", "x = 1\n")
        + fragment.format("docs/index.md", "x = 1\n")
        + fragment.format("examples/jwks_verification.py", "from bastion import MultiVerifier\n"),
        monkeypatch,
    )
    good.evaluate()
    with pytest.raises(AssertionError, match="does not exist"):
        missing.evaluate()
    with pytest.raises(AssertionError, match="under examples/"):
        untested.evaluate()
    with pytest.raises(AssertionError, match="MultiVerifier"):
        unimported.evaluate()


def test_only_another_librarys_code_is_quoted_without_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    peer, other = blocks(
        tmp_path,
        '```python title="FastMCP"\nfrom fastmcp import FastMCP\n```\n\n```python title="mine"\nx = 1\n```\n',
        monkeypatch,
    )
    peer.evaluate()
    with pytest.raises(AssertionError, match="names none of"):
        other.evaluate()


def test_a_program_is_compiled_and_run_by_the_test_that_reads_its_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    program = "<!-- program: {} -->\n" + FENCE
    serving = 'raise SystemExit("a walkthrough\'s program is not run here")\n'
    text = (
        program.format("tests/cli/test_cimd_dev_cli.py", serving)
        + program.format("examples/notes_server.py", serving)
        + program.format("tests/cli/test_cimd_dev_cli.py", "def broken(:\n")
    )
    good, not_a_test, broken = blocks(tmp_path, text, monkeypatch, name="cimd-development.md")
    good.evaluate()
    with pytest.raises(AssertionError, match="not a test file"):
        not_a_test.evaluate()
    with pytest.raises(SyntaxError):
        broken.evaluate()
    (unread,) = blocks(tmp_path, program.format("tests/cli/test_cimd_dev_cli.py", serving), monkeypatch)
    with pytest.raises(AssertionError, match=r"does not read page\.md"):
        unread.evaluate()
