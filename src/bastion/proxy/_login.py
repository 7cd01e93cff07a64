"""The proxy's login step: consent first, then the upstream provider, then back with the user.

1. The authorization endpoint has checked the MCP client's request and stored
   it as a flow bound to the browser. :meth:`UpstreamLogin.start` shows the
   consent page *before* anything is sent upstream (the confused deputy problem:
   the provider's consent is for the proxy, not for this client).
2. Approved (CSRF token checked), the browser goes to the provider with a
   random ``state`` (stored hashed, ten minutes, single use, pointing at the
   flow), PKCE and an OIDC ``nonce``.
3. At the callback the state is taken (a replay finds nothing), the flow is
   loaded with the browser check (a state from another browser is refused), the
   provider's code is exchanged, the user's identity read, the provider's
   tokens sealed in the store, and the MCP client gets a code of the proxy's own.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion.authserver._browser import (
    Flow,
    FlowRefused,
    Session,
    check_csrf,
    load_flow,
    page,
    secure_headers,
    take_flow,
    unavailable,
)
from bastion.authserver._consent import error_redirect, issue_code
from bastion.authserver._errors import AccessDeniedError, InvalidRequest
from bastion.authserver._forms import form_params, query_params
from bastion.authserver._login import LoginStep
from bastion.authserver._models import User, hash_secret
from bastion.authserver._pages import ConsentView, consent_page, error_page
from bastion.authserver._redirects import is_loopback_redirect
from bastion.proxy._upstream import UpstreamError, pkce_pair
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer
    from bastion.proxy._proxy import OAuthProxy

__all__ = ["STATE_NAMESPACE", "UpstreamLogin"]

logger = logging.getLogger("bastion")

STATE_NAMESPACE = "upstream-state"
#: How long the browser may take at the provider.
STATE_TTL = 600.0
#: Identity claims that describe the provider's token, not the user: never copied into ours.
_TOKEN_CLAIMS = frozenset({"nonce", "at_hash", "c_hash", "azp", "sid", "auth_time", "acr", "amr", "typ", "iss", "aud"})


class UpstreamLogin(LoginStep):
    """Sign users in at the proxy's upstream identity provider."""

    uses_sessions: ClassVar[bool] = False

    def __init__(self, proxy: OAuthProxy) -> None:
        self.proxy = proxy

    async def start(self, server: AuthorizationServer, request: Request, flow: Flow) -> Response:
        """The consent page, shown before the browser is sent upstream."""
        client = await server.clients.get(flow.client_id)
        if client is None:
            raise FlowRefused("The application is no longer registered.", 400)
        view = ConsentView(
            action=server.path("/auth/continue"),
            flow_id=flow.id,
            csrf=flow.csrf,
            client_name=client.display_name,
            client_url=client.client_id if client.client_id.startswith("https://") else None,
            redirect_host=urlsplit(flow.redirect_uri).hostname or flow.redirect_uri,
            user_name="",
            scopes=[(scope, server.scope_description(scope)) for scope in flow.scopes],
            resource=flow.resource,
            localhost_only=bool(client.redirect_uris) and all(is_loopback_redirect(u) for u in client.redirect_uris),
            provider=self.proxy.upstream.name,
        )
        html = consent_page(view)
        return page(html)

    def routes(self, server: AuthorizationServer) -> list[BaseRoute]:
        """The consent form's POST and the provider's callback."""

        async def go_on(request: Request) -> Response:
            return await self._guard(server, request, self.approve)

        async def callback(request: Request) -> Response:
            return await self._guard(server, request, self.callback)

        return [
            Route(server.path("/auth/continue"), go_on, methods=["POST"]),
            Route(self.proxy.callback_path, callback, methods=["GET"]),
        ]

    async def _guard(self, server: AuthorizationServer, request: Request, handler: Any) -> Response:
        try:
            response: Response = await handler(server, request)
            return response
        except FlowRefused as exc:
            return exc.response()
        except InvalidRequest as exc:
            return page(error_page("This request cannot be read", exc.description), 400)
        except StoreError:
            logger.exception("the store failed during an upstream sign-in")
            return unavailable()

    async def approve(self, server: AuthorizationServer, request: Request) -> Response:
        """The consent form: deny goes back to the client; approve goes to the provider."""
        params = await form_params(request)
        flow = await load_flow(server, request, params.get("flow"))
        check_csrf(flow, params.get("csrf"))
        if params.get("decision") != "approve":
            await take_flow(server, flow)
            denied = AccessDeniedError("the user denied the request")
            return error_redirect(server, flow.redirect_uri, flow.state, denied, posted=True)
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        nonce = secrets.token_urlsafe(16)
        record = {"flow": flow.id, "verifier": verifier, "nonce": nonce}
        await server.store.put(STATE_NAMESPACE, hash_secret(state), json.dumps(record).encode(), STATE_TTL)
        up = self.proxy.upstream
        query: dict[str, str] = {
            "response_type": "code",
            "client_id": up.client_id,
            "redirect_uri": self.proxy.callback_url,
            "state": state,
        }
        if up.scopes:
            query["scope"] = " ".join(up.scopes)
        if up.pkce:
            query.update({"code_challenge": challenge, "code_challenge_method": "S256"})
        if up.identity == "id_token":
            query["nonce"] = nonce
        query.update(up.authorize_params)
        separator = "&" if "?" in up.authorization_endpoint else "?"
        location = up.authorization_endpoint + separator + urlencode(query)
        return secure_headers(Response(status_code=303, headers={"Location": location}))

    async def callback(self, server: AuthorizationServer, request: Request) -> Response:
        """The provider sends the browser back: check the state, get the user, answer the client."""
        params = query_params(request)
        state = params.get("state")
        if state is None:
            raise FlowRefused("The identity provider's answer has no state.", 400)
        raw = await server.store.take(STATE_NAMESPACE, hash_secret(state))
        if raw is None:
            raise FlowRefused("This sign-in link was already used or has expired. Start again from the app.", 400)
        record = json.loads(raw)
        flow = await load_flow(server, request, record["flow"])
        flow = await take_flow(server, flow)
        error = params.get("error")
        if error is not None:
            denied = AccessDeniedError(f"{self.proxy.upstream.name} did not sign the user in ({error[:40]})")
            return error_redirect(server, flow.redirect_uri, flow.state, denied, posted=False)
        code = params.get("code")
        if code is None:
            raise FlowRefused("The identity provider's answer has no code.", 400)
        try:
            user = await self.proxy.sign_in(code, record["verifier"] if self.proxy.upstream.pkce else None, record)
        except UpstreamError as exc:
            logger.warning("upstream sign-in failed: %s", exc)
            return page(error_page("The sign-in did not complete", str(exc)), 502)
        session = Session(user=user, auth_time=int(server.clock()))
        return await issue_code(server, flow, session, posted=False)


def identity_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """The provider's user claims worth keeping in our tokens (bounded, token plumbing left out)."""
    kept: dict[str, Any] = {}
    for name, value in claims.items():
        if name in _TOKEN_CLAIMS or len(kept) >= 40:
            continue
        if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 512:
            kept[name] = value
    return kept


def proxy_user(subject: str, name: str | None, email: str | None, claims: dict[str, Any], ref: str) -> User:
    """The :class:`User` the proxy signs in: the provider's identity, and the reference of its sealed tokens."""
    return User(subject=subject, name=name, email=email, claims={**identity_claims(claims), "uref": ref})
