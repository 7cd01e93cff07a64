"""``server.admin``: clients, grants, consents and signing keys, on real SQLite files and a real Redis.

Each test runs once per store. Tokens are minted and refreshed by the server's own
services, and checked by its verifier, so a revocation is seen where a client would see it.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion import AccessToken
from bastion._core.errors import TokenInactive
from bastion.authserver import (
    AdminError,
    AuthorizationServer,
    Client,
    ClientInfo,
    GrantInfo,
    InvalidGrant,
    RememberedConsent,
    User,
)
from bastion.authserver._browser.consent import remember_consent
from bastion.authserver._browser.flows import Flow, start_session
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.authserver._models import hash_secret
from bastion.storage import Store, open_store

from support.authserver import CONFIDENTIAL_CLIENT, PUBLIC_CLIENT, SCOPES, USERS

ISSUER = "https://auth.example"
RESOURCE = "https://mcp.example/mcp"
REGISTERED_SECRET = "registered-client-secret-0123456789abcdef"
REGISTERED = Client(
    client_id="reg-1",
    client_name="Registered App",
    redirect_uris=("https://app.example/cb",),
    token_endpoint_auth_method="client_secret_basic",
    client_secret_hash=hash_secret(REGISTERED_SECRET),
    client_id_issued_at=1_700_000_000,
    client_secret_expires_at=0,
    kind="registered",
)


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'auth.db'}"


def make(store: Store) -> AuthorizationServer:
    return AuthorizationServer(
        ISSUER, store=store, scopes=SCOPES, clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT], resources=[RESOURCE]
    )


@pytest.fixture
async def server(store_url: str) -> AsyncIterator[AuthorizationServer]:
    store = open_store(store_url)
    server = make(store)
    await server.clients.save(REGISTERED)
    yield server
    await store.aclose()


async def sign_in(server: AuthorizationServer, user: User, client_id: str) -> tuple[str, str, str]:
    """An access token, a refresh token and the grant id of ``user``'s approval of ``client_id``."""
    grant_id = await server.new_grant(user, client_id)
    scopes = ("notes:read", "offline_access")
    refresh = await RefreshTokens(server).issue(
        client_id=client_id, user=user, scopes=scopes, resources=(RESOURCE,), grant_id=grant_id
    )
    access, _ = await server.access_tokens.mint(
        client_id=client_id, subject=user.subject, scopes=scopes, resource=RESOURCE, grant_id=grant_id, user=user
    )
    return access, refresh, grant_id


async def refused(server: AuthorizationServer, access: str, refresh: str, client: Client) -> None:
    """The access token is refused and the refresh token is ``invalid_grant``."""
    with pytest.raises(TokenInactive):
        await server.resource_verifier(RESOURCE).verify(access)
    with pytest.raises(InvalidGrant):
        await RefreshTokens(server).rotate(refresh, client)


def remembered(client_id: str) -> Flow:
    return Flow(
        id="flow",
        csrf="csrf",
        client_id=client_id,
        client_name=client_id,
        redirect_uri="https://app.example/cb",
        redirect_uri_sent=True,
        state=None,
        code_challenge="x" * 43,
        scopes=("notes:read",),
        resource=RESOURCE,
    )


# -- clients -------------------------------------------------------------------------------


async def test_clients_lists_static_and_registered_clients_without_their_secrets(
    server: AuthorizationServer,
) -> None:
    clients = await server.admin.clients()
    assert [(c.client_id, c.kind) for c in clients] == [
        ("confidential-client", "static"),
        ("public-client", "static"),
        ("reg-1", "registered"),
    ]
    registered = clients[2]
    assert registered == await server.admin.client("reg-1")
    assert (registered.client_name, registered.token_endpoint_auth_method) == ("Registered App", "client_secret_basic")
    assert registered.redirect_uris == ("https://app.example/cb",)
    assert registered.issued_at == 1_700_000_000
    assert registered.deletable
    assert not clients[0].deletable
    dumped = json.dumps([c.to_dict() for c in clients])
    for secret in (REGISTERED_SECRET, hash_secret(REGISTERED_SECRET), CONFIDENTIAL_CLIENT.client_secret_hash or "?"):
        assert secret not in dumped
    assert "client_secret_hash" not in ClientInfo.__dataclass_fields__
    assert await server.admin.client("no-such-client") is None


