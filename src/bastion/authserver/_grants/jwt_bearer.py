"""The JWT bearer grant for identity assertions (ID-JAG): enterprise-managed authorization.

``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with an Identity
Assertion JWT Authorization Grant (draft-ietf-oauth-identity-assertion-authz-grant
section "Access Token Request"; MCP extension
``io.modelcontextprotocol/enterprise-managed-authorization``). The enterprise
identity provider vouches for the user; the checks, after RFC 7521 section 5.2
and RFC 7523 section 3:

- ``typ`` is ``oauth-id-jag+jwt`` (RFC 8725 section 3.11) and the signature is
  the one of a trusted issuer (``identity_assertion_issuers``: issuer -> JWKS URL);
- ``aud`` is this server's issuer; ``exp``, ``iat`` and ``jti`` are present and
  the ``jti`` is used once;
- the ``client_id`` claim names the authenticated client;
- ``sub`` becomes the token's subject, ``resource`` its audience, ``scope`` its
  scopes; a ``resource`` or ``scope`` claim this server does not serve is an
  ``invalid_grant`` (MCP profile section 7.6.2), and a ``scope`` parameter
  narrows the scopes to those both ask for (section 7.2.1).

No refresh token is issued: the client asks the identity provider again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion._core.errors import InvalidToken, KeysUnavailable
from bastion._jose.compact import decode_claims
from bastion._resource.jwt import ClaimNames, JWTVerifier
from bastion.authserver._errors import InvalidGrant, InvalidScope, InvalidTarget, TemporarilyUnavailable
from bastion.authserver._forms import Params
from bastion.authserver._models import Client, TokenSet, User, as_scopes, hash_secret

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["ID_JAG_TYP", "JWT_BEARER", "grant_jwt_bearer"]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ID_JAG_TYP = "oauth-id-jag+jwt"
#: Used assertion ids, per issuer, remembered until the assertion expires.
JTI_NAMESPACE = "id-jag-jti"
LEEWAY = 30.0
MAX_JTI = 256


def _issuer(assertion: str) -> str:
    """The ``iss`` the assertion claims, to pick the keys (the signature is checked next)."""
    segments = assertion.split(".")
    if len(segments) != 3:
        raise InvalidGrant("the assertion is not a signed JWT")
    try:
        claims = decode_claims(segments[1].encode("ascii"))
    except (InvalidToken, UnicodeEncodeError):
        raise InvalidGrant("the assertion's payload is not a JSON object") from None
    issuer = claims.get("iss")
    if not isinstance(issuer, str):
        raise InvalidGrant("the assertion has no issuer")
    return issuer


async def _verified_claims(server: AuthorizationServer, assertion: str) -> dict[str, Any]:
    issuer = _issuer(assertion)
    jwks_uri = server.identity_assertion_issuers.get(issuer)
    if jwks_uri is None:
        raise InvalidGrant("the assertion's issuer is not trusted")
    ours = server.require_issuer()
    verifier = JWTVerifier(
        jwks_uri=jwks_uri,
        issuer=issuer,
        audience=list(dict.fromkeys((ours, ours.rstrip("/")))),
        typ=ID_JAG_TYP,
        claims=ClaimNames(roles=None, client_id="client_id"),
        leeway=LEEWAY,
        clock=server.clock,
    )
    try:
        access = await verifier.check(assertion)
    except KeysUnavailable:
        raise TemporarilyUnavailable("the identity provider's keys cannot be fetched") from None
    except InvalidToken as exc:
        raise InvalidGrant(f"the assertion is not valid: {exc.description}", detail=str(exc)[:200]) from None
    return dict(access.claims or {})


def _scopes(
    server: AuthorizationServer, client: Client, claims: dict[str, Any], requested: str | None
) -> tuple[str, ...]:
    """The claim's scopes, which must be ours (else ``invalid_grant``), narrowed to the requested ones.

    MCP enterprise-managed authorization, section 7.2.1: the scopes issued are the
    intersection of the requested scopes and those of the assertion.
    """
    granted = claims.get("scope")
    if granted is not None and not isinstance(granted, str):
        raise InvalidGrant("the assertion's scope is not a string")
    try:
        scopes = server.resolve_scopes(granted, client)
    except InvalidScope as exc:
        raise InvalidGrant(
            f"the assertion's scope is not acceptable here: {exc.description}", detail=str(exc)
        ) from None
    if requested is None:
        return scopes
    narrowed = tuple(scope for scope in as_scopes(requested) if scope in scopes)
    if not narrowed:
        raise InvalidScope("none of the requested scopes is granted by the assertion")
    return narrowed


def _resource(server: AuthorizationServer, resource: str) -> str:
    try:
        return server.resolve_resource(resource)
    except InvalidTarget:
        # Enterprise-managed authorization, section 7.6.2: a foreign resource is an invalid grant.
        raise InvalidGrant("the assertion's resource is not served by this server") from None


def _audience(server: AuthorizationServer, claims: dict[str, Any], requested: str | None) -> str:
    """The ``resource`` claim (one of ours), or the requested one among them."""
    resource = claims.get("resource")
    if isinstance(resource, list) and resource and all(isinstance(r, str) for r in resource):
        allowed = [_resource(server, r) for r in resource]
    elif isinstance(resource, str):
        allowed = [_resource(server, resource)]
    elif resource is None:
        allowed = []
    else:
        raise InvalidGrant("the assertion's resource is not a URI or a list of URIs")
    if requested is not None:
        audience = server.resolve_resource(requested)
        if allowed and audience not in allowed:
            raise InvalidTarget("the resource was not granted by the assertion")
        return audience
    return allowed[0] if allowed else server.resolve_resource(None)


async def grant_jwt_bearer(
    server: AuthorizationServer, client: Client, params: Params, jkt: str | None = None
) -> TokenSet:
    """An access token for the user an ID-JAG assertion names.

    Raises:
        InvalidGrant: the assertion is invalid, replayed, for another client or server.
        InvalidScope, InvalidTarget: the request's ``scope`` or ``resource`` parameter is not covered.
    """
    assertion = params.require("assertion")
    claims = await _verified_claims(server, assertion)
    if claims.get("client_id") != client.client_id:
        raise InvalidGrant("the assertion was issued for another client")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidGrant("the assertion has no subject")
    if "iat" not in claims:
        raise InvalidGrant("the assertion has no iat")
    scopes = _scopes(server, client, claims, params.get("scope"))
    audience = _audience(server, claims, params.get("resource"))
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI:
        raise InvalidGrant("the assertion has no usable jti")
    now = server.clock()
    ttl = max(1.0, float(claims["exp"]) + LEEWAY - now)
    if not await server.store.add(JTI_NAMESPACE, hash_secret(f"{claims['iss']}\x00{jti}"), b"1", ttl):
        raise InvalidGrant("the assertion was already used")

    user = User(
        subject=subject,
        name=claims.get("name") if isinstance(claims.get("name"), str) else None,
        email=claims.get("email") if isinstance(claims.get("email"), str) else None,
    )
    grant_id = await server.new_grant(user, client.client_id)
    access_token, expires_in = await server.access_tokens.mint(
        client_id=client.client_id,
        subject=subject,
        scopes=scopes,
        resource=audience,
        grant_id=grant_id,
        user=user,
        jkt=jkt,
    )
    return TokenSet(
        access_token, expires_in, scopes, None, now, subject=subject, grant_id=grant_id, resource=audience, jkt=jkt
    )
