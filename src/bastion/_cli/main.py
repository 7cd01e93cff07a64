"""The ``bastion`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import uvicorn

from bastion._cli import audit, cimd_dev
from bastion._cli.admin import add_commands
from bastion._core.net import is_loopback_host

if TYPE_CHECKING:
    from bastion._resource.verifier import Verifier
    from bastion.authserver import AuthorizationServer

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion", description="Authentication and authorization for MCP servers.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo notes server with its own OAuth authorization server")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    demo.add_argument(
        "--store",
        help="sqlite:///PATH, redis://HOST:6379/0 (several replicas) or memory:// "
        "(default: a SQLite file under the user's data directory)",
    )
    demo.add_argument("--public-url", help="the URL clients use, if not http(s)://HOST:PORT")
    demo.add_argument("--ssl-certfile", help="serve https with this certificate (PEM)")
    demo.add_argument("--ssl-keyfile", help="the certificate's private key (PEM)")
    demo.add_argument(
        "--auto-approve",
        metavar="USER",
        choices=["alice", "bob"],
        help="sign in as USER and approve consent without pages (headless tests; loopback only)",
    )
    cimd_dev.add_arguments(demo)  # --dev-metadata-origin, --dev-ca-file

    add_commands(commands)  # clients, grants, consents, keys, encryption-key, token
    serve = commands.add_parser("serve", help="serve an MCPServer from a module, e.g. notes.server:mcp")
    serve.add_argument("target", help="MODULE:ATTRIBUTE of a bastion.MCPServer")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--path", default="/mcp", help="the MCP endpoint's path (default /mcp)")
    serve.add_argument("--stateless", action="store_true", help="stateless HTTP (no sessions)")
    serve.add_argument("--json", action="store_true", help="JSON responses instead of SSE streams")
    serve.add_argument(
        "--store",
        help="the authorization server's store when the module gives none: sqlite:///PATH, redis://HOST:6379/0 "
        "or memory:// (sets BASTION_STORE)",
    )
    audit.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bastion`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bastion").setLevel(logging.INFO)
    if args.command == "demo":
        return _demo(args)
    if args.command == "audit":
        return audit.run(args)
    run = getattr(args, "run", None)
    if run is not None:
        return int(run(args))
    return _serve(args)


def _demo(args: argparse.Namespace) -> int:
    from bastion._cli.demo import notes_server
    from bastion._core.errors import ConfigurationError

    from_environment = _bastion_auth() is not None
    public_url = args.public_url or (os.environ.get("BASTION_BASE_URL") or None if from_environment else None)
    loopback = is_loopback_host(args.host)
    if not loopback and not public_url:
        print("bastion demo: binding beyond loopback needs --public-url (the URL clients use)", file=sys.stderr)
        return 2
    if args.auto_approve and not loopback:
        print("bastion demo: --auto-approve is allowed only when bound to loopback", file=sys.stderr)
        return 2
    if args.auto_approve and from_environment:
        print("bastion demo: --auto-approve signs in a demo user, and BASTION_AUTH replaces them", file=sys.stderr)
        return 2
    refused = cimd_dev.refusal(args, from_environment)
    if refused:
        print(f"bastion demo: {refused}", file=sys.stderr)
        return 2
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        print("bastion demo: give both --ssl-certfile and --ssl-keyfile", file=sys.stderr)
        return 2
    scheme = "https" if args.ssl_certfile else "http"
    base = (public_url or f"{scheme}://{args.host}:{args.port}").rstrip("/")
    resource = base + "/mcp"
    try:
        auth, header, sign_in = _environment_auth(args, base) if from_environment else _demo_users_auth(args, base)
    except ConfigurationError as exc:
        print(f"bastion demo: {exc}", file=sys.stderr)
        return 2
    mcp = notes_server(auth, resource_url=resource)
    app = mcp.streamable_http_app(stateless_http=True, json_response=True, host=args.host)
    ssl = {"ssl_certfile": args.ssl_certfile, "ssl_keyfile": args.ssl_keyfile} if args.ssl_certfile else {}
    server = _AnnouncingServer(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", **ssl),
        _banner(resource, header, sign_in, _store_name(auth)),
    )
    server.run()
    return 0 if server.started else 1


def _bastion_auth() -> str | None:
    """``BASTION_AUTH`` (its name in any case, as the settings read it), or ``None`` when unset or empty."""
    for name, value in os.environ.items():
        if name.upper() == "BASTION_AUTH" and value.strip():
            return value.strip()
    return None


def _demo_users_auth(args: argparse.Namespace, base: str) -> tuple[AuthorizationServer, str, str]:
    """The built-in authorization server with the demo's two users and new passwords."""
    from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, demo_users
    from bastion.authserver import AuthorizationServer
    from bastion.authserver._issuer import default_store_path
    from bastion.storage import SQLiteStore, Store, open_store

    passwords = {name: secrets.token_urlsafe(12) for name in DEMO_USERS}
    store: Store = open_store(args.store) if args.store else SQLiteStore(default_store_path("demo"))
    auth = AuthorizationServer(
        issuer=base,
        store=store,
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
    from bastion._config.auth import auth_from_env
    from bastion.authserver import AuthorizationServer
    from bastion.proxy import OAuthProxy

    environ = {**os.environ, "BASTION_BASE_URL": base}
    if args.store:
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


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints its banner once it listens."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self._banner, flush=True)


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


def _serve(args: argparse.Namespace) -> int:
    from bastion._adapters.mcpserver import MCPServer

    if args.store:
        os.environ["BASTION_STORE"] = args.store  # read when the module builds its server
    module_name, _, attribute = args.target.partition(":")
    try:
        module = importlib.import_module(module_name)
        server: Any = getattr(module, attribute or "mcp")
    except (ImportError, AttributeError) as exc:
        print(f"bastion serve: cannot load {args.target!r}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(server, MCPServer):
        print(f"bastion serve: {args.target!r} is not a bastion.MCPServer", file=sys.stderr)
        return 2
    server.run(
        "http",
        host=args.host,
        port=args.port,
        streamable_http_path=args.path,
        stateless_http=args.stateless,
        json_response=args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