async def test_deleting_a_client_revokes_its_grants_and_consents_everywhere(server: AuthorizationServer) -> None:
    access, refresh, _ = await sign_in(server, USERS["alice"], "reg-1")
    await remember_consent(server, "alice", remembered("reg-1"))
    other, _, _ = await sign_in(server, USERS["alice"], "public-client")
    verifier = server.resource_verifier(RESOURCE)
    assert isinstance(await verifier.verify(access), AccessToken)  # cached now

    assert await server.admin.delete_client("reg-1") == 1

    assert await server.admin.client("reg-1") is None
    assert await server.clients.get("reg-1") is None
    with pytest.raises(TokenInactive):
        await verifier.verify(access)  # the cache was cleared
    with pytest.raises(InvalidGrant):
        await RefreshTokens(server).rotate(refresh, REGISTERED)
    assert await server.admin.consents(client_id="reg-1") == []
    assert isinstance(await verifier.verify(other), AccessToken)  # another client's grant stays
    with pytest.raises(AdminError, match="no client 'reg-1'"):
        await server.admin.delete_client("reg-1")


async def test_a_static_client_cannot_be_deleted_from_the_store(server: AuthorizationServer) -> None:
    access, _, _ = await sign_in(server, USERS["alice"], "public-client")
    with pytest.raises(AdminError, match="configured in code or a clients file"):
        await server.admin.delete_client("public-client")
    assert await server.admin.client("public-client") is not None
    assert isinstance(await server.resource_verifier(RESOURCE).verify(access), AccessToken)


# -- grants --------------------------------------------------------------------------------


async def test_grants_are_listed_by_user_and_by_client(server: AuthorizationServer) -> None:
    _, refresh, alice_public = await sign_in(server, USERS["alice"], "public-client")
    _, _, alice_reg = await sign_in(server, USERS["alice"], "reg-1")
    _, _, bob_public = await sign_in(server, USERS["bob"], "public-client")

    every = await server.admin.grants()
    assert {g.grant_id for g in every} == {alice_public, alice_reg, bob_public}
    assert {g.grant_id for g in await server.admin.grants(subject="alice")} == {alice_public, alice_reg}
    assert {g.grant_id for g in await server.admin.grants(client_id="public-client")} == {alice_public, bob_public}
    assert [g.grant_id for g in await server.admin.grants(subject="bob", client_id="public-client")] == [bob_public]
    assert await server.admin.grants(subject="carol") == []

    grant = await server.admin.grant(alice_public)
    assert isinstance(grant, GrantInfo)
    assert (grant.subject, grant.client_id) == ("alice", "public-client")
    assert grant.scopes == ("notes:read", "offline_access")
    assert grant.resources == (RESOURCE,)
    assert grant.refreshable
    assert grant.created_at > 0
    assert refresh not in json.dumps([g.to_dict() for g in every])
    assert hash_secret(refresh) not in json.dumps([g.to_dict() for g in every])


async def test_revoking_one_grant(server: AuthorizationServer) -> None:
    access, refresh, grant_id = await sign_in(server, USERS["alice"], "public-client")
    kept, _, _ = await sign_in(server, USERS["alice"], "public-client")
    assert await server.admin.revoke_grant(grant_id) is True
    await refused(server, access, refresh, PUBLIC_CLIENT)
    assert isinstance(await server.resource_verifier(RESOURCE).verify(kept), AccessToken)
    assert await server.admin.grant(grant_id) is None
    assert await server.admin.revoke_grant(grant_id) is False


async def test_revoking_a_user_revokes_every_grant_and_signs_them_out(server: AuthorizationServer) -> None:
    first = await sign_in(server, USERS["alice"], "public-client")
    second = await sign_in(server, USERS["alice"], "reg-1")
    bob, _, _ = await sign_in(server, USERS["bob"], "public-client")
    session_id, _ = await start_session(server, USERS["alice"])

    assert await server.admin.revoke_user("alice") == 2

    await refused(server, first[0], first[1], PUBLIC_CLIENT)
    await refused(server, second[0], second[1], REGISTERED)
    assert isinstance(await server.resource_verifier(RESOURCE).verify(bob), AccessToken)
    assert await server.admin.grants(subject="alice") == []
    assert await server.signed_in_clients("alice") == []
    assert await server.store.get("session", hash_secret(session_id)) is None
    assert await server.admin.revoke_user("alice") == 0


