"""The authorization endpoint (RFC 6749 section 4.1.1, OAuth 2.1 section 4.1.1).

An ordered list of checks. The first two decide where errors may go:

1. ``client_id``: a known client;
2. ``redirect_uri``: one the client registered (exact match; any port for a
   loopback one, RFC 8252 section 7.3), or its only one when absent.

Until both pass, an error is shown as a page and never redirected: the redirect
URI is not verified (RFC 6749 section 4.1.2.1, RFC 9700 section 4.11.2). After
that, errors go back to the client with ``error``, ``state`` and ``iss``
(RFC 9207):

3. ``response_type=code``, and the client may use the code flow;
4. PKCE: an S256 ``code_challenge`` (RFC 7636; OAuth 2.1 requires it, ``plain``
   is a downgrade and refused);
5. ``scope``: known and allowed for the client;
6. ``resource``: one this server issues tokens for (RFC 8707);
7. ``prompt``: ``none`` fails with ``login_required`` or ``consent_required``
   when a page would be needed;
8. ``dpop_jkt`` (RFC 9449 section 10), when sent: a JWK SHA-256 thumbprint, kept with
   the code, which only a token request with a DPoP proof of that key redeems.

Then the user signs in (the server's login step), consents (or has a remembered
consent), and the browser is sent back with the code. With ``auto_approve`` the
server signs in as that user and approves without any page.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion._core.errors import BastionError
from bastion._core.http import FetchError
from bastion.authserver._browser import consent as _consent
from bastion.authserver._browser.consent import audit_consent, consented, error_redirect, issue_code, show_consent
from bastion.authserver._browser.flows import (
    Flow,
    FlowRefused,
    Session,
    error_response,
    page,
    read_session,
    save_flow,
    set_browser_cookie,
    unavailable,
)
from bastion.authserver._browser.layout import look_of
from bastion.authserver._browser.login import LoginStep, login_step
from bastion.authserver._browser.pages import bad_request_page
from bastion.authserver._errors import (
    InvalidRequest,
    OAuthError,
    RequestTooLarge,
    UnauthorizedClient,
    UnsupportedResponseType,
)
from bastion.authserver._forms import MAX_PARAM, Params, form_params, query_params
from bastion.authserver._models import Client
from bastion.authserver._redirects import select_redirect_uri
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["ConsentRequired", "LoginRequired", "routes"]

logger = logging.getLogger("bastion")

#: RFC 7636 section 4.2: BASE64URL(SHA256(verifier)) is 43 characters (and so is a JWK thumbprint).
CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
#: The ``prompt`` values understood (OpenID Connect Core section 3.1.2.1); others are ignored.
PROMPTS = frozenset({"none", "login", "consent", "select_account"})


class LoginRequired(OAuthError):
    """``prompt=none``, and the user is not signed in."""

    error = "login_required"


class ConsentRequired(OAuthError):
    """``prompt=none``, and the user has not consented before."""

    error = "consent_required"


@dataclass(frozen=True)
class Verified:
    """A client and a redirect URI that errors may be sent to."""

    client: Client
    redirect_uri: str
    state: str | None


# -- the checks -----------------------------------------------------------------------------------


async def check_client(server: AuthorizationServer, params: Params) -> tuple[Client, str]:
    """Steps 1 and 2: the client and the redirect URI to use.

    Raises:
        InvalidRequest: ``client_id`` missing or unknown, ``redirect_uri`` missing
            when required or not registered: shown as a page.
    """
    client_id = params.get("client_id")
    if client_id is None:
        raise InvalidRequest("the client_id parameter is missing")
    try:
        client = await server.clients.get(client_id)
    except (BastionError, FetchError):
        raise InvalidRequest("the application's client metadata document could not be used") from None
    if client is None:
        raise InvalidRequest("the application (client_id) is not known to this server")
    return client, select_redirect_uri(client, params.get("redirect_uri"))


def check_response_type(client: Client, params: Params) -> None:
    """Step 3: the code flow, for a client registered for it."""
    response_type = params.get("response_type")
    if response_type is None:
        raise InvalidRequest("the response_type parameter is missing")
    if response_type != "code":
        raise UnsupportedResponseType("only response_type=code is supported")
    if "code" not in client.response_types or "authorization_code" not in client.grant_types:
        raise UnauthorizedClient("the client is not registered for the authorization_code grant")


def check_pkce(params: Params) -> str:
    """Step 4: the S256 code challenge (RFC 7636 section 4.3; OAuth 2.1 section 4.1.1)."""
    challenge = params.get("code_challenge")
    method = params.get("code_challenge_method")
    if challenge is None:
        raise InvalidRequest("the code_challenge parameter is missing: PKCE is required")
    if method is None:
        raise InvalidRequest("the code_challenge_method parameter is missing: PKCE with S256 is required")
    if method != "S256":
        raise InvalidRequest("code_challenge_method must be S256: PKCE with S256 is required")
    if not CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("the code_challenge must be 43 base64url characters (an S256 challenge)")
    return challenge


def check_dpop_jkt(params: Params) -> str | None:
    """Step 8: the thumbprint of the DPoP key the code is bound to, when the client sent one."""
    jkt = params.get("dpop_jkt")
    if jkt is not None and not CHALLENGE.fullmatch(jkt):
        raise InvalidRequest("dpop_jkt must be a JWK SHA-256 thumbprint: 43 base64url characters")
    return jkt


def check_prompt(params: Params) -> tuple[str, ...]:
    """Step 7's input: the ``prompt`` values understood; ``none`` stands alone."""
    values = tuple(value for value in (params.get("prompt") or "").split() if value in PROMPTS)
    if "none" in values and len(values) > 1:
        raise InvalidRequest("prompt=none cannot be combined with other prompt values")
    return values


