"""The Redis :class:`~bastion.storage.Store`: state shared by every replica, on every host.

Each operation is one Lua script (``_redis_scripts``), which Redis runs without
interleaving any other command, so ``take``, ``swap`` and ``add`` are atomic across
every process that shares the server, exactly as SQLite's write lock makes them on
one host. Redis expires records itself (``PEXPIRE``); the application's clock
decides too, so a record is never seen past its expiry even between Redis's
sweeps, and tests can move time.

Valkey, and any server speaking the Redis protocol with Lua scripting, works as
well. The scripts address index sets they build themselves, which a single
server (a primary, with replicas or Sentinel) allows and Redis Cluster does not.

The ``redis`` package is an optional extra: ``pip install "mcp-bastion[redis]"``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bastion._core.errors import ConfigurationError
from bastion.storage import _redis_scripts as scripts
from bastion.storage._protocol import Clock, Store, StoreError
from bastion.storage._redis_listen import subscription

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

#: Prefix of every key bastion writes; give each deployment sharing one Redis its own.
DEFAULT_PREFIX = "bastion:"

#: Seconds to open a connection and to wait for an answer: an outage fails a request fast (503).
CONNECT_TIMEOUT = 2.0
COMMAND_TIMEOUT = 2.0

#: Connections per event loop; further concurrent calls wait for one, up to ``QUEUE_TIMEOUT``.
MAX_CONNECTIONS = 50

#: Seconds a call waits for a free connection when all are in use. Waiting is load, not an
#: outage: a replica with hundreds of requests in flight on busy cores queues them for longer
#: than one command may take. A frozen Redis still fails every call, within about this plus
#: the command timeout, since each connection in use gives up after the command timeout.
QUEUE_TIMEOUT = 10.0


#: Keys read per round of :meth:`RedisStore.purge`.
PURGE_BATCH = 500

_T = TypeVar("_T")

logger = logging.getLogger("bastion")


def _import_redis() -> Any:
    try:
        import redis.asyncio
    except ImportError:  # pragma: no cover - depends on the installation
        raise ConfigurationError('RedisStore needs the redis package: pip install "mcp-bastion[redis]"') from None
    return redis.asyncio


class RedisStore(Store):
    """Records in Redis (or Valkey), shared by every process and host that uses the same URL and prefix.

    Args:
        url: ``redis://[:password@]host[:port][/db]``, or ``rediss://`` for TLS
            (the password may also be given as ``redis://user:password@host``). A
            ``prefix=`` query parameter sets the key prefix.
        prefix: Prefix of every key (default ``bastion:``); a ``prefix`` in the URL wins.
        clock: Seconds since the epoch; injectable so tests move time.
        connect_timeout: Seconds to open a connection.
        command_timeout: Seconds to wait for an answer before the call raises
            :class:`~bastion.storage.StoreError` (and a request gets a 503).
        queue_timeout: Seconds a call waits for a free connection when all
            ``MAX_CONNECTIONS`` of its event loop are in use, before it raises
            :class:`~bastion.storage.StoreError`.

    Connections are pooled per event loop (at most ``MAX_CONNECTIONS``; more concurrent
    calls wait for a free one) and reopened after a failure, with a short backoff between
    retries; a call that cannot reach Redis raises :class:`~bastion.storage.StoreError`
    within about the connect and command timeouts (plus the queue timeout when it had to
    wait for a connection).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        clock: Clock = time.time,
        connect_timeout: float = CONNECT_TIMEOUT,
        command_timeout: float = COMMAND_TIMEOUT,
        queue_timeout: float = QUEUE_TIMEOUT,
    ) -> None:
        self._redis = _import_redis()
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(f"a Redis URL starts with redis://, rediss:// or unix://, not {parts.scheme!r}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        url_prefix = [value for name, value in query if name == "prefix"]
        self.url = urlunsplit(parts._replace(query=urlencode([(n, v) for n, v in query if n != "prefix"])))
        self.prefix = url_prefix[-1] if url_prefix else DEFAULT_PREFIX if prefix is None else prefix
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._queue_timeout = queue_timeout
        self._closed = False
        self._server_checked = False
        # One client per event loop: redis.asyncio connections belong to the loop that opened them.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Redis, dict[str, AsyncScript]]]
        self._clients = weakref.WeakKeyDictionary()
        self._check_url()

    def _check_url(self) -> None:
        parts = urlsplit(self.url)
        database = parts.path.strip("/")
        if parts.scheme != "unix" and database and not database.isdigit():
            raise ConfigurationError(f"a Redis URL names a database by number (redis://host:6379/0), not {database!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            self._redis.connection.parse_url(self.url)
        except ValueError as error:
            raise ConfigurationError(f"not a Redis URL: {error}") from None

    def __repr__(self) -> str:
        # The URL may carry a password: show the host only.
        parts = urlsplit(self.url)
        return f"RedisStore({parts.scheme}://{parts.hostname}:{parts.port or 6379}, prefix={self.prefix!r})"

    # -- connections ----------------------------------------------------------------------------------

    def _client(self) -> tuple[Redis, dict[str, AsyncScript]]:
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None:
            found = (self._connect(), {})
            self._clients[loop] = found
        return found

    def _connect(self) -> Redis:
        from redis.asyncio.retry import Retry  # not redis.retry: that one returns the coroutine, retrying nothing
        from redis.backoff import ExponentialBackoff
        from redis.exceptions import ConnectionError as LostConnection

        # A connection Redis closed (a restart, its idle timeout, a failover) is reopened and
        # the call retried. A timeout is not retried: the script may have run (a second TAKE
        # would lose the record), and a frozen Redis would cost the timeout three times.
        retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2, supported_errors=(LostConnection,))
        # A call waits for a free connection rather than fail: the plain pool refuses the
        # 101st concurrent call with MaxConnectionsError, which a busy replica reaches.
        pool = self._redis.BlockingConnectionPool.from_url(
            self.url,
            max_connections=MAX_CONNECTIONS,
            timeout=self._queue_timeout,
            socket_connect_timeout=self._connect_timeout,
            socket_timeout=self._command_timeout,
            retry=retry,
            health_check_interval=30,
        )
        client: Redis = self._redis.Redis.from_pool(pool)
        return client

    async def _check_server(self, client: Redis) -> None:
        """Warn once when Redis may evict bastion's records (a revoked grant's marker, a signing key).

        Eviction under memory pressure would silently undo revocations and sign users
        out; ``maxmemory-policy noeviction`` makes Redis refuse writes instead, which
        bastion answers with 503. Servers that forbid ``CONFIG`` are not checked.
        """
        self._server_checked = True
        try:
            policy = (await client.config_get("maxmemory-policy")).get("maxmemory-policy")
        except (self._redis.RedisError, OSError):
            return
        if policy is not None and _text(policy) != "noeviction":
            logger.warning(
                "Redis's maxmemory-policy is %s: under memory pressure it may evict bastion's records "
                "(revocations, keys, grants); set maxmemory-policy noeviction",
                _text(policy),
            )

    async def _script(self, name: str, keys: list[bytes], args: list[Any]) -> Any:
        client, registered = self._client()
        if not self._server_checked:
            await self._check_server(client)
        script = registered.get(name)
        if script is None:
            script = registered[name] = client.register_script(getattr(scripts, name))
        return await self._call(lambda: script(keys=keys, args=args, client=client))

    async def _call(self, call: Callable[[], Awaitable[_T]]) -> _T:
        try:
            return await call()
        except self._redis.RedisError as error:
            raise StoreError(f"Redis error: {type(error).__name__}: {error}") from error
        except OSError as error:
            raise StoreError(f"cannot reach Redis: {error}") from error

    # -- keys -----------------------------------------------------------------------------------------

    def _space(self, kind: str, namespace: str) -> bytes:
        ns = namespace.encode()
        return f"{self.prefix}{kind}:{len(ns)}:".encode() + ns + b":"

    def _record(self, namespace: str, key: str) -> bytes:
        return self._space("r", namespace) + key.encode()

    def _now(self) -> str:
        return repr(self._clock())

    def _expiry(self, ttl: float | None) -> tuple[str, int]:
        """The expiry in the application's clock (``""``: none) and Redis's TTL in ms (``0``: none)."""
        if ttl is None:
            return "", 0
        return repr(self._clock() + ttl), max(1, math.ceil(ttl * 1000))

    def _write_args(self, namespace: str, key: str, value: bytes, ttl: float | None, index: str | None) -> list[Any]:
        expires_at, ttl_ms = self._expiry(ttl)
        return [
            self._now(),
            self._space("i", namespace),
            key.encode(),
            bytes(value),
            expires_at,
            ttl_ms,
            "0" if index is None else "1",
            b"" if index is None else index.encode(),
        ]

    # -- the Store operations -------------------------------------------------------------------------

    async def put(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> None:
        """Insert or replace a record; ``index`` is its secondary key for :meth:`scan`."""
        await self._script("PUT", [self._record(namespace, key)], self._write_args(namespace, key, value, ttl, index))

    async def add(
        self, namespace: str, key: str, value: bytes, ttl: float | None = None, *, index: str | None = None
    ) -> bool:
        """Insert a record only if none lives under this key; ``True`` when inserted."""
        args = self._write_args(namespace, key, value, ttl, index)
        return bool(await self._script("ADD", [self._record(namespace, key)], args))

    async def get(self, namespace: str, key: str) -> bytes | None:
        """The value of a live record, or ``None``."""
        client, _ = self._client()
        record = self._record(namespace, key)
        value, expires_at = await self._call(lambda: client.hmget(record, ["v", "e"]))
        if value is None or (expires_at and float(expires_at) <= self._clock()):
            return None
        return _bytes(value)

    async def take(self, namespace: str, key: str) -> bytes | None:
        """Read and delete a record in one script: of concurrent callers, one gets the value."""
        args = [self._now(), self._space("i", namespace), key.encode()]
        value = await self._script("TAKE", [self._record(namespace, key)], args)
        return None if value is None else _bytes(value)

    async def swap(self, namespace: str, key: str, expected: bytes, new: bytes, ttl: float | None = None) -> bool:
        """Replace the value only if it is ``expected``, in one script; ``True`` when replaced."""
        expires_at, ttl_ms = self._expiry(ttl)
        args = [self._now(), self._space("i", namespace), key.encode(), bytes(expected), bytes(new), expires_at, ttl_ms]
        return bool(await self._script("SWAP", [self._record(namespace, key)], args))

    async def delete(self, namespace: str, key: str) -> bool:
        """Delete a record; ``True`` when a live record was deleted."""
        args = [self._now(), self._space("i", namespace), key.encode()]
        return bool(await self._script("DELETE", [self._record(namespace, key)], args))

    async def scan(self, namespace: str, index: str) -> list[tuple[str, bytes]]:
        """The ``(key, value)`` pairs of the live records with this secondary key, sorted by key."""
        ix = self._space("i", namespace) + index.encode()
        flat = await self._script("SCAN", [ix], [self._now(), self._space("r", namespace), index.encode()])
        pairs = [(_bytes(flat[n]).decode(), _bytes(flat[n + 1])) for n in range(0, len(flat), 2)]
        return sorted(pairs)

    async def delete_index(self, namespace: str, index: str) -> int:
        """Delete every record with this secondary key (revoke a token family); the live count."""
        ix = self._space("i", namespace) + index.encode()
        return int(await self._script("DELETE_INDEX", [ix], [self._now(), self._space("r", namespace), index.encode()]))

    async def iterate(self, namespace: str) -> AsyncIterator[tuple[str, bytes]]:
        """Every live ``(key, value)`` of ``namespace``, walking its keys with ``SCAN``.

        ``SCAN`` may return a key twice; the keys already yielded are remembered, so each
        record comes once (for a million records, some tens of megabytes while it runs).
        """
        client, _ = self._client()
        space = self._space("r", namespace)
        pattern = _glob_escape(space.decode("utf-8", "surrogateescape")) + b"*"
        seen: set[bytes] = set()
        cursor = 0
        while True:
            cursor, found = await self._call(partial(client.scan, cursor, match=pattern, count=PURGE_BATCH))
            for rec in (_bytes(r) for r in found):
                if rec in seen or not rec.startswith(space):
                    continue
                seen.add(rec)
                value, expires_at = await self._call(partial(client.hmget, rec, ["v", "e"]))
                if value is not None and not (expires_at and float(expires_at) <= self._clock()):
                    yield rec[len(space) :].decode(), _bytes(value)
            if cursor == 0:
                return

    async def purge(self) -> int:
        """Remove the records expired in this store's clock that Redis has not yet expired itself.

        With the real clock Redis removes expired records on its own, so there is
        seldom anything left; this walks the prefix's keys (``SCAN``) and is for
        maintenance, not for every request.
        """
        client, _ = self._client()
        pattern = _glob_escape(f"{self.prefix}r:") + b"*"
        removed = 0
        cursor = 0
        while True:
            cursor, found = await self._call(partial(client.scan, cursor, match=pattern, count=PURGE_BATCH))
            batch = [_bytes(rec) for rec in found]
            if batch:
                args: list[Any] = [self._now()]
                for rec in batch:
                    args += self._split_record(rec)
                removed += int(await self._script("PURGE", batch, args))
            if cursor == 0:
                return removed

    def _split_record(self, rec: bytes) -> list[bytes]:
        """The index set prefix and the member of a record key (``{prefix}r:{len}:{namespace}:{key}``)."""
        rest = rec[len(f"{self.prefix}r:".encode()) :]
        length, _, rest = rest.partition(b":")
        ns = rest[: int(length)]
        return [f"{self.prefix}i:{len(ns)}:".encode() + ns + b":", rest[int(length) + 1 :]]

    async def publish(self, channel: str, message: str) -> None:
        """Send ``message`` to every process listening on ``channel`` under this prefix (Redis pub/sub)."""
        client, _ = self._client()
        await self._call(lambda: client.publish(self._channel(channel), message.encode()))

    def listen(self, channel: str) -> AsyncIterator[str]:
        """The messages published on ``channel`` under this prefix, by any process, until cancelled.

        Yields :data:`~bastion.storage._protocol.RESUBSCRIBED` each time Redis confirms the
        subscription: the first time, and after each reconnection, whether this store
        reconnected or the Redis client did by itself (messages sent while disconnected are
        lost: Redis pub/sub keeps none). A lost connection is retried with a backoff growing
        to ``LISTEN_BACKOFF_MAX``.
        """
        return subscription(self, self._channel(channel))

    def _channel(self, channel: str) -> bytes:
        return f"{self.prefix}channel:".encode() + channel.encode()

    async def ping(self) -> None:
        """Check that Redis answers; raises :class:`~bastion.storage.StoreError` when not."""
        client, _ = self._client()
        await self._call(client.ping)

    async def aclose(self) -> None:
        """Close the connections; later calls raise :class:`~bastion.storage.StoreError`. Idempotent.

        Connections opened on another event loop that still runs (a server's, in its own
        thread) are closed on that loop; those of a loop that has ended cannot be, so close
        the store before the loops that used it end.
        """
        self._closed = True
        clients = list(self._clients.items())
        self._clients.clear()
        current = asyncio.get_running_loop()
        for loop, (client, _) in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                closing = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                await asyncio.wait_for(asyncio.wrap_future(closing), self._command_timeout)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    """A reply as bytes (the client is not set to decode replies)."""
    return value if isinstance(value, bytes) else str(value).encode()


def _glob_escape(text: str) -> bytes:
    """``text`` as a literal in a Redis ``MATCH`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text).encode()
