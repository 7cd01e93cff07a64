"""The login step: how the user signs in during an authorization, pluggable.

The authorization endpoint checks the request, stores it as a :class:`Flow`
bound to the browser, and, when the browser has no session, hands it to the
server's :class:`LoginStep`. A step does whatever signing in means to it (a
password form here; a redirect to an upstream identity provider in the proxy),
then calls :func:`signed_in` with the flow id and the :class:`User`. That starts
the browser's session and continues with consent.

A step's own routes (its form's POST, an upstream callback) come from
:meth:`LoginStep.routes`. A form it serves must carry ``flow.id`` and
``flow.csrf``; its handler checks them with :func:`load_flow` and
:func:`check_csrf` before it believes anything else in the request. A callback
from an upstream provider gets the flow id back through the ``state`` it sent,
and :func:`load_flow` checks the browser.
"""

from __future__ import annotations

import inspect
import logging
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bastion._core.errors import ConfigurationError
from bastion.authserver._browser.consent import proceed
from bastion.authserver._browser.flows import (
    Flow,
    check_csrf,
    guarded_page,
    load_flow,
    page,
    set_session_cookie,
    start_session,
)
from bastion.authserver._browser.layout import look_of
from bastion.authserver._browser.pages import login_page
from bastion.authserver._forms import form_params
from bastion.authserver._models import User
from bastion.authserver._ratelimit import RateLimiter

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer, UserCheck

__all__ = ["MAX_PASSWORD", "MAX_USERNAME", "LoginStep", "PasswordLogin", "login_step", "signed_in"]

logger = logging.getLogger("bastion")

#: The longest username read from the login form.
MAX_USERNAME = 256
#: The longest password read from the login form.
MAX_PASSWORD = 1024
#: The one message for every failed sign-in: it does not say whether the user exists.
FAILED = "The username or password is incorrect."
TOO_MANY = "Too many sign-in attempts. Wait a few minutes, then try again."


class LoginStep(ABC):
    """How the user signs in: the built-in :class:`PasswordLogin`, or an upstream identity provider.

    ``uses_sessions``: whether a browser already signed in here skips the step.
    An upstream step sets it to ``False``: every authorization goes through the
    provider (whose own session makes that quick), so each grant gets the
    provider's tokens of its own.

    ``account_sign_in``: whether the step also signs people in to the page of the
    applications they allowed (``/consents``), outside any authorization: then
    ``start`` gets a flow with ``account`` true and no client (``client_name``
    empty), and :func:`signed_in` returns the browser to that page.
    """

    uses_sessions: ClassVar[bool] = True
    account_sign_in: ClassVar[bool] = True

    @abstractmethod
    async def start(self, server: AuthorizationServer, request: Request, flow: Flow) -> Response:
        """Begin signing in for ``flow``: a page to show, or a redirect elsewhere."""

    def routes(self, server: AuthorizationServer) -> list[BaseRoute]:
        """The step's own routes (under ``server.path(...)``); none by default."""
        return []


async def signed_in(
    server: AuthorizationServer, request: Request, flow_id: str, user: User, *, method: str | None = None
) -> Response:
    """The user of flow ``flow_id`` is ``user``: start this browser's session and go on to consent.

    A login step calls this once it knows who the user is. The response redirects
    back to the client (consent remembered, or not needed) or leads to the
    consent page (or, for an account flow, back to the page of the applications
    the user allowed), and sets the session cookie. The sign-in is the audit event
    ``signin.succeeded``; ``method`` names how the user signed in (``password``).

    Raises:
        FlowRefused: the flow is unknown, expired, or another browser's; render
            it with ``exc.response(server)``.
    """
    flow = await load_flow(server, request, flow_id, account=True)
    await server.audit.emit(
        "signin.succeeded", "success", subject=user.subject, client_id=flow.client_id or None, method=method
    )
    session_id, session = await start_session(server, user)
    response = await proceed(server, request, flow, session)
    set_session_cookie(server, request, response, session_id)
    return response


