"""The consent step: the page, the user's answer, remembered consents, and the authorization response.

- The consent page names the client (and its URL client id, for a Client ID
  Metadata Document), the host the answer goes back to, the requested scopes with
  their descriptions, and warns when the client can only redirect to this
  computer (a native app: any local program could use its name).
- "Not you?" (a POST with the flow id and its CSRF token) signs the browser
  out and shows the sign-in form for the same request.
- The answer is a POST carrying the flow id and its CSRF token; the flow is
  taken atomically, so it is answered once. Deny redirects with
  ``error=access_denied`` (RFC 6749 section 4.1.2.1).
- A remembered consent is per user and per client (namespace ``consent``,
  indexed by the user's subject). It covers the scopes and resources it was
  given for; a request for more asks again. :func:`withdraw_consent` forgets it
  and revokes the grants the user gave that client.
- Every authorization response carries ``iss`` (RFC 9207) and the ``state``
  exactly as sent; the redirect URI's own query parameters are kept.
- Each answer is an audit event: ``consent.given`` (on the page),
  ``consent.remembered`` (a remembered consent stood in for the page),
  ``consent.denied``, ``consent.withdrawn``; then ``code.issued``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion._core.audit import Outcome
from bastion.authserver._browser.flows import (
    Flow,
    FlowRefused,
    Session,
    check_csrf,
    end_session,
    guarded_page,
    load_flow,
    page,
    read_session,
    secure_headers,
    take_flow,
)
from bastion.authserver._browser.layout import look_of
from bastion.authserver._browser.pages import ConsentView, consent_page
from bastion.authserver._codes import CodeGrant
from bastion.authserver._errors import AccessDeniedError, OAuthError
from bastion.authserver._forms import form_params, query_params
from bastion.authserver._models import Client, User, hash_secret
from bastion.authserver._redirects import is_loopback_redirect

if TYPE_CHECKING:
    from bastion.authserver._browser.login import LoginStep
    from bastion.authserver._server import AuthorizationServer

__all__ = [
    "CONSENT_NAMESPACE",
    "RememberedConsent",
    "audit_consent",
    "authorization_redirect",
    "consented",
    "consents",
    "error_redirect",
    "issue_code",
    "proceed",
    "remembered_consent",
    "routes",
    "withdraw_consent",
]

logger = logging.getLogger("bastion")

CONSENT_NAMESPACE = "consent"
#: Seconds a remembered consent lasts.
CONSENT_TTL = 365 * 86400.0


@dataclass(frozen=True)
class RememberedConsent:
    """What a user allowed a client once and asked to be remembered."""

    subject: str
    client_id: str
    scopes: tuple[str, ...]
    resources: tuple[str, ...]
    #: When it was last given, seconds since the epoch.
    granted_at: int

    def covers(self, scopes: Sequence[str], resource: str) -> bool:
        """Whether it covers a request for ``scopes`` on ``resource``."""
        return resource in self.resources and set(scopes) <= set(self.scopes)

    @classmethod
    def from_json(cls, raw: bytes) -> RememberedConsent:
        """The stored record, read back."""
        data = json.loads(raw)
        return cls(
            subject=data["subject"],
            client_id=data["client_id"],
            scopes=tuple(data["scopes"]),
            resources=tuple(data["resources"]),
            granted_at=int(data["granted_at"]),
        )


def _consent_key(subject: str, client_id: str) -> str:
    return hash_secret(f"{subject}\x00{client_id}")


async def remembered_consent(server: AuthorizationServer, subject: str, client_id: str) -> RememberedConsent | None:
    """The consent ``subject`` asked to remember for ``client_id``, if any."""
    raw = await server.store.get(CONSENT_NAMESPACE, _consent_key(subject, client_id))
    return None if raw is None else RememberedConsent.from_json(raw)


async def remember_consent(server: AuthorizationServer, subject: str, flow: Flow) -> None:
    """Remember that ``subject`` allowed the flow's scopes and resource (added to what was allowed before)."""
    before = await remembered_consent(server, subject, flow.client_id)
    scopes = tuple(dict.fromkeys((*(before.scopes if before else ()), *flow.scopes)))
    resources = tuple(dict.fromkeys((*(before.resources if before else ()), flow.resource)))
    record = {
        "subject": subject,
        "client_id": flow.client_id,
        "scopes": list(scopes),
        "resources": list(resources),
        "granted_at": int(server.clock()),
    }
    key = _consent_key(subject, flow.client_id)
    await server.store.put(CONSENT_NAMESPACE, key, json.dumps(record).encode(), CONSENT_TTL, index=subject)


