"""``Admin``: what an operator asks of a running authorization server, on its store.

Which clients are known, who allowed what, revoke a grant, a user or a client now,
list and withdraw consents, rotate the signing key. Everything goes through the
:class:`~bastion.storage.Store` protocol, so it works the same on SQLite and Redis,
from the server's own process (``server.admin``) or from another one on the same
store (the ``bastion`` command). A revocation clears this process's verified-token
caches and is published through the store, so every other process sharing it refuses
the revoked grant's access tokens at once too (``_revocations``).

The records returned are frozen and hold no secret: no client secret or its hash, no
refresh token or its hash, no code, no private key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion._core.errors import BastionError
from bastion.authserver._browser import consent as consent_step
from bastion.authserver._browser.consent import CONSENT_NAMESPACE, RememberedConsent
from bastion.authserver._browser.flows import SESSION_NAMESPACE
from bastion.authserver._keyring import SigningKey
from bastion.authserver._models import Client, ClientKind

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["Admin", "AdminError", "ClientInfo", "GrantInfo", "SigningKeyInfo"]


class AdminError(BastionError):
    """An administrative operation was refused: the client is unknown, or configured in code."""

    description = "administration refused"


@dataclass(frozen=True)
class ClientInfo:
    """A client as an operator sees it: its metadata, never its secret.

    Attributes:
        client_id: Its id.
        kind: ``"registered"`` (through ``/register``, kept in the store), ``"static"``
            (configured in code or a clients file) or ``"metadata_document"`` (a URL
            client id whose document is cached now).
        client_name: The name it registered with, if any.
        redirect_uris: Where it may be sent back with a code.
        grant_types: The grant types it may use.
        token_endpoint_auth_method: How it authenticates (``none`` for a public client).
        scope: The scopes it registered for (space-separated), or ``None`` for any.
        application_type: ``web`` or ``native``, when it said.
        client_uri: Its home page, when it gave one.
        contacts: The contacts it gave.
        software_id: Its software id, when it gave one.
        software_version: Its software version, when it gave one.
        jwks_uri: Where its public keys are (``private_key_jwt``), when it gave one.
        issued_at: When it was registered (seconds since the epoch); ``None`` for a static client.
        secret_expires_at: When its secret expires (``0``: never); ``None`` without a secret.
        introspection: Whether it may introspect every client's tokens.
    """

    client_id: str
    kind: ClientKind
    client_name: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    token_endpoint_auth_method: str
    scope: str | None = None
    application_type: str | None = None
    client_uri: str | None = None
    contacts: tuple[str, ...] = ()
    software_id: str | None = None
    software_version: str | None = None
    jwks_uri: str | None = None
    issued_at: int | None = None
    secret_expires_at: int | None = None
    introspection: bool = False

    @property
    def deletable(self) -> bool:
        """Whether :meth:`Admin.delete_client` can remove it (a static client is removed from its configuration)."""
        return self.kind != "static"

    @classmethod
    def of(cls, client: Client) -> ClientInfo:
        """The operator's view of ``client`` (its secret hash and key set left out)."""
        return cls(
            client_id=client.client_id,
            kind=client.kind,
            client_name=client.client_name,
            redirect_uris=tuple(client.redirect_uris),
            grant_types=tuple(client.grant_types),
            token_endpoint_auth_method=client.token_endpoint_auth_method,
            scope=client.scope,
            application_type=client.application_type,
            client_uri=client.client_uri,
            contacts=tuple(client.contacts),
            software_id=client.software_id,
            software_version=client.software_version,
            jwks_uri=client.jwks_uri,
            issued_at=client.client_id_issued_at,
            secret_expires_at=client.client_secret_expires_at,
            introspection=client.introspection,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        return _json_ready(self)


@dataclass(frozen=True)
class GrantInfo:
    """One grant: a user's approval of one client, which its refresh and access tokens carry.

    Attributes:
        grant_id: Its id (the ``gid`` claim of its access tokens).
        subject: The user who gave it (for ``client_credentials``, the client itself).
        client_id: The client it was given to.
        created_at: When it was given (seconds since the epoch).
        scopes: The scopes of its refresh tokens; empty for a grant without one (no
            ``offline_access``), whose access tokens carry their own.
        resources: The resources its refresh tokens may get access tokens for.
        refreshable: Whether it has a refresh token that can still be used.
    """

    grant_id: str
    subject: str
    client_id: str
    created_at: int
    scopes: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    refreshable: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples as lists)."""
        return _json_ready(self)


@dataclass(frozen=True)
class SigningKeyInfo:
    """One key of the signing ring: its public identity only.

    Attributes:
        kid: Its key id (the ``kid`` of the tokens it signs and of the JWKS entry).
        alg: Its algorithm.
        created_at: When it was made (seconds since the epoch).
        signing: Whether it is the key that signs now (the others are published for verification).
    """

    kid: str
    alg: str
    created_at: int
    signing: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return _json_ready(self)


def _json_ready(record: Any) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(record).items()}


def _key_infos(ring: list[SigningKey]) -> list[SigningKeyInfo]:
    return [
        SigningKeyInfo(kid=key.kid, alg=key.alg, created_at=int(key.created), signing=index == len(ring) - 1)
        for index, key in enumerate(ring)
    ]


class Admin:
    """The administration of one :class:`~bastion.AuthorizationServer` (``server.admin``).

    Every method is async and reads or changes the server's store; the proxy has the
    same (``proxy.admin``), and its revocations also revoke the provider's tokens.
    """

    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server

    # -- clients -----------------------------------------------------------------------------

    async def clients(self) -> list[ClientInfo]:
        """Every client the server knows: static, registered, and URL client ids cached now; by id."""
        server = self.server
        found: dict[str, Client] = dict(server.clients.static)
        for client in await server.clients.registered():
            found.setdefault(client.client_id, client)
        if server.registration.metadata_documents:
            for client in await server.cimd.cached_clients():
                found.setdefault(client.client_id, client)
        return [ClientInfo.of(found[client_id]) for client_id in sorted(found)]

    async def client(self, client_id: str) -> ClientInfo | None:
        """The client with this id, or ``None``; a URL client id only while its document is cached."""
        server = self.server
        client = server.clients.static.get(client_id)
        if client is None and client_id.startswith("https://"):
            client = await server.cimd.cached(client_id) if server.registration.metadata_documents else None
        elif client is None:
            client = await server.clients.get(client_id)
        return None if client is None else ClientInfo.of(client)

    async def delete_client(self, client_id: str) -> int:
        """Forget a client: its registration (or cached document), its grants and the consents given to it.

        Its refresh tokens stop working and its access tokens are refused from now on,
        in every process sharing the store. A URL client id is fetched again the next
        time it is used, and every user is asked for consent again.

        Returns:
            How many grants were revoked.

        Raises:
            AdminError: the client is configured in code or a clients file (remove it
                there), or no such client is registered (nothing is revoked then).
        """
        server = self.server
        if client_id in server.clients.static:
            raise AdminError(
                f"client {client_id!r} is configured in code or a clients file, not registered in the store: "
                "remove it from the configuration"
            )
        url_id = client_id.startswith("https://")
        known = await server.cimd.cached(client_id) if url_id else await server.clients.get(client_id)
        if known is None:
            raise AdminError(f"no client {client_id!r} is registered in this store")
        # The record goes first, so that no new grant is made for the client while its grants are revoked.
        if url_id:
            await server.cimd.forget(client_id)
        else:
            await server.clients.delete(client_id)
        revoked = await self.revoke_client(client_id)
        for consent in await self.consents(client_id=client_id):
            await server.withdraw_consent(consent.subject, client_id)
        await server.audit.emit("client.deleted", "success", client_id=client_id, count=revoked, reason="admin")
        return revoked

    # -- grants ------------------------------------------------------------------------------

    async def grants(self, *, subject: str | None = None, client_id: str | None = None) -> list[GrantInfo]:
        """The live grants, of ``subject`` and/or ``client_id`` when given; oldest first."""
        records = await self.server.grants.records(subject, client_id)
        return [await self._grant_info(grant_id, record) for grant_id, record in records]

    async def grant(self, grant_id: str) -> GrantInfo | None:
        """The grant with this id, while it lives."""
        record = await self.server.grants.get(grant_id)
        return None if record is None else await self._grant_info(grant_id, record)

    async def _grant_info(self, grant_id: str, record: Mapping[str, Any]) -> GrantInfo:
        family = await self.server.grants.refresh_records(grant_id)
        scopes = tuple(dict.fromkeys(s for r in family for s in r.get("scopes", ())))
        resources = tuple(dict.fromkeys(s for r in family for s in r.get("resources", ())))
        return GrantInfo(
            grant_id=grant_id,
            subject=str(record["subject"]),
            client_id=str(record["client_id"]),
            created_at=int(record.get("created", 0)),
            scopes=scopes,
            resources=resources,
            refreshable=any(r.get("state") == "active" for r in family),
        )

    async def revoke_grant(self, grant_id: str) -> bool:
        """Revoke one grant: its refresh tokens go, its access tokens are refused everywhere from now on.

        ``False`` when no such grant lives (already revoked, or expired).
        """
        if await self.server.grants.get(grant_id) is None:
            return False
        await self.server.revoke_grant(grant_id, reason="admin")
        return True

    async def revoke_user(self, subject: str) -> int:
        """Revoke every grant of ``subject``, to any client, and end their sign-in sessions on the server's pages.

        Their remembered consents stay (:meth:`withdraw_consent` forgets them); a client
        has to send the user through signing in again. Returns how many grants were revoked.
        """
        grants = await self.server.grants.records(subject=subject)
        await self._revoke(grants)
        # Without this, a browser still signed in could get a new code at once where consent is remembered.
        await self.server.store.delete_index(SESSION_NAMESPACE, subject)
        return len(grants)

    async def revoke_client(self, client_id: str) -> int:
        """Revoke every grant any user gave ``client_id``; how many there were. The client stays registered."""
        grants = await self.server.grants.records(client_id=client_id)
        await self._revoke(grants)
        return len(grants)

    async def _revoke(self, grants: list[tuple[str, dict[str, Any]]]) -> None:
        for grant_id, _ in grants:
            await self.server.revoke_grant(grant_id, reason="admin")
        for subject, client_id in {(str(r["subject"]), str(r["client_id"])) for _, r in grants}:
            await self.server.grants.forget_user_client(subject, client_id)

    # -- consents ----------------------------------------------------------------------------

    async def consents(self, *, subject: str | None = None, client_id: str | None = None) -> list[RememberedConsent]:
        """The remembered consents, of ``subject`` and/or ``client_id`` when given; by user, then client."""
        if subject is not None:
            found = await consent_step.consents(self.server, subject)
        else:
            found = [RememberedConsent.from_json(raw) async for _, raw in self.server.store.iterate(CONSENT_NAMESPACE)]
        if client_id is not None:
            found = [c for c in found if c.client_id == client_id]
        return sorted(found, key=lambda c: (c.subject, c.client_id))

    async def withdraw_consent(self, subject: str, client_id: str) -> bool:
        """Forget ``subject``'s consent for ``client_id`` and revoke the grants they gave it; whether there was any."""
        return await self.server.withdraw_consent(subject, client_id)

    # -- signing keys ------------------------------------------------------------------------

    async def signing_keys(self) -> list[SigningKeyInfo]:
        """The signing ring as stored, oldest first, the signing key last (empty before the first token)."""
        return _key_infos(await self.server.keys.stored())

    async def rotate_signing_key(self) -> SigningKeyInfo:
        """Make a new signing key now; the replaced ones stay published while tokens they signed may live.

        Use it when a key may have leaked (then also revoke the grants whose tokens it
        signed), or to check that every verifier follows a rotation.
        """
        key = await self.server.keys.rotate()
        await self.server.audit.emit("key.rotated", "success", reason="admin")
        return SigningKeyInfo(kid=key.kid, alg=key.alg, created_at=int(key.created), signing=True)
