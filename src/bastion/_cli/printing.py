"""How the administration commands print: aligned tables, ``name: value`` fields, JSON."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

__all__ = ["count", "fields", "first", "print_json", "table", "when"]


def print_json(data: Any) -> None:
    """``data`` as indented JSON."""
    print(json.dumps(data, indent=2, sort_keys=False))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], empty: str) -> None:
    """Aligned columns, two spaces apart; ``empty`` when there is no row."""
    if not rows:
        print(empty)
        return
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def when(seconds: float | None) -> str:
    """A time as ISO 8601 UTC, or ``-``."""
    if not seconds:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def first(values: Sequence[str]) -> str:
    """The first value, with how many more there are."""
    if not values:
        return "-"
    return values[0] + (f" (+{len(values) - 1})" if len(values) > 1 else "")


def fields(data: dict[str, Any]) -> None:
    """``name: value`` lines, aligned."""
    width = max(len(name) for name in data)
    for name, value in data.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        print(f"{name + ':':<{width + 1}}  {'-' if shown in (None, '', []) else shown}")


def count(n: int, noun: str) -> str:
    """``1 grant``, ``2 grants``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
