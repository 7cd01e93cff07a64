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
   Any failure of the provider (down, slow, refusing, garbage, an id_token that
   does not verify) is a 502 page; a sign-in the user denied at the provider
   goes back to the client as ``access_denied``. Either way the state and the
   flow are used up and nothing of the sign-in is kept.

Remembered consent. The consent page is shown before the user is known, so
"Remember my decision" is kept in two places:

- the browser: a consent cookie (``__Host-`` and ``Secure`` over https,
  ``HttpOnly``, ``SameSite=Lax``) signed with HMAC-SHA256 under a server
  secret kept in the store. It names the user it was given by and, per
  client_id, the scopes and resources allowed and an expiry. Set at the
  callback, once the user is known.
- the store: the user's remembered consent (``remember_consent``), which the
  page of the applications the user allowed lists and withdraws.

A later authorization from that browser for a client the cookie covers, whose
user still has a remembered consent covering it, skips the page (unless
``prompt=consent``). At the callback the provider must have signed in that same
user, and the consent must still stand; otherwise the sign-in is discarded, the
cookie cleared, and the client gets ``access_denied``. So a cookie cannot carry
consent to another client, to more scopes, or past a withdrawal.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion._core.errors import BastionError
from bastion._core.http import FetchError
from bastion.authserver._browser.consent import (
    CONSENT_TTL,
    audit_consent,
    consented,
    error_redirect,
    issue_code,
    remember_consent,
    show_consent,
)
from bastion.authserver._browser.flows import (
    Flow,
    FlowRefused,
    check_csrf,
    cookie_name,
    error_response,
    guarded_page,
    load_flow,
    secure_headers,
    set_cookie,
    set_session_cookie,
    start_session,
    take_flow,
)
from bastion.authserver._browser.login import LoginStep
from bastion.authserver._errors import AccessDeniedError
from bastion.authserver._forms import form_params, query_params
from bastion.authserver._models import User, hash_secret
from bastion.proxy._upstream import UpstreamError
from bastion.proxy._upstream_client import pkce_pair
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer
    from bastion.proxy._proxy import OAuthProxy

__all__ = ["CONSENT_COOKIE", "SECRET_NAMESPACE", "STATE_NAMESPACE", "UpstreamLogin"]

logger = logging.getLogger("bastion")

STATE_NAMESPACE = "upstream-state"
#: How long the browser may take at the provider.
STATE_TTL = 600.0
#: The signed cookie remembering which clients this browser's user approved, so sign-ins skip the consent page.
CONSENT_COOKIE = "bastion-consent"
#: Where the key signing consent cookies is kept (created once, shared by every process on the store).
SECRET_NAMESPACE = "proxy-secret"
_COOKIE_KEY = "consent-cookie"
#: The most clients one consent cookie remembers (the oldest are dropped), and its longest value.
MAX_REMEMBERED = 10
MAX_CONSENT_COOKIE = 3600
#: Identity claims that describe the provider's token, not the user: never copied into ours.
_TOKEN_CLAIMS = frozenset({"nonce", "at_hash", "c_hash", "azp", "sid", "auth_time", "acr", "amr", "typ", "iss", "aud"})


@dataclass(frozen=True)
class _Remembered:
    """One client's entry in a consent cookie."""

    client_id: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    expires: int

    def covers(self, flow: Flow, now: float) -> bool:
        return (
            self.client_id == flow.client_id
            and now < self.expires
            and flow.resource in self.resources
            and set(flow.scopes) <= set(self.scopes)
        )


