"""The administration commands of ``bastion``, on a server's store (``--store URL`` or ``BASTION_STORE``).

``clients list|show|delete``, ``grants list|revoke``, ``consents list|withdraw``,
``keys list|rotate`` (``keys`` alone still prints a new encryption key, as
``encryption-key`` does), and ``token``, which mints an access token with the store's
signing key for development and scripts. Each builds a bare
:class:`~bastion.AuthorizationServer` on the store and calls its :class:`~bastion.authserver.Admin`;
a revocation is published through the store, so a server running on it refuses the
revoked tokens at once. Tables by default, ``--json`` for scripts. Exit status: 0 done,
1 refused (no such client or grant, a static client), 2 a usage or store error.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bastion._cli.printing import count, fields, first, print_json, table, when
from bastion._core.errors import BastionError

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["add_commands"]

#: The client id of the tokens ``bastion token`` mints, unless ``--client`` names another.
TOKEN_CLIENT = "bastion-cli"

Work = Callable[["AuthorizationServer"], Awaitable[int]]


class CommandRefused(BastionError):
    """A command that cannot go on: its message is printed, with the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the administration commands to the ``bastion`` parser; each sets ``run`` (``args -> exit status``)."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument(
        "--store", help="the server's store: sqlite:///PATH or redis://HOST:6379/0 (default: BASTION_STORE)"
    )
    store.add_argument(
        "--clients", dest="clients_file", metavar="FILE", help="the server's clients file: its static clients too"
    )
    store.add_argument("--json", action="store_true", help="print JSON instead of a table")

    clients = commands.add_parser("clients", help="the OAuth clients the server knows").add_subparsers(
        dest="action", required=True
    )
    clients.add_parser("list", parents=[store], help="every client: static, registered, URL ids").set_defaults(
        run=_clients_list
    )
    show = clients.add_parser("show", parents=[store], help="one client's metadata and live grants")
    show.add_argument("client_id")
    show.set_defaults(run=_clients_show)
    delete = clients.add_parser("delete", parents=[store], help="forget a registered client and revoke its grants")
    delete.add_argument("client_id")
    delete.set_defaults(run=_clients_delete)

    grants = commands.add_parser("grants", help="who allowed which client").add_subparsers(dest="action", required=True)
    listing = grants.add_parser("list", parents=[store], help="the live grants")
    listing.add_argument("--user", help="only this user's (subject)")
    listing.add_argument("--client", help="only those given to this client id")
    listing.set_defaults(run=_grants_list)
    revoke = grants.add_parser(
        "revoke", parents=[store], help="revoke a grant, a user's or a client's: their tokens stop working now"
    )
    revoke.add_argument("grant_id", nargs="?", help="the grant's id (from grants list)")
    revoke.add_argument("--user", help="every grant of this user (and their sign-in sessions)")
    revoke.add_argument("--client", help="every grant given to this client id")
    revoke.set_defaults(run=_grants_revoke)

    consents = commands.add_parser("consents", help="the consents users asked to remember").add_subparsers(
        dest="action", required=True
    )
    listing = consents.add_parser("list", parents=[store], help="the remembered consents")
    listing.add_argument("--user", help="only this user's (subject)")
    listing.add_argument("--client", help="only those given to this client id")
    listing.set_defaults(run=_consents_list)
    withdraw = consents.add_parser("withdraw", parents=[store], help="forget a consent and revoke its grants")
    withdraw.add_argument("--user", required=True)
    withdraw.add_argument("--client", required=True)
    withdraw.set_defaults(run=_consents_withdraw)

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

    token = commands.add_parser(
        "token", parents=[store], help="mint an access token with the store's signing key (development, scripts)"
    )
    token.add_argument("--user", required=True, help="the token's subject")
    token.add_argument("--scopes", default="", help="space- or comma-separated scopes")
    token.add_argument("--resource", required=True, help="the MCP server's URL, the token's audience")
    token.add_argument("--issuer", help="the authorization server's issuer (default: the resource's origin)")
    token.add_argument("--client", default=TOKEN_CLIENT, help=f"the token's client_id (default {TOKEN_CLIENT})")
    token.add_argument("--name", help="the user's display name (the name claim)")
    token.add_argument("--role", action="append", default=[], help="a role of the user (repeat for more)")
    token.add_argument("--lifetime", type=float, default=3600.0, help="seconds the token lives (default 3600)")
    token.add_argument("--force", action="store_true", help="mint one for an issuer that is not loopback")
    token.set_defaults(run=_token)


