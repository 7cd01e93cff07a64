"""A real OpenID provider for the tests: ``oidc-provider`` (Node.js) on 127.0.0.1, and a browser-less sign-in.

``OIDCProvider`` runs ``tests/oidc/server.mjs`` (install its packages with ``npm ci --prefix tests/oidc``)
with one confidential client; ``sign_in`` goes through its development login and consent forms and
returns the redirect to the client, with the authorization code. A test file that wants the ready-made
fixture imports ``from oidc_support import oidc_provider_fixture as oidc_provider_fixture``.
"""

from __future__ import annotations

import os
import queue
import secrets
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import Literal
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2
import pytest

OIDC_DIR = Path(__file__).parents[1] / "oidc"
SERVER = OIDC_DIR / "server.mjs"
#: The redirect URI of the fixture's client: registered without a port, so any loopback port matches.
LOOPBACK_CALLBACK = "http://127.0.0.1/auth/callback"
#: How long the provider may take to start before the test fails (a bound, not a wait).
START_TIMEOUT = 30.0


def skip_without_node() -> None:
    """Skip without ``node`` or the installed packages, except on CI, where their absence is a failure."""
    missing = None
    if shutil.which("node") is None:
        missing = "node is not installed (apt-get install nodejs npm)"
    elif not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        missing = "the OpenID provider's packages are not installed (npm ci --prefix tests/oidc)"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)


