"""Shared pieces of the authorization server tests: users, clients, a served server, PKCE, a fake clock, codes.

The fixtures here are named by ``name=``: a test file that wants the fixture ``http`` imports
``from as_support import http_fixture as http_fixture`` (pytest finds fixtures among a module's
names; the redundant alias marks the import as deliberate).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Client, User
from bastion.authserver._codes import CodeGrant
from bastion.authserver._models import hash_secret
from bastion.storage import SQLiteStore
from bastion.testing import serve

from support.clock import FakeClock

PASSWORDS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw"}
USERS = {
    "alice": User("alice", name="Alice Liddell", email="alice@example.com", roles=("admin",)),
    "bob": User("bob", name="Bob", email="bob@example.com"),
}
SCOPES = {"notes:read": "Read your notes", "notes:write": "Change your notes"}

#: A loopback redirect URI of ``PUBLIC_CLIENT`` (registered without a port, so any port matches).
REDIRECT = "http://127.0.0.1:5173/callback"
#: A public client with a loopback redirect (any port is accepted for it, RFC 8252).
PUBLIC_CLIENT = Client(
    client_id="public-client",
    client_name="Test Public Client",
    redirect_uris=("http://127.0.0.1/callback",),
    application_type="native",
)
#: A confidential web client (client_secret_basic).
CONFIDENTIAL_SECRET = "confidential-client-secret-value-0123456789"
CONFIDENTIAL_CLIENT = Client(
    client_id="confidential-client",
    client_name="Test Web Client",
    redirect_uris=("https://app.example.com/callback",),
    token_endpoint_auth_method="client_secret_basic",
    grant_types=("authorization_code", "refresh_token", "client_credentials"),
    client_secret_hash=hash_secret(CONFIDENTIAL_SECRET),
)


async def check_user(username: str, password: str) -> User | None:
    """The users= callable of the tests: two users with known passwords."""
    expected = PASSWORDS.get(username)
    if expected is None or not secrets.compare_digest(expected, password):
        return None
    return USERS[username]


def make_server(tmp_path: Path, **options: Any) -> AuthorizationServer:
    """An authorization server on a fresh SQLite file, with the test users, scopes and clients."""
    options.setdefault("store", SQLiteStore(tmp_path / "auth.db"))
    options.setdefault("users", check_user)
    options.setdefault("scopes", SCOPES)
    options.setdefault("clients", [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT])
    return AuthorizationServer(**options)


def clocked_server(tmp_path: Path, clock: FakeClock, **options: Any) -> AuthorizationServer:
    """``make_server`` whose server and SQLite store both read ``clock``."""
    return make_server(tmp_path, clock=clock, store=SQLiteStore(tmp_path / "auth.db", clock=clock), **options)


@contextmanager
def serving(server: AuthorizationServer) -> Iterator[str]:
    """Serve the authorization server alone on 127.0.0.1; yields its base URL (the issuer's origin).

    The resource ``<base>/mcp`` is registered as the one audience.
    """
    with serve(server.app()) as url:
        server.set_issuer(url)
        server.add_resource(url + "/mcp")
        yield url


def pkce_pair() -> tuple[str, str]:
    """A fresh ``(code_verifier, code_challenge)`` for S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@pytest.fixture(name="clock")
def clock_fixture() -> FakeClock:
    """Fixture ``clock``: a fake clock starting at the real time."""
    return FakeClock()


@pytest.fixture(name="base")
def base_fixture(server: AuthorizationServer) -> Iterator[str]:
    """Fixture ``base``: the test file's ``server`` fixture, served; its base URL (see ``serving``)."""
    with serving(server) as url:
        yield url


@pytest.fixture(name="http")
async def http_fixture() -> AsyncIterator[httpx2.AsyncClient]:
    """Fixture ``http``: an HTTP client for the test, closed after it."""
    async with httpx2.AsyncClient() as client:
        yield client


def basic_auth(client_id: str, secret: str) -> dict[str, str]:
    """The ``Authorization`` header of HTTP Basic client authentication (RFC 6749 section 2.3.1).

    The id and secret are form-urlencoded first, as the RFC requires.
    """
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def oauth_error(response: httpx2.Response) -> str:
    """The ``error`` code of an RFC 6749 error response, which must not be cached."""
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    return str(body["error"])


async def issue_code(
    server: AuthorizationServer,
    *,
    challenge: str,
    client_id: str = "public-client",
    redirect_uri: str = REDIRECT,
    sent: bool = True,
    scopes: tuple[str, ...] = ("notes:read",),
) -> str:
    """A code as /authorize would issue it after alice's consent, for the server's first resource.

    ``sent`` says whether the authorization request carried ``redirect_uri``.
    """
    user = USERS["alice"]
    grant_id = await server.new_grant(user, client_id)
    grant = CodeGrant(
        client_id=client_id,
        redirect_uri=redirect_uri,
        redirect_uri_sent=sent,
        code_challenge=challenge,
        scopes=scopes,
        resource=server.resources[0],
        user=user,
        grant_id=grant_id,
        auth_time=int(server.clock()),
    )
    return await server.codes.issue(grant)


async def code_request(
    server: AuthorizationServer, scopes: tuple[str, ...] = ("notes:read",), /, **overrides: str | None
) -> dict[str, str]:
    """A valid authorization_code token request for the public client, with a fresh code for ``scopes``.

    ``overrides`` replace form parameters; ``None`` drops one.
    """
    verifier, challenge = pkce_pair()
    data: dict[str, str | None] = {
        "grant_type": "authorization_code",
        "code": await issue_code(server, challenge=challenge, scopes=scopes),
        "code_verifier": verifier,
        "redirect_uri": REDIRECT,
        "client_id": "public-client",
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


async def code_tokens(
    server: AuthorizationServer,
    http: httpx2.AsyncClient,
    base: str,
    scopes: tuple[str, ...] = ("notes:read", "notes:write"),
) -> dict[str, Any]:
    """Alice's tokens for the public client, through the authorization code grant at ``base``."""
    response = await http.post(base + "/token", data=await code_request(server, scopes))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(
    http: httpx2.AsyncClient, base: str, token: str, client_id: str = "public-client", **extra: str
) -> httpx2.Response:
    """The answer of the token endpoint at ``base`` to the refresh token grant with ``token``."""
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id, **extra}
    return await http.post(base + "/token", data=data)
