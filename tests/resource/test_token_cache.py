"""TokenCache: what a verifier keeps of the tokens it verified, and for how long."""

from __future__ import annotations

from bastion import AccessToken, TokenCache

from support.clock import FakeClock


def access(subject: str, expires_at: int | None = None) -> AccessToken:
    return AccessToken(token=subject, client_id="client-1", subject=subject, scopes=[], expires_at=expires_at)


def test_a_stream_of_new_tokens_keeps_those_of_the_last_ttl_not_max_size() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(max_size=10_000, ttl=30.0, clock=clock)
    for second in range(600):  # ten minutes, ten new tokens a second, none seen twice
        clock.now += 1
        for number in range(10):
            token = f"token-{second}-{number}"
            cache.put(token, access(token))
    assert len(cache) <= 310
    assert cache.get("token-599-9") is not None
    assert cache.get("token-0-0") is None


def test_entries_live_until_the_earlier_of_exp_and_ttl_and_the_oldest_goes_when_full() -> None:
    clock = FakeClock(1_800_000_000.0)
    cache = TokenCache(max_size=3, ttl=30.0, clock=clock)
    cache.put("short", access("short", expires_at=int(clock.now) + 10))
    cache.put("long", access("long"))
    clock.now += 11
    assert cache.get("short") is None
    assert cache.get("long") is not None
    for token in ("a", "b", "c"):
        cache.put(token, access(token))
    assert len(cache) == 3
    assert cache.get("long") is None  # the oldest, dropped for the newest
    assert all(cache.get(token) is not None for token in ("a", "b", "c"))
    clock.now += 30
    cache.put("d", access("d"))
    assert len(cache) == 1
