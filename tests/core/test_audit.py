"""The audit trail's core: events as JSON lines and to sinks, the request's address and id, no secrets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bastion._core.audit import AUDIT_LOGGER, Audit, AuditEvent, current_request, enter_request, leave_request

from support.clock import FakeClock


def _scope(request_id: bytes | None = None) -> dict[str, Any]:
    headers = [] if request_id is None else [(b"x-request-id", request_id)]
    return {"type": "http", "client": ("203.0.113.7", 50000), "headers": headers}


async def test_an_event_is_a_json_line_on_the_audit_logger(caplog: pytest.LogCaptureFixture) -> None:
    audit = Audit(clock=FakeClock(1_700_000_000.0))
    entered = enter_request(_scope(b"req-42"))
    try:
        with caplog.at_level("INFO", logger=AUDIT_LOGGER):
            await audit.emit("token.issued", "success", subject="alice", client_id="app", grant_type="refresh_token")
    finally:
        leave_request(entered)
    [record] = [r for r in caplog.records if r.name == AUDIT_LOGGER]
    assert json.loads(record.getMessage()) == {
        "time": 1_700_000_000.0,
        "name": "token.issued",
        "outcome": "success",
        "subject": "alice",
        "client_id": "app",
        "address": "203.0.113.7",
        "request_id": "req-42",
        "grant_type": "refresh_token",
    }


async def test_sinks_get_every_event_and_a_failing_one_breaks_nothing() -> None:
    seen: list[AuditEvent] = []

    async def keep(event: AuditEvent) -> None:
        seen.append(event)

    def broken(event: AuditEvent) -> None:
        raise RuntimeError("the sink is down")

    audit = Audit([broken, keep], log=False)
    event = await audit.emit("signin.failed", "failure", subject="bob", reason="wrong password")
    assert seen == [event]
    assert AuditEvent.from_dict(json.loads(event.to_json())) == event


async def test_only_known_facts_are_accepted() -> None:
    audit = Audit(log=False)
    with pytest.raises(ValueError, match="carry no"):
        await audit.emit("token.issued", "success", access_token="eyJ...")
    with pytest.raises(ValueError, match="carry no"):
        await audit.emit("signin.failed", "failure", password="hunter2")


async def test_only_known_events_are_accepted() -> None:
    with pytest.raises(ValueError, match="no audit event"):
        await Audit(log=False).emit("token.isued", "success")


async def test_values_are_bounded() -> None:
    event = await Audit(log=False).emit("client.refused", "failure", client_id="x" * 10_000, reason="y" * 10_000)
    assert event.client_id is not None
    assert len(event.client_id) == 200
    assert event.facts["reason"] == "y" * 200


@pytest.mark.parametrize("request_id", [b"a" * 129, b"evil\nline", b"", b"caf\xc3\xa9"])
async def test_an_unsafe_request_id_is_replaced(request_id: bytes) -> None:
    entered = enter_request(_scope(request_id))
    try:
        info = current_request()
        assert info is not None
        assert info.request_id != request_id.decode("latin-1")
        assert len(info.request_id) == 16
        assert current_request() is info  # one id for the whole request
    finally:
        leave_request(entered)
    assert current_request() is None


async def test_an_inner_middleware_keeps_the_outer_request() -> None:
    outer = enter_request(_scope(b"outer"))
    inner = enter_request(_scope(b"inner"))
    try:
        assert inner is None
        info = current_request()
        assert info is not None
        assert info.request_id == "outer"
    finally:
        leave_request(inner)
        leave_request(outer)
