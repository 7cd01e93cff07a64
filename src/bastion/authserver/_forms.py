"""Reading OAuth request parameters strictly: one value each, bounded sizes, form bodies only.

RFC 6749 section 3.1 and 3.2: parameters sent without a value are treated as
omitted, and a request parameter must not be included more than once. Every
endpoint reads its parameters through :func:`query_params` or :func:`form_params`,
so a repeated, oversized or non-text parameter is always an ``invalid_request``
(with status 413 for a body larger than the endpoint reads).
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request

from bastion.authserver._errors import InvalidRequest, RequestTooLarge

__all__ = ["MAX_BODY", "MAX_PARAM", "Params", "form_params", "query_params", "read_body"]

#: The largest request body an OAuth endpoint reads (a registration is a few KB).
MAX_BODY = 64 * 1024
#: The largest single parameter value (a client assertion JWT is the biggest).
MAX_PARAM = 8 * 1024

_TOO_LARGE = "the request body is too large"

#: The parameter names an error may name: those of the specifications this server follows
#: (RFC 6749, 7009, 7521/7523, 7636, 7662, 8707, 8693, OpenID Connect) and of its own forms.
#: Any other name is the client's raw input, and is not echoed back to it.
_SPOKEN_NAMES = frozenset(
    {
        "assertion",
        "audience",
        "client_assertion",
        "client_assertion_type",
        "client_id",
        "client_secret",
        "code",
        "code_challenge",
        "code_challenge_method",
        "code_verifier",
        "error",
        "error_description",
        "error_uri",
        "grant_type",
        "id_token_hint",
        "iss",
        "login_hint",
        "max_age",
        "nonce",
        "prompt",
        "redirect_uri",
        "refresh_token",
        "request",
        "request_uri",
        "requested_token_type",
        "resource",
        "response_mode",
        "response_type",
        "scope",
        "state",
        "subject_token",
        "subject_token_type",
        "token",
        "token_type_hint",
        # the browser forms
        "csrf",
        "decision",
        "flow",
        "password",
        "remember",
        "username",
    }
)


def _parameter(name: str) -> str:
    """``the <name> parameter`` for a name of :data:`_SPOKEN_NAMES`, else ``a parameter``."""
    return f"the {name} parameter" if name in _SPOKEN_NAMES else "a parameter"


class Params:
    """Request parameters: each name at most once; empty values count as absent."""

    def __init__(self, pairs: Iterable[tuple[str, str]], *, max_value: int = MAX_PARAM) -> None:
        values: dict[str, str] = {}
        for name, value in pairs:
            if name in values:
                raise InvalidRequest(
                    f"{_parameter(name)} is repeated", detail=f"the parameter {name[:40]!r} is repeated"
                )
            if len(value) > max_value:
                raise InvalidRequest(
                    f"{_parameter(name)} is too long", detail=f"the parameter {name[:40]!r} is too long"
                )
            if "\x00" in value:
                raise InvalidRequest(
                    f"{_parameter(name)} holds a NUL character", detail=f"the parameter {name[:40]!r} holds a NUL"
                )
            values[name] = value
        self._values = {name: value for name, value in values.items() if value != ""}

    def get(self, name: str) -> str | None:
        """The value, or ``None`` when absent or empty."""
        return self._values.get(name)

    def require(self, name: str) -> str:
        """The value, or :class:`InvalidRequest` naming the missing parameter."""
        value = self._values.get(name)
        if value is None:
            raise InvalidRequest(f"the {name} parameter is missing")
        return value

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def to_dict(self) -> dict[str, str]:
        """The parameters as a plain dict."""
        return dict(self._values)


def _decode(raw: bytes | str) -> list[tuple[str, str]]:
    text = raw.decode("utf-8", errors="strict") if isinstance(raw, bytes) else raw
    return parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)


def query_params(request: Request) -> Params:
    """The query parameters of a request."""
    try:
        return Params(_decode(request.scope.get("query_string", b"")))
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest("the query string is not valid UTF-8 form data") from None


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The request body, at most ``limit`` bytes, else :class:`RequestTooLarge` (413)."""
    declared = request.headers.get("content-length")
    if declared is not None and not declared.isdigit():
        raise InvalidRequest("the Content-Length header is malformed")
    if declared is not None and int(declared) > limit:
        raise RequestTooLarge(_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(_TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


async def form_params(request: Request, *, allow_query: bool = False) -> Params:
    """The ``application/x-www-form-urlencoded`` body of a POST (RFC 6749 section 3.2).

    Parameters in the query string are refused unless ``allow_query``: secrets
    must not travel in URLs.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    if not allow_query and request.scope.get("query_string"):
        raise InvalidRequest("parameters must be sent in the body, not the query string")
    body = await read_body(request)
    try:
        return Params(_decode(body))
    except InvalidRequest:
        raise
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not valid UTF-8 form data") from None
