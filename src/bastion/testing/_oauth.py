"""Drive the SDK's OAuth client headlessly, against an authorization server that approves without pages.

With ``AuthorizationServer(auto_approve=...)`` (or ``bastion demo --auto-approve USER``)
the authorization endpoint redirects straight back to the client. :class:`HeadlessBrowser`
plays the browser: it follows the authorization URL to that redirect and hands the
code to the SDK's ``OAuthClientProvider``, so a test runs the whole flow (discovery,
registration, PKCE, token, refresh, step-up) with no person and no browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

__all__ = ["HeadlessBrowser", "MemoryTokenStorage", "oauth_client"]

#: The redirect URI headless clients register; nothing listens there, the browser stops at it.
HEADLESS_REDIRECT_URI = "http://127.0.0.1:33418/callback"


class MemoryTokenStorage:
    """The SDK's ``TokenStorage`` in memory: tokens and client registration of one client."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        """The stored tokens."""
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        """Store tokens."""
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        """The stored client registration."""
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        """Store the client registration."""
        self.client_info = client_info


class HeadlessBrowser:
    """The user's browser, for an authorization server that redirects back without pages.

    Args:
        verify: TLS verification for the authorization server (``False`` or an
            ``ssl.SSLContext`` for a test certificate).
    """

    def __init__(self, *, verify: object = True) -> None:
        self._verify = verify
        self._result: AuthorizationCodeResult | None = None
        #: Every authorization URL visited, for assertions.
        self.visited: list[str] = []

    async def redirect_handler(self, authorization_url: str) -> None:
        """Open the authorization URL and follow it to the redirect back to the client.

        Raises:
            AssertionError: the server answered with a page or an error instead.
        """
        self.visited.append(authorization_url)
        async with httpx2.AsyncClient(follow_redirects=False, verify=self._verify) as http:  # type: ignore[arg-type]
            response = await http.get(authorization_url)
        location = response.headers.get("location")
        if response.status_code not in (302, 303) or not location:
            raise AssertionError(
                f"the authorization endpoint answered HTTP {response.status_code} instead of redirecting back "
                "(is auto_approve set?)"
            )
        query = parse_qs(urlsplit(location).query)
        if "error" in query:
            raise AssertionError(f"the authorization server refused: {query['error'][0]}")
        self._result = AuthorizationCodeResult(
            code=query["code"][0],
            state=query.get("state", [None])[0],
            iss=query.get("iss", [None])[0],
        )

    async def callback_handler(self) -> AuthorizationCodeResult:
        """The parameters the authorization server redirected back with."""
        result, self._result = self._result, None
        if result is None:
            raise AssertionError("no authorization response was received")
        return result


def oauth_client(
    server_url: str,
    *,
    client_name: str = "bastion headless client",
    scope: str | None = None,
    client_metadata_url: str | None = None,
    redirect_uris: Sequence[str] = (HEADLESS_REDIRECT_URI,),
    storage: MemoryTokenStorage | None = None,
    browser: HeadlessBrowser | None = None,
) -> OAuthClientProvider:
    """The SDK's ``OAuthClientProvider`` for ``server_url`` (the MCP endpoint), driven headlessly.

    Pass it as ``auth=`` of an ``httpx2.AsyncClient`` given to the SDK's streamable
    HTTP client. ``client_metadata_url`` makes it use a Client ID Metadata Document
    instead of dynamic registration when the server supports it.
    """
    browser = browser or HeadlessBrowser()
    metadata = OAuthClientMetadata(
        client_name=client_name,
        redirect_uris=[AnyUrl(uri) for uri in redirect_uris],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
        scope=scope,
    )
    return OAuthClientProvider(
        server_url,
        metadata,
        storage or MemoryTokenStorage(),
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
        client_metadata_url=client_metadata_url,
    )
