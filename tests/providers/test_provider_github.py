"""The GitHub provider: the whole flow through the proxy against a GitHub-shaped fake, refreshes, faults, URLs.

The fake (``fake_github.FakeGitHub``) behaves like GitHub: opaque tokens, HTTP 200 error answers at
the token endpoint, no id_token, the user read from the REST API, a private email only in
``/user/emails``, and GitHub Apps' expiring tokens with rotating refresh tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import pytest

from bastion import MCPServer, UpstreamUnavailable, get_access_token, require_auth
from bastion.providers.github import GitHub, github_upstream
from bastion.proxy import UpstreamTokens
from bastion.proxy._upstream_client import UpstreamClient
from bastion.storage import SQLiteStore
from bastion.testing import MemoryTokenStorage, serve

from support.authserver import PUBLIC_CLIENT, REDIRECT, pkce_pair
from support.clock import FakeClock
from support.fake_github import FakeGitHub
from support.proxy import ProxyBrowser, authorize, connected, free_port, records, sdk_client


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def github(port: int, clock: FakeClock) -> Iterator[FakeGitHub]:
    with FakeGitHub(redirect_uri=f"http://127.0.0.1:{port}/auth/callback", clock=clock) as fake:
        yield fake


def github_server(
    github: FakeGitHub, port: int, db: Path, clock: FakeClock, client_secret: str | None = None
) -> MCPServer:
    """An MCP server behind the GitHub provider, with a tool that reads the user and uses the GitHub token."""
    base = f"http://127.0.0.1:{port}"
    auth = GitHub(
        client_id=github.client_id,
        client_secret=client_secret or github.client_secret,
        base_url=base,
        github_url=github.url,
        api_url=github.api_url,
        store=SQLiteStore(db, clock=clock),
        clock=clock,
        clients=[PUBLIC_CLIENT],
    )
    mcp = MCPServer("Repos", auth=auth, resource_url=base + "/mcp")

    @mcp.tool(auth=require_auth)
    async def whoami() -> dict[str, Any]:
        token = get_access_token()
        try:
            upstream = await token.upstream()
        except UpstreamUnavailable as exc:
            return {"gone": str(exc)}
        async with httpx2.AsyncClient() as http:
            user = await http.get(github.api_url + "/user", headers={"Authorization": f"Bearer {upstream}"})
        return {
            "subject": token.subject,
            "login": token.claim("login"),
            "name": token.claim("name"),
            "email": token.claim("email"),
            "avatar_url": token.claim("avatar_url"),
            "claims": sorted(token.claims or {}),
            "upstream": upstream,
            "api_login": user.json().get("login"),
        }

    return mcp


async def test_the_whole_flow_with_an_oauth_app(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    storage = MemoryTokenStorage()
    mcp = github_server(github, port, tmp_path / "proxy.db", clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        async with httpx2.AsyncClient() as http:
            browser = ProxyBrowser(http)
            client_provider = sdk_client(url, browser, storage)
            async with connected(url, client_provider) as client:
                result = (await client.call_tool("whoami", {})).structured_content
                assert result is not None
                assert result["subject"] == "583231"  # the numeric id: a login can be renamed
                assert result["login"] == "octocat"
                assert result["name"] == "The Octocat"
                assert result["email"] == "octocat@github.com"
                assert result["avatar_url"] == "https://avatars.githubusercontent.com/u/583231?v=4"
                assert "followers_url" not in result["claims"]  # GitHub's URL fields stay out of our tokens
                assert result["upstream"].startswith("gho_")  # the GitHub token, for the tool only
                assert result["api_login"] == "octocat"
                # The client holds the proxy's own token, never GitHub's.
                assert storage.tokens is not None
                assert storage.tokens.access_token.count(".") == 2
                assert not storage.tokens.access_token.startswith("gho_")
                # A week later the client refreshes at the proxy: an OAuth App token has no expiry and no
                # refresh token, the session goes on with the same GitHub token.
                first = storage.tokens
                clock.now += 7 * 86400
                client_provider.context.token_expiry_time = 1.0
                later = (await client.call_tool("whoami", {})).structured_content
                assert later is not None
                assert later["upstream"] == result["upstream"]
                assert storage.tokens.refresh_token != first.refresh_token
                assert len(browser.consent_pages) == 1  # no new sign-in
            assert "GitHub" in browser.consent_pages[0]

            # Revoking the grant at the proxy revokes the GitHub token too.
            info = storage.client_info
            assert info is not None
            revoked = await http.post(
                base + "/revoke", data={"token": storage.tokens.refresh_token or "", "client_id": info.client_id}
            )
            assert revoked.status_code == 200
            assert github.revoked == [result["upstream"]]
            assert github.user_of(result["upstream"]) is None


async def test_a_private_email_is_read_from_user_emails(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    github.signed_in = "monalisa"
    mcp = github_server(github, port, tmp_path / "proxy.db", clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        async with (
            httpx2.AsyncClient() as http,
            connected(url, sdk_client(url, ProxyBrowser(http), MemoryTokenStorage())) as client,
        ):
            result = (await client.call_tool("whoami", {})).structured_content
    assert result is not None
    assert (result["subject"], result["login"], result["email"]) == ("1001", "monalisa", "mona@example.com")


async def test_github_app_tokens_are_refreshed_before_they_expire(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    github.app_mode = True
    github.expires_in = 600
    mcp = github_server(github, port, tmp_path / "proxy.db", clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        url = base + "/mcp"
        async with (
            httpx2.AsyncClient() as http,
            connected(url, sdk_client(url, ProxyBrowser(http), MemoryTokenStorage())) as client,
        ):
            first = (await client.call_tool("whoami", {})).structured_content
            assert first is not None
            assert first["upstream"].startswith("ghu_")
            assert first["api_login"] == "octocat"
            clock.now += 590  # ten seconds left: less than a tool is promised
            second = (await client.call_tool("whoami", {})).structured_content
            assert second is not None
            assert second["upstream"].startswith("ghu_")
            assert second["upstream"] != first["upstream"]
            assert second["api_login"] == "octocat"
            assert [r["grant_type"] for r in github.token_requests] == ["authorization_code", "refresh_token"]
            # The refresh token rotated: the next refresh uses the new one, and works.
            clock.now += 590
            third = (await client.call_tool("whoami", {})).structured_content
            assert third is not None
            assert third["api_login"] == "octocat"
            assert third["upstream"] not in (first["upstream"], second["upstream"])
            # GitHub refuses the next refresh: the tool is told the upstream sign-in is gone.
            github.token_error = "bad_refresh_token"
            clock.now += 590
            gone = (await client.call_tool("whoami", {})).structured_content
            assert gone is not None
            assert "upstream refresh failed" in gone["gone"]
            assert "ghr_" not in gone["gone"]


def test_the_upstream_description() -> None:
    upstream = github_upstream(
        client_id="Iv1.abc",
        client_secret="s3cret",
        github_url="https://ghe.example.com/",
        api_url="https://ghe.example.com/api/v3/",
    )
    assert upstream.name == "GitHub"
    assert upstream.authorization_endpoint == "https://ghe.example.com/login/oauth/authorize"
    assert upstream.token_endpoint == "https://ghe.example.com/login/oauth/access_token"
    assert upstream.user_endpoint == "https://ghe.example.com/api/v3/user"
    assert upstream.revocation_endpoint == "https://ghe.example.com/api/v3/applications/Iv1.abc/token"
    assert (upstream.identity, upstream.subject_claim, upstream.pkce) == ("github", "id", True)
    assert upstream.scopes == ("read:user", "user:email")
    assert "s3cret" not in repr(upstream)
    default = github_upstream(client_id="c", client_secret="s")
    assert default.authorization_endpoint == "https://github.com/login/oauth/authorize"
    assert default.user_endpoint == "https://api.github.com/user"


async def test_the_authorization_url_and_the_code_exchange(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    mcp = github_server(github, port, tmp_path / "proxy.db", clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        async with httpx2.AsyncClient() as http:
            upstream_url, answer = await authorize(http, base)
    parts = urlsplit(upstream_url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == github.url + "/login/oauth/authorize"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["client_id"] == github.client_id
    assert query["redirect_uri"] == base + "/auth/callback"
    assert query["scope"] == "read:user user:email"
    assert len(query["state"]) >= 32
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert "nonce" not in query  # no OpenID at GitHub
    # The proxy sent the client back with a code of its own.
    assert answer.status_code in (302, 303)
    assert answer.headers["location"].startswith(REDIRECT + "?code=")
    # GitHub answers JSON only when asked, and takes the client's credentials in the form.
    [exchange] = github.token_requests
    assert exchange["accept"] == "application/json"
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["client_id"] == github.client_id
    assert exchange["client_secret"] == github.client_secret
    assert exchange["redirect_uri"] == base + "/auth/callback"
    assert exchange["code_verifier"]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("500", "HTTP 500"),
        ("html", "not JSON"),
        ("garbage", "not a JSON object"),
        ("no_id", "did not say who signed in"),
    ],
)
async def test_a_failing_user_endpoint_shows_a_clear_page_and_issues_nothing(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock, failure: Any, message: str
) -> None:
    github.user_failure = failure
    db = tmp_path / "proxy.db"
    mcp = github_server(github, port, db, clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        async with httpx2.AsyncClient() as http:
            _, answer = await authorize(http, base)
    assert answer.status_code == 502
    assert answer.headers["content-type"].startswith("text/html")
    assert "The sign-in did not complete" in answer.text
    assert message in answer.text
    assert "GitHub" in answer.text
    assert "gho_" not in answer.text
    assert github.client_secret not in answer.text
    kept = records(db)
    assert (kept["upstream"], kept["grant"], kept["upstream-state"]) == (0, 0, 0)


async def test_a_token_endpoint_error_with_http_200_shows_a_clear_page(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    github.token_error = "bad_verification_code"
    db = tmp_path / "proxy.db"
    mcp = github_server(github, port, db, clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        async with httpx2.AsyncClient() as http:
            _, answer = await authorize(http, base)
    assert answer.status_code == 502
    assert "GitHub refused the token request: bad_verification_code" in answer.text
    assert records(db)["upstream"] == 0


async def test_wrong_client_credentials_are_refused_by_github(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    mcp = github_server(github, port, tmp_path / "proxy.db", clock, client_secret="not-the-secret")
    with serve(mcp.streamable_http_app(), port=port) as base:
        async with httpx2.AsyncClient() as http:
            _, answer = await authorize(http, base)
    assert answer.status_code == 502
    assert "incorrect_client_credentials" in answer.text
    assert "not-the-secret" not in answer.text


async def test_a_user_who_cancels_at_github_sends_the_client_back_with_access_denied(
    github: FakeGitHub, port: int, tmp_path: Path, clock: FakeClock
) -> None:
    github.deny = True
    mcp = github_server(github, port, tmp_path / "proxy.db", clock)
    with serve(mcp.streamable_http_app(), port=port) as base:
        async with httpx2.AsyncClient() as http:
            _, answer = await authorize(http, base)
    assert answer.status_code in (302, 303)
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["access_denied"]
    assert query["state"] == ["client-state"]
    assert github.token_requests == []


async def github_token(github: FakeGitHub, client: UpstreamClient, scope: str) -> UpstreamTokens:
    """A token from the fake's own flow, for the user ``github.signed_in`` and ``scope``."""
    verifier, challenge = pkce_pair()
    query = {
        "client_id": github.client_id,
        "redirect_uri": github.redirect_uri,
        "state": "s",
        "scope": scope,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with httpx2.AsyncClient() as http:
        answer = await http.get(f"{github.url}/login/oauth/authorize?{urlencode(query)}")
    code = parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]
    return await client.exchange_code(code, github.redirect_uri, verifier)


async def test_the_identity_read_from_the_api(github: FakeGitHub) -> None:
    github.signed_in = "monalisa"
    upstream = github_upstream(
        client_id=github.client_id, client_secret=github.client_secret, github_url=github.url, api_url=github.api_url
    )
    client = UpstreamClient(upstream)
    identity = await client.identity(await github_token(github, client, "read:user user:email"), None)
    assert identity.subject == "1001"
    assert identity.name == "Mona Lisa"
    assert identity.email == "mona@example.com"
    assert dict(identity.claims) == {
        "id": 1001,
        "login": "monalisa",
        "name": "Mona Lisa",
        "email": "mona@example.com",
        "avatar_url": "https://avatars.githubusercontent.com/u/1001?v=4",
        "html_url": "https://github.com/monalisa",
    }
    # Without user:email GitHub hides /user/emails (404): a private email is then unknown, not an error.
    no_email = await client.identity(await github_token(github, client, "read:user"), None)
    assert (no_email.subject, no_email.email, no_email.name) == ("1001", None, "Mona Lisa")
