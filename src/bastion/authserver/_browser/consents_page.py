"""The page where a signed-in user sees the applications they allowed, and withdraws their access.

- ``GET /consents``: the consents the browser's session user asked to remember
  (client, scopes with their descriptions, resources, when), each with a
  "Withdraw access" form, and a "Sign out" form. Without a session: a 403 page
  that offers to sign in, when the server's login step can outside an
  authorization (``LoginStep.account_sign_in``; the proxy's cannot).
- ``GET /consents/sign-in``: an account flow (see ``flows``) handed to the login
  step; once signed in, the browser is back on ``/consents``.
- ``POST /consents/withdraw``: the session's CSRF token (RFC 9700 section 4.7),
  then :func:`withdraw_consent` for the session's own user: the consent is
  forgotten and the client's grants revoked (its refresh tokens and access tokens
  stop working). A 303 back to the list (RFC 9110 section 15.4.4) with a
  confirmation that only this session can produce.
- ``POST /consents/sign-out``: the CSRF token, then this browser's session ends.

The pages carry the same headers as the sign-in pages: no scripts, no framing, no-store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion._core.errors import BastionError
from bastion._core.http import FetchError
from bastion.authserver._browser.account_pages import ConsentEntry, ConsentsView, consents_page, not_signed_in_page
from bastion.authserver._browser.consent import RememberedConsent, consents, withdraw_consent
from bastion.authserver._browser.flows import (
    Flow,
    FlowRefused,
    Session,
    end_session,
    error_response,
    page,
    read_session,
    save_flow,
    secure_headers,
    session_csrf_matches,
    set_browser_cookie,
    unavailable,
)
from bastion.authserver._browser.layout import look_of
from bastion.authserver._browser.login import login_step
from bastion.authserver._errors import InvalidRequest
from bastion.authserver._forms import form_params, query_params
from bastion.storage import StoreError

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["routes", "show_consents", "sign_in", "sign_out", "withdraw"]

logger = logging.getLogger("bastion")

BAD_TOKEN = "The form's security token is missing or wrong. Reload the page of your applications and try again."


def _can_sign_in(server: AuthorizationServer) -> bool:
    step = login_step(server)
    return step is not None and step.account_sign_in


def not_signed_in(server: AuthorizationServer) -> Response:
    """The page for a browser without a session, offering to sign in: 403 (a 401 would need
    an HTTP authentication scheme)."""
    look = look_of(server)
    sign_in_url = server.path("/consents/sign-in") if _can_sign_in(server) else None
    return page(look, not_signed_in_page(look, sign_in_url), 403)


def _refused(server: AuthorizationServer) -> Response:
    link = (server.path("/consents"), "Back to the applications you allowed")
    return error_response(server, "This form cannot be accepted", BAD_TOKEN, 403, link=link)


def _see_other(location: str) -> Response:
    return secure_headers(Response(status_code=303, headers={"Location": location}))


def _withdrawn_mark(session: Session, client_id: str) -> str:
    # The confirmation shown after a 303: keyed by the session's secret token, so a link cannot fake one.
    digest = hmac.new(session.csrf.encode(), b"withdrawn\x00" + client_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _client_name(server: AuthorizationServer, client_id: str) -> str:
    """The client's display name; its id when it no longer resolves (deleted, or its metadata document unusable)."""
    try:
        client = await server.clients.get(client_id)
    except (BastionError, FetchError):
        return client_id
    return client_id if client is None else client.display_name


def _granted(timestamp: int) -> tuple[str, str]:
    when = datetime.fromtimestamp(timestamp, UTC)
    return when.isoformat(), when.strftime("%d %B %Y, %H:%M UTC")


async def _entry(server: AuthorizationServer, consent: RememberedConsent) -> ConsentEntry:
    return ConsentEntry(
        client_id=consent.client_id,
        client_name=await _client_name(server, consent.client_id),
        client_url=consent.client_id if consent.client_id.startswith("https://") else None,
        scopes=[(scope, server.scope_description(scope)) for scope in consent.scopes],
        resources=consent.resources,
        granted=_granted(consent.granted_at),
    )


