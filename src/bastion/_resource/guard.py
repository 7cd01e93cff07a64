"""The resource server's decisions for one HTTP request (RFC 6750, RFC 9728).

:class:`ResourceGuard` authenticates a request, evaluates policies and builds the
401/403 answers, and the 503 while tokens cannot be checked. The ASGI middleware, the
guarded custom routes and the FastAPI dependencies all go through it, so every door
answers the same way. Each refusal (403) is the audit event ``call.refused``; nothing
is reported for a request that goes through.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from bastion._core.audit import Audit, enter_request, leave_request
from bastion._core.errors import (
    RETRY_AFTER,
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    InsufficientScope,
    InvalidToken,
    KeysUnavailable,
)
from bastion._core.log import ThrottledLog
from bastion._resource.challenge import Scheme, challenge_response, challenges
from bastion._resource.dpop import DPoPOptions, ResourceProofs, binding
from bastion._resource.jsonrpc import BodyTooLarge, request_body
from bastion._resource.metadata import WELL_KNOWN, ResourceMetadata, advertised_scopes, canonical_resource, metadata_url
from bastion._resource.policy import Decision, Policy, TargetKind
from bastion._resource.registry import PolicyRegistry
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import Verifier, authorization_credentials

__all__ = ["FORBIDDEN_CODE", "ResourceGuard", "report_refusal", "route_path", "step_up_scopes", "uses_dpop"]

logger = logging.getLogger("bastion")

#: JSON-RPC error code of a call refused by a policy that no scope would satisfy.
FORBIDDEN_CODE = -32003


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted (``root_path`` removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def uses_dpop(scope: Scope) -> bool:
    """Whether a request's ``Authorization`` header uses the DPoP scheme (case-insensitive)."""
    return any(name == b"authorization" and value[:5].lower() == b"dpop " for name, value in scope["headers"])


def step_up_scopes(needed: Iterable[str], granted: Iterable[str], known: Iterable[str]) -> list[str]:
    """The scopes of a 403 ``insufficient_scope`` challenge, sorted.

    MCP 2025-11-25 "Scope Challenge Handling", the recommended approach: the token's
    scopes that the server knows, plus every scope the operation needs, so that a client
    which replaces its scopes with the challenge's (rather than adding them) keeps what
    it could already do.
    """
    known_set = frozenset(known)
    return sorted({*needed, *(scope for scope in granted if scope in known_set)})


async def report_refusal(
    audit: Audit, decision: Decision, kind: TargetKind, name: str, token: AccessToken | None
) -> None:
    """The audit event of a denied access: ``call.refused`` with what was refused, why, and the scopes it needs."""
    grant_id = token.claim("gid") if token is not None else None
    step_up = decision.scopes is not None
    await audit.emit(
        "call.refused",
        "refused",
        subject=token.subject if token is not None else None,
        client_id=token.client_id if token is not None else None,
        grant_id=grant_id if isinstance(grant_id, str) else None,
        kind=kind,
        tool=name,
        reason="insufficient scope" if step_up else "forbidden",
        scopes=sorted(decision.scopes or ()) if step_up else None,
    )


