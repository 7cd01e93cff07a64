"""Shared fixtures: a notes server with policies of every kind, served over real HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from support.artifacts import KEPT
from support.notes import notes_server, served
from support.redis import RedisServer


@pytest.fixture(autouse=True)
def _bastion_variables_kept_apart() -> Iterator[None]:
    """Each test sees the ``BASTION_*`` variables it started with, whatever an earlier one set.

    ``bastion serve --store`` sets ``BASTION_STORE`` for the module it imports; run
    in-process by a test, it would otherwise reach every later test.
    """
    before = {name: value for name, value in os.environ.items() if name.upper().startswith("BASTION_")}
    yield
    for name in [name for name in os.environ if name.upper().startswith("BASTION_")]:
        if name not in before:
            del os.environ[name]
    os.environ.update(before)


@pytest.fixture
def stateless_url() -> Iterator[str]:
    with served(notes_server(), stateless_http=True, json_response=True) as url:
        yield url


@pytest.fixture
def make_served() -> Callable[..., Any]:
    return served


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real ``redis-server`` for the session; tests keep apart by key prefix (``redis_url``)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL with a key prefix of this test's own."""
    return f"{redis_server.url}?prefix=test-{uuid.uuid4().hex}:"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say where the files kept for people to look at (screenshots) went."""
    folders = sorted({str(path.parent) for path in KEPT})
    for folder in folders:
        count = sum(1 for path in KEPT if str(path.parent) == folder)
        terminalreporter.write_line(f"kept {count} files for people to look at in {folder}")
