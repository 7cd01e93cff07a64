"""What :class:`RedisStore` adds to the store contract: Redis's own expiry, prefixes, passwords, outages.

The contract suite (test_store_contract.py) runs against Redis too; these tests
look at the Redis server itself, as an operator would with ``redis-cli``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import pytest
import redis
import redis.asyncio

from bastion import ConfigurationError
from bastion.storage import RedisStore, StoreError, open_store
from bastion.storage._protocol import RESUBSCRIBED
from bastion.storage._redis import MAX_CONNECTIONS

from support.redis import RedisServer


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    made = RedisStore(redis_url)
    yield made
    await made.aclose()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def _keys(raw: redis.asyncio.Redis, store: RedisStore) -> list[bytes]:
    return sorted(key if isinstance(key, bytes) else key.encode() for key in await raw.keys(store.prefix + "*"))


async def test_redis_expires_records_itself(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await store.put("codes", "c", b"v", ttl=30, index="fam")
    await store.put("clients", "k", b"v")
    ttls = {key: await raw.pttl(key) for key in await _keys(raw, store)}
    expiring = [ttl for key, ttl in ttls.items() if b"codes" in key]
    assert len(expiring) == 2  # the record and its index set
    assert all(0 < ttl <= 30_000 for ttl in expiring)
    assert [ttl for key, ttl in ttls.items() if b"clients" in key] == [-1]


async def test_swap_sets_redis_expiry(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await store.put("rt", "k", b"old", ttl=10, index="fam")
    assert await store.swap("rt", "k", b"old", b"new", ttl=3600)
    ttls = [await raw.pttl(key) for key in await _keys(raw, store)]
    assert all(10_000 < ttl <= 3_600_000 for ttl in ttls)  # the index set lives as long as its member
    assert await store.swap("rt", "k", b"new", b"newer")  # no ttl: it no longer expires
    assert [await raw.pttl(key) for key in await _keys(raw, store)] == [-1, -1]


async def test_scan_stays_right_as_redis_expires_records(store: RedisStore, raw: redis.asyncio.Redis) -> None:
    await store.put("grants", "a", b"1", ttl=60, index="user")
    await store.put("grants", "b", b"2", ttl=60, index="user")
    # Redis expiring a record removes its hash and leaves its name in the index set.
    [record_a] = [key for key in await _keys(raw, store) if key.endswith(b":a")]
    await raw.delete(record_a)
    assert await store.scan("grants", "user") == [("b", b"2")]
    # ... and the scan dropped the stale name from the set.
    [index_set] = [key for key in await _keys(raw, store) if key.endswith(b":user")]
    assert await raw.smembers(index_set) == {b"b"}
    assert await store.delete_index("grants", "user") == 1
    assert await _keys(raw, store) == []


async def test_a_record_moved_to_another_index_leaves_the_old_one(store: RedisStore) -> None:
    await store.put("grants", "a", b"1", index="alice")
    await store.put("grants", "a", b"2", index="bob")
    await store.put("grants", "b", b"3", index="alice")
    await store.take("grants", "b")
    assert await store.scan("grants", "alice") == []
    assert await store.delete_index("grants", "alice") == 0
    assert await store.scan("grants", "bob") == [("a", b"2")]


async def test_prefixes_keep_deployments_apart(redis_server: RedisServer) -> None:
    one = RedisStore(f"{redis_server.url}?prefix=one:")
    two = RedisStore(redis_server.url, prefix="two:")
    again = open_store(f"{redis_server.url}?prefix=one:")
    try:
        await one.put("clients", "c", b"first")
        assert await two.get("clients", "c") is None
        assert await two.add("clients", "c", b"second")
        assert await again.get("clients", "c") == b"first"
        assert isinstance(again, RedisStore)
        assert again.prefix == "one:"
    finally:
        for store in (one, two, again):
            await store.delete("clients", "c")
            await store.aclose()


async def test_the_default_prefix(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    assert store.prefix == "bastion:"
    await store.aclose()


async def test_password_from_the_url() -> None:
    with RedisServer(password="s3cret-pw") as server:
        good = RedisStore(server.url)
        bad = RedisStore(server.url.replace("s3cret-pw", "wrong-pw"))
        try:
            await good.put("ns", "k", b"v")
            assert await good.get("ns", "k") == b"v"
            with pytest.raises(StoreError) as refused:
                await bad.get("ns", "k")
            assert "wrong-pw" not in str(refused.value)
            assert "s3cret-pw" not in repr(good)
        finally:
            await good.aclose()
            await bad.aclose()


async def test_an_outage_fails_fast_and_the_store_recovers() -> None:
    with RedisServer(persist=True) as server:
        store = RedisStore(server.url, connect_timeout=0.5, command_timeout=0.5)
        try:
            await store.put("rt", "k", b"before")
            server.stop()
            with pytest.raises(StoreError):
                await store.get("rt", "k")
            with pytest.raises(StoreError):
                await store.swap("rt", "k", b"before", b"during")
            server.start()
            # The same object reconnects by itself; what was written before the outage is intact.
            assert await store.get("rt", "k") == b"before"
            assert await store.swap("rt", "k", b"before", b"after")
        finally:
            await store.aclose()


async def test_closing_closes_the_connections_of_a_server_loop_in_another_thread(
    redis_url: str, raw: redis.asyncio.Redis
) -> None:
    # A served app uses the store on its own loop, in its own thread, while the caller uses it on its own.
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    store = RedisStore(redis_url)
    try:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(store.put("ns", "k", b"there"), loop))
        assert await store.get("ns", "k") == b"there"
        before = len(await raw.client_list())
        await store.aclose()
        assert len(await raw.client_list()) == before - 2
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def test_a_connection_redis_dropped_is_reopened_not_a_failed_call(
    store: RedisStore, redis_server: RedisServer
) -> None:
    # Redis closes connections (a restart, its idle timeout, CLIENT KILL, a failover); the next
    # call on a pooled connection it closed is retried on a new one, not answered with an error.
    await store.put("rt", "k", b"v")
    with redis.Redis.from_url(redis_server.url) as admin:
        for _ in range(5):
            # Blocking the event loop, so the client has not yet noticed the close when it calls.
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            assert await store.get("rt", "k") == b"v"


async def test_a_listener_says_it_is_subscribed_only_once_redis_has_the_subscription(
    store: RedisStore, redis_server: RedisServer
) -> None:
    # Then whatever is published is received: a subscriber clears what it may have missed on
    # RESUBSCRIBED, and would miss what is published after it if Redis did not listen yet.
    await store.ping()  # an open connection in the pool
    with redis.Redis.from_url(redis_server.url) as admin:
        # Closed by Redis while the event loop is blocked: the pool hands it out, thinking it open.
        admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        messages = store.listen("news")
        try:
            assert await anext(messages) == RESUBSCRIBED
            channel = store.prefix + "channel:news"
            assert admin.pubsub_numsub(channel) == [(channel.encode(), 1)]
            # A connection dropped under the subscription: it is confirmed again, and said so.
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert await anext(messages) == RESUBSCRIBED
            admin.publish(channel, "hello")
            assert await anext(messages) == "hello"
        finally:
            await messages.aclose()  # type: ignore[attr-defined]


async def test_more_concurrent_calls_than_connections_wait_for_one(store: RedisStore) -> None:
    # A busy replica has hundreds of requests in flight: they share the pool, none is refused.
    await store.put("rt", "k", b"v")
    assert await asyncio.gather(*(store.get("rt", "k") for _ in range(500))) == [b"v"] * 500
    assert await asyncio.gather(*(store.swap("rt", "k", b"v", b"v") for _ in range(500))) == [True] * 500


async def test_a_call_waits_for_a_busy_pool_longer_than_one_command_may_take(redis_url: str) -> None:
    # Waiting for a connection is load, not an outage: on busy cores a replica's calls queue
    # for longer than a command may take, and must then succeed, not answer 503.
    store = RedisStore(redis_url, command_timeout=0.2)
    try:
        await store.put("rt", "k", b"v")
        client, _ = store._client()
        pool = client.connection_pool
        held = [await pool.get_connection() for _ in range(MAX_CONNECTIONS)]  # type: ignore[no-untyped-call]
        waiting = asyncio.ensure_future(store.get("rt", "k"))
        await asyncio.sleep(0.5)  # every connection stays in use for longer than the command timeout
        assert not waiting.done()
        for connection in held:
            await pool.release(connection)
        assert await waiting == b"v"
    finally:
        await store.aclose()


async def test_a_frozen_redis_fails_every_queued_call_and_the_store_recovers() -> None:
    # A hung host keeps the connections open and answers nothing: the calls holding a
    # connection give up after the command timeout, those queued behind them after the queue
    # timeout at most; none waits for ever, and once Redis answers again so does the store.
    with RedisServer() as server:
        store = RedisStore(server.url, connect_timeout=0.3, command_timeout=0.3, queue_timeout=0.5)
        try:
            await store.put("rt", "k", b"v")
            server.freeze()
            calls = 2 * MAX_CONNECTIONS + 10
            outcomes = await asyncio.gather(*(store.get("rt", "k") for _ in range(calls)), return_exceptions=True)
            assert [type(outcome) for outcome in outcomes] == [StoreError] * calls
            server.thaw()
            assert await store.get("rt", "k") == b"v"
        finally:
            await store.aclose()


async def test_closed_store_raises(store: RedisStore) -> None:
    await store.aclose()
    with pytest.raises(StoreError):
        await store.get("ns", "k")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:6379", "redis://127.0.0.1:notaport/0", "redis://127.0.0.1:6379/notadb"]
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(url)


async def test_a_redis_that_may_evict_records_is_reported(
    store: RedisStore, raw: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    await raw.config_set("maxmemory-policy", "allkeys-lru")
    try:
        with caplog.at_level("WARNING", logger="bastion"):
            await store.put("ns", "k", b"v")
            await store.put("ns", "k2", b"v")
    finally:
        await raw.config_set("maxmemory-policy", "noeviction")
    warnings = [r.getMessage() for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert warnings == [
        "Redis's maxmemory-policy is allkeys-lru: under memory pressure it may evict bastion's records "
        "(revocations, keys, grants); set maxmemory-policy noeviction"
    ]


async def test_a_redis_that_keeps_records_is_not_reported(store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="bastion"):
        await store.put("ns", "k", b"v")
    assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
