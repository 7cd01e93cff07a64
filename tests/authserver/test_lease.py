"""``StoreLease``: one holder at a time among every process sharing a store, on each backend.

Two store objects on one SQLite file or one Redis prefix stand for two processes. Time on
the store's side is a fake clock moved by hand; the waits a waiter makes are its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from bastion.authserver._lease import LEASE_NAMESPACE, LeaseTimeout, StoreLease
from bastion.storage import MemoryStore, RedisStore, SQLiteStore, Store

from support.clock import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def stores(
    request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    """Two handles on one backend (the same object for memory, which one process only can share)."""
    if request.param == "memory":
        memory = MemoryStore(clock=clock)
        pair: tuple[Store, Store] = (memory, memory)
    elif request.param == "sqlite":
        pair = (SQLiteStore(tmp_path / "s.db", clock=clock), SQLiteStore(tmp_path / "s.db", clock=clock))
    else:
        url = request.getfixturevalue("redis_url")
        pair = (RedisStore(url, clock=clock), RedisStore(url, clock=clock))
    yield pair
    for store in {id(s): s for s in pair}.values():
        await store.aclose()


async def test_one_holder_and_only_the_holder_releases(stores: tuple[Store, Store]) -> None:
    one, other = StoreLease(stores[0], "job", ttl=30), StoreLease(stores[1], "job", ttl=30)
    assert await one.acquire()
    assert not await other.acquire()
    assert not await other.release()  # it never held the lease
    assert not await other.acquire()
    assert await one.release()
    assert not await one.release()
    assert await other.acquire()


async def test_a_lease_ends_with_its_ttl_and_the_late_holder_cannot_end_the_next(
    stores: tuple[Store, Store], clock: FakeClock
) -> None:
    late, next_holder = StoreLease(stores[0], "job", ttl=10), StoreLease(stores[1], "job", ttl=10)
    assert await late.acquire()
    clock.advance(10)
    assert await next_holder.acquire()
    assert not await late.release()
    assert not await StoreLease(stores[0], "job", ttl=10).acquire()  # still the next holder's


class Job:
    """Work whose result is a record in the store; it holds on until a waiter has looked for it."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.runs = 0
        self.looked = 0
        self.waiter_looked = asyncio.Event()

    async def work(self) -> str:
        self.runs += 1
        await self.waiter_looked.wait()
        result = f"result-{self.runs}"
        await self.store.put("results", "job", result.encode())
        return result

    def finished(self, store: Store) -> Callable[[], Awaitable[str | None]]:
        async def read() -> str | None:
            self.looked += 1
            if self.looked >= 2:  # the holder looks once after acquiring; this one waits
                self.waiter_looked.set()
            raw = await store.get("results", "job")
            return None if raw is None else raw.decode()

        return read


async def test_concurrent_runs_work_once_and_share_the_result(stores: tuple[Store, Store]) -> None:
    job = Job(stores[0])
    runs = [StoreLease(stores[n % 2], "job", ttl=30).run(job.work, job.finished(stores[n % 2])) for n in range(10)]
    assert set(await asyncio.gather(*runs)) == {"result-1"}
    assert job.runs == 1
    assert await StoreLease(stores[0], "job", ttl=30).acquire()  # released


async def test_a_crashed_holder_is_replaced_once_its_lease_runs_out(
    stores: tuple[Store, Store], clock: FakeClock
) -> None:
    assert await stores[0].add(LEASE_NAMESPACE, "job", b"crashed-holder", ttl=20)
    job = Job(stores[1])
    job.waiter_looked.set()
    waiting = asyncio.Event()

    async def finished() -> str | None:
        waiting.set()
        return None

    task = asyncio.ensure_future(StoreLease(stores[1], "job", ttl=20).run(job.work, finished))
    await waiting.wait()
    assert job.runs == 0
    clock.advance(20)
    assert await task == "result-1"


async def test_a_lease_held_past_the_deadline_is_a_timeout(stores: tuple[Store, Store]) -> None:
    assert await stores[0].add(LEASE_NAMESPACE, "job", b"stuck-holder", ttl=20)
    job = Job(stores[1])
    with pytest.raises(LeaseTimeout):
        await StoreLease(stores[1], "job", ttl=20).run(job.work, job.finished(stores[1]), wait=0.2)
    assert job.runs == 0


async def test_failed_work_releases_the_lease(stores: tuple[Store, Store]) -> None:
    async def fail() -> str:
        raise RuntimeError("the work failed")

    async def nothing() -> str | None:
        return None

    with pytest.raises(RuntimeError):
        await StoreLease(stores[0], "job", ttl=30).run(fail, nothing)
    assert await StoreLease(stores[1], "job", ttl=30).acquire()
