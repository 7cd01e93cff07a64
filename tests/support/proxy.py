"""Shared pieces of the OAuth proxy tests with a fake upstream that signs the user in without a page.

``ProxyBrowser`` plays the user's browser for the SDK's OAuth client: it approves on the proxy's
consent page, follows the upstream's immediate redirect back to the proxy's callback, and hands the
proxy's code to the client. ``authorize`` does the same without the SDK, for a test that looks at
each step (a pre-registered public client, PKCE, the proxy's answer at its callback).
"""

from __future__ import annotations

import socket
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult

from bastion.testing import MemoryTokenStorage, oauth_client

from support.authserver import PUBLIC_CLIENT, REDIRECT, pkce_pair
from support.oidc import sign_in
from support.pages import only_form

#: How many redirects a browser follows from the consent page back to the client.
MAX_HOPS = 5


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a base URL needed before its server starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def is_client_redirect(location: str, redirect_uri: str) -> bool:
    """Whether ``location`` goes back to the client's ``redirect_uri`` (any query)."""
    return location.split("?")[0] == redirect_uri


async def follow(http: httpx2.AsyncClient, location: str, redirect_uri: str) -> httpx2.Response:
    """Follow redirects from ``location`` until one goes to ``redirect_uri``, or a page answers."""
    response = await http.get(location)
    for _ in range(MAX_HOPS):
        if response.status_code not in (302, 303) or is_client_redirect(response.headers["location"], redirect_uri):
            return response
        response = await http.get(response.headers["location"])
    raise AssertionError("too many redirects")


class ProxyBrowser:
    """The user's browser, for the SDK's OAuth client, with an upstream that redirects back at once.

    Attributes:
        consent_pages: The proxy's consent pages seen.
        upstream_urls: Where the proxy sent the browser after consent.
        failure: The page the browser ended on instead of going back to the client.
        refused: The ``error`` the client was sent back with.
    """

    def __init__(self, http: httpx2.AsyncClient, *, approve: bool = True) -> None:
        self.http = http
        self.approve = approve
        self.consent_pages: list[str] = []
        self.upstream_urls: list[str] = []
        self.failure: httpx2.Response | None = None
        self.refused: str | None = None
        self._result: AuthorizationCodeResult | None = None
        self._redirect_uri = ""

    async def redirect_handler(self, url: str) -> None:
        """Consent, go upstream, come back, and keep the proxy's answer for the client."""
        self._redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
        consent = await self.http.get(url)
        assert consent.status_code == 200, consent.text
        self.consent_pages.append(consent.text)
        form = only_form(consent)
        answer = await self.http.post(
            urlsplit(url)._replace(path=form.action, query="").geturl(),
            data={**form.fields, "decision": "approve" if self.approve else "deny"},
        )
        assert answer.status_code == 303
        location = answer.headers["location"]
        if not is_client_redirect(location, self._redirect_uri):
            self.upstream_urls.append(location)
            location = await self.through_upstream(location)
        query = parse_qs(urlsplit(location).query)
        if "error" in query:
            self.refused = query["error"][0]
            raise AssertionError(f"refused: {self.refused}")
        self._result = AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query["iss"][0])

    async def through_upstream(self, location: str) -> str:
        """From the provider's authorization URL to the proxy's redirect back to the client."""
        final = await follow(self.http, location, self._redirect_uri)
        if final.status_code not in (302, 303):
            self.failure = final
            raise AssertionError(f"the sign-in ended on a page: HTTP {final.status_code}")
        return str(final.headers["location"])

    async def callback_handler(self) -> AuthorizationCodeResult:
        """The proxy's code, for the SDK."""
        assert self._result is not None
        result, self._result = self._result, None
        return result


class OIDCBrowser(ProxyBrowser):
    """A :class:`ProxyBrowser` that signs in at the test OpenID provider with its development forms."""

    def __init__(self, http: httpx2.AsyncClient, callback: str, login: str = "alice", approve: bool = True) -> None:
        super().__init__(http, approve=approve)
        self.callback = callback
        self.login = login

    async def through_upstream(self, location: str) -> str:
        """Sign in and consent at the provider, then let the proxy's callback answer."""
        back = await sign_in(self.http, location, self.login, redirect_uris=[self.callback])
        answer = await self.http.get(back)
        assert answer.status_code in (302, 303), answer.text
        return str(answer.headers["location"])


def sdk_client(url: str, browser: ProxyBrowser, storage: MemoryTokenStorage) -> OAuthClientProvider:
    """The SDK's OAuth client for the MCP endpoint ``url``, with ``browser`` as the user's browser."""
    provider = oauth_client(url, storage=storage)
    provider.context.redirect_handler = browser.redirect_handler
    provider.context.callback_handler = browser.callback_handler
    return provider


@asynccontextmanager
async def connected(url: str, provider: OAuthClientProvider) -> AsyncIterator[Client]:
    """An MCP client session to ``url``, authorized by ``provider``."""
    async with (
        httpx2.AsyncClient(auth=provider) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def approve(http: httpx2.AsyncClient, base: str) -> str:
    """``PUBLIC_CLIENT`` asks the proxy at ``base`` and the user approves: the upstream URL the proxy sends to."""
    _, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": PUBLIC_CLIENT.client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "client-state",
        "resource": base + "/mcp",
    }
    consent = await http.get(base + "/authorize?" + urlencode(query))
    assert consent.status_code == 200, consent.text
    form = only_form(consent)
    answer = await http.post(base + form.action, data={**form.fields, "decision": "approve"})
    assert answer.status_code == 303
    return str(answer.headers["location"])


async def authorize(http: httpx2.AsyncClient, base: str) -> tuple[str, httpx2.Response]:
    """``approve``, then through the upstream and back: (the upstream URL, the proxy's last answer).

    The last answer is the proxy's callback's: a redirect to the client, or a page.
    """
    upstream_url = await approve(http, base)
    return upstream_url, await follow(http, upstream_url, REDIRECT)


def records(db: Path) -> Counter[str]:
    """How many records each namespace of a SQLite store holds (expired ones included)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT namespace, COUNT(*) FROM records GROUP BY namespace").fetchall()
    connection.close()
    return Counter({str(namespace): int(count) for namespace, count in rows})