async def test_revoking_a_client_revokes_every_users_grant_to_it(server: AuthorizationServer) -> None:
    alice = await sign_in(server, USERS["alice"], "public-client")
    bob = await sign_in(server, USERS["bob"], "public-client")
    other, _, _ = await sign_in(server, USERS["alice"], "reg-1")

    assert await server.admin.revoke_client("public-client") == 2

    await refused(server, alice[0], alice[1], PUBLIC_CLIENT)
    await refused(server, bob[0], bob[1], PUBLIC_CLIENT)
    assert isinstance(await server.resource_verifier(RESOURCE).verify(other), AccessToken)
    assert await server.admin.client("public-client") is not None  # the client stays


async def test_a_revocation_reaches_another_replica_on_the_same_store(
    server: AuthorizationServer, store_url: str
) -> None:
    replica_store = open_store(store_url)
    replica = make(replica_store)
    try:
        access, _, _ = await sign_in(server, USERS["alice"], "public-client")
        told = asyncio.Event()
        forget = replica.revocations.forget

        def forgotten() -> None:
            forget()
            told.set()

        replica.revocations.forget = forgotten
        verifier = replica.resource_verifier(RESOURCE)
        # The first check waits for the replica's subscription; the token is then in its cache.
        assert isinstance(await verifier.verify(access), AccessToken)

        await server.admin.revoke_user("alice")

        await asyncio.wait_for(told.wait(), timeout=10)
        with pytest.raises(TokenInactive):
            await verifier.verify(access)
    finally:
        await replica.revocations.aclose()
        await replica_store.aclose()


# -- consents ------------------------------------------------------------------------------


async def test_consents_are_listed_and_withdrawn(server: AuthorizationServer) -> None:
    await remember_consent(server, "alice", remembered("public-client"))
    await remember_consent(server, "alice", remembered("reg-1"))
    await remember_consent(server, "bob", remembered("public-client"))
    access, refresh, _ = await sign_in(server, USERS["alice"], "public-client")

    every = await server.admin.consents()
    assert [(c.subject, c.client_id) for c in every] == [
        ("alice", "public-client"),
        ("alice", "reg-1"),
        ("bob", "public-client"),
    ]
    assert all(isinstance(c, RememberedConsent) and c.scopes == ("notes:read",) for c in every)
    assert [c.client_id for c in await server.admin.consents(subject="alice")] == ["public-client", "reg-1"]
    assert [c.subject for c in await server.admin.consents(client_id="public-client")] == ["alice", "bob"]

    assert await server.admin.withdraw_consent("alice", "public-client") is True
    await refused(server, access, refresh, PUBLIC_CLIENT)
    assert [c.client_id for c in await server.admin.consents(subject="alice")] == ["reg-1"]
    assert await server.admin.withdraw_consent("alice", "public-client") is False


# -- signing keys --------------------------------------------------------------------------


async def test_rotating_the_signing_key_keeps_the_old_one_published(server: AuthorizationServer) -> None:
    assert await server.admin.signing_keys() == []  # none is made by looking
    before, _, _ = await sign_in(server, USERS["alice"], "public-client")
    [old] = await server.admin.signing_keys()
    assert old.signing

    new = await server.admin.rotate_signing_key()

    assert new.kid != old.kid
    assert new.alg == old.alg == "ES256"
    ring = await server.admin.signing_keys()
    assert [(k.kid, k.signing) for k in ring] == [(old.kid, False), (new.kid, True)]
    assert {k["kid"] for k in (await server.keys.public_jwks())["keys"]} == {old.kid, new.kid}
    after, _, _ = await sign_in(server, USERS["alice"], "public-client")
    verifier = server.resource_verifier(RESOURCE)
    assert (await verifier.verify(before)).claims is not None
    assert isinstance(await verifier.verify(after), AccessToken)
    header = json.loads(_b64(after.split(".")[0]))
    assert header["kid"] == new.kid
    assert set(ring[0].to_dict()) == {"kid", "alg", "created_at", "signing"}  # no key material


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
