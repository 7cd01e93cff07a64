"""An error answer never repeats a value the client sent: /token, /authorize redirects, /register, /revoke.

A value sent to an OAuth endpoint is the client's raw input (a scope, a grant type, a
parameter's made-up name): the error names what is wrong in words of its own, and the
exact value goes to the error's ``detail`` for the logs only. Parameter names defined by
the specifications may be named.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import unquote_plus, urlencode

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Registration

from support.authserver import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, basic_auth, code_tokens
from support.pages import Browser, browsing, callback_query, request_params

#: Sent as a value; looked for in every answer.
MARKER = "zq-sent-value-3f7a"
LOOPBACK = "http://127.0.0.1:49152/callback"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Browser, AuthorizationServer]]:
    async with browsing(tmp_path, registration=Registration(rate_limit=0)) as served:
        yield served


def assert_unechoed(response: httpx2.Response) -> None:
    """Neither the body nor a header (a redirect's ``Location`` included) holds the marker."""
    texts = [response.text, *response.headers.values()]
    assert not any(MARKER in text or MARKER in unquote_plus(text) for text in texts), (response.headers, response.text)


def description(response: httpx2.Response) -> str:
    assert response.headers["cache-control"] == "no-store"
    return str(response.json().get("error_description", ""))


async def test_token_errors(served: tuple[Browser, AuthorizationServer]) -> None:
    b, server = served
    token = b.base + "/token"
    confidential = basic_auth(CONFIDENTIAL_CLIENT.client_id, CONFIDENTIAL_SECRET)
    tokens = await code_tokens(server, b.http, b.base, scopes=("notes:read",))
    cases = [
        ("invalid_scope", {"grant_type": "client_credentials", "scope": MARKER}, confidential),
        ("unsupported_grant_type", {"grant_type": MARKER, "client_id": "public-client"}, {}),
        (
            "invalid_scope",
            {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "public-client",
                "scope": f"notes:read {MARKER}",
            },
            {},
        ),
    ]
    for error, data, headers in cases:
        response = await b.http.post(token, data=data, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"] == error
        assert description(response)
        assert_unechoed(response)
    # A name the client made up is raw input too; a name the specification defines is said.
    made_up = await b.http.post(token, content=f"{MARKER}=1&{MARKER}=2&grant_type=x", headers=FORM)
    repeated = await b.http.post(token, content="scope=a&scope=b&grant_type=client_credentials", headers=FORM)
    too_long = await b.http.post(token, content=urlencode({MARKER: "x" * 9000}), headers=FORM)
    for response in (made_up, repeated, too_long):
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert_unechoed(response)
    assert description(made_up) == "a parameter is repeated"
    assert description(repeated) == "the scope parameter is repeated"
    assert description(too_long) == "a parameter is too long"


async def test_authorize_error_redirects_and_pages(served: tuple[Browser, AuthorizationServer]) -> None:
    b, _ = served
    redirected = await b.authorize(**request_params(LOOPBACK, scope=f"notes:read {MARKER}"))
    assert callback_query(redirected)["error"] == "invalid_scope"
    assert callback_query(redirected)["error_description"]
    assert_unechoed(redirected)
    repeated = await b.authorize(**request_params(LOOPBACK, **{MARKER: ["1", "2"]}))
    assert callback_query(repeated)["error"] == "invalid_request"
    assert callback_query(repeated)["error_description"] == "a parameter is repeated"
    assert_unechoed(repeated)
    # Before the client is known the error is a page, not a redirect: it does not repeat the value either.
    shown = await b.authorize(**request_params(LOOPBACK, client_id=MARKER))
    assert shown.status_code == 400
    assert_unechoed(shown)


async def test_register_errors(served: tuple[Browser, AuthorizationServer]) -> None:
    b, _ = served
    metadata = {
        "client_name": "Native MCP Client",
        "redirect_uris": ["http://127.0.0.1:33418/callback"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    }
    unknown_scope = await b.http.post(b.base + "/register", json={**metadata, "scope": f"notes:read {MARKER}"})
    assert unknown_scope.status_code == 400
    assert unknown_scope.json()["error"] == "invalid_client_metadata"
    body = json.dumps(metadata)[:-1] + f', "{MARKER}": 1, "{MARKER}": 2}}'
    twice = await b.http.post(b.base + "/register", content=body, headers={"Content-Type": "application/json"})
    assert twice.status_code == 400
    assert twice.json()["error"] == "invalid_request"
    assert "more than once" in description(twice)
    for response in (unknown_scope, twice):
        assert description(response)
        assert_unechoed(response)


async def test_revoke_errors(served: tuple[Browser, AuthorizationServer]) -> None:
    b, _ = served
    content = urlencode([("token", "t"), ("client_id", "public-client"), (MARKER, "1"), (MARKER, "2")])
    response = await b.http.post(b.base + "/revoke", content=content, headers=FORM)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert description(response) == "a parameter is repeated"
    assert_unechoed(response)
