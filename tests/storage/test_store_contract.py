"""The contract every :class:`bastion.storage.Store` meets, run against each implementation.

Time is a fake clock moved by hand, so nothing sleeps. The races start many
callers at once and count winners: an authorization code is redeemed once and
a refresh token rotates once, within one process and across processes.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion import ConfigurationError
from bastion.storage import MemoryStore, RedisStore, SQLiteStore, Store, StoreError, open_store
from bastion.storage._protocol import PURGE_EVERY, RESUBSCRIBED

from support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        made: Store = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        made = SQLiteStore(tmp_path / "store.db", clock=clock)
    else:
        made = RedisStore(request.getfixturevalue("redis_url"), clock=clock)
    yield made
    await made.aclose()


# Basic operations


async def test_put_get_overwrite(store: Store) -> None:
    assert await store.get("ns", "k") is None
    await store.put("ns", "k", b"one")
    assert await store.get("ns", "k") == b"one"
    await store.put("ns", "k", b"two")
    assert await store.get("ns", "k") == b"two"


async def test_add_only_when_absent(store: Store) -> None:
    assert await store.add("ns", "k", b"first") is True
    assert await store.add("ns", "k", b"second") is False
    assert await store.get("ns", "k") == b"first"


async def test_take_returns_once(store: Store) -> None:
    await store.put("codes", "c", b"grant")
    assert await store.take("codes", "c") == b"grant"
    assert await store.take("codes", "c") is None
    assert await store.get("codes", "c") is None


async def test_swap_compare_and_set(store: Store) -> None:
    assert await store.swap("rt", "k", b"old", b"new") is False
    await store.put("rt", "k", b"old")
    assert await store.swap("rt", "k", b"wrong", b"new") is False
    assert await store.get("rt", "k") == b"old"
    assert await store.swap("rt", "k", b"old", b"new") is True
    assert await store.get("rt", "k") == b"new"
    assert await store.swap("rt", "k", b"old", b"newer") is False


async def test_delete(store: Store) -> None:
    assert await store.delete("ns", "k") is False
    await store.put("ns", "k", b"v")
    assert await store.delete("ns", "k") is True
    assert await store.get("ns", "k") is None
    assert await store.delete("ns", "k") is False


async def test_namespaces_are_isolated(store: Store) -> None:
    await store.put("a", "k", b"in a", index="fam")
    await store.put("b", "k", b"in b", index="fam")
    assert await store.get("a", "k") == b"in a"
    assert await store.take("b", "k") == b"in b"
    assert await store.get("a", "k") == b"in a"
    assert await store.scan("b", "fam") == []
    assert await store.delete_index("b", "fam") == 0
    assert await store.scan("a", "fam") == [("k", b"in a")]


# Secondary index


async def test_scan_and_delete_index(store: Store) -> None:
    await store.put("rt", "t2", b"two", index="family-1")
    await store.put("rt", "t1", b"one", index="family-1")
    await store.put("rt", "t3", b"three", index="family-2")
    await store.put("rt", "t4", b"four")
    assert await store.scan("rt", "family-1") == [("t1", b"one"), ("t2", b"two")]
    assert await store.delete_index("rt", "family-1") == 2
    assert await store.scan("rt", "family-1") == []
    assert await store.get("rt", "t1") is None
    assert await store.get("rt", "t3") == b"three"
    assert await store.get("rt", "t4") == b"four"
    assert await store.delete_index("rt", "family-1") == 0


async def test_put_moves_a_record_between_indexes(store: Store) -> None:
    await store.put("ns", "k", b"v1", index="x")
    await store.put("ns", "k", b"v2", index="y")
    assert await store.scan("ns", "x") == []
    assert await store.scan("ns", "y") == [("k", b"v2")]
    await store.put("ns", "k", b"v3")
    assert await store.scan("ns", "y") == []


async def test_swap_keeps_the_index(store: Store) -> None:
    await store.put("rt", "k", b"old", index="fam")
    assert await store.swap("rt", "k", b"old", b"new") is True
    assert await store.scan("rt", "fam") == [("k", b"new")]
    assert await store.delete_index("rt", "fam") == 1


# Expiry


async def test_ttl_expiry(store: Store, clock: FakeClock) -> None:
    await store.put("ns", "k", b"v", ttl=10)
    clock.advance(9.5)
    assert await store.get("ns", "k") == b"v"
    clock.advance(0.5)
    assert await store.get("ns", "k") is None
    assert await store.take("ns", "k") is None
    assert await store.swap("ns", "k", b"v", b"w") is False
    assert await store.delete("ns", "k") is False


async def test_no_ttl_never_expires(store: Store, clock: FakeClock) -> None:
    await store.put("ns", "k", b"v")
    clock.advance(10 * 365 * 86400)
    assert await store.get("ns", "k") == b"v"


async def test_add_over_an_expired_record(store: Store, clock: FakeClock) -> None:
    await store.put("ns", "k", b"old", ttl=5, index="old-family")
    clock.advance(6)
    assert await store.add("ns", "k", b"new", ttl=5, index="new-family") is True
    assert await store.get("ns", "k") == b"new"
    assert await store.scan("ns", "old-family") == []
    assert await store.scan("ns", "new-family") == [("k", b"new")]
    assert await store.add("ns", "k", b"newer") is False


async def test_swap_sets_a_new_ttl(store: Store, clock: FakeClock) -> None:
    await store.put("rt", "k", b"old")
    assert await store.swap("rt", "k", b"old", b"new", ttl=30) is True
    clock.advance(29)
    assert await store.get("rt", "k") == b"new"
    clock.advance(1)
    assert await store.get("rt", "k") is None


async def test_swap_with_ttl_zero_deletes_only_the_expected_value(store: Store) -> None:
    # How a lease is released: only by its holder, with nothing left that blocks the next ``add``.
    await store.add("lease", "k", b"mine", ttl=30)
    assert await store.swap("lease", "k", b"theirs", b"", ttl=0) is False
    assert await store.get("lease", "k") == b"mine"
    assert await store.swap("lease", "k", b"mine", b"", ttl=0) is True
    assert await store.get("lease", "k") is None
    assert await store.swap("lease", "k", b"", b"", ttl=0) is False
    assert await store.add("lease", "k", b"next", ttl=30) is True


async def test_expired_records_leave_scan_and_delete_index(store: Store, clock: FakeClock) -> None:
    await store.put("rt", "short", b"s", ttl=1, index="fam")
    await store.put("rt", "long", b"l", ttl=100, index="fam")
    clock.advance(2)
    assert await store.scan("rt", "fam") == [("long", b"l")]
    assert await store.delete_index("rt", "fam") == 1


async def test_purge(store: Store, clock: FakeClock) -> None:
    await store.put("ns", "a", b"a", ttl=10)
    await store.put("ns", "b", b"b", ttl=20, index="fam")
    await store.put("ns", "c", b"c")
    assert await store.purge() == 0
    clock.advance(15)
    assert await store.purge() == 1
    clock.advance(10)
    assert await store.purge() == 1
    assert await store.purge() == 0
    assert await store.scan("ns", "fam") == []
    assert await store.get("ns", "c") == b"c"


async def test_purge_runs_by_itself(store: Store, clock: FakeClock) -> None:
    if isinstance(store, RedisStore):
        pytest.skip("Redis expires records itself: test_redis_expires_records_itself")
    await store.put("ns", "expiring", b"v", ttl=1)
    clock.advance(2)
    for i in range(PURGE_EVERY):
        await store.put("filler", str(i % 7), b"x")
    assert await store.purge() == 0


# Values and keys


async def test_large_and_binary_values(store: Store) -> None:
    big = os.urandom(4 * 1024 * 1024)
    await store.put("ns", "big", big)
    assert await store.get("ns", "big") == big
    odd = b"\x00\xff\x00 nul bytes \x00"
    await store.put("ns", "odd", odd)
    assert await store.take("ns", "odd") == odd
    await store.put("ns", "empty", b"")
    assert await store.get("ns", "empty") == b""
    assert await store.swap("ns", "empty", b"", b"full") is True


@pytest.mark.parametrize(
    "key",
    ["", "ключ-🔑", 'it\'s "quoted"', "'; DROP TABLE records; --", "a%_*?\\", "tab\tnew\nline", "x" * 2000],
)
async def test_odd_keys(store: Store, key: str) -> None:
    await store.put(key, key, key.encode(), index=key)
    assert await store.get(key, key) == key.encode()
    assert await store.scan(key, key) == [(key, key.encode())]
    assert await store.get("other", key) is None
    assert await store.swap(key, key, key.encode(), b"v2") is True
    assert await store.take(key, key) == b"v2"
    assert await store.add(key, key, b"v3", index=key) is True
    assert await store.delete_index(key, key) == 1


# Lifecycle


async def test_closed_store_raises(store: Store) -> None:
    await store.put("ns", "k", b"v")
    await store.aclose()
    await store.aclose()
    with pytest.raises(StoreError):
        await store.get("ns", "k")
    with pytest.raises(StoreError):
        await store.put("ns", "k", b"v")


async def test_async_context_manager(clock: FakeClock, tmp_path: Path) -> None:
    for made in (MemoryStore(clock=clock), SQLiteStore(tmp_path / "ctx.db", clock=clock)):
        async with made as store:
            await store.put("ns", "k", b"v")
        with pytest.raises(StoreError):
            await made.get("ns", "k")


async def test_sqlite_durability(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "deep" / "er" / "store.db"
    store = SQLiteStore(path, clock=clock)
    await store.put("rt", "k", b"persisted", ttl=100, index="fam")
    await store.put("ns", "gone", b"x", ttl=1)
    await store.aclose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    clock.advance(50)
    reopened = SQLiteStore(path, clock=clock)
    try:
        assert await reopened.get("rt", "k") == b"persisted"
        assert await reopened.scan("rt", "fam") == [("k", b"persisted")]
        assert await reopened.get("ns", "gone") is None
        clock.advance(50)
        assert await reopened.get("rt", "k") is None
    finally:
        await reopened.aclose()


async def test_sqlite_bad_path(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(ConfigurationError) as caught:
        SQLiteStore(tmp_path / "dir.db")
    assert str(caught.value) == f"cannot open the store file {tmp_path / 'dir.db'}: unable to open database file"


# Races within one process


async def test_concurrent_take_has_one_winner(store: Store) -> None:
    await store.put("codes", "c", b"grant")
    results = await asyncio.gather(*(store.take("codes", "c") for _ in range(50)))
    assert [r for r in results if r is not None] == [b"grant"]


async def test_concurrent_swap_has_one_winner(store: Store) -> None:
    await store.put("rt", "k", b"old")
    results = await asyncio.gather(*(store.swap("rt", "k", b"old", f"new-{i}".encode()) for i in range(50)))
    assert results.count(True) == 1
    assert await store.get("rt", "k") == f"new-{results.index(True)}".encode()


async def test_concurrent_add_has_one_winner(store: Store) -> None:
    results = await asyncio.gather(*(store.add("ns", "k", f"v{i}".encode()) for i in range(50)))
    assert results.count(True) == 1
    assert await store.get("ns", "k") == f"v{results.index(True)}".encode()


async def test_sqlite_race_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    stores = [SQLiteStore(path) for _ in range(5)]
    try:
        await stores[0].put("codes", "c", b"grant")
        await stores[0].put("rt", "k", b"old")
        taken = await asyncio.gather(*(s.take("codes", "c") for s in stores for _ in range(10)))
        swapped = await asyncio.gather(*(s.swap("rt", "k", b"old", b"new") for s in stores for _ in range(10)))
    finally:
        for s in stores:
            await s.aclose()
    assert [t for t in taken if t is not None] == [b"grant"]
    assert swapped.count(True) == 1


# Races across processes

_CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from bastion.storage import open_store

    async def main() -> None:
        url, op, me = sys.argv[1], sys.argv[2], sys.argv[3]
        store = open_store(url)
        print("ready", flush=True)
        sys.stdin.readline()
        if op == "take":
            won = await store.take("codes", "c") == b"grant"
        else:
            won = await store.swap("rt", "k", b"old", me.encode())
        await store.aclose()
        print("won" if won else "lost", flush=True)

    asyncio.run(main())
    """
)


