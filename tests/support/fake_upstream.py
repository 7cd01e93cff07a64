"""A small OpenID provider for the proxy's fault tests, on loopback, whose every answer a test controls.

``FakeUpstream`` serves a token endpoint, a JWK Set and a revocation endpoint (a Starlette app with
``bastion.testing.serve``). Its authorization step has no page: :meth:`FakeUpstream.sign_in` reads the
proxy's redirect and returns the URL of the proxy's callback with a code, as a provider would after the
user signed in. ``token_mode`` makes the token endpoint fail in one way; ``slow`` holds its answer until
the test releases it. Every token and the client secret it ever sees are in ``secrets()``, for tests
that check none of them leaks.
"""

from __future__ import annotations

import secrets as random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio.to_thread
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.authserver import Client
from bastion.proxy import OAuthProxy, Upstream
from bastion.storage import SQLiteStore
from bastion.testing import KeyPair, serve

from support.authserver import PUBLIC_CLIENT, REDIRECT, SCOPES, pkce_pair
from support.pages import only_form

TokenMode = Literal["ok", "down", "error_json", "html", "garbage", "slow", "bad_signature", "bad_nonce", "no_subject"]

CLIENT_ID = "proxy-at-fake"
CLIENT_SECRET = "fake-upstream-client-secret-0123456789"


@dataclass
class _Code:
    subject: str
    nonce: str | None


@dataclass
class FakeUpstream:
    """An identity provider whose token endpoint answers as ``token_mode`` says."""

    token_mode: TokenMode = "ok"
    #: Seconds of life of the access tokens it issues.
    expires_in: int = 3600
    #: Whether it issues refresh tokens.
    refresh_tokens: bool = True
    base: str = ""
    key: KeyPair = field(default_factory=lambda: KeyPair.generate("RS256", kid="fake-1"))
    other_key: KeyPair = field(default_factory=lambda: KeyPair.generate("RS256", kid="fake-1"))
    codes: dict[str, _Code] = field(default_factory=dict)
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    #: Whether it refuses every refresh token (the user revoked the proxy's access at the provider, say).
    refuse_refresh: bool = False
    #: Whether a refresh token is good for one refresh: presented again, it is taken for stolen
    #: (RFC 9700 section 4.14.2) and every token issued is revoked, as GitHub or Auth0 do.
    rotate_refresh: bool = False
    token_requests: int = 0
    #: Refresh requests answered (any outcome), and refresh tokens presented a second time.
    refreshes: int = 0
    reuses: int = 0
    used_refresh: set[str] = field(default_factory=set)
    release: threading.Event = field(default_factory=threading.Event)

    def upstream(self, name: str = "Fake ID") -> Upstream:
        """The proxy's description of this provider."""
        return Upstream(
            name=name,
            authorization_endpoint=self.base + "/authorize",
            token_endpoint=self.base + "/token",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            scopes=("openid", "email"),
            identity="id_token",
            issuer=self.base,
            jwks_uri=self.base + "/jwks",
            revocation_endpoint=self.base + "/revoke",
        )

    def secrets(self) -> list[str]:
        """Everything that must never appear in a page or a log line."""
        return [CLIENT_SECRET, *self.issued, *self.codes]

    def sign_in(self, upstream_url: str, subject: str = "alice") -> str:
        """The user signs in at this provider: the proxy's callback URL with a fresh code and the state."""
        query = {name: values[0] for name, values in parse_qs(urlsplit(upstream_url).query).items()}
        assert upstream_url.startswith(self.base + "/authorize?"), upstream_url
        assert query["client_id"] == CLIENT_ID
        code = "up-code-" + random.token_urlsafe(16)
        self.codes[code] = _Code(subject, query.get("nonce"))
        return query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})

    def deny(self, upstream_url: str) -> str:
        """The user refuses at this provider: the proxy's callback URL with ``error=access_denied``."""
        query = {name: values[0] for name, values in parse_qs(urlsplit(upstream_url).query).items()}
        return query["redirect_uri"] + "?" + urlencode({"error": "access_denied", "state": query["state"]})

    # -- the provider's endpoints ------------------------------------------------------------------

    def _id_token(self, code: _Code) -> str:
        nonce = "not-the-nonce" if self.token_mode == "bad_nonce" else code.nonce
        claims: dict[str, Any] = {"email": f"{code.subject}@example.com", "nonce": nonce}
        subject: str | None = None if self.token_mode == "no_subject" else code.subject
        signer = self.other_key if self.token_mode == "bad_signature" else self.key
        return signer.create_token(subject, issuer=self.base, audience=CLIENT_ID, additional_claims=claims)

    def _tokens(self, code: _Code | None) -> dict[str, Any]:
        access = "up-access-" + random.token_urlsafe(16)
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": self.expires_in}
        self.issued.append(access)
        if self.refresh_tokens:
            body["refresh_token"] = "up-refresh-" + random.token_urlsafe(16)
            self.issued.append(body["refresh_token"])
        if code is not None:
            body["id_token"] = self._id_token(code)
        return body

    async def token(self, request: Request) -> Response:
        self.token_requests += 1
        form = await request.form()
        if form.get("client_secret") != CLIENT_SECRET:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        mode = self.token_mode
        if mode == "slow":
            await anyio.to_thread.run_sync(self.release.wait)
        if mode == "down":
            return Response("<html><body>503 Service Unavailable</body></html>", 503, media_type="text/html")
        if mode == "error_json":
            return JSONResponse({"error": "server_error", "error_description": "try later"}, status_code=500)
        if mode == "html":
            return Response("<html><body>Oops, an error page</body></html>", media_type="text/html")
        if mode == "garbage":
            return Response(b"\x00\xff{not json", media_type="application/json")
        if form.get("grant_type") == "refresh_token":
            self.refreshes += 1
            token = str(form.get("refresh_token"))
            if self.rotate_refresh and token in self.used_refresh:
                self.reuses += 1
                self.revoked.update(self.issued)
            self.used_refresh.add(token)
            if self.refuse_refresh or token in self.revoked:
                return JSONResponse({"error": "invalid_grant"}, status_code=400)
            return JSONResponse(self._tokens(None))
        code = self.codes.pop(str(form.get("code")), None)
        if code is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        return JSONResponse(self._tokens(code))

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(self.key.jwks())

    async def revoke(self, request: Request) -> Response:
        form = await request.form()
        self.revoked.add(str(form.get("token")))
        return Response(status_code=200)

    def app(self) -> Starlette:
        """The provider's endpoints."""
        return Starlette(
            routes=[
                Route("/token", self.token, methods=["POST"]),
                Route("/jwks", self.jwks),
                Route("/revoke", self.revoke, methods=["POST"]),
            ]
        )