async def check_password(users: UserCheck, username: str, password: str) -> User | None:
    """Ask the ``users`` callable (sync or async); a subject string becomes a :class:`User`."""
    result = users(username, password)
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return None
    if isinstance(result, User):
        return result
    if isinstance(result, str) and result:
        return User(subject=result, name=username)
    raise TypeError("the users callable must return a User, a subject string or None")


class PasswordLogin(LoginStep):
    """The built-in login step: a username and password form, checked by ``users``.

    Args:
        users: ``(username, password) -> User | subject | None``, sync or async.
            A wrong username and a wrong password look the same to the user, and
            to the audit trail (``signin.failed`` names the client, not the
            username typed: people type their password there by mistake).
        max_attempts: Sign-in attempts allowed per username, and (five times as
            many) per client address, in each ``window`` of seconds; past that the
            form answers 429 without checking the password (against guessing).
        window: The length of that window in seconds.
    """

    def __init__(self, users: UserCheck, *, max_attempts: int = 10, window: float = 300.0) -> None:
        self.users = users
        self.max_attempts = max_attempts
        self.window = window

    async def start(self, server: AuthorizationServer, request: Request, flow: Flow) -> Response:
        """The login form."""
        return self._form(server, flow)

    async def _within_limits(self, server: AuthorizationServer, request: Request, username: str) -> bool:
        per_user = RateLimiter(server.store, "login-user", self.max_attempts, self.window, server.clock)
        per_address = RateLimiter(server.store, "login-address", 5 * self.max_attempts, self.window, server.clock)
        address = request.client.host if request.client else "unknown"
        within_user = await per_user.hit(username.casefold())
        return await per_address.hit(address) and within_user

    def _form(
        self,
        server: AuthorizationServer,
        flow: Flow,
        username: str = "",
        error: str | None = None,
        *,
        status_code: int = 200,
    ) -> Response:
        look = look_of(server)
        html = login_page(
            look,
            action=server.path("/authorize/login"),
            flow_id=flow.id,
            csrf=flow.csrf,
            client_name=flow.client_name,
            username=username,
            error=error,
            max_username=MAX_USERNAME,
            max_password=MAX_PASSWORD,
        )
        return page(look, html, status_code)

    def routes(self, server: AuthorizationServer) -> list[BaseRoute]:
        """The form's POST."""

        async def submit(request: Request) -> Response:
            return await guarded_page(server, lambda: self.submit(server, request), "a sign-in")

        return [Route(server.path("/authorize/login"), submit, methods=["POST"])]

    async def submit(self, server: AuthorizationServer, request: Request) -> Response:
        """Check the form: the flow and its CSRF token first, then the credentials."""
        params = await form_params(request)
        flow = await load_flow(server, request, params.get("flow"), account=True)
        check_csrf(flow, params.get("csrf"))
        username = params.get("username") or ""
        password = params.get("password") or ""
        audit, client_id = server.audit, flow.client_id or None  # none for an account sign-in
        if not username or not password or len(username) > MAX_USERNAME or len(password) > MAX_PASSWORD:
            await audit.emit("signin.failed", "failure", client_id=client_id, method="password", reason="incomplete")
            return self._form(server, flow, username[:MAX_USERNAME], FAILED)
        if not await self._within_limits(server, request, username):
            await audit.emit(
                "signin.throttled", "refused", client_id=client_id, method="password", reason="too many attempts"
            )
            return self._form(server, flow, username, TOO_MANY, status_code=429)
        user = await check_password(self.users, username, password)
        if user is None:
            await audit.emit(
                "signin.failed", "failure", client_id=client_id, method="password", reason="wrong credentials"
            )
            return self._form(server, flow, username, FAILED)
        return await signed_in(server, request, flow.id, user, method="password")


def login_step(server: AuthorizationServer) -> LoginStep | None:
    """The server's login step: ``login=``, else a password form over ``users=``, else none.

    Raises:
        ConfigurationError: ``login=`` is not a :class:`LoginStep`.
    """
    step = server.login_step
    if isinstance(step, LoginStep):
        return step
    if step is not None:
        raise ConfigurationError(f"login= takes a LoginStep, got {type(step).__name__}")
    if server.users is not None:
        return PasswordLogin(server.users)
    return None
