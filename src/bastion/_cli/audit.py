"""``bastion audit``: the audit events an authorization server kept in its store, by user, client and time.

The server keeps them when told to (``server.keep_audit()`` or
``BASTION_AUDIT_RETENTION``); this command reads the same store (``--store`` or
``BASTION_STORE``) and prints a table, oldest first, or JSON lines (``--json``). A
missing or unreadable store or a bad ``--since`` is one line on stderr and exit
status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from bastion._cli.store_session import existing_store
from bastion._core.audit import AuditEvent
from bastion._core.errors import ConfigurationError

if TYPE_CHECKING:
    from bastion.storage import Store

__all__ = ["add_parser", "format_table", "parse_since", "run"]

PROG = "bastion audit"
#: The table's columns: heading, and the event's value.
COLUMNS = ("time", "event", "outcome", "subject", "client", "address", "request", "facts")


def add_parser(commands: Any) -> None:
    """Add ``audit`` to the ``bastion`` command's subcommands."""
    audit = commands.add_parser(
        "audit",
        help="list the audit events kept in the store (server.keep_audit() or BASTION_AUDIT_RETENTION)",
        description="List the audit events an authorization server kept in its store, oldest first.",
    )
    audit.add_argument(
        "--store", help="the server's store: sqlite:///FILE or redis://HOST:6379/0 (default: BASTION_STORE)"
    )
    audit.add_argument(
        "--user", metavar="SUBJECT", help="only the events of this user, by subject (default: every user's)"
    )
    audit.add_argument("--client", metavar="CLIENT_ID", help="only the events of this client (default: every client's)")
    audit.add_argument(
        "--since",
        metavar="WHEN",
        help="only events since then: a duration ago (90s, 15m, 1h, 7d) or an ISO-8601 time "
        "(default: every event kept)",
    )
    audit.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    audit.set_defaults(run=run)


def parse_since(text: str, now: float) -> float:
    """Seconds since the epoch from ``--since``: a duration before ``now``, or an ISO-8601 time (UTC if unzoned).

    Raises:
        ConfigurationError: neither.
    """
    # Imported here, as the other commands' modules are: ``bastion --help`` loads no server.
    from bastion.authserver._audit_log import parse_duration

    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        expected = "a duration (90s, 15m, 1h, 7d) or an ISO-8601 time"
        raise ConfigurationError(f"--since takes {expected}, not {text[:40]!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _open(url: str | None) -> Store:
    from bastion.storage import open_store

    url = url or os.environ.get("BASTION_STORE") or None
    if url is None:
        raise ConfigurationError("no store: give --store sqlite:///FILE or redis://HOST:6379/0, or set BASTION_STORE")
    existing_store(url)  # its messages name a file's path, never the URL
    try:
        return open_store(url)
    except ConfigurationError:
        # The URL itself is not repeated: it may hold a password.
        raise ConfigurationError("the store is not a URL bastion knows: sqlite:///FILE, redis://HOST:6379/0") from None


async def _query(store: Store, user: str | None, client: str | None, since: float | None) -> list[AuditEvent]:
    from bastion.authserver._audit_log import AuditStore

    try:
        return await AuditStore(store).query(user=user, client=client, since=since)
    finally:
        await store.aclose()


def _text(value: object) -> str:
    """A value for the terminal: control characters escaped, so no event can rewrite the screen."""
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _row(event: AuditEvent) -> tuple[str, ...]:
    moment = datetime.fromtimestamp(event.time, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    facts = " ".join(f"{name}={_text(value)}" for name, value in event.facts.items())
    fixed = (event.name, event.outcome, event.subject, event.client_id, event.address, event.request_id)
    return (moment, *(_text(v) if v is not None else "-" for v in fixed), facts or "-")


def format_table(events: Sequence[AuditEvent]) -> str:
    """The events as a table with a heading, one line each, columns aligned (the facts last)."""
    rows = [COLUMNS, *map(_row, events)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]).rstrip()
        for row in rows
    )


def run(args: argparse.Namespace) -> int:
    """Run ``bastion audit``; the exit status."""
    from bastion.storage import StoreError

    try:
        since = None if args.since is None else parse_since(args.since, time.time())
        store = _open(args.store)
        events = asyncio.run(_query(store, args.user, args.client, since))
    except ConfigurationError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"{PROG}: the store cannot be read: {exc}", file=sys.stderr)
        return 2
    except NotImplementedError:
        print(f"{PROG}: this store cannot list its records", file=sys.stderr)
        return 2
    if args.json:
        for event in events:
            print(event.to_json())
    elif events:
        print(format_table(events))
    else:
        print("no audit events kept here (see server.keep_audit() or BASTION_AUDIT_RETENTION)", file=sys.stderr)
    return 0
