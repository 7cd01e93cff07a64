"""``bastion audit`` and the events it reads: kept by the server for a retention period, on SQLite and Redis."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bastion import AuditEvent, ConfigurationError
from bastion._cli.audit import parse_since
from bastion._cli.main import main
from bastion.authserver import AuditStore, AuthorizationServer
from bastion.authserver._audit_log import parse_duration
from bastion.storage import MemoryStore, SQLiteStore, Store, open_store

from support.clock import FakeClock
from support.proxy import free_port

ISSUER = "https://auth.example"


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return f"sqlite:///{tmp_path / 'auth.db'}"


@dataclass
class Kept:
    """An event to keep: how long ago, its name, who, and its facts."""

    ago: float
    name: str
    subject: str | None = None
    client_id: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def keep(url: str, *events: Kept) -> None:
    """A server on the store at ``url`` that keeps its audit events emits ``events``."""

    async def emit() -> None:
        now = time.time()
        async with open_store(url) as store:
            server = AuthorizationServer(ISSUER, store=store)
            server.keep_audit(retention=86400)
            clock = FakeClock()
            server.audit.clock = clock
            for event in events:
                clock.now = now - event.ago
                await server.audit.emit(
                    event.name, "success", subject=event.subject, client_id=event.client_id, **event.facts
                )

    asyncio.run(emit())


EVENTS = [
    Kept(7200, "signin.succeeded", "alice", "app-1", {"method": "password"}),
    Kept(1800, "token.issued", "bob", "app-2", {"grant_type": "refresh_token"}),
    Kept(60, "client.refused", facts={"method": "dcr", "reason": "registration is disabled"}),
    Kept(0, "call.refused", "alice", "app-2", {"tool": "add_note", "scopes": ["notes:write"]}),
]


def lines(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    assert main(["audit", *argv, "--json"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_the_kept_events_by_user_client_and_time(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    keep(store_url, *EVENTS)
    every = lines(capsys, "--store", store_url)
    assert [e["name"] for e in every] == ["signin.succeeded", "token.issued", "client.refused", "call.refused"]
    assert every[3]["scopes"] == ["notes:write"]
    assert every[0]["subject"] == "alice"
    assert every[0]["time"] < every[1]["time"] < every[2]["time"] < every[3]["time"]  # type: ignore[operator]

    def names(*argv: str) -> list[object]:
        return [e["name"] for e in lines(capsys, "--store", store_url, *argv)]

    assert names("--user", "alice") == ["signin.succeeded", "call.refused"]
    assert names("--client", "app-2") == ["token.issued", "call.refused"]
    assert names("--since", "1h") == ["token.issued", "client.refused", "call.refused"]
    assert names("--since", "5m", "--client", "app-2") == ["call.refused"]
    assert names("--user", "alice", "--client", "app-1") == ["signin.succeeded"]
    assert names("--user", "carol") == []


def test_the_table_has_a_heading_utc_times_and_one_line_per_event(
    store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    keep(store_url, *EVENTS[:2], Kept(0, "signin.failed", client_id="evil\x1b[2J\napp", facts={"reason": "wrong"}))
    monkeypatch.setenv("BASTION_STORE", store_url)  # the store from the environment
    assert main(["audit"]) == 0
    heading, *rows = capsys.readouterr().out.splitlines()
    assert heading.split() == ["time", "event", "outcome", "subject", "client", "address", "request", "facts"]
    assert len(rows) == 3
    first = rows[0].split()
    assert datetime.strptime(first[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp() == pytest.approx(
        time.time() - 7200, abs=60
    )
    assert first[1:5] == ["signin.succeeded", "success", "alice", "app-1"]
    assert first[-1] == "method=password"
    assert "grant_type=refresh_token" in rows[1]
    assert "\x1b" not in rows[2]
    assert "evil\\x1b[2J\\napp" in rows[2]  # a value cannot move the cursor or forge a line


def test_nothing_kept_is_said_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    SQLiteStore(tmp_path / "empty.db")
    assert main(["audit", "--store", f"sqlite:///{tmp_path / 'empty.db'}"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "no audit events" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no store"),
        (["--store", "postgres://admin:hunter2-secret@db/auth"], "not a URL bastion knows"),
        (["--store", "memory://"], "holds nothing"),
        (["--store", "sqlite:///nowhere/at/all.db"], "there is no store file at"),
        (["--store", "memory://", "--since", "last tuesday"], "--since takes"),
        (["--store", "memory://", "--since=-5m"], "--since takes"),
    ],
)
def test_a_bad_store_or_since_is_one_line_and_exit_status_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BASTION_STORE", raising=False)
    assert main(["audit", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("bastion audit: ")
    assert message in err
    assert "hunter2" not in err


def test_an_unreachable_redis_is_one_line_and_exit_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--store", f"redis://:pw-secret@127.0.0.1:{free_port()}/0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bastion audit: the store cannot be read")
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert "pw-secret" not in err


# -- retention ---------------------------------------------------------------------------------------


async def kept_for(store: Store, clock: FakeClock) -> list[list[str]]:
    kept = AuditStore(store, retention=3600)
    seen = []
    for name in ("signin.failed", "token.issued"):
        if name == "token.issued":
            clock.advance(1800)
        await kept(AuditEvent(time=clock(), name=name, outcome="success", subject="alice", client_id="app"))
    for query in (kept.query(), kept.query(user="alice"), kept.query(client="app")):
        seen.append([e.name for e in await query])
    clock.advance(1801)  # the first is past its retention
    for query in (kept.query(), kept.query(user="alice"), kept.query(client="app")):
        seen.append([e.name for e in await query])
    return seen


async def test_events_are_kept_for_the_retention_period(store_url: str, tmp_path: Path) -> None:
    clock = FakeClock()
    if store_url.startswith("redis"):
        from bastion.storage import RedisStore

        store: Store = RedisStore(store_url, clock=clock)
    else:
        store = SQLiteStore(tmp_path / "kept.db", clock=clock)
    async with store:
        seen = await kept_for(store, clock)
    both = ["signin.failed", "token.issued"]
    assert seen == [both, both, both, ["token.issued"], ["token.issued"], ["token.issued"]]


def test_bastion_audit_retention_keeps_every_servers_events(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_AUDIT_RETENTION", "7d")
    server = AuthorizationServer(ISSUER, store=MemoryStore())
    [sink] = server.audit.sinks
    assert isinstance(sink, AuditStore)
    assert sink.retention == 7 * 86400
    assert sink.store is server.store
    assert server.keep_audit(retention=3600) is sink  # not kept twice
    assert sink.retention == 3600
    assert server.audit.sinks == [sink]
    monkeypatch.setenv("BASTION_AUDIT_RETENTION", "a month")
    with pytest.raises(ConfigurationError, match="BASTION_AUDIT_RETENTION"):
        AuthorizationServer(ISSUER, store=MemoryStore())
    monkeypatch.delenv("BASTION_AUDIT_RETENTION")
    assert AuthorizationServer(ISSUER, store=MemoryStore()).audit.sinks == []


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600), ("30d", 2592000), ("2w", 1209600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_since(text, 10_000_000.0) == 10_000_000.0 - seconds


def test_since_an_iso_time() -> None:
    assert parse_since("2025-01-02T03:04:05Z", 0) == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert parse_since("2025-01-02T03:04:05", 0) == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    assert parse_since("2025-01-02T05:04:05+02:00", 0) == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    for bad in ("0", "1y", "", "h"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
