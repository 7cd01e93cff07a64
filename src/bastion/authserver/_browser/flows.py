"""What the authorization endpoint keeps about a browser: pending flows, sessions, cookies, page headers.

- A **flow** is an authorization request that passed every check and waits for
  the user to sign in and answer the consent page. It lives in the store
  (namespace ``flow``, ten minutes), bound to the browser that started it by a
  random browser cookie, and carries a CSRF token that the login and consent
  forms must send back (RFC 6749 section 10.12, RFC 9700 section 4.7). It is
  completed once: :func:`take_flow` removes it atomically when the code is issued.
- A **session** remembers the signed-in user for a while (twelve hours), so the
  next authorization asks only for consent, or for nothing. Its id is a random
  cookie; the store keeps only its SHA-256. The session's own forms (the page of
  the applications the user allowed) carry a CSRF token derived from the session
  id with HMAC-SHA256: as unguessable as a flow's random token, nothing more to
  store, and useless once the session ends.
- **Cookies** are ``HttpOnly`` and ``SameSite=Lax``, and over https ``Secure``
  with the ``__Host-`` prefix (bound to this exact origin, path ``/``).
- An **account flow** (``account=True``) is a sign-in that is not an authorization:
  started from the page of the applications the user allowed, it returns there.
  Only the login step and :func:`~.login.signed_in` accept one; the consent steps
  load flows with ``account=False`` and refuse it, so it can never become a code.

The pages' responses (:mod:`.responses`: headers, error pages) are re-exported here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from bastion.authserver._browser.responses import (
    FlowRefused,
    error_response,
    guarded_page,
    page,
    secure_headers,
    unavailable,
)
from bastion.authserver._models import User, hash_secret, secret_matches

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = [
    "FLOW_NAMESPACE",
    "FLOW_TTL",
    "SESSION_NAMESPACE",
    "SESSION_TTL",
    "Flow",
    "FlowRefused",
    "Session",
    "check_csrf",
    "end_session",
    "end_sessions",
    "error_response",
    "guarded_page",
    "load_flow",
    "page",
    "read_session",
    "save_flow",
    "secure_headers",
    "session_csrf_matches",
    "set_browser_cookie",
    "set_session_cookie",
    "start_session",
    "take_flow",
    "unavailable",
]

logger = logging.getLogger("bastion")

FLOW_NAMESPACE = "flow"
SESSION_NAMESPACE = "session"
#: Seconds a pending authorization waits for the user.
FLOW_TTL = 600.0
#: Seconds a browser stays signed in.
SESSION_TTL = 12 * 3600.0
#: The longest cookie value read (ours are 43 characters).
MAX_COOKIE = 128

# -- cookies ------------------------------------------------------------------------------------


def _over_https(server: AuthorizationServer, request: Request) -> bool:
    return request.url.scheme == "https" or (server.issuer or "").startswith("https:")


def cookie_name(server: AuthorizationServer, request: Request, name: str) -> str:
    """``name``, with the ``__Host-`` prefix over https (a cookie only this origin can set)."""
    return f"__Host-{name}" if _over_https(server, request) else name


def _read_cookie(server: AuthorizationServer, request: Request, name: str) -> str | None:
    value = request.cookies.get(cookie_name(server, request, name))
    if not value or len(value) > MAX_COOKIE:
        return None
    return value


def set_cookie(
    server: AuthorizationServer, request: Request, response: Response, name: str, value: str, max_age: int | None
) -> None:
    """Set one of our cookies: HttpOnly, SameSite=Lax, path ``/``; Secure and ``__Host-`` over https."""
    response.set_cookie(
        cookie_name(server, request, name),
        value,
        max_age=max_age,
        path="/",
        secure=_over_https(server, request),
        httponly=True,
        samesite="lax",
    )


BROWSER_COOKIE = "bastion-browser"
SESSION_COOKIE = "bastion-session"


def _browser_id(server: AuthorizationServer, request: Request) -> tuple[str, bool]:
    """This browser's random id from its cookie, or a new one; whether it is new."""
    value = _read_cookie(server, request, BROWSER_COOKIE)
    if value is None:
        return secrets.token_urlsafe(32), True
    return value, False


def set_browser_cookie(server: AuthorizationServer, request: Request, response: Response, value: str) -> None:
    """Give this browser its id (a cookie for the browser's session)."""
    set_cookie(server, request, response, BROWSER_COOKIE, value, None)


