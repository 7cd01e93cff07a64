"""A :class:`Store` that times every operation of another, for the ``bastion.store.duration`` metric.

The authorization server wraps its store in one when bastion is instrumented
(``bastion.instrument()``) at the time it is built; otherwise the store is used as
given and nothing is measured. Each operation records its duration, the store's class
name, the operation and whether it failed; the keys and values are never recorded.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from bastion._core import telemetry
from bastion.storage._protocol import Store

__all__ = ["ObservedStore"]

_T = TypeVar("_T")


class ObservedStore(Store):
    """``inner``, with the duration and outcome of each operation recorded while bastion is instrumented.

    Args:
        inner: The store every operation is passed to.
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._name = type(inner).__name__

    @classmethod
    def when_instrumented(cls, store: Store) -> Store:
        """``store`` wrapped when bastion is instrumented now (and not wrapped already), else ``store``."""
        if telemetry.active is None or isinstance(store, ObservedStore):
            return store
        return cls(store)

    def __repr__(self) -> str:
        return f"ObservedStore({self.inner!r})"

    async def _timed(self, operation: str, call: Awaitable[_T]) -> _T:
        observer = telemetry.active
        if observer is None:
            return await call
        start = time.perf_counter()
        try:
            result = await call
        except Exception:
            observer.store_operation(self._name, operation, time.perf_counter() - start, ok=False)
            raise
        observer.store_operation(self._name, operation, time.perf_counter() - start, ok=True)
        return result

    async def put(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> None:
        """Insert or replace a record (see :meth:`Store.put`)."""
        await self._timed("put", self.inner.put(namespace, key, value, ttl, index=index))

    async def add(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> bool:
        """Insert a record unless one lives under the key (see :meth:`Store.add`)."""
        return await self._timed("add", self.inner.add(namespace, key, value, ttl, index=index))

    async def get(self, namespace: str, key: str) -> bytes | None:
        """The value of a live record, or ``None``."""
        return await self._timed("get", self.inner.get(namespace, key))

    async def take(self, namespace: str, key: str) -> bytes | None:
        """Read and delete a record atomically (see :meth:`Store.take`)."""
        return await self._timed("take", self.inner.take(namespace, key))

    async def swap(self, namespace: str, key: str, expected: bytes, new: bytes, ttl: float | None = None) -> bool:
        """Compare-and-set (see :meth:`Store.swap`)."""
        return await self._timed("swap", self.inner.swap(namespace, key, expected, new, ttl))

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete a record; ``True`` when a live record was deleted."""
        return await self._timed("delete", self.inner.delete(namespace, key))

    async def scan(self, namespace: str, index: str) -> list[tuple[str, bytes]]:
        """The live records with this secondary key (see :meth:`Store.scan`)."""
        return await self._timed("scan", self.inner.scan(namespace, index))

    async def delete_index(self, namespace: str, index: str) -> int:
        """Delete every record with this secondary key; the live count."""
        return await self._timed("delete_index", self.inner.delete_index(namespace, index))

    def iterate(self, namespace: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every live record of ``namespace`` (administration; not timed)."""
        return self.inner.iterate(namespace)

    async def purge(self) -> int:
        """Remove the expired records; how many were removed."""
        return await self._timed("purge", self.inner.purge())

    async def publish(self, channel: str, message: str) -> None:
        """Tell every process sharing the store (see :meth:`Store.publish`)."""
        await self._timed("publish", self.inner.publish(channel, message))

    def listen(self, channel: str) -> AsyncIterator[str] | None:
        """The inner store's messages on ``channel`` (see :meth:`Store.listen`)."""
        return self.inner.listen(channel)

    async def aclose(self) -> None:
        """Close the inner store."""
        await self.inner.aclose()
