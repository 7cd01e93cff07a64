"""The SQLite :class:`~bastion.storage.Store`: one file, shared by the workers of one host.

Every atomic operation is a single SQL statement (``DELETE ... RETURNING``,
``UPDATE ... WHERE value = ?``, ``INSERT ... ON CONFLICT``), so SQLite's own
write lock makes it atomic across threads and processes alike. WAL mode lets
readers run beside the one writer, and ``busy_timeout`` makes a writer wait for
the lock instead of failing. Calls run in a worker thread so the event loop
never blocks on disk; one connection is shared under a lock.

SQLite checkpoints the write-ahead log into the database by itself, but never
shrinks the file, and while other processes keep reading and writing a checkpoint
may never reach the end of the log, which then grows without bound. So a write
that leaves the log larger than ``wal_size_limit`` checkpoints all of it and
empties it (``wal_checkpoint(TRUNCATE)``), and ``journal_size_limit`` cuts it
back whenever SQLite restarts it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from bastion._core.errors import ConfigurationError
from bastion.storage._protocol import PURGE_EVERY, RESUBSCRIBED, Clock, Store, StoreError

__all__ = ["SQLiteStore"]

#: Bytes of write-ahead log past which a write checkpoints and empties it (also its ``journal_size_limit``):
#: about the 1,000 pages at which SQLite checkpoints by itself, so a checkpoint is no more frequent than SQLite's.
WAL_SIZE_LIMIT = 4 * 1024 * 1024

#: Records read per query of :meth:`SQLiteStore.iterate`.
ITERATE_PAGE = 500

_ITERATE_NEXT = (
    "SELECT key, value FROM records WHERE namespace = ? AND key > ? "
    "AND (expires_at IS NULL OR expires_at > ?) ORDER BY key LIMIT ?"
)
_ITERATE_FIRST = _ITERATE_NEXT.replace("key > ?", "key >= ?")

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    expires_at REAL NULL,
    idx TEXT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS records_idx ON records (namespace, idx);
-- The purge reads expired records from this index instead of scanning the whole table,
-- which with a million clients would hold the write lock for a fifth of a second.
CREATE INDEX IF NOT EXISTS records_expiry ON records (expires_at) WHERE expires_at IS NOT NULL;
-- Messages between the processes sharing the file (publish / listen), kept for a minute.
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    message TEXT NOT NULL,
    at REAL NOT NULL
);
"""

#: Seconds a published message is kept for listeners to read.
MESSAGE_TTL = 60.0
#: Seconds between two reads of new messages by a listener.
LISTEN_POLL = 0.25


