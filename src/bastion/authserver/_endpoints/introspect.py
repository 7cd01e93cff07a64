"""The introspection endpoint (RFC 7662), for authenticated resource servers.

POST, form body; the caller must be a confidential client (RFC 7662 section
2.1: the endpoint must require authorization, or it becomes a token scanning
oracle, section 4). Only a client the operator allowed (``Client.introspection``,
section 4: callers "specifically authorized") learns about every client's
tokens; any other caller learns only about its own, another client's token is
``{"active": false}`` to it (section 2.2 lets the answer depend on the caller).
Anything that is not a live token of this server is ``{"active": false}`` and
nothing more. Access tokens are checked as the MCP server checks them
(signature, expiry, revoked grant), for any of the server's resources; refresh
tokens are introspectable too while they are active. A DPoP-bound access token's
answer has its ``cnf`` (``{"jkt": ...}``) and ``token_type: DPoP`` (RFC 9449 section 6.2);
the binding is the resource server's to check, with the proof it received.

Each answer is a ``token.introspected`` audit event: the caller, and for an active
token its subject and grant (outcome ``success``); ``failure`` for a token that is
not active, ``refused`` for another client's that the caller may not see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bastion._core.errors import AuthenticationError
from bastion.authserver._client_auth import authenticate_client
from bastion.authserver._errors import NO_STORE, InvalidClient, guarded
from bastion.authserver._forms import form_params
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._models import Client

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["introspect_token", "routes"]

INACTIVE: dict[str, Any] = {"active": False}

#: The claims of an access token that an introspection answer repeats (RFC 7662 section 2.2).
_ACCESS_MEMBERS = ("scope", "client_id", "sub", "aud", "iss", "exp", "iat", "nbf", "jti")


#: An active token's answer, and its grant id (for the audit event only).
_Found = tuple[dict[str, Any], str | None]


async def _access_token(server: AuthorizationServer, token: str) -> _Found | None:
    if token.count(".") != 2:
        return None
    try:
        access = await server.any_resource_verifier.verify(token)
    except AuthenticationError:
        return None
    claims = access.claims or {}
    answer: dict[str, Any] = {"active": True, "token_type": "Bearer"}
    answer.update({name: claims[name] for name in _ACCESS_MEMBERS if name in claims})
    confirmation = claims.get("cnf")
    if isinstance(confirmation, dict) and isinstance(confirmation.get("jkt"), str):
        answer["cnf"] = {"jkt": confirmation["jkt"]}
        answer["token_type"] = "DPoP"
    if isinstance(claims.get("name"), str):
        answer["username"] = claims["name"]
    grant_id = claims.get("gid")
    return answer, grant_id if isinstance(grant_id, str) else None


async def _refresh_token(server: AuthorizationServer, token: str) -> _Found | None:
    record = await RefreshTokens(server).lookup(token)
    if record is None or record["state"] != "active" or await server.is_revoked(record["grant_id"]):
        return None
    answer: dict[str, Any] = {
        "active": True,
        "token_type": "refresh_token",
        "client_id": record["client_id"],
        "sub": record["user"]["subject"],
        "iss": server.require_issuer(),
        "iat": int(record["issued_at"]),
        "exp": int(record["expires_at"]),
    }
    if record["scopes"]:
        answer["scope"] = " ".join(record["scopes"])
    if record["resources"]:
        answer["aud"] = record["resources"][0] if len(record["resources"]) == 1 else record["resources"]
    return answer, str(record["grant_id"])


async def introspect_token(server: AuthorizationServer, caller: Client, token: str, hint: str | None) -> dict[str, Any]:
    """The introspection answer for ``token`` to ``caller``; the hint only orders the lookups."""
    lookups = [_access_token, _refresh_token]
    if hint == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        found = await lookup(server, token)
        if found is not None:
            answer, grant_id = found
            if caller.introspection or answer.get("client_id") == caller.client_id:
                subject = answer.get("sub")
                await server.audit.emit(
                    "token.introspected",
                    "success",
                    subject=subject if isinstance(subject, str) else None,
                    client_id=caller.client_id,
                    grant_id=grant_id,
                    reason="active",
                )
                return answer
            await server.audit.emit(
                "token.introspected", "refused", client_id=caller.client_id, reason="another client's token"
            )
            return dict(INACTIVE)
    await server.audit.emit("token.introspected", "failure", client_id=caller.client_id, reason="not active")
    return dict(INACTIVE)


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """``POST /introspect``."""

    async def introspect(request: Request) -> Response:
        async def handle() -> Response:
            params = await form_params(request)
            client = await authenticate_client(server, request, params)
            if client.is_public:
                raise InvalidClient("introspection is for authenticated clients only")
            answer = await introspect_token(server, client, params.require("token"), params.get("token_type_hint"))
            return JSONResponse(answer, headers=NO_STORE)

        return await guarded(handle, server.outages)

    return [Route(server.path("/introspect"), introspect, methods=["POST"])]
