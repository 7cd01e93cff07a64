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
from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from bastion._core.audit import Audit, enter_request, leave_request
from bastion._core.errors import (
    RETRY_AFTER,
    AuthenticationError,
    AuthorizationError,
    InsufficientScope,
    InvalidToken,
    KeysUnavailable,
)
from bastion._resource.challenge import Scheme, challenge_response, challenges
from bastion._resource.dpop import binding
from bastion._resource.jsonrpc import BodyTooLarge, request_body
from bastion._resource.policy import Decision, Policy, TargetKind
from bastion._resource.resource import ProtectedResource, route_path, step_up_scopes
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import authorization_credentials

__all__ = ["FORBIDDEN_CODE", "ResourceGuard", "report_refusal", "route_path", "step_up_scopes", "uses_dpop"]

logger = logging.getLogger("bastion")

#: JSON-RPC error code of a call refused by a policy that no scope would satisfy.
FORBIDDEN_CODE = -32003


def uses_dpop(scope: Scope) -> bool:
    """Whether a request's ``Authorization`` header uses the DPoP scheme (case-insensitive)."""
    return any(name == b"authorization" and value[:5].lower() == b"dpop " for name, value in scope["headers"])


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


class ResourceGuard(ProtectedResource):
    """Authentication and authorization of HTTP requests for one protected resource.

    It takes the arguments of :class:`~bastion._resource.resource.ProtectedResource`. Its
    refusals go to :attr:`audit` (the ``bastion.audit`` logger; add sinks there, or assign
    the authorization server's ``audit``).
    """

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
