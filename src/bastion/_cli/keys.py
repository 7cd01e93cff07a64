"""``bastion keys list|rotate`` (the signing key ring on a store) and ``bastion encryption-key``.

``keys`` alone still prints a new encryption key, as ``encryption-key`` does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bastion._cli.printing import print_json, table, when
from bastion._cli.store_session import on_store

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["add_parsers"]


def add_parsers(commands: Any, store: argparse.ArgumentParser) -> None:
    """Add ``keys`` and ``encryption-key``; ``store`` is the parent parser of the commands on a store."""
    keys = commands.add_parser(
        "keys", help="the signing keys (list, rotate); alone, a new encryption key as encryption-key prints"
    )
    keys.set_defaults(run=_keys_alone)
    actions = keys.add_subparsers(dest="action")
    actions.add_parser("list", parents=[store], help="the signing key ring").set_defaults(run=_keys_list)
    actions.add_parser(
        "rotate", parents=[store], help="sign with a new key from now on; the old ones stay published"
    ).set_defaults(run=_keys_rotate)

    commands.add_parser(
        "encryption-key",
        help="print a new encryption key for BASTION_ENCRYPTION_KEYS (the proxy's upstream tokens at rest)",
    ).set_defaults(run=_encryption_key)


def _encryption_key(args: argparse.Namespace) -> int:
    from bastion.authserver._vault import TokenVault

    print(TokenVault.generate_key())
    return 0


def _keys_alone(args: argparse.Namespace) -> int:
    print(
        "bastion keys: printing a new encryption key; this is `bastion encryption-key` now "
        "(`bastion keys rotate` rotates the signing key)",
        file=sys.stderr,
    )
    return _encryption_key(args)


def _print_ring(args: argparse.Namespace, ring: Sequence[Any]) -> None:
    if args.json:
        print_json([k.to_dict() for k in ring])
        return
    rows = [[k.kid, k.alg, when(k.created_at), "signing" if k.signing else "published"] for k in ring]
    table(["KID", "ALG", "CREATED", "STATUS"], rows, "no signing key yet (the server makes one when it first signs)")


def _keys_list(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        _print_ring(args, await server.admin.signing_keys())
        return 0

    return on_store(args, work)


def _keys_rotate(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        await server.admin.rotate_signing_key()
        _print_ring(args, await server.admin.signing_keys())
        return 0

    return on_store(args, work)