class SQLiteStore(Store):
    """Records in one table of a SQLite file; a new file is created with mode 0600, and its directory if missing.

    :attr:`path` is the file's absolute path (``~`` expanded). A file or directory that
    cannot be created or opened raises :class:`~bastion.ConfigurationError` naming it.

    ``busy_timeout`` (seconds) bounds how long a write waits for another
    process's lock before :class:`~bastion.storage.StoreError` is raised.
    ``wal_size_limit`` (bytes) is the size of write-ahead log past which a write
    empties it; the default is about what SQLite's own automatic checkpoint lets
    it reach, so a busy server checkpoints no more often than SQLite would.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock = time.time,
        busy_timeout: float = 10.0,
        wal_size_limit: int = WAL_SIZE_LIMIT,
    ) -> None:
        #: The absolute path of the database file.
        self.path = Path(path).expanduser().absolute()
        self._clock = clock
        self._lock = threading.Lock()
        self._writes = 0
        self._wal = self.path.with_name(self.path.name + "-wal")
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._wal_size_limit = int(wal_size_limit)
        self._create_file(self.path)
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as error:
            raise ConfigurationError(f"cannot open the store file {self.path}: {error}") from None
        self._conn: sqlite3.Connection | None = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA journal_size_limit = {self._wal_size_limit}")
            conn.executescript(_SCHEMA)
        except sqlite3.Error as error:
            conn.close()
            self._conn = None
            # Mostly a file or directory it may not write to (its log lives beside the file).
            raise ConfigurationError(f"cannot open the store file {self.path}: {error}") from None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @staticmethod
    def _create_file(path: Path) -> None:
        """Create the parent directory, and the file readable by its owner only (it holds secrets)."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the store's directory {path.parent}: {exc.strerror or exc.__class__.__name__}"
            ) from None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the store file {path}: {exc.strerror or exc.__class__.__name__}"
            ) from None
        os.close(fd)

    async def _run(self, func: Callable[[sqlite3.Connection], _T], *, write: bool = False) -> _T:
        return await anyio.to_thread.run_sync(partial(self._call, func, write))

    def _call(self, func: Callable[[sqlite3.Connection], _T], write: bool) -> _T:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError("the store is closed")
            try:
                result = func(conn)
                if write:
                    self._writes += 1
                    if self._writes % PURGE_EVERY == 0:
                        self._purge(conn)
                    self._bound_log(conn)
            except sqlite3.Error as error:
                raise StoreError(f"SQLite error: {error}") from error
            return result

    def _bound_log(self, conn: sqlite3.Connection) -> None:
        """Checkpoint all of the write-ahead log and empty it, once it is past ``wal_size_limit``.

        Without waiting: a checkpoint that waits holds SQLite's checkpoint lock, which keeps
        every other process from checkpointing while it loses the race for the write lock to
        busy writers. Busy, it copies what it can now, and a later write (ours or another
        process's) tries again.
        """
        try:
            if self._wal.stat().st_size <= self._wal_size_limit:
                return
        except OSError:  # no log file
            return
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.Error:
            pass  # the log stays as it was; the write succeeded
        finally:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _purge(self, conn: sqlite3.Connection) -> int:
        cursor = conn.execute("DELETE FROM records WHERE expires_at IS NOT NULL AND expires_at <= ?", (self._clock(),))
        return cursor.rowcount

    @staticmethod
    def _rows(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return conn.execute(sql, params).fetchall()

    async def put(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> None:
        """Insert or replace a record; ``index`` is its secondary key for :meth:`scan`."""
        sql = "INSERT OR REPLACE INTO records (namespace, key, value, expires_at, idx) VALUES (?, ?, ?, ?, ?)"
        params = (namespace, key, bytes(value), self._expiry(ttl), index)
        await self._run(lambda conn: conn.execute(sql, params), write=True)

    async def add(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> bool:
        """Insert a record only if none lives under this key; ``True`` when inserted."""
        sql = (
            "INSERT INTO records (namespace, key, value, expires_at, idx) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = excluded.value, expires_at = excluded.expires_at, idx = excluded.idx "
            "WHERE records.expires_at IS NOT NULL AND records.expires_at <= ?"
        )
        now = self._clock()
        params = (namespace, key, bytes(value), None if ttl is None else now + ttl, index, now)
        return await self._run(lambda conn: conn.execute(sql, params).rowcount == 1, write=True)

    async def get(self, namespace: str, key: str) -> bytes | None:
        """The value of a live record, or ``None``."""
        sql = "SELECT value FROM records WHERE namespace = ? AND key = ? AND (expires_at IS NULL OR expires_at > ?)"
        rows = await self._run(partial(self._rows, sql=sql, params=(namespace, key, self._clock())))
        return bytes(rows[0][0]) if rows else None

    async def take(self, namespace: str, key: str) -> bytes | None:
        """Read and delete a record in one statement: of concurrent callers, one gets the value."""
        sql = "DELETE FROM records WHERE namespace = ? AND key = ? RETURNING value, expires_at"
        rows = await self._run(partial(self._rows, sql=sql, params=(namespace, key)), write=True)
        if not rows or (rows[0][1] is not None and rows[0][1] <= self._clock()):
            return None
        return bytes(rows[0][0])

    async def swap(self, namespace: str, key: str, expected: bytes, new: bytes, ttl: float | None = None) -> bool:
        """Replace the value only if it is ``expected``, in one ``UPDATE``; ``True`` when replaced."""
        sql = (
            "UPDATE records SET value = ?, expires_at = ? "
            "WHERE namespace = ? AND key = ? AND value = ? AND (expires_at IS NULL OR expires_at > ?)"
        )
        now = self._clock()
        params = (bytes(new), None if ttl is None else now + ttl, namespace, key, bytes(expected), now)
        return await self._run(lambda conn: conn.execute(sql, params).rowcount == 1, write=True)

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete a record; ``True`` when a live record was deleted."""
        sql = "DELETE FROM records WHERE namespace = ? AND key = ? RETURNING expires_at"
        rows = await self._run(partial(self._rows, sql=sql, params=(namespace, key)), write=True)
        return self._count_live(rows) == 1

    async def scan(self, namespace: str, index: str) -> list[tuple[str, bytes]]:
        """The ``(key, value)`` pairs of the live records with this secondary key, sorted by key."""
        sql = (
            "SELECT key, value FROM records "
            "WHERE namespace = ? AND idx = ? AND (expires_at IS NULL OR expires_at > ?) ORDER BY key"
        )
        rows = await self._run(partial(self._rows, sql=sql, params=(namespace, index, self._clock())))
        return [(str(key), bytes(value)) for key, value in rows]

    async def delete_index(self, namespace: str, index: str) -> int:
        """Delete every record with this secondary key (revoke a token family); the live count."""
        sql = "DELETE FROM records WHERE namespace = ? AND idx = ? RETURNING expires_at"
        rows = await self._run(partial(self._rows, sql=sql, params=(namespace, index)), write=True)
        return self._count_live(rows)

    def _count_live(self, rows: list[Any]) -> int:
        now = self._clock()
        return sum(1 for (expires_at,) in rows if expires_at is None or expires_at > now)

    async def iterate(self, namespace: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every live ``(key, value)`` of ``namespace``, read in pages in key order (the primary key)."""
        sql = _ITERATE_FIRST  # the empty string is a key too
        after = ""
        while True:
            params = (namespace, after, self._clock(), ITERATE_PAGE)
            rows = await self._run(partial(self._rows, sql=sql, params=params))
            for key, value in rows:
                yield str(key), bytes(value)
            if len(rows) < ITERATE_PAGE:
                return
            after = str(rows[-1][0])
            sql = _ITERATE_NEXT

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to the processes listening on ``channel`` (they read it within ``LISTEN_POLL``)."""
        now = self._clock()

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO messages (channel, message, at) VALUES (?, ?, ?)", (channel, message, now))
            conn.execute("DELETE FROM messages WHERE at < ?", (now - MESSAGE_TTL,))

        await self._run(insert, write=True)

    def listen(self, channel: str) -> AsyncIterator[str]:
        """The messages published on ``channel`` from now on, by any process sharing the file.

        Polls the file every ``LISTEN_POLL`` seconds; yields ``RESUBSCRIBED`` first. Ends
        when the store is closed.
        """
        return self._listen(channel)

    async def _listen(self, channel: str) -> AsyncIterator[str]:
        rows = await self._run(partial(self._rows, sql="SELECT COALESCE(MAX(id), 0) FROM messages", params=()))
        last = int(rows[0][0])
        yield RESUBSCRIBED
        sql = "SELECT id, message FROM messages WHERE id > ? AND channel = ? ORDER BY id"
        while True:
            await anyio.sleep(LISTEN_POLL)  # polling a file: no process can wake another
            if self._conn is None:
                return
            try:
                rows = await self._run(partial(self._rows, sql=sql, params=(last, channel)))
            except StoreError:
                if self._conn is None:
                    return
                continue  # busy or failing now: read again at the next poll
            for message_id, message in rows:
                last = int(message_id)
                yield str(message)

    async def purge(self) -> int:
        """Remove the expired records; how many were removed."""
        return await self._run(self._purge)

    async def aclose(self) -> None:
        """Close the connection; later calls raise :class:`~bastion.storage.StoreError`. Idempotent."""

        def close(conn: sqlite3.Connection) -> None:
            self._conn = None
            conn.close()

        if self._conn is not None:
            await self._run(close)