@contextmanager
def fake_upstream(**options: Any) -> Iterator[FakeUpstream]:
    """A served :class:`FakeUpstream`; a held ``slow`` answer is released when the block ends."""
    fake = FakeUpstream(**options)
    with serve(fake.app()) as base:
        fake.base = base
        try:
            yield fake
        finally:
            fake.release.set()


# -- the proxy in front of it, and a browser's steps -------------------------------------------------


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the proxy's base URL is needed before it is served)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def proxy_of(
    fake: FakeUpstream, db: Path, clock: Callable[[], float] = time.time, **options: Any
) -> Iterator[tuple[OAuthProxy, str]]:
    """An :class:`OAuthProxy` in front of ``fake`` on a SQLite file, served alone: ``(proxy, base URL)``."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    options.setdefault("upstream_timeout", 2.0)
    proxy = OAuthProxy(
        fake.upstream(),
        base_url=base,
        store=SQLiteStore(db, clock=clock),
        clock=clock,
        scopes=SCOPES,
        clients=[PUBLIC_CLIENT, OTHER_CLIENT],
        resources=[base + "/mcp"],
        **options,
    )
    with serve(proxy.app(), port=port):
        yield proxy, base


#: A second public client, for consent given to one client and used for another.
OTHER_CLIENT = Client(
    client_id="other-client",
    client_name="Another Client",
    redirect_uris=("http://127.0.0.1/other",),
    application_type="native",
)
OTHER_REDIRECT = "http://127.0.0.1:5173/other"


@dataclass
class Authorization:
    """One authorization request of a client, as the browser makes it."""

    base: str
    client_id: str = PUBLIC_CLIENT.client_id
    redirect_uri: str = REDIRECT
    scope: str = "notes:read"
    state: str = "client-state"
    verifier: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def url(self) -> str:
        """The ``/authorize`` URL, with a fresh PKCE challenge."""
        self.verifier, challenge = pkce_pair()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": self.state,
            "scope": self.scope,
            "resource": self.base + "/mcp",
            **self.extra,
        }
        return self.base + "/authorize?" + urlencode(query)


async def consent_page(http: httpx2.AsyncClient, request: Authorization) -> httpx2.Response:
    """GET /authorize: the proxy's consent page (or its redirect upstream, when consent is remembered)."""
    return await http.get(request.url())


async def approve(
    http: httpx2.AsyncClient, base: str, consent: httpx2.Response, *, remember: bool = False, **values: str
) -> httpx2.Response:
    """Press Allow on the proxy's consent page (``values`` override the form's fields)."""
    form = only_form(consent)
    data = {**form.fields, "decision": "approve", **values}
    if remember:
        data["remember"] = "yes"
    return await http.post(base + form.action, data=data)


async def tokens_for(http: httpx2.AsyncClient, base: str, request: Authorization, callback: httpx2.Response) -> Any:
    """The proxy's tokens for the code of ``callback`` (a redirect to the client)."""
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback.headers["location"]).query).items()}
    response = await http.post(
        base + "/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "code_verifier": request.verifier,
            "redirect_uri": request.redirect_uri,
            "client_id": request.client_id,
            "resource": base + "/mcp",
        },
    )
    assert response.status_code == 200, response.text
    return response.json()


async def signed_in(
    http: httpx2.AsyncClient, fake: FakeUpstream, base: str, request: Authorization | None = None
) -> tuple[Authorization, Any]:
    """A whole sign-in through the proxy: consent, the provider, the code; ``(request, the proxy's tokens)``."""
    request = request or Authorization(base)
    upstream = await approve(http, base, await consent_page(http, request))
    callback = await http.get(fake.sign_in(upstream.headers["location"]))
    return request, await tokens_for(http, base, request, callback)
