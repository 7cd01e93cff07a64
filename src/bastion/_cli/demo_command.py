"""``bastion demo``: the notes server, with its own authorization server or the one BASTION_AUTH configures."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from typing import TYPE_CHECKING, Any

import uvicorn

from bastion._cli import cimd_dev
from bastion._cli.errors import CommandRefused
from bastion._cli.public_url import check_public_url
from bastion._cli.serving import Server
from bastion._core.errors import ConfigurationError
from bastion._core.net import is_loopback_host

if TYPE_CHECKING:
    from bastion._resource.verifier import Verifier
    from bastion.authserver import AuthorizationServer
    from bastion.storage import Store

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    """Add ``demo`` to the ``bastion`` command's subcommands."""
    demo = commands.add_parser(
        "demo",
        help="run the demo notes server with its own OAuth authorization server",
        description="Run the demo notes MCP server with its own OAuth 2.1 authorization server "
        "(or the one BASTION_AUTH configures). Ctrl-C or SIGTERM stops it, with exit status 0.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to bind")
    demo.add_argument("--port", type=int, default=8000, help="port")
    demo.add_argument(
        "--store",
        help="sqlite:///FILE, redis://HOST:6379/0 (several replicas) or memory:// "
        "(default: BASTION_STORE, else a SQLite file under the user's data directory)",
    )
    demo.add_argument(
        "--public-url", help="the URL clients use (default: http(s)://HOST:PORT, or BASTION_BASE_URL with BASTION_AUTH)"
    )
    demo.add_argument("--ssl-certfile", help="serve https with this certificate, PEM (default: plain http)")
    demo.add_argument("--ssl-keyfile", help="the certificate's private key, PEM (default: none)")
    demo.add_argument(
        "--auto-approve",
        metavar="USER",
        choices=["alice", "bob"],
        help="sign in as USER and approve consent without pages, for headless tests on loopback "
        "(default: the sign-in and consent pages)",
    )
    cimd_dev.add_arguments(demo)  # --dev-metadata-origin, --dev-ca-file
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``bastion demo`` until it is stopped; the exit status."""
    from bastion._cli.demo import notes_server

    from_environment = _bastion_auth() is not None
    public_url = _public_url(args, from_environment)
    loopback = is_loopback_host(args.host)
    if not loopback and not public_url:
        raise CommandRefused("binding beyond loopback needs --public-url (the URL clients use)")
    if args.auto_approve and not loopback:
        raise CommandRefused("--auto-approve is allowed only when bound to loopback")
    if args.auto_approve and from_environment:
        raise CommandRefused("--auto-approve signs in a demo user, and BASTION_AUTH replaces them")
    refused = cimd_dev.refusal(args, from_environment)
    if refused:
        raise CommandRefused(refused)
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise CommandRefused("give both --ssl-certfile and --ssl-keyfile")
    scheme = "https" if args.ssl_certfile else "http"
    base = public_url or f"{scheme}://{args.host}:{args.port}"
    resource = base + "/mcp"
    auth, header, sign_in = _environment_auth(args, base) if from_environment else _demo_users_auth(args, base)
    mcp = notes_server(auth, resource_url=resource)
    app = mcp.streamable_http_app(stateless_http=True, json_response=True, host=args.host)
    ssl = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile} if args.ssl_certfile else {}
    server = Server(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", **ssl),
        _banner(resource, header, sign_in, _store_name(auth)),
    )
    server.run()
    if not server.started:
        return 1  # uvicorn said why (the port is taken, the certificate cannot be read)
    print("bastion demo: stopped", file=sys.stderr)
    return 0


def _public_url(args: argparse.Namespace, from_environment: bool) -> str | None:
    if args.public_url:
        return check_public_url(args.public_url, "--public-url")
    base = os.environ.get("BASTION_BASE_URL") if from_environment else None
    return check_public_url(base, "BASTION_BASE_URL") if base else None


def _bastion_auth() -> str | None:
    """``BASTION_AUTH`` (its name in any case, as the settings read it), or ``None`` when unset or empty."""
    for name, value in os.environ.items():
        if name.upper() == "BASTION_AUTH" and value.strip():
            return value.strip()
    return None


def _demo_store(url: str | None) -> Store:
    """The store of ``--store``, else of ``BASTION_STORE``, else the demo's SQLite file."""
    from bastion.authserver._issuer import default_store_path
    from bastion.storage import SQLiteStore, open_store

    source, url = ("--store", url) if url else ("BASTION_STORE", os.environ.get("BASTION_STORE"))
    if not url:
        return SQLiteStore(default_store_path("demo"))
    try:
        return open_store(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{source}: {exc}") from None


def _demo_users_auth(args: argparse.Namespace, base: str) -> tuple[AuthorizationServer, str, str]:
    """The built-in authorization server with the demo's two users and new passwords."""
    from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, demo_users
    from bastion.authserver import AuthorizationServer

    passwords = {name: secrets.token_urlsafe(12) for name in DEMO_USERS}
    auth = AuthorizationServer(
        issuer=base,
        store=_demo_store(args.store),
        users=demo_users(passwords),
        scopes=DEMO_SCOPES,
        auto_approve=DEMO_USERS[args.auto_approve] if args.auto_approve else None,
        registration=cimd_dev.registration(args),
    )
    approve = (
        f"\n  --auto-approve: every authorization signs in as {args.auto_approve} without any page.\n"
        if args.auto_approve
        else ""
    )
    sign_in = f"""Sign in as (passwords are new at every start):
  alice   {passwords["alice"]}   role admin: every tool
  bob     {passwords["bob"]}   no role: admin_stats is refused
{approve}"""
    return auth, "with its own OAuth 2.1 authorization server", sign_in


def _environment_auth(args: argparse.Namespace, base: str) -> tuple[Verifier | AuthorizationServer, str, str]:
    """What the ``BASTION_*`` variables configure, at the demo's URL and with its scopes."""
    from bastion._cli.demo import DEMO_SCOPES
    from bastion._config.auth import VERIFIERS, auth_from_env
    from bastion.authserver import AuthorizationServer
    from bastion.proxy import OAuthProxy

    environ = {**os.environ, "BASTION_BASE_URL": base}
    kind = (_bastion_auth() or "").lower()
    if args.store and kind in VERIFIERS:
        # Passed on as BASTION_STORE, it would be reported as a variable set for nothing.
        unused = f"--store is not used: BASTION_AUTH={kind} verifies tokens and keeps no store"
        print(f"bastion demo: {unused}", file=sys.stderr)
    elif args.store:
        environ["BASTION_STORE"] = args.store
    auth = auth_from_env(environ, mcp_scopes=DEMO_SCOPES)
    if isinstance(auth, OAuthProxy):
        name = auth.upstream.name
        sign_in = f"""Sign in with {name}.
  Register this redirect URI with your application at {name}:
    {auth.callback_url}
  admin_stats needs the role admin, which only some providers send.
"""
        return auth, f"signing users in with {name} (OAuth proxy)", sign_in
    if isinstance(auth, AuthorizationServer):
        return auth, "with the authorization server BASTION_AUTH configures", "Sign in on its pages.\n"
    sign_in = f"""Tokens are verified by BASTION_AUTH={_bastion_auth()}: this server has no sign-in page;
clients get their tokens where its resource metadata says.
"""
    return auth, "whose tokens come from your identity provider", sign_in


def _store_name(auth: Verifier | AuthorizationServer) -> str | None:
    """Where the authorization server keeps its records; ``None`` without one."""
    from bastion.authserver import AuthorizationServer

    if not isinstance(auth, AuthorizationServer):
        return None
    from bastion.storage import MemoryStore, SQLiteStore

    if isinstance(auth.store, SQLiteStore):
        return str(auth.store.path)
    if isinstance(auth.store, MemoryStore):
        return "memory (nothing survives a restart)"
    return repr(auth.store)  # a RedisStore shows its host and prefix, never its password


_NO_STORE = "none (no authorization server here)"


def _banner(resource: str, header: str, sign_in: str, store: str | None) -> str:
    base = resource.removesuffix("/mcp")
    metadata = (
        f"authorization    {base}/.well-known/oauth-authorization-server"
        if store is not None
        else f"resource         {base}/.well-known/oauth-protected-resource/mcp"
    )
    return f"""
bastion demo: a notes MCP server {header}

  MCP endpoint     {resource}
  {metadata}
  store            {store or _NO_STORE}

{sign_in}
Tools: whoami (anyone signed in), list_notes (notes:read), add_note (notes:write),
admin_stats (role admin).

Connect a client; it registers itself, opens the sign-in page, and asks for consent:
  Claude Code    claude mcp add --transport http notes {resource}
                 then /mcp in Claude Code to sign in
  VS Code        .vscode/mcp.json: {{"servers": {{"notes": {{"type": "http", "url": "{resource}"}}}}}}
  MCP Inspector  npx @modelcontextprotocol/inspector
                 (transport Streamable HTTP, URL above, then Open Auth Settings > Quick OAuth Flow)

Ctrl-C stops it.
"""
