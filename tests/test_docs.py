"""The documentation cannot drift from the code: the configuration page lists every variable bastion reads."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

from bastion._config.auth import known_variables
from bastion._config.settings import _Settings
from bastion.providers._env import PROVIDERS

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
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
