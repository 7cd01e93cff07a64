"""Stores named by URL: ``sqlite:///path/to/file.db``, ``redis://host:6379/0`` or ``memory://``."""

from __future__ import annotations

from pathlib import Path

from bastion._core.errors import ConfigurationError
from bastion.storage._memory import MemoryStore
from bastion.storage._protocol import Store
from bastion.storage._redis import RedisStore
from bastion.storage._sqlite import SQLiteStore

__all__ = ["open_store"]


def open_store(url: str) -> Store:
    """The store a URL names.

    ``sqlite://`` followed by a file path (``sqlite:///var/lib/app/auth.db`` is the
    absolute path ``/var/lib/app/auth.db``, ``sqlite://auth.db`` a relative one;
    ``~`` is expanded), ``redis://[:password@]host[:port][/db]`` or ``rediss://`` (TLS) for
    a Redis or Valkey server shared by replicas (``?prefix=app1:`` keeps deployments apart
    on one server; see :class:`RedisStore`), or ``memory://`` (nothing survives a restart).

    Raises:
        ConfigurationError: the URL names no store bastion knows.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"a store URL looks like sqlite:///path/to/file.db, redis://host:6379/0 or memory://, not {url!r}"
        )
    if scheme in ("redis", "rediss"):
        return RedisStore(url)
    if scheme == "memory" and rest in ("", "/"):
        return MemoryStore()
    if scheme == "sqlite" and rest:
        return SQLiteStore(Path(rest).expanduser())
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r}: use sqlite:///path/to/file.db, redis://host:6379/0 or memory://"
    )