async def consents(server: AuthorizationServer, subject: str) -> list[RememberedConsent]:
    """The consents ``subject`` asked to remember, one per client."""
    records = await server.store.scan(CONSENT_NAMESPACE, subject)
    return sorted((RememberedConsent.from_json(raw) for _, raw in records), key=lambda c: c.client_id)


async def withdraw_consent(server: AuthorizationServer, subject: str, client_id: str) -> bool:
    """Forget ``subject``'s consent for ``client_id`` and revoke every grant they gave it.

    The client's refresh tokens stop working and its access tokens are refused
    from now on; its next authorization shows the consent page again. ``True``
    when there was a remembered consent or a grant.
    """
    forgotten = await server.store.delete(CONSENT_NAMESPACE, _consent_key(subject, client_id))
    revoked = await server.revoke_user_client(subject, client_id)
    if forgotten or revoked > 0:
        await server.audit.emit("consent.withdrawn", "success", subject=subject, client_id=client_id, count=revoked)
        return True
    return False


async def audit_consent(
    server: AuthorizationServer,
    name: Literal["consent.given", "consent.remembered", "consent.denied"],
    flow: Flow,
    subject: str | None,
    *,
    outcome: Outcome | None = None,
    remember: bool | None = None,
    reason: str | None = None,
) -> None:
    """Report the user's decision on ``flow`` (``subject`` unknown before a proxy's sign-in).

    The outcome is ``refused`` for a denial and ``success`` otherwise, unless given.
    """
    if outcome is None:
        outcome = "refused" if name == "consent.denied" else "success"
    await server.audit.emit(
        name,
        outcome,
        subject=subject,
        client_id=flow.client_id,
        scopes=flow.scopes,
        resource=flow.resource,
        remember=remember,
        reason=reason,
    )


async def consented(server: AuthorizationServer, user: User, flow: Flow) -> bool:
    """Whether a remembered consent of ``user`` covers ``flow`` (and ``prompt=consent`` does not ask anyway)."""
    if "consent" in flow.prompt:
        return False
    consent = await remembered_consent(server, user.subject, flow.client_id)
    return consent is not None and consent.covers(flow.scopes, flow.resource)


# -- authorization responses -----------------------------------------------------------------------


def authorization_redirect(
    server: AuthorizationServer, redirect_uri: str, params: Mapping[str, str], *, posted: bool
) -> Response:
    """Redirect to the client with ``params`` and ``iss`` added to the redirect URI's own query.

    302 after a GET; 303 after a POST, so the browser follows with a GET.
    """
    query = urlencode({**params, "iss": server.require_issuer()})
    separator = "&" if "?" in redirect_uri else "?"
    if redirect_uri.endswith(("?", "&")):
        separator = ""
    response = Response(status_code=303 if posted else 302, headers={"Location": redirect_uri + separator + query})
    return secure_headers(response)


def error_redirect(
    server: AuthorizationServer, redirect_uri: str, state: str | None, error: OAuthError, *, posted: bool
) -> Response:
    """An error authorization response (RFC 6749 section 4.1.2.1) to a verified redirect URI."""
    params = {"error": error.error}
    if error.description:
        params["error_description"] = error.description
    if state is not None:
        params["state"] = state
    return authorization_redirect(server, redirect_uri, params, posted=posted)


async def issue_code(server: AuthorizationServer, flow: Flow, session: Session, *, posted: bool) -> Response:
    """Record a grant, issue a code for it and redirect back to the client with it."""
    grant_id = await server.new_grant(session.user, flow.client_id)
    code = await server.codes.issue(
        CodeGrant(
            client_id=flow.client_id,
            redirect_uri=flow.redirect_uri,
            redirect_uri_sent=flow.redirect_uri_sent,
            code_challenge=flow.code_challenge,
            scopes=flow.scopes,
            resource=flow.resource,
            user=session.user,
            grant_id=grant_id,
            auth_time=session.auth_time,
            dpop_jkt=flow.dpop_jkt,
        )
    )
    await server.audit.emit(
        "code.issued",
        "success",
        subject=session.user.subject,
        client_id=flow.client_id,
        grant_id=grant_id,
        scopes=flow.scopes,
        resource=flow.resource,
    )
    params = {"code": code}
    if flow.state is not None:
        params["state"] = flow.state
    return authorization_redirect(server, flow.redirect_uri, params, posted=posted)


