"""Running an administration command on a server's store (``--store URL`` or ``BASTION_STORE``).

Each command builds a bare :class:`~bastion.AuthorizationServer` on the store and works
through it; a revocation is published through the store, so a server running on it
refuses the revoked tokens at once.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bastion._cli.errors import USAGE, CommandRefused
from bastion._cli.parser import command_name
from bastion._core.errors import BastionError, ConfigurationError

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["Work", "on_store", "store_options"]

#: What a command does with the server over its store; its exit status.
Work = Callable[["AuthorizationServer"], Awaitable[int]]


def store_options() -> argparse.ArgumentParser:
    """The options every command on a store takes (a parent parser): ``--store``, ``--clients``, ``--json``."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--store", help="the server's store: sqlite:///FILE or redis://HOST:6379/0 (default: BASTION_STORE)"
    )
    options.add_argument(
        "--clients",
        dest="clients_file",
        metavar="FILE",
        help="the server's clients file: its static clients too (default: no file)",
    )
    options.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return options


def on_store(args: argparse.Namespace, work: Work, *, issuer: str | None = None, lifetime: float | None = None) -> int:
    """Run ``work`` on a bare server over the store the arguments name; errors as one line on stderr."""
    from bastion.authserver import AdminError
    from bastion.storage import StoreError

    try:
        url = args.store or os.environ.get("BASTION_STORE")
        if not url:
            raise CommandRefused("give the server's store with --store URL or BASTION_STORE")
        existing_store(url)
        return asyncio.run(_session(url, work, issuer, lifetime, args.clients_file))
    except CommandRefused as exc:
        print(f"{command_name(args)}: {exc}", file=sys.stderr)
        return exc.status
    except AdminError as exc:
        print(f"{command_name(args)}: {exc}", file=sys.stderr)
        return 1
    except (BastionError, StoreError, OSError, NotImplementedError) as exc:
        print(f"{command_name(args)}: {exc}", file=sys.stderr)
        return USAGE


def existing_store(url: str) -> None:
    """Refuse a store that cannot be a running server's: ``memory://``, or a SQLite file that is not there.

    Opening a mistyped SQLite path would create an empty store and show nothing.

    Raises:
        ConfigurationError: the message says which, naming the file's absolute path.
    """
    from bastion.storage._url import sqlite_path

    scheme = url.partition("://")[0]
    if scheme == "memory":
        raise ConfigurationError("memory:// holds nothing outside the process that made it: name the server's store")
    if scheme == "sqlite":
        path = sqlite_path(url)
        if not path.is_file():
            raise ConfigurationError(f"there is no store file at {path}")


async def _session(url: str, work: Work, issuer: str | None, lifetime: float | None, clients: str | None) -> int:
    from bastion.authserver import AuthorizationServer, Signing, TokenLifetimes
    from bastion.authserver._keyring import stored_ring
    from bastion.storage import open_store

    store = open_store(url)
    try:
        ring = await stored_ring(store)
        # The server's algorithm is the ring's: another would make the ring rotate to it.
        signing = Signing(algorithm=ring[-1].alg) if ring else Signing()
        lifetimes = TokenLifetimes() if lifetime is None else TokenLifetimes(access_token=lifetime)
        server = AuthorizationServer(issuer, store=store, signing=signing, lifetimes=lifetimes, clients=clients)
        # This process knows neither the server's token lifetimes nor its overlap: a rotation
        # from here drops no key; the server's own next rotation does.
        server.keys.overlap = math.inf
        return await work(server)
    finally:
        await store.aclose()