class UpstreamLogin(LoginStep):
    """Sign users in at the proxy's upstream identity provider."""

    uses_sessions: ClassVar[bool] = False
    # A sign-in here holds the provider's tokens, kept for a grant: none without an authorization.
    account_sign_in: ClassVar[bool] = False

    def __init__(self, proxy: OAuthProxy) -> None:
        self.proxy = proxy
        self._key: bytes | None = None

    async def start(self, server: AuthorizationServer, request: Request, flow: Flow) -> Response:
        """The consent page, shown before the browser is sent upstream (unless this browser's consent stands)."""
        subject = await self._remembered_by(server, request, flow)
        if subject is not None:
            return await self._to_upstream(server, flow, remember=False, remembered_by=subject)
        return await show_consent(
            server, flow, None, action=server.path("/auth/continue"), provider=self.proxy.upstream.name
        )

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
        async def handle() -> Response:
            response: Response = await handler(server, request)
            return response

        return await guarded_page(server, handle, "an upstream sign-in")

    async def approve(self, server: AuthorizationServer, request: Request) -> Response:
        """The consent form: deny goes back to the client; approve goes to the provider."""
        params = await form_params(request)
        flow = await load_flow(server, request, params.get("flow"))
        check_csrf(flow, params.get("csrf"))
        decision = params.get("decision")
        if decision not in ("approve", "deny"):
            raise FlowRefused("Choose Allow or Deny.", 400)
        if decision == "deny":
            await take_flow(server, flow)
            await audit_consent(server, "consent.denied", flow, None)  # before signing in: no user yet
            denied = AccessDeniedError("the user denied the request")
            return error_redirect(server, flow.redirect_uri, flow.state, denied, posted=True)
        return await self._to_upstream(server, flow, remember=params.get("remember") is not None, remembered_by=None)

    async def _to_upstream(
        self, server: AuthorizationServer, flow: Flow, *, remember: bool, remembered_by: str | None
    ) -> Response:
        """Send the browser to the provider, with a fresh state pointing at ``flow``."""
        await self.proxy.refresh_upstream()
        state = secrets.token_urlsafe(32)
        verifier, challenge = pkce_pair()
        nonce = secrets.token_urlsafe(16)
        record = {
            "flow": flow.id,
            "verifier": verifier,
            "nonce": nonce,
            "remember": remember,
            "remembered_by": remembered_by,
        }
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
        provider = self.proxy.upstream.name
        error = params.get("error")
        if error is not None:
            await self._signin_failed(server, flow, "refused", "the provider answered with an error")
            denied = AccessDeniedError(
                f"{provider} did not sign the user in", detail=f"the provider answered {error[:40]!r}"
            )
            return error_redirect(server, flow.redirect_uri, flow.state, denied, posted=False)
        code = params.get("code")
        if code is None:
            raise FlowRefused("The identity provider's answer has no code.", 400)
        verifier = record["verifier"] if self.proxy.upstream.pkce else None
        try:
            identity, tokens = await self.proxy.authenticate(code, verifier, record.get("nonce"))
        except (UpstreamError, FetchError, BastionError) as exc:
            logger.warning("upstream sign-in failed: %s", exc)
            if isinstance(exc, UpstreamError) and not exc.transient:
                await self._signin_failed(server, flow, "failure", "the provider's answer was refused")
            else:
                await self._signin_failed(server, flow, "error", "the provider could not be reached")
            message = str(exc) if isinstance(exc, UpstreamError) else "The identity provider could not be reached."
            step = "Go back to the application and try again in a moment."
            return error_response(server, "The sign-in did not complete", message, 502, next_step=step)
        user = await self.proxy.keep(identity, tokens)
        await server.audit.emit(
            "signin.succeeded",
            "success",
            subject=user.subject,
            client_id=flow.client_id,
            method="upstream",
            provider=provider,
        )
        remembered_by = record.get("remembered_by")
        if remembered_by is not None and (user.subject != remembered_by or not await consented(server, user, flow)):
            # The page was skipped on the strength of this browser's cookie: it holds for its own user only.
            await audit_consent(
                server, "consent.remembered", flow, user.subject, outcome="refused", reason="it no longer holds"
            )
            await self.proxy.discard(user)
            refused = AccessDeniedError("the consent remembered in this browser does not hold; try again")
            response = error_redirect(server, flow.redirect_uri, flow.state, refused, posted=False)
            self._clear_consent_cookie(server, request, response)
            return response
        session_id, session = await start_session(server, user)
        if record.get("remember"):
            await remember_consent(server, user.subject, flow)
        if remembered_by is not None:
            await audit_consent(server, "consent.remembered", flow, user.subject)
        else:
            await audit_consent(server, "consent.given", flow, user.subject, remember=bool(record.get("remember")))
        response = await issue_code(server, flow, session, posted=False)
        # A session, so that the page of the applications the user allowed works for them.
        set_session_cookie(server, request, response, session_id)
        if record.get("remember"):
            await self._set_consent_cookie(server, request, response, user.subject, flow)
        return response

    # -- the consent cookie ----------------------------------------------------------------------

    async def _cookie_key(self, server: AuthorizationServer) -> bytes:
        if self._key is None:
            fresh = base64.urlsafe_b64encode(secrets.token_bytes(32))
            await server.store.add(SECRET_NAMESPACE, _COOKIE_KEY, fresh)
            stored = await server.store.get(SECRET_NAMESPACE, _COOKIE_KEY)
            if stored is None:
                raise StoreError("the consent cookie key could not be kept")
            self._key = base64.urlsafe_b64decode(stored)
        return self._key

    def _mac(self, key: bytes, payload: str) -> str:
        digest = hmac.new(key, b"bastion consent cookie\x00" + payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def _read_consent_cookie(
        self, server: AuthorizationServer, request: Request
    ) -> tuple[str, list[_Remembered]] | None:
        """The user and entries of this browser's consent cookie, when its signature holds."""
        value = request.cookies.get(cookie_name(server, request, CONSENT_COOKIE))
        if not value or len(value) > MAX_CONSENT_COOKIE or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        if not hmac.compare_digest(mac.encode(), self._mac(await self._cookie_key(server), payload).encode()):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            entries = [
                _Remembered(str(e["c"]), tuple(map(str, e["s"])), tuple(map(str, e["r"])), int(e["e"]))
                for e in data["clients"]
            ]
            return str(data["sub"]), entries
        except (ValueError, KeyError, TypeError):
            return None

    async def _remembered_by(self, server: AuthorizationServer, request: Request, flow: Flow) -> str | None:
        """The user whose consent for ``flow`` this browser remembers and the store still holds, if any."""
        if "consent" in flow.prompt:
            return None
        found = await self._read_consent_cookie(server, request)
        if found is None:
            return None
        subject, entries = found
        now = server.clock()
        if not any(entry.covers(flow, now) for entry in entries):
            return None
        if not await consented(server, User(subject=subject), flow):
            return None  # withdrawn since
        return subject

    async def _set_consent_cookie(
        self, server: AuthorizationServer, request: Request, response: Response, subject: str, flow: Flow
    ) -> None:
        found = await self._read_consent_cookie(server, request)
        now = server.clock()
        # Another user's consents are not carried over; this client's are added to.
        live = [e for e in found[1] if e.expires > now] if found is not None and found[0] == subject else []
        before = next((e for e in live if e.client_id == flow.client_id), None)
        entry = _Remembered(
            flow.client_id,
            tuple(dict.fromkeys((*(before.scopes if before else ()), *flow.scopes))),
            tuple(dict.fromkeys((*(before.resources if before else ()), flow.resource))),
            int(now + CONSENT_TTL),
        )
        entries = [*(e for e in live if e.client_id != flow.client_id), entry][-MAX_REMEMBERED:]
        key = await self._cookie_key(server)
        while True:
            data = {
                "sub": subject,
                "clients": [
                    {"c": e.client_id, "s": list(e.scopes), "r": list(e.resources), "e": e.expires} for e in entries
                ],
            }
            payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=").decode()
            value = f"{payload}.{self._mac(key, payload)}"
            if len(value) <= MAX_CONSENT_COOKIE or len(entries) == 1:
                break
            entries = entries[1:]
        if len(value) > MAX_CONSENT_COOKIE:
            return  # one client's consent too large for a cookie: the page will be shown again
        set_cookie(server, request, response, CONSENT_COOKIE, value, int(CONSENT_TTL))

    def _clear_consent_cookie(self, server: AuthorizationServer, request: Request, response: Response) -> None:
        set_cookie(server, request, response, CONSENT_COOKIE, "", 0)

    async def _signin_failed(
        self, server: AuthorizationServer, flow: Flow, outcome: Literal["failure", "refused", "error"], reason: str
    ) -> None:
        await server.audit.emit(
            "upstream.signin_failed",
            outcome,
            client_id=flow.client_id,
            provider=self.proxy.upstream.name,
            reason=reason,
        )


def identity_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """The provider's user claims worth keeping in our tokens (bounded, token plumbing left out)."""
    kept: dict[str, Any] = {}
    for name, value in claims.items():
        if name in _TOKEN_CLAIMS or len(kept) >= 40:
            continue
        if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 512:
            kept[name] = value
    return kept


def proxy_user(
    subject: str,
    name: str | None,
    email: str | None,
    claims: dict[str, Any],
    ref: str,
    roles: Sequence[str] = (),
) -> User:
    """The :class:`User` the proxy signs in: the provider's identity and roles, and where its sealed tokens are."""
    return User(
        subject=subject, name=name, email=email, roles=tuple(roles), claims={**identity_claims(claims), "uref": ref}
    )
