"""The in-memory :class:`~bastion.storage.Store`: the reference implementation.

Every operation runs to completion without awaiting, so on one event loop it is
atomic without a lock: two coroutines cannot interleave inside ``take`` or
``swap``. State lives in this process only; use :class:`~bastion.storage.SQLiteStore`
when several workers must share it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bastion.storage._protocol import PURGE_EVERY, RESUBSCRIBED, Clock, Store, StoreError

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Record:
    value: bytes
    expires_at: float | None
    index: str | None


class MemoryStore(Store):
    """Records in dictionaries, with a secondary index from ``(namespace, index)`` to keys."""

    def __init__(self, *, clock: Clock = time.time) -> None:
        self._clock = clock
        self._records: dict[tuple[str, str], _Record] = {}
        self._indexes: dict[tuple[str, str], set[str]] = {}
        self._writes = 0
        self._closed = False
        self._listeners: dict[str, list[asyncio.Queue[str | None]]] = {}

    def _live(self, namespace: str, key: str) -> _Record | None:
        self._check_open()
        record = self._records.get((namespace, key))
        if record is None or (record.expires_at is not None and record.expires_at <= self._clock()):
            return None
        return record

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed")

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _remove(self, namespace: str, key: str) -> _Record | None:
        record = self._records.pop((namespace, key), None)
        if record is not None and record.index is not None:
            keys = self._indexes.get((namespace, record.index))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._indexes[(namespace, record.index)]
        return record

    def _store(self, namespace: str, key: str, value: bytes, ttl: float | None, index: str | None) -> None:
        self._remove(namespace, key)
        self._records[(namespace, key)] = _Record(bytes(value), self._expiry(ttl), index)
        if index is not None:
            self._indexes.setdefault((namespace, index), set()).add(key)
        self._writes += 1
        if self._writes % PURGE_EVERY == 0:
            self._purge()

    def _purge(self) -> int:
        now = self._clock()
        expired = [k for k, r in self._records.items() if r.expires_at is not None and r.expires_at <= now]
        for namespace, key in expired:
            self._remove(namespace, key)
        return len(expired)

    async def put(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> None:
        """Insert or replace a record; ``index`` is its secondary key for :meth:`scan`."""
        self._check_open()
        self._store(namespace, key, value, ttl, index)

    async def add(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> bool:
        """Insert a record only if none lives under this key; ``True`` when inserted."""
        if self._live(namespace, key) is not None:
            return False
        self._store(namespace, key, value, ttl, index)
        return True

    async def get(self, namespace: str, key: str) -> bytes | None:
        """The value of a live record, or ``None``."""
        record = self._live(namespace, key)
        return None if record is None else record.value

    async def take(self, namespace: str, key: str) -> bytes | None:
        """Read and delete a record atomically: of concurrent callers, one gets the value."""
        record = self._live(namespace, key)
        self._remove(namespace, key)
        return None if record is None else record.value

    async def swap(self, namespace: str, key: str, expected: bytes, new: bytes, ttl: float | None = None) -> bool:
        """Replace the value only if it is ``expected``; ``True`` when replaced."""
        record = self._live(namespace, key)
        if record is None or record.value != expected:
            return False
        self._store(namespace, key, new, ttl, record.index)
        return True

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete a record; ``True`` when a live record was deleted."""
        live = self._live(namespace, key) is not None
        self._remove(namespace, key)
        return live

    async def scan(self, namespace: str, index: str) -> list[tuple[str, bytes]]:
        """The ``(key, value)`` pairs of the live records with this secondary key, sorted by key."""
        self._check_open()
        found = []
        for key in sorted(self._indexes.get((namespace, index), ())):
            record = self._live(namespace, key)
            if record is not None:
                found.append((key, record.value))
        return found

    async def delete_index(self, namespace: str, index: str) -> int:
        """Delete every record with this secondary key (revoke a token family); the live count."""
        self._check_open()
        count = 0
        for key in list(self._indexes.get((namespace, index), ())):
            count += self._live(namespace, key) is not None
            self._remove(namespace, key)
        return count

    async def iterate(self, namespace: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every live ``(key, value)`` of ``namespace`` (a snapshot of its keys, then each read)."""
        self._check_open()
        for ns, key in [k for k in self._records if k[0] == namespace]:
            record = self._live(ns, key)
            if record is not None:
                yield key, record.value

    async def publish(self, channel: str, message: str) -> None:
        """Hand ``message`` to every listener of ``channel`` in this process."""
        self._check_open()
        for queue in self._listeners.get(channel, ()):
            queue.put_nowait(message)

    def listen(self, channel: str) -> AsyncIterator[str]:
        """The messages published on ``channel`` in this process from now on; ends when the store closes."""
        self._check_open()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._listeners.setdefault(channel, []).append(queue)
        return self._listen(channel, queue)

    async def _listen(self, channel: str, queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
        try:
            yield RESUBSCRIBED
            while (message := await queue.get()) is not None:
                yield message
        finally:
            listeners = self._listeners.get(channel, [])
            if queue in listeners:
                listeners.remove(queue)

    async def purge(self) -> int:
        """Remove the expired records; how many were removed."""
        self._check_open()
        return self._purge()

    async def aclose(self) -> None:
        """Drop every record; later calls raise :class:`~bastion.storage.StoreError`."""
        self._records.clear()
        self._indexes.clear()
        self._closed = True
        for queues in self._listeners.values():
            for queue in queues:
                queue.put_nowait(None)
