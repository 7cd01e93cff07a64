"""RFC 6750 section 3 challenges: the ``WWW-Authenticate`` header and the error responses.

The one place that builds the header, with every parameter quoted and escaped
(RFC 9110 section 11.2 ``quoted-string``), so nothing a client sent can break it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from starlette.responses import Response

__all__ = ["bearer_challenge", "challenge_response"]


def _quote(value: str) -> str:
    # quoted-string allows VCHAR, SP, HTAB and obs-text; anything else is dropped.
    cleaned = "".join(ch for ch in value if ch == "\t" or " " <= ch <= "~")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bearer_challenge(
    *,
    resource_metadata: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] | None = None,
) -> str:
    """The value of a ``WWW-Authenticate: Bearer ...`` header."""
    params: list[str] = []
    if error:
        params.append(f"error={_quote(error)}")
    if description and error:
        params.append(f"error_description={_quote(description)}")
    if scopes is not None:
        scope_list = list(scopes)
        if scope_list:
            params.append(f"scope={_quote(' '.join(scope_list))}")
    if resource_metadata:
        params.append(f"resource_metadata={_quote(resource_metadata)}")
    return "Bearer " + ", ".join(params) if params else "Bearer"


def challenge_response(
    status_code: int,
    *,
    resource_metadata: str | None,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] | None = None,
) -> Response:
    """A JSON error response with its ``WWW-Authenticate`` challenge."""
    scope_list = list(scopes) if scopes is not None else None
    body: dict[str, str] = {"error": error or "unauthorized"}
    if description:
        body["error_description"] = description
    if scope_list:
        body["scope"] = " ".join(scope_list)
    header = bearer_challenge(
        resource_metadata=resource_metadata, error=error, description=description, scopes=scope_list
    )
    return Response(
        json.dumps(body),
        status_code=status_code,
        media_type="application/json",
        headers={"WWW-Authenticate": header, "Cache-Control": "no-store"},
    )
