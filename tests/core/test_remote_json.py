"""RemoteJSON, the one cache of remote JSON documents: lifetime, refetch floor, single flight, last good copy.

The default fetch is real HTTP to a real server on 127.0.0.1; the injected fetch
is the seam key sets and client metadata use, exercised with a plain coroutine.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from bastion._core.errors import ConfigurationError
from bastion._core.remote_json import RemoteJSON, shown_url
from bastion.testing import JWKSServer, KeyPair

from support.clock import FakeClock

KEY = KeyPair.generate("ES256", kid="k1")


@pytest.fixture
def server() -> Iterator[JWKSServer]:
    with JWKSServer(KEY) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def kids(document: Any) -> list[str]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a key set")
    return [key["kid"] for key in document["keys"]]


class Documents:
    """An injected fetch: answers the queued documents (or raises a queued exception), counting calls."""

    def __init__(self, *answers: object, cache_control: str | None = None) -> None:
        self.answers = list(answers)
        self.cache_control = cache_control
        self.calls = 0

    async def __call__(self, url: str) -> tuple[Any, str | None]:
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer, self.cache_control


async def test_a_fresh_copy_is_served_without_a_fetch(server: JWKSServer, clock: FakeClock) -> None:
    remote = RemoteJSON(server.url, parse=kids, clock=clock, default_ttl=300)
    assert remote.value is None
    assert await remote.get() == ["k1"]
    clock.advance(299)
    assert await remote.get() == ["k1"]
    assert server.requests == 1
    clock.advance(1)
    server.set_keys(KeyPair.generate("ES256", kid="k2"))
    assert await remote.get() == ["k2"]
    assert server.requests == 2


@pytest.mark.parametrize(
    ("cache_control", "lifetime"),
    [("max-age=600", 600), ("public, max-age=5", 60), ("max-age=999999", 3600), ("no-store", 60), (None, 300)],
)
async def test_the_lifetime_comes_from_cache_control_within_bounds(
    server: JWKSServer, clock: FakeClock, cache_control: str | None, lifetime: float
) -> None:
    server.cache_control = cache_control
    remote = RemoteJSON(server.url, parse=kids, clock=clock, min_ttl=60, max_ttl=3600, default_ttl=300)
    await remote.get()
    assert remote.expires == clock.now + lifetime
    clock.advance(lifetime - 1)
    await remote.get()
    assert server.requests == 1
    clock.advance(1)
    await remote.get()
    assert server.requests == 2


async def test_the_last_good_copy_is_served_while_fetches_fail(server: JWKSServer, clock: FakeClock) -> None:
    seen: list[tuple[str, bool]] = []
    remote = RemoteJSON(
        server.url + "?token=secret",
        parse=kids,
        clock=clock,
        default_ttl=60,
        on_failure=lambda shown, reason, serving: seen.append((shown, serving)),
    )
    assert await remote.get() == ["k1"]
    server.status = 500
    clock.advance(3600)
    assert await remote.get() == ["k1"]
    assert "HTTP 500" in remote.failure
    assert seen == [(server.url, True)]
    server.body = b"not json"
    server.status = 200
    clock.advance(3600)
    assert await remote.get() == ["k1"]
    assert "not JSON" in remote.failure


async def test_a_document_the_parse_hook_refuses_is_a_failed_fetch(clock: FakeClock) -> None:
    fetch = Documents({"keys": [{"kid": "a"}]}, {"something": "else"})
    remote = RemoteJSON("https://idp.example/jwks", parse=kids, fetch=fetch, clock=clock)
    assert await remote.get() == ["a"]
    clock.advance(3600)
    assert await remote.get() == ["a"]
    assert remote.failure == "not a key set"
    assert fetch.calls == 2


async def test_nothing_before_the_first_good_fetch(clock: FakeClock) -> None:
    remote = RemoteJSON("https://idp.example/jwks", parse=kids, fetch=Documents(OSError("refused")), clock=clock)
    assert await remote.get() is None
    assert remote.failure == "refused"


@pytest.mark.parametrize(("stale_if_error", "still_served"), [(0, False), (120, True), (math.inf, True)])
async def test_stale_if_error_bounds_how_long_the_last_good_copy_outlives_its_lifetime(
    clock: FakeClock, stale_if_error: float, still_served: bool
) -> None:
    fetch = Documents({"keys": [{"kid": "a"}]}, OSError("down"))
    remote = RemoteJSON(
        "https://idp.example/jwks",
        parse=kids,
        fetch=fetch,
        clock=clock,
        default_ttl=300,
        stale_if_error=stale_if_error,
    )
    await remote.get()
    clock.advance(300)
    assert (await remote.get() is not None) is still_served
    clock.advance(1000)
    assert (await remote.get() is not None) is math.isinf(stale_if_error)


async def test_fetches_never_come_closer_than_the_refetch_interval(clock: FakeClock) -> None:
    fetch = Documents({"keys": [{"kid": "a"}]})
    remote = RemoteJSON("https://idp.example/jwks", parse=kids, fetch=fetch, clock=clock, refetch_interval=30)
    assert await remote.refresh()
    assert not await remote.refresh()
    clock.advance(29)
    assert not await remote.refresh()
    assert fetch.calls == 1
    clock.advance(1)
    assert await remote.refresh()
    assert fetch.calls == 2


async def test_concurrent_callers_share_one_fetch(clock: FakeClock) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow(url: str) -> tuple[Any, str | None]:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return {"keys": [{"kid": "a"}]}, None

    remote = RemoteJSON("https://idp.example/jwks", parse=kids, fetch=slow, clock=clock, refetch_interval=0)
    callers = [asyncio.create_task(remote.get()) for _ in range(20)]
    await started.wait()  # the first caller fetches; the others ran as far as the lock
    release.set()
    assert await asyncio.gather(*callers) == [["a"]] * 20
    assert calls == 1


def test_one_cache_serves_every_event_loop(clock: FakeClock) -> None:
    fetch = Documents({"keys": [{"kid": "a"}]})
    remote = RemoteJSON("https://idp.example/jwks", parse=kids, fetch=fetch, clock=clock, refetch_interval=0)
    assert asyncio.run(remote.refresh())
    assert asyncio.run(remote.refresh())
    assert fetch.calls == 2


async def test_a_fetch_that_hangs_times_out(server: JWKSServer, clock: FakeClock) -> None:
    server.delay = 5.0
    remote = RemoteJSON(server.url, parse=kids, clock=clock, timeout=0.2)
    assert await remote.get() is None
    assert remote.failure == "timed out"


def test_urls_in_messages_lose_credentials_query_and_fragment() -> None:
    assert shown_url("https://user:pw@idp.example/a/jwks?key=s#f") == "https://idp.example/a/jwks"


@pytest.mark.parametrize(
    "options",
    [
        {"min_ttl": -1},
        {"min_ttl": 100, "max_ttl": 10},
        {"default_ttl": math.inf},
        {"refetch_interval": math.nan},
        {"timeout": 0},
        {"stale_if_error": -1},
        {"max_bytes": 0},
    ],
)
def test_unusable_settings_are_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="key set cache"):
        RemoteJSON("https://idp.example/jwks", parse=kids, label="key set", **options)