async def proceed(server: AuthorizationServer, request: Request, flow: Flow, session: Session) -> Response:
    """The signed-in user's next step for a stored flow: a code when consent is remembered, else the consent page.

    After a POST (a login form) the consent page is reached through a 303 to its
    own URL, so that reloading it does not send the password again. An account
    flow (a sign-in from the page of the applications the user allowed) is
    completed and goes back to that page.
    """
    posted = request.method == "POST"
    if flow.account:
        await take_flow(server, flow)
        return _see_other(server.path("/consents"))
    if await consented(server, session.user, flow):
        flow = await take_flow(server, flow)
        await audit_consent(server, "consent.remembered", flow, session.user.subject)
        return await issue_code(server, flow, session, posted=posted)
    if posted:
        return _see_other(_consent_url(server, flow))
    return await show_consent(server, flow, session.user)


def _consent_url(server: AuthorizationServer, flow: Flow) -> str:
    return server.path("/authorize/consent") + "?" + urlencode({"flow": flow.id})


def _see_other(location: str) -> Response:
    return secure_headers(Response(status_code=303, headers={"Location": location}))


# -- the consent page -------------------------------------------------------------------------------


def _localhost_only(client: Client) -> bool:
    return bool(client.redirect_uris) and all(is_loopback_redirect(uri) for uri in client.redirect_uris)


async def show_consent(
    server: AuthorizationServer,
    flow: Flow,
    user: User | None,
    *,
    action: str | None = None,
    provider: str | None = None,
) -> Response:
    """The consent page for ``flow``: for a signed-in ``user`` (who may switch account),
    or (the proxy) before signing in at ``provider``, posted to ``action``."""
    client = await server.clients.get(flow.client_id)
    if client is None:
        raise FlowRefused("The application is no longer registered.", 400)
    view = ConsentView(
        action=action or server.path("/authorize/consent"),
        flow_id=flow.id,
        csrf=flow.csrf,
        client_name=client.display_name,
        client_url=client.client_id if client.client_id.startswith("https://") else None,
        redirect_host=urlsplit(flow.redirect_uri).hostname or flow.redirect_uri,
        user_name=user.display_name if user is not None else "",
        scopes=[(scope, server.scope_description(scope)) for scope in flow.scopes],
        resource=flow.resource,
        localhost_only=_localhost_only(client),
        consents_url=server.path("/consents"),
        provider=provider,
        switch_action=server.path("/authorize/switch") if user is not None and provider is None else None,
    )
    look = look_of(server)
    return page(look, consent_page(look, view))


async def switch_account(server: AuthorizationServer, request: Request) -> Response:
    """The "Not you?" form: sign this browser out, then the same request starts again with the sign-in form."""
    params = await form_params(request)
    flow = await load_flow(server, request, params.get("flow"))
    check_csrf(flow, params.get("csrf"))
    response = _see_other(_consent_url(server, flow))
    await end_session(server, request, response)
    return response


def routes(server: AuthorizationServer, login: LoginStep | None) -> list[BaseRoute]:
    """The consent page (GET, reached after signing in), the answer to it (POST), and "Not you?" (POST)."""

    async def handle(request: Request) -> Response:
        if request.method == "POST":
            return await answer(server, request)
        flow = await load_flow(server, request, query_params(request).get("flow"))
        session = await read_session(server, request)
        if session is None:
            if login is None:
                raise FlowRefused("Signing in is not available on this server.", 400)
            return await login.start(server, request, flow)
        return await show_consent(server, flow, session.user)

    async def consent(request: Request) -> Response:
        return await guarded_page(server, lambda: handle(request), "the consent page")

    async def switch(request: Request) -> Response:
        return await guarded_page(server, lambda: switch_account(server, request), "a change of account")

    return [
        Route(server.path("/authorize/consent"), consent, methods=["GET", "POST"]),
        Route(server.path("/authorize/switch"), switch, methods=["POST"]),
    ]


async def answer(server: AuthorizationServer, request: Request) -> Response:
    """The user's answer: approve (maybe remember) or deny; the flow is completed either way."""
    params = await form_params(request)
    flow = await load_flow(server, request, params.get("flow"))
    check_csrf(flow, params.get("csrf"))
    decision = params.get("decision")
    if decision not in ("approve", "deny"):
        raise FlowRefused("Choose Allow or Deny.", 400)
    session = await read_session(server, request)
    if session is None:
        raise FlowRefused("You were signed out meanwhile. Go back to the application and start again.", 403)
    flow = await take_flow(server, flow)
    if decision == "deny":
        await audit_consent(server, "consent.denied", flow, session.user.subject)
        denied = AccessDeniedError("the user denied the request")
        return error_redirect(server, flow.redirect_uri, flow.state, denied, posted=True)
    remember = params.get("remember") is not None
    if remember:
        await remember_consent(server, session.user.subject, flow)
    await audit_consent(server, "consent.given", flow, session.user.subject, remember=remember)
    return await issue_code(server, flow, session, posted=True)
