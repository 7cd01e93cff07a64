"""A griffe extension: the Sphinx roles of bastion's docstrings as links of the API reference.

bastion's docstrings name other objects as ``:class:`~bastion.ConfigurationError``` (and
``:func:``, ``:meth:``, ``:mod:``...). mkdocstrings renders Markdown, where such a role would
show as text: this turns each into an optional cross-reference, a link to the object's
entry when the reference documents it and plain code otherwise (private modules).
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(?P<tilde>~?)(?P<target>[\w.]+)(?:\(\))?`")


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring once its object is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring, resolving names relative to ``obj``."""
        if obj.docstring is not None and ":" in obj.docstring.value:
            obj.docstring.value = _ROLE.sub(lambda match: _reference(obj, match), obj.docstring.value)


def _reference(obj: griffe.Object, match: re.Match[str]) -> str:
    target = match["target"]
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else target
    identifier = target
    if not target.startswith("bastion"):
        first, _, rest = target.partition(".")
        try:
            identifier = obj.resolve(first) + (f".{rest}" if rest else "")
        except griffe.NameResolutionError:
            identifier = target
    return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(shown)}</code></autoref>'
