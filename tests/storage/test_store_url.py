"""Store URLs: SQLite paths read as SQLAlchemy reads them, and a bad path refused in one line at start-up."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bastion import ConfigurationError
from bastion.storage import MemoryStore, SQLiteStore, Store, open_store
from bastion.storage._url import sqlite_path


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
async def opened() -> AsyncIterator[list[Store]]:
    stores: list[Store] = []
    yield stores
    for store in stores:
        await store.aclose()


def _open(url: str, opened: list[Store]) -> SQLiteStore:
    store = open_store(url)
    opened.append(store)
    assert isinstance(store, SQLiteStore)
    return store


async def test_three_slashes_are_relative_to_the_current_directory(cwd: Path, opened: list[Store]) -> None:
    store = _open("sqlite:///notes.db", opened)
    assert store.path == cwd / "notes.db"
    assert store.path.is_absolute()
    await store.put("n", "k", b"v")
    assert (cwd / "notes.db").is_file()
    (cwd / "data").mkdir()
    assert _open("sqlite:///data/auth.db", opened).path == cwd / "data" / "auth.db"


async def test_four_slashes_are_absolute(cwd: Path, tmp_path: Path, opened: list[Store]) -> None:
    store = _open(f"sqlite:///{tmp_path / 'auth.db'}", opened)  # an absolute path after the third slash
    assert store.path == tmp_path / "auth.db"
    await store.put("n", "k", b"v")
    again = _open(f"sqlite:////{str(tmp_path / 'auth.db').lstrip('/')}", opened)
    assert await again.get("n", "k") == b"v"


async def test_a_tilde_is_the_home_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, opened: list[Store]
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _open("sqlite:///~/auth.db", opened).path == tmp_path / "auth.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sqlite://auth.db",
            "sqlite://auth.db names the host 'auth.db': a SQLite URL has no host, use sqlite:///auth.db "
            "(relative to the current directory) or sqlite:////auth.db (absolute)",
        ),
        ("sqlite://", "the SQLite URL names no file"),
        ("sqlite:///", "the SQLite URL names no file"),
        ("sqlite:////var/lib/", "the SQLite URL names no file"),
    ],
)
def test_a_host_or_no_file_is_refused_with_the_right_form(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_old_absolute_reading_is_refused_with_the_four_slash_form(cwd: Path, tmp_path: Path) -> None:
    # Before, sqlite:///<tmp>/state/auth.db named the absolute path; now it is relative, and
    # <cwd>/<tmp>/state does not exist while <tmp>/state does: the user meant the old reading.
    (tmp_path / "state").mkdir()
    old = str(tmp_path / "state" / "auth.db").lstrip("/")
    with pytest.raises(ConfigurationError) as caught:
        open_store(f"sqlite:///{old}")
    assert str(caught.value) == (
        f"sqlite:///{old} is the relative path {cwd / old}, which does not exist; "
        f"did you mean sqlite:////{old} (the absolute path /{old})?"
    )
    assert not (cwd / old).parent.exists()  # nothing created in the wrong place


def test_an_existing_absolute_file_is_not_shadowed_by_a_new_relative_one(cwd: Path, tmp_path: Path) -> None:
    # Even where the relative directory happens to exist, a new file there would be a new, empty store.
    (tmp_path / "auth.db").touch()
    old = str(tmp_path / "auth.db").lstrip("/")
    (cwd / old).parent.mkdir(parents=True)
    with pytest.raises(ConfigurationError, match=r"did you mean sqlite:////"):
        open_store(f"sqlite:///{old}")
    assert not (cwd / old).exists()


def test_a_missing_directory_is_refused_naming_it(cwd: Path) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("sqlite:///nowhere/at/all.db")
    assert str(caught.value) == (
        f"the store's directory {cwd / 'nowhere' / 'at'} does not exist: create it, or name another"
    )
    assert not (cwd / "nowhere").exists()


@pytest.fixture
def read_only_directory(tmp_path: Path) -> Iterator[Path]:
    """A directory this process may not create files in (root ignores modes: a sysfs directory then)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        yield locked
        locked.chmod(0o700)
    elif Path("/sys/kernel").is_dir():
        yield Path("/sys/kernel")
    else:
        pytest.skip("no directory this process cannot write to")


def test_a_read_only_directory_is_one_line_naming_the_file(read_only_directory: Path) -> None:
    path = read_only_directory / "auth.db"
    with pytest.raises(ConfigurationError) as through_a_url:
        open_store(f"sqlite:///{path}")
    with pytest.raises(ConfigurationError) as by_path:
        SQLiteStore(path)
    for caught in (through_a_url, by_path):
        assert str(caught.value) == f"cannot create the store file {path}: Permission denied"


async def test_a_store_given_by_path_creates_its_directory(tmp_path: Path) -> None:
    # What the default store under the user's data directory relies on.
    async with SQLiteStore(tmp_path / "data" / "bastion" / "demo.db") as store:
        assert store.path.is_file()


async def test_a_store_given_by_a_relative_path_knows_its_absolute_one(cwd: Path) -> None:
    async with SQLiteStore("auth.db") as store:
        assert store.path == cwd / "auth.db"
        assert repr(store) == f"SQLiteStore({str(cwd / 'auth.db')!r})"


def test_a_file_that_is_no_database_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database, only words " * 100)
    with pytest.raises(ConfigurationError) as caught:
        SQLiteStore(tmp_path / "notes.txt")
    assert str(caught.value).startswith(f"cannot open the store file {tmp_path / 'notes.txt'}: ")
    assert "\n" not in str(caught.value)


async def test_memory_and_unknown_schemes(opened: list[Store]) -> None:
    opened.append(open_store("memory://"))
    assert isinstance(opened[0], MemoryStore)
    with pytest.raises(ConfigurationError, match="unknown store URL scheme 'postgres'"):
        open_store("postgres://db/auth")


def test_sqlite_path_checks_nothing_on_disk(cwd: Path) -> None:
    assert sqlite_path("sqlite:///nowhere/x.db") == cwd / "nowhere" / "x.db"
    assert sqlite_path("sqlite:////var/lib/bastion/auth.db") == Path("/var/lib/bastion/auth.db")
    with pytest.raises(ConfigurationError, match="not a SQLite URL"):
        sqlite_path("redis://localhost:6379/0")