def _race(url: str, op: str, processes: int = 4) -> list[str]:
    """Start the processes, wait until each has opened the store at ``url``, then release them all at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, url, op, f"p{i}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outcomes = []
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0
            outcomes.append(out.strip())
        return outcomes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


async def _put(url: str, namespace: str, key: str, value: bytes) -> None:
    async with open_store(url) as store:
        await store.put(namespace, key, value)


async def _get(url: str, namespace: str, key: str) -> bytes | None:
    async with open_store(url) as store:
        return await store.get(namespace, key)


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store several processes open: a SQLite file on this host, or a Redis server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("redis_url"))


def test_take_across_processes(shared_url: str) -> None:
    asyncio.run(_put(shared_url, "codes", "c", b"grant"))
    outcomes = _race(shared_url, "take")
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert asyncio.run(_get(shared_url, "codes", "c")) is None


def test_swap_across_processes(shared_url: str) -> None:
    asyncio.run(_put(shared_url, "rt", "k", b"old"))
    outcomes = _race(shared_url, "swap")
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
    assert asyncio.run(_get(shared_url, "rt", "k")) == f"p{outcomes.index('won')}".encode()


# Listing a namespace (administration)


async def test_iterate_lists_each_live_record_of_a_namespace_once(store: Store, clock: FakeClock) -> None:
    for i in range(1234):
        await store.put("clients", f"c{i:04}", str(i).encode(), ttl=10 if i % 100 == 0 else None)
    await store.put("clients", "", b"empty key")
    await store.put("clients2", "c0001", b"another namespace")
    await store.put("client", "c0001", b"a prefix of the namespace")
    clock.advance(11)
    listed = [item async for item in store.iterate("clients")]
    assert len(listed) == len({key for key, _ in listed})
    assert dict(listed) == {
        **{f"c{i:04}": str(i).encode() for i in range(1234) if i % 100},
        "": b"empty key",
    }
    assert [item async for item in store.iterate("nothing here")] == []


# Messages between the processes sharing a store


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def two_handles(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Store, Store]]:
    """Two handles on one store, as two processes have (one object for memory, which is per process)."""
    if request.param == "memory":
        memory = MemoryStore()
        yield memory, memory
        await memory.aclose()
        return
    url = f"sqlite:///{tmp_path / 'shared.db'}" if request.param == "sqlite" else request.getfixturevalue("redis_url")
    one, two = open_store(url), open_store(url)
    yield one, two
    await one.aclose()
    await two.aclose()


async def test_a_message_reaches_the_listeners_of_its_channel(two_handles: tuple[Store, Store]) -> None:
    sender, receiver = two_handles
    messages = receiver.listen("revocations")
    others = receiver.listen("something else")
    assert messages is not None
    assert others is not None
    assert await anext(messages) == RESUBSCRIBED
    assert await anext(others) == RESUBSCRIBED
    await sender.publish("revocations", "grant-1")
    await sender.publish("something else", "unrelated")
    await sender.publish("revocations", "grant-2 ✓")
    assert await asyncio.wait_for(anext(messages), 10) == "grant-1"
    assert await asyncio.wait_for(anext(messages), 10) == "grant-2 ✓"
    assert await asyncio.wait_for(anext(others), 10) == "unrelated"
    await messages.aclose()  # type: ignore[attr-defined]
    await others.aclose()  # type: ignore[attr-defined]