class ResourceGuard:
    """Authentication and authorization of HTTP requests for one protected resource.

    Args:
        verifier: Checks the request's credentials.
        resource_url: The canonical URL of the resource. When ``None`` it is derived
            from each request (development only; a warning is logged once).
        resource_path: The path of the resource on this server (``/mcp``), used when
            ``resource_url`` is derived.
        metadata: The static fields of the RFC 9728 document.
        registry: The policies; ``scopes_supported`` is computed from them unless
            the metadata gives it.
        initial_scopes: The scopes a first sign-in should ask for, named by the 401
            challenge besides what the default policy and the verifier require
            (default: when nothing is required, every scope the policies use).
        dpop: How DPoP-bound tokens are checked (RFC 9449); ``None`` accepts bearer tokens
            only (and refuses every bound token, which it cannot check).

    Its refusals go to :attr:`audit` (the ``bastion.audit`` logger; add sinks there, or
    assign the authorization server's ``audit``).
    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        resource_url: str | None = None,
        resource_path: str = "",
        metadata: ResourceMetadata | None = None,
        registry: PolicyRegistry | None = None,
        initial_scopes: Sequence[str] | None = None,
        dpop: DPoPOptions | None = None,
    ) -> None:
        self.verifier = verifier
        self.registry = registry or PolicyRegistry()
        self.resource_path = resource_path.rstrip("/")
        self.resource_url = canonical_resource(resource_url) if resource_url else None
        if self.resource_url is not None:
            verifier.expect_audience(self.resource_url)
        self.metadata = metadata or ResourceMetadata()
        self.initial_scopes = None if initial_scopes is None else _initial_scopes(initial_scopes)
        #: The checks of DPoP proofs, or ``None`` when DPoP is off.
        self.dpop = ResourceProofs(dpop) if dpop is not None else None
        self._dpop_only = dpop is not None and dpop.required
        #: The schemes the 401 challenges offer, in this order.
        self.schemes: tuple[Scheme, ...] = ("Bearer",)
        if dpop is not None:
            self.schemes = ("DPoP",) if dpop.required else ("Bearer", "DPoP")
        self._outages = ThrottledLog(logger)
        #: Where refusals are reported (``call.refused``).
        self.audit = Audit()

    # -- where things are -------------------------------------------------

    def resource_for(self, conn: HTTPConnection) -> str:
        """The canonical resource URL: configured, or derived from the first request.

        A derived URL is pinned (and handed to the verifier as its expected audience when
        it has none), so a later request cannot change it with another ``Host`` header.
        """
        if self.resource_url is not None:
            return self.resource_url
        root = conn.scope.get("root_path", "")
        try:
            derived = canonical_resource(f"{conn.url.scheme}://{conn.url.netloc}{root}{self.resource_path}")
        except ValueError:
            # An unusable Host header: answer this request, derive from a later one.
            return f"{conn.url.scheme}://localhost{self.resource_path}"
        logger.warning(
            "resource_url is not set: using %s, derived from the first request. "
            "Set resource_url (or BASTION_RESOURCE_URL) in production.",
            derived,
        )
        self.resource_url = derived
        self.verifier.expect_audience(derived)
        return derived

    def endpoint_url(self, conn: HTTPConnection) -> str:
        """The public URL of the endpoint a request went to, without query: what a DPoP proof's ``htu`` names.

        Built from the resource URL, never from the request's ``Host`` header: the resource's
        origin, the part of its path where this app is mounted, and the request's path in the app.
        """
        parts = urlsplit(self.resource_for(conn))
        mount = parts.path
        mounted = self.resource_path
        mount = mount[: len(mount) - len(mounted)] if mounted and mount.endswith(mounted) else ""
        return f"{parts.scheme}://{parts.netloc}{mount}{route_path(conn.scope)}"

    def metadata_url_for(self, conn: HTTPConnection) -> str:
        """The ``resource_metadata`` URL for challenges."""
        return metadata_url(self.resource_for(conn))

    def metadata_paths(self) -> tuple[str, ...]:
        """The paths (relative to the app) where the metadata document is served."""
        path = self.resource_path
        if self.resource_url is not None:
            path = urlsplit(self.resource_url).path
        return (WELL_KNOWN + path, WELL_KNOWN) if path else (WELL_KNOWN,)

    def scopes_supported(self) -> Sequence[str]:
        """The scopes advertised in the metadata document."""
        return self.metadata.scopes_supported or tuple(self.verifier.scopes_supported) or self.registry.scopes()

    def challenge_scopes(self) -> list[str]:
        """The ``scope`` of a 401 challenge: what a client should request first.

        Clients use it before ``scopes_supported`` (MCP "Scope Selection Strategy"), so it
        decides whether a first sign-in is least-privilege: what the default policy and the
        verifier require, plus ``initial_scopes``; with neither, every scope the policies
        use. Never ``offline_access``: clients add it when the authorization server offers it.
        """
        wanted = {*self.registry.default.scopes(), *self.verifier.required_scopes}
        if self.initial_scopes is not None:
            wanted.update(self.initial_scopes)
        elif not wanted:
            wanted.update(self.registry.scopes())
        wanted.discard("offline_access")
        return sorted(wanted)

    def known_scopes(self) -> frozenset[str]:
        """The scopes this server knows: those it advertises, and those of its scope hierarchy."""
        return frozenset(advertised_scopes(self.scopes_supported())) | self.registry.hierarchy.scopes()

    def step_up_scopes(self, needed: Iterable[str], granted: Iterable[str]) -> list[str]:
        """The ``scope`` of a 403 challenge: the known ones of ``granted``, and ``needed``."""
        return step_up_scopes(needed, granted, self.known_scopes())

    def metadata_document(self, conn: HTTPConnection) -> dict[str, Any]:
        """The RFC 9728 document for this resource."""
        resource = self.resource_for(conn)
        doc_meta = self.metadata
        if not doc_meta.scopes_supported:
            doc_meta = replace(doc_meta, scopes_supported=self.scopes_supported())
        if not doc_meta.authorization_servers and self.verifier.issuers:
            # Read at each request: an authorization server's issuer may be known only once it serves.
            doc_meta = replace(doc_meta, authorization_servers=list(self.verifier.issuers))
        document = doc_meta.document(resource)
        if self.dpop is not None:
            # RFC 9728 section 2.
            document["dpop_signing_alg_values_supported"] = list(self.dpop.algorithms)
            document["dpop_bound_access_tokens_required"] = self._dpop_only
        return document

    def metadata_response(self, conn: HTTPConnection) -> Response:
        """The metadata document as an HTTP response, readable cross-origin."""
        return JSONResponse(
            self.metadata_document(conn),
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=3600"},
        )

    # -- decisions --------------------------------------------------------

    def seen(self, scope: Scope) -> AccessToken | None:
        """The request's bearer token when it was verified before, from the raw headers; else ``None``.

        The hot path, before any request object is built: :meth:`authenticate` decides every
        other case (no token, a new one, DPoP, a token in the query string, a resource URL
        still to derive).
        """
        if self.resource_url is None or self._dpop_only:
            return None
        query = scope.get("query_string")
        if query and b"access_token=" in query:
            return None
        cached = self.verifier.peek(scope)
        if cached is None:
            return None
        claims = cached.claims
        return None if claims and "cnf" in claims else cached

    async def authenticate(self, conn: HTTPConnection, body: bytes | None = None) -> AccessToken | Response:
        """The request's access token, or the 400/401/403/503 response to send instead.

        ``body`` is the raw request body, which the proof of a DPoP request must digest; when
        ``None``, such a request's body is read from the :class:`~starlette.requests.Request`
        (which keeps it for the endpoint).
        """
        query = conn.scope.get("query_string", b"")
        if query and (query.startswith(b"access_token=") or b"&access_token=" in query):
            # RFC 6750 section 2.3 is not supported: URIs end up in logs (RFC 9700 section 4.3.2).
            return self.challenge(conn, 400, "invalid_request", "Send the access token in the Authorization header")
        if self.resource_url is None:
            # Pin the derived resource (and the verifier's audience) before any token is checked:
            # otherwise the very first token would be verified with no audience at all.
            self.resource_for(conn)
        cached = self.seen(conn.scope)
        if cached is not None:
            return cached
        if body is None and self.dpop is not None and isinstance(conn, Request) and uses_dpop(conn.scope):
            # A route or a FastAPI dependency: its proof digests the body, read here within the
            # MCP endpoint's limit before anything is verified.
            try:
                body = await request_body(conn)
            except BodyTooLarge:
                body_error = {"error": "invalid_request", "error_description": BodyTooLarge.description}
                return JSONResponse(body_error, status_code=413, headers={"Cache-Control": "no-store"})
        try:
            token = await self._credentials(conn, body)
        except AuthenticationError as exc:
            logger.info("authentication failed: %s", exc.__class__.__name__)
            return self.challenge(conn, 401, exc.error, exc.description)
        except AuthorizationError as exc:
            # A valid token the verifier itself finds short (e.g. its required_scopes): 403.
            logger.info("authorization failed in the verifier: %s", exc.__class__.__name__)
            return await self.refused_error(conn, exc, None)
        except KeysUnavailable as exc:
            return self.unavailable(exc)
        except Exception:
            logger.exception("verifier failed unexpectedly")
            return self.challenge(conn, 401, "invalid_token", "The access token could not be verified")
        if token is None:
            return self.challenge(conn, 401, None, None)
        return token

    async def _credentials(self, conn: HTTPConnection, body: bytes | None) -> AccessToken | None:
        """The verified token of a DPoP or bearer request, or ``None`` without credentials."""
        proofs = self.dpop
        if proofs is not None:
            raw = authorization_credentials(conn, "DPoP", "access token")
            if raw is not None:
                bound = await self.verifier.verify(raw)
                await proofs.check(conn, bound, raw, self.endpoint_url(conn), b"" if body is None else body)
                return bound
        token = await self.verifier.authenticate(conn)
        if token is None:
            return None
        if binding(token) is not None:
            # RFC 9449 section 7.1: a bound token is never accepted as a bearer token.
            raise InvalidToken(
                "a DPoP-bound token sent as a bearer token",
                description="This access token is DPoP-bound: send it with the DPoP scheme and a proof",
            )
        if self._dpop_only:
            raise InvalidToken("a bearer token where DPoP is required", description="This resource requires DPoP")
        return token

    def used_scheme(self, conn: HTTPConnection) -> Scheme:
        """The scheme of the request's credentials: ``DPoP`` when it used it and DPoP is on, else ``Bearer``."""
        return "DPoP" if self.dpop is not None and uses_dpop(conn.scope) else "Bearer"

    def challenge(self, conn: HTTPConnection, status: int, error: str | None, description: str | None) -> Response:
        """A 400/401 response with the resource's ``WWW-Authenticate`` challenges, one per scheme."""
        return challenge_response(
            status,
            resource_metadata=self.metadata_url_for(conn),
            error=error,
            description=description,
            scopes=self.challenge_scopes() or None,
            used=self.used_scheme(conn),
            schemes=self.schemes,
            algs=self.dpop.algorithms if self.dpop is not None else (),
        )

    async def decide(
        self, kind: TargetKind, name: str, token: AccessToken | None, conn: HTTPConnection | None = None
    ) -> Decision:
        """Evaluate the registered policy of one target."""
        return await self.registry.decide(kind, name, token, conn)

    async def decide_policy(
        self,
        policy: Policy,
        kind: TargetKind,
        name: str,
        token: AccessToken | None,
        conn: HTTPConnection | None,
    ) -> Decision:
        """Evaluate a given policy with the server's scope hierarchy."""
        return await self.registry.evaluate(policy, kind, name, token, conn)

    async def refused(
        self,
        conn: HTTPConnection,
        decision: Decision,
        kind: TargetKind,
        name: str,
        token: AccessToken | None,
        *,
        rpc_id: Any = None,
        jsonrpc: bool = False,
    ) -> Response:
        """Report a denied access to ``name`` (``call.refused``) and answer it with :meth:`refusal`."""
        await self.report(conn, decision, kind, name, token)
        granted = token.scopes if token is not None else ()
        return self.refusal(conn, decision, rpc_id, jsonrpc, granted=granted)

    async def refused_error(
        self,
        conn: HTTPConnection,
        exc: AuthenticationError | AuthorizationError,
        token: AccessToken | None,
        kind: TargetKind = "request",
    ) -> Response:
        """:meth:`error_response`, reporting a refusal (an :class:`AuthorizationError`) first."""
        if isinstance(exc, AuthorizationError):
            decision = Decision.deny(exc.scopes) if isinstance(exc, InsufficientScope) else Decision.deny()
            await self.report(conn, decision, kind, conn.url.path, token)
        return self.error_response(conn, exc, granted=token.scopes if token is not None else ())

    async def report(
        self, conn: HTTPConnection, decision: Decision, kind: TargetKind, name: str, token: AccessToken | None
    ) -> None:
        """The ``call.refused`` event of a denied access, naming the request's address and id."""
        # The middleware has entered the request already; a FastAPI dependency has not.
        entered = enter_request(conn.scope)
        try:
            await report_refusal(self.audit, decision, kind, name, token)
        finally:
            leave_request(entered)

    def refusal(
        self,
        conn: HTTPConnection,
        decision: Decision,
        rpc_id: Any = None,
        jsonrpc: bool = False,
        granted: Iterable[str] = (),
    ) -> Response:
        """The answer to a denied access: a 403 step-up when scope helps, else forbidden.

        A step-up names the scopes the operation needs and those of ``granted`` (the
        token's) that the server knows (:func:`step_up_scopes`). With ``jsonrpc`` the
        body is a JSON-RPC error for request ``rpc_id``, so a client that does not step
        up still shows a clear error.
        """
        step_up = decision.scopes is not None
        scopes = self.step_up_scopes(decision.scopes or (), granted) if step_up else []
        if jsonrpc:
            message = "Insufficient scope" if step_up else "Forbidden"
            body: dict[str, Any] = {
                "jsonrpc": "2.0",
                "id": rpc_id,
                "error": {"code": FORBIDDEN_CODE, "message": message},
            }
            if step_up:
                body["error"]["data"] = {"scope": " ".join(scopes)}
        elif step_up:
            body = {"error": "insufficient_scope", "error_description": InsufficientScope.description}
        else:
            body = {"error": "forbidden", "error_description": "Forbidden"}
        response = Response(
            json.dumps(body), status_code=403, media_type="application/json", headers={"Cache-Control": "no-store"}
        )
        if step_up:
            for value in challenges(
                self.used_scheme(conn),
                self.schemes,
                resource_metadata=self.metadata_url_for(conn),
                error="insufficient_scope",
                description=InsufficientScope.description,
                scopes=scopes,
                algs=self.dpop.algorithms if self.dpop is not None else (),
            ):
                response.headers.append("WWW-Authenticate", value)
        return response

    def error_response(
        self, conn: HTTPConnection, exc: AuthenticationError | AuthorizationError, granted: Iterable[str] = ()
    ) -> Response:
        """The HTTP answer to one of bastion's errors, raised by a verifier or in application code.

        ``granted`` are the scopes of the caller's token, when there is one.
        """
        if isinstance(exc, AuthenticationError):
            return self.challenge(conn, 401, exc.error, exc.description)
        if isinstance(exc, InsufficientScope):
            return self.refusal(conn, Decision.deny(exc.scopes), granted=(*exc.granted, *granted))
        return self.refusal(conn, Decision.deny())

    def unavailable(self, exc: KeysUnavailable) -> Response:
        """503 with ``Retry-After``: the token cannot be checked now, which is no reason to discard it.

        A 401 would tell the client its token is bad. The cause (which URL failed, how) is
        logged once a minute with a count, never per request and never with the token.
        """
        self._outages.warning(f"tokens cannot be verified now, answering 503: {exc}")
        body = {"error": exc.error, "error_description": exc.description}
        headers = {"Retry-After": str(RETRY_AFTER), "Cache-Control": "no-store"}
        return Response(json.dumps(body), status_code=503, media_type="application/json", headers=headers)


def _initial_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(scopes, str) or not all(isinstance(s, str) and s and not any(c.isspace() for c in s) for s in scopes):
        raise ConfigurationError("initial_scopes must be a list of scope names without spaces")
    if "offline_access" in scopes:
        # Clients ask for it themselves when the authorization server offers refresh tokens.
        raise ConfigurationError("initial_scopes must not name offline_access: clients add it themselves")
    return tuple(dict.fromkeys(scopes))
