"""Audit events kept in the store for a retention period, and read back by user, client and time.

:class:`AuditStore` is an :class:`~bastion._core.audit.Audit` sink
(``server.keep_audit()`` adds one; ``BASTION_AUDIT_RETENTION`` does so for every
server). Each event is one record with a time to live of the retention period, so
the store forgets old events by itself. Records are keyed by the event's time (in
microseconds, zero-padded, then a sequence number of this process and a random
suffix), so keys sort in time order and a query "since" compares keys without
reading values. Two secondary indexes make the other queries cheap:

- namespace ``audit``: every event, indexed by its subject;
- namespace ``audit-client``: a copy of each event that names a client, indexed by
  its client id.

A query by user reads that user's records only (:meth:`Store.scan`), by client that
client's, and one by time alone walks the namespace (:meth:`Store.iterate`).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import secrets
from dataclasses import dataclass

from bastion._core.audit import AuditEvent
from bastion._core.errors import ConfigurationError
from bastion.storage import Store

__all__ = [
    "AUDIT_CLIENT_NAMESPACE",
    "AUDIT_NAMESPACE",
    "DEFAULT_RETENTION",
    "AuditStore",
    "parse_duration",
    "retention_from_env",
]

#: Every kept event, indexed by subject.
AUDIT_NAMESPACE = "audit"
#: The kept events that name a client, indexed by client id.
AUDIT_CLIENT_NAMESPACE = "audit-client"
#: How long events are kept unless told otherwise: 30 days.
DEFAULT_RETENTION = 30 * 86400.0
#: The variable naming a retention: events are kept by every authorization server of the process.
RETENTION_VARIABLE = "BASTION_AUDIT_RETENTION"

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)
# Orders the events of one process that share a microsecond (a frozen test clock, a fast burst).
_sequence = itertools.count()


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"1h"``, ``"30d"`` or ``"2w"``.

    Raises:
        ValueError: not a positive number with one of those units.
    """
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError("a duration is a number with an optional unit: s, m, h, d or w (90, 15m, 1h, 30d)")
    seconds = float(match.group(1)) * _UNITS[match.group(2).lower() or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


def retention_from_env() -> float | None:
    """``BASTION_AUDIT_RETENTION`` in seconds, or ``None`` when it is unset or empty.

    Raises:
        ConfigurationError: the variable is set to something that is not a duration.
    """
    value = os.environ.get(RETENTION_VARIABLE, "").strip()
    if not value:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigurationError(f"{RETENTION_VARIABLE}: {exc}") from None


def event_key(time: float) -> str:
    """The record key of an event at ``time``: sorts as the times do."""
    micros = max(0, int(time * 1_000_000))
    return f"{micros:020d}-{next(_sequence) % 10**9:09d}-{secrets.token_hex(3)}"


def _since_key(since: float) -> str:
    return f"{max(0, int(since * 1_000_000)):020d}"


@dataclass
class AuditStore:
    """A sink keeping every event in ``store`` for ``retention`` seconds, and the queries over them.

    Args:
        store: Where events are kept (the authorization server's store, so that
            ``bastion audit --store`` finds them).
        retention: Seconds each event is kept (default 30 days).
    """

    store: Store
    retention: float = DEFAULT_RETENTION

    def __post_init__(self) -> None:
        if not math.isfinite(self.retention) or self.retention <= 0:
            raise ConfigurationError("the audit retention must be a positive number of seconds")

    async def __call__(self, event: AuditEvent) -> None:
        """Keep ``event``."""
        key = event_key(event.time)
        value = event.to_json().encode()
        await self.store.put(AUDIT_NAMESPACE, key, value, self.retention, index=event.subject)
        if event.client_id is not None:
            await self.store.put(AUDIT_CLIENT_NAMESPACE, key, value, self.retention, index=event.client_id)

    async def query(
        self, *, user: str | None = None, client: str | None = None, since: float | None = None
    ) -> list[AuditEvent]:
        """The kept events of ``user``, of ``client``, at or after ``since`` (all that apply), oldest first."""
        if user is not None:
            records = await self.store.scan(AUDIT_NAMESPACE, user)
        elif client is not None:
            records = await self.store.scan(AUDIT_CLIENT_NAMESPACE, client)
        else:
            records = [record async for record in self.store.iterate(AUDIT_NAMESPACE)]
        floor = None if since is None else _since_key(since)
        events: list[tuple[str, AuditEvent]] = []
        for key, raw in records:
            if floor is not None and key < floor:
                continue
            try:
                event = AuditEvent.from_dict(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue  # a record this version cannot read is skipped, not fatal
            if client is not None and event.client_id != client:
                continue
            events.append((key, event))
        events.sort(key=lambda pair: pair[0])
        return [event for _, event in events]
