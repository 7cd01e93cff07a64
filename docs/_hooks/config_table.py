"""MkDocs hook: the table of every ``BASTION_*`` variable, generated from the settings' own declarations.

configuration.md holds the marker ``<!-- bastion-variables -->``; the hook replaces it with
the general variables (their descriptions and what applies when unset are data on the
settings fields, ``bastion._config.settings._Settings``) and, for each registered provider,
the variables its class declares (``env``), described by its documented arguments.
tests/test_docs.py checks that every variable the code reads is on the page.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import griffe

MARKER = "<!-- bastion-variables -->"
_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the marker, wherever it is, with the tables."""
    return markdown.replace(MARKER, variables_markdown()) if MARKER in markdown else markdown


def variables_markdown() -> str:
    """The general variables, then each provider's, as Markdown tables."""
    from bastion._config.settings import _Settings, _var

    lines = ["| variable | meaning | when unset |", "|---|---|---|"]
    for name, field in _Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        lines.append(f"| `{_var(name)}` | {_cell(field.description or '')} | {_cell(str(extra.get('unset', '')))} |")
    each = (
        "## Each provider\n\n"
        "An OAuth proxy of `bastion.providers` reads `BASTION_BASE_URL`, `BASTION_STORE`, "
        "`BASTION_ENCRYPTION_KEYS` and `BASTION_MCP_SCOPES` above, and the variables its class declares (`env`):\n\n"
    )
    return "\n".join(lines) + "\n\n" + each + providers_markdown()


def providers_markdown() -> str:
    """One section per registered provider: its ``BASTION_AUTH`` value and its own variables."""
    import bastion.providers  # noqa: F401  (its modules register the built-in providers)
    from bastion.providers._env import PROVIDERS

    sections = []
    for name, entry in PROVIDERS.items():
        described = _arguments(entry.cls)
        defaults = inspect.signature(entry.cls.__init__).parameters
        also = f" (also {', '.join(f'`{alias}`' for alias in entry.env.aliases)})" if entry.env.aliases else ""
        lines = [
            f"### `BASTION_AUTH={name}`{also}",
            "",
            f"`{entry.cls.__module__.replace('._oidc', '')}.{entry.cls.__name__}` ([Providers](providers.md)).",
            "",
            "| variable | meaning | when unset |",
            "|---|---|---|",
        ]
        for setting in entry.env.settings:
            meaning = described.get(setting.argument, "")
            if setting.kind == "secret":
                meaning += " Never shown."
            elif setting.kind == "list":
                meaning += " Space- or comma-separated."
            lines.append(f"| `{entry.env.variable(setting)}` | {_cell(meaning)} | {_unset(setting, defaults)} |")
        sections.append("\n".join(lines))
    return "\n\n".join(sections) + "\n"


def _arguments(cls: type) -> dict[str, str]:
    """The descriptions of the arguments a class documents (its Google-style ``Args:``)."""
    sections = griffe.Docstring(inspect.getdoc(cls) or "").parse("google", warnings=False)
    return {p.name: p.description for s in sections if s.kind.value == "parameters" for p in s.value}


def _unset(setting: Any, parameters: Any) -> str:
    if setting.required:
        return "required"
    parameter = parameters.get(setting.argument)
    if parameter is None or parameter.default in (inspect.Parameter.empty, None):
        return ""
    default = parameter.default
    if isinstance(default, tuple | list):
        return " ".join(f"`{item}`" for item in default)
    return f"`{default}`"


def _cell(text: str) -> str:
    """Docstring text as one Markdown table cell: one line, roles as code, pipes escaped."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).rsplit('.', 1)[-1] if m.group(0).count('~') else m.group(1)}`", text)
    return " ".join(text.replace("``", "`").split()).replace("|", "\\|")
