"""Shared pieces of the authorization server tests: users, clients, a served server, PKCE."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bastion.authserver import AuthorizationServer, Client, User
from bastion.authserver._models import hash_secret
from bastion.storage import SQLiteStore
from bastion.testing import serve

PASSWORDS = {"alice": "alice-secret-pw", "bob": "bob-secret-pw"}
USERS = {
    "alice": User("alice", name="Alice Liddell", email="alice@example.com", roles=("admin",)),
    "bob": User("bob", name="Bob", email="bob@example.com"),
}
SCOPES = {"notes:read": "Read your notes", "notes:write": "Change your notes"}

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
