"""RFC 6750 section 3 and RFC 9449 section 7.1 challenges: ``WWW-Authenticate`` and the error responses.

The one place that builds the header, with every parameter quoted and escaped
(RFC 9110 section 11.2 ``quoted-string``), so nothing a client sent can break it.

A resource that accepts DPoP answers with two challenges, one per scheme, each in a
header field of its own (RFC 9110 section 11.6.1): the one of the scheme the client used,
with the error, first, so a client that reads only the first one reads the right error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Literal

from starlette.responses import Response

__all__ = ["Scheme", "bearer_challenge", "challenge", "challenge_response", "challenges"]

Scheme = Literal["Bearer", "DPoP"]


def _quote(value: str) -> str:
    # quoted-string allows VCHAR, SP, HTAB and obs-text; anything else is dropped.
    cleaned = "".join(ch for ch in value if ch == "\t" or " " <= ch <= "~")
    return '"' + cleaned.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(
    scheme: Scheme,
    *,
    resource_metadata: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] | None = None,
    algs: Sequence[str] = (),
) -> str:
    """The value of one ``WWW-Authenticate`` challenge of ``scheme``.

    ``algs`` (DPoP only) are the proof algorithms the resource accepts (RFC 9449 section 7.1).
    """
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
    if algs and scheme == "DPoP":
        params.append(f"algs={_quote(' '.join(algs))}")
    return scheme + " " + ", ".join(params) if params else scheme


def bearer_challenge(
    *,
    resource_metadata: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] | None = None,
) -> str:
    """The value of a ``WWW-Authenticate: Bearer ...`` header."""
    return challenge("Bearer", resource_metadata=resource_metadata, error=error, description=description, scopes=scopes)


def challenges(
    used: Scheme,
    schemes: Sequence[Scheme],
    *,
    resource_metadata: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] | None = None,
    algs: Sequence[str] = (),
) -> list[str]:
    """One challenge per accepted scheme; the error goes with ``used`` (or the first, when ``used`` is not
    accepted), which then comes first."""
    scope_list = list(scopes) if scopes is not None else None
    if used not in schemes:
        used = schemes[0]
    ordered = sorted(schemes, key=lambda scheme: scheme != used) if error else list(schemes)
    return [
        challenge(
            scheme,
            resource_metadata=resource_metadata,
            error=error if scheme == used else None,
            description=description,
            scopes=scope_list,
            algs=algs,
        )
        for scheme in ordered
    ]


def challenge_response(
    status_code: int,
    *,
    resource_metadata: str | None,
    error: str | None = None,
    description: str | None = None,
    scopes: Iterable[str] | None = None,
    used: Scheme = "Bearer",
    schemes: Sequence[Scheme] = ("Bearer",),
    algs: Sequence[str] = (),
) -> Response:
    """A JSON error response with its ``WWW-Authenticate`` challenges."""
    scope_list = list(scopes) if scopes is not None else None
    body: dict[str, str] = {"error": error or "unauthorized"}
    if description:
        body["error_description"] = description
    if scope_list:
        body["scope"] = " ".join(scope_list)
    response = Response(
        json.dumps(body), status_code=status_code, media_type="application/json", headers={"Cache-Control": "no-store"}
    )
    values = challenges(
        used,
        schemes,
        resource_metadata=resource_metadata,
        error=error,
        description=description,
        scopes=scope_list,
        algs=algs,
    )
    for value in values:
        response.headers.append("WWW-Authenticate", value)
    return response
