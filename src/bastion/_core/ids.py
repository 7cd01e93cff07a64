"""Random identifiers an operator may type: URL-safe, and never taken for a command-line option."""

from __future__ import annotations

import secrets

__all__ = ["new_identifier"]


def new_identifier(nbytes: int) -> str:
    """``secrets.token_urlsafe(nbytes)`` that does not begin with ``-``.

    Grant ids, client ids and key ids are given to ``bastion grants revoke ID`` and the like;
    one beginning with ``-`` (1 in 64 of them) would be read as an option by the command's parser.
    """
    while True:
        value = secrets.token_urlsafe(nbytes)
        if value[0] != "-":
            return value
