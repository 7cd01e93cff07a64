"""Shared fixtures: a notes server with policies of every kind, served over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.notes import notes_server, served


@pytest.fixture
def stateless_url() -> Iterator[str]:
    with served(notes_server(), stateless_http=True, json_response=True) as url:
        yield url


@pytest.fixture
def make_served() -> Callable[..., Any]:
    return served
