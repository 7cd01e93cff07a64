"""Storage for bastion's authorization server: one :class:`Store` protocol, two stores.

An authorization server keeps short-lived state (authorization codes, refresh
tokens, client registrations) that must be read and changed atomically: a code
is redeemed once, a refresh token rotates once. :class:`Store` names the few
operations that need, and every implementation passes one contract test suite.

- :class:`MemoryStore`: the reference implementation, for tests and one process.
- :class:`SQLiteStore`: a file on disk, safe across worker processes on one host.
- :class:`RedisStore`: a Redis (or Valkey) server, shared by replicas on many hosts.

:class:`ObservedStore` wraps any of them to time each operation (``bastion.instrument()``).

:func:`open_store` builds one from a URL (``sqlite:///auth.db`` relative, ``sqlite:////var/lib/bastion/auth.db``
absolute, ``redis://host:6379/0``, ``memory://``).
"""

from __future__ import annotations

from bastion.storage._memory import MemoryStore
from bastion.storage._observed import ObservedStore
from bastion.storage._protocol import Store, StoreError
from bastion.storage._redis import RedisStore
from bastion.storage._sqlite import SQLiteStore
from bastion.storage._url import open_store

__all__ = ["MemoryStore", "ObservedStore", "RedisStore", "SQLiteStore", "Store", "StoreError", "open_store"]