class OIDCProvider:
    """``oidc-provider`` in a child process, with one confidential client; a context manager.

    The client may use ``authorization_code`` (PKCE with S256 required) and ``refresh_token``, and
    authenticate with ``client_secret_basic`` or ``client_secret_post`` (the provider takes either). It gets
    a refresh token with every code, with or without ``offline_access``, rotated on each refresh; replaying a
    used refresh token ends the whole grant. Any login name signs in with any password:
    subject ``<login>``, email ``<login>@example.com``, name ``<Login>``. The port is chosen by the OS.

    Args:
        redirect_uris: The client's registered redirect URIs.
        client_id, client_secret: The client's credentials (default: ``upstream-client``, a random secret).
        any_loopback_port: Register the client as ``native``: a loopback redirect URI then matches on
            any port (RFC 8252 section 7.3), so it can be registered before the callback's server starts.
        access_token_ttl, refresh_token_ttl: Token lifetimes in seconds (the provider's clock is real).
        resource: One protected resource (RFC 8707): the client may then also use ``client_credentials``, and
            every access token is a JWT for it (``typ`` ``at+jwt``, RS256, ``aud`` the resource, ``client_id``
            and ``scope``), the default resource of a request that names none; any other is ``invalid_target``.
        resource_scopes: The resource's scopes (default ``notes:read notes:write``); a token carries only those.
        dpop: Enable DPoP (RFC 9449): a token request with a proof gets a token bound to its key, one
            without a bearer token; ``"nonce"`` also requires a server nonce in every proof (section 8).
    """

    def __init__(
        self,
        *,
        redirect_uris: Sequence[str] = (LOOPBACK_CALLBACK,),
        client_id: str = "upstream-client",
        client_secret: str | None = None,
        any_loopback_port: bool = False,
        access_token_ttl: int = 3600,
        refresh_token_ttl: int = 14 * 24 * 3600,
        resource: str | None = None,
        resource_scopes: Sequence[str] = ("notes:read", "notes:write"),
        dpop: bool | Literal["nonce"] = False,
    ) -> None:
        self.redirect_uris = tuple(redirect_uris)
        self.client_id = client_id
        self.client_secret = secrets.token_urlsafe(32) if client_secret is None else client_secret
        self.any_loopback_port = any_loopback_port
        self.access_token_ttl = access_token_ttl
        self.refresh_token_ttl = refresh_token_ttl
        self.resource = resource
        self.resource_scopes = tuple(resource_scopes)
        self.dpop = dpop
        #: The provider's last lines of output (its warnings and errors), for a failing test's report.
        self.output: deque[str] = deque(maxlen=200)
        self._issuer: str | None = None
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def issuer(self) -> str:
        """The issuer, ``http://127.0.0.1:<port>``; the provider's endpoints are under it."""
        if self._issuer is None:
            raise RuntimeError("the OpenID provider is not running")
        return self._issuer

    @property
    def config_url(self) -> str:
        """The discovery document's URL (OpenID Connect Discovery 1.0)."""
        return self.issuer + "/.well-known/openid-configuration"

    def authorization_url(self, **params: str) -> str:
        """The authorization endpoint with ``params`` and this client's ``client_id`` and ``response_type=code``."""
        query = {"client_id": self.client_id, "response_type": "code", **params}
        return f"{self.issuer}/auth?{urlencode(query)}"

    def start(self) -> None:
        """Start the provider and return once it listens; fails after ``START_TIMEOUT`` seconds."""
        inherited = ("PORT", "ISSUER", "RESOURCE", "RESOURCE_SCOPES", "DPOP")
        env = {key: value for key, value in os.environ.items() if key not in inherited}
        env.update(
            CLIENT_ID=self.client_id,
            CLIENT_SECRET=self.client_secret,
            REDIRECT_URIS=",".join(self.redirect_uris),
            APPLICATION_TYPE="native" if self.any_loopback_port else "web",
            ACCESS_TOKEN_TTL=str(self.access_token_ttl),
            REFRESH_TOKEN_TTL=str(self.refresh_token_ttl),
        )
        if self.resource is not None:
            env.update(RESOURCE=self.resource, RESOURCE_SCOPES=" ".join(self.resource_scopes))
        if self.dpop:
            env.update(DPOP="nonce" if self.dpop == "nonce" else "1")
        node = shutil.which("node") or "node"
        self._process = subprocess.Popen(
            [node, str(SERVER)],
            cwd=OIDC_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self._process, lines), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise RuntimeError(
                    f"the OpenID provider did not start in {START_TIMEOUT:.0f} s: {self._log()}"
                ) from None
            if line is None:
                self.stop()
                raise RuntimeError(f"the OpenID provider exited: {self._log()}")
            if line.startswith("ready "):
                self._issuer = line.removeprefix("ready ").strip()
                return

    def _read(self, process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        """Read the child's output to its end (so it never blocks on a full pipe), handing lines to start()."""
        assert process.stdout is not None
        ready = False
        for line in process.stdout:
            self.output.append(line.rstrip("\n"))
            if not ready:
                lines.put(line)
                ready = line.startswith("ready ")
        lines.put(None)

    def _log(self) -> str:
        return "\n".join(self.output) or "(no output)"

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL if it does not exit within 10 s)."""
        process, self._process = self._process, None
        self._issuer = None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> OIDCProvider:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


@pytest.fixture(name="oidc_provider")
def oidc_provider_fixture() -> Iterator[OIDCProvider]:
    """Fixture ``oidc_provider``: a running provider whose client redirects to ``LOOPBACK_CALLBACK`` on any port."""
    skip_without_node()
    with OIDCProvider(any_loopback_port=True) as provider:
        yield provider


class SignInError(Exception):
    """The provider's pages did not lead to the client's redirect URI."""


class _FormParser(HTMLParser):
    """The first form of a page: its action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._inside = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self._done and self.action is None:
            self.action = attributes.get("action", "")
            self._inside = True
        elif tag == "input" and self._inside and attributes.get("name"):
            self.fields[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._inside:
            self._inside = False
            self._done = True


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


async def sign_in(
    http: httpx2.AsyncClient,
    authorize_url: str,
    login: str = "alice",
    *,
    password: str = "any password",
    redirect_uris: Sequence[str] | None = None,
) -> str:
    """Sign ``login`` in at the provider and consent; returns the redirect to the client (not requested).

    Follows the provider's own redirects from ``authorize_url`` and submits its login and consent forms,
    keeping cookies in ``http``. The result is the first redirect to one of ``redirect_uris`` (default:
    the ``redirect_uri`` parameter of ``authorize_url``), e.g. ``<redirect_uri>?code=...&state=...&iss=...``,
    or an error redirect (``?error=...``) when the provider refuses the request. When ``http`` already holds
    the provider's session, the provider skips its login form (and the consent already given): the session's
    user comes back, whatever ``login`` says; use another client for another user, or ``prompt=login``.

    Raises:
        SignInError: a page is not a form, a redirect leaves the provider, or the provider answers an error page.
    """
    if redirect_uris is None:
        redirect_uris = parse_qs(urlsplit(authorize_url).query).get("redirect_uri", [])
    if not redirect_uris:
        raise SignInError("no redirect URI to stop at: give redirect_uris or a redirect_uri parameter")
    targets = tuple(redirect_uris)
    origin = _origin(authorize_url)
    response = await http.get(authorize_url, follow_redirects=False)
    for _ in range(12):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(targets):
                return location
            if _origin(location) != origin:
                raise SignInError(f"the provider redirected away from itself, to {location}")
            response = await http.get(location, follow_redirects=False)
            continue
        if response.status_code != 200:
            raise SignInError(f"the provider answered {response.status_code}: {response.text[:500]}")
        form = _FormParser()
        form.feed(response.text)
        if form.action is None:
            raise SignInError(f"the provider's page has no form: {response.text[:500]}")
        fields = dict(form.fields)
        if "login" in fields:
            fields["login"] = login
        if "password" in fields:
            fields["password"] = password
        response = await http.post(urljoin(str(response.url), form.action), data=fields, follow_redirects=False)
    raise SignInError("the provider's pages went on for more than 12 steps")
