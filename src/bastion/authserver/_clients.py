"""Where the server finds its clients (RFC 7591 records, static or registered).

Three sources, looked up in this order by :class:`ClientRegistry`:

1. static clients, configured in code or in a JSON file (a list of RFC 7591
   client metadata objects with a ``client_id``), checked when the server is built;
2. URL client ids (Client ID Metadata Documents), handed to a resolver;
3. clients registered through ``/register`` (RFC 7591), kept in the store.

Every record is checked by the rules of :mod:`bastion.authserver._client_metadata`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from bastion._core.errors import ConfigurationError
from bastion.authserver._client_metadata import MAX_FIELD, check_client, client_from_metadata, strict_json
from bastion.authserver._errors import OAuthError
from bastion.authserver._models import Client, hash_secret
from bastion.storage import Store

__all__ = ["CLIENT_NAMESPACE", "ClientRegistry", "MetadataDocuments", "load_clients_file"]

CLIENT_NAMESPACE = "client"

_SECRET_HASH = re.compile(r"[0-9a-f]{64}")

#: Resolves a URL client id (a Client ID Metadata Document) to its client.
MetadataDocuments = Callable[[str], Awaitable[Client]]


# -- static clients ---------------------------------------------------------------------------


def _static_entry(index: int, entry: Any) -> Client:
    if not isinstance(entry, Mapping):
        raise ConfigurationError(f"clients file: entry {index} is not a JSON object")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not client_id or len(client_id) > MAX_FIELD or not client_id.isprintable():
        raise ConfigurationError(f"clients file: entry {index} needs a client_id string")
    secret, digest = entry.get("client_secret"), entry.get("client_secret_hash")
    if secret is not None and digest is not None:
        raise ConfigurationError(f"clients file: client {client_id!r} has both client_secret and client_secret_hash")
    if secret is not None and (not isinstance(secret, str) or len(secret) < 16):
        raise ConfigurationError(f"clients file: client {client_id!r} needs a client_secret of at least 16 characters")
    if digest is not None and (not isinstance(digest, str) or not _SECRET_HASH.fullmatch(digest)):
        raise ConfigurationError(f"clients file: client {client_id!r}: client_secret_hash must be SHA-256 hex")
    digest = hash_secret(secret) if secret is not None else digest
    introspection = entry.get("introspection", False)
    if not isinstance(introspection, bool):
        raise ConfigurationError(f"clients file: client {client_id!r}: introspection must be true or false")
    try:
        return client_from_metadata(
            entry,
            client_id=client_id,
            kind="static",
            default_auth_method="none" if digest is None else "client_secret_basic",
            default_application_type=None,
            client_secret_hash=digest,
            introspection=introspection,
        )
    except OAuthError as exc:
        raise ConfigurationError(f"clients file: client {client_id!r}: {exc.description}") from None


def load_clients_file(path: str | PathLike[str]) -> list[Client]:
    """The clients of a JSON file holding a list of RFC 7591 client metadata objects.

    Each object has a ``client_id``; a confidential one has ``client_secret``
    (hashed on load) or ``client_secret_hash`` (its SHA-256, hex), and
    ``"introspection": true`` when it may introspect every client's tokens.

    Raises:
        ConfigurationError: the file cannot be read or a client is invalid (the
            message names the problem, never a secret).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"clients file {str(path)!r} cannot be read: {exc.strerror}") from None
    try:
        entries = strict_json(raw)
    except ValueError as exc:
        raise ConfigurationError(f"clients file {str(path)!r}: {exc}") from None
    if not isinstance(entries, list):
        raise ConfigurationError(f"clients file {str(path)!r} must hold a JSON array of client objects")
    return [_static_entry(index, entry) for index, entry in enumerate(entries)]


def _check_static(client: Client) -> Client:
    try:
        check_client(client)
    except OAuthError as exc:
        raise ConfigurationError(f"client {client.client_id!r}: {exc.description}") from None
    return client


class ClientRegistry:
    """Looks clients up: static ones, then URL ids through ``metadata_documents``, then the store.

    Args:
        store: Where registered clients live (namespace ``"client"``).
        static: Pre-registered clients, or the path of a JSON file of client
            metadata objects (see :func:`load_clients_file`); checked now.
        metadata_documents: Resolves an https URL client id (CIMD); its errors
            propagate. Without it, URL client ids are unknown.

    Raises:
        ConfigurationError: a static client is invalid or two share an id.
    """

    def __init__(
        self,
        store: Store,
        static: Iterable[Client] | str | PathLike[str] = (),
        *,
        metadata_documents: MetadataDocuments | None = None,
    ) -> None:
        self.store = store
        clients = load_clients_file(static) if isinstance(static, (str, PathLike)) else list(static)
        self.static: dict[str, Client] = {}
        for client in clients:
            if client.client_id in self.static:
                raise ConfigurationError(f"two static clients have the id {client.client_id!r}")
            self.static[client.client_id] = _check_static(client)
        self.metadata_documents = metadata_documents

    async def get(self, client_id: str) -> Client | None:
        """The client with this id, or ``None``."""
        if not client_id or len(client_id) > MAX_FIELD:
            return None
        client = self.static.get(client_id)
        if client is not None:
            return client
        if client_id.startswith("https://"):
            return None if self.metadata_documents is None else await self.metadata_documents(client_id)
        raw = await self.store.get(CLIENT_NAMESPACE, client_id)
        return None if raw is None else Client.from_json(raw)

    async def save(self, client: Client, ttl: float | None = None) -> None:
        """Store a registered client (never one with a static or URL id)."""
        if client.client_id in self.static or client.client_id.startswith("https://"):
            raise ValueError("a registered client cannot take a static or URL client id")
        await self.store.put(CLIENT_NAMESPACE, client.client_id, client.to_json(), ttl)

    async def registered(self) -> list[Client]:
        """Every client registered in the store (through ``/register``), for administration."""
        return [Client.from_json(raw) async for _, raw in self.store.iterate(CLIENT_NAMESPACE)]

    async def delete(self, client_id: str) -> bool:
        """Forget a registered client; ``True`` when there was one (static clients stay)."""
        if client_id in self.static:
            return False
        return await self.store.delete(CLIENT_NAMESPACE, client_id)
