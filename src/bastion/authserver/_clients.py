"""Where the server finds its clients: pre-registered ones, registered ones in the store, CIMD."""

from __future__ import annotations

from collections.abc import Iterable

from bastion.authserver._models import Client
from bastion.storage import Store

__all__ = ["CLIENT_NAMESPACE", "ClientRegistry"]

CLIENT_NAMESPACE = "client"


class ClientRegistry:
    """Looks clients up: static ones first, then those registered through ``/register``."""

    def __init__(self, store: Store, static: Iterable[Client] = ()) -> None:
        self.store = store
        self.static = {client.client_id: client for client in static}

    async def get(self, client_id: str) -> Client | None:
        """The client with this id, or ``None``."""
        client = self.static.get(client_id)
        if client is not None:
            return client
        raw = await self.store.get(CLIENT_NAMESPACE, client_id)
        return None if raw is None else Client.from_json(raw)

    async def save(self, client: Client, ttl: float | None = None) -> None:
        """Store a registered client."""
        await self.store.put(CLIENT_NAMESPACE, client.client_id, client.to_json(), ttl)
