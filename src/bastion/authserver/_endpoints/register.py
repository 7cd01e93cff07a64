"""The dynamic client registration endpoint (RFC 7591).

``POST /register`` with a JSON object of client metadata. The checks, in order:
registration is open, the caller's address is within the rate limit, the body
is JSON (``application/json``, at most :data:`MAX_REGISTRATION_BODY` bytes, one
object, no repeated member), every field is valid (the rules are in
:mod:`bastion.authserver._client_metadata`), the scopes are known. The answer is
``201`` with the client's metadata, its new ``client_id`` and, for a client that
authenticates with a secret, a ``client_secret`` of which only the hash is kept
(RFC 7591 section 3.2.1). Refusals are RFC 7591 section 3.2.2 bodies with status 400
(``invalid_redirect_uri``, ``invalid_client_metadata``, ``invalid_request``).

``token_endpoint_auth_method`` defaults to ``client_secret_basic`` (RFC 7591
section 2); ``application_type`` is kept as sent, ``web`` by default (OpenID
Connect Dynamic Client Registration section 2).

``scope`` is checked (an unknown scope is ``invalid_client_metadata``) but not
kept as a limit, so the answer leaves it out (RFC 7591 section 3.2.1 lets the
server replace a value). MCP clients register with the scope of their first
challenge and ask for more later (step-up, without registering again); and a
limit a client chose for itself protects nothing, since anyone may register
another client. What a client gets is decided by the scopes it asks for and
the user's consent. Pre-registered clients do keep their ``scope`` as a limit.

When registration is disabled the endpoint answers ``403 access_denied``: the
route stays in place, so a client that tries the default ``/register`` learns
why in a JSON error body instead of a bare 404; the metadata document does not
advertise a ``registration_endpoint`` then.

Too many registrations from one address within a minute get ``429 slow_down``
with ``Retry-After``; the counters live in the store, so every worker process
shares them.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion._core.audit import Outcome
from bastion._core.ids import new_identifier
from bastion.authserver._client_metadata import SECRET_METHODS, client_from_metadata, strict_json
from bastion.authserver._errors import (
    NO_STORE,
    AccessDeniedError,
    InvalidClientMetadata,
    InvalidRequest,
    InvalidScope,
    OAuthError,
    SlowDown,
    guarded,
)
from bastion.authserver._forms import read_body
from bastion.authserver._models import Client, hash_secret
from bastion.authserver._ratelimit import RateLimiter

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["MAX_REGISTRATION_BODY", "register_client", "routes"]

logger = logging.getLogger("bastion")

#: The largest registration request body.
MAX_REGISTRATION_BODY = 16 * 1024
#: The rate limit's window: registrations are counted per minute.
RATE_WINDOW = 60.0


async def _read_metadata(request: Request) -> dict[str, object]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise InvalidRequest("the registration request must be application/json")
    body = await read_body(request, MAX_REGISTRATION_BODY)
    try:
        data = strict_json(body)
    except ValueError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object of client metadata")
    return data


async def register_client(server: AuthorizationServer, metadata: dict[str, object]) -> tuple[Client, str | None]:
    """Register a client from its metadata; the stored client and its secret (``None`` for others).

    Raises:
        InvalidRedirectURI: a redirect URI is refused.
        InvalidClientMetadata: another field is refused, or a scope is unknown.
    """
    method = metadata.get("token_endpoint_auth_method") or "client_secret_basic"
    secret = secrets.token_urlsafe(32) if isinstance(method, str) and method in SECRET_METHODS else None
    issued_at = int(server.clock())
    client = client_from_metadata(
        metadata,
        client_id=new_identifier(24),
        kind="registered",
        client_secret_hash=None if secret is None else hash_secret(secret),
        client_id_issued_at=issued_at,
        client_secret_expires_at=None if secret is None else 0,
    )
    if client.scope is not None:
        try:
            server.resolve_scopes(client.scope)
        except InvalidScope as exc:
            raise InvalidClientMetadata(exc.description, detail=exc.detail) from None
        client = dataclasses.replace(client, scope=None)
    await server.clients.save(client)
    return client, secret


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """``POST /register``."""
    limiter: RateLimiter | None = None
    if server.registration.rate_limit > 0:
        limiter = RateLimiter(server.store, "register", server.registration.rate_limit, RATE_WINDOW, server.clock)

    async def handle(request: Request) -> Response:
        if not server.registration.dynamic:
            await refused("refused", "registration is disabled")
            raise AccessDeniedError("dynamic client registration is not enabled on this server")
        address = request.client.host if request.client is not None else "unknown"
        if limiter is not None and not await limiter.hit(address):
            await refused("refused", "too many registrations from this address")
            raise SlowDown(
                "too many registrations from this address, try again later",
                headers={"Retry-After": str(limiter.retry_after())},
            )
        try:
            client, secret = await register_client(server, await _read_metadata(request))
        except OAuthError as exc:
            await refused("failure", exc.error)  # invalid_redirect_uri, invalid_client_metadata, ...
            raise
        await server.audit.emit("client.registered", "success", client_id=client.client_id, method="dcr")
        body = client.public_metadata()
        if secret is not None:
            body["client_secret"] = secret
        return JSONResponse(body, status_code=201, headers=NO_STORE)

    async def refused(outcome: Outcome, reason: str) -> None:
        await server.audit.emit("client.refused", outcome, method="dcr", reason=reason)

    async def register(request: Request) -> Response:
        return await guarded(lambda: handle(request), server.outages)

    return [Route(server.path("/register"), register, methods=["POST"])]
