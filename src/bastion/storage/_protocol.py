"""The :class:`Store` contract every storage backend of the authorization server meets.

Records are addressed by ``(namespace, key)`` and hold opaque ``bytes``, so a
store knows nothing of OAuth: callers serialise their own objects. A record may
carry a time to live and an optional secondary key (``index``, e.g. a grant or
token family id) so that a whole family can be found or revoked at once
(RFC 6749 section 10.5 and RFC 9700 section 4.14: on refresh token reuse the
server revokes the family).

An expired record is as if absent for every operation; it is removed by
:meth:`Store.purge`, which the stores also run by themselves every so many
writes, so no background task is needed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Self

from bastion._core.errors import BastionError

__all__ = ["RESUBSCRIBED", "Clock", "Store", "StoreError"]

#: Seconds since the epoch; injectable so tests move time instead of sleeping.
Clock = Callable[[], float]

#: What :meth:`Store.listen` yields when it (re)starts listening: messages may have been missed.
RESUBSCRIBED = ""

#: Expired records are purged after this many writes, so none pile up.
PURGE_EVERY = 1000


class StoreError(BastionError):
    """The store failed: it is closed, or the backend reported an error."""

    description = "storage error"


class Store(ABC):
    """Async key-value storage with the atomic operations OAuth needs.

    Keys are ``(namespace, key)`` pairs of strings, values are ``bytes``, ``ttl``
    is in seconds (``None``: the record does not expire).
    """

    @abstractmethod
    async def put(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> None:
        """Insert or replace a record; ``index`` is its secondary key for :meth:`scan`."""

    @abstractmethod
    async def add(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> bool:
        """Insert a record only if none lives under this key; ``True`` when inserted."""

    @abstractmethod
    async def get(self, namespace: str, key: str) -> bytes | None:
        """The value of a live record, or ``None``."""

    @abstractmethod
    async def take(self, namespace: str, key: str) -> bytes | None:
        """Read and delete a record atomically: of concurrent callers, one gets the value.

        This is how an authorization code is redeemed once (RFC 6749 section 4.1.2).
        """

    @abstractmethod
    async def swap(self, namespace: str, key: str, expected: bytes, new: bytes, ttl: float | None = None) -> bool:
        """Replace the value only if it is ``expected`` (compare-and-set); ``True`` when replaced.

        Of concurrent swaps from the same ``expected`` exactly one wins, so a
        refresh token rotates once. The record keeps its ``index``; ``ttl``
        replaces its expiry (``None``: it no longer expires; ``0``: it is expired
        at once, as if deleted: a compare-and-delete).
        """

    @abstractmethod
    async def delete(self, namespace: str, key: str) -> bool:
        """Delete a record; ``True`` when a live record was deleted."""

    @abstractmethod
    async def scan(self, namespace: str, index: str) -> list[tuple[str, bytes]]:
        """The ``(key, value)`` pairs of the live records with this secondary key, sorted by key."""

    @abstractmethod
    async def delete_index(self, namespace: str, index: str) -> int:
        """Delete every record with this secondary key (revoke a token family); the live count."""

    def iterate(self, namespace: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every live ``(key, value)`` of ``namespace``, in no particular order, each once.

        For administration (listing clients, grants), not for requests: it reads the
        whole namespace. Records written or deleted while it runs may or may not be seen.
        Stores written before this method existed raise ``NotImplementedError``.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot list its records")

    @abstractmethod
    async def purge(self) -> int:
        """Remove the expired records; how many were removed."""

    async def publish(self, channel: str, message: str) -> None:
        """Tell every process sharing this store (:meth:`listen`); by default no one is told."""
        if not isinstance(channel, str) or not isinstance(message, str):
            raise TypeError("a channel and a message are strings")

    def listen(self, channel: str) -> AsyncIterator[str] | None:
        """The messages :meth:`publish` sends on ``channel`` from any process, or ``None``.

        ``None`` when the store cannot carry messages between processes (a store written
        before this method existed). The iterator yields
        :data:`RESUBSCRIBED` first and after every reconnection, when messages may have
        been missed, and runs until cancelled.
        """
        return None

    @abstractmethod
    async def aclose(self) -> None:
        """Release the store's resources; later calls raise :class:`StoreError`."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