# -- running a command on the store ------------------------------------------------------------


def _name(args: argparse.Namespace) -> str:
    action = getattr(args, "action", None)
    return f"bastion {args.command}" + (f" {action}" if action else "")


def _on_store(args: argparse.Namespace, work: Work, *, issuer: str | None = None, lifetime: float | None = None) -> int:
    """Run ``work`` on a bare server over the store the arguments name; errors as one line on stderr."""
    from bastion.authserver import AdminError
    from bastion.storage import StoreError

    try:
        url = args.store or os.environ.get("BASTION_STORE")
        if not url:
            raise CommandRefused("give the server's store with --store URL or BASTION_STORE")
        _check_store_url(url)
        return asyncio.run(_session(url, work, issuer, lifetime, args.clients_file))
    except CommandRefused as exc:
        print(f"{_name(args)}: {exc}", file=sys.stderr)
        return exc.status
    except AdminError as exc:
        print(f"{_name(args)}: {exc}", file=sys.stderr)
        return 1
    except (BastionError, StoreError, OSError, NotImplementedError) as exc:
        print(f"{_name(args)}: {exc}", file=sys.stderr)
        return 2


def _check_store_url(url: str) -> None:
    """Refuse a store that cannot be a running server's: ``memory://``, or a SQLite file that is not there.

    Opening a mistyped SQLite path would create an empty store and show nothing.
    """
    scheme, _, rest = url.partition("://")
    if scheme == "memory":
        raise CommandRefused("memory:// holds nothing outside the process that made it: name the server's store")
    if scheme == "sqlite" and rest and not Path(rest).expanduser().is_file():
        raise CommandRefused(f"there is no store file at {Path(rest).expanduser()}")


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


# -- clients -----------------------------------------------------------------------------------


