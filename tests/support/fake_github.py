"""A GitHub-shaped identity provider for tests: GitHub's OAuth endpoints and REST user API, quirks included.

``FakeGitHub`` serves, on 127.0.0.1:

- ``/login/oauth/authorize``: no page; the user ``signed_in`` "approves" at once and the browser goes
  straight back to the redirect URI with ``code`` and ``state`` (or ``error=access_denied`` when
  ``deny`` is set). The client id, the redirect URI and a S256 PKCE challenge are checked first.
- ``/login/oauth/access_token``: a form POST with the client's id and secret; answers JSON only when
  asked with ``Accept: application/json`` (urlencoded otherwise, as GitHub does), and errors with HTTP
  200 and ``{"error": "bad_verification_code", ...}``. Opaque tokens: ``gho_...`` for an OAuth App
  (no refresh token, no expiry), ``ghu_...`` and ``ghr_...`` for a GitHub App (``app_mode``): they
  expire (``expires_in``, read on ``clock``) and refresh tokens rotate.
- ``/api/v3/user`` and ``/api/v3/user/emails`` (the API under ``/api/v3``, like GitHub Enterprise
  Server): ``Authorization: Bearer`` or ``token``; a private email is ``null`` in ``/user``;
  ``/user/emails`` answers 404 without the ``user:email`` scope. ``user_failure`` breaks ``/user``.
- ``DELETE /api/v3/applications/{client_id}/token``: revokes one token (basic auth with the app's
  credentials).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from bastion.testing import serve

UserFailure = Literal["500", "html", "garbage", "no_id"]

ERROR_URI = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"
UNICORN = b"<!DOCTYPE html><html><head><title>Unicorn! &middot; GitHub</title></head><body>No server is currently available to service your request.</body></html>"  # noqa: E501


@dataclass
class GitHubUser:
    """An account at the fake GitHub."""

    id: int
    login: str
    name: str | None
    email: str
    private_email: bool = False

    def profile(self) -> dict[str, Any]:
        """What ``/user`` answers: many fields, most of them URLs; the email ``null`` when private."""
        api = "https://api.github.com/users/" + self.login
        return {
            "login": self.login,
            "id": self.id,
            "node_id": "MDQ6VXNlcj" + str(self.id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{self.id}?v=4",
            "gravatar_id": "",
            "url": api,
            "html_url": "https://github.com/" + self.login,
            "followers_url": api + "/followers",
            "repos_url": api + "/repos",
            "type": "User",
            "site_admin": False,
            "name": self.name,
            "company": None,
            "blog": "",
            "email": None if self.private_email else self.email,
            "hireable": None,
            "bio": None,
            "public_repos": 8,
            "followers": 20,
            "created_at": "2011-01-25T18:44:36Z",
            "plan": {"name": "free", "space": 976562499, "private_repos": 10000},
        }


OCTOCAT = GitHubUser(583231, "octocat", "The Octocat", "octocat@github.com")
MONALISA = GitHubUser(1001, "monalisa", "Mona Lisa", "mona@example.com", private_email=True)


@dataclass
class _Token:
    user: GitHubUser
    scope: str
    expires_at: float | None = None


@dataclass
class _Code:
    user: GitHubUser
    redirect_uri: str
    challenge: str
    scope: str
    used: bool = False


@dataclass
class FakeGitHub:
    """GitHub's OAuth endpoints and user API on 127.0.0.1; a context manager (see the module's docstring).

    Attributes:
        redirect_uri: The app's registered callback URL (set it once the proxy's URL is known).
        signed_in: The user who approves at ``/login/oauth/authorize``.
        deny: The user cancels at GitHub instead (``error=access_denied``).
        app_mode: A GitHub App: expiring ``ghu_`` tokens with rotating ``ghr_`` refresh tokens.
        expires_in: A GitHub App access token's life, in seconds of ``clock``.
        user_failure: ``/user`` answers HTTP 500, an HTML page, a JSON list, or a user without ``id``.
        token_error: The token endpoint refuses every request with this error (HTTP 200, as GitHub).
        revoked: The tokens revoked through the API.
        token_requests: The token endpoint's requests (their form fields and ``Accept`` header).
    """

    client_id: str = "Iv1.8a61f9b3a7aba766"
    client_secret: str = field(default_factory=lambda: secrets.token_hex(20))
    redirect_uri: str = ""
    users: tuple[GitHubUser, ...] = (OCTOCAT, MONALISA)
    signed_in: str = "octocat"
    deny: bool = False
    app_mode: bool = False
    expires_in: int = 28800
    user_failure: UserFailure | None = None
    token_error: str | None = None
    clock: Callable[[], float] = time.time
    revoked: list[str] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._tokens: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._stack = ExitStack()
        self.app = Starlette(
            routes=[
                Route("/login/oauth/authorize", self._authorize, methods=["GET"]),
                Route("/login/oauth/access_token", self._access_token, methods=["POST"]),
                Route("/api/v3/user", self._user, methods=["GET"]),
                Route("/api/v3/user/emails", self._emails, methods=["GET"]),
                Route("/api/v3/applications/{client_id}/token", self._revoke, methods=["DELETE"]),
            ]
        )

    @property
    def api_url(self) -> str:
        """The REST API's base URL (``api_url=`` of the provider)."""
        return self.url + "/api/v3"

    def user_of(self, token: str) -> str | None:
        """The login a live access token belongs to, if any."""
        found = self._live(token)
        return found.user.login if found else None

    # -- the OAuth endpoints ------------------------------------------------------------------------

    async def _authorize(self, request: Request) -> Response:
        q = request.query_params
        if q.get("client_id") != self.client_id:
            return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
        redirect_uri = q.get("redirect_uri") or self.redirect_uri
        if redirect_uri != self.redirect_uri:
            return HTMLResponse("<h1>The redirect_uri is not associated with this application.</h1>", 400)
        challenge = q.get("code_challenge")
        if not challenge or q.get("code_challenge_method") != "S256":
            return HTMLResponse("<h1>This test app requires PKCE with S256.</h1>", 400)
        state = q.get("state", "")
        if self.deny:
            query = {
                "error": "access_denied",
                "error_description": "The user has denied your application access.",
                "error_uri": ERROR_URI,
                "state": state,
            }
            return RedirectResponse(redirect_uri + "?" + urlencode(query), status_code=302)
        user = next(u for u in self.users if u.login == self.signed_in)
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = _Code(user, redirect_uri, challenge, q.get("scope", "").replace(" ", ","))
        return RedirectResponse(redirect_uri + "?" + urlencode({"code": code, "state": state}), status_code=302)

    async def _access_token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append({**form, "accept": request.headers.get("accept", "")})
        wants_json = "application/json" in request.headers.get("accept", "")
        if self.token_error is not None:
            return self._answer(wants_json, self._error(self.token_error))
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._answer(wants_json, self._error("incorrect_client_credentials"))
        if form.get("grant_type") == "refresh_token":
            with self._lock:
                old = self._refresh.pop(form.get("refresh_token", ""), None)
            if old is None or not self.app_mode:
                return self._answer(wants_json, self._error("bad_refresh_token"))
            return self._answer(wants_json, self._issue(old.user, old.scope))
        with self._lock:
            grant = self._codes.get(form.get("code", ""))
            if grant is not None and grant.used:
                grant = None
            if grant is not None:
                grant.used = True
        if grant is None:
            return self._answer(wants_json, self._error("bad_verification_code"))
        if form.get("redirect_uri", grant.redirect_uri) != grant.redirect_uri:
            return self._answer(wants_json, self._error("redirect_uri_mismatch"))
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not secrets.compare_digest(digest, grant.challenge):
            return self._answer(wants_json, self._error("bad_verification_code"))
        return self._answer(wants_json, self._issue(grant.user, grant.scope))

    def _issue(self, user: GitHubUser, scope: str) -> dict[str, Any]:
        if not self.app_mode:
            token = "gho_" + secrets.token_urlsafe(27)
            with self._lock:
                self._tokens[token] = _Token(user, scope)
            return {"access_token": token, "token_type": "bearer", "scope": scope}
        token = "ghu_" + secrets.token_urlsafe(27)
        refresh = "ghr_" + secrets.token_urlsafe(57)
        record = _Token(user, scope, self.clock() + self.expires_in)
        with self._lock:
            self._tokens[token] = record
            self._refresh[refresh] = record
        return {
            "access_token": token,
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "refresh_token_expires_in": 15897600,
            "token_type": "bearer",
            "scope": "",
        }

    @staticmethod
    def _error(error: str) -> dict[str, str]:
        descriptions = {
            "bad_verification_code": "The code passed is incorrect or expired.",
            "incorrect_client_credentials": "The client_id and/or client_secret passed are incorrect.",
            "redirect_uri_mismatch": "The redirect_uri MUST match the registered callback URL for this application.",
            "bad_refresh_token": "The refresh token passed is incorrect or expired.",
        }
        return {"error": error, "error_description": descriptions.get(error, error), "error_uri": ERROR_URI}

    @staticmethod
    def _answer(wants_json: bool, body: dict[str, Any]) -> Response:
        # GitHub answers HTTP 200 even for errors, and urlencoded unless JSON is asked for.
        if wants_json:
            return JSONResponse(body)
        return Response(urlencode(body), media_type="application/x-www-form-urlencoded")

    # -- the REST API ---------------------------------------------------------------------------------

    def _live(self, token: str) -> _Token | None:
        with self._lock:
            found = self._tokens.get(token)
        if found is None or token in self.revoked:
            return None
        if found.expires_at is not None and found.expires_at <= self.clock():
            return None
        return found

    def _caller(self, request: Request) -> _Token | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token"):
            return None
        return self._live(token)

    @staticmethod
    def _unauthorized() -> Response:
        body = {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}
        return JSONResponse(body, status_code=401)

    async def _user(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None:
            return self._unauthorized()
        if self.user_failure == "500":
            return JSONResponse({"message": "Server Error"}, status_code=500)
        if self.user_failure == "html":
            return HTMLResponse(UNICORN)
        if self.user_failure == "garbage":
            return Response(json.dumps(["not", "a", "user"]), media_type="application/json")
        profile = caller.user.profile()
        if self.user_failure == "no_id":
            del profile["id"]
        return JSONResponse(profile)

    async def _emails(self, request: Request) -> Response:
        caller = self._caller(request)
        if caller is None:
            return self._unauthorized()
        if not self.app_mode and "user:email" not in caller.scope.split(",") and "user" not in caller.scope.split(","):
            return JSONResponse({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, 404)
        user = caller.user
        return JSONResponse(
            [
                {"email": f"{user.id}+{user.login}@users.noreply.github.com", "primary": False, "verified": True},
                {"email": user.email, "primary": True, "verified": True, "visibility": "private"},
            ]
        )

    async def _revoke(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.path_params["client_id"] != self.client_id or request.headers.get("authorization") != expected:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        body = await request.json()
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or self._live(token) is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        self.revoked.append(token)
        return Response(status_code=204)

    # -- serving ------------------------------------------------------------------------------------

    def __enter__(self) -> FakeGitHub:
        self.url = self._stack.enter_context(serve(self.app))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()