async def _entries(server: AuthorizationServer, subject: str) -> list[ConsentEntry]:
    """Remembered consents, then the applications signed in without one."""
    remembered = await consents(server, subject)
    entries = [await _entry(server, consent) for consent in remembered]
    known = {consent.client_id for consent in remembered}
    for client_id, since in await server.grants.by_user(subject):
        if client_id not in known:
            entries.append(
                ConsentEntry(
                    client_id=client_id,
                    client_name=await _client_name(server, client_id),
                    client_url=client_id if client_id.startswith("https://") else None,
                    scopes=(),
                    resources=(),
                    granted=_granted(since),
                    remembered=False,
                )
            )
    return entries


async def _notice(server: AuthorizationServer, session: Session, request: Request) -> str | None:
    """The confirmation of a withdrawal this session just made, if the query carries one."""
    try:
        query = query_params(request)
    except InvalidRequest:
        return None
    client_id, mark = query.get("withdrawn"), query.get("mark")
    if (
        not client_id
        or not mark
        or not hmac.compare_digest(mark.encode(), _withdrawn_mark(session, client_id).encode())
    ):
        return None
    return f"You withdrew the access of {await _client_name(server, client_id)}."


async def show_consents(server: AuthorizationServer, request: Request) -> Response:
    """GET: the list of the session user's remembered consents."""
    session = await read_session(server, request)
    if session is None:
        return not_signed_in(server)
    view = ConsentsView(
        withdraw_action=server.path("/consents/withdraw"),
        sign_out_action=server.path("/consents/sign-out"),
        csrf=session.csrf,
        user_name=session.user.display_name,
        entries=await _entries(server, session.user.subject),
        notice=await _notice(server, session, request),
    )
    look = look_of(server)
    return page(look, consents_page(look, view))


async def sign_in(server: AuthorizationServer, request: Request) -> Response:
    """GET: sign in to see the applications one allowed (an account flow), then back to ``/consents``."""
    step = login_step(server)
    if await read_session(server, request) is not None:
        return _see_other(server.path("/consents"))
    if step is None or not step.account_sign_in:
        return not_signed_in(server)
    account = Flow(
        id="",
        csrf="",
        client_id="",
        client_name="",
        redirect_uri=server.path("/consents"),
        redirect_uri_sent=False,
        state=None,
        code_challenge="",
        scopes=(),
        resource="",
        account=True,
    )
    flow, browser = await save_flow(server, request, account)
    response = await step.start(server, request, flow)
    if browser is not None:
        set_browser_cookie(server, request, response, browser)
    return response


async def withdraw(server: AuthorizationServer, request: Request) -> Response:
    """POST: withdraw the session user's consent for one client (and revoke its grants)."""
    params = await form_params(request)
    session = await read_session(server, request)
    if session is None:
        return not_signed_in(server)
    if not session_csrf_matches(session, params.get("csrf")):
        return _refused(server)
    client_id = params.get("client_id")
    if not client_id:
        return error_response(server, "This form cannot be accepted", "No application was chosen.", 400)
    location = server.path("/consents")
    if await withdraw_consent(server, session.user.subject, client_id):
        logger.info("a user withdrew their consent for client %r", client_id)
        location += "?" + urlencode({"withdrawn": client_id, "mark": _withdrawn_mark(session, client_id)})
    return _see_other(location)


async def sign_out(server: AuthorizationServer, request: Request) -> Response:
    """POST: end this browser's session (other browsers stay signed in)."""
    params = await form_params(request)
    session = await read_session(server, request)
    if session is None:
        return not_signed_in(server)
    if not session_csrf_matches(session, params.get("csrf")):
        return _refused(server)
    response = _see_other(server.path("/consents"))
    await end_session(server, request, response)
    return response


Handler = Callable[["AuthorizationServer", Request], Awaitable[Response]]


def _guarded(server: AuthorizationServer, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(server, request)
        except FlowRefused as exc:
            return exc.response(server)
        except InvalidRequest as exc:
            return error_response(server, "This request cannot be read", exc.description, exc.status)
        except StoreError as exc:
            server.outages.warning(f"the store failed on the page of the user's applications: {exc}")
            return unavailable(server)

    return endpoint


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """``/consents`` and ``/consents/sign-in`` (GET), ``/consents/withdraw`` and ``/consents/sign-out`` (POST)."""
    return [
        Route(server.path("/consents"), _guarded(server, show_consents), methods=["GET"]),
        Route(server.path("/consents/sign-in"), _guarded(server, sign_in), methods=["GET"]),
        Route(server.path("/consents/withdraw"), _guarded(server, withdraw), methods=["POST"]),
        Route(server.path("/consents/sign-out"), _guarded(server, sign_out), methods=["POST"]),
    ]