def _clients_list(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        clients = await server.admin.clients()
        if args.json:
            print_json([c.to_dict() for c in clients])
            return 0
        rows = [
            [
                c.client_id,
                c.kind,
                c.client_name or "-",
                c.token_endpoint_auth_method,
                when(c.issued_at),
                first(c.redirect_uris),
            ]
            for c in clients
        ]
        table(["CLIENT ID", "KIND", "NAME", "AUTH", "REGISTERED", "REDIRECT URIS"], rows, "no clients")
        return 0

    return _on_store(args, work)


def _clients_show(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        client = await server.admin.client(args.client_id)
        if client is None:
            raise CommandRefused(f"no client {args.client_id!r} is known", 1)
        data = {**client.to_dict(), "live_grants": len(await server.admin.grants(client_id=client.client_id))}
        if args.json:
            print_json(data)
        else:
            data["issued_at"] = when(client.issued_at)
            fields(data)
        return 0

    return _on_store(args, work)


def _clients_delete(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        revoked = await server.admin.delete_client(args.client_id)
        if args.json:
            print_json({"client_id": args.client_id, "deleted": True, "grants_revoked": revoked})
        else:
            print(f"deleted client {args.client_id}; {count(revoked, 'grant')} revoked")
        return 0

    return _on_store(args, work)


# -- grants ------------------------------------------------------------------------------------


def _grants_list(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        grants = await server.admin.grants(subject=args.user, client_id=args.client)
        if args.json:
            print_json([g.to_dict() for g in grants])
            return 0
        rows = [
            [
                g.grant_id,
                g.subject,
                g.client_id,
                " ".join(g.scopes) or "-",
                when(g.created_at),
                "yes" if g.refreshable else "no",
            ]
            for g in grants
        ]
        table(["GRANT ID", "USER", "CLIENT", "SCOPES", "CREATED", "REFRESH"], rows, "no grants")
        return 0

    return _on_store(args, work)


def _grants_revoke(args: argparse.Namespace) -> int:
    if (args.grant_id is None) == (args.user is None and args.client is None):
        print(f"{_name(args)}: give a grant id, or --user and/or --client", file=sys.stderr)
        return 2

    async def work(server: AuthorizationServer) -> int:
        if args.grant_id is not None:
            if not await server.admin.revoke_grant(args.grant_id):
                raise CommandRefused(f"no live grant {args.grant_id!r}", 1)
            revoked = 1
        elif args.user is not None and args.client is not None:
            revoked = await server.revoke_user_client(args.user, args.client)
        elif args.user is not None:
            revoked = await server.admin.revoke_user(args.user)
        else:
            revoked = await server.admin.revoke_client(args.client)
        if args.json:
            print_json({"revoked": revoked})
        else:
            print(f"revoked {count(revoked, 'grant')}")
        return 0

    return _on_store(args, work)


# -- consents ----------------------------------------------------------------------------------


def _consents_list(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        consents = await server.admin.consents(subject=args.user, client_id=args.client)
        if args.json:
            print_json(
                [
                    {
                        "subject": c.subject,
                        "client_id": c.client_id,
                        "scopes": list(c.scopes),
                        "resources": list(c.resources),
                        "granted_at": c.granted_at,
                    }
                    for c in consents
                ]
            )
            return 0
        rows = [
            [c.subject, c.client_id, " ".join(c.scopes) or "-", first(c.resources), when(c.granted_at)]
            for c in consents
        ]
        table(["USER", "CLIENT", "SCOPES", "RESOURCES", "GIVEN"], rows, "no consents")
        return 0

    return _on_store(args, work)


def _consents_withdraw(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        if not await server.admin.withdraw_consent(args.user, args.client):
            raise CommandRefused(f"{args.user!r} has no consent or grant for {args.client!r}", 1)
        if args.json:
            print_json({"subject": args.user, "client_id": args.client, "withdrawn": True})
        else:
            print(f"withdrew {args.user}'s consent for {args.client} and revoked its grants")
        return 0

    return _on_store(args, work)


# -- keys --------------------------------------------------------------------------------------


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

    return _on_store(args, work)


def _keys_rotate(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        await server.admin.rotate_signing_key()
        _print_ring(args, await server.admin.signing_keys())
        return 0

    return _on_store(args, work)


# -- token -------------------------------------------------------------------------------------


def _token(args: argparse.Namespace) -> int:
    from bastion._core.errors import ConfigurationError
    from bastion._core.net import is_loopback_host
    from bastion._resource.metadata import canonical_resource
    from bastion.authserver._issuer import canonical_issuer

    try:
        resource = canonical_resource(args.resource)
        parts = urlsplit(resource)
        issuer = canonical_issuer(args.issuer or f"{parts.scheme}://{parts.netloc}")
        if not (math.isfinite(args.lifetime) and args.lifetime > 0):
            raise ConfigurationError("--lifetime must be a positive number of seconds")
    except ConfigurationError as exc:
        print(f"bastion token: {exc}", file=sys.stderr)
        return 2
    if not is_loopback_host(urlsplit(issuer).hostname or "") and not args.force:
        print(
            f"bastion token: {issuer} is not a loopback issuer; tokens minted from the store are for "
            "development: add --force to mint one anyway",
            file=sys.stderr,
        )
        return 2
    scopes = tuple(dict.fromkeys(args.scopes.replace(",", " ").split()))

    async def work(server: AuthorizationServer) -> int:
        from bastion.authserver import User

        user = User(args.user, name=args.name, roles=tuple(args.role))
        # A grant of its own, so that `bastion grants revoke` reaches this token too.
        grant_id = await server.new_grant(user, args.client, ttl=args.lifetime)
        token, expires_in = await server.access_tokens.mint(
            client_id=args.client, subject=user.subject, scopes=scopes, resource=resource, grant_id=grant_id, user=user
        )
        if args.json:
            body = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
            print_json({**body, "scope": " ".join(scopes), "grant_id": grant_id, "issuer": issuer})
        else:
            print(token)
        return 0

    return _on_store(args, work, issuer=issuer, lifetime=args.lifetime)