def check_request(server: AuthorizationServer, verified: Verified, params: Params) -> Flow:
    """Steps 3 to 8: the request as a flow (not stored yet)."""
    client = verified.client
    check_response_type(client, params)
    challenge = check_pkce(params)
    scopes = server.resolve_scopes(params.get("scope"), client)
    resource = server.resolve_resource(params.get("resource"))
    return Flow(
        id="",
        csrf="",
        client_id=client.client_id,
        client_name=client.display_name,
        redirect_uri=verified.redirect_uri,
        redirect_uri_sent=params.get("redirect_uri") is not None,
        state=verified.state,
        code_challenge=challenge,
        scopes=scopes,
        resource=resource,
        prompt=check_prompt(params),
        dpop_jkt=check_dpop_jkt(params),
    )


# -- the endpoint ----------------------------------------------------------------------------------


def refused_page(server: AuthorizationServer, exc: OAuthError) -> Response:
    """An error that cannot be sent to the client: a page for the user, in plain words; the
    description (always our own text, never a value from the request) folded away for the app's developer."""
    look = look_of(server)
    return page(look, bad_request_page(look, f"{exc.error}: {exc.description}"), 400)


def salvage(request: Request) -> Params | None:
    """From an unreadable query string (a repeated or oversized parameter), what is unambiguous.

    ``client_id`` and ``redirect_uri`` (when sent) each once and readable, and
    ``state`` when it is too: then the error can still be sent to a verified
    redirect URI. ``None`` when they are not.
    """
    raw = request.scope.get("query_string", b"").decode("utf-8", "replace")
    seen: dict[str, list[str]] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True, max_num_fields=200):
        seen.setdefault(name, []).append(value)
    pairs = [(name, value) for name in ("client_id", "redirect_uri") for value in seen.get(name, [])]
    states = seen.get("state", [])
    if len(states) == 1 and len(states[0]) <= MAX_PARAM:
        pairs.append(("state", states[0]))  # a repeated or oversized state is not echoed
    try:
        return Params(pairs)
    except InvalidRequest:
        return None


async def unreadable(server: AuthorizationServer, request: Request, exc: InvalidRequest) -> Response:
    """Answer a request whose parameters cannot be read: redirected when the client is certain."""
    if isinstance(exc, RequestTooLarge):
        return error_response(server, "This request is too large", exc.description, exc.status)
    salvaged = salvage(request) if request.method == "GET" else None
    if salvaged is None:
        return refused_page(server, exc)
    try:
        _, redirect_uri = await check_client(server, salvaged)
    except OAuthError:
        return refused_page(server, exc)
    return error_redirect(server, redirect_uri, salvaged.get("state"), exc, posted=False)


async def authorize(server: AuthorizationServer, step: LoginStep | None, request: Request) -> Response:
    """GET or POST ``/authorize``."""
    posted = request.method == "POST"
    try:
        params = await form_params(request) if posted else query_params(request)
    except InvalidRequest as exc:
        return await unreadable(server, request, exc)
    try:
        client, redirect_uri = await check_client(server, params)
    except OAuthError as exc:
        return refused_page(server, exc)
    verified = Verified(client, redirect_uri, params.get("state"))
    try:
        flow = check_request(server, verified, params)
        return await begin(server, step, request, flow, posted)
    except OAuthError as exc:
        return error_redirect(server, redirect_uri, verified.state, exc, posted=posted)
    except FlowRefused as exc:
        return exc.response(server)


async def begin(
    server: AuthorizationServer, step: LoginStep | None, request: Request, flow: Flow, posted: bool
) -> Response:
    """A checked request: approve at once, ask for consent, or sign in first."""
    if server.auto_approve is not None:
        # Development only (refused unless the issuer is loopback): no page, no session.
        approver = Session(user=server.auto_approve, auth_time=int(server.clock()))
        await audit_consent(server, "consent.given", flow, approver.user.subject, reason="auto_approve")
        return await issue_code(server, flow, approver, posted=posted)
    fresh = {"login", "select_account"} & set(flow.prompt) or (step is not None and not step.uses_sessions)
    session = None if fresh else await read_session(server, request)
    if session is not None and await consented(server, session.user, flow):
        await audit_consent(server, "consent.remembered", flow, session.user.subject)
        return await issue_code(server, flow, session, posted=posted)
    if "none" in flow.prompt:
        raise LoginRequired("the user is not signed in") if session is None else ConsentRequired("consent is needed")
    if session is not None:
        stored, browser = await save_flow(server, request, flow)
        response = await show_consent(server, stored, session.user)
    elif step is not None:
        stored, browser = await save_flow(server, request, flow)
        response = await step.start(server, request, stored)
    else:
        return error_response(server, "Signing in is not available", "This server has no way to sign users in.", 400)
    if browser is not None:
        set_browser_cookie(server, request, response, browser)
    return response


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """``/authorize`` (GET and POST), the consent page, and the login step's routes."""
    step = login_step(server)

    async def endpoint(request: Request) -> Response:
        try:
            return await authorize(server, step, request)
        except StoreError as exc:
            server.outages.warning(f"the store failed during an authorization request: {exc}")
            return unavailable(server)

    found: list[BaseRoute] = [Route(server.path("/authorize"), endpoint, methods=["GET", "POST"])]
    found.extend(_consent.routes(server, step))
    if step is not None:
        found.extend(step.routes(server))
    return found
