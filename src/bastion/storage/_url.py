"""Stores named by URL: ``sqlite:///auth.db``, ``sqlite:////var/lib/bastion/auth.db``, ``redis://host:6379/0``, ``memory://``.

A SQLite URL is read as SQLAlchemy reads it: after ``sqlite://`` comes an empty host,
then ``/``, then the path, so three slashes begin a relative path and four an
absolute one. Before this convention ``sqlite:///var/lib/app/auth.db`` named
``/var/lib/app/auth.db``; now it names ``var/lib/app/auth.db`` in the current directory,
so a URL that meant the old absolute path is refused with the four-slash form to use
instead of creating a new, empty store somewhere else.
"""

from __future__ import annotations

from pathlib import Path

from bastion._core.errors import ConfigurationError
from bastion.storage._memory import MemoryStore
from bastion.storage._protocol import Store
from bastion.storage._redis import RedisStore
from bastion.storage._sqlite import SQLiteStore

__all__ = ["open_store", "sqlite_path"]

_FORMS = "sqlite:///auth.db (relative to the current directory), sqlite:////var/lib/bastion/auth.db (absolute)"


def open_store(url: str) -> Store:
    """The store a URL names.

    - ``sqlite:///auth.db``: a SQLite file relative to the current directory;
      ``sqlite:////var/lib/bastion/auth.db`` an absolute path; ``sqlite:///~/auth.db``
      under the home directory (the convention of SQLAlchemy, see :func:`sqlite_path`).
      The directory must exist; the file is created in it.
    - ``redis://[:password@]host[:port][/db]`` or ``rediss://`` (TLS): a Redis or Valkey
      server shared by replicas (``?prefix=app1:`` keeps deployments apart on one server;
      see :class:`RedisStore`).
    - ``memory://``: nothing survives a restart.

    Raises:
        ConfigurationError: the URL names no store bastion knows, or a SQLite file that
            cannot be (or should not be) created where it points.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigurationError(
            f"a store URL looks like sqlite:///auth.db, redis://host:6379/0 or memory://, not {url!r}"
        )
    if scheme in ("redis", "rediss"):
        return RedisStore(url)
    if scheme == "memory" and rest in ("", "/"):
        return MemoryStore()
    if scheme == "sqlite":
        return SQLiteStore(_existing_directory(sqlite_path(url), rest[1:]))
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r}: use sqlite:///auth.db, redis://host:6379/0 or memory://"
    )


def sqlite_path(url: str) -> Path:
    """The absolute path of the file a ``sqlite://`` URL names; nothing is checked on disk.

    ``sqlite:///notes.db`` is ``notes.db`` in the current directory,
    ``sqlite:////var/lib/bastion/auth.db`` is ``/var/lib/bastion/auth.db``, and ``~`` is
    expanded (``sqlite:///~/auth.db``).

    Raises:
        ConfigurationError: not a ``sqlite://`` URL, a URL with a host (``sqlite://auth.db``),
            or one naming no file.
    """
    scheme, _, rest = url.partition("://")
    if scheme != "sqlite":
        raise ConfigurationError(f"not a SQLite URL: use {_FORMS}")
    if rest and not rest.startswith("/"):
        host = rest.partition("/")[0]
        raise ConfigurationError(
            f"sqlite://{rest} names the host {host!r}: a SQLite URL has no host, use sqlite:///{rest} "
            f"(relative to the current directory) or sqlite:////{rest} (absolute)"
        )
    text = rest[1:]
    if not text or text.endswith("/"):
        raise ConfigurationError(f"the SQLite URL names no file: use {_FORMS}")
    return Path(text).expanduser().absolute()


def _existing_directory(path: Path, text: str) -> Path:
    """``path``, once sure its directory exists and it is not the old reading of an absolute path."""
    # The old reading of sqlite:///var/lib/app/auth.db was /var/lib/app/auth.db: refused,
    # not silently replaced by a new store under the current directory.
    relative = not text.startswith(("/", "~"))
    old = Path("/" + text)
    if relative and not path.exists() and (old.exists() or (not path.parent.is_dir() and old.parent.is_dir())):
        raise ConfigurationError(
            f"sqlite:///{text} is the relative path {path}, which does not exist; "
            f"did you mean sqlite:////{text} (the absolute path {old})?"
        )
    if not path.parent.is_dir():
        raise ConfigurationError(f"the store's directory {path.parent} does not exist: create it, or name another")
    return path
