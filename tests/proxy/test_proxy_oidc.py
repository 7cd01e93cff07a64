"""The OAuth proxy end to end: the SDK's OAuth client, bastion's proxy, and a real OpenID provider.

``oidc-provider`` (Node.js) runs on loopback; the test's browser signs in with
its development forms. The MCP client registers with the proxy, consents on the
proxy's page *before* going upstream, signs in upstream, and gets the proxy's
own tokens; a tool reads the upstream identity and calls the provider's
userinfo endpoint with the upstream token, refreshed as needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion import MCPServer, UpstreamUnavailable, get_access_token, require_auth
from bastion.providers import OIDC
from bastion.storage import SQLiteStore
from bastion.testing import MemoryTokenStorage, oauth_client, serve

from support.oidc import OIDCProvider, sign_in, skip_without_node
from support.pages import only_form
from support.proxy import OIDCBrowser, connected, free_port, sdk_client


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def provider(port: int) -> Iterator[OIDCProvider]:
    skip_without_node()
    with OIDCProvider(redirect_uris=[f"http://127.0.0.1:{port}/auth/callback"], access_token_ttl=30) as op:
        yield op


def proxy_server(provider: OIDCProvider, port: int, db: Path) -> MCPServer:
    base = f"http://127.0.0.1:{port}"
    auth = OIDC(
        config_url=provider.config_url,
        client_id=provider.client_id,
        client_secret=provider.client_secret,
        base_url=base,
        name="Example ID",
        store=SQLiteStore(db),
    )
    mcp = MCPServer("Profile", auth=auth, resource_url=base + "/mcp")

    @mcp.tool(auth=require_auth)
    async def profile() -> dict[str, Any]:
        token = get_access_token()
        upstream = await token.upstream()
        async with httpx2.AsyncClient() as http:
            info = (await http.get(provider.issuer + "/me", headers={"Authorization": f"Bearer {upstream}"})).json()
        return {"subject": token.subject, "email": token.email, "userinfo_email": info.get("email")}

    @mcp.tool(auth=require_auth)
    async def upstream_token() -> str:
        return await get_access_token().upstream()

    return mcp


async def test_the_whole_flow_through_the_proxy(provider: OIDCProvider, port: int, tmp_path: Path) -> None:
    storage = MemoryTokenStorage()
    mcp = proxy_server(provider, port, tmp_path / "proxy.db")
    with serve(mcp.streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        async with httpx2.AsyncClient() as http:
            browser = OIDCBrowser(http, base + "/auth/callback")
            client_provider = sdk_client(url, browser, storage)
            async with connected(url, client_provider) as client:
                result = (await client.call_tool("profile", {})).structured_content
                expected = {"subject": "alice", "email": "alice@example.com", "userinfo_email": "alice@example.com"}
                assert result == expected
                # The proxy's own token (a JWT), never the provider's opaque one.
                assert storage.tokens is not None
                assert storage.tokens.access_token.count(".") == 2
                first = storage.tokens
                client_provider.context.token_expiry_time = 1.0  # refresh at the proxy
                again = (await client.call_tool("profile", {})).structured_content
                assert again == expected  # and the upstream token (30 s) was refreshed before use
                assert storage.tokens.refresh_token != first.refresh_token
                upstream = (await client.call_tool("upstream_token", {})).structured_content
                assert upstream is not None
                provider_token = upstream["result"]
                assert provider_token not in (storage.tokens.access_token, storage.tokens.refresh_token)
            assert "Example ID" in browser.consent_pages[0]

            # Revoking the grant at the proxy: its tokens are refused, the provider's are revoked too.
            info = storage.client_info
            assert info is not None
            revoked = await http.post(
                base + "/revoke", data={"token": storage.tokens.refresh_token or "", "client_id": info.client_id}
            )
            assert revoked.status_code == 200
            call = await http.post(
                url,
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                headers={
                    "Authorization": f"Bearer {storage.tokens.access_token}",
                    "Accept": "application/json, text/event-stream",
                },
            )
            assert call.status_code == 401
            # The provider's token was revoked at the provider too.
            userinfo = await http.get(provider.issuer + "/me", headers={"Authorization": f"Bearer {provider_token}"})
            assert userinfo.status_code == 401


async def test_denying_on_the_proxy_consent_page_never_reaches_the_provider(
    provider: OIDCProvider, port: int, tmp_path: Path
) -> None:
    mcp = proxy_server(provider, port, tmp_path / "proxy.db")
    with serve(mcp.streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        async with httpx2.AsyncClient() as http:
            browser = OIDCBrowser(http, base + "/auth/callback", approve=False)
            with pytest.raises(BaseException):  # noqa: B017, PT011 - the SDK wraps the refusal in a group
                async with connected(url, sdk_client(url, browser, MemoryTokenStorage())) as client:
                    await client.call_tool("profile", {})
        assert browser.refused == "access_denied"
        assert len(browser.consent_pages) == 1


async def test_a_state_is_single_use_and_bound_to_the_browser(
    provider: OIDCProvider, port: int, tmp_path: Path
) -> None:
    mcp = proxy_server(provider, port, tmp_path / "proxy.db")
    callback = f"http://127.0.0.1:{port}/auth/callback"
    with serve(mcp.streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        async with httpx2.AsyncClient() as http:
            captured: list[str] = []

            async def capture(authorize_url: str) -> None:
                consent = await http.get(authorize_url)
                form = only_form(consent)
                answer = await http.post(base + form.action, data={**form.fields, "decision": "approve"})
                captured.append(await sign_in(http, answer.headers["location"], redirect_uris=[callback]))
                raise RuntimeError("stop here")

            client_provider = oauth_client(url)
            client_provider.context.redirect_handler = capture
            with pytest.raises(BaseException):  # noqa: B017, PT011 - the flow is cut on purpose
                async with connected(url, client_provider) as client:
                    await client.call_tool("profile", {})
            assert len(captured) == 1
            # Another browser (no cookies) cannot use this state.
            async with httpx2.AsyncClient() as stranger:
                other = await stranger.get(captured[0])
            assert other.status_code in (400, 403)
            # The state was taken by that attempt: the right browser cannot replay it either.
            replay = await http.get(captured[0])
            assert replay.status_code == 400
            assert "already used or has expired" in replay.text


async def test_no_upstream_token_outside_a_proxy() -> None:
    from bastion import AccessToken

    with pytest.raises(UpstreamUnavailable):
        await AccessToken(token="t", client_id="c", scopes=[]).upstream()
