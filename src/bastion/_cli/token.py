"""``bastion token``: an access token minted with the store's signing key, for development and scripts.

The token has a grant of its own, so ``bastion grants revoke`` reaches it too. An issuer
that is not loopback needs ``--force``.
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bastion._cli.errors import CommandRefused
from bastion._cli.printing import print_json
from bastion._cli.store_session import on_store

if TYPE_CHECKING:
    from bastion.authserver import AuthorizationServer

__all__ = ["TOKEN_CLIENT", "add_parser"]

#: The client id of the tokens ``bastion token`` mints, unless ``--client`` names another.
TOKEN_CLIENT = "bastion-cli"


def add_parser(commands: Any, store: argparse.ArgumentParser) -> None:
    """Add ``token``; ``store`` is the parent parser of the commands on a store."""
    token = commands.add_parser(
        "token", parents=[store], help="mint an access token with the store's signing key (development, scripts)"
    )
    token.add_argument("--user", required=True, help="the token's subject")
    token.add_argument("--scopes", default="", help="space- or comma-separated scopes (default: none)")
    token.add_argument("--resource", required=True, help="the MCP server's URL, the token's audience")
    token.add_argument("--issuer", help="the authorization server's issuer (default: the resource's origin)")
    token.add_argument("--client", default=TOKEN_CLIENT, help="the token's client_id")
    token.add_argument("--name", help="the user's display name, the name claim (default: none)")
    token.add_argument("--role", action="append", default=[], help="a role of the user, repeatable (default: none)")
    token.add_argument("--lifetime", type=float, default=3600.0, help="seconds the token lives")
    token.add_argument("--force", action="store_true", help="mint one for an issuer that is not loopback")
    token.set_defaults(run=_token)


def _token(args: argparse.Namespace) -> int:
    from bastion._core.errors import ConfigurationError
    from bastion._core.net import is_loopback_host
    from bastion._resource.metadata import canonical_resource
    from bastion.authserver._issuer import canonical_issuer

    resource = canonical_resource(args.resource)  # a ConfigurationError is one line, exit status 2
    parts = urlsplit(resource)
    issuer = canonical_issuer(args.issuer or f"{parts.scheme}://{parts.netloc}")
    if not (math.isfinite(args.lifetime) and args.lifetime > 0):
        raise ConfigurationError("--lifetime must be a positive number of seconds")
    if not is_loopback_host(urlsplit(issuer).hostname or "") and not args.force:
        raise CommandRefused(
            f"{issuer} is not a loopback issuer; tokens minted from the store are for "
            "development: add --force to mint one anyway"
        )
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

    return on_store(args, work, issuer=issuer, lifetime=args.lifetime)
