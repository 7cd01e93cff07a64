"""A verifier from any function of the request, like FastMCP-TypeScript's ``authenticate``."""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeAlias

from mcp.server.auth.provider import AccessToken as SDKAccessToken
from starlette.requests import HTTPConnection, Request

from bastion._core.errors import AuthenticationError, InvalidToken, KeysUnavailable, TokenExpired
from bastion._resource.apikeys import APIKey
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import TokenCache, Verifier

__all__ = ["AuthenticateFunction", "CallableVerifier", "Principal"]

logger = logging.getLogger("bastion")

#: What an ``authenticate`` function may return for an accepted request.
Principal: TypeAlias = AccessToken | SDKAccessToken | APIKey | Mapping[str, Any] | str
#: ``authenticate(request)``, sync or async: a principal, or ``None`` for no credentials.
AuthenticateFunction: TypeAlias = Callable[[Request], Principal | Awaitable[Principal | None] | None]

_ALIASES = {
    "sub": "subject",
    "scope": "scopes",
    "exp": "expires_at",
    "iss": "issuer",
}
_FIELDS = ("token", "client_id", "subject", "scopes", "roles", "expires_at", "resource", "issuer")


class CallableVerifier(Verifier):
    """Authenticates requests with a function of the request.

    The function gets the Starlette :class:`~starlette.requests.Request` (headers,
    client address, ...; not the body) and returns, sync or async:

    - ``None``: the request carries no credentials (a 401 without an error);
    - a principal: an :class:`~bastion.AccessToken`, an :class:`~bastion.APIKey`
      (or any object with ``subject``, ``scopes``, ... attributes), a ``dict``
      with ``subject``/``scopes``/``roles``/``client_id``/``claims``/``token``
      (other members become claims), or a ``str`` (the subject);
    - or it raises an :class:`~bastion.AuthenticationError` to refuse the request
      with that error. ``False`` refuses too. It raises :class:`~bastion.KeysUnavailable`
      when what it checks against cannot be reached now (a 503: try again later).

    Any other exception is a bug in the function: it is logged (its type and
    where it was raised, nothing from the request) and the request is refused
    with ``invalid_token``, never answered with a 5xx. Nothing is cached; the
    function runs for every request. A sync function runs on the event loop, so
    it must not block; make it ``async`` to do I/O.

    Example::

        def authenticate(request: Request) -> dict[str, Any] | None:
            key = request.headers.get("x-api-key")
            if key is None:
                return None
            if not hmac.compare_digest(key, EXPECTED):
                raise InvalidToken("bad key")
            return {"subject": "ci", "scopes": ["notes:read"], "token": key}

        mcp = MCPServer("Notes", auth=CallableVerifier(authenticate))
    """

    def __init__(self, authenticate: AuthenticateFunction) -> None:
        if not callable(authenticate):
            raise TypeError("CallableVerifier takes a function of the request")
        super().__init__(cache=TokenCache(max_size=0))
        self.function = authenticate
        self._name = getattr(authenticate, "__qualname__", None) or type(authenticate).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name})"

    async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
        """Run the function on the request; ``None`` when it finds no credentials.

        Raises:
            AuthenticationError: the function refused the request, or failed.
            KeysUnavailable: the function cannot check the request now.
        """
        request = conn if isinstance(conn, Request) else Request(conn.scope)
        try:
            result: object = self.function(request)
            if inspect.isawaitable(result):
                result = await result
            if result is None:
                return None
            if result is False:
                raise InvalidToken(f"{self._name} refused the request")
            access = as_access_token(result)
        except (AuthenticationError, KeysUnavailable):
            raise
        except Exception as exc:
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            logger.error(
                "authenticate function %s failed with %s%s; the request is refused",
                self._name,
                exc.__class__.__name__,
                f" at {where.filename}:{where.lineno}" if where else "",
            )
            raise InvalidToken(f"{self._name} failed with {exc.__class__.__name__}") from None
        if access.expired():
            raise TokenExpired(f"{self._name} returned an expired principal")
        return access

    async def check(self, token: str) -> AccessToken:
        """Run the function on a request that carries ``token`` as a bearer token.

        This serves the SDK's ``verify_token`` and :class:`~bastion.MultiVerifier`'s
        ``check``; servers protected by bastion call :meth:`authenticate` instead.

        Raises:
            AuthenticationError: the function refused the token or found none.
        """
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/",
            "raw_path": b"/",
            "root_path": "",
            "query_string": b"",
            "scheme": "http",
            "server": None,
            "client": None,
            "http_version": "1.1",
            "headers": [(b"authorization", b"Bearer " + token.encode("latin-1", "replace"))],
        }
        access = await self.authenticate(Request(scope))
        if access is None:
            raise InvalidToken(f"{self._name} found no credentials in a bearer token")
        return access


def as_access_token(principal: object) -> AccessToken:
    """An :class:`~bastion.AccessToken` from what an ``authenticate`` function returned.

    Raises:
        TypeError: the value is not a principal of a kind described in :class:`CallableVerifier`.
    """
    if isinstance(principal, AccessToken):
        return principal
    if isinstance(principal, SDKAccessToken):
        return AccessToken(**principal.model_dump())
    if isinstance(principal, bool):
        raise TypeError("authenticate returned a bool: return a principal or None")
    if isinstance(principal, str):
        if not principal:
            raise TypeError("authenticate returned an empty subject")
        return AccessToken(token="", client_id=principal, subject=principal, scopes=[], claims={"sub": principal})
    if isinstance(principal, Mapping):
        fields: dict[str, Any] = {}
        claims: dict[str, Any] = {}
        for name, value in principal.items():
            if name == "claims":
                if not isinstance(value, Mapping):
                    raise TypeError("claims must be a mapping")
                claims.update(value)
                continue
            field = _ALIASES.get(name, name)
            if field in _FIELDS and field not in fields:
                fields[field] = value
            else:
                claims[name] = value
        return _build(fields, claims)
    if hasattr(principal, "subject"):
        fields = {name: getattr(principal, name) for name in _FIELDS if getattr(principal, name, None) is not None}
        raw_claims = getattr(principal, "claims", None)
        return _build(fields, dict(raw_claims) if isinstance(raw_claims, Mapping) else {})
    raise TypeError(f"authenticate returned a {type(principal).__name__}, not a principal")


def _build(fields: dict[str, Any], claims: dict[str, Any]) -> AccessToken:
    subject = fields.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise TypeError("subject must be a string")
    for name in ("scopes", "roles"):
        value = fields.get(name)
        if isinstance(value, str):
            fields[name] = value.split()
        elif value is None:
            fields[name] = []
        elif not all(isinstance(v, str) for v in value):
            raise TypeError(f"{name} must be strings")
        else:
            fields[name] = list(value)
    fields.setdefault("token", "")
    if fields.get("client_id") is None:
        fields["client_id"] = subject or ""
    if fields.get("expires_at") is not None:
        fields["expires_at"] = int(fields["expires_at"])
    if subject is not None:
        claims.setdefault("sub", subject)
    # pydantic's ValidationError is a ValueError: a wrong type is reported like the others above.
    return AccessToken(**fields, claims=claims)