# -- flows ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """A pending authorization: the checked request, waiting for the user.

    A login step reads ``id`` and ``csrf`` (to put in its form, or in the
    ``state`` it sends upstream) and ``client_name`` (to show).
    """

    id: str
    csrf: str
    client_id: str
    client_name: str
    redirect_uri: str
    redirect_uri_sent: bool
    state: str | None
    code_challenge: str
    scopes: tuple[str, ...]
    resource: str
    prompt: tuple[str, ...] = ()
    #: The SHA-256 of the browser cookie of the browser that started the flow.
    browser: str = ""
    #: A sign-in to the page of the applications the user allowed, not an authorization.
    account: bool = False
    #: The ``dpop_jkt`` of the request (RFC 9449 section 10): the key the code will be bound to.
    dpop_jkt: str | None = None

    def to_json(self) -> bytes:
        """The record as stored (the id is its key)."""
        data = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "id"}
        data["scopes"], data["prompt"] = list(self.scopes), list(self.prompt)
        return json.dumps(data, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, flow_id: str, raw: bytes) -> Flow:
        """The inverse of :meth:`to_json`."""
        data = json.loads(raw)
        data["scopes"], data["prompt"] = tuple(data["scopes"]), tuple(data["prompt"])
        return cls(id=flow_id, **data)


async def save_flow(server: AuthorizationServer, request: Request, flow: Flow) -> tuple[Flow, str | None]:
    """Store ``flow`` with a fresh id and CSRF token, bound to this browser.

    Returns the stored flow, and the browser id to set with
    :func:`set_browser_cookie` when the browser had none yet.
    """
    browser, new = _browser_id(server, request)
    stored = replace(flow, id=secrets.token_urlsafe(24), csrf=secrets.token_urlsafe(32), browser=hash_secret(browser))
    await server.store.put(FLOW_NAMESPACE, stored.id, stored.to_json(), FLOW_TTL)
    return stored, browser if new else None


AGAIN = "Go back to the application and start again."
EXPIRED = f"This sign-in request has expired or was already completed. {AGAIN}"
FOREIGN = f"This form was not sent from the browser that started the sign-in. {AGAIN}"
BAD_TOKEN = f"The form's security token is missing or wrong. {AGAIN}"


async def load_flow(
    server: AuthorizationServer, request: Request, flow_id: str | None, *, account: bool = False
) -> Flow:
    """The pending flow ``flow_id``, if this browser started it; an account flow only with ``account``.

    A form handler then checks its CSRF token with :func:`check_csrf`; a login
    step's callback from an upstream identity provider (whose ``state`` carried
    the flow id) relies on this browser check alone.

    Raises:
        FlowRefused: the flow is unknown, expired or completed, or an account flow
            where ``account`` is false (400), or another browser started it (403).
    """
    if not flow_id or len(flow_id) > MAX_COOKIE:
        raise FlowRefused(EXPIRED, 400)
    raw = await server.store.get(FLOW_NAMESPACE, flow_id)
    if raw is None:
        raise FlowRefused(EXPIRED, 400)
    flow = Flow.from_json(flow_id, raw)
    if flow.account and not account:
        raise FlowRefused(EXPIRED, 400)
    browser = _read_cookie(server, request, BROWSER_COOKIE)
    if browser is None or not secret_matches(browser, flow.browser):
        raise FlowRefused(FOREIGN, 403)
    return flow


def check_csrf(flow: Flow, csrf: str | None) -> None:
    """The form's CSRF token is the flow's.

    Raises:
        FlowRefused: it is missing or wrong (403).
    """
    if not csrf or not secrets.compare_digest(csrf.encode(), flow.csrf.encode()):
        raise FlowRefused(BAD_TOKEN, 403)


async def take_flow(server: AuthorizationServer, flow: Flow) -> Flow:
    """Complete ``flow``: remove it atomically, so of any concurrent answers one goes on.

    Raises:
        FlowRefused: it was completed (or expired) meanwhile (400).
    """
    if await server.store.take(FLOW_NAMESPACE, flow.id) is None:
        raise FlowRefused(EXPIRED, 400)
    return flow


# -- sessions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the user and when they signed in (seconds since the epoch).

    ``csrf`` is the token the session's own forms carry (RFC 9700 section 4.7),
    checked with :func:`session_csrf_matches`; empty for a session that has no
    browser (``auto_approve``).
    """

    user: User
    auth_time: int
    csrf: str = field(default="", repr=False)


def _session_csrf(session_id: str) -> str:
    # Keyed by the session id (32 random bytes): unguessable without the cookie, and it reveals nothing of it.
    digest = hmac.new(session_id.encode(), b"bastion session form", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def session_csrf_matches(session: Session, csrf: str | None) -> bool:
    """Whether ``csrf`` is the CSRF token of ``session`` (constant time)."""
    if not csrf or not session.csrf or len(csrf) > MAX_COOKIE:
        return False
    return secrets.compare_digest(csrf.encode(), session.csrf.encode())


async def start_session(server: AuthorizationServer, user: User) -> tuple[str, Session]:
    """A new session for ``user``: its id (for :func:`set_session_cookie`) and the session.

    A new id every sign-in, so a session id planted before cannot be adopted (session fixation).
    """
    session_id = secrets.token_urlsafe(32)
    session = Session(user=user, auth_time=int(server.clock()), csrf=_session_csrf(session_id))
    record = json.dumps({"user": user.to_dict(), "auth_time": session.auth_time}).encode()
    await server.store.put(SESSION_NAMESPACE, hash_secret(session_id), record, SESSION_TTL, index=user.subject)
    return session_id, session


def set_session_cookie(server: AuthorizationServer, request: Request, response: Response, session_id: str) -> None:
    """Put the session id in this browser's cookie."""
    set_cookie(server, request, response, SESSION_COOKIE, session_id, int(SESSION_TTL))


async def read_session(server: AuthorizationServer, request: Request) -> Session | None:
    """The session of this browser, or ``None`` when it is not signed in."""
    session_id = _read_cookie(server, request, SESSION_COOKIE)
    if session_id is None:
        return None
    raw = await server.store.get(SESSION_NAMESPACE, hash_secret(session_id))
    if raw is None:
        return None
    data = json.loads(raw)
    return Session(user=User.from_dict(data["user"]), auth_time=int(data["auth_time"]), csrf=_session_csrf(session_id))


async def end_session(server: AuthorizationServer, request: Request, response: Response) -> bool:
    """Sign this browser out: forget its session and clear the cookie on ``response``; whether it had one."""
    session_id = _read_cookie(server, request, SESSION_COOKIE)
    response.delete_cookie(
        cookie_name(server, request, SESSION_COOKIE),
        path="/",
        secure=_over_https(server, request),
        httponly=True,
        samesite="lax",
    )
    if session_id is None:
        return False
    return await server.store.delete(SESSION_NAMESPACE, hash_secret(session_id))


async def end_sessions(server: AuthorizationServer, subject: str) -> int:
    """Sign ``subject`` out of every browser; how many sessions there were."""
    return await server.store.delete_index(SESSION_NAMESPACE, subject)
