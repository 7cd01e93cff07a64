"""The administration commands of ``bastion`` on a server's store: ``clients``, ``grants``, ``consents``.

``clients list|show|delete``, ``grants list|revoke``, ``consents list|withdraw``; ``keys``
(:mod:`bastion._cli.keys`) and ``token`` (:mod:`bastion._cli.token`) are added with them.
Each works on a bare :class:`~bastion.AuthorizationServer` over the store
(:mod:`bastion._cli.store_session`) through its :class:`~bastion.authserver.Admin`.
Tables by default, ``--json`` for scripts. Exit status: 0 done, 1 refused (no such client
or grant, a static client), 2 a usage or store error.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from bastion._cli import keys, token
from bastion._cli.errors import CommandRefused
from bastion._cli.parser import command_name
from bastion._cli.printing import count, fields, first, print_json, table, when
from bastion._cli.store_session import on_store, store_options

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add the administration commands to the ``bastion`` parser; each sets ``run`` (``args -> exit status``)."""
    store = store_options()
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
    listing.add_argument("--user", help="only this user's, by subject (default: every user's)")
    listing.add_argument("--client", help="only those given to this client id (default: every client's)")
    listing.set_defaults(run=_grants_list)
    revoke = grants.add_parser(
        "revoke", parents=[store], help="revoke a grant, a user's or a client's: their tokens stop working now"
    )
    revoke.add_argument("grant_id", nargs="?", help="the grant's id (from grants list)")
    revoke.add_argument("--user", help="every grant of this user, and their sign-in sessions (default: none)")
    revoke.add_argument("--client", help="every grant given to this client id (default: none)")
    revoke.set_defaults(run=_grants_revoke)

    consents = commands.add_parser("consents", help="the consents users asked to remember").add_subparsers(
        dest="action", required=True
    )
    listing = consents.add_parser("list", parents=[store], help="the remembered consents")
    listing.add_argument("--user", help="only this user's, by subject (default: every user's)")
    listing.add_argument("--client", help="only those given to this client id (default: every client's)")
    listing.set_defaults(run=_consents_list)
    withdraw = consents.add_parser("withdraw", parents=[store], help="forget a consent and revoke its grants")
    withdraw.add_argument("--user", required=True)
    withdraw.add_argument("--client", required=True)
    withdraw.set_defaults(run=_consents_withdraw)
    keys.add_parsers(commands, store)
    token.add_parser(commands, store)


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

    return on_store(args, work)


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

    return on_store(args, work)


def _clients_delete(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        revoked = await server.admin.delete_client(args.client_id)
        if args.json:
            print_json({"client_id": args.client_id, "deleted": True, "grants_revoked": revoked})
        else:
            print(f"deleted client {args.client_id}; {count(revoked, 'grant')} revoked")
        return 0

    return on_store(args, work)


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

    return on_store(args, work)


def _grants_revoke(args: argparse.Namespace) -> int:
    if (args.grant_id is None) == (args.user is None and args.client is None):
        print(f"{command_name(args)}: give a grant id, or --user and/or --client", file=sys.stderr)
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

    return on_store(args, work)


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

    return on_store(args, work)


def _consents_withdraw(args: argparse.Namespace) -> int:
    async def work(server: AuthorizationServer) -> int:
        if not await server.admin.withdraw_consent(args.user, args.client):
            raise CommandRefused(f"{args.user!r} has no consent or grant for {args.client!r}", 1)
        if args.json:
            print_json({"subject": args.user, "client_id": args.client, "withdrawn": True})
        else:
            print(f"withdrew {args.user}'s consent for {args.client} and revoked its grants")
        return 0

    return on_store(args, work)
