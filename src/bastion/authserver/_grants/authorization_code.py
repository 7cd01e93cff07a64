"""The ``authorization_code`` grant (RFC 6749 section 4.1.3, OAuth 2.1 section 4.1.3, RFC 7636).

An ordered list of checks: the parameters are well formed (before the code is
spent), the code is redeemed once for this client, the ``redirect_uri`` is the
one of the authorization request, the PKCE verifier matches the S256 challenge,
the ``resource`` is the one the code was issued for (RFC 8707 section 2.2).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import TYPE_CHECKING

from bastion.authserver._codes import CodeGrant
from bastion.authserver._errors import InvalidGrant, InvalidRequest, InvalidTarget
from bastion.authserver._forms import Params
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._models import Client, TokenSet

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["grant_authorization_code", "s256"]

#: RFC 7636 section 4.1: 43 to 128 characters of the unreserved set.
VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_redirect_uri(grant: CodeGrant, params: Params) -> None:
    """The ``redirect_uri`` is required, and identical, when the authorization request had one."""
    sent = params.get("redirect_uri")
    if sent is None:
        if grant.redirect_uri_sent:
            raise InvalidGrant("the redirect_uri of the authorization request is required")
        return
    if not hmac.compare_digest(sent.encode(), grant.redirect_uri.encode()):
        raise InvalidGrant("the redirect_uri differs from the authorization request's")


def check_pkce(grant: CodeGrant, verifier: str) -> None:
    """S256 only: the challenge is the hash of the verifier, compared in constant time."""
    if not hmac.compare_digest(s256(verifier).encode(), grant.code_challenge.encode()):
        raise InvalidGrant("the code_verifier does not match the code_challenge")


def check_resource(server: AuthorizationServer, grant: CodeGrant, params: Params) -> str:
    """The audience: the code's resource; a ``resource`` parameter must name that same one."""
    requested = params.get("resource")
    if requested is not None and server.resolve_resource(requested) != grant.resource:
        raise InvalidTarget("the resource differs from the one that was authorized")
    return grant.resource


async def grant_authorization_code(
    server: AuthorizationServer, client: Client, params: Params, jkt: str | None = None
) -> TokenSet:
    """Redeem an authorization code for an access token (and a refresh token when the client may refresh).

    With ``jkt``, the thumbprint of the request's DPoP proof key, the access token is bound
    to it, and so is a public client's refresh token (RFC 9449 section 5).

    Raises:
        InvalidRequest: ``code`` or ``code_verifier`` missing or malformed.
        InvalidGrant: the code is invalid, used, another client's or another DPoP key's; the
            redirect URI or verifier is wrong.
        InvalidDPoPProofError: the code is bound to a DPoP key (``dpop_jkt``) and no proof came.
        InvalidTarget: the resource is not the authorized one.
    """
    code = params.require("code")
    verifier = params.get("code_verifier")
    if verifier is None:
        raise InvalidRequest("the code_verifier parameter is missing (PKCE is required)")
    if not VERIFIER.fullmatch(verifier):
        raise InvalidRequest("the code_verifier must be 43 to 128 characters of [A-Za-z0-9-._~]")
    grant = await server.codes.redeem(code, client.client_id, jkt)
    check_redirect_uri(grant, params)
    check_pkce(grant, verifier)
    audience = check_resource(server, grant, params)

    now = server.clock()
    access_token, expires_in = await server.access_tokens.mint(
        client_id=client.client_id,
        subject=grant.user.subject,
        scopes=grant.scopes,
        resource=audience,
        grant_id=grant.grant_id,
        user=grant.user,
        jkt=jkt,
    )
    refresh_token = None
    if "refresh_token" in client.grant_types:
        refresh = RefreshTokens(server)
        refresh_token = await refresh.issue(
            client_id=client.client_id,
            user=grant.user,
            scopes=grant.scopes,
            resources=(grant.resource,),
            grant_id=grant.grant_id,
            jkt=jkt if client.is_public else None,
        )
        # A replay of the code in another request may have revoked the grant meanwhile.
        if await server.is_revoked(grant.grant_id):
            await refresh.discard(refresh_token)
            raise InvalidGrant("the authorization code was already used")
    elif await server.is_revoked(grant.grant_id):
        raise InvalidGrant("the authorization code was already used")
    await server.audit.emit(
        "code.redeemed",
        "success",
        subject=grant.user.subject,
        client_id=client.client_id,
        grant_id=grant.grant_id,
        scopes=grant.scopes,
        resource=audience,
    )
    return TokenSet(
        access_token,
        expires_in,
        grant.scopes,
        refresh_token,
        now,
        subject=grant.user.subject,
        grant_id=grant.grant_id,
        resource=audience,
        jkt=jkt,
    )
